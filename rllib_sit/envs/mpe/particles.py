"""Shared plumbing of the particle tasks (CN, PP) built on ``mpe2``'s physics.

``mpe2``'s AEC/Parallel envs observe with nearest-k options that make ``state()`` non-global and
draw a pygame surface on construction, so the tasks here only borrow its *world*: a scenario's
``make_world`` / ``reset_world`` build and place the particles, ``World.step`` integrates the
physics (dt 0.1, damping 0.25, soft contact forces). Actions, observations, global state and team
reward are defined in this package.
"""

from __future__ import annotations

import os
from typing import Optional

import numpy as np

from rllib_sit.envs.base import CoopEnv

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")  # mpe2 imports pygame at module level

N_MOVE_ACTIONS = 5
"""Discrete MPE actions: 0 no-op, 1 left (-x), 2 right (+x), 3 down (-y), 4 up (+y)."""

_DIRECTIONS = np.array([[0.0, 0.0], [-1.0, 0.0], [1.0, 0.0], [0.0, -1.0], [0.0, 1.0]])
DEFAULT_SENSITIVITY = 5.0  # mpe2: force scale of an agent whose ``accel`` is None


def direction_of(action: int) -> np.ndarray:
    """Unit force direction of discrete MPE action ``action`` (a copy)."""
    return _DIRECTIONS[int(action)].copy()


def set_discrete_action(agent, action: int) -> None:
    """Apply discrete action ``action`` to an mpe2 agent exactly as mpe2's ``_set_action`` does."""
    scale = DEFAULT_SENSITIVITY if agent.accel is None else agent.accel
    agent.action.u = _DIRECTIONS[int(action)] * scale
    agent.action.c = np.zeros(2)


def toward_action(delta: np.ndarray) -> int:
    """The discrete action whose direction best follows ``delta`` (larger axis first); 0 if tiny."""
    if abs(delta[0]) < 1e-9 and abs(delta[1]) < 1e-9:
        return 0
    if abs(delta[0]) >= abs(delta[1]):
        return 2 if delta[0] > 0 else 1
    return 4 if delta[1] > 0 else 3


def nearest(origin: np.ndarray, points: np.ndarray, k: int, exclude: Optional[int] = None) -> np.ndarray:
    """Indices of the ``k`` rows of ``points`` [M, 2] nearest to ``origin`` (stable: ties keep index
    order), optionally skipping row ``exclude``."""
    d = np.linalg.norm(points - origin, axis=1)
    if exclude is not None:
        d[exclude] = np.inf
    return np.argsort(d, kind="stable")[:k]


class ParticleEnv(CoopEnv):
    """Base of the discrete particle tasks: seeding, step counting, all-ones masks.

    Subclasses build ``self.world``/``self.scenario`` in ``__init__`` and implement
    ``_place(rng)``, ``_apply_actions(actions)``, ``_team_reward()``, ``_obs()``, ``state()``.
    """

    episode_limit: int

    def __init__(self) -> None:
        super().__init__()
        self._rng = np.random.default_rng()
        self.t = 0

    def _reset(self, seed: Optional[int]) -> None:
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        self.t = 0
        self._place(self._rng)

    def _step(self, actions: np.ndarray):
        bad = [int(a) for a in actions if not 0 <= int(a) < N_MOVE_ACTIONS]
        if bad:
            raise ValueError(f"{self.info.env_id}: actions must be in [0, {N_MOVE_ACTIONS}); got {bad}")
        self._apply_actions(actions)
        self.world.step()
        self._after_physics()
        self.t += 1
        reward = self._team_reward()
        truncated = self.t >= self.info.episode_limit
        return reward, False, truncated, {}

    def _after_physics(self) -> None:
        """Hook run after ``World.step`` (e.g. keep the prey inside the arena)."""

    def action_masks(self) -> np.ndarray:
        return np.ones((self.info.n_agents, N_MOVE_ACTIONS), dtype=np.float32)

    # -- helpers ------------------------------------------------------------------------------
    @staticmethod
    def _positions(entities) -> np.ndarray:
        return np.array([e.state.p_pos for e in entities], dtype=np.float64)

    @staticmethod
    def _velocities(entities) -> np.ndarray:
        return np.array([e.state.p_vel for e in entities], dtype=np.float64)
