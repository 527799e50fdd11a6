"""Seed games of the decentralized-MARL paper (offline_decentralized_marl_vd_tn.md).

``matrix:vdtn`` — the two-player matrix game of its Table 1. Rows: agent 1's action, columns:
agent 2's action::

                 a2=a_1  a2=a_2
    a1 = a_1        1       5
    a1 = a_2        6       1

One-step episodes (terminated after the single step), 2 discrete actions per agent, constant
observation ``[1.0]`` and constant state ``[1.0]``. The optimum is the joint action
``(a_2, a_1)`` (return 6); the behaviour policies that generate the paper's dataset choose
``a_1`` / ``a_2`` with probabilities ``BEHAVIOUR_PROBS[0] = [0.8, 0.2]`` (agent 1) and
``BEHAVIOUR_PROBS[1] = [0.4, 0.6]`` (agent 2). (The differential game of the same paper is
``mpe:dg``, in :mod:`rllib_sit.envs.mpe`.)
"""

from __future__ import annotations

from typing import Dict, Optional

import numpy as np

from rllib_sit.envs.base import CoopEnv, EnvInfo
from rllib_sit.envs.registry import register_family

FAMILY = "matrix"
PAYOFF = np.array([[1.0, 5.0], [6.0, 1.0]])  # Table 1; PAYOFF[a1, a2]
BEHAVIOUR_PROBS = (np.array([0.8, 0.2]), np.array([0.4, 0.6]))  # Table 1 / §2, per agent
OPTIMAL_ACTIONS = np.array([1, 0])  # (a_2, a_1): return 6


class MatrixGame(CoopEnv):
    """A one-step two-player cooperative matrix game (agents ``a1`` row, ``a2`` column)."""

    def __init__(self, env_id: str = "matrix:vdtn", payoff: np.ndarray = PAYOFF):
        payoff = np.asarray(payoff, np.float64)
        if payoff.ndim != 2 or min(payoff.shape) < 2 or payoff.shape[0] != payoff.shape[1]:
            raise ValueError(f"{env_id}: payoff must be a square [n, n] matrix with n >= 2, got shape {payoff.shape}")
        self.payoff = payoff
        self.info = EnvInfo(env_id=env_id, agents=["a1", "a2"], agent_types=["row_player", "column_player"],
                            obs_dim=1, state_dim=1, episode_limit=1, discrete=True, n_actions=payoff.shape[0])
        super().__init__()
        self._last = np.full(2, -1.0)

    def _reset(self, seed: Optional[int]) -> None:
        self._last = np.full(2, -1.0)  # nothing stochastic in the game itself

    def _step(self, actions: np.ndarray):
        n = self.info.n_actions
        if not all(0 <= int(a) < n for a in actions):
            raise ValueError(f"{self.info.env_id}: actions must be in [0, {n}); got {actions.tolist()}")
        self._last = actions.astype(np.float64)
        return float(self.payoff[int(actions[0]), int(actions[1])]), True, False, {}

    def _obs(self) -> np.ndarray:
        return np.ones((2, 1), np.float32)

    def state(self) -> np.ndarray:
        return np.ones(1, np.float32)

    def action_masks(self) -> np.ndarray:
        return np.ones((2, self.info.n_actions), np.float32)

    def agent_stats(self) -> Dict[str, np.ndarray]:
        """Per agent: the action it took (-1 before the step)."""
        return {"action": self._last.astype(np.float32)}


def behaviour_actions(rng: np.random.Generator) -> np.ndarray:
    """[2] actions drawn from the paper's behaviour policies ``BEHAVIOUR_PROBS``."""
    return np.array([rng.choice(2, p=p) for p in BEHAVIOUR_PROBS], np.int64)


def expected_return(probs1: np.ndarray, probs2: np.ndarray, payoff: np.ndarray = PAYOFF) -> float:
    """Expected payoff of independent mixed policies ``probs1`` (row) and ``probs2`` (column)."""
    return float(np.asarray(probs1) @ np.asarray(payoff) @ np.asarray(probs2))


_SCENARIOS = {"vdtn": lambda **kw: MatrixGame("matrix:vdtn", **kw)}


def make_matrix_env(scenario: str, **kwargs) -> CoopEnv:
    """Factory registered for the ``matrix`` family."""
    if scenario not in _SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r} for family 'matrix'; expected one of {sorted(_SCENARIOS)}")
    try:
        return _SCENARIOS[scenario](**kwargs)
    except TypeError as e:
        raise ValueError(f"matrix:{scenario}: bad keyword argument(s) {sorted(kwargs)}: {e}") from None


register_family(FAMILY, make_matrix_env, list(_SCENARIOS))
