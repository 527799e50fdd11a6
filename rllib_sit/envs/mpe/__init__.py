"""MPE family: ``mpe:cn_3ls3l``, ``mpe:cn_4ls4l``, ``mpe:pp_3p1p`` (SIT) and ``mpe:dg`` /
``mpe:dg_partial`` (the decentralized-MARL paper's differential game, full / partial observation,
25-steps episodes) with ``mpe:dg50`` / ``mpe:dg50_partial`` (the same game in 50-step episodes: the
paper gives no length, and its Table 9 returns exceed what 25 steps can pay).
Importing this package registers the family.

Docs (observations, exact rewards, calibration): docs/envs/mpe_mamujoco.md.
"""

from __future__ import annotations

from typing import Callable, Dict

from rllib_sit.envs.base import CoopEnv
from rllib_sit.envs.mpe.differential import DifferentialGame, dg_reward
from rllib_sit.envs.mpe.navigation import CooperativeNavigation
from rllib_sit.envs.mpe.predator_prey import PredatorPrey, prey_flee_direction
from rllib_sit.envs.registry import register_family

FAMILY = "mpe"

_SCENARIOS: Dict[str, Callable[..., CoopEnv]] = {
    "cn_3ls3l": lambda **kw: CooperativeNavigation("mpe:cn_3ls3l", n=3, **kw),
    "cn_4ls4l": lambda **kw: CooperativeNavigation("mpe:cn_4ls4l", n=4, **kw),
    "pp_3p1p": lambda **kw: PredatorPrey("mpe:pp_3p1p", n_predators=3, **kw),
    "dg": lambda **kw: DifferentialGame("mpe:dg", **kw),
    # VD/TN §5.4's partial-observation DG: the same game, each agent sees only its own position. Its own
    # id (not only ``mpe:dg`` with observe="partial") so data specs, datasets and benchmarks can name it.
    "dg_partial": lambda **kw: DifferentialGame("mpe:dg_partial", **_partial("mpe:dg_partial", kw)),
    # The episode length as part of the id, for the same reason: a dataset and its evaluation env
    # must agree on it. ``episode_limit`` still overrides it (as for every scenario).
    "dg50": lambda **kw: DifferentialGame("mpe:dg50", **{"episode_limit": 50, **kw}),
    "dg50_partial": lambda **kw: DifferentialGame(
        "mpe:dg50_partial", **_partial("mpe:dg50_partial", {"episode_limit": 50, **kw})),
}


def _partial(env_id: str, kwargs: dict) -> dict:
    if kwargs.get("observe", "partial") != "partial":
        raise ValueError(f"{env_id}: observe is always 'partial', got {kwargs['observe']!r} "
                         f"(use {env_id.replace('_partial', '')} for the full observation)")
    return {**kwargs, "observe": "partial"}


def make_mpe_env(scenario: str, **kwargs) -> CoopEnv:
    """Factory registered for the ``mpe`` family (kwargs go to the scenario's constructor)."""
    if scenario not in _SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r} for family 'mpe'; expected one of {sorted(_SCENARIOS)}")
    try:
        return _SCENARIOS[scenario](**kwargs)
    except TypeError as e:  # an unknown keyword argument
        raise ValueError(f"mpe:{scenario}: bad keyword argument(s) {sorted(kwargs)}: {e}") from None


register_family(FAMILY, make_mpe_env, list(_SCENARIOS))

__all__ = ["CooperativeNavigation", "PredatorPrey", "DifferentialGame", "dg_reward", "prey_flee_direction",
           "make_mpe_env"]
