"""Environments: SMAC maps (own simulator), MPE CN/PP, MAMuJoCo, seed games; one registry."""

from rllib_sit.envs.base import (ACTION_MASK_KEY, OBS_KEY, OBSERVATION_KEY, UNAVAILABLE_ACTION_KEY, CoopEnv, EnvInfo,
                                 uniform_random_actions)
from rllib_sit.envs.registry import env_ids, make_env, make_rllib_env, parse_env_id, register_family, register_rllib_envs

__all__ = [
    "ACTION_MASK_KEY", "OBS_KEY", "OBSERVATION_KEY", "UNAVAILABLE_ACTION_KEY", "CoopEnv", "EnvInfo",
    "uniform_random_actions", "env_ids", "make_env", "make_rllib_env", "parse_env_id", "register_family", "register_rllib_envs",
]
