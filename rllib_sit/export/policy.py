"""Run exported actors without Ray or RLlib: ``ExportedPolicy.load(folder).act(...)``.

Needs NumPy and one runtime: ``torch`` (TorchScript files) or ``onnxruntime`` (ONNX files). Nothing
here imports Ray, RLlib or the rest of rllib_sit.

An exported folder (written by :func:`rllib_sit.export.export_checkpoint`)::

    policy.json             manifest: agents -> module ids, per module sizes and file names
    <module>.pt             TorchScript: one step of the actor
    <module>.onnx           ONNX: the same step

One step of a module (both files, batch axis B dynamic):

* discrete: ``(obs [B, obs_dim] f32, prev_action [B] i64, h [B, H] f32, action_mask [B, n] f32)
  -> (logits [B, n] f32 (unavailable actions at -1e10), h_out [B, H])``; the logits are the
  module's acting logits: MABCQ's are its Q values with the actions that fail its behaviour filter
  (BCQ's threshold ζ) at -1e10 too, so both action rules below apply the filter;
* continuous: ``(obs, prev_action [B, act_dim] f32 (box action), h) -> (mean [B, act_dim]
  (pre-tanh), log_std [B, act_dim] (clamped), h_out)``.

The recurrent state is what the RLlib module carries: the GRU hidden ``h`` and the previous action
(``-1`` before the first step of a discrete agent, zeros for a continuous one); a module with
several GRU states carries them concatenated in ``h`` (manifest ``h_parts``, e.g. MABCQ's
``[["h", 64], ["h_mu", 64]]``: Q's, then the behaviour model's; ``hidden`` is their sum). Actions:
discrete greedy = arg max of the masked logits, sampled = a draw from their softmax; continuous greedy =
``tanh(mean)``, sampled by the module's ``exploration`` rule (manifest field, the rule of the
algorithm's own sampled evaluation): ``"policy"`` (the default) ``tanh(mean + exp(log_std)·ε)``,
``"gaussian_noise"`` (FACMAC's deterministic actor) :func:`gaussian_noise_action`
``clip(tanh(mean) + std·ε, -1, 1)``; either mapped onto the action box ``[low, high]`` (the env's
action, which is also the next ``prev_action``).
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, Mapping, Optional, Tuple

import numpy as np

MANIFEST_FILE = "policy.json"
MANIFEST_FORMAT = "rllib_sit.exported_policy"
MANIFEST_VERSION = 1
BACKENDS = ("torchscript", "onnx")

# Tensor names of the exported step (ONNX input/output names; TorchScript argument order).
DISCRETE_INPUTS = ("obs", "prev_action", "h", "action_mask")
DISCRETE_OUTPUTS = ("logits", "h_out")
CONTINUOUS_INPUTS = ("obs", "prev_action", "h")
CONTINUOUS_OUTPUTS = ("mean", "log_std", "h_out")

State = Dict[str, np.ndarray]


class ExportError(ValueError):
    """A bad exported folder or bad inputs: the message names the file/field and what was expected."""


# How a module's sampled (explore=True) actions are drawn: the manifest's per-module "exploration"
# ({"kind": ..., parameters}), written by the exporter from the module's ``exploration_spec()``.
EXPLORE_POLICY = "policy"  # a draw from the policy: softmax of the logits / tanh of a Gaussian(mean, exp(log_std))
EXPLORE_GAUSSIAN_NOISE = "gaussian_noise"  # deterministic tanh actor + N(0, std²) in [-1, 1] units, clipped
EXPLORATION_KINDS = (EXPLORE_POLICY, EXPLORE_GAUSSIAN_NOISE)


def gaussian_noise_action(action, noise, std: float):
    """The ``"gaussian_noise"`` rule (FACMAC's sampled action): ``clip(action + std·noise, -1, 1)``
    for an ``action`` in [-1, 1] units and standard-normal ``noise`` of its shape. Works on NumPy
    arrays and torch tensors alike: the RLlib module and the exported policy share it."""
    return (action + std * noise).clip(-1.0, 1.0)


def exploration_of(spec: Dict[str, Any], where: str) -> Dict[str, Any]:
    """A module spec's ``exploration`` (absent: ``{"kind": "policy"}``, exports written before the
    field existed), checked; ``where`` names the module in errors."""
    exp = spec.get("exploration")
    exp = {"kind": EXPLORE_POLICY} if exp is None else exp
    if not isinstance(exp, dict) or exp.get("kind") not in EXPLORATION_KINDS:
        raise ExportError(f"{where}: field 'exploration' is {exp!r}; expected {{'kind': one of {EXPLORATION_KINDS}}}")
    if exp["kind"] == EXPLORE_GAUSSIAN_NOISE:
        std = exp.get("std")
        if bool(spec.get("discrete")) or isinstance(std, bool) or not isinstance(std, (int, float)) or std < 0:
            raise ExportError(f"{where}: field 'exploration' is {exp!r}; expected 'gaussian_noise' only on a "
                              f"continuous module, with a number 'std' >= 0")
    return dict(exp)


def check_num_threads(num_threads: Any) -> int:
    if not isinstance(num_threads, int) or isinstance(num_threads, bool) or num_threads < 1:
        raise ValueError(f"num_threads={num_threads!r} is invalid; expected an int >= 1")
    return num_threads


class _TorchScriptRunner:
    """A TorchScript step run with ``num_threads`` intra-op threads.

    torch's thread count is one per process: each call sets it to ``num_threads`` and puts the
    caller's value back afterwards, so the policy runs with its own count without changing the
    host program's torch setting."""

    def __init__(self, path: str, num_threads: int = 1):
        import warnings

        import torch

        self._torch = torch
        self.num_threads = check_num_threads(num_threads)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit.load is deprecated in torch >= 2.10
            self.module = torch.jit.load(path, map_location="cpu")
        self.module.eval()

    def __call__(self, *inputs: np.ndarray):
        torch = self._torch
        before = torch.get_num_threads()
        if before != self.num_threads:
            torch.set_num_threads(self.num_threads)
        try:
            with torch.no_grad():
                out = self.module(*(torch.from_numpy(np.ascontiguousarray(x)) for x in inputs))
        finally:
            if before != self.num_threads:
                torch.set_num_threads(before)
        return tuple(o.numpy() for o in out)


class _OnnxRunner:
    def __init__(self, path: str, num_threads: int = 1):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = check_num_threads(num_threads)
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(path, sess_options=opts, providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]

    def __call__(self, *inputs: np.ndarray):
        return tuple(self.session.run(None, dict(zip(self.inputs, inputs))))


RUNNERS = {"torchscript": _TorchScriptRunner, "onnx": _OnnxRunner}


def _default_backend() -> str:
    try:
        import torch  # noqa: F401

        return "torchscript"
    except ImportError:
        return "onnx"


class ExportedActor:
    """One exported module (one agent type): batched steps on numpy arrays.

    Attributes: ``module_id``, ``discrete``, ``obs_dim``, ``n_actions``, ``act_dim``, ``hidden``,
    ``action_low``/``action_high`` (continuous), ``backend``, ``exploration`` (how ``explore`` samples),
    ``h_parts`` (``[(name, width)]`` of the GRU states in ``h``: ``[("h", hidden)]`` but for e.g. MABCQ).
    """

    def __init__(self, module_id: str, spec: Dict[str, Any], folder: str, backend: str, num_threads: int = 1):
        self.module_id = module_id
        self.spec = dict(spec)
        self.discrete = bool(spec["discrete"])
        self.obs_dim, self.hidden = int(spec["obs_dim"]), int(spec["hidden"])
        self.n_actions, self.act_dim = int(spec.get("n_actions") or 0), int(spec.get("act_dim") or 0)
        self.action_low, self.action_high = float(spec.get("action_low", -1.0)), float(spec.get("action_high", 1.0))
        self.backend = backend
        self.h_parts = [(str(n), int(w)) for n, w in spec.get("h_parts") or [("h", self.hidden)]]
        self.exploration = exploration_of(spec, f"{os.path.join(folder, MANIFEST_FILE)}: module {module_id!r}")
        file_name = (spec.get("files") or {}).get(backend)
        if not file_name:
            raise ExportError(f"{os.path.join(folder, MANIFEST_FILE)}: module {module_id!r} has no {backend} file; "
                              f"it has {sorted(spec.get('files') or {})}")
        self.path = os.path.join(folder, file_name)
        if not os.path.isfile(self.path):
            raise ExportError(f"{self.path}: missing; expected the {backend} file of module {module_id!r}")
        try:
            self._run = RUNNERS[backend](self.path, num_threads)
        except ImportError as e:
            need = "torch" if backend == "torchscript" else "onnxruntime"
            raise ImportError(f"{backend} backend needs {need} ({e}); pip install {need}") from None
        except Exception as e:  # noqa: BLE001 - the runtimes raise their own error types for bad files
            raise ExportError(f"{self.path}: could not be loaded as {backend} ({type(e).__name__}: {e})") from None

    def initial_state(self, batch: int = 1) -> State:
        """``{"h": zeros [B, H], "prev_action": -1 [B] (discrete) / zeros [B, act_dim]}``."""
        prev = (np.full(batch, -1, np.int64) if self.discrete else np.zeros((batch, self.act_dim), np.float32))
        return {"h": np.zeros((batch, self.hidden), np.float32), "prev_action": prev}

    def _check(self, name: str, x: np.ndarray, shape: tuple) -> None:
        if x.shape != shape:
            raise ExportError(f"module {self.module_id!r}: {name} has shape {list(x.shape)}, expected {list(shape)}")

    def forward(self, obs: np.ndarray, action_mask: Optional[np.ndarray], state: State) -> Tuple[np.ndarray, ...]:
        """The raw step: discrete ``(logits, h')``, continuous ``(mean, log_std, h')``."""
        obs = np.asarray(obs, np.float32)
        if obs.ndim != 2:
            raise ExportError(f"module {self.module_id!r}: obs has shape {list(obs.shape)}, expected "
                              f"[batch, {self.obs_dim}]")
        B = obs.shape[0]
        self._check("obs", obs, (B, self.obs_dim))
        h = np.asarray(state["h"], np.float32)
        self._check("state['h']", h, (B, self.hidden))
        if self.discrete:
            prev = np.asarray(state["prev_action"], np.int64)
            self._check("state['prev_action']", prev, (B,))
            mask = np.ones((B, self.n_actions), np.float32) if action_mask is None else \
                np.asarray(action_mask, np.float32)
            self._check("action_mask", mask, (B, self.n_actions))
            return self._run(obs, prev, h, mask)
        prev = np.asarray(state["prev_action"], np.float32)
        self._check("state['prev_action']", prev, (B, self.act_dim))
        return self._run(obs, prev, h)

    def act(self, obs: np.ndarray, action_mask: Optional[np.ndarray] = None, state: Optional[State] = None,
            explore: bool = False, rng: Optional[np.random.Generator] = None) -> Tuple[np.ndarray, State]:
        """``obs [B, obs_dim]``, ``action_mask [B, n_actions]`` (discrete; None = all available),
        ``state`` (None = initial) -> ``(actions [B] int64 / [B, act_dim] float32 in the box, new state)``.

        ``explore``: sample from the policy (with ``rng``, default a fresh ``default_rng()``) instead
        of the greedy action, by the module's ``exploration`` rule (module docstring).
        """
        obs = np.asarray(obs, np.float32)
        state = self.initial_state(obs.shape[0] if obs.ndim == 2 else 1) if state is None else state
        out = self.forward(obs, action_mask, state)
        if explore and rng is None:
            rng = np.random.default_rng()
        if self.discrete:
            logits, h = out
            if explore:  # Gumbel-max: a draw from softmax(logits); masked logits (-1e10) never win
                logits = logits.astype(np.float64) - np.log(-np.log(rng.uniform(1e-12, 1.0, logits.shape)))
            actions = logits.argmax(-1).astype(np.int64)
            return actions, {"h": h, "prev_action": actions}
        mean, log_std, h = out
        if not explore:
            u = np.tanh(mean)
        elif self.exploration["kind"] == EXPLORE_GAUSSIAN_NOISE:
            noise = rng.standard_normal(mean.shape).astype(np.float32)
            u = gaussian_noise_action(np.tanh(mean), noise, np.float32(self.exploration["std"]))
        else:
            u = np.tanh(mean + np.exp(log_std) * rng.standard_normal(mean.shape).astype(np.float32))
        actions = (self.action_low + (u + 1.0) * 0.5 * (self.action_high - self.action_low)).astype(np.float32)
        return actions, {"h": h, "prev_action": actions}


class ExportedPolicy:
    """Every exported module of a checkpoint, and which agent uses which.

    Usage::

        policy = ExportedPolicy.load("exported/")          # or backend="onnx"
        obs, infos = env.reset(seed=0)                      # PettingZoo: {agent: obs}
        state = None
        while ...:
            masks = {a: infos[a]["action_mask"] for a in obs}
            actions, state = policy.act(obs, masks, state)  # {agent: action}, carried state
            obs, rewards, terms, truncs, infos = env.step(actions)

    Attributes: ``actors`` (module id -> :class:`ExportedActor`), ``agent_modules`` (agent id ->
    module id), ``manifest`` (the ``policy.json`` contents), ``num_threads``.

    Threads: every step runs with ``num_threads`` intra-op threads (default 1), whatever torch's
    process-wide default is. One step of a small recurrent actor is far too little work to share
    between threads: with torch's default (one thread per core) each ``act()`` pays for waking
    and synchronising the thread pool (issue 21 measured 89 ms per ``act()`` with the default
    against 0.4 ms with one thread on a loaded 2-core machine; ONNX Runtime, run with one thread
    here too, 0.4 ms). Raise it only for large batches of agents. torch's count is per process:
    each step sets it and puts the caller's value back.
    """

    def __init__(self, folder: str, manifest: Dict[str, Any], backend: str, num_threads: int = 1):
        self.folder, self.manifest, self.backend = folder, manifest, backend
        self.num_threads = check_num_threads(num_threads)
        self.actors: Dict[str, ExportedActor] = {
            m: ExportedActor(m, spec, folder, backend, num_threads) for m, spec in manifest["modules"].items()}
        self.agent_modules: Dict[str, str] = dict(manifest.get("agents") or {})
        for agent, module in self.agent_modules.items():
            if module not in self.actors:
                raise ExportError(f"{os.path.join(folder, MANIFEST_FILE)}: agent {agent!r} maps to module "
                                  f"{module!r}; expected one of {sorted(self.actors)}")

    @classmethod
    def load(cls, folder: str, backend: Optional[str] = None, num_threads: int = 1) -> "ExportedPolicy":
        """Load an exported folder; ``backend`` ``"torchscript"`` (needs torch) or ``"onnx"`` (needs
        onnxruntime); default torchscript if torch is installed, else onnx. ``num_threads``: intra-op
        threads of every step (default 1; see the class docstring)."""
        backend = backend or _default_backend()
        if backend not in BACKENDS:
            raise ValueError(f"backend={backend!r} is invalid; expected one of {BACKENDS}")
        check_num_threads(num_threads)
        path = os.path.join(os.fspath(folder), MANIFEST_FILE)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path}: missing; expected a folder written by 'rllib-sit export'")
        try:
            with open(path) as f:
                manifest = json.load(f)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ExportError(f"{path}: not valid JSON ({e}); expected the exported policy's manifest") from None
        if manifest.get("format") != MANIFEST_FORMAT or not isinstance(manifest.get("modules"), dict):
            raise ExportError(f"{path}: field 'format' is {manifest.get('format')!r}; expected {MANIFEST_FORMAT!r} "
                              f"with a 'modules' table")
        if manifest.get("version") != MANIFEST_VERSION:
            raise ExportError(f"{path}: field 'version' is {manifest.get('version')!r}; expected {MANIFEST_VERSION}")
        return cls(os.fspath(folder), manifest, backend, num_threads)

    @property
    def agents(self):
        return list(self.agent_modules)

    def actor_for(self, agent: str) -> ExportedActor:
        if agent not in self.agent_modules:
            raise ExportError(f"unknown agent {agent!r}; expected one of {self.agents}")
        return self.actors[self.agent_modules[agent]]

    def initial_state(self, agents=None) -> Dict[str, State]:
        """``{agent: {"h": [H], "prev_action": scalar / [act_dim]}}``."""
        out = {}
        for agent in (self.agents if agents is None else agents):
            s = self.actor_for(agent).initial_state(1)
            out[agent] = {k: v[0] for k, v in s.items()}
        return out

    def act(self, observations: Mapping[str, Any], action_masks: Optional[Mapping[str, Any]] = None,
            state: Optional[Mapping[str, State]] = None, explore: bool = False,
            rng: Optional[np.random.Generator] = None) -> Tuple[Dict[str, Any], Dict[str, State]]:
        """One step of the agents in ``observations`` (``{agent: obs [obs_dim]}``; a PettingZoo Dict
        observation ``{"observation", "action_mask"}`` or RLlib's ``{"obs", "action_mask"}`` works too).

        ``action_masks``: ``{agent: [n_actions]}`` (discrete; absent = all available). ``state``:
        what the last call returned (None = initial). Returns ``({agent: action}, new state)``:
        int actions for discrete agents, box actions ``[act_dim]`` for continuous ones. Agents of
        one module are run as one batch.
        """
        state = dict(state or {})
        if explore and rng is None:
            rng = np.random.default_rng()
        groups: Dict[str, list] = {}
        for agent in observations:
            groups.setdefault(self.actor_for(agent).module_id, []).append(agent)
        actions: Dict[str, Any] = {}
        new_state: Dict[str, State] = dict(state)
        for module, agents in groups.items():
            actor = self.actors[module]
            obs, masks = [], []
            for a in agents:
                o, m = _split_obs(observations[a])
                if action_masks is not None and a in action_masks:
                    m = action_masks[a]
                obs.append(np.asarray(o, np.float32).reshape(-1))
                masks.append(None if m is None else np.asarray(m, np.float32).reshape(-1))
            mask = None
            if actor.discrete and any(m is not None for m in masks):
                mask = np.stack([np.ones(actor.n_actions, np.float32) if m is None else m for m in masks])
            init = actor.initial_state(1)
            st = {k: np.stack([state[a][k] if a in state else init[k][0] for a in agents]) for k in init}
            acts, st_new = actor.act(np.stack(obs), mask, st, explore=explore, rng=rng)
            for i, a in enumerate(agents):
                actions[a] = int(acts[i]) if actor.discrete else acts[i]
                new_state[a] = {k: v[i] for k, v in st_new.items()}
        return actions, new_state


def _split_obs(o: Any) -> Tuple[Any, Any]:
    if isinstance(o, Mapping):
        for key in ("observation", "obs"):
            if key in o:
                return o[key], o.get("action_mask")
        raise ExportError(f"observation dict has keys {sorted(o)}; expected 'observation' or 'obs' "
                          f"(and optionally 'action_mask')")
    return o, None
