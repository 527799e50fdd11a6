"""Export the actors of an rllib_sit checkpoint to TorchScript and ONNX (``rllib-sit export``).

Every agent module of the checkpoint that is a
:class:`~rllib_sit.models.recurrent_agent.RecurrentAgentTorchRLModule` (the agents of SIT, MABC and
every algorithm on the shared base; one module per agent type, or per agent) is restored with
RLlib's ``RLModule.from_checkpoint`` from ``<checkpoint>/learner_group/learner/rl_module/<module id>``;
its one-step function (``module.export_step()``: the actor's step, what ``forward_inference``
runs; MABCQ's adds its behaviour filter) is traced to TorchScript and exported to ONNX (the legacy
TorchScript-based exporter, ``dynamo=False``: it needs only ``onnx``).
Other modules (SIT's ``__ardnem__`` reward networks, mixers) are skipped. The agents -> modules
table comes from the checkpoint's config (env id and ``module_mapping``); each module's sampling rule
(``exploration``: its ``exploration_spec()``, e.g. FACMAC's Gaussian action noise) goes into the
manifest, so that the exported policy samples as the algorithm's own sampled evaluation does. The files are checked
against the torch actor on a random batch before the folder is renamed into place; the runtime
side is :mod:`rllib_sit.export.policy` (no Ray).
"""

from __future__ import annotations

import copy
import json
import os
import pickle
import re
import shutil
import uuid
import warnings
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from rllib_sit.data.io import publish_folder

from rllib_sit.models.actor_steps import ContinuousActorStep, DiscreteActorStep  # noqa: F401 (traced here)
from rllib_sit.export.policy import (BACKENDS, CONTINUOUS_INPUTS, CONTINUOUS_OUTPUTS, DISCRETE_INPUTS,
                                     DISCRETE_OUTPUTS, MANIFEST_FILE, MANIFEST_FORMAT, MANIFEST_VERSION, ExportError,
                                     ExportedActor, exploration_of)

MODULES_SUBDIR = os.path.join("learner_group", "learner", "rl_module")
CTOR_FILE = "class_and_ctor_args.pkl"
ONNX_OPSET = 17
FILE_SUFFIX = {"torchscript": ".pt", "onnx": ".onnx"}


def _example_inputs(step: nn.Module, discrete: bool, batch: int, seed: int = 0) -> Tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    obs = torch.randn(batch, step.obs_dim, generator=g)
    h = torch.randn(batch, step.hidden, generator=g)
    if discrete:
        prev = torch.randint(-1, step.n_actions, (batch,), generator=g)
        mask = (torch.rand(batch, step.n_actions, generator=g) < 0.7).float()
        mask[:, 0] = 1.0
        return obs, prev, h, mask
    prev = torch.rand(batch, step.act_dim, generator=g) * (step.high - step.low) + step.low
    return obs, prev, h


def _checkpoint_config(checkpoint: str) -> Dict[str, Any]:
    """The algorithm's config dict and class name from ``<checkpoint>/class_and_ctor_args.pkl``."""
    path = os.path.join(checkpoint, CTOR_FILE)
    if not os.path.isfile(path):
        return {}
    with open(path, "rb") as f:
        ctor = pickle.load(f)
    args, kwargs = (ctor.get("ctor_args_and_kwargs") or ((), {}))
    cfg = next((a for a in list(args) + list(kwargs.values()) if isinstance(a, dict) and "env" in a), None)
    if cfg is None:
        cfg = next((a.to_dict() for a in list(args) + list(kwargs.values()) if hasattr(a, "to_dict")), {})
    cls = ctor.get("class")
    return dict(cfg or {}, _algorithm=getattr(cls, "__name__", str(cls)))


def _agent_modules(cfg: Dict[str, Any], module_ids: Sequence[str]) -> Tuple[Dict[str, str], Optional[str]]:
    """``{agent: module id}`` from the env and ``module_mapping`` of the config (and a warning, if not)."""
    env_id = cfg.get("env")
    if not isinstance(env_id, str):
        return {}, "the checkpoint's config names no env id: policy.json has no agents table (act per module)"
    from rllib_sit.algorithms.common.mapping import module_ids_by_agent
    from rllib_sit.envs.registry import make_env

    env_config = {k: v for k, v in (cfg.get("env_config") or {}).items() if k != "check_actions"}
    try:
        env = make_env(env_id, **env_config)
    except Exception as e:  # noqa: BLE001 - an env registered only in the training process
        return {}, f"env {env_id!r} could not be built here ({e}): policy.json has no agents table"
    mapping = module_ids_by_agent(env.info.agents, env.info.agent_types, cfg.get("module_mapping") or "agent_type")
    env.close()
    return {a: m for a, m in mapping.items() if m in module_ids}, None


def _recurrent_module_dirs(checkpoint: str) -> Tuple[Dict[str, str], Dict[str, str]]:
    """``({module id: folder} of RecurrentAgentTorchRLModules, {module id: class name} of the others)``."""
    from rllib_sit.models.recurrent_agent import RecurrentAgentTorchRLModule

    root = os.path.join(checkpoint, MODULES_SUBDIR)
    if not os.path.isdir(root):
        raise FileNotFoundError(f"{root}: missing; expected an RLlib algorithm checkpoint (algo.save_to_path(...)) "
                                f"of an rllib_sit algorithm")
    ours, others = {}, {}
    for name in sorted(os.listdir(root)):
        ctor_path = os.path.join(root, name, CTOR_FILE)
        if not os.path.isfile(ctor_path):
            continue
        try:
            with open(ctor_path, "rb") as f:
                cls = pickle.load(f).get("class")
        except Exception as e:  # noqa: BLE001 - unpickling raises anything for a damaged file
            raise ExportError(f"{ctor_path}: could not be read ({type(e).__name__}: {e}); expected RLlib's "
                              f"module class file") from None
        if isinstance(cls, type) and issubclass(cls, RecurrentAgentTorchRLModule):
            ours[name] = os.path.join(root, name)
        else:
            others[name] = getattr(cls, "__name__", str(cls))
    if not ours:
        raise ExportError(f"{root}: no RecurrentAgentTorchRLModule among the modules {others}; expected the agent "
                          f"modules of an rllib_sit algorithm")
    return ours, others


def _file_names(module_ids: Sequence[str]) -> Dict[str, str]:
    names: Dict[str, str] = {}
    for m in module_ids:
        base = re.sub(r"[^A-Za-z0-9_.-]", "_", m).strip(".") or "module"
        name, k = base, 1
        while name in names.values():
            name, k = f"{base}_{k}", k + 1
        names[m] = name
    return names


def _export_torchscript(step: nn.Module, example: Tuple[torch.Tensor, ...], path: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit is deprecated in torch >= 2.10, still there
        # nn.GRU's input-size checks become constants of the trace (the sizes are fixed per module)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        traced = torch.jit.trace(step, example, check_trace=False)
        torch.jit.save(traced, path)


def _export_onnx(step: nn.Module, example: Tuple[torch.Tensor, ...], path: str, discrete: bool) -> None:
    try:
        import onnx
    except ImportError as e:
        raise ImportError(f"ONNX export needs the onnx package ({e}); pip install 'rllib_sit[export]' or "
                          f"--format torchscript") from None
    inputs, outputs = (DISCRETE_INPUTS, DISCRETE_OUTPUTS) if discrete else (CONTINUOUS_INPUTS, CONTINUOUS_OUTPUTS)
    dynamic = {n: {0: "batch"} for n in inputs + outputs}
    with warnings.catch_warnings():
        # The legacy exporter warns that it is deprecated, and that a GRU exported with batch > 1
        # needs its initial state as an input: it is one (h).
        warnings.simplefilter("ignore")
        torch.onnx.export(step, example, path, dynamo=False, input_names=list(inputs), output_names=list(outputs),
                          dynamic_axes=dynamic, opset_version=ONNX_OPSET)
    onnx.checker.check_model(path)


def _check_export(actor_file: ExportedActor, step: nn.Module, discrete: bool) -> None:
    """The exported file reproduces the torch step on a random batch (masks included)."""
    example = _example_inputs(step, discrete, batch=5, seed=1)
    with torch.no_grad():
        want = [t.numpy() for t in step(*example)]
    got = actor_file._run(*(t.numpy() for t in example))
    for name, w, g in zip(DISCRETE_OUTPUTS if discrete else CONTINUOUS_OUTPUTS, want, got):
        if g.shape != w.shape or not np.allclose(g, w, rtol=1e-4, atol=1e-5):
            raise ExportError(f"{actor_file.path}: output {name!r} differs from the torch actor (max abs diff "
                              f"{np.max(np.abs(g - w)) if g.shape == w.shape else 'shape ' + str(g.shape)}); "
                              f"expected equal to 1e-5")


def export_checkpoint(checkpoint: str, out: str, formats: Sequence[str] = BACKENDS, *,
                      overwrite: bool = False) -> str:
    """Export every agent actor of ``checkpoint`` into the folder ``out`` and return ``out``.

    Args:
        checkpoint: an algorithm checkpoint folder (``algo.save_to_path()``, or a Tune trial's
            ``checkpoint_00000N``).
        out: the export folder (``policy.json`` + one file per module and format); written under a
            temporary name and renamed when complete.
        formats: any of ``"torchscript"``, ``"onnx"``.
        overwrite: replace an existing ``out``.
    """
    from ray.rllib.core.rl_module.rl_module import RLModule

    from rllib_sit._version import __version__

    formats = list(dict.fromkeys(formats))
    bad = [f for f in formats if f not in BACKENDS]
    if bad or not formats:
        raise ValueError(f"formats={formats} is invalid; expected one or more of {BACKENDS}")
    checkpoint = os.path.abspath(os.fspath(checkpoint))
    if not os.path.isdir(checkpoint):
        raise FileNotFoundError(f"{checkpoint}: no such checkpoint folder")
    out = os.path.abspath(os.fspath(out))
    if os.path.exists(out) and not overwrite:
        raise FileExistsError(f"{out}: already exists; pass overwrite=True (--overwrite) to replace it")
    module_dirs, skipped = _recurrent_module_dirs(checkpoint)
    cfg = _checkpoint_config(checkpoint)
    agents, warning = _agent_modules(cfg, list(module_dirs))
    names = _file_names(list(module_dirs))
    parent = os.path.dirname(out)
    os.makedirs(parent, exist_ok=True)
    tmp = os.path.join(parent, f".{os.path.basename(out)}.tmp-{uuid.uuid4().hex[:8]}")
    os.makedirs(tmp)
    try:
        modules: Dict[str, Any] = {}
        for module_id, folder in module_dirs.items():
            module = RLModule.from_checkpoint(folder)
            discrete = bool(module.discrete)
            # the module's acting step (the actor's, or e.g. MABCQ's with its behaviour filter), on copies
            step = copy.deepcopy(module.export_step()).float().cpu().eval()
            example = _example_inputs(step, discrete, batch=2)
            files: Dict[str, str] = {}
            for fmt in formats:
                files[fmt] = names[module_id] + FILE_SUFFIX[fmt]
                path = os.path.join(tmp, files[fmt])
                if fmt == "torchscript":
                    _export_torchscript(step, example, path)
                else:
                    _export_onnx(step, example, path, discrete)
            spec = {"discrete": discrete, "obs_dim": int(step.obs_dim), "hidden": int(step.hidden),
                    "n_actions": int(step.n_actions), "act_dim": int(step.act_dim),
                    "class": f"{type(module).__module__}.{type(module).__name__}", "files": files,
                    "inputs": list(DISCRETE_INPUTS if discrete else CONTINUOUS_INPUTS),
                    "outputs": list(DISCRETE_OUTPUTS if discrete else CONTINUOUS_OUTPUTS)}
            if not discrete:
                spec.update(action_low=float(step.low), action_high=float(step.high))
            if len(getattr(step, "h_parts", ())) > 1:  # h carries several GRU states (MABCQ: Q's and μ's)
                spec["h_parts"] = [[name, int(width)] for name, width in step.h_parts]
            # how explore=True samples: the rule of the module's own sampled evaluation
            spec["exploration"] = exploration_of({"discrete": discrete, "exploration": module.exploration_spec()},
                                                 f"module {module_id!r} ({type(module).__name__})")
            for fmt in formats:
                _check_export(ExportedActor(module_id, spec, tmp, fmt), step, discrete)
            modules[module_id] = spec
        manifest = {"format": MANIFEST_FORMAT, "version": MANIFEST_VERSION, "checkpoint": checkpoint,
                    "algorithm": cfg.get("_algorithm"), "env": cfg.get("env"),
                    "env_config": cfg.get("env_config") or {}, "module_mapping": cfg.get("module_mapping"),
                    "agents": agents, "modules": modules, "skipped_modules": skipped,
                    "package_version": __version__, "torch_version": torch.__version__, "onnx_opset": ONNX_OPSET}
        if warning:
            manifest["warning"] = warning
        with open(os.path.join(tmp, MANIFEST_FILE), "w") as f:
            json.dump(manifest, f, indent=2, default=str)
            f.write("\n")
        publish_folder(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out

