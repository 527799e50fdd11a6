"""RLlib ``MultiAgentEnv`` view of a :class:`~rllib_sit.envs.base.CoopEnv`."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from ray.rllib.env.multi_agent_env import MultiAgentEnv

from rllib_sit.envs.base import ACTION_MASK_KEY, OBS_KEY, CoopEnv


class RLlibCoopEnv(MultiAgentEnv):
    """Wraps a ``CoopEnv``; observations are ``{"obs", "action_mask"}`` dicts (discrete envs).

    The global state is available as ``infos[agent]["state"]``; episodes end for all agents at
    once (``terminateds["__all__"]``), dead agents stay in the episode with zero observations and
    the no-op as their only available action, as in SMAC.
    """

    def __init__(self, env: CoopEnv):
        super().__init__()
        self.env = env
        self.info = env.info
        self.possible_agents = list(env.possible_agents)
        self.agents = list(self.possible_agents)
        spaces = {OBS_KEY: env.observation_space(self.possible_agents[0])}
        if env.info.discrete:
            spaces[ACTION_MASK_KEY] = gym.spaces.Box(0.0, 1.0, (env.info.n_actions,), np.float32)
        obs_space = gym.spaces.Dict(spaces)
        self.observation_spaces = {a: obs_space for a in self.possible_agents}
        self.action_spaces = {a: env.action_space(a) for a in self.possible_agents}

    def _wrap(self, obs, infos):
        out = {}
        state = self.env.state().astype(np.float32)
        for a in self.possible_agents:
            d = {OBS_KEY: obs[a]}
            if self.info.discrete:
                d[ACTION_MASK_KEY] = np.asarray(infos[a][ACTION_MASK_KEY], np.float32)
            out[a] = d
            infos[a] = dict(infos[a], state=state)
        return out, infos

    def reset(self, *, seed=None, options=None):
        obs, infos = self.env.reset(seed=seed, options=options)
        self.agents = list(self.possible_agents)
        return self._wrap(obs, infos)

    def step(self, action_dict):
        obs, rew, term, trunc, infos = self.env.step(action_dict)
        obs, infos = self._wrap(obs, infos)
        done_t = any(term.values())
        done_tr = any(trunc.values())
        term["__all__"] = done_t
        trunc["__all__"] = done_tr and not done_t
        if done_t or done_tr:
            self.agents = []
        return obs, rew, term, trunc, infos

    def get_state(self):
        return self.env.state()

