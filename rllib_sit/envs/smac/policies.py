"""Scripted reference policies for SMAC maps: uniform random and a focus-fire heuristic.

``heuristic_action(env, i, rng, skill)`` degrades with ``skill`` in [0, 1]: with probability
``1 - skill`` the agent takes a uniformly random available action instead (skill 0 = random,
skill 1 = the pure heuristic). Policy pools (random / medium / expert) mix these.
``scripted_action(env, i)`` is the deterministic scripted choice (no RNG) and
``heuristic_action_probs(env, i, skill)`` the exact action distribution of ``heuristic_action``
(what the dataset generator records as the behaviour log-probabilities).
"""

from __future__ import annotations

import numpy as np

from rllib_sit.envs.smac.maps import TEAM1_POINT
from rllib_sit.envs.smac.obs import N_ACTIONS_NO_ATTACK

# Move actions 2..5 = N, S, E, W.
_NORTH, _SOUTH, _EAST, _WEST = 2, 3, 4, 5
_DIRS = np.array([[0.0, 1.0], [0.0, -1.0], [1.0, 0.0], [-1.0, 0.0]])
# Kiting: a ranged agent retreats from a melee enemy closer than this (edge to edge, map units)
# while more than KITE_MIN_COOLDOWN game loops of its weapon cooldown remain.
KITE_DISTANCE = 1.5
KITE_MIN_COOLDOWN = 4.0
# Tank swap: retreat only while an ally keeps more than this fraction of its shields, from an
# enemy whose weapon range (edge to edge) + this margin reaches the agent.
TANK_SWAP_SHIELD = 0.5
KITE = True
TANK_SWAP = True
TANK_SWAP_MARGIN = 1.0


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


def _move_along(mask: np.ndarray, direction: np.ndarray) -> int:
    """The available move action best aligned with ``direction`` (stop if none is)."""
    best, best_dot = 1, -np.inf
    for a, d in zip((_NORTH, _SOUTH, _EAST, _WEST), _DIRS):
        if mask[a] > 0:
            dot = float(direction @ d)
            if dot > best_dot:
                best, best_dot = a, dot
    return best


# 2s_vs_1sc (alternating focus): the stalker the spine crawler targets walks out of the crawler's
# reach once its HP + shield is at most one crawler hit (30 vs a stalker) while the other stalker
# has more, so the crawler retargets the other one; it then comes back and fires.
SPINE_SWAP_EHP = 30.0
# SMAC's hard-coded shoot range (centre distance) that gates the attack actions; approaching stalkers
# aim to end a step just inside it (fewer steps spent inside the crawler's longer reach).
_SHOOT_RANGE = 6.0
_AGENT_STEP_LOOPS = 8.0


def _spine_approach(b, mask: np.ndarray, i: int, t: int) -> int:
    """Move that lands farthest from unit ``t`` while still within SMAC's shoot range, else the
    move that gets closest (stop if none is available)."""
    step = b.speed[i] * _AGENT_STEP_LOOPS
    best, best_d, far, far_d = None, np.inf, None, -np.inf
    for a, d in zip((_NORTH, _SOUTH, _EAST, _WEST), _DIRS):
        if mask[a] <= 0:
            continue
        dd = float(np.hypot(*(b.pos[i] + d * step - b.pos[t])))
        if dd <= _SHOOT_RANGE - 0.05 and dd > far_d:
            far, far_d = a, dd
        if dd < best_d:
            best, best_d = a, dd
    return far if far is not None else (best if best is not None else 1)


def _spine_action(env, mask: np.ndarray, i: int) -> int:
    """2s_vs_1sc micro: alternate the crawler's target between the two stalkers (see SPINE_SWAP_EHP)."""
    b, n_ag = env.battle, env.n_agents
    s = n_ag  # the spine crawler
    rel = b.pos[s] - b.pos[i]
    edge = float(np.hypot(rel[0], rel[1])) - b.radius[s] - b.radius[i]
    ehp = b.hp + b.sh
    others = [j for j in range(n_ag) if j != i and b.alive[j] and ehp[j] > SPINE_SWAP_EHP]
    if b.ai_tgt[s] == i and ehp[i] <= SPINE_SWAP_EHP and others:
        return _move_along(mask, -rel) if edge <= b.range[s] else 1
    if mask[N_ACTIONS_NO_ATTACK] > 0:
        return N_ACTIONS_NO_ATTACK
    return _spine_approach(b, mask, i, s)


# 10m_vs_11m (outnumbered marines), also used on 3m (the offline decentralized MARL paper's map,
# where plain focus fire wins only ~55%: 13.55 ± 6.20 over 200 episodes vs 18.98 ± 3.35 with this
# micro): before contact the marines spread on a concave arc (radius
# MARINE_ARC_RADIUS, MARINE_ARC_SPACING apart, its middle at x = MARINE_ARC_X, y = the spawn point's) and
# hold there until an enemy acquires a target or comes within MARINE_HOLD_RANGE, so the enemy blob
# walks into the arc; a marine with at most MARINE_RETREAT_HP HP that an enemy targets steps away
# from it (the enemy retargets a healthier marine); otherwise focus fire as on every map.
MARINE_ARC_RADIUS = 9.0
MARINE_ARC_SPACING = 1.0
MARINE_ARC_X = 7.0
MARINE_FORM_UNTIL = 9.5  # form the arc while every enemy is farther than this from every agent
MARINE_HOLD_RANGE = 7.5
MARINE_RETREAT_HP = 12.0
MARINE_MICRO_MAPS = ("10m_vs_11m", "3m")  # 8m's pool was calibrated with plain focus fire; kept


def _marine_action(env, mask: np.ndarray, i: int) -> int:
    """10m_vs_11m / 3m micro: concave arc, hold, pull back targeted low-HP marines, focus fire."""
    b, n_ag = env.battle, env.n_agents
    alive_a, alive_e = b.alive[:n_ag], b.alive[n_ag:]
    rel = b.pos[n_ag:] - b.pos[i]
    dist = np.where(alive_e, np.hypot(rel[:, 0], rel[:, 1]), np.inf)
    gap = b.pos[:n_ag, None, :] - b.pos[None, n_ag:, :]
    D = np.where(alive_a[:, None] & alive_e[None, :], np.hypot(gap[..., 0], gap[..., 1]), np.inf)
    if D.min() > MARINE_FORM_UNTIL:
        ids = sorted(np.flatnonzero(alive_a).tolist(), key=lambda j: b.pos[j, 1])
        j, k = ids.index(i), len(ids)
        th = (j - (k - 1) / 2) * MARINE_ARC_SPACING / MARINE_ARC_RADIUS
        slot = np.array([MARINE_ARC_X + MARINE_ARC_RADIUS * (1.0 - np.cos(th)),
                         TEAM1_POINT[1] + MARINE_ARC_RADIUS * np.sin(th)])
        d = slot - b.pos[i]
        return 1 if np.hypot(d[0], d[1]) < 0.75 else _move_along(mask, d)
    if b.hp[i] <= MARINE_RETREAT_HP:
        hunters = np.flatnonzero((b.ai_tgt[n_ag:] == i) & alive_e)
        if len(hunters):
            return _move_along(mask, -rel[int(hunters[np.argmin(dist[hunters])])])
    att = mask[N_ACTIONS_NO_ATTACK:] > 0
    if att.any():
        eff = b.hp[n_ag:] + b.sh[n_ag:]
        return N_ACTIONS_NO_ATTACK + int(np.argmin(np.where(att, eff, np.inf)))
    if dist.min() > MARINE_HOLD_RANGE and not (b.ai_tgt[n_ag:] >= 0).any():
        return 1
    return _move_along(mask, rel[int(np.argmin(dist))])


def _check_agent(env, agent_index: int) -> None:
    if not hasattr(env, "battle"):
        raise ValueError(f"env must be the NumPy SMAC simulator (SMACEnv) for the heuristic; got {type(env).__name__}")
    if not 0 <= agent_index < env.n_agents:
        raise ValueError(f"agent_index must be in [0, {env.n_agents}); got {agent_index!r}")


def _is_dead(mask: np.ndarray) -> bool:
    """SMAC's mask of a dead agent: only the no-op (action 0) available."""
    return bool(mask[0] > 0 and mask[1:].sum() == 0)


def _scripted(env, mask: np.ndarray, i: int) -> int:
    """The deterministic scripted action of live agent ``i`` (no RNG), see :func:`heuristic_action`."""
    b, n_ag = env.battle, env.n_agents
    alive_e = b.alive[n_ag:]
    if not alive_e.any():
        return 1
    if env.map.name == "2s_vs_1sc":
        return _spine_action(env, mask, i)
    if env.map.name in MARINE_MICRO_MAPS:
        return _marine_action(env, mask, i)
    rel = b.pos[n_ag:] - b.pos[i]
    dist = np.where(alive_e, np.hypot(rel[:, 0], rel[:, 1]), np.inf)
    edge = dist - b.radius[n_ag:] - b.radius[i]
    # (1) kite melee enemies while reloading
    if KITE and b.range[i] >= 2 and b.cd[i] > KITE_MIN_COOLDOWN:
        melee = alive_e & (b.range[n_ag:] < 1) & (b.speed[n_ag:] > 0) & (edge < KITE_DISTANCE)
        if melee.any():
            k = int(np.argmin(np.where(melee, dist, np.inf)))
            return _move_along(mask, -rel[k])
    # (2) tank swap: step out of range of the enemy that targets me once my shields are gone
    if TANK_SWAP and b.range[i] >= 2 and b.sh_max[i] > 0 and b.sh[i] <= 0:
        hunters = np.flatnonzero((b.ai_tgt[n_ag:] == i) & alive_e)
        others = [j for j in range(n_ag) if j != i and b.alive[j] and b.sh[j] > TANK_SWAP_SHIELD * b.sh_max[j]]
        if len(hunters) and others:
            k = int(hunters[np.argmin(dist[hunters])])
            if edge[k] <= b.range[n_ag + k] + TANK_SWAP_MARGIN:
                return _move_along(mask, -rel[k])
    # (3) focus fire
    att = mask[N_ACTIONS_NO_ATTACK:] > 0
    if att.any():
        eff = b.hp[n_ag:] + b.sh[n_ag:]
        return N_ACTIONS_NO_ATTACK + int(np.argmin(np.where(att, eff, np.inf)))
    # (4) approach the nearest enemy
    return _move_along(mask, rel[int(np.argmin(dist))])


def scripted_action(env, agent_index: int) -> int:
    """The deterministic part of :func:`heuristic_action` (its ``skill = 1`` action), drawing
    nothing from any RNG: 0 for a dead agent, else the scripted micro."""
    _check_agent(env, agent_index)
    mask = env.action_masks()[agent_index]
    if _is_dead(mask):
        return 0
    return _scripted(env, mask, agent_index)


def heuristic_action(env, agent_index: int, rng: np.random.Generator, skill: float = 1.0) -> int:
    """Scripted SMAC micro for one agent (reads the simulator's unit table, like a scripted bot).

    In order: (1) a ranged agent whose weapon is reloading kites away from a melee enemy that is
    about to reach it; (2) a ranged agent targeted by an enemy, with its shields gone while an ally still
    has shields, steps out of that enemy's range (tank swap); (3) focus fire: attack the enemy in
    shoot range with the least HP + shield (ties -> lowest index, so all agents agree); (4) move
    toward the nearest enemy. With probability ``1 - skill`` a uniformly random available action
    is taken instead. A dead agent takes the no-op 0 (no draw). RNG use: for ``skill < 1`` one
    ``rng.random()``, then one ``rng.integers`` if the random action is taken; none for ``skill = 1``.
    The deterministic action is :func:`scripted_action`, the exact distribution
    :func:`heuristic_action_probs`.
    """
    skill = _check_skill(skill)
    _check_agent(env, agent_index)
    mask = env.action_masks()[agent_index]
    if _is_dead(mask):
        return 0  # dead
    if skill < 1.0 and rng.random() >= skill:
        return _random_available(mask, rng)
    return _scripted(env, mask, agent_index)


def heuristic_action_probs(env, agent_index: int, skill: float = 1.0) -> np.ndarray:
    """Exact distribution of :func:`heuristic_action` at the current state, ``[n_actions]`` float64
    (no RNG): ``skill * [a == scripted] + (1 - skill) / |avail|`` over the available actions; a dead
    agent takes 0 with probability 1."""
    skill = _check_skill(skill)
    _check_agent(env, agent_index)
    mask = env.action_masks()[agent_index]
    p = np.zeros(len(mask), np.float64)
    if _is_dead(mask):
        p[0] = 1.0
        return p
    if skill < 1.0:
        avail = mask > 0
        p[avail] = (1.0 - skill) / int(avail.sum())
    if skill > 0.0:
        p[_scripted(env, mask, agent_index)] += skill
    return p


def heuristic_actions(env, rng: np.random.Generator, skill: float = 1.0) -> np.ndarray:
    """:func:`heuristic_action` for every agent ([N] int64)."""
    return np.array([heuristic_action(env, i, rng, skill) for i in range(env.n_agents)], dtype=np.int64)
