"""Fixtures of the OPE tests: the tiny env of tests/algorithms on the path, Ray once per module."""

import os
import sys


HERE = os.path.dirname(os.path.abspath(__file__))
ALGO_TESTS = os.path.join(os.path.dirname(HERE), "algorithms")
DATA_TESTS = os.path.join(os.path.dirname(HERE), "data")  # import_writers: third-party files in their layouts
for p in (HERE, ALGO_TESTS, DATA_TESTS):
    if p not in sys.path:
        sys.path.insert(0, p)

from tiny_fixtures import ray_session  # noqa: E402,F401 - Ray once per module, shared with tests/algorithms
