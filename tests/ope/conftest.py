"""Fixtures of the OPE tests: the tiny env of tests/algorithms on the path, Ray once per module."""

import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ALGO_TESTS = os.path.join(os.path.dirname(HERE), "algorithms")
for p in (HERE, ALGO_TESTS):
    if p not in sys.path:
        sys.path.insert(0, p)


@pytest.fixture(scope="module")
def ray_session():
    import ray

    from tiny_fixtures import register_tiny_env

    ray.init(address="local", num_cpus=2, include_dashboard=False, ignore_reinit_error=True, log_to_driver=False)
    register_tiny_env()
    yield
    ray.shutdown()
