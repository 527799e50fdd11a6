"""Hand-made datasets with known policy values for the OPE tests (NumPy only, no simulator).

``chain``: 2 agents, 2 actions each, position x = 0..G. When both agents take action 1 the team
moves x -> x + 1; reaching x = G pays 1 and terminates. Episodes are cut at H steps (truncated).
Observation of each agent and the state: [x / G, t / H]. The value of the memoryless policy in
which every agent takes action 1 with probability p is P(Binomial(H, p²) >= G): FQE must recover it.

``matrix``: the one-step matrix game of rllib_sit.envs.games (payoff Table 1), recorded under its
behaviour policies; the value of independent mixed policies is ``expected_return(p1, p2)``.
"""

from __future__ import annotations

from math import comb

import numpy as np

from rllib_sit.data import schema as S
from rllib_sit.envs.base import EnvInfo

G, H = 3, 6
CHAIN_INFO = EnvInfo(env_id="chain:ope", agents=["a", "b"], agent_types=["walker", "walker"], obs_dim=2,
                     state_dim=2, episode_limit=H, discrete=True, n_actions=2)


def chain_value(p: float, goal: int = G, horizon: int = H) -> float:
    """P(at least ``goal`` joint successes in ``horizon`` steps), success probability p²."""
    q = p * p
    return float(sum(comb(horizon, j) * q ** j * (1 - q) ** (horizon - j) for j in range(goal, horizon + 1)))


def chain_columns(n_episodes: int, behaviour_p: float = 0.5, seed: int = 0):
    """Columns of ``n_episodes`` chain episodes, each agent taking action 1 w.p. ``behaviour_p``;
    also returns log μ [K, H, 2]."""
    rng = np.random.default_rng(seed)
    K, T, N = n_episodes, H, 2
    obs = np.zeros((K, T + 1, N, 2), np.float32)
    state = np.zeros((K, T + 1, 2), np.float32)
    actions = np.zeros((K, T, N), np.int64)
    reward = np.zeros((K, T), np.float32)
    term = np.zeros((K, T), np.uint8)
    trunc = np.zeros((K, T), np.uint8)
    filled = np.zeros((K, T), np.uint8)
    logp = np.zeros((K, T, N), np.float32)
    for k in range(K):
        x = 0
        for t in range(T):
            state[k, t] = obs[k, t] = [x / G, t / H]
            a = (rng.random(N) < behaviour_p).astype(np.int64)
            actions[k, t], filled[k, t] = a, 1
            logp[k, t] = np.log(np.where(a == 1, behaviour_p, 1 - behaviour_p))
            if a.all():
                x += 1
            if x >= G:
                reward[k, t], term[k, t] = 1.0, 1
            state[k, t + 1] = obs[k, t + 1] = [x / G, (t + 1) / H]
            if x >= G:
                break
            if t == T - 1:
                trunc[k, t] = 1
    cols = {S.OBS: obs, S.STATE: state, S.ACTIONS: actions, S.REWARD: reward, S.TERMINATED: term,
            S.TRUNCATED: trunc, S.FILLED: filled, S.AVAIL_ACTIONS: np.ones((K, T + 1, N, 2), np.float32)}
    return cols, logp


def matrix_columns(n_episodes: int, seed: int = 0):
    from rllib_sit.envs.games import PAYOFF, behaviour_actions

    rng = np.random.default_rng(seed)
    K = n_episodes
    actions = np.stack([behaviour_actions(rng) for _ in range(K)])[:, None, :]  # [K, 1, 2]
    reward = PAYOFF[actions[:, 0, 0], actions[:, 0, 1]].astype(np.float32)[:, None]
    cols = {S.OBS: np.ones((K, 2, 2, 1), np.float32), S.STATE: np.ones((K, 2, 1), np.float32), S.ACTIONS: actions,
            S.REWARD: reward, S.TERMINATED: np.ones((K, 1), np.uint8), S.TRUNCATED: np.zeros((K, 1), np.uint8),
            S.FILLED: np.ones((K, 1), np.uint8), S.AVAIL_ACTIONS: np.ones((K, 2, 2, 2), np.float32)}
    info = EnvInfo(env_id="matrix:vdtn", agents=["a1", "a2"], agent_types=["row_player", "column_player"], obs_dim=1,
                   state_dim=1, episode_limit=1, discrete=True, n_actions=2)
    return cols, info


LEGS_INFO = EnvInfo(env_id="legs:ope", agents=["l0", "l1"], agent_types=["leg", "leg"], obs_dim=2, state_dim=2,
                    episode_limit=5, discrete=False, act_dim=2)
LEGS_TARGETS = np.array([[0.5, 0.5], [-0.5, -0.5]], np.float32)


def legs_value(actions: np.ndarray, horizon: int = 5) -> float:
    """Value of the constant joint action ``actions [2, 2]``: horizon · −Σ_i |a_i − target_i|₁."""
    return float(-horizon * np.abs(np.asarray(actions) - LEGS_TARGETS).sum())


def legs_columns(n_episodes: int, seed: int = 0):
    """Continuous: 2 agents with box actions in [-1, 1]²; r = −Σ_i |a_i − target_i|₁ for 5 steps
    (tiny_fixtures' tinycont reward); uniform behaviour. Observation and state: [t/5, 1]."""
    rng = np.random.default_rng(seed)
    K, T, N = n_episodes, 5, 2
    t = np.arange(T + 1, dtype=np.float32) / T
    obs = np.broadcast_to(np.stack([t, np.ones_like(t)], -1)[None, :, None, :], (K, T + 1, N, 2)).copy()
    state = obs[:, :, 0].copy()
    actions = rng.uniform(-1, 1, (K, T, N, 2)).astype(np.float32)
    reward = -np.abs(actions - LEGS_TARGETS).sum((-1, -2)).astype(np.float32)
    trunc = np.zeros((K, T), np.uint8)
    trunc[:, -1] = 1
    return {S.OBS: obs, S.STATE: state, S.ACTIONS: actions, S.REWARD: reward,
            S.TERMINATED: np.zeros((K, T), np.uint8), S.TRUNCATED: trunc, S.FILLED: np.ones((K, T), np.uint8)}
