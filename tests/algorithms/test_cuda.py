"""The GPU learner path: every algorithm trains 2 iterations with ``num_gpus_per_learner=1`` (a local
learner on ``cuda:0``), in fp32 and bf16, with its modules, target networks and optimizer state on
the GPU and finite losses; SIT's Stage I, loaded from its cache, lands on the GPU too. (Runs
everywhere: a Tune trial of a local GPU learner reserves the GPU in its main bundle.)

Skipped where CUDA is absent. The suite's conftest hides GPUs (``CUDA_VISIBLE_DEVICES=""`` unless
set), so run it on a GPU machine as::

    CUDA_VISIBLE_DEVICES=0 python -m pytest -q tests/algorithms/test_cuda.py

Ray is started once for the module (conftest).
"""

import math

import pytest
import torch

from algo_cases import CASES, tiny_config
from tiny_fixtures import TinyContinuousEnv, register_tiny_continuous_env

pytestmark = pytest.mark.usefixtures("one_torch_thread")
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available")


@pytest.fixture(scope="module")
def cont_dataset(ray_session, tmp_path_factory):
    from rllib_sit.data.synthetic import make_random_dataset

    register_tiny_continuous_env()
    return make_random_dataset(TinyContinuousEnv(), 12, str(tmp_path_factory.mktemp("cuda_c") / "ds"), seed=0)


def _on_gpu(config):
    return config.learners(num_learners=0, num_gpus_per_learner=1)


def _finite_losses(results):
    """The iteration reported losses, all finite."""
    losses = [float(v) for m in results.get("learners", {}).values() if isinstance(m, dict)
              for k, v in m.items() if k.endswith("loss")]
    return bool(losses) and all(math.isfinite(v) for v in losses)


def _devices(learner):
    mods = [learner.module[m].unwrapped() for m in learner.module.keys()]
    params = {p.device.type for mod in mods for p in mod.parameters()}  # target networks included
    buffers = {b.device.type for mod in mods for b in mod.buffers()}
    opt = {v.device.type for o in learner._named_optimizers.values() for s in o.state.values()
           for v in s.values() if isinstance(v, torch.Tensor) and v.dim() > 0}
    return params, buffers, opt


@needs_cuda
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("case", list(CASES))
def test_two_iterations_on_cuda(case, precision, dataset, cont_dataset):
    algo = _on_gpu(tiny_config(case, dataset, cont_dataset, precision=precision)).build_algo()
    try:
        learner = algo.learner_group._learner
        assert learner._device.type == "cuda"
        results = [algo.train() for _ in range(2)]
        assert any(_finite_losses(r) for r in results), results[-1].get("learners")
        params, buffers, opt = _devices(learner)
        assert params == {"cuda"} and buffers <= {"cuda"} and opt == {"cuda"}
        # the greedy actors the evaluation EnvRunner gets are CPU copies of the GPU weights
        ev = algo.evaluate()["env_runners"]
        assert ev["num_episodes"] == 2 and math.isfinite(ev["episode_return_mean"])
    finally:
        algo.stop()


@needs_cuda
def test_sit_stage1_cache_loads_onto_the_gpu(dataset, cont_dataset, tmp_path):
    store = str(tmp_path / "ardnem")
    first = _on_gpu(tiny_config("SIT", dataset, cont_dataset, stage1_cache=store)).build_algo()
    try:
        first.train()
        assert first.stage1_status == "trained"
    finally:
        first.stop()
    second = _on_gpu(tiny_config("SIT", dataset, cont_dataset, stage1_cache=store)).build_algo()
    try:
        second.train()
        second.train()
        assert second.stage1_status == "hit"
        params, _, opt = _devices(second.learner_group._learner)
        assert params == {"cuda"} and opt == {"cuda"}
    finally:
        second.stop()


def test_a_local_gpu_learner_reserves_its_gpu_in_the_trial_bundle(dataset, cont_dataset):
    """Tune hides the GPUs a trial did not reserve: with ``num_learners=0`` the learner runs in the
    trial's own process, so its GPU belongs in the main bundle (RLlib's own request does the same)."""
    from rllib_sit.algorithms import algorithm_class

    for case in ("SIT", "QMIX"):
        cls = algorithm_class(CASES[case][0])
        cpu = cls.default_resource_request(tiny_config(case, dataset, cont_dataset)).bundles
        gpu = cls.default_resource_request(_on_gpu(tiny_config(case, dataset, cont_dataset))).bundles
        assert gpu[0] == dict(cpu[0], GPU=1.0) and gpu[1:] == cpu[1:] and "GPU" not in cpu[0]
        remote = cls.default_resource_request(tiny_config(case, dataset, cont_dataset).learners(
            num_learners=1, num_gpus_per_learner=1)).bundles
        assert "GPU" not in remote[0] and remote[-1]["GPU"] == 1.0
