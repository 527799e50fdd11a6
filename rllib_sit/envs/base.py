"""The one interface every rllib_sit environment implements.

All environments of the package (SMAC maps, MPE tasks, MAMuJoCo, the seed games) are
cooperative PettingZoo ``ParallelEnv`` subclasses of :class:`CoopEnv` with:

* a fixed agent list ``possible_agents`` (agents never join mid-episode; a dead agent keeps
  receiving zero observations and may only take action 0 — the SMAC convention);
* a team reward: every agent's entry in ``rewards`` is the same team reward;
* a global ``state()`` and ``state_space``;
* per-agent action masks (discrete envs): ``infos[agent]["action_mask"]`` after reset/step, and
  ``action_masks()`` as one ``[N, n_actions]`` array;
* agent types (``agent_types``) used to share one policy module per type;
* :class:`EnvInfo`, the static facts the data layer and the algorithms need (sizes, limit).

``RLlibCoopEnv`` adapts any ``CoopEnv`` to RLlib's ``MultiAgentEnv`` (observations are
``{"obs": ..., "action_mask": ...}`` dicts for discrete envs, ``{"obs": ...}`` otherwise).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Optional, Sequence

import gymnasium as gym
import numpy as np
from pettingzoo import ParallelEnv

OBS_KEY = "obs"
ACTION_MASK_KEY = "action_mask"


@dataclasses.dataclass(frozen=True)
class EnvInfo:
    """Static facts about one environment, as stored in dataset metadata.

    Attributes:
        env_id: registry id, ``"family:scenario"`` (e.g. ``"smac:2s3z"``).
        agents: agent ids in their fixed order (index i of every ``N`` axis).
        agent_types: type name per agent, same order (e.g. ``["stalker", "stalker", "zealot"...]``).
        obs_dim: length of one agent's observation vector.
        state_dim: length of the global state vector.
        episode_limit: T, the maximum number of steps of an episode.
        discrete: True for discrete actions (then ``n_actions`` is set), False for boxes.
        n_actions: number of discrete actions (0 for continuous envs).
        act_dim: action vector length for continuous envs (0 for discrete envs).
        action_low / action_high: bounds of continuous actions (empty for discrete).
    """

    env_id: str
    agents: List[str]
    agent_types: List[str]
    obs_dim: int
    state_dim: int
    episode_limit: int
    discrete: bool
    n_actions: int = 0
    act_dim: int = 0
    action_low: float = -1.0
    action_high: float = 1.0

    @property
    def n_agents(self) -> int:
        return len(self.agents)

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "EnvInfo":
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - fields
        if unknown:
            raise ValueError(f"EnvInfo: unknown field(s) {sorted(unknown)}; expected {sorted(fields)}")
        return cls(**d)

    def type_names(self) -> List[str]:
        """Distinct agent types in first-appearance order."""
        return list(dict.fromkeys(self.agent_types))

    def agents_of_type(self, type_name: str) -> List[int]:
        return [i for i, t in enumerate(self.agent_types) if t == type_name]


class CoopEnv(ParallelEnv):
    """Base class of all cooperative environments of the package.

    Subclasses implement ``_reset(seed) -> None``, ``_step(actions: np.ndarray) ->
    (team_reward, terminated, truncated, info)``, ``_obs() -> [N, obs_dim]``, ``state()``,
    ``action_masks()`` (discrete) and set ``self.info: EnvInfo`` before calling ``super().__init__``.
    ``actions`` given to ``_step`` are an int array [N] (discrete) or a float array [N, act_dim].
    """

    metadata = {"render_modes": ["rgb_array"], "name": "rllib_sit_coop", "is_parallelizable": True}
    info: EnvInfo

    def __init__(self) -> None:
        self.possible_agents = list(self.info.agents)
        self.agents = list(self.possible_agents)
        self.agent_types = dict(zip(self.info.agents, self.info.agent_types))
        obs_box = gym.spaces.Box(-np.inf, np.inf, (self.info.obs_dim,), np.float32)
        if self.info.discrete:
            act = gym.spaces.Discrete(self.info.n_actions)
        else:
            act = gym.spaces.Box(self.info.action_low, self.info.action_high, (self.info.act_dim,), np.float32)
        self.observation_spaces = {a: obs_box for a in self.possible_agents}
        self.action_spaces = {a: act for a in self.possible_agents}
        self.state_space = gym.spaces.Box(-np.inf, np.inf, (self.info.state_dim,), np.float32)
        self._episode_done = True

    # -- subclass API -------------------------------------------------------------------------
    def _reset(self, seed: Optional[int]) -> None:
        raise NotImplementedError

    def _step(self, actions: np.ndarray):
        raise NotImplementedError

    def _obs(self) -> np.ndarray:
        raise NotImplementedError

    def state(self) -> np.ndarray:
        raise NotImplementedError

    def action_masks(self) -> np.ndarray:
        """[N, n_actions] availability (1 = available). Continuous envs return an empty array."""
        return np.ones((self.info.n_agents, 0), dtype=np.float32)

    def agent_stats(self) -> Dict[str, np.ndarray]:
        """Per-agent episode statistics so far (name -> [N] float), e.g. damage dealt."""
        return {}

    # -- PettingZoo ParallelEnv API -----------------------------------------------------------
    def observation_space(self, agent: str) -> gym.Space:
        return self.observation_spaces[agent]

    def action_space(self, agent: str) -> gym.Space:
        return self.action_spaces[agent]

    def reset(self, seed: Optional[int] = None, options: Optional[dict] = None):
        self._reset(seed)
        self.agents = list(self.possible_agents)
        self._episode_done = False
        return self._obs_dict(), self._info_dict({})

    def step(self, actions: Dict[str, Any]):
        if self._episode_done:
            raise RuntimeError(f"{self.info.env_id}: step() called on a finished episode; call reset()")
        missing = [a for a in self.possible_agents if a not in actions]
        if missing:
            raise ValueError(f"{self.info.env_id}: step() needs an action for every agent; missing {missing}")
        if self.info.discrete:
            arr = np.asarray([int(actions[a]) for a in self.possible_agents], dtype=np.int64)
        else:
            arr = np.stack([np.asarray(actions[a], np.float32).reshape(self.info.act_dim)
                            for a in self.possible_agents])
        reward, terminated, truncated, info = self._step(arr)
        self._episode_done = bool(terminated or truncated)
        obs = self._obs_dict()
        rewards = {a: float(reward) for a in self.possible_agents}
        terms = {a: bool(terminated) for a in self.possible_agents}
        truncs = {a: bool(truncated) for a in self.possible_agents}
        infos = self._info_dict(info)
        if self._episode_done:
            self.agents = []
        return obs, rewards, terms, truncs, infos

    def _obs_dict(self) -> Dict[str, np.ndarray]:
        obs = self._obs().astype(np.float32, copy=False)
        return {a: obs[i] for i, a in enumerate(self.possible_agents)}

    def _info_dict(self, common: Dict[str, Any]) -> Dict[str, Dict[str, Any]]:
        infos = {a: dict(common) for a in self.possible_agents}
        if self.info.discrete:
            masks = self.action_masks()
            for i, a in enumerate(self.possible_agents):
                infos[a][ACTION_MASK_KEY] = masks[i]
        return infos

    def close(self) -> None:
        pass


def uniform_random_actions(env: CoopEnv, rng: np.random.Generator) -> np.ndarray:
    """One uniformly random *available* action per agent ([N] int, or [N, act_dim] float)."""
    info = env.info
    if info.discrete:
        masks = env.action_masks()
        out = np.zeros(info.n_agents, dtype=np.int64)
        for i in range(info.n_agents):
            avail = np.flatnonzero(masks[i] > 0)
            out[i] = rng.choice(avail)
        return out
    return rng.uniform(info.action_low, info.action_high, (info.n_agents, info.act_dim)).astype(np.float32)


def actions_to_dict(env: CoopEnv, actions: Sequence) -> Dict[str, Any]:
    return {a: actions[i] for i, a in enumerate(env.possible_agents)}
