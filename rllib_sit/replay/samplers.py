"""Samplers of training batches from the memory-mapped episode store: no algorithm code.

* :class:`IndividualTrajectorySampler` — *individual trajectories* (episode k, agent j) grouped by
  module id (agent type or agent id), drawn uniformly or with given probabilities from one sum
  tree per module. A batch carries agent j's own columns plus every agent's observations (o_{-i}),
  and any per-(episode, step, agent) values an algorithm attached with :meth:`set_step_values`
  (SIT's r̂/û). SIT's DPER is this sampler with Eq. 7 probabilities.
* :class:`JointEpisodeSampler` — whole joint episodes (all agents, the global state, the team
  reward), drawn uniformly: what mixer-based algorithms (QMIX, ICQ, ...) train on. Its
  :meth:`JointEpisodeSampler.sample_by_module` also splits each episode into every agent's
  individual trajectory, grouped by module (episode-major, then the module's agents in order),
  so that shared agent modules see their agents and a mixer sees the joint episode.

Both accept the episodes as a dict of arrays or as the folder of a column cache, which they open
memory-mapped themselves: run as Ray actors (:func:`make_sampler_actor`, ``num_cpus=0``) they
share the algorithm's page-cache copy of the dataset instead of duplicating it.
"""

from __future__ import annotations

import os
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from rllib_sit.data import schema as S
from rllib_sit.replay import keys as K
from rllib_sit.replay.sum_tree import SumTree

Episodes = Union[Mapping[str, np.ndarray], str, os.PathLike]


def _open(episodes: Episodes) -> Mapping[str, np.ndarray]:
    if isinstance(episodes, (str, os.PathLike)):
        from rllib_sit.data.column_cache import load_cache

        return load_cache(episodes)
    return episodes


def effective_sample_size(probs: np.ndarray) -> float:
    """1 / Σ p² of a sampling distribution (n for uniform, 1 for a point mass)."""
    p = np.asarray(probs, np.float64)
    return float(1.0 / np.sum(p * p))


def _keep(batch: Dict[str, np.ndarray], keys: Optional[Sequence[str]]) -> Dict[str, np.ndarray]:
    return batch if keys is None else {k: batch[k] for k in keys if k in batch}


def _trim(filled: np.ndarray) -> int:
    return int(max(1, filled.sum(1).max()))


class TrajectoryGatherer:
    """The gathering half of :class:`IndividualTrajectorySampler`: individual trajectories (episode
    k, agent j) out of the episodes, with any per-step values attached, given their indices. No
    sampling state: a process holding the episodes (e.g. the algorithm, over its own memory maps)
    gathers the batches whose indices a sampler actor drew (:meth:`IndividualTrajectorySampler.
    sample_indices_many`), instead of receiving the gathered arrays through the object store.

    Args:
        episodes: the store's columns (``obs, actions, terminated, filled`` [+ ``reward``,
            ``avail_actions``]; leading axis = episode) or a column-cache folder.
        agent_modules: module id of every agent (length N): the agent types, or the agent ids.
    """

    def __init__(self, episodes: Episodes, agent_modules: Sequence[str]):
        self.ep = _open(episodes)
        self.agent_modules = list(agent_modules)
        self.modules = list(dict.fromkeys(self.agent_modules))
        self.members = {m: np.array([i for i, a in enumerate(self.agent_modules) if a == m]) for m in self.modules}
        self.K = int(self.ep[S.OBS].shape[0])
        self.T = int(self.ep[S.FILLED].shape[1])
        self.discrete = self.ep[S.ACTIONS].ndim == 3
        self.lengths = self.ep[S.FILLED].sum(1).astype(np.int64)
        self.step_values: Dict[str, np.ndarray] = {}

    def set_step_values(self, values: Mapping[str, np.ndarray]) -> None:
        """Attach per-step, per-agent values ``{key: [K, T, N]}``; batches carry ``key: [B, L]``."""
        for key, v in values.items():
            if v.shape[:2] != (self.K, self.T) or v.shape[2] != len(self.agent_modules):
                raise ValueError(f"set_step_values[{key!r}]: expected shape ({self.K}, {self.T}, "
                                 f"{len(self.agent_modules)}), got {v.shape}")
            self.step_values[key] = np.ascontiguousarray(v, np.float32)

    def gather(self, k: np.ndarray, j: np.ndarray, own_obs_only: bool = False) -> Dict[str, np.ndarray]:
        """Individual trajectories of agents ``j`` in episodes ``k``, trimmed to the longest.

        ``own_obs_only``: ``OBS_ALL`` holds agent j's own observations only (``[B, L+1, 1, od]``,
        ``AGENT_INDEX`` = 0), for decentralised networks that never read o_{-i}: N times less data.
        """
        L = int(max(1, self.lengths[k].max()))
        ep = self.ep
        acts = ep[S.ACTIONS]
        own_act = acts[k, :L, j] if self.discrete else acts[k, :L, j, :]
        B = len(k)
        if self.discrete:
            first = np.full((B, 1), -1, np.int64)
            zero_next = np.zeros((B, 1), np.int64)
        else:
            first = np.zeros((B, 1, acts.shape[-1]), np.float32)
            zero_next = np.zeros((B, 1) + acts.shape[3:], np.float32)
        filled = ep[S.FILLED][k, :L].astype(np.float32)
        next_filled = np.concatenate([filled[:, 1:], np.zeros((B, 1), np.float32)], 1)
        next_act = np.concatenate([own_act[:, 1:], zero_next], 1)
        next_act = next_act * (next_filled.astype(np.int64) if self.discrete else next_filled[..., None])
        out = {
            K.OBS_ALL: ep[S.OBS][k, :L + 1, j][:, :, None] if own_obs_only else ep[S.OBS][k, :L + 1],
            K.AGENT_INDEX: np.zeros_like(j, np.int64) if own_obs_only else j.astype(np.int64),
            K.ACTIONS: own_act,
            K.PREV_ACTIONS: np.concatenate([first, own_act], 1),
            K.NEXT_ACTIONS: next_act,
            K.TERMINATED: ep[S.TERMINATED][k, :L].astype(np.float32),
            K.FILLED: filled,
            K.NEXT_FILLED: next_filled,
            K.EPISODE_INDEX: k.astype(np.int64),
        }
        if S.REWARD in ep:
            out[K.REWARD] = ep[S.REWARD][k, :L].astype(np.float32)
        for key, v in self.step_values.items():
            out[key] = v[k, :L, j]
        if self.discrete and S.AVAIL_ACTIONS in ep:
            out[K.AVAIL_ACTIONS] = ep[S.AVAIL_ACTIONS][k, :L + 1, j]
        return out

    def gather_batch(self, indices: Mapping[str, Tuple[np.ndarray, np.ndarray]]) -> Dict[str, Dict[str, np.ndarray]]:
        """``{module: (k, j)}`` -> ``{module: gather(k, j)}``: one :meth:`IndividualTrajectorySampler.sample`
        batch from its indices."""
        return {m: self.gather(k, j) for m, (k, j) in indices.items()}


class IndividualTrajectorySampler(TrajectoryGatherer):
    """Individual trajectories per module id, one sum tree per module.

    Args:
        episodes: the store's columns (``obs, actions, terminated, filled`` [+ ``reward``,
            ``avail_actions``]; leading axis = episode) or a column-cache folder.
        agent_modules: module id of every agent (length N): the agent types, or the agent ids.
        seed: seed of the sampling RNG.

    The leaves of module m's tree are the pairs (k, j) with agent j mapped to m, in the order
    ``leaf = k * n_m + slot`` (slot = position of j among m's agents).
    """

    def __init__(self, episodes: Episodes, agent_modules: Sequence[str], seed: int = 0):
        super().__init__(episodes, agent_modules)
        self.rng = np.random.default_rng(seed)
        self.trees: Dict[str, SumTree] = {}
        self.set_probabilities(None)

    def num_trajectories(self, module_id: str) -> int:
        return self.K * len(self.members[module_id])

    # -- distribution ----------------------------------------------------------------------------
    def set_probabilities(self, probs: Optional[Mapping[str, np.ndarray]]) -> None:
        """Sampling weights per module (``[K * n_m]`` in leaf order; normalised here), or ``None``
        (or a missing module) for uniform sampling."""
        probs = dict(probs or {})
        unknown = set(probs) - set(self.modules)
        if unknown:
            raise ValueError(f"set_probabilities: unknown module ids {sorted(unknown)}; expected {self.modules}")
        for m in self.modules:
            n = self.num_trajectories(m)
            p = np.full(n, 1.0 / n) if probs.get(m) is None else np.asarray(probs[m], np.float64).reshape(-1)
            if p.shape != (n,) or not np.all(np.isfinite(p)) or p.min() < 0 or not p.sum() > 0:
                raise ValueError(f"set_probabilities[{m!r}]: expected {n} finite weights >= 0 with a positive "
                                 f"sum (episodes x agents of the module), got shape {p.shape}")
            tree = SumTree(n)
            tree.set_all(p)
            self.trees[m] = tree

    def probabilities(self, module_id: str) -> np.ndarray:
        p = self.trees[module_id].priorities()
        return p / p.sum()

    def ess(self) -> Dict[str, float]:
        """Effective sample size (trajectories) of each module's distribution."""
        return {m: effective_sample_size(self.probabilities(m)) for m in self.modules}

    # -- sampling --------------------------------------------------------------------------------
    def sample_indices(self, module_id: str, batch_size: int):
        leaves = self.trees[module_id].sample(batch_size, self.rng)
        n_m = len(self.members[module_id])
        return leaves // n_m, self.members[module_id][leaves % n_m]

    def sample(self, batch_size: int, modules: Optional[Sequence[str]] = None) -> Dict[str, Dict[str, np.ndarray]]:
        """One batch of ``batch_size`` individual trajectories per module (one actor round trip)."""
        out = {}
        for m in (modules or self.modules):
            k, j = self.sample_indices(m, batch_size)
            out[m] = self.gather(k, j)
        return out

    def sample_indices_many(self, batch_size: int, n: int,
                            modules: Optional[Sequence[str]] = None) -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
        """The indices of ``n`` consecutive :meth:`sample` calls, not gathered: ``{module: (k [n, B],
        j [n, B])}``, row u being call u's ``(k, j)``. The same draws from the same RNG stream (one
        ``rng.random`` of all the calls' uniforms, consumed in the calls' order: call by call, module
        by module), so the RNG ends where ``n`` :meth:`sample` calls leave it. One tiny actor round
        trip for ``n`` batches, which the caller gathers from its own episodes
        (:meth:`TrajectoryGatherer.gather_batch`)."""
        mods = list(modules or self.modules)
        u = self.rng.random(n * len(mods) * batch_size).reshape(n, len(mods), batch_size)
        out = {}
        for i, m in enumerate(mods):
            leaves = self.trees[m].sample_uniforms(u[:, i])
            n_m = len(self.members[m])
            out[m] = (leaves // n_m, self.members[m][leaves % n_m])
        return out

    # -- checkpointing ---------------------------------------------------------------------------
    def get_state(self) -> Dict[str, Any]:
        return {"leaves": {m: tree.priorities() for m, tree in self.trees.items()},
                "rng": self.rng.bit_generator.state, "step_values": dict(self.step_values)}

    def set_state(self, state: Dict[str, Any]) -> None:
        self.set_probabilities(state["leaves"])
        self.step_values = {}
        self.set_step_values(state.get("step_values") or {})
        self.rng.bit_generator.state = state["rng"]


class JointEpisodeSampler:
    """Uniformly drawn joint episodes: every agent's columns, the state and the team reward.

    ``agent_modules`` (module id of every agent) is needed only by :meth:`sample_by_module`.
    """

    def __init__(self, episodes: Episodes, seed: int = 0, agent_modules: Optional[Sequence[str]] = None):
        self.ep = _open(episodes)
        self.K = int(self.ep[S.FILLED].shape[0])
        self.rng = np.random.default_rng(seed)
        self._individual = (IndividualTrajectorySampler(self.ep, agent_modules) if agent_modules is not None
                            else None)

    def sample_indices(self, batch_size: int) -> np.ndarray:
        return self.rng.integers(0, self.K, batch_size)

    def gather(self, k: np.ndarray) -> Dict[str, np.ndarray]:
        """Episodes ``k`` trimmed to the longest: obs/state/avail have L+1 steps, the rest L."""
        ep = self.ep
        filled = ep[S.FILLED][k].astype(np.float32)
        L = _trim(filled)
        filled = filled[:, :L]
        B = len(k)
        out = {
            K.OBS: ep[S.OBS][k, :L + 1],
            K.STATE: ep[S.STATE][k, :L + 1],
            K.ACTIONS: ep[S.ACTIONS][k, :L],
            K.REWARD: ep[S.REWARD][k, :L].astype(np.float32),
            K.TERMINATED: ep[S.TERMINATED][k, :L].astype(np.float32),
            K.FILLED: filled,
            K.NEXT_FILLED: np.concatenate([filled[:, 1:], np.zeros((B, 1), np.float32)], 1),
            K.EPISODE_INDEX: k.astype(np.int64),
        }
        if S.AVAIL_ACTIONS in ep:
            out[K.AVAIL_ACTIONS] = ep[S.AVAIL_ACTIONS][k, :L + 1]
        return out

    def sample(self, batch_size: int) -> Dict[str, np.ndarray]:
        return self.gather(self.sample_indices(batch_size))

    def sample_by_module(self, batch_size: int, joint_key: str, agent_keys: Optional[Sequence[str]] = None,
                         joint_keys: Optional[Sequence[str]] = None,
                         own_obs_only: bool = False) -> Dict[str, Dict[str, np.ndarray]]:
        """``batch_size`` episodes as ``{module: its agents' individual trajectories [B * n_m, ...],
        joint_key: the joint episodes [B, ...]}``, all trimmed to the same longest episode L.

        Row ``b * n_m + s`` of module m's batch is episode b's agent ``members[m][s]``;
        :func:`rllib_sit.algorithms.common.joint.stack_agents` puts per-row values back into
        ``[B, L, N]`` agent order. ``agent_keys``/``joint_keys`` keep only those keys (what the
        learner reads; less to convert); ``own_obs_only`` see :meth:`IndividualTrajectorySampler.gather`.
        """
        if self._individual is None:
            raise ValueError("JointEpisodeSampler.sample_by_module needs agent_modules=[module id of every agent]")
        k = self.sample_indices(batch_size)
        out = {joint_key: _keep(self.gather(k), joint_keys)}
        ind = self._individual
        for m in ind.modules:
            members = ind.members[m]
            out[m] = _keep(ind.gather(np.repeat(k, len(members)), np.tile(members, len(k)), own_obs_only), agent_keys)
        return out

    def get_state(self) -> Dict[str, Any]:
        return {"rng": self.rng.bit_generator.state}

    def set_state(self, state: Dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]


def make_sampler_actor(cls, *args, **kwargs):
    """``cls(*args, **kwargs)`` as a Ray actor with ``num_cpus=0`` on the caller's node.

    ``num_cpus=0``: it only gathers arrays, and on a 2-core machine it must not hold a CPU that Tune
    trials or Ray Data reads need. On the caller's node: it opens the caller's column cache (a
    local folder) by path, which another node of a cluster does not have.
    """
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    return ray.remote(num_cpus=0)(cls).options(scheduling_strategy=here).remote(*args, **kwargs)
