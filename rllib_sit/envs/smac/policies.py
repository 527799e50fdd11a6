"""Scripted reference policies for SMAC maps: uniform random and a focus-fire heuristic.

``heuristic_action(env, i, rng, skill)`` degrades with ``skill`` in [0, 1]: with probability
``1 - skill`` the agent takes a uniformly random available action instead (skill 0 = random,
skill 1 = the pure heuristic). Policy pools (random / medium / expert) mix these.
"""

from __future__ import annotations

import numpy as np

from rllib_sit.envs.smac.obs import N_ACTIONS_NO_ATTACK

# Move actions 2..5 = N, S, E, W.
_NORTH, _SOUTH, _EAST, _WEST = 2, 3, 4, 5


def _check_skill(skill: float) -> float:
    skill = float(skill)
    if not 0.0 <= skill <= 1.0:
        raise ValueError(f"skill must be in [0, 1]; got {skill!r}")
    return skill


def random_actions(env, rng: np.random.Generator) -> np.ndarray:
    """One uniformly random available action per agent ([N] int64), vectorised."""
    masks = env.action_masks()
    u = rng.random(masks.shape)
    return np.argmax(np.where(masks > 0, u, -1.0), axis=1).astype(np.int64)


def _random_available(mask: np.ndarray, rng: np.random.Generator) -> int:
    avail = np.flatnonzero(mask > 0)
    return int(avail[rng.integers(len(avail))])


def heuristic_action(env, agent_index: int, rng: np.random.Generator, skill: float = 1.0) -> int:
    """Focus fire on the weakest enemy (HP + shield) in shoot range, else move toward the nearest enemy.

    Ties between equally weak enemies go to the lowest enemy index, so all agents pick the same
    target (focus fire). Movement picks the available direction that most reduces the distance.
    With probability ``1 - skill`` a uniformly random available action is taken instead.
    """
    skill = _check_skill(skill)
    mask = env.action_masks()[agent_index]
    if mask[0] > 0 and mask[1:].sum() == 0:
        return 0  # dead
    if skill < 1.0 and rng.random() >= skill:
        return _random_available(mask, rng)
    b, n_ag = env.battle, env.n_agents
    att = mask[N_ACTIONS_NO_ATTACK:] > 0
    if att.any():
        eff = b.hp[n_ag:] + b.sh[n_ag:]
        k = int(np.argmin(np.where(att, eff, np.inf)))
        return N_ACTIONS_NO_ATTACK + k
    alive_e = b.alive[n_ag:]
    if not alive_e.any():
        return 1
    rel = b.pos[n_ag:] - b.pos[agent_index]
    d = np.where(alive_e, np.hypot(rel[:, 0], rel[:, 1]), np.inf)
    dx, dy = rel[int(np.argmin(d))]
    prefs = ([(_EAST if dx > 0 else _WEST), (_NORTH if dy > 0 else _SOUTH)] if abs(dx) >= abs(dy)
             else [(_NORTH if dy > 0 else _SOUTH), (_EAST if dx > 0 else _WEST)])
    for a in prefs:
        if mask[a] > 0:
            return a
    return 1


def heuristic_actions(env, rng: np.random.Generator, skill: float = 1.0) -> np.ndarray:
    """:func:`heuristic_action` for every agent ([N] int64)."""
    return np.array([heuristic_action(env, i, rng, skill) for i in range(env.n_agents)], dtype=np.int64)
