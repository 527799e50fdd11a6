"""One-step transitions of each agent's own data (offline *decentralized* learning: agent i learns
from B_i = {(o_i, a_i, r, o_i′, done)} only). A batch for agent i's module holds agent i's columns
and the team's reward and flags, never another agent's action, observation or the global state.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Sequence

import numpy as np

from rllib_sit.data import schema as S
from rllib_sit.replay.keys import (ACTIONS, AVAIL_ACTIONS as AVAIL, BOOTSTRAP, EPISODE_INDEX, NEXT_AVAIL_ACTIONS as
                                   NEXT_AVAIL, NEXT_OBS, OBS, REWARD, STEP_INDEX, TERMINATED)

__all__ = ["AgentTransitionSampler", "PerAgentSamplers"]


class AgentTransitionSampler:
    """Uniform transitions (k, t) of each agent's own dataset B_i, sliced from a joint dataset.

    Args:
        episodes: the store's columns (``obs [K, T+1, N, od]``, ``actions``, ``reward``,
            ``terminated``, ``filled`` [+ ``avail_actions``]).
        agent_modules: module id of every agent (length N, one agent per module: ``agent_id`` mapping).
        seed: seed of the sampling RNG.
        bootstrap_truncated: whether the last step of an episode cut by the time limit (not
            terminated) bootstraps from the stored observation after it (``obs[length]``), as
            time-limit ends are treated by the BCQ / TD3+BC code (``not_done = 1 − terminal``) and
            by pymarl (``episode_limit``); False: y = r there, as at a real termination.

    A batch for module m (agent i) holds only agent i's columns (``replay.keys``: OBS, NEXT_OBS, ACTIONS, REWARD, TERMINATED, BOOTSTRAP, ...): its own
    observation at t and t+1, its own action (and masks), the team reward and the flags. Each
    agent draws its own transitions (the datasets of the paper are independent).
    """

    def __init__(self, episodes: Mapping[str, np.ndarray], agent_modules: Sequence[str], seed: int = 0,
                 bootstrap_truncated: bool = True):
        self.ep = episodes
        self.agent_modules = list(agent_modules)
        if len(set(self.agent_modules)) != len(self.agent_modules):
            raise ValueError(f"AgentTransitionSampler: one module per agent is required (module_mapping="
                             f"'agent_id'), got {self.agent_modules}")
        self.modules = list(self.agent_modules)
        self.index = {m: i for i, m in enumerate(self.agent_modules)}
        filled = np.asarray(self.ep[S.FILLED]) > 0
        self.T = filled.shape[1]
        self.k, self.t = np.nonzero(filled)  # every real step, episode-major
        term = np.asarray(self.ep[S.TERMINATED])[self.k, self.t] > 0
        if bootstrap_truncated:  # every real step has o[t+1] (the schema stores o^length)
            self.bootstrap = (~term).astype(np.float32)
        else:  # only steps followed by another real step
            nxt = np.zeros_like(filled)
            nxt[:, :-1] = filled[:, 1:]
            self.bootstrap = (nxt[self.k, self.t] & ~term).astype(np.float32)
        self.discrete = np.asarray(self.ep[S.ACTIONS]).ndim == 3
        self.rng = np.random.default_rng(seed)
        self.step_values: Dict[str, np.ndarray] = {}

    @property
    def num_transitions(self) -> int:
        return int(len(self.k))

    def set_step_values(self, values: Mapping[str, np.ndarray]) -> None:
        """Attach per-transition, per-agent values ``{key: [num_transitions, N]}`` (batches: ``key: [B]``)."""
        for key, v in values.items():
            if v.shape != (self.num_transitions, len(self.agent_modules)):
                raise ValueError(f"set_step_values[{key!r}]: expected shape ({self.num_transitions}, "
                                 f"{len(self.agent_modules)}), got {v.shape}")
            self.step_values[key] = np.ascontiguousarray(v, np.float32)

    def obs_moments(self, agent: int, chunk: int = 1 << 20):
        """Mean and standard deviation (float64, per feature) of agent ``agent``'s observations o_i^t
        over the real steps, read in chunks of ``chunk`` rows (the columns may be memory-mapped)."""
        obs = self.ep[S.OBS]
        total = np.zeros(obs.shape[-1])
        sq = np.zeros(obs.shape[-1])
        for lo in range(0, self.num_transitions, chunk):
            o = np.asarray(obs[self.k[lo:lo + chunk], self.t[lo:lo + chunk], agent], np.float64)
            total += o.sum(0)
            sq += np.square(o).sum(0)
        n = max(self.num_transitions, 1)
        mean = total / n
        return mean, np.sqrt(np.maximum(sq / n - np.square(mean), 0.0))

    def gather(self, rows: np.ndarray, agent: int) -> Dict[str, np.ndarray]:
        """Transitions ``rows`` (indices into the real steps) of agent ``agent``: only its own columns."""
        ep, k, t = self.ep, self.k[rows], self.t[rows]
        obs = ep[S.OBS]
        acts = ep[S.ACTIONS]
        out = {
            OBS: np.asarray(obs[k, t, agent], np.float32),
            NEXT_OBS: np.asarray(obs[k, t + 1, agent], np.float32),
            ACTIONS: np.asarray(acts[k, t, agent]).astype(np.int64 if self.discrete else np.float32),
            REWARD: np.asarray(ep[S.REWARD][k, t], np.float32),
            TERMINATED: np.asarray(ep[S.TERMINATED][k, t], np.float32),
            BOOTSTRAP: self.bootstrap[rows],
            EPISODE_INDEX: k.astype(np.int64),
            STEP_INDEX: t.astype(np.int64),
        }
        if self.discrete and S.AVAIL_ACTIONS in ep:
            av = ep[S.AVAIL_ACTIONS]
            out[AVAIL] = np.asarray(av[k, t, agent], np.float32)
            out[NEXT_AVAIL] = np.asarray(av[k, t + 1, agent], np.float32)
        for key, v in self.step_values.items():
            out[key] = v[rows, agent]
        return out

    def sample(self, batch_size: int, modules: Optional[Sequence[str]] = None) -> Dict[str, Dict[str, np.ndarray]]:
        """``batch_size`` uniform transitions per module (agent)."""
        return {m: self.gather(self.rng.integers(0, self.num_transitions, batch_size), self.index[m])
                for m in (modules or self.modules)}

    def get_state(self) -> Dict[str, Any]:
        return {"rng": self.rng.bit_generator.state}

    def set_state(self, state: Dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]


class PerAgentSamplers:
    """One :class:`AgentTransitionSampler` per agent, each on its own dataset B_i (N = 1), with the
    same ``sample``/checkpoint interface as a joint one."""

    def __init__(self, samplers: Mapping[str, AgentTransitionSampler]):
        self.samplers = dict(samplers)
        self.modules = list(self.samplers)

    def sample(self, batch_size: int, modules: Optional[Sequence[str]] = None) -> Dict[str, Dict[str, np.ndarray]]:
        return {m: self.samplers[m].sample(batch_size)[m] for m in (modules or self.modules)}

    def get_state(self) -> Dict[str, Any]:
        return {m: s.get_state() for m, s in self.samplers.items()}

    def set_state(self, state: Dict[str, Any]) -> None:
        for m, s in self.samplers.items():
            s.set_state(state[m])
