"""``OfflineMARLTorchLearner``: the TorchLearner every offline multi-agent algorithm subclasses.

* **Optimizers** from :meth:`optimizer_groups` (``{name: (params, lr)}`` per module), built with
  ``config.optimizer`` ("rmsprop": pymarl's settings, smoothing 0.99 and eps 1e-5; "adam").
* **One loss per optimizer.** A per-module algorithm returns ``{optimizer name: loss}`` from
  :meth:`compute_losses_for_module`; each loss is back-propagated on its own and only its
  optimizer's parameters keep the gradient (as RLlib's IQL/CQL learners do), so an actor loss that
  goes through a critic (TD3+BC, FacMAC, CQL) never moves the critic.
* **Joint losses.** Algorithms whose loss mixes every agent's values in one mixer (QMIX, FacMAC,
  MACQL, ICQ, OMAC) set ``joint_loss = True`` and return ``{term: (loss, [(module id, optimizer
  name), ...])}`` from :meth:`compute_joint_losses`, which sees every module's batch and forward
  outputs at once (a per-module ``compute_loss_for_module`` cannot express such a loss).
* **Modules absent from a batch** are skipped (no forward, no loss, no optimizer step).
* **Target networks** of modules implementing RLlib's ``TargetNetworkAPI``: built at ``build()``,
  updated after each gradient update of their module, a hard copy every
  ``config.target_update_interval`` updates or Polyak averaging with ``config.target_update_tau``.
  The per-module update counters are part of the learner's checkpointed state.
* **Precision** (``config.precision``): "fp32", or "bf16" mixed precision — one
  ``torch.autocast(<learner device type>, torch.bfloat16)`` around every module forward and loss
  computation of an update (:meth:`OfflineMARLTorchLearner.precision_context`, the one place every
  algorithm's update goes through). Matmuls (linear layers, ``bmm``/``einsum``) run in bf16; every
  network's output is cast back to fp32 (:func:`install_fp32_outputs`), so activations between
  networks, losses, reductions, softmax/logsumexp and returns are fp32; parameters, gradients and
  optimizer state stay fp32 (no loss scaling is needed: bf16 has fp32's exponent range). On the CPU a
  GRU runs in fp32 (an fp32 island: CPU autocast runs ``nn.GRU`` in bf16 or fp32 depending on its
  inputs' dtypes). Inference (EnvRunners, evaluation, SIT's Stage II) stays fp32.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from ray.rllib.core.learner.torch.torch_learner import TorchLearner
from ray.rllib.core.learner.utils import update_target_network
from ray.rllib.core.rl_module.apis import TargetNetworkAPI
from ray.rllib.utils.metrics import ALL_MODULES

# pymarl's RMSprop (the code base SIT and the CTDE baselines follow): smoothing 0.99, eps 1e-5.
RMSPROP_ALPHA, RMSPROP_EPS = 0.99, 1e-5
# Logged per agent module by every learner whose module returns K.ENTROPY (MABC, ICQ, OMAC, SIT): the
# mean entropy of π(· | τ) over the batch's real steps (nats; log n_actions = uniform, 0 = deterministic).
POLICY_ENTROPY = "policy_entropy"
TARGET_UPDATES_STATE = "module_updates"

LossTargets = List[Tuple[str, str]]  # [(module id, optimizer name), ...]
# config.precision -> the autocast dtype of the learner's forwards and losses (None: plain fp32).
AUTOCAST_DTYPES = {"fp32": None, "bf16": torch.bfloat16}


def to_fp32(tree: Any) -> Any:
    """Every floating tensor of ``tree`` (a tensor, dict, list or tuple) as float32; the rest as is."""
    if isinstance(tree, torch.Tensor):
        return tree.float() if tree.is_floating_point() and tree.dtype != torch.float32 else tree
    if isinstance(tree, dict):
        return type(tree)((k, to_fp32(v)) for k, v in tree.items())
    if isinstance(tree, (list, tuple)) and not hasattr(tree, "_fields"):
        return type(tree)(to_fp32(v) for v in tree)
    return tree


def _fp32_output_hook(device_type: str, module, args, output):
    # Under autocast a network's matmuls produce bf16; what leaves the network is fp32 again.
    return to_fp32(output) if torch.is_autocast_enabled(device_type) else None


def _rnn_fp32_pre_hook(module, args):
    # fp32 island: under CPU autocast nn.GRU runs in bf16 or fp32 depending on its inputs' dtypes
    # (bf16 input without h0 -> bf16); run it in fp32 on fp32 inputs, autocast off for its call.
    if not torch.is_autocast_enabled("cpu"):
        module._rllib_sit_autocast_off = False
        return None
    torch.set_autocast_enabled("cpu", False)
    module._rllib_sit_autocast_off = True
    return to_fp32(args)


def _rnn_fp32_hook(module, args, output):
    if getattr(module, "_rllib_sit_autocast_off", False):
        module._rllib_sit_autocast_off = False
        torch.set_autocast_enabled("cpu", True)  # (the enclosing torch.autocast restores it on errors)
    return None


def _layer_stacks() -> Tuple[type, ...]:
    from rllib_sit.models.blocks import EnsembleMLP

    return (torch.nn.Sequential, EnsembleMLP)


def install_fp32_outputs(module: torch.nn.Module, device_type: str) -> List[Any]:
    """Forward hooks on ``module`` and its submodules: under autocast each hooked module's floating
    outputs are cast back to fp32 (outside autocast the hooks change nothing); on the CPU, RNNs run
    in fp32. Returns the hook handles.

    The layers *inside* a layer stack (``nn.Sequential``, ``EnsembleMLP``) are not hooked: the
    stack's output is cast once, and the activations between its layers stay bf16. Casting every
    layer's output to fp32 and back to bf16 at the next layer cost more than bf16 saved (profile
    of SIT's Stage I in docs/benchmarks.md)."""
    stacks = _layer_stacks()
    inner = {id(c) for m in module.modules() if isinstance(m, stacks) for c in m.modules() if c is not m}
    handles = []
    for m in module.modules():
        if device_type == "cpu" and isinstance(m, torch.nn.RNNBase):
            handles.append(m.register_forward_pre_hook(_rnn_fp32_pre_hook))
            handles.append(m.register_forward_hook(_rnn_fp32_hook))
        if id(m) not in inner:
            handles.append(m.register_forward_hook(functools.partial(_fp32_output_hook, device_type)))
    return handles


def make_optimizer(name: str, params: Sequence[torch.nn.Parameter], lr: float,
                   eps: Optional[float] = None) -> torch.optim.Optimizer:
    """RMSprop (pymarl's smoothing 0.99, eps 1e-5) or Adam (torch's eps 1e-8); ``eps`` overrides."""
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, alpha=RMSPROP_ALPHA, eps=RMSPROP_EPS if eps is None else eps)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, **({} if eps is None else {"eps": eps}))
    raise ValueError(f"optimizer={name!r} is invalid; expected 'rmsprop' or 'adam'")


class OfflineMARLTorchLearner(TorchLearner):
    """See the module docstring."""

    joint_loss: bool = False

    def build(self) -> None:
        super().build()
        self._loss_terms: Dict[str, Tuple[torch.Tensor, LossTargets]] = {}
        self._module_updates: Dict[str, int] = {}
        self._updated: set = set()
        for mid in self.module.keys():
            mod = self.module[mid].unwrapped()
            if isinstance(mod, TargetNetworkAPI):
                mod.make_target_networks()
        self.precision = getattr(self.config, "precision", "fp32")
        if self.precision not in AUTOCAST_DTYPES:
            raise ValueError(f"precision={self.precision!r} is invalid; expected one of {tuple(AUTOCAST_DTYPES)}")
        if self.precision == "bf16" and self._device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise ValueError(f"precision='bf16' needs a GPU with bfloat16 support; {torch.cuda.get_device_name()} "
                             f"has none (use precision='fp32')")
        self._precision_hooks: List[Any] = []
        if self.precision != "fp32":  # after make_target_networks: the target copies get the hooks too
            for mid in self.module.keys():
                self._precision_hooks += install_fp32_outputs(self.module[mid], self._device.type)

    def log_policy_entropy(self, module_id: str, entropy: torch.Tensor, filled: torch.Tensor) -> None:
        """Log :data:`POLICY_ENTROPY` of ``module_id``: ``entropy [B, L]`` averaged over ``filled``."""
        with torch.no_grad():
            f = filled.float()
            value = (entropy.float() * f).sum() / f.sum().clamp(min=1.0)
        self.metrics.log_value((module_id, POLICY_ENTROPY), value.item(), window=1)

    # -- precision -------------------------------------------------------------------------------
    def precision_context(self):
        """The one autocast context of the learner's forwards and losses (``config.precision``): a
        ``torch.autocast`` on the learner's device type for "bf16", nothing for "fp32". Learner-side
        computations outside :meth:`_uncompiled_update` must run their forwards inside it."""
        dtype = AUTOCAST_DTYPES[self.precision]
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self._device.type, dtype=dtype)

    def _uncompiled_update(self, batch: Dict, **kwargs):
        """RLlib's update with the forward pass and the losses inside :meth:`precision_context`;
        the outputs and losses leave it in fp32, gradients and optimizer steps run outside it."""
        self._compute_off_policyness(batch)
        with self.precision_context():
            fwd_out = self.module.forward_train(batch)
            if self.precision != "fp32":
                fwd_out = to_fp32(fwd_out)
            loss_per_module = self.compute_losses(fwd_out=fwd_out, batch=batch)
        gradients = self.compute_gradients(loss_per_module)
        with contextlib.ExitStack() as stack:
            if self.config.num_learners > 1:
                for mod in self.module.values():
                    if isinstance(mod, torch.nn.Module):  # DDP: no gradient sync before the postprocessing
                        stack.enter_context(mod.no_sync())
            postprocessed = self.postprocess_gradients(gradients)
            self.apply_gradients(postprocessed)
        return fwd_out, loss_per_module, {}

    # -- optimizers ------------------------------------------------------------------------------
    def optimizer_groups(self, module_id: str, module, config) -> Dict[str, Tuple[List[torch.nn.Parameter], float]]:
        """``{optimizer name: (parameters, learning rate)}`` of one (unwrapped) module."""
        raise NotImplementedError(f"{type(self).__name__} must define optimizer_groups()")

    def configure_optimizers_for_module(self, module_id, config=None) -> None:
        module = self._module[module_id]
        module = module.unwrapped() if hasattr(module, "unwrapped") else module
        for name, (params, lr) in self.optimizer_groups(module_id, module, config).items():
            params = list(params)
            self.register_optimizer(module_id=module_id, optimizer_name=name,
                                    optimizer=make_optimizer(config.optimizer, params, lr,
                                                             getattr(config, "optimizer_eps", None)),
                                    params=params, lr_or_lr_schedule=lr)

    # -- losses ----------------------------------------------------------------------------------
    def compute_losses_for_module(self, *, module_id: str, config, batch: Dict[str, Any],
                                  fwd_out: Dict[str, Any]) -> Dict[str, torch.Tensor]:
        """``{optimizer name: loss}`` of one module (per-module algorithms)."""
        raise NotImplementedError(f"{type(self).__name__} must define compute_losses_for_module()")

    def compute_joint_losses(self, *, batch: Dict[str, Dict[str, Any]],
                             fwd_out: Dict[str, Dict[str, Any]]) -> Dict[str, Tuple[torch.Tensor, LossTargets]]:
        """``{term name: (loss, [(module id, optimizer name), ...])}`` over all modules (joint algorithms)."""
        raise NotImplementedError(f"{type(self).__name__} sets joint_loss but does not define compute_joint_losses()")

    def compute_loss_for_module(self, *, module_id, config, batch, fwd_out):  # RLlib's abstract method
        raise NotImplementedError("OfflineMARLTorchLearner computes its losses in compute_losses()")

    def compute_losses(self, *, fwd_out, batch) -> Dict[str, Any]:
        present = [mid for mid in fwd_out if mid in batch]
        if self.joint_loss:
            terms = self.compute_joint_losses(batch={m: batch[m] for m in present},
                                              fwd_out={m: fwd_out[m] for m in present})
        else:
            terms = {}
            for mid in present:
                losses = self.compute_losses_for_module(module_id=mid, config=self.config.get_config_for_module(mid),
                                                        batch=batch[mid], fwd_out=fwd_out[mid])
                terms.update({f"{mid}/{name}": (loss, [(mid, name)]) for name, loss in losses.items()})
        if self.precision != "fp32":  # the losses leave the autocast region in fp32
            terms = {k: (loss.float(), targets) for k, (loss, targets) in terms.items()}
        self._loss_terms = terms
        # RLlib reports a `total_loss` per key of this dict: a term that trains one module is booked
        # under that module, a term that trains several (a joint term) under RLlib's ALL_MODULES.
        per_module: Dict[str, torch.Tensor] = {}
        for loss, targets in terms.values():
            mids = {m for m, _ in targets}
            mid = mids.pop() if len(mids) == 1 else ALL_MODULES
            per_module[mid] = per_module[mid] + loss if mid in per_module else loss
        self._updated = {mid for _, targets in terms.values() for mid, _ in targets}
        return per_module

    def compute_gradients(self, loss_per_module, **kwargs) -> Dict[Any, torch.Tensor]:
        """Each loss term back-propagated on its own; only its optimizers' parameters keep the gradient."""
        for optim in self._optimizer_parameters:
            optim.zero_grad(set_to_none=True)
        grads: Dict[Any, torch.Tensor] = {}
        terms = [(loss, targets) for loss, targets in self._loss_terms.values() if loss.requires_grad]
        for i, (loss, targets) in enumerate(terms):
            params = {}
            for mid, name in targets:
                params.update(self.filter_param_dict_for_optimizer(self._params, self.get_optimizer(mid, name)))
            for p in params.values():
                p.grad = None  # drop what earlier terms left on these parameters
            loss.backward(retain_graph=i < len(terms) - 1)
            for pid, p in params.items():
                if p.grad is not None:
                    g = p.grad if i == len(terms) - 1 else p.grad.clone()
                    grads[pid] = grads[pid] + g if pid in grads else g
        self._loss_terms = {}
        return grads

    # -- target networks -------------------------------------------------------------------------
    def after_gradient_based_update(self, *, timesteps: Dict[str, Any]) -> None:
        super().after_gradient_based_update(timesteps=timesteps)
        for mid in self._updated:
            self._module_updates[mid] = self._module_updates.get(mid, 0) + 1
            mod = self.module[mid].unwrapped()
            if not isinstance(mod, TargetNetworkAPI):
                continue
            cfg = self.config.get_config_for_module(mid)
            tau = getattr(cfg, "target_update_tau", None)
            if tau is None and self._module_updates[mid] % int(cfg.target_update_interval) != 0:
                continue
            for main_net, target_net in mod.get_target_network_pairs():
                update_target_network(main_net=main_net, target_net=target_net, tau=1.0 if tau is None else tau)
        self._updated = set()

    def module_updates(self, module_id: str) -> int:
        """Gradient updates of ``module_id`` so far (drives the target-network schedule)."""
        return self._module_updates.get(module_id, 0)

    def get_state(self, components=None, *, not_components=None, **kwargs):
        state = super().get_state(components, not_components=not_components, **kwargs)
        state[TARGET_UPDATES_STATE] = dict(self._module_updates)
        return state

    def set_state(self, state) -> None:
        super().set_state(state)
        if TARGET_UPDATES_STATE in state:
            self._module_updates = dict(state[TARGET_UPDATES_STATE])
