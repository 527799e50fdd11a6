"""VD+TN (VDTN_BCQ, VDTN_CQL, VDTN_TD3BC): build -> train -> greedy evaluation on the tiny envs
(discrete ``tiny:coop``, continuous ``tinycont:coop``), a checkpoint round trip, config defaults
and validation messages, ``run: VDTN_*`` resolving to this package, the tuned examples. Ray is
started once for the module (conftest); torch runs on one thread.
"""

import glob
import json
import os

import numpy as np
import pytest
import torch
import yaml

from tiny_fixtures import TINY_CONT_ENV_ID, TINY_ENV_ID, TinyContinuousEnv, register_tiny_continuous_env

from rllib_sit.algorithms.vdtn import (VDTN_BCQ, VDTN_CQL, VDTN_TD3BC, VDTNBCQConfig, VDTNCQLConfig,
                                       VDTNTD3BCConfig)
from rllib_sit.algorithms.vdtn import vdtn_learner as V
from rllib_sit.data import schema as S
from rllib_sit.data.synthetic import make_random_dataset

TUNED = os.path.join(os.path.dirname(__file__), "..", "..", "tuned_examples")
CONFIGS = {"VDTN_BCQ": VDTNBCQConfig, "VDTN_CQL": VDTNCQLConfig, "VDTN_TD3BC": VDTNTD3BCConfig}
CLASSES = {"VDTN_BCQ": VDTN_BCQ, "VDTN_CQL": VDTN_CQL, "VDTN_TD3BC": VDTN_TD3BC}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def cont_dataset(ray_session, tmp_path_factory):
    register_tiny_continuous_env()
    return make_random_dataset(TinyContinuousEnv(), 12, str(tmp_path_factory.mktemp("vdtn_c") / "ds"), seed=0)


def tiny(name, path, env=TINY_ENV_ID, **training):
    kw = dict(hidden=[16, 16], batch_size=16, fit_updates=2, td_updates=4, updates_per_iteration=2,
              num_torch_threads=1, vae_latent_dim=3)
    if name != "VDTN_TD3BC":
        kw["num_sampled_actions"] = 3
    kw.update(training)
    cfg = CONFIGS[name]().environment(env).training(**kw).evaluation(evaluation_duration=2).debugging(seed=0)
    return cfg if path is None else cfg.offline_data(input_=path)


def _params(algo, mid, attr):
    return [p.detach().clone() for p in getattr(algo.learner_group._learner.module[mid].unwrapped(), attr).parameters()]


def _same(a, b):
    return all(torch.equal(x, y) for x, y in zip(a, b))


@pytest.mark.parametrize("name", ["VDTN_BCQ", "VDTN_CQL"])
def test_train_fit_then_td_and_evaluate_discrete(dataset, name):
    algo = tiny(name, dataset).evaluation(evaluation_interval=3).build_algo()
    try:
        assert sorted(algo.learner_group._learner.module.keys()) == ["a0", "a1", "b0"]  # one module per agent
        q0, vae0 = _params(algo, "b0", "q"), _params(algo, "b0", "tn_vae_sas")
        r1 = algo.train()  # fit: the VAEs (and BCQ's behaviour model) move, Q does not
        assert r1["phases"]["fit_updates_done"] == 2 and r1["phases"]["current"] == "td"
        assert _same(q0, _params(algo, "b0", "q")) and not _same(vae0, _params(algo, "b0", "tn_vae_sas"))
        assert np.isfinite(r1["learners"]["b0"][V.TN_VAE_LOSS])
        algo.train()
        vae1 = _params(algo, "b0", "tn_vae_sas")
        r3 = algo.train()  # td: Q moves, the fitted VAEs stay frozen (Algorithm 1)
        assert r3["phases"]["current"] == "done" and r3["phases"]["td_updates_done"] == 4
        assert not _same(q0, _params(algo, "b0", "q")) and _same(vae1, _params(algo, "b0", "tn_vae_sas"))
        for m in ("a0", "a1", "b0"):
            res = r3["learners"][m]
            assert np.isfinite(res[V.TD_LOSS]) and 1 - 0.9 <= res[V.LAMBDA_VD_MEAN] <= 1 + 0.9
            assert res[V.LAMBDA_TN_MIN] <= 1.0 <= res[V.LAMBDA_TN_MAX]
        ev = r3["evaluation"]["env_runners"]
        assert ev["num_episodes"] == 2 and np.isfinite(ev["episode_return_mean"])
    finally:
        algo.stop()


@pytest.mark.parametrize("name", ["VDTN_BCQ", "VDTN_CQL", "VDTN_TD3BC"])
def test_train_and_evaluate_continuous(cont_dataset, name):
    algo = tiny(name, cont_dataset, env=TINY_CONT_ENV_ID).build_algo()
    try:
        for _ in range(3):
            r = algo.train()
        assert r["phases"]["td_updates_done"] == 4
        for m in ("l0", "l1"):
            assert np.isfinite(r["learners"][m][V.TD_LOSS])
        key = {"VDTN_BCQ": V.PERTURBATION_LOSS, "VDTN_CQL": V.CQL_PENALTY, "VDTN_TD3BC": V.ACTOR_LOSS}[name]
        assert np.isfinite(r["learners"]["l0"][key])
        if name == "VDTN_TD3BC":  # the actor moved in TD batches 0 and 2 of 4 (policy_delay = 2)
            assert algo._td_batches == 4 and algo.get_extra_state() == {"td_batches": 4}
        ev = algo.evaluate()["env_runners"]
        assert ev["episode_len_mean"] == 5 and np.isfinite(ev["episode_return_mean"])
    finally:
        algo.stop()


@pytest.mark.parametrize("bootstrap_truncated", [True, False])
def test_bootstrap_truncated_reaches_the_sampler(cont_dataset, bootstrap_truncated):
    """The switch decides whether the last step of a time-limit-cut episode bootstraps: the sampler's
    flags equal the ones computed from the dataset's own columns (every episode of the tiny env is cut
    at its limit of 5 steps, none terminates)."""
    algo = tiny("VDTN_TD3BC", cont_dataset, env=TINY_CONT_ENV_ID, bootstrap_truncated=bootstrap_truncated).build_algo()
    try:
        cols = algo.store.columns
        filled, term = np.asarray(cols[S.FILLED]) > 0, np.asarray(cols[S.TERMINATED]) > 0
        last = np.zeros_like(filled)
        last[np.arange(len(filled)), filled.sum(1) - 1] = True  # each episode's final real step
        expected = ~term if bootstrap_truncated else ~term & ~last
        assert not term.any() and last.sum() == len(filled)
        np.testing.assert_array_equal(algo.sampler.bootstrap, expected[filled].astype(np.float32))
    finally:
        algo.stop()


@pytest.mark.parametrize("normalize_obs", [True, False])
def test_normalize_obs_sets_each_agents_dataset_moments(cont_dataset, normalize_obs, tmp_path):
    """``normalize_obs`` (TD3+BC's state normalisation): every agent's module holds its own dataset's
    mean and std + 1e-3 (NumPy over the real steps), its networks read (o − mean) / std, and the
    evaluation runners and a restored checkpoint carry the same buffers; off: identity."""
    algo = tiny("VDTN_TD3BC", cont_dataset, env=TINY_CONT_ENV_ID, normalize_obs=normalize_obs).build_algo()
    try:
        cols = algo.store.columns
        filled = np.asarray(cols[S.FILLED]) > 0
        obs = np.asarray(cols[S.OBS])[:, :filled.shape[1]]
        for i, m in enumerate(["l0", "l1"]):
            own = obs[:, :, i][filled].astype(np.float64)
            mean, std = (own.mean(0), own.std(0) + 1e-3) if normalize_obs else (0.0, 1.0)
            mod = algo.learner_group._learner.module[m].unwrapped()
            np.testing.assert_allclose(mod.obs_mean.numpy(), np.broadcast_to(mean, own.shape[1:]), rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(mod.obs_std.numpy(), np.broadcast_to(std, own.shape[1:]), rtol=1e-5)
            o = torch.as_tensor(own[:4], dtype=torch.float32)
            x = (o - torch.as_tensor(mean, dtype=torch.float32)) / torch.as_tensor(std, dtype=torch.float32)
            with torch.no_grad():
                assert torch.allclose(mod.act(mod.norm(o), None, False), mod.actor(x), atol=1e-6)
        algo.evaluate()
        runners = algo.eval_env_runner_group.foreach_env_runner(  # every runner that has a module
            lambda r: {m: r.module[m].obs_std.numpy().copy() for m in ("l0", "l1")} if r.module else None)
        runners = [r for r in runners if r is not None]
        assert runners
        for r in runners:
            for m in ("l0", "l1"):
                np.testing.assert_array_equal(r[m], algo.learner_group._learner.module[m].unwrapped().obs_std.numpy())
        ckpt = algo.save_to_path(str(tmp_path / "ckpt"))
        want = algo.learner_group._learner.module["l1"].unwrapped().obs_mean.clone()
    finally:
        algo.stop()
    restored = VDTN_TD3BC.from_checkpoint(ckpt)
    try:
        assert torch.equal(restored.learner_group._learner.module["l1"].unwrapped().obs_mean, want)
    finally:
        restored.stop()


def test_td3bc_rejects_discrete_actions(dataset):
    with pytest.raises(ValueError, match="VDTNTD3BCConfig: env='tiny:coop' is invalid; expected an env with "
                                         "continuous actions; this one has discrete actions .*use VDTN_BCQ or VDTN_CQL"):
        tiny("VDTN_TD3BC", dataset).build_algo()


@pytest.mark.parametrize("name", ["VDTN_BCQ", "VDTN_CQL"])
def test_checkpoint_round_trip(dataset, tmp_path, name):
    algo = tiny(name, dataset, fit_updates=2, td_updates=6).build_algo()
    try:
        algo.train()
        algo.train()  # fit done, 2 of 6 td updates
        ckpt = algo.save_to_path(str(tmp_path / "ckpt"))
        ev_before = algo.evaluate()["env_runners"]["episode_return_mean"]
        before = {a: _params(algo, "a1", a) for a in ("q", "target_q", "tn_vae_sa", "tn_vae_sas")}
        next_batch = algo.sampler.sample(8)
    finally:
        algo.stop()
    restored = CLASSES[name].from_checkpoint(ckpt)
    try:
        assert restored.schedule.current_name == "td" and restored.schedule.done["td"] == 2
        for a, ps in before.items():
            for p, q in zip(_params(restored, "a1", a), ps):
                torch.testing.assert_close(p, q)
        assert restored.evaluate()["env_runners"]["episode_return_mean"] == ev_before
        again = restored.sampler.sample(8)
        for m in ("a0", "a1", "b0"):
            np.testing.assert_array_equal(again[m][V.EPISODE_INDEX], next_batch[m][V.EPISODE_INDEX])
            np.testing.assert_array_equal(again[m][V.STEP_INDEX], next_batch[m][V.STEP_INDEX])
        r = restored.train()
        assert r["phases"]["td_updates_done"] == 4
    finally:
        restored.stop()


# -- config --------------------------------------------------------------------------------------

def test_defaults_cite_the_paper():
    b, c, t = VDTNBCQConfig(), VDTNCQLConfig(), VDTNTD3BCConfig()
    for cfg in (b, c, t):
        assert (cfg.module_mapping, cfg.use_value_deviation, cfg.use_transition_normalization, cfg.gamma,
                cfg.vae_latent_dim, cfg.vae_lr, cfg.hidden, cfg.batch_size) == \
            ("agent_id", True, True, 0.99, 10, 1e-4, [256, 256], 100)
    assert (b.lr, b.bcq_threshold, b.generator_lr, b.perturb_lr, b.perturbation_scale, b.num_sampled_actions) == \
        (1e-4, 0.6, 1e-4, 1e-4, 0.05, 10)  # Table 12, BCQ columns
    assert (c.lr, c.cql_alpha, c.actor_lr) == (1e-4, 0.2, 1e-4)  # Table 12, CQL
    assert (t.lr, t.actor_lr, t.td3_alpha) == (3e-4, 3e-4, 2.5)  # Table 12, TD3+BC
    assert (t.bc_units, t.bootstrap_truncated) == ("env", True)  # the TD3+BC code's BC term and not_done
    with pytest.raises(ValueError, match="VDTNTD3BCConfig: bc_units="):
        VDTNTD3BCConfig().environment(TINY_CONT_ENV_ID).training(bc_units="raw").validate()


@pytest.mark.parametrize("key, value", [("optimism", 1.5), ("optimism", -0.1), ("vd_terminal", "zero"),
                                        ("tn_estimator", "kde"), ("use_value_deviation", "yes"),
                                        ("module_mapping", "agent_type"), ("hidden", [0]), ("hidden", 64),
                                        ("batch_size", 0), ("td_updates", -1), ("vae_latent_dim", 0),
                                        ("target_update_tau", 0.0), ("bcq_threshold", 1.5), ("lr", 0.0),
                                        ("bootstrap_truncated", 1)])
def test_config_validation_names_the_parameter(key, value):
    cfg = VDTNBCQConfig().environment(TINY_ENV_ID).training(**{key: value})
    with pytest.raises(ValueError, match=f"VDTNBCQConfig: {key}="):
        cfg.validate()


def test_run_names_resolve_to_this_package(ray_session):
    from ray.tune.registry import get_trainable_cls

    import rllib_sit

    rllib_sit.register_all()
    for name, cls in CLASSES.items():
        assert get_trainable_cls(name) is cls


def test_every_tuned_example_validates():
    from rllib_sit.cli.rllib_cmd import load_experiments
    from rllib_sit.data.composition import dataset_spec

    files = sorted(glob.glob(os.path.join(TUNED, "vdtn_*.yaml")))
    names = {os.path.basename(f)[:-5] for f in files}
    for m in ("8m", "3m", "3s_vs_3z", "3s_vs_4z", "cn_4ls4l", "cn_3ls3l", "dg", "halfcheetah_2l", "walker_2l"):
        assert {f"vdtn_bcq_{m}", f"vdtn_cql_{m}"} <= names, m
    assert {"vdtn_td3bc_dg", "vdtn_td3bc_dg_partial", "vdtn_td3bc_halfcheetah_2l", "vdtn_td3bc_walker_2l"} <= names
    for f in files:
        for exp in load_experiments(f).values():
            run, env = exp["run"], exp["env"]
            assert os.path.basename(f).startswith(run.lower() + "_")
            cfg = CONFIGS[run]().update_from_dict(dict(exp["config"], env=env))
            cfg.validate()
            family = env.split(":")[0]
            assert cfg.optimism == {"smac": 0.99, "mpe": 0.9}.get(family, cfg.optimism)  # Appendix B
            if family == "mamujoco":
                assert cfg.optimism == {"mamujoco:halfcheetah_2l": 0.8, "mamujoco:walker_2l": 0.48}[env]
                assert (cfg.hidden, cfg.batch_size) == ([64, 64], 1024)
            dataset_spec(env, cfg.dataset["quality"])  # the quality exists in the data specs
            if family == "smac" or env in ("mpe:dg", "mpe:dg_partial", "mpe:cn_4ls4l", "mamujoco:halfcheetah_2l"):
                assert cfg.dataset["quality"].startswith("vdtn-")  # the paper's own dataset recipe


def test_rllib_train_file_then_evaluate(ray_session, tmp_path, capsys):
    """``run: VDTN_BCQ`` under Ray Tune through ``rllib train file`` (one trial, a checkpoint), then
    ``rllib evaluate`` on that checkpoint (the matrix game: its env is registered in every process)."""
    from rllib_sit.cli.rllib_cmd import main
    from rllib_sit.data.episode import rollout_episode
    from rllib_sit.data.io import write_dataset
    from rllib_sit.envs.games import MatrixGame, behaviour_actions

    env = MatrixGame()
    rng = np.random.default_rng(0)
    rows = (rollout_episode(env, lambda e, o: behaviour_actions(rng), seed=k, episode_id=k) for k in range(50))
    data = str(write_dataset(rows, str(tmp_path / "ds"), S.DatasetMeta(env=env.info), {"quality": "behaviour"}))
    exp = {"vdtn-cli": {"run": "VDTN_BCQ", "env": "matrix:vdtn", "stop": {"training_iteration": 2},
                        "checkpoint_freq": 1,
                        "config": {"input_": data, "hidden": [8, 8], "batch_size": 16, "fit_updates": 2,
                                   "td_updates": 2, "updates_per_iteration": 2, "evaluation_interval": 1,
                                   "evaluation_duration": 1, "optimism": 0.99}}}
    f = tmp_path / "exp.yaml"
    f.write_text(yaml.safe_dump(exp))
    assert main(["train", "file", str(f), "--storage-path", str(tmp_path / "results")]) == 0
    trials = sorted(glob.glob(str(tmp_path / "results" / "vdtn-cli" / "VDTN_BCQ_*")))
    assert len(trials) == 1
    last = [json.loads(line) for line in open(os.path.join(trials[0], "result.json"))][-1]
    assert last["training_iteration"] == 2 and last["phases"]["current"] == "done"
    ckpts = sorted(glob.glob(os.path.join(trials[0], "checkpoint_*")))
    assert ckpts
    capsys.readouterr()
    assert main(["evaluate", ckpts[-1], "--episodes", "2", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert json.loads(out[out.index("{"):])["num_episodes"] == 2


# -- the paper's per-agent datasets ----------------------------------------------------------------

def test_train_on_per_agent_datasets(dataset, tmp_path):
    """``agent_datasets``: a folder of ``decentralize()``'d per-agent datasets (N = 1 each): one store
    and sampler per agent, the joint EnvInfo in the env's agent order, train, evaluate, checkpoint."""
    from rllib_sit.data.generation import decentralize

    parts = decentralize(dataset, str(tmp_path / "dec"))
    assert sorted(parts) == ["a0", "a1", "b0"]
    cfg = tiny("VDTN_CQL", None, agent_datasets=str(tmp_path / "dec"), tn_estimator="count")
    info = cfg.dataset_info()
    assert info.agents == ["a0", "a1", "b0"] and info.agent_types == ["scout", "scout", "tank"]
    algo = cfg.build_algo()
    try:
        assert isinstance(algo.sampler, V.PerAgentSamplers)
        assert {m: s.agent_modules for m, s in algo.sampler.samplers.items()} == {"a0": ["a0"], "a1": ["a1"],
                                                                                 "b0": ["b0"]}
        for _ in range(2):
            r = algo.train()
        assert r["phases"]["current"] == "done" and np.isfinite(r["learners"]["b0"][V.TD_LOSS])
        ckpt = algo.save_to_path(str(tmp_path / "ckpt"))
        nxt = algo.sampler.sample(4)
        assert np.isfinite(algo.evaluate()["env_runners"]["episode_return_mean"])
    finally:
        algo.stop()
    restored = VDTN_CQL.from_checkpoint(ckpt)
    try:
        again = restored.sampler.sample(4)
        for m in nxt:
            np.testing.assert_array_equal(again[m][V.EPISODE_INDEX], nxt[m][V.EPISODE_INDEX])
    finally:
        restored.stop()


def test_agent_datasets_must_be_single_agent_datasets_of_the_env(dataset, tmp_path):
    cfg = tiny("VDTN_CQL", None, agent_datasets={"a0": dataset, "a1": dataset, "b0": dataset})
    with pytest.raises(ValueError, match="VDTNCQLConfig: agent_datasets=.* the dataset of agent 'a0' alone"):
        cfg.dataset_info()
    with pytest.raises(ValueError, match="VDTNCQLConfig: agent_datasets=.*a folder holding one dataset"):
        tiny("VDTN_CQL", None, agent_datasets=str(tmp_path)).dataset_info()
    with pytest.raises(ValueError, match="VDTNCQLConfig: agent_datasets=3"):
        tiny("VDTN_CQL", None, agent_datasets=3).validate()
