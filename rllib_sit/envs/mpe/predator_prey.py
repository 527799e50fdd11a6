"""Predator-prey (PP_3p1p) with a heuristic prey and the SIT paper's partial observability.

World: mpe2 ``simple_tag`` with 3 predators ("adversaries": size 0.075, accel 3, max speed 1.0),
1 prey (size 0.05, accel 4, max speed 1.3) and **no obstacles** (the paper's Table 3 observation
has no obstacle slot). Start positions uniform in [-1, 1]^2.

* Prey (not a learner, SIT Appendix C.1): every step it pushes with full force straight away from
  the nearest predator. It is kept inside the arena [-1, 1]^2: after each physics step its position
  is clipped to the square and the outward velocity component zeroed (mpe2's own prey is penalised
  for leaving the square for the same reason; a faster prey on an unbounded plane cannot be caught).
* Observation of predator i (10 floats, Table 3: 1 predator and the prey):
  ``[own vel (2), own pos (2), rel. pos of the nearest other predator (2), rel. pos of the prey (2),
  prey vel (2)]``.
* Global state: ``[pos and vel of every predator (12), prey pos and vel (4)]``.
* Team reward per step: ``-distance_weight * sum_i ||x_i - x_prey|| + catch_bonus * (number of
  predators touching the prey)``, defaults ``distance_weight = 2.5``, ``catch_bonus = 10`` (mpe2's
  per-collision bonus). 2.5 is calibrated so that a uniformly random team's return lands inside the
  paper's random pool (-306.57 to -231.08); see docs/envs/mpe_mamujoco.md.
* Episodes: 25 steps, truncated (never terminated).
"""

from __future__ import annotations

from typing import Dict

import numpy as np

from rllib_sit.envs.base import EnvInfo
from rllib_sit.envs.mpe.particles import N_MOVE_ACTIONS, ParticleEnv, nearest, set_discrete_action

PP_AGENT_TYPE = "predator"
ARENA = 1.0  # the prey stays inside [-ARENA, ARENA]^2
DISTANCE_WEIGHT = 2.5  # calibrated: random team inside the SIT random pool (docs/envs/mpe_mamujoco.md)
CATCH_BONUS = 10.0  # mpe2 simple_tag: +10 per predator-prey collision


def prey_flee_direction(prey_pos: np.ndarray, predator_pos: np.ndarray) -> np.ndarray:
    """Unit vector from the nearest predator (rows of ``predator_pos`` [M, 2]) to the prey."""
    j = int(nearest(prey_pos, predator_pos, 1)[0])
    d = np.asarray(prey_pos, np.float64) - predator_pos[j]
    norm = float(np.linalg.norm(d))
    return d / norm if norm > 1e-9 else np.array([1.0, 0.0])


class PredatorPrey(ParticleEnv):
    """PP with ``n_predators`` learners ``p1..pN`` and one heuristic prey."""

    def __init__(self, env_id: str, n_predators: int = 3, episode_limit: int = 25,
                 distance_weight: float = DISTANCE_WEIGHT, catch_bonus: float = CATCH_BONUS):
        from mpe2.simple_tag.simple_tag import Scenario

        if not isinstance(n_predators, int) or n_predators < 2:
            raise ValueError(f"{env_id}: n_predators must be an int >= 2, got {n_predators!r}")
        if not isinstance(episode_limit, int) or episode_limit < 1:
            raise ValueError(f"{env_id}: episode_limit must be a positive int, got {episode_limit!r}")
        if not float(distance_weight) >= 0:
            raise ValueError(f"{env_id}: distance_weight must be >= 0, got {distance_weight!r}")
        self.n = n_predators
        self.distance_weight = float(distance_weight)
        self.catch_bonus = float(catch_bonus)
        self.scenario = Scenario()
        self.world = self.scenario.make_world(num_good=1, num_adversaries=n_predators, num_obstacles=0)
        self.predators = self.world.agents[:n_predators]
        self.prey = self.world.agents[n_predators]
        self.info = EnvInfo(
            env_id=env_id, agents=[f"p{i + 1}" for i in range(n_predators)],
            agent_types=[PP_AGENT_TYPE] * n_predators, obs_dim=10, state_dim=4 * (n_predators + 1),
            episode_limit=episode_limit, discrete=True, n_actions=N_MOVE_ACTIONS)
        super().__init__()
        self._sum_dist, self._catches = np.zeros(n_predators), np.zeros(n_predators)  # before reset()

    # -- dynamics -----------------------------------------------------------------------------
    def _place(self, rng: np.random.Generator) -> None:
        self.scenario.reset_world(self.world, rng)
        self._sum_dist = np.zeros(self.n)
        self._catches = np.zeros(self.n)

    def _apply_actions(self, actions: np.ndarray) -> None:
        for agent, a in zip(self.predators, actions):
            set_discrete_action(agent, a)
        self.prey.action.u = prey_flee_direction(self.prey_pos(), self.predator_pos()) * self.prey.accel
        self.prey.action.c = np.zeros(2)

    def _after_physics(self) -> None:
        p, v = self.prey.state.p_pos, self.prey.state.p_vel
        out = np.abs(p) > ARENA
        if out.any():
            v[out & (np.sign(v) == np.sign(p))] = 0.0
            np.clip(p, -ARENA, ARENA, out=p)
        d = self.prey_distances()
        self._sum_dist += d
        self._catches += self.touching()

    def prey_distances(self) -> np.ndarray:
        """[N] distance of every predator to the prey."""
        return np.linalg.norm(self.predator_pos() - self.prey_pos(), axis=1)

    def touching(self) -> np.ndarray:
        """[N] 1.0 where a predator collides with the prey (mpe2's ``is_collision``)."""
        return (self.prey_distances() < self.prey.size + self.predators[0].size).astype(np.float64)

    def _team_reward(self) -> float:
        return float(-self.distance_weight * self.prey_distances().sum()
                     + self.catch_bonus * self.touching().sum())

    # -- views --------------------------------------------------------------------------------
    def predator_pos(self) -> np.ndarray:
        return self._positions(self.predators)

    def prey_pos(self) -> np.ndarray:
        return np.array(self.prey.state.p_pos, dtype=np.float64)

    def _obs(self) -> np.ndarray:
        pos, vel = self.predator_pos(), self._velocities(self.predators)
        prey_p, prey_v = self.prey_pos(), np.asarray(self.prey.state.p_vel, np.float64)
        out = np.zeros((self.n, self.info.obs_dim), np.float32)
        for i in range(self.n):
            j = int(nearest(pos[i], pos, 1, exclude=i)[0])
            out[i] = np.concatenate([vel[i], pos[i], pos[j] - pos[i], prey_p - pos[i], prey_v])
        return out

    def state(self) -> np.ndarray:
        pos, vel = self.predator_pos(), self._velocities(self.predators)
        prey = np.concatenate([self.prey_pos(), np.asarray(self.prey.state.p_vel, np.float64)])
        return np.concatenate([np.concatenate([pos, vel], axis=1).ravel(), prey]).astype(np.float32)

    def agent_stats(self) -> Dict[str, np.ndarray]:
        """Per predator: mean distance to the prey over the steps so far, and catch count."""
        steps = max(self.t, 1)
        return {"mean_dist_to_prey": (self._sum_dist / steps).astype(np.float32),
                "catches": self._catches.astype(np.float32)}
