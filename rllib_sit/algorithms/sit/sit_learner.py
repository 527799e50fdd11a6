"""Framework-free parts of SIT: key names and the Stage II (DPER) priority math in NumPy.

Stage II turns the ARDNEM outputs into sampling probabilities (paper Eq. 4–7):
``weighted_reward_stats`` (Eq. 4–5) -> ``monte_carlo_returns`` (Eq. 6) -> ``episode_priorities``
(p̂ = mean_t ĝ) -> ``rescale_priorities`` (linear to [0, 20]) -> ``softmax_priorities`` (Eq. 7).
"""

from __future__ import annotations

from typing import Tuple

import numpy as np

# Module id of the ARDNEM reward-decomposition ensemble inside the MultiRLModule.
ARDNEM_MODULE_ID = "__ardnem__"

# Batch keys (Stage I: ARDNEM; Stage III: individual trajectories from DPER).
OBS = "obs"                    # Stage I: [n, N, obs_dim]
STATE = "state"                # Stage I: [n, S]
ACTIONS = "actions"            # Stage I: [n, N(, A)];  Stage III: own a^t  [B, T(, A)]
REWARD_TOT = "reward"          # Stage I: r_tot [n]
OBS_ALL = "obs_all"            # Stage III: all agents' o^t, t = 0..T   [B, T+1, N, obs_dim]
AGENT_INDEX = "agent_index"    # Stage III: j, whose trajectory is used for the shared module [B]
PREV_ACTIONS = "prev_actions"  # Stage III: a^{t-1} (-1 / zeros at t = 0)   [B, T+1(, A)]
NEXT_ACTIONS = "next_actions"  # Stage III: dataset a^{t+1} (Eq. 9 in-sample target)  [B, T(, A)]
AVAIL_ACTIONS = "avail_actions"  # Stage III: own availability, t = 0..T  [B, T+1, n_actions]
REWARD_HAT = "reward_hat"      # Stage III: r̂_i(j)  [B, T]
UNCERTAINTY = "uncertainty"    # Stage III: û_i(j)  [B, T]
TERMINATED = "terminated"      # [B, T]
FILLED = "filled"              # [B, T]   real step t
NEXT_FILLED = "next_filled"    # [B, T]   step t+1 is real (a dataset a^{t+1} exists)

# Metric names.
STAGE = "stage"
ARDNEM_LOSS = "ardnem_loss"
CRITIC_LOSS = "critic_loss"
ACTOR_LOSS = "actor_loss"
Q_MEAN = "q_taken_mean"
CRR_WEIGHT_MAX = "crr_weight_max"

STAGE_ARDNEM, STAGE_DPER, STAGE_AGENTS, STAGE_DONE = 1, 2, 3, 4
STAGE_NAMES = {STAGE_ARDNEM: "I:ardnem", STAGE_DPER: "II:dper", STAGE_AGENTS: "III:agents", STAGE_DONE: "done"}


def weighted_reward_stats(weighted_rewards: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Eq. 4–5: ensemble mean r̂ and (population) std û of λ_m·r_m over the ensemble axis 0."""
    w = np.asarray(weighted_rewards, np.float64)
    mean = w.mean(0)
    std = np.sqrt(((w - mean) ** 2).mean(0))
    return mean.astype(np.float32), std.astype(np.float32)


def monte_carlo_returns(rewards: np.ndarray, filled: np.ndarray, gamma: float) -> np.ndarray:
    """Eq. 6 (read as Σ_{t'≥t} γ^{t'−t} r̂_{t'}): ``rewards [..., T, N]``, ``filled [..., T]`` -> ĝ."""
    r = np.asarray(rewards, np.float64) * np.asarray(filled, np.float64)[..., None]
    g = np.zeros_like(r)
    acc = np.zeros_like(r[..., 0, :])
    for t in range(r.shape[-2] - 1, -1, -1):
        acc = r[..., t, :] + gamma * acc
        g[..., t, :] = acc
    return g


def episode_priorities(returns: np.ndarray, filled: np.ndarray) -> np.ndarray:
    """p̂_i^k = mean over the real steps of ĝ_i^{t,k}: ``[..., T, N]`` -> ``[..., N]``."""
    f = np.asarray(filled, np.float64)[..., None]
    return (returns * f).sum(-2) / np.maximum(f.sum(-2), 1.0)


def rescale_priorities(p: np.ndarray, low: float = 0.0, high: float = 20.0) -> np.ndarray:
    """Linear map of ``p`` onto ``[low, high]`` (min -> low, max -> high); constant input -> ``low``."""
    p = np.asarray(p, np.float64)
    lo, hi = p.min(), p.max()
    if hi - lo <= 1e-12:
        return np.full_like(p, low)
    return low + (p - lo) * (high - low) / (hi - lo)


def softmax_priorities(p: np.ndarray, alpha: float) -> np.ndarray:
    """Eq. 7: softmax of p̂/α over all individual trajectories of one type, stably in float64."""
    z = np.asarray(p, np.float64) / float(alpha)
    z = z - z.max()
    e = np.exp(z)
    return e / e.sum()


def effective_sample_size(probs: np.ndarray) -> float:
    """1 / Σ p² of a sampling distribution (n for uniform, 1 for a point mass)."""
    p = np.asarray(probs, np.float64)
    return float(1.0 / np.sum(p * p))
