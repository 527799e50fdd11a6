"""SIT's golden trace: the numbers recorded *before* SIT moved onto the shared base (commit 9bdc308)
— ARDNEM losses of the first 5 updates, actor/critic losses of every Stage III update, the DPER's
sampling probabilities, r̂/û and every final parameter (sum and sum of squares, target critics
included) — reproduced by the current code on the tiny datasets, discrete and continuous, and with
decomposition "none" + uniform sampling. The move itself reproduced them bit for bit; the test
allows 1e-4 relative for other CPUs' float kernels. A deliberate change to SIT's numbers must
re-record the file (``SIT_GOLDEN_RECORD=1 python -m pytest tests/algorithms/test_sit_golden.py``)
and say why in its commit.
"""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import ray

from tiny_fixtures import (TINY_CONT_ENV_ID, TINY_ENV_ID, TinyContinuousEnv, register_tiny_continuous_env)

GOLDEN = Path(__file__).parent / "golden" / "sit_tiny_trace.json"
CASES = {"discrete": (TINY_ENV_ID, {}), "continuous": (TINY_CONT_ENV_ID, {}),
         "discrete_uniform_none": (TINY_ENV_ID, dict(decomposition="none", prioritized=False))}


def _trace(env_id, path, **kw):
    from rllib_sit.algorithms.sit import SITConfig
    from rllib_sit.algorithms.sit import sit_learner as K

    cfg = (SITConfig().environment(env_id).offline_data(input_=path)
           .training(ardnem_updates=5, agent_updates=7, ardnem_updates_per_iteration=1, agent_updates_per_iteration=1,
                     batch_size_episodes=8, target_update_interval=3, stage2_batch_episodes=16,
                     priority_scale="minmax", **kw)
           .debugging(seed=3))
    algo = cfg.build_algo()
    out = {"ardnem_loss": [], "critic_loss": {}, "actor_loss": {}}
    try:
        for it in range(14):
            learners = algo.train().get("learners", {})
            ard = learners.get(K.ARDNEM_MODULE_ID, {})
            if it < 5 and K.ARDNEM_LOSS in ard:
                out["ardnem_loss"].append(float(ard[K.ARDNEM_LOSS]))
            for t, v in learners.items():
                if it >= 6 and isinstance(v, dict) and K.CRITIC_LOSS in v:
                    out["critic_loss"].setdefault(t, []).append(float(v[K.CRITIC_LOSS]))
                    out["actor_loss"].setdefault(t, []).append(float(v[K.ACTOR_LOSS]))
        state = ray.get(algo.dper.get_state.remote())
        out["dper_leaves"] = {t: np.asarray(v).tolist() for t, v in state["leaves"].items()}
        out["r_hat"] = np.asarray(state["step_values"][K.REWARD_HAT]).reshape(-1)[:60].tolist()
        out["u_hat"] = np.asarray(state["step_values"][K.UNCERTAINTY]).reshape(-1)[:60].tolist()
        module = algo.learner_group._learner.module
        out["params"] = {f"{mid}/{k}": [float(v.double().sum()), float((v.double() ** 2).sum())]
                         for mid in module.keys() for k, v in module[mid].state_dict().items()}
    finally:
        algo.stop()
    return out


@pytest.fixture(scope="module")
def datasets(dataset, tmp_path_factory):
    from rllib_sit.data.synthetic import make_random_dataset

    register_tiny_continuous_env()
    cont = make_random_dataset(TinyContinuousEnv(), 30, str(tmp_path_factory.mktemp("golden") / "dsc"), seed=1)
    return {TINY_ENV_ID: dataset, TINY_CONT_ENV_ID: cont}


def test_sit_reproduces_its_golden_trace(datasets):
    got = {name: _trace(env_id, datasets[env_id], **kw) for name, (env_id, kw) in CASES.items()}
    if os.environ.get("SIT_GOLDEN_RECORD"):
        GOLDEN.write_text(json.dumps(got, indent=0))
        pytest.skip(f"recorded {GOLDEN}")
    golden = json.loads(GOLDEN.read_text())
    for name, g in golden.items():
        o = got[name]
        np.testing.assert_allclose(o["ardnem_loss"], g["ardnem_loss"], rtol=1e-4, err_msg=name)
        for key in ("critic_loss", "actor_loss"):
            assert set(o[key]) == set(g[key])
            for t in g[key]:
                np.testing.assert_allclose(o[key][t], g[key][t], rtol=1e-4, err_msg=f"{name} {key} {t}")
        for t in g["dper_leaves"]:
            np.testing.assert_allclose(o["dper_leaves"][t], g["dper_leaves"][t], rtol=1e-4, err_msg=f"{name} {t}")
        np.testing.assert_allclose(o["r_hat"], g["r_hat"], rtol=1e-4, atol=1e-6, err_msg=name)
        np.testing.assert_allclose(o["u_hat"], g["u_hat"], rtol=1e-4, atol=1e-6, err_msg=name)
        assert set(o["params"]) == set(g["params"]), name
        for p in g["params"]:
            np.testing.assert_allclose(o["params"][p], g["params"][p], rtol=1e-4, atol=1e-6, err_msg=f"{name} {p}")
