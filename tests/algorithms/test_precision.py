"""``precision="bf16"``: the learner's one autocast place (``OfflineMARLTorchLearner.precision_context``).

* A bf16 update moves the parameters like the fp32 update of the same state and batch: for every
  algorithm, at the first update (SIT: Stage I's ARDNEM; OMAC: the value phase; VD+TN: the fit
  phase) and the last one of 2 iterations (SIT: Stage III), the concatenated parameter deltas have
  cosine similarity > 0.9 and a norm ratio bf16/fp32 in [0.8, 1.25] — and differ from the fp32
  deltas (the switch changed the arithmetic).
* Under "bf16" every linear layer of the update computes in bfloat16 (its raw output) and bf16
  matmuls reach the dispatcher; under "fp32" none does; on the CPU every GRU computes in float32
  under both (the fp32 island); every module output reaching the loss code, and every loss, is
  float32 either way.
* The config names a bad value; a bf16 Stage I does not reuse an fp32 one's cache entry.

The fp32 path is unchanged (the golden trace, tests/algorithms/test_sit_golden.py). Ray is
started once for the module (conftest).
"""

import copy

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from algo_cases import CASES, tiny_config
from tiny_fixtures import TinyContinuousEnv, assert_learns_the_rewarding_actions, register_tiny_continuous_env

from rllib_sit.algorithms.common.algorithm import to_multi_agent_batch
from rllib_sit.models.blocks import EnsembleLinear

pytestmark = pytest.mark.usefixtures("one_torch_thread")

COSINE_MIN, RATIO_RANGE = 0.9, (0.8, 1.25)
MATMULS = {"mm", "addmm", "bmm", "baddbmm", "matmul", "mv", "addmv", "dot", "linear"}


@pytest.fixture(scope="module")
def cont_dataset(ray_session, tmp_path_factory):
    from rllib_sit.data.synthetic import make_random_dataset

    register_tiny_continuous_env()
    return make_random_dataset(TinyContinuousEnv(), 12, str(tmp_path_factory.mktemp("prec_c") / "ds"), seed=0)


def _snapshot(learner):
    """Modules (target networks included), optimizers and update counters, as torch holds them."""
    return copy.deepcopy(({m: learner.module[m].unwrapped().state_dict() for m in learner.module.keys()},
                          {n: o.state_dict() for n, o in learner._named_optimizers.items()},
                          dict(learner._module_updates)))


def _restore(learner, snap):
    modules, optimizers, updates = copy.deepcopy(snap)
    for m, sd in modules.items():
        learner.module[m].unwrapped().load_state_dict(sd)
    for n, sd in optimizers.items():
        learner._named_optimizers[n].load_state_dict(sd)
    learner._module_updates = updates


def _record_updates(algo, iterations=2):
    """Train ``iterations`` iterations; ``[(learner snapshot before the update, its batches), ...]``."""
    learner = algo.learner_group._learner
    seen, update = [], algo.update_learners

    def recording(batches):
        seen.append((_snapshot(learner), copy.deepcopy(batches)))
        return update(batches)

    algo.update_learners = recording
    for _ in range(iterations):
        algo.train()
    algo.update_learners = update
    return seen


def _trainable(learner):
    return {f"{mid}/{n}": p for mid in learner.module.keys()
            for n, p in learner.module[mid].unwrapped().named_parameters() if p.requires_grad}


def _delta(algo, state, batches, precision):
    """The parameter change of one update from ``state`` on ``batches`` at ``precision``."""
    learner = algo.learner_group._learner
    _restore(learner, state)
    before = {k: p.detach().clone() for k, p in _trainable(learner).items()}
    learner.precision = precision
    torch.manual_seed(0)  # the same noise (VAE samples, CQL's sampled actions, ...) in both runs
    algo.learner_group.update(batch=to_multi_agent_batch(batches))
    return torch.cat([(p.detach() - before[k]).reshape(-1) for k, p in _trainable(learner).items()]).double()


@pytest.mark.parametrize("case", list(CASES))
def test_bf16_update_moves_parameters_like_fp32(case, dataset, cont_dataset):
    algo = tiny_config(case, dataset, cont_dataset, precision="bf16").build_algo()
    try:
        assert algo.learner_group._learner.precision == "bf16"
        seen = _record_updates(algo)
        assert len(seen) >= 2, f"{case}: {len(seen)} updates in 2 iterations"
        for which, (state, batches) in (("first", seen[0]), ("last", seen[-1])):
            d32, d16 = _delta(algo, state, batches, "fp32"), _delta(algo, state, batches, "bf16")
            n32, n16 = d32.norm().item(), d16.norm().item()
            assert n32 > 0, f"{case} {which}: the fp32 update changed nothing"
            cos = float(d32 @ d16) / (n32 * n16)
            ratio = n16 / n32
            msg = f"{case} {which} update: cosine {cos:.4f}, norm ratio bf16/fp32 {ratio:.4f}"
            assert cos > COSINE_MIN and RATIO_RANGE[0] <= ratio <= RATIO_RANGE[1], msg
            assert not torch.equal(d32, d16), f"{msg}: bf16 gave the fp32 update bit for bit"
    finally:
        algo.stop()


class _MatmulDtypes(TorchDispatchMode):
    """Records the dtype of every matmul-like op's result at the dispatcher (below autocast)."""

    def __init__(self):
        super().__init__()
        self.dtypes = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func.overloadpacket.__name__ in MATMULS and isinstance(out, torch.Tensor):
            self.dtypes.append(out.dtype)
        return out


@pytest.mark.parametrize("case", ["SIT", "QMIX"])
def test_bf16_runs_the_matmuls_in_bfloat16_and_fp32_does_not(case, dataset, cont_dataset):
    algo = tiny_config(case, dataset, cont_dataset, precision="bf16").build_algo()
    learner = algo.learner_group._learner
    try:
        state, batches = _record_updates(algo)[-1]
        losses = []
        compute_losses = learner.compute_losses

        def spy(*, fwd_out, batch):
            out = compute_losses(fwd_out=fwd_out, batch=batch)
            floats = [t for m in fwd_out.values() for t in m.values()
                      if isinstance(t, torch.Tensor) and t.is_floating_point()]
            losses.append(([t.dtype for t in floats], [v.dtype for v in out.values()],
                           [t.dtype for t, _ in learner._loss_terms.values()]))
            return out

        learner.compute_losses = spy
        # the raw output of every linear layer (before the learner's fp32 cast: prepend=True)
        layers = [m for mid in learner.module.keys() for m in learner.module[mid].unwrapped().modules()
                  if isinstance(m, (torch.nn.Linear, EnsembleLinear))]
        raw, gru_raw = [], []
        handles = [m.register_forward_hook(lambda mod, args, out: raw.append(out.dtype), prepend=True) for m in layers]
        # the CPU fp32 island: a GRU's own output (before any cast), under either precision
        grus = [m for mid in learner.module.keys() for m in learner.module[mid].unwrapped().modules()
                if isinstance(m, torch.nn.GRU)]
        handles += [m.register_forward_hook(lambda mod, args, out: gru_raw.append(out[0].dtype), prepend=True)
                    for m in grus]
        seen, linear, gru = {}, {}, {}
        for precision in ("fp32", "bf16"):
            _restore(learner, state)
            learner.precision = precision
            raw.clear()
            gru_raw.clear()
            with _MatmulDtypes() as rec:
                algo.learner_group.update(batch=to_multi_agent_batch(batches))
            seen[precision], linear[precision], gru[precision] = rec.dtypes, list(raw), list(gru_raw)
        for h in handles:
            h.remove()
        assert seen["fp32"] and set(seen["fp32"]) == {torch.float32}
        assert torch.bfloat16 in seen["bf16"], seen["bf16"]
        assert linear["fp32"] and set(linear["fp32"]) == {torch.float32}
        assert len(linear["bf16"]) == len(linear["fp32"]) and set(linear["bf16"]) == {torch.bfloat16}
        assert gru["bf16"] and set(gru["bf16"]) == set(gru["fp32"]) == {torch.float32}
        for fwd_dtypes, loss_dtypes, term_dtypes in losses:
            assert set(fwd_dtypes) <= {torch.float32} and set(loss_dtypes) == set(term_dtypes) == {torch.float32}
    finally:
        algo.stop()


def test_bf16_keeps_parameters_and_optimizer_state_fp32(dataset, cont_dataset):
    algo = tiny_config("QMIX", dataset, cont_dataset, precision="bf16").build_algo()
    try:
        algo.train()
        learner = algo.learner_group._learner
        assert {p.dtype for p in _trainable(learner).values()} == {torch.float32}
        opt_dtypes = {v.dtype for opt in learner._named_optimizers.values() for s in opt.state.values()
                      for v in s.values() if isinstance(v, torch.Tensor) and v.is_floating_point() and v.dim() > 0}
        assert opt_dtypes == {torch.float32}
    finally:
        algo.stop()


@pytest.mark.parametrize("value", ["fp16", "bfloat16", None, 16])
def test_bad_precision_is_named(value):
    from rllib_sit.algorithms.qmix import QMIXConfig

    with pytest.raises(ValueError, match=r"QMIXConfig: precision=.* is invalid; expected one of \('fp32', 'bf16'\)"):
        QMIXConfig().training(precision=value).validate()


def test_default_is_fp32_on_every_algorithm():
    from rllib_sit.algorithms import algorithm_class

    assert {algorithm_class(CASES[c][0]).get_default_config().precision for c in CASES} == {"fp32"}


def test_bf16_stage1_gets_its_own_cache_entry(dataset, cont_dataset):
    from rllib_sit.algorithms.sit import stage1_cache as S1

    fp32 = S1.key_fields(tiny_config("SIT", dataset, cont_dataset), "ds-0")
    assert S1.key_fields(tiny_config("SIT", dataset, cont_dataset, precision="fp32"), "ds-0") == fp32
    assert "precision" not in fp32  # fp32 entries written before the setting keep their keys
    bf16 = S1.key_fields(tiny_config("SIT", dataset, cont_dataset, precision="bf16"), "ds-0")
    assert S1.make_key(bf16) != S1.make_key(fp32)


def test_fp32_output_hooks_and_the_cpu_gru_island():
    """``install_fp32_outputs`` on a Linear -> GRU -> Linear net under CPU bf16 autocast: without the
    hooks the GRU fed a bf16 input runs in bf16 (CPU autocast follows its inputs' dtypes); with them
    each network's output is fp32, the GRU computes in fp32 and autocast is on again after it (the
    last linear layer still computes in bf16); outside autocast the hooks change nothing."""
    from rllib_sit.algorithms.common.torch_learner import install_fp32_outputs

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc, self.gru, self.out = torch.nn.Linear(3, 4), torch.nn.GRU(4, 4, batch_first=True), torch.nn.Linear(4, 2)

        def forward(self, x):
            return self.out(self.gru(self.fc(x))[0])

    torch.manual_seed(0)
    net, x = Net(), torch.randn(2, 5, 3)
    raw = {}
    for name in ("fc", "gru", "out"):
        getattr(net, name).register_forward_hook(
            lambda mod, args, out, name=name: raw.__setitem__(name, (out[0] if name == "gru" else out).dtype),
            prepend=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        plain = net(x)
    assert (raw["fc"], raw["gru"], raw["out"], plain.dtype) == (torch.bfloat16,) * 4
    reference = net(x)
    handles = install_fp32_outputs(net, "cpu")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        hooked = net(x)
        assert torch.is_autocast_enabled("cpu")
    assert (raw["fc"], raw["gru"], raw["out"], hooked.dtype) == (torch.bfloat16, torch.float32, torch.bfloat16,
                                                                  torch.float32)
    assert torch.allclose(hooked, reference, atol=0.05)
    assert torch.equal(net(x), reference)  # outside autocast: nothing changes
    for h in handles:
        h.remove()


def test_bf16_qmix_learns_the_rewarding_actions(dataset, cont_dataset):
    """tests/algorithms/test_qmix.py's learning check in bf16: tiny:coop pays 1 when a0 takes action 1
    and 0.5 when b0 does; after 100 bf16 updates the greedy agents (acting in fp32) take them."""
    algo = tiny_config("QMIX", dataset, cont_dataset, precision="bf16", agent_updates=100,
                       agent_updates_per_iteration=100, lr=5e-3, gamma=0.5, target_update_interval=20,
                       batch_size_episodes=16).build_algo()
    assert_learns_the_rewarding_actions(algo)


def test_layer_stacks_keep_bf16_inside_and_return_fp32():
    """Inside an ``nn.Sequential`` / ``EnsembleMLP`` the activations stay bf16 (one cast per stack,
    not one per layer); what leaves the stack, and a layer called on its own, is fp32."""
    from rllib_sit.algorithms.common.torch_learner import install_fp32_outputs
    from rllib_sit.models.blocks import EnsembleMLP

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.stack = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
            self.ens = EnsembleMLP(3, 4, [8], 2)
            self.head = torch.nn.Linear(2, 1)

        def forward(self, x):
            return self.stack(x), self.ens(x.expand(3, *x.shape)), self.head(self.stack(x))

    net = Net()
    seen = {}
    net.stack[1].register_forward_pre_hook(lambda m, a: seen.__setitem__("relu_in", a[0].dtype))
    net.ens.layers[1].register_forward_pre_hook(lambda m, a: seen.__setitem__("ens_hidden", a[0].dtype))
    install_fp32_outputs(net, "cpu")
    with torch.autocast("cpu", torch.bfloat16):
        outs = net(torch.randn(5, 4))
    assert seen == {"relu_in": torch.bfloat16, "ens_hidden": torch.bfloat16}
    assert [o.dtype for o in outs] == [torch.float32] * 3
