"""The differential game (DG) of the decentralized-MARL paper (offline_decentralized_marl_vd_tn §5.4).

Two agents move on a line each: positions ``x1, x2`` in [-1, 1], actions are speeds in
[-0.1, 0.1] (``x <- clip(x + a, -1, 1)``). With ``l = sqrt(x1^2 + x2^2)`` after the move, the
shared reward is

    r = 0.5 * (cos(15 l) + 1)   if l < 0.2
        0                        if 0.2 <= l <= 0.6
        0.5 * (l - 0.6)^2        if l > 0.6

(a narrow global optimum r = 1 at the origin, a flat zero ring, and a broad local optimum of
0.5 * (sqrt(2) - 0.6)^2 ~= 0.33 in the corners). Starts uniform in [-1, 1]^2; 25-step episodes
(the MPE default; the paper does not give a length). ``observe="full"``: each agent sees
``[own x, other x]``; ``observe="partial"``: only ``[own x]`` (§5.4: "the dataset of each agent only
contains its own position"). State: ``[x1, x2]``. Registered as ``mpe:dg`` (full; ``observe`` may be
passed) and ``mpe:dg_partial`` (always partial): same dynamics, rewards and RNG use, so the same seed and
actions give the same trajectories.
"""

from __future__ import annotations

from typing import Dict, Optional

import numpy as np

from rllib_sit.envs.base import CoopEnv, EnvInfo

SPEED_LIMIT = 0.1
OBSERVE_MODES = ("full", "partial")
DG_AGENT_TYPE = "point"


def dg_reward(x1, x2):
    """The §5.4 piecewise reward of positions ``x1, x2`` (scalars or arrays)."""
    l = np.sqrt(np.square(x1) + np.square(x2))
    return np.where(l < 0.2, 0.5 * (np.cos(15.0 * l) + 1.0), np.where(l <= 0.6, 0.0, 0.5 * (l - 0.6) ** 2))


class DifferentialGame(CoopEnv):
    """Agents ``a1, a2`` (one shared type), continuous 1-D speed actions."""

    def __init__(self, env_id: str = "mpe:dg", observe: str = "full", episode_limit: int = 25):
        if observe not in OBSERVE_MODES:
            raise ValueError(f"{env_id}: observe must be one of {OBSERVE_MODES}, got {observe!r}")
        if not isinstance(episode_limit, int) or episode_limit < 1:
            raise ValueError(f"{env_id}: episode_limit must be a positive int, got {episode_limit!r}")
        self.observe = observe
        self.info = EnvInfo(
            env_id=env_id, agents=["a1", "a2"], agent_types=[DG_AGENT_TYPE] * 2,
            obs_dim=2 if observe == "full" else 1, state_dim=2, episode_limit=episode_limit,
            discrete=False, act_dim=1, action_low=-SPEED_LIMIT, action_high=SPEED_LIMIT)
        super().__init__()
        self._rng = np.random.default_rng()
        self.x = np.zeros(2)
        self.t = 0
        self._sum_abs = np.zeros(2)

    def _reset(self, seed: Optional[int]) -> None:
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        self.x = self._rng.uniform(-1.0, 1.0, 2)
        self.t = 0
        self._sum_abs = np.zeros(2)

    def _step(self, actions: np.ndarray):
        a = np.clip(np.asarray(actions, np.float64).reshape(2), -SPEED_LIMIT, SPEED_LIMIT)
        self.x = np.clip(self.x + a, -1.0, 1.0)
        self.t += 1
        self._sum_abs += np.abs(self.x)
        return float(dg_reward(self.x[0], self.x[1])), False, self.t >= self.info.episode_limit, {}

    def _obs(self) -> np.ndarray:
        if self.observe == "partial":
            return self.x[:, None].astype(np.float32)
        return np.array([[self.x[0], self.x[1]], [self.x[1], self.x[0]]], np.float32)

    def state(self) -> np.ndarray:
        return self.x.astype(np.float32)

    def agent_stats(self) -> Dict[str, np.ndarray]:
        """Per agent: mean |position| over the steps so far (0 = sits on the global optimum's axis)."""
        return {"mean_abs_position": (self._sum_abs / max(self.t, 1)).astype(np.float32)}
