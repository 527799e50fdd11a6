"""Decomposed Prioritized Experience Replay (SIT Stage II storage), one sum tree per agent type.

``DPERBuffer`` is plain Python (testable without Ray); ``DPERActor`` is the same class as a Ray
actor with ``num_cpus=0`` (it only gathers arrays, so it must not hold a CPU that Ray Data or
Tune trials need on a 2-core machine).

Storage is compact: the joint episodes are stored once (``obs [K, T+1, N, obs_dim]`` etc.), as
read-only memory maps of the dataset's column cache (:mod:`rllib_sit.data.column_cache`) that the
actor opens itself, so it shares the algorithm's page-cache copy instead of duplicating it; plus
the decomposed rewards ``r̂, û [K, T, N]`` (float32, ~24 MB each for 10,000 2s3z episodes). An *individual trajectory* is a pair (episode k,
agent j); the tree of type J has one leaf per pair with j of type J (leaf = k * n_J + slot).
Sampling gathers, for each drawn pair, agent j's own columns and the observations of all agents
(o_{-i} for the GAT critic), trimmed to the longest sampled episode.
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np

from rllib_sit.data import schema as S
from rllib_sit.replay.sum_tree import SumTree

# Keys of a sampled batch (per agent type).
OBS_ALL = "obs_all"            # [B, L+1, N, obs_dim]  all agents' observations, t = 0..L
AGENT_INDEX = "agent_index"    # [B]                    j (whose trajectory it is)
ACTIONS = "actions"            # [B, L(, A)]            a_j^t
PREV_ACTIONS = "prev_actions"  # [B, L+1(, A)]          a_j^{t-1}; -1 (discrete) / 0 (continuous) at t = 0
NEXT_ACTIONS = "next_actions"  # [B, L(, A)]            a_j^{t+1} from the dataset (0 where none)
AVAIL_ACTIONS = "avail_actions"  # [B, L+1, n_actions]  (discrete only)
REWARD_HAT = "reward_hat"      # [B, L]
UNCERTAINTY = "uncertainty"    # [B, L]
TERMINATED = "terminated"      # [B, L] float 0/1
FILLED = "filled"              # [B, L] float 0/1
NEXT_FILLED = "next_filled"    # [B, L] float 0/1: step t+1 is real
EPISODE_INDEX = "episode_index"  # [B]


def rescale_linear(p: np.ndarray, low: float, high: float) -> np.ndarray:
    p = np.asarray(p, np.float64)
    lo, hi = p.min(), p.max()
    if hi - lo <= 1e-12:
        return np.full_like(p, low)
    return low + (p - lo) * (high - low) / (hi - lo)


def softmax_stable(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, np.float64)
    e = np.exp(z - z.max())
    return e / e.sum()


class DPERBuffer:
    """Type-wise prioritized buffers of individual trajectories.

    Args:
        episodes: dict of numpy arrays with the schema columns ``obs, actions, terminated, filled``
            (+ ``avail_actions`` for discrete envs), leading axis = episode; or the path of a
            column cache folder holding them (opened memory-mapped).
        agent_types: type name per agent (length N).
        seed: seed of the sampling RNG.
    """

    def __init__(self, episodes: Union[Dict[str, np.ndarray], str], agent_types: Sequence[str], seed: int = 0):
        if isinstance(episodes, (str, os.PathLike)):
            from rllib_sit.data.column_cache import load_cache

            episodes = load_cache(episodes)
        self.ep = episodes
        self.agent_types = list(agent_types)
        self.types = list(dict.fromkeys(self.agent_types))
        self.members = {t: np.array([i for i, a in enumerate(self.agent_types) if a == t]) for t in self.types}
        self.K = int(episodes[S.OBS].shape[0])
        self.T = int(episodes[S.FILLED].shape[1])
        self.discrete = episodes[S.ACTIONS].ndim == 3
        self.lengths = episodes[S.FILLED].sum(1).astype(np.int64)
        self.rng = np.random.default_rng(seed)
        self.trees: Dict[str, SumTree] = {}
        self.scaled: Dict[str, np.ndarray] = {}
        self.r_hat: Optional[np.ndarray] = None
        self.u_hat: Optional[np.ndarray] = None

    # -- filling -----------------------------------------------------------------------------
    def load(self, r_hat: np.ndarray, u_hat: np.ndarray, priorities: np.ndarray, alpha: float,
             priority_range=(0.0, 20.0), prioritized: bool = True) -> Dict[str, Any]:
        """Store r̂/û [K, T, N], build one tree per type from raw episode priorities p̂ [K, N].

        Priorities of one type are linearly rescaled to ``priority_range`` and turned into sampling
        probabilities with a softmax of temperature ``alpha`` (Eq. 7); ``prioritized=False``
        gives uniform sampling. Returns the priority summary.
        """
        K, N = priorities.shape
        if K != self.K or N != len(self.agent_types):
            raise ValueError(f"DPER.load: priorities shape {priorities.shape} != ({self.K}, {len(self.agent_types)})")
        self.r_hat = np.ascontiguousarray(r_hat, np.float32)
        self.u_hat = np.ascontiguousarray(u_hat, np.float32)
        for t in self.types:
            raw = np.asarray(priorities, np.float64)[:, self.members[t]].reshape(-1)
            scaled = rescale_linear(raw, *priority_range)
            probs = softmax_stable(scaled / alpha) if prioritized else np.full(raw.shape, 1.0 / raw.size)
            tree = SumTree(raw.size)
            tree.set_all(probs)
            self.trees[t], self.scaled[t] = tree, scaled
        return self.summary()

    def summary(self) -> Dict[str, Dict[str, float]]:
        out = {}
        for t, tree in self.trees.items():
            p = tree.priorities()
            p = p / p.sum()
            sc = self.scaled[t]
            out[t] = {"priority_min": float(sc.min()), "priority_mean": float(sc.mean()),
                      "priority_max": float(sc.max()), "prob_max": float(p.max()),
                      "ess": float(1.0 / np.sum(p * p)), "num_trajectories": int(p.size)}
        return out

    def probabilities(self, type_name: str) -> np.ndarray:
        p = self.trees[type_name].priorities()
        return p / p.sum()

    # -- sampling ----------------------------------------------------------------------------
    def sample_indices(self, type_name: str, batch_size: int):
        leaves = self.trees[type_name].sample(batch_size, self.rng)
        n_t = len(self.members[type_name])
        return leaves // n_t, self.members[type_name][leaves % n_t]

    def gather(self, k: np.ndarray, j: np.ndarray) -> Dict[str, np.ndarray]:
        """Individual trajectories of agents ``j`` in episodes ``k`` (trimmed to the longest)."""
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
            OBS_ALL: ep[S.OBS][k, :L + 1],
            AGENT_INDEX: j.astype(np.int64),
            ACTIONS: own_act,
            PREV_ACTIONS: np.concatenate([first, own_act], 1),
            NEXT_ACTIONS: next_act,
            REWARD_HAT: self.r_hat[k, :L, j],
            UNCERTAINTY: self.u_hat[k, :L, j],
            TERMINATED: ep[S.TERMINATED][k, :L].astype(np.float32),
            FILLED: filled,
            NEXT_FILLED: next_filled,
            EPISODE_INDEX: k.astype(np.int64),
        }
        if self.discrete and S.AVAIL_ACTIONS in ep:
            out[AVAIL_ACTIONS] = ep[S.AVAIL_ACTIONS][k, :L + 1, j]
        return out

    def sample(self, batch_size: int, types: Optional[List[str]] = None) -> Dict[str, Dict[str, np.ndarray]]:
        """One batch of ``batch_size`` individual trajectories per agent type (one round trip)."""
        out = {}
        for t in (types or self.types):
            k, j = self.sample_indices(t, batch_size)
            out[t] = self.gather(k, j)
        return out

    # -- checkpointing -----------------------------------------------------------------------
    def get_state(self) -> Dict[str, Any]:
        return {
            "leaves": {t: tree.priorities() for t, tree in self.trees.items()},
            "scaled": dict(self.scaled),
            "rng": self.rng.bit_generator.state,
            "r_hat": self.r_hat,
            "u_hat": self.u_hat,
        }

    def set_state(self, state: Dict[str, Any]) -> None:
        self.r_hat, self.u_hat = state["r_hat"], state["u_hat"]
        self.scaled = dict(state["scaled"])
        self.trees = {}
        for t, leaves in state["leaves"].items():
            tree = SumTree(len(leaves))
            tree.set_all(leaves)
            self.trees[t] = tree
        self.rng.bit_generator.state = state["rng"]

    def is_loaded(self) -> bool:
        return bool(self.trees)


def make_dper_actor(episodes: Union[str, Any], agent_types: Sequence[str], seed: int = 0):
    """Start the DPER Ray actor (``num_cpus=0``) on a column cache folder (or a ``ray.put`` of the columns)."""
    import ray

    return ray.remote(num_cpus=0)(DPERBuffer).remote(episodes, list(agent_types), seed)
