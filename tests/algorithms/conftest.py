"""Fixtures of the algorithm tests: Ray started once per test module, the tiny dataset built once."""

import pytest
import torch

from tiny_fixtures import make_tiny_dataset, ray_session  # noqa: F401 - the module-scoped Ray fixture


@pytest.fixture(scope="module")
def dataset(ray_session, tmp_path_factory):  # noqa: F811 - the imported fixture, by name
    """40 random episodes of the tiny 3-agent / 2-type env (``tiny:coop``)."""
    return make_tiny_dataset(str(tmp_path_factory.mktemp("tiny") / "ds"), n_episodes=40, seed=0)


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op thread for a module's tiny networks (on a loaded 2-core machine two threads make
    them ~20x slower); a module opts in with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
