"""Build schema-v1 episode rows (dicts of padded numpy arrays) from environment rollouts."""

from __future__ import annotations

from typing import Callable, Dict, Optional, Sequence

import numpy as np

from rllib_sit.data import schema as S
from rllib_sit.envs.base import CoopEnv, EnvInfo

Row = Dict[str, np.ndarray]


class EpisodeRecorder:
    """Accumulates one episode into the fixed-shape arrays of the schema.

    Usage::

        rec = EpisodeRecorder(env.info)
        rec.start(obs, state, avail)              # after reset
        rec.add(actions, reward, term, trunc, obs, state, avail)   # after every step
        row = rec.finish(episode_id=7)
    """

    def __init__(self, env: EnvInfo, stat_names: Sequence[str] = ()):
        self.env = env
        self.stat_names = list(stat_names)
        T, N = env.episode_limit, env.n_agents
        self._obs = np.zeros((T + 1, N, env.obs_dim), np.float32)
        self._state = np.zeros((T + 1, env.state_dim), np.float32)
        self._actions = np.zeros((T, N), np.int64) if env.discrete else np.zeros((T, N, env.act_dim), np.float32)
        self._avail = np.zeros((T + 1, N, env.n_actions), np.float32) if env.discrete else None
        self._reward = np.zeros(T, np.float32)
        self._term = np.zeros(T, np.uint8)
        self._trunc = np.zeros(T, np.uint8)
        self.t = 0

    def start(self, obs: np.ndarray, state: np.ndarray, avail: Optional[np.ndarray] = None) -> None:
        self.t = 0
        for arr in (self._obs, self._state, self._actions, self._reward, self._term, self._trunc):
            arr.fill(0)
        if self._avail is not None:
            self._avail.fill(0)
        self._put(0, obs, state, avail)

    def _put(self, t: int, obs, state, avail) -> None:
        self._obs[t] = obs
        self._state[t] = state
        if self._avail is not None:
            self._avail[t] = avail

    def add(self, actions, reward: float, terminated: bool, truncated: bool,
            next_obs: np.ndarray, next_state: np.ndarray, next_avail: Optional[np.ndarray] = None) -> None:
        t = self.t
        if t >= self.env.episode_limit:
            raise RuntimeError(f"{self.env.env_id}: episode longer than its limit {self.env.episode_limit}")
        self._actions[t] = actions
        self._reward[t] = reward
        self._term[t] = terminated
        self._trunc[t] = truncated
        self._put(t + 1, next_obs, next_state, next_avail)
        self.t = t + 1

    def finish(self, episode_id: int, policy_levels: Optional[Sequence[int]] = None,
               agent_stats: Optional[np.ndarray] = None) -> Row:
        T, L = self.env.episode_limit, self.t
        row: Row = {
            S.OBS: self._obs.copy(),
            S.STATE: self._state.copy(),
            S.ACTIONS: self._actions.copy(),
            S.REWARD: self._reward.copy(),
            S.TERMINATED: self._term.copy(),
            S.TRUNCATED: self._trunc.copy(),
            S.FILLED: (np.arange(T) < L).astype(np.uint8),
            S.LENGTH: np.int32(L),
            S.EPISODE_RETURN: np.float32(self._reward[:L].sum()),
            S.EPISODE_ID: np.int64(episode_id),
        }
        if self._avail is not None:
            row[S.AVAIL_ACTIONS] = self._avail.copy()
        if policy_levels is not None:
            row[S.POLICY_LEVELS] = np.asarray(policy_levels, np.int8)
        if agent_stats is not None:
            row[S.AGENT_STATS] = np.asarray(agent_stats, np.float32).reshape(self.env.n_agents, -1)
        return row


PolicyFn = Callable[[CoopEnv, np.ndarray], np.ndarray]


def rollout_episode(env: CoopEnv, act: PolicyFn, seed: int, episode_id: int,
                    policy_levels: Optional[Sequence[int]] = None,
                    recorder: Optional[EpisodeRecorder] = None) -> Row:
    """Run one episode with ``act(env, obs[N, obs_dim]) -> actions`` and return its schema row.

    ``act`` sees the env (for masks/state) and the stacked observations; it returns an int array
    [N] (discrete) or a float array [N, act_dim].
    """
    info = env.info
    stat_names = list(env.agent_stats().keys()) if recorder is None else recorder.stat_names
    rec = recorder or EpisodeRecorder(info, stat_names)
    obs_d, _ = env.reset(seed=seed)
    obs = np.stack([obs_d[a] for a in env.possible_agents])
    rec.start(obs, env.state(), env.action_masks() if info.discrete else None)
    done = False
    while not done:
        actions = act(env, obs)
        obs_d, rew, term, trunc, _ = env.step({a: actions[i] for i, a in enumerate(env.possible_agents)})
        obs = np.stack([obs_d[a] for a in env.possible_agents])
        t_, tr_ = any(term.values()), any(trunc.values())
        rec.add(actions, next(iter(rew.values())), t_, tr_ and not t_, obs, env.state(),
                env.action_masks() if info.discrete else None)
        done = t_ or tr_
    stats = env.agent_stats()
    stat_arr = np.stack([np.asarray(stats[k], np.float32) for k in rec.stat_names], axis=1) if rec.stat_names else None
    return rec.finish(episode_id, policy_levels=policy_levels, agent_stats=stat_arr)
