"""The one interface every rllib_sit environment implements.

All environments of the package (SMAC maps, MPE tasks, MAMuJoCo, the seed games) are
cooperative PettingZoo ``ParallelEnv`` subclasses of :class:`CoopEnv` with:

* a fixed agent list ``possible_agents`` (agents never join mid-episode; a dead agent keeps
  receiving zero observations and may only take action 0 — the SMAC convention);
* a team reward: every agent's entry in ``rewards`` is the same team reward;
* a global ``state()`` and ``state_space``;
* per-agent action masks (discrete envs): ``infos[agent]["action_mask"]`` after reset/step, and
  ``action_masks()`` as one ``[N, n_actions]`` array;
* two observation conventions (:meth:`CoopEnv.configure_api`, or ``make_env(id, action_mask_in_obs=...)``):
  flat ``[obs_dim]`` float32 observations (the default, used by the datasets and algorithms), or
  PettingZoo's ``{"observation": [obs_dim] float32, "action_mask": [n_actions] int8}`` Dict
  observations (``action_mask_in_obs=True``; the mask stays in ``infos`` too). Continuous envs have
  no mask: their Dict observation holds ``"observation"`` only;
* one rule for unavailable actions (discrete envs): with ``check_actions=True`` (the default, as
  SMAC asserts) ``step`` raises ``ValueError`` naming the agent, the action and the available
  actions; with ``check_actions=False`` the agent's first available action is executed instead
  (SMAC: ``stop`` for a living agent, the no-op for a dead one) and ``infos[agent]["unavailable_action"]``
  records the action that was replaced. Actions outside ``[0, n_actions)`` always raise;
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
OBSERVATION_KEY = "observation"  # PettingZoo's key of the observation in a Dict observation with a mask
UNAVAILABLE_ACTION_KEY = "unavailable_action"  # infos key: the action replaced (check_actions=False)


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
    render_mode: Optional[str] = None  # PettingZoo reads it (parallel_to_aec warns without it)
    # Class-level defaults; a subclass may set them before ``super().__init__()`` (SMACEnv does for
    # check_actions), and :meth:`configure_api` changes them on an instance.
    check_actions: bool = True
    action_mask_in_obs: bool = False

    def __init__(self) -> None:
        self.possible_agents = list(self.info.agents)
        self.agents = list(self.possible_agents)
        self.agent_types = dict(zip(self.info.agents, self.info.agent_types))
        # One space object per agent (not one shared object), so that seeding agent i's space
        # (PettingZoo's seed test seeds agent i with 42 + i) does not reseed the other agents'.
        if self.info.discrete:
            self.action_spaces = {a: gym.spaces.Discrete(self.info.n_actions) for a in self.possible_agents}
        else:
            self.action_spaces = {a: gym.spaces.Box(self.info.action_low, self.info.action_high,
                                                    (self.info.act_dim,), np.float32)
                                  for a in self.possible_agents}
        self._build_observation_spaces()
        self.state_space = gym.spaces.Box(-np.inf, np.inf, (self.info.state_dim,), np.float32)
        self._episode_done = True

    def _build_observation_spaces(self) -> None:
        def one() -> gym.Space:
            box = gym.spaces.Box(-np.inf, np.inf, (self.info.obs_dim,), np.float32)
            if not self.action_mask_in_obs:
                return box
            spaces = {OBSERVATION_KEY: box}
            if self.info.discrete:
                spaces[ACTION_MASK_KEY] = gym.spaces.Box(0, 1, (self.info.n_actions,), np.int8)
            return gym.spaces.Dict(spaces)

        self.observation_spaces = {a: one() for a in self.possible_agents}

    def configure_api(self, *, action_mask_in_obs: Optional[bool] = None,
                      check_actions: Optional[bool] = None) -> "CoopEnv":
        """Choose the observation convention and the unavailable-action rule (None = unchanged).

        Args:
            action_mask_in_obs: False: flat ``[obs_dim]`` observations (default); True: PettingZoo's
                ``{"observation", "action_mask"}`` Dict observations (mask int8; continuous envs
                get ``{"observation"}`` only). ``infos[agent]["action_mask"]`` is there either way.
            check_actions: True: an unavailable action raises ``ValueError`` (default, SMAC's
                assert); False: it is replaced by the agent's first available action and
                ``infos[agent]["unavailable_action"]`` holds the replaced action.

        Returns ``self``. Call it between episodes (the observation spaces are rebuilt).
        """
        for name, value in (("action_mask_in_obs", action_mask_in_obs), ("check_actions", check_actions)):
            if value is not None and not isinstance(value, (bool, np.bool_)):
                raise ValueError(f"{self.info.env_id}: {name} must be True or False; got {value!r}")
        if check_actions is not None:
            self.check_actions = bool(check_actions)
        if action_mask_in_obs is not None and bool(action_mask_in_obs) != self.action_mask_in_obs:
            self.action_mask_in_obs = bool(action_mask_in_obs)
            self._build_observation_spaces()
        return self

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
        masks = self.action_masks() if self.info.discrete else None
        return self._obs_dict(masks), self._info_dict({}, masks)

    def step(self, actions: Dict[str, Any]):
        if self._episode_done:
            raise RuntimeError(f"{self.info.env_id}: step() called on a finished episode; call reset()")
        missing = [a for a in self.possible_agents if a not in actions]
        if missing:
            raise ValueError(f"{self.info.env_id}: step() needs an action for every agent; missing {missing}")
        replaced: Dict[str, int] = {}
        if self.info.discrete:
            arr = np.asarray([int(actions[a]) for a in self.possible_agents], dtype=np.int64)
            replaced = self._check_available(arr)
        else:
            arr = np.stack([np.asarray(actions[a], np.float32).reshape(self.info.act_dim)
                            for a in self.possible_agents])
        reward, terminated, truncated, info = self._step(arr)
        self._episode_done = bool(terminated or truncated)
        masks = self.action_masks() if self.info.discrete else None
        obs = self._obs_dict(masks)
        rewards = {a: float(reward) for a in self.possible_agents}
        terms = {a: bool(terminated) for a in self.possible_agents}
        truncs = {a: bool(truncated) for a in self.possible_agents}
        infos = self._info_dict(info, masks)
        for a, original in replaced.items():
            infos[a][UNAVAILABLE_ACTION_KEY] = original
        if self._episode_done:
            self.agents = []
        return obs, rewards, terms, truncs, infos

    def _check_available(self, arr: np.ndarray) -> Dict[str, int]:
        """Range-check ``arr`` [N] and apply the unavailable-action rule in place.

        Returns ``{agent: replaced action}`` (empty unless ``check_actions`` is False)."""
        n = self.info.n_actions
        for i in np.flatnonzero((arr < 0) | (arr >= n)).tolist():
            raise ValueError(f"{self.info.env_id}: actions must be in [0, {n}); agent "
                             f"{self.possible_agents[i]!r} got {int(arr[i])}")
        masks = self.action_masks()
        replaced: Dict[str, int] = {}
        for i in np.flatnonzero(masks[np.arange(len(arr)), arr] <= 0).tolist():
            agent, avail = self.possible_agents[i], np.flatnonzero(masks[i] > 0)
            if self.check_actions or avail.size == 0:
                raise ValueError(f"{self.info.env_id}: action {int(arr[i])} of agent {agent!r} is not available "
                                 f"(available: {avail.tolist()}; mask {masks[i].astype(int).tolist()}). "
                                 f"Sample from infos[{agent!r}]['action_mask'] (or the observation's "
                                 f"'action_mask' with action_mask_in_obs=True), or pass check_actions=False "
                                 f"to execute the first available action instead")
            replaced[agent] = int(arr[i])
            arr[i] = int(avail[0])
        return replaced

    def _obs_dict(self, masks: Optional[np.ndarray] = None) -> Dict[str, Any]:
        obs = self._obs().astype(np.float32, copy=False)
        if not self.action_mask_in_obs:
            return {a: obs[i] for i, a in enumerate(self.possible_agents)}
        if not self.info.discrete:
            return {a: {OBSERVATION_KEY: obs[i]} for i, a in enumerate(self.possible_agents)}
        m = (self.action_masks() if masks is None else masks) > 0
        m = m.astype(np.int8)
        return {a: {OBSERVATION_KEY: obs[i], ACTION_MASK_KEY: m[i]} for i, a in enumerate(self.possible_agents)}

    def _info_dict(self, common: Dict[str, Any], masks: Optional[np.ndarray] = None) -> Dict[str, Dict[str, Any]]:
        infos = {a: dict(common) for a in self.possible_agents}
        if self.info.discrete:
            masks = self.action_masks() if masks is None else masks
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
