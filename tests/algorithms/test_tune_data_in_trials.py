"""Regression: a sweep started from Python (``tune.Tuner("SIT", param_space=SITConfig()...)``) on 2
CPUs whose dataset is not generated yet sat in trial set-up for 5 minutes: every trial generated the
data itself with Ray tasks that needed the CPUs the trials held. Trials now generate inline, one of
them at a time (a file lock), and the others reuse its dataset. Ray is started by this module."""

import os

import pytest
import ray
from ray import tune

import rllib_sit
from rllib_sit.algorithms.sit import SITConfig
from rllib_sit.data.generation import DATA_VERSION


@pytest.fixture(scope="module")
def ray_2cpu(tmp_path_factory):
    data_dir = str(tmp_path_factory.mktemp("data"))
    old = os.environ.get("RLLIB_SIT_DATA_DIR")
    os.environ["RLLIB_SIT_DATA_DIR"] = data_dir  # before ray.init: the trials' workers inherit it
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    rllib_sit.register_all()
    yield data_dir
    ray.shutdown()
    if old is None:
        os.environ.pop("RLLIB_SIT_DATA_DIR", None)
    else:
        os.environ["RLLIB_SIT_DATA_DIR"] = old


@pytest.mark.timeout(420)
def test_two_trials_on_two_cpus_generate_the_dataset_once_and_finish(ray_2cpu, tmp_path):
    spec = {"quality": "low", "episodes": 24, "seed": 123}
    config = (SITConfig().environment("smac:2s3z")
              .training(dataset=spec, ardnem_updates=2, ardnem_updates_per_iteration=2, agent_updates=2,
                        agent_updates_per_iteration=2, batch_size_episodes=4, rnn_hidden=8, critic_hidden=8,
                        reward_hidden=8, attention_hidden=8, alpha=tune.grid_search([0.2, 5.0]))
              .evaluation(evaluation_duration=1))
    tuner = tune.Tuner("SIT", param_space=config,
                       run_config=tune.RunConfig(stop={"training_iteration": 2}, storage_path=str(tmp_path),
                                                 verbose=0))
    results = tuner.fit()
    assert len(results) == 2 and not results.errors
    assert all(r.metrics["phases"]["agents_updates_done"] == 2 for r in results)
    made = [root for root, _, files in os.walk(ray_2cpu) if "card.json" in files]
    assert len(made) == 1 and made[0].endswith(os.path.join("smac_2s3z", f"low_24_123_v{DATA_VERSION}"))
