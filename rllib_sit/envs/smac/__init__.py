"""SMAC maps on a pure-NumPy simulator (StarCraft II is not needed); see docs/envs/smac.md.

Importing this module registers the ``smac`` family: ``make_env("smac:2s3z")`` returns a
:class:`~rllib_sit.envs.smac.env.SMACEnv`; ``make_env("smac:2s3z", backend="sc2")`` wraps
oxwhirl's real ``smac.env.StarCraft2Env`` (when installed) through
:class:`~rllib_sit.envs.smac.sc2_adapter.SC2CoopEnv`.
"""

from __future__ import annotations

from rllib_sit.envs.base import CoopEnv
from rllib_sit.envs.registry import register_family
from rllib_sit.envs.smac.env import SMACEnv
from rllib_sit.envs.smac.maps import MAPS, MapSpec, get_map

BACKENDS = ("numpy", "sc2")


def make_smac_env(scenario: str, backend: str = "numpy", **kwargs) -> CoopEnv:
    """Factory of the ``smac`` family: ``backend="numpy"`` (this simulator) or ``"sc2"`` (real SMAC)."""
    if backend == "numpy":
        return SMACEnv(scenario, **kwargs)
    if backend == "sc2":
        from rllib_sit.envs.smac.sc2_adapter import SC2CoopEnv

        return SC2CoopEnv(scenario, **kwargs)
    raise ValueError(f"backend {backend!r} is unknown; expected one of {list(BACKENDS)}")


register_family("smac", make_smac_env, list(MAPS))

__all__ = ["SMACEnv", "MAPS", "MapSpec", "get_map", "make_smac_env"]
