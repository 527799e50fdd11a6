"""Cooperative navigation (CN_3ls3l, CN_4ls4l) with the SIT paper's partial observability.

N landmark seekers must cover N landmarks (mpe2 ``simple_spread`` world: agents of size 0.15,
uniform start positions in [-1, 1]^2, landmarks do not collide).

* Observation of seeker i (10 floats, SIT Appendix C.1 Table 3: 1 other seeker, 2 landmarks):
  ``[own vel (2), own pos (2), rel. pos of the 2 nearest landmarks (4, nearest first),
  rel. pos of the nearest other seeker (2)]``.
* Global state: ``[pos and vel of every seeker (4N), pos of every landmark (2N)]``.
* Team reward per step: ``N * (-sum_l min_i ||x_i - y_l||)``, i.e. mpe2's global reward with
  ``local_ratio = 0`` (no collision term) summed over the N agents, which is what the paper's
  returns are (specs/mpe_notes.md).
* Episodes: 25 steps, truncated (never terminated).
"""

from __future__ import annotations

from typing import Dict

import numpy as np

from rllib_sit.envs.base import EnvInfo
from rllib_sit.envs.mpe.particles import N_MOVE_ACTIONS, ParticleEnv, nearest, set_discrete_action

N_OBS_LANDMARKS = 2  # SIT Table 3
N_OBS_SEEKERS = 1  # SIT Table 3
CN_AGENT_TYPE = "landmark_seeker"


class CooperativeNavigation(ParticleEnv):
    """CN with ``n`` seekers and ``n`` landmarks; agent ids ``ls1..lsN``."""

    def __init__(self, env_id: str, n: int, episode_limit: int = 25):
        from mpe2.simple_spread.simple_spread import Scenario

        if not isinstance(n, int) or n < 2:
            raise ValueError(f"{env_id}: n (number of seekers) must be an int >= 2, got {n!r}")
        if not isinstance(episode_limit, int) or episode_limit < 1:
            raise ValueError(f"{env_id}: episode_limit must be a positive int, got {episode_limit!r}")
        self.n = n
        self.scenario = Scenario()
        self.world = self.scenario.make_world(n)
        self.seekers = self.world.agents
        self.landmarks = self.world.landmarks
        self.info = EnvInfo(
            env_id=env_id, agents=[f"ls{i + 1}" for i in range(n)], agent_types=[CN_AGENT_TYPE] * n,
            obs_dim=4 + 2 * N_OBS_LANDMARKS + 2 * N_OBS_SEEKERS, state_dim=6 * n,
            episode_limit=episode_limit, discrete=True, n_actions=N_MOVE_ACTIONS)
        super().__init__()
        self._sum_dist, self._last_dist = np.zeros(n), np.zeros(n)  # agent_stats() before reset()

    # -- dynamics -----------------------------------------------------------------------------
    def _place(self, rng: np.random.Generator) -> None:
        self.scenario.reset_world(self.world, rng)
        self._sum_dist = np.zeros(self.n)
        self._last_dist = self.nearest_landmark_distances()

    def _apply_actions(self, actions: np.ndarray) -> None:
        for agent, a in zip(self.seekers, actions):
            set_discrete_action(agent, a)

    def _after_physics(self) -> None:
        self._last_dist = self.nearest_landmark_distances()
        self._sum_dist += self._last_dist

    def _team_reward(self) -> float:
        return float(self.n * self.global_reward())

    def global_reward(self) -> float:
        """mpe2's ``simple_spread`` global reward: minus the sum over landmarks of the distance to
        the closest seeker."""
        d = np.linalg.norm(self.landmark_pos()[:, None, :] - self.seeker_pos()[None, :, :], axis=2)
        return -float(d.min(axis=1).sum())

    # -- views --------------------------------------------------------------------------------
    def seeker_pos(self) -> np.ndarray:
        return self._positions(self.seekers)

    def landmark_pos(self) -> np.ndarray:
        return self._positions(self.landmarks)

    def nearest_landmark_distances(self) -> np.ndarray:
        """[N] distance of each seeker to its nearest landmark."""
        d = np.linalg.norm(self.seeker_pos()[:, None, :] - self.landmark_pos()[None, :, :], axis=2)
        return d.min(axis=1)

    def _obs(self) -> np.ndarray:
        pos, vel, lms = self.seeker_pos(), self._velocities(self.seekers), self.landmark_pos()
        out = np.zeros((self.n, self.info.obs_dim), np.float32)
        for i in range(self.n):
            near_l = nearest(pos[i], lms, N_OBS_LANDMARKS)
            near_a = nearest(pos[i], pos, N_OBS_SEEKERS, exclude=i)
            out[i] = np.concatenate([vel[i], pos[i], (lms[near_l] - pos[i]).ravel(),
                                     (pos[near_a] - pos[i]).ravel()])
        return out

    def state(self) -> np.ndarray:
        pos, vel = self.seeker_pos(), self._velocities(self.seekers)
        return np.concatenate([np.concatenate([pos, vel], axis=1).ravel(),
                               self.landmark_pos().ravel()]).astype(np.float32)

    def agent_stats(self) -> Dict[str, np.ndarray]:
        """Per seeker: mean (over the steps so far) and final distance to its nearest landmark."""
        steps = max(self.t, 1)
        return {"mean_dist_nearest_landmark": (self._sum_dist / steps).astype(np.float32),
                "final_dist_nearest_landmark": self._last_dist.astype(np.float32)}
