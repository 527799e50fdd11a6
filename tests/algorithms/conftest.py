"""Fixtures of the algorithm tests: Ray started once per test module, the tiny dataset built once."""

import pytest
import ray

from tiny_fixtures import make_tiny_dataset, register_tiny_env


@pytest.fixture(scope="module")
def ray_session():
    ray.init(address="local", num_cpus=2, include_dashboard=False, ignore_reinit_error=True, log_to_driver=False)
    register_tiny_env()
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def dataset(ray_session, tmp_path_factory):
    """40 random episodes of the tiny 3-agent / 2-type env (``tiny:coop``)."""
    return make_tiny_dataset(str(tmp_path_factory.mktemp("tiny") / "ds"), n_episodes=40, seed=0)
