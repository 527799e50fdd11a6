"""Reference behaviour policies of the MPE family (CN, PP, DG): uniform random and a scripted
heuristic with a ``skill`` knob, for building graded random / medium / expert pools.

Every policy is *per agent*: ``heuristic_action(env, i, rng, skill)`` returns agent ``i``'s action;
with probability ``1 - skill`` it is a uniformly random action instead (``skill=0`` is the uniform
random policy, ``skill=1`` the pure heuristic). ``heuristic_actions(env, rng, skill)`` gives all
agents' actions (``skill`` a float or one float per agent, e.g. ``[0.0, 0.5, 1.0]`` for an
agent-wise imbalanced team). The heuristics read the simulator (they are scripted behaviour
policies for data generation, not decentralised learners):

* CN: greedy "nearest free landmark": agent-landmark pairs are matched greedily by increasing
  distance (so no two seekers chase the same landmark); the seeker then pushes along the larger
  axis of ``target - (pos + 0.4 vel)`` (0.4 vel ~= how far it drifts when it stops pushing,
  damping 0.25, dt 0.1) and waits (no-op) once that point is within 0.05 of the target.
* PP: chase the prey: push along the larger axis of ``prey - (pos + 0.4 vel)``.
* DG: move toward the origin (the global optimum): speed ``clip(-x, -0.1, 0.1)``.
"""

from __future__ import annotations

from typing import Callable, Dict, Sequence, Union

import numpy as np

from rllib_sit.envs.base import CoopEnv, uniform_random_actions
from rllib_sit.envs.mpe.differential import SPEED_LIMIT, DifferentialGame
from rllib_sit.envs.mpe.navigation import CooperativeNavigation
from rllib_sit.envs.mpe.particles import N_MOVE_ACTIONS, toward_action
from rllib_sit.envs.mpe.predator_prey import PredatorPrey

DRIFT = 0.4  # sum_k 0.75^k * dt: distance per unit velocity an MPE particle drifts after it stops pushing
ARRIVED = 0.05  # CN: no-op once the drift point is this close to the target

Skill = Union[float, Sequence[float]]


def greedy_landmark_assignment(env: CooperativeNavigation) -> np.ndarray:
    """[N] landmark index per seeker, matched greedily by increasing seeker-landmark distance."""
    d = np.linalg.norm(env.seeker_pos()[:, None, :] - env.landmark_pos()[None, :, :], axis=2)
    out = np.full(env.n, -1)
    free_a, free_l = set(range(env.n)), set(range(len(env.landmarks)))
    for flat in np.argsort(d, axis=None, kind="stable"):
        i, l = divmod(int(flat), d.shape[1])
        if i in free_a and l in free_l:
            out[i] = l
            free_a.discard(i)
            free_l.discard(l)
    return out


def _cn_action(env: CooperativeNavigation, i: int) -> int:
    target = env.landmark_pos()[greedy_landmark_assignment(env)[i]]
    agent = env.seekers[i]
    delta = target - (agent.state.p_pos + DRIFT * agent.state.p_vel)
    return 0 if np.linalg.norm(delta) < ARRIVED else toward_action(delta)


def _pp_action(env: PredatorPrey, i: int) -> int:
    agent = env.predators[i]
    return toward_action(env.prey_pos() - (agent.state.p_pos + DRIFT * agent.state.p_vel))


def _dg_action(env: DifferentialGame, i: int) -> np.ndarray:
    return np.array([np.clip(-env.x[i], -SPEED_LIMIT, SPEED_LIMIT)], np.float32)


_HEURISTICS: Dict[type, Callable[[CoopEnv, int], object]] = {
    CooperativeNavigation: _cn_action, PredatorPrey: _pp_action, DifferentialGame: _dg_action,
}


def _heuristic_for(env: CoopEnv) -> Callable[[CoopEnv, int], object]:
    for cls, fn in _HEURISTICS.items():
        if isinstance(env, cls):
            return fn
    raise ValueError(f"env: no MPE heuristic for {type(env).__name__} ({env.info.env_id}); "
                     f"expected one of {[c.__name__ for c in _HEURISTICS]}")


def random_action(env: CoopEnv, agent_index: int, rng: np.random.Generator):
    """Agent ``agent_index``'s uniformly random action (int, or float [act_dim])."""
    if env.info.discrete:
        return int(rng.integers(env.info.n_actions))
    return rng.uniform(env.info.action_low, env.info.action_high, env.info.act_dim).astype(np.float32)


def _check_skill(skill: float) -> float:
    if not 0.0 <= float(skill) <= 1.0:
        raise ValueError(f"skill must be in [0, 1], got {skill!r}")
    return float(skill)


def _check_agent(env: CoopEnv, agent_index: int) -> None:
    if not 0 <= agent_index < env.info.n_agents:
        raise ValueError(f"agent_index must be in [0, {env.info.n_agents}), got {agent_index!r}")


def scripted_action(env: CoopEnv, agent_index: int):
    """Agent ``agent_index``'s deterministic heuristic action (the ``skill = 1`` action), drawing
    nothing from any RNG."""
    fn = _heuristic_for(env)
    _check_agent(env, agent_index)
    return fn(env, agent_index)


def heuristic_action(env: CoopEnv, agent_index: int, rng: np.random.Generator, skill: float = 1.0):
    """Agent ``agent_index``'s action: the heuristic with prob. ``skill``, else uniformly random.

    One ``rng.random()`` draw is always consumed (then one more for a random action), so a fixed
    seed gives a fixed action sequence. The deterministic action is :func:`scripted_action`; the
    exact distribution (discrete envs) :func:`heuristic_action_probs`.
    """
    fn = _heuristic_for(env)
    _check_agent(env, agent_index)
    if rng.random() >= _check_skill(skill):
        return random_action(env, agent_index, rng)
    return fn(env, agent_index)


def heuristic_action_probs(env: CoopEnv, agent_index: int, skill: float = 1.0) -> np.ndarray:
    """Exact distribution of :func:`heuristic_action` at the current state (discrete envs only),
    ``[n_actions]`` float64, no RNG: ``skill * [a == scripted] + (1 - skill) / n_actions``
    (:func:`random_action` is uniform over all actions, available or not: MPE masks are all ones)."""
    skill = _check_skill(skill)
    _heuristic_for(env)
    _check_agent(env, agent_index)
    if not env.info.discrete:
        raise ValueError(f"{env.info.env_id}: heuristic_action_probs needs discrete actions; this env's are "
                         f"continuous (the heuristic is a point mass mixed with a density)")
    p = np.full(env.info.n_actions, (1.0 - skill) / env.info.n_actions, np.float64)
    if skill > 0.0:
        p[int(scripted_action(env, agent_index))] += skill
    return p


def heuristic_actions(env: CoopEnv, rng: np.random.Generator, skill: Skill = 1.0) -> np.ndarray:
    """All agents' actions ([N] int or [N, act_dim] float); ``skill`` a float or one per agent."""
    n = env.info.n_agents
    skills = np.broadcast_to(np.asarray(skill, np.float64), (n,)) if np.ndim(skill) == 0 else np.asarray(skill)
    if skills.shape != (n,):
        raise ValueError(f"skill must be a float or {n} floats (one per agent), got {skill!r}")
    acts = [heuristic_action(env, i, rng, float(s)) for i, s in enumerate(skills)]
    if env.info.discrete:
        return np.asarray(acts, np.int64)
    return np.stack([np.asarray(a, np.float32).reshape(env.info.act_dim) for a in acts])


def random_actions(env: CoopEnv, rng: np.random.Generator) -> np.ndarray:
    """All agents' uniformly random actions (same as ``rllib_sit.envs.uniform_random_actions``)."""
    return uniform_random_actions(env, rng)


__all__ = ["heuristic_action", "heuristic_actions", "heuristic_action_probs", "scripted_action",
           "random_action", "random_actions",
           "greedy_landmark_assignment", "N_MOVE_ACTIONS"]
