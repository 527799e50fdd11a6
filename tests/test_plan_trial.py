"""``PlanTrial`` (rllib_sit.experiments.trainable), the one trainable of a benchmark plan, outside
Tune: it trains the cell's algorithm, asks for that algorithm's resources, and a checkpoint it
writes restores the algorithm into a new trial (what ``--max-failures`` restarts do); a config
without a cell is one clear error. Ray is started once for the module."""

import os
import sys

import numpy as np
import pytest
import ray

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "algorithms"))
from tiny_fixtures import TINY_ENV_ID, make_tiny_dataset, register_tiny_env  # noqa: E402

from rllib_sit.experiments.trainable import PlanTrial  # noqa: E402


@pytest.fixture(scope="module")
def cell(tmp_path_factory):
    ray.init(address="local", num_cpus=2, include_dashboard=False, ignore_reinit_error=True, log_to_driver=False)
    register_tiny_env()
    path = make_tiny_dataset(str(tmp_path_factory.mktemp("tiny") / "ds"), n_episodes=16, seed=0)
    from rllib_sit.algorithms.mabc import MABCConfig

    cfg = (MABCConfig().environment(TINY_ENV_ID).offline_data(input_=path)
           .training(agent_updates=4, agent_updates_per_iteration=2, batch_size_episodes=4, rnn_hidden=8)
           .evaluation(evaluation_duration=1).debugging(seed=0))
    yield {"cell": {"label": "MABC", "algorithm": "MABC", "config": cfg.to_dict()}}, cfg
    ray.shutdown()


def _weights(trial):
    state = trial.algo.learner_group.get_state()["learner"]["rl_module"]
    return {m: {k: np.array(v) for k, v in s.items()} for m, s in state.items()}


def test_trains_checkpoints_and_restores_the_cell_algorithm(cell, tmp_path):
    config, cfg = cell
    from rllib_sit.algorithms.mabc import MABC

    assert PlanTrial.default_resource_request(config).bundles == MABC.default_resource_request(cfg).bundles
    first = PlanTrial(config=config)
    try:
        assert isinstance(first.algo, MABC)
        result = first.train()
        assert result["phases"]["current"] == "bc" and result["phases"]["bc_updates_done"] == 2
        first.save_checkpoint(str(tmp_path / "ckpt"))
        assert os.path.isfile(tmp_path / "ckpt" / "algorithm_state.pkl")
        saved = _weights(first)
    finally:
        first.stop()
    second = PlanTrial(config=config)
    try:
        second.load_checkpoint(str(tmp_path / "ckpt"))
        got = _weights(second)
        assert got.keys() == saved.keys()
        for m in saved:
            for k in saved[m]:
                np.testing.assert_array_equal(got[m][k], saved[m][k])
        assert second.train()["phases"]["current"] == "done"  # updates 3-4: the schedule went on
    finally:
        second.stop()


def test_a_config_without_a_cell_is_one_clear_error():
    with pytest.raises(ValueError, match=r"a PlanTrial config needs 'cell': \{'label', 'algorithm', 'config'\}"):
        PlanTrial.default_resource_request({"env": "tiny:coop"})
