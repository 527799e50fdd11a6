"""The evaluated policy's actions on a dataset's own histories.

:class:`CheckpointPolicy` restores the agent modules of any rllib_sit checkpoint (every algorithm
of the package: the recurrent GRU agents, MABCQ's continuous BCQ agents, VD+TN's MLP agents) with
RLlib's ``RLModule.from_checkpoint`` — the modules the EnvRunners act with, as ``rllib evaluate``
and ``rllib-sit export`` use them — and runs each agent's ``forward_inference`` (greedy) or
``forward_exploration`` (sampled) over every episode of the dataset, step by step:

* the recurrent state is carried over the dataset's history: after step t the module's
  ``STATE_OUT`` (GRU state) is kept and its ``prev_action`` is replaced by the dataset's a_i^t, so
  π_i acts at step t+1 on τ_i^{t+1} = (o_i^0, a_i^0, ..., o_i^{t+1}) of the data — the usual
  approximation of off-policy evaluation with history-dependent policies (the history the policy
  would have produced itself is not in the data);
* agents of one module are one batch; episodes are processed in chunks.

Outputs: :class:`PolicyActions` (``actions [K, T+1, M, N(, A)]``: M draws per step, M = 1 greedy)
and, for importance sampling, :meth:`CheckpointPolicy.log_probs` (log π_i(a_i^t | τ_i^t) of the
dataset's actions; the recurrent GRU agents only).
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from rllib_sit.data import schema as S
from rllib_sit.envs.base import ACTION_MASK_KEY, OBS_KEY, EnvInfo

MODULES_SUBDIR = os.path.join("learner_group", "learner", "rl_module")
CTOR_FILE = "class_and_ctor_args.pkl"


class CheckpointError(ValueError):
    """A checkpoint the evaluator cannot use: the message names the folder/file and what was expected."""


@dataclass
class PolicyActions:
    """The evaluated policy's actions at every dataset step.

    ``actions``: ``[K, T+1, M, N]`` (discrete, int) or ``[K, T+1, M, N, A]`` (continuous, box actions);
    ``explore``: sampled (True) or greedy; ``M`` draws per step (1 for a deterministic policy).
    """

    actions: np.ndarray
    explore: bool

    @property
    def num_samples(self) -> int:
        return int(self.actions.shape[2])


def checkpoint_config(checkpoint: str) -> Dict[str, Any]:
    """The algorithm's config dict of ``checkpoint`` (``class_and_ctor_args.pkl``) plus ``_algorithm``."""
    from rllib_sit.export.exporter import _checkpoint_config

    path = os.path.join(checkpoint, CTOR_FILE)
    if not os.path.isfile(path):
        raise CheckpointError(f"{checkpoint}: missing {CTOR_FILE}; expected an RLlib algorithm checkpoint "
                              f"(algo.save_to_path(...) or a Tune trial's checkpoint_00000N)")
    try:
        return _checkpoint_config(checkpoint)
    except Exception as e:  # noqa: BLE001 - unpickling raises anything for a damaged file
        raise CheckpointError(f"{path}: could not be read ({type(e).__name__}: {e}); expected RLlib's "
                              f"algorithm class file") from None


def checkpoint_iteration(checkpoint: str) -> Optional[int]:
    """The training iteration a checkpoint was saved at (``algorithm_state.pkl``), None if unknown."""
    path = os.path.join(checkpoint, "algorithm_state.pkl")
    try:
        with open(path, "rb") as f:
            state = pickle.load(f)
        return int(state["training_iteration"])
    except Exception:  # noqa: BLE001 - missing or unreadable: the caller falls back to the folder name
        return None


class CheckpointPolicy:
    """The agent modules of a checkpoint and which agent uses which (see the module docstring).

    Args:
        checkpoint: an algorithm checkpoint folder.
        info: the dataset's :class:`EnvInfo`; its agents, types and sizes must match the checkpoint's.
    """

    def __init__(self, checkpoint: str, info: EnvInfo):
        checkpoint = os.path.abspath(os.path.expanduser(os.fspath(checkpoint)))
        if not os.path.isdir(checkpoint):
            raise FileNotFoundError(f"{checkpoint}: no such checkpoint folder")
        root = os.path.join(checkpoint, MODULES_SUBDIR)
        if not os.path.isdir(root):
            raise CheckpointError(f"{root}: missing; expected an RLlib algorithm checkpoint of an rllib_sit "
                                  f"algorithm (algo.save_to_path(...))")
        self.checkpoint, self.info = checkpoint, info
        self.config = checkpoint_config(checkpoint)
        self.algorithm = self.config.get("_algorithm")
        env_id = self.config.get("env")
        if isinstance(env_id, str) and env_id != info.env_id:
            raise CheckpointError(f"{checkpoint}: trained on env {env_id!r} but the dataset was recorded in "
                                  f"{info.env_id!r}; expected a dataset of {env_id}")
        from rllib_sit.algorithms.common.mapping import module_ids_by_agent

        self.agent_modules = module_ids_by_agent(info.agents, info.agent_types,
                                                 self.config.get("module_mapping") or "agent_type")
        missing = sorted({m for m in self.agent_modules.values() if not os.path.isdir(os.path.join(root, m))})
        if missing:
            have = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
            raise CheckpointError(f"{root}: no module folder for {missing} (agents {info.agents}, mapping "
                                  f"{self.config.get('module_mapping') or 'agent_type'!r}); it has {have}")
        from ray.rllib.core.rl_module.rl_module import RLModule

        self.modules = {}
        for m in dict.fromkeys(self.agent_modules.values()):
            module = RLModule.from_checkpoint(os.path.join(root, m))
            module.eval()
            self._check_module(m, module)
            self.modules[m] = module
        # {module id: env agent indices}, in env order
        self.members: Dict[str, List[int]] = {}
        for i, a in enumerate(info.agents):
            self.members.setdefault(self.agent_modules[a], []).append(i)

    def _check_module(self, module_id: str, module) -> None:
        mc = getattr(module, "model_config", None) or {}
        info = self.info
        want = {"obs_dim": info.obs_dim, "discrete": info.discrete}
        want.update({"n_actions": info.n_actions} if info.discrete else {"act_dim": info.act_dim})
        for key, value in want.items():
            if key in mc and mc[key] is not None and type(value)(mc[key]) != value:
                raise CheckpointError(f"{self.checkpoint}: module {module_id!r} has {key}={mc[key]!r} but the "
                                      f"dataset ({info.env_id}) has {key}={value!r}")

    # -- acting over the dataset --------------------------------------------------------------------
    def actions(self, columns: Dict[str, np.ndarray], lengths: np.ndarray, *, explore: bool = False,
                num_samples: int = 1, seed: int = 0, chunk_episodes: int = 256) -> PolicyActions:
        """π's action at every step t = 0..T of every episode (``num_samples`` draws when ``explore``).

        ``columns``: the dataset's ``obs``, ``actions`` (+ ``avail_actions``); ``lengths`` [K].
        Steps after an episode's end hold unused values.
        """
        import torch
        from ray.rllib.core.columns import Columns

        info = self.info
        M = int(num_samples) if explore else 1
        K, T, N = int(len(lengths)), info.episode_limit, info.n_agents
        shape = (K, T + 1, M, N) if info.discrete else (K, T + 1, M, N, info.act_dim)
        out = np.zeros(shape, np.int64 if info.discrete else np.float32)
        torch.manual_seed(int(seed))
        for lo in range(0, K, int(chunk_episodes)):
            idx = np.arange(lo, min(K, lo + int(chunk_episodes)))
            rows = slice(lo, lo + len(idx))
            steps = int(lengths[idx].max()) + 1  # t = 0..length: o^length is stored
            obs = np.asarray(columns[S.OBS][idx, :steps], np.float32)  # [B, steps, N, od]
            acts = np.asarray(columns[S.ACTIONS][idx, :steps - 1])
            avail = np.asarray(columns[S.AVAIL_ACTIONS][idx, :steps], np.float32) if info.discrete else None
            for m, members in self.members.items():
                module = self.modules[m]
                B = len(idx) * len(members)
                o = obs[:, :, members].transpose(0, 2, 1, 3).reshape(B, steps, -1)
                a = acts[:, :, members].swapaxes(1, 2).reshape(B, steps - 1, *acts.shape[3:])
                av = None if avail is None else avail[:, :, members].transpose(0, 2, 1, 3).reshape(B, steps, -1)
                state = _batched_state(module.get_initial_state(), B)
                with torch.no_grad():
                    for t in range(steps):
                        obs_t = {OBS_KEY: torch.from_numpy(np.ascontiguousarray(o[:, t]))}
                        if av is not None:
                            obs_t[ACTION_MASK_KEY] = torch.from_numpy(np.ascontiguousarray(av[:, t]))
                        batch = {Columns.OBS: obs_t}
                        if state:
                            batch[Columns.STATE_IN] = state
                        for j in range(M):
                            res = module.forward_exploration(batch) if explore else module.forward_inference(batch)
                            act = _to_env_action(res[Columns.ACTIONS], info)  # [B(, A)]
                            act = act.reshape(len(idx), len(members), *act.shape[1:])
                            out[rows, t, j, members] = act
                        if state:
                            state = dict(res[Columns.STATE_OUT])
                            if "prev_action" in state and t < steps - 1:  # teacher forcing: the data's a^t
                                prev = torch.from_numpy(np.ascontiguousarray(a[:, t]))
                                state["prev_action"] = prev.long() if info.discrete else prev.float()
        return PolicyActions(actions=out, explore=bool(explore))

    def log_probs(self, columns: Dict[str, np.ndarray], lengths: np.ndarray, *, explore: bool = False,
                  chunk_episodes: int = 256) -> np.ndarray:
        """log π_i(a_i^t | τ_i^t) of the dataset's actions ``[K, T, N]`` (0 on padding), for importance sampling.

        Sampled policies: the module's own ``log_prob`` (masked softmax / tanh-Gaussian density).
        Greedy discrete policies: log 1[a_i^t = arg max] (0 or -inf). Needs modules with
        ``log_prob`` over unrolled trajectories (the recurrent GRU agents of every algorithm but
        MABCQ-continuous and VD+TN); a greedy continuous policy has no density: both raise
        :class:`CheckpointError`.
        """
        import torch

        from rllib_sit.models.recurrent_agent import RecurrentAgentTorchRLModule

        info = self.info
        if not explore and not info.discrete:
            raise CheckpointError("importance sampling of a greedy continuous policy is undefined (a deterministic "
                                  "policy has no density); use --explore")
        other = sorted(m for m, mod in self.modules.items() if not isinstance(mod, RecurrentAgentTorchRLModule))
        if other:
            raise CheckpointError(f"{self.checkpoint}: module(s) {other} ({self.algorithm}) expose no action "
                                  f"probabilities; importance sampling needs the recurrent GRU agents")
        K, T, N = int(len(lengths)), info.episode_limit, info.n_agents
        out = np.zeros((K, T, N), np.float32)
        for lo in range(0, K, int(chunk_episodes)):
            idx = np.arange(lo, min(K, lo + int(chunk_episodes)))
            L = int(lengths[idx].max())
            obs = np.asarray(columns[S.OBS][idx, :L], np.float32)
            acts = np.asarray(columns[S.ACTIONS][idx, :L])
            avail = np.asarray(columns[S.AVAIL_ACTIONS][idx, :L], np.float32) if info.discrete else None
            for m, members in self.members.items():
                module = self.modules[m]
                B = len(idx) * len(members)
                o = torch.from_numpy(obs[:, :, members].transpose(0, 2, 1, 3).reshape(B, L, -1).copy())
                a_np = acts[:, :, members].swapaxes(1, 2).reshape(B, L, *acts.shape[3:])
                a = torch.from_numpy(a_np.copy())
                prev = _previous_actions(a, info.discrete)
                av = None if avail is None else torch.from_numpy(
                    avail[:, :, members].transpose(0, 2, 1, 3).reshape(B, L, -1).copy())
                with torch.no_grad():
                    if explore:
                        lp = module.log_prob(o, prev, a, av)
                    else:
                        logits = module.actor(o, prev, av)
                        lp = torch.where(logits.argmax(-1) == a.long(), 0.0, -np.inf)
                lp = lp.numpy().reshape(len(idx), len(members), L).swapaxes(1, 2)
                out[lo:lo + len(idx), :L, members] = lp
        filled = np.arange(T)[None, :] < np.asarray(lengths)[:, None]
        return np.where(filled[..., None], out, 0.0).astype(np.float32)


def _batched_state(state: Any, B: int) -> Dict[str, Any]:
    """The module's initial state (unbatched tensors) repeated over a batch of ``B``."""
    if not state:
        return {}
    return {k: v.unsqueeze(0).expand(B, *v.shape).clone() for k, v in state.items()}


def _previous_actions(a, discrete: bool):
    """a^{t-1} for t = 0..L-1: -1 (discrete) / zeros (continuous) at t = 0."""
    import torch

    if discrete:
        first = torch.full_like(a[:, :1], -1)
    else:
        first = torch.zeros_like(a[:, :1])
    return torch.cat([first, a[:, :-1]], 1)


def _to_env_action(actions, info: EnvInfo) -> np.ndarray:
    """A module's action output as the env's action: int (discrete) or the box action (continuous
    modules act in [-1, 1]; RLlib's ``normalize_actions`` maps that onto the box)."""
    a = actions.detach().cpu().numpy()
    if info.discrete:
        return a.astype(np.int64)
    a = np.clip(a.astype(np.float32), -1.0, 1.0)
    return (info.action_low + (a + 1.0) * 0.5 * (info.action_high - info.action_low)).astype(np.float32)


def constant_policy_actions(probs: Sequence[np.ndarray], K: int, T: int, *, num_samples: int = 1,
                            explore: bool = True, seed: int = 0) -> PolicyActions:
    """Actions of a memoryless policy in which agent i draws from ``probs[i]`` at every step
    (greedy: its arg max); for tests and worked examples with a known value."""
    rng = np.random.default_rng(seed)
    N = len(probs)
    M = int(num_samples) if explore else 1
    out = np.zeros((K, T + 1, M, N), np.int64)
    for i, p in enumerate(probs):
        p = np.asarray(p, np.float64)
        out[..., i] = rng.choice(len(p), size=(K, T + 1, M), p=p / p.sum()) if explore else int(np.argmax(p))
    return PolicyActions(actions=out, explore=bool(explore))
