"""RLlib ``MultiAgentEnv`` view of a :class:`~rllib_sit.envs.base.CoopEnv`."""

from __future__ import annotations

from typing import Optional

import gymnasium as gym
import numpy as np
from ray.rllib.env.multi_agent_env import MultiAgentEnv

from rllib_sit.envs.base import ACTION_MASK_KEY, OBS_KEY, OBSERVATION_KEY, CoopEnv


class RLlibCoopEnv(MultiAgentEnv):
    """Wraps a ``CoopEnv``; observations are ``{"obs", "action_mask"}`` dicts (discrete envs).

    The global state is available as ``infos[agent]["state"]``; episodes end for all agents at
    once (``terminateds["__all__"]``), dead agents stay in the episode with zero observations and
    the no-op as their only available action, as in SMAC.

    RLlib conventions this wrapper follows (they are what RLlib's
    ``check_multiagent_environments`` checks):

    * ``agents`` lists every agent from ``reset`` until the next ``reset``, including on the step
      that ends the episode (RLlib checks the final step's observations, rewards and flags against
      ``env.agents``; its own ``make_multi_agent`` and PettingZoo wrappers keep the list too).
    * Every action of the action space is accepted. With ``check_actions=False`` (the default
      here) an unavailable action is executed as the agent's first available action (SMAC: stop
      for a living agent, no-op for a dead one) and ``infos[agent]["unavailable_action"]`` records
      the action the policy chose, so a module that ignores the mask can be detected; a masked
      module never triggers it. ``check_actions=True`` raises ``ValueError`` instead (SMAC's
      assert) — then run RLlib with ``disable_env_checking=True``, since its checker samples
      actions without the mask.

    Args:
        env: the wrapped env (either observation convention; this wrapper reads the flat
            observation and the mask from ``infos``).
        check_actions: the unavailable-action rule to set on ``env`` (None keeps ``env``'s own).
    """

    def __init__(self, env: CoopEnv, check_actions: Optional[bool] = False):
        super().__init__()
        self.env = env
        env.configure_api(check_actions=check_actions)
        self.info = env.info
        self.possible_agents = list(env.possible_agents)
        self.agents = list(self.possible_agents)
        obs_box = gym.spaces.Box(-np.inf, np.inf, (env.info.obs_dim,), np.float32)
        self.observation_spaces = {}
        for a in self.possible_agents:
            spaces = {OBS_KEY: obs_box}
            if env.info.discrete:
                spaces[ACTION_MASK_KEY] = gym.spaces.Box(0.0, 1.0, (env.info.n_actions,), np.float32)
            self.observation_spaces[a] = gym.spaces.Dict(spaces)
        self.action_spaces = {a: env.action_space(a) for a in self.possible_agents}

    def _wrap(self, obs, infos):
        out = {}
        state = self.env.state().astype(np.float32)
        for a in self.possible_agents:
            o = obs[a]
            d = {OBS_KEY: o[OBSERVATION_KEY] if isinstance(o, dict) else o}
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
        # self.agents stays as it is until the next reset (see the class docstring).
        return obs, rew, term, trunc, infos

    def get_state(self):
        return self.env.state()

    def close(self):
        self.env.close()
