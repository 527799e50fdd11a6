"""Environment registry: ``"family:scenario"`` ids -> :class:`~rllib_sit.envs.base.CoopEnv`.

Families register a factory ``(scenario, **kwargs) -> CoopEnv`` and the list of their scenarios;
no if/elif chain grows with each environment. :func:`register_rllib_envs` registers every id with
Ray Tune so that ``config.environment("smac:2s3z")`` resolves to an RLlib ``MultiAgentEnv``.
"""

from __future__ import annotations

import importlib
from typing import Callable, Dict, List, Optional, Tuple

from rllib_sit.envs.base import CoopEnv

# family -> (module that registers it when imported). Imports are lazy so that asking for an MPE
# env never imports MuJoCo and vice versa.
_FAMILY_MODULES: Dict[str, str] = {
    "smac": "rllib_sit.envs.smac",
    "mpe": "rllib_sit.envs.mpe",
    "mamujoco": "rllib_sit.envs.mamujoco",
    "matrix": "rllib_sit.envs.games",
}
_FACTORIES: Dict[str, Tuple[Callable[..., CoopEnv], List[str]]] = {}


def register_family(family: str, factory: Callable[..., CoopEnv], scenarios: List[str]) -> None:
    """Register ``factory(scenario, **kwargs)`` for every ``family:scenario`` in ``scenarios``."""
    _FACTORIES[family] = (factory, list(scenarios))


def _load_family(family: str) -> None:
    if family in _FACTORIES:
        return
    if family not in _FAMILY_MODULES:
        raise ValueError(f"unknown environment family {family!r}; expected one of {sorted(_FAMILY_MODULES)}")
    importlib.import_module(_FAMILY_MODULES[family])


def parse_env_id(env_id: str) -> Tuple[str, str]:
    if not isinstance(env_id, str) or env_id.count(":") != 1:
        raise ValueError(f"environment id {env_id!r} must look like 'family:scenario', e.g. 'smac:2s3z'")
    family, scenario = env_id.split(":")
    return family, scenario


# Keyword arguments every family accepts (handled here, not by the family's factory).
API_KWARGS = ("action_mask_in_obs", "check_actions")


def make_env(env_id: str, *, action_mask_in_obs: Optional[bool] = None, check_actions: Optional[bool] = None,
             **kwargs) -> CoopEnv:
    """Build the PettingZoo ``ParallelEnv`` registered as ``env_id`` (e.g. ``"smac:2s3z"``).

    Args:
        action_mask_in_obs: True gives PettingZoo's Dict observations ``{"observation", "action_mask"}``
            (what ``pettingzoo.test.parallel_api_test`` and masked random agents sample from);
            default: flat observations with the mask in ``infos[agent]["action_mask"]``.
        check_actions: False executes an unavailable action as the agent's first available one
            (SMAC: stop / no-op) instead of raising ``ValueError`` (the default).
        **kwargs: the family's own options (e.g. ``loops_per_substep`` for SMAC).
    See :meth:`rllib_sit.envs.base.CoopEnv.configure_api`.
    """
    family, scenario = parse_env_id(env_id)
    _load_family(family)
    factory, scenarios = _FACTORIES[family]
    if scenario not in scenarios:
        raise ValueError(f"unknown scenario {scenario!r} for environment family {family!r}; "
                         f"expected one of {scenarios}")
    env = factory(scenario, **kwargs)
    return env.configure_api(action_mask_in_obs=action_mask_in_obs, check_actions=check_actions)


def env_ids(family: str | None = None) -> List[str]:
    """All registered ids (of one family, or of every family that can be imported)."""
    out = []
    for fam in ([family] if family else list(_FAMILY_MODULES)):
        try:
            _load_family(fam)
        except ImportError:  # an optional dependency of that family is missing
            continue
        if fam in _FACTORIES:
            out += [f"{fam}:{s}" for s in _FACTORIES[fam][1]]
    return out


def make_rllib_env(env_id: str, env_config: dict | None = None):
    """RLlib ``MultiAgentEnv`` of ``env_id``; ``env_config`` holds :func:`make_env`'s keyword arguments.

    Unlike :func:`make_env`, unavailable actions default to ``check_actions=False`` (RLlib samples
    any action of the action space, e.g. in its env checker); ``{"check_actions": True}`` raises
    instead. See :class:`rllib_sit.envs.rllib_env.RLlibCoopEnv`.
    """
    from rllib_sit.envs.rllib_env import RLlibCoopEnv

    cfg = dict(env_config or {})
    check_actions = cfg.pop("check_actions", False)
    return RLlibCoopEnv(make_env(env_id, **cfg), check_actions=check_actions)


def register_rllib_envs() -> None:
    """Register every ``family:scenario`` id with Ray Tune's env registry (cheap, idempotent)."""
    from ray.tune.registry import register_env

    for family in _FAMILY_MODULES:
        try:
            _load_family(family)
        except ImportError:
            continue
        if family not in _FACTORIES:
            continue
        for scenario in _FACTORIES[family][1]:
            env_id = f"{family}:{scenario}"
            register_env(env_id, lambda cfg, _id=env_id: make_rllib_env(_id, cfg))
