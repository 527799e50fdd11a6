"""Framework-free parts of SIT: its key names and the Stage II (DPER) priority math in NumPy.

Stage II turns the ARDNEM outputs into sampling probabilities (paper Eq. 4–7):
``weighted_reward_stats`` (Eq. 4–5) -> ``monte_carlo_returns`` (Eq. 6) -> ``episode_priorities``
(p̂ = mean_t ĝ) -> ``scale_priorities`` (linear to [0, 20], read one of two ways: ``PRIORITY_SCALES``)
-> ``softmax_priorities`` (Eq. 7),
put together per agent type by ``dper_distribution``. These are the functions production runs
(``stage2.py`` and ``SIT._run_stage2``); the tests recompute them independently.
"""

from __future__ import annotations

from typing import Dict, Sequence, Tuple

import numpy as np

from rllib_sit.replay.samplers import effective_sample_size

# Module id of the ARDNEM reward-decomposition ensemble inside the MultiRLModule.
ARDNEM_MODULE_ID = "__ardnem__"

# Stage III per-step values attached to the individual-trajectory sampler (the DPER).
REWARD_HAT = "reward_hat"      # r̂_i(j)  [B, T]
UNCERTAINTY = "uncertainty"    # û_i(j)  [B, T]
# Stage I forward output.
WEIGHTED_REWARDS = "weighted_rewards"  # λ·r per ensemble member [M, n, N]
# Stage I batch column with ``ardnem_bootstrap``: each member's weight of each timestep [n, M].
BOOTSTRAP_WEIGHTS = "bootstrap_weights"

# Metric names.
ARDNEM_LOSS = "ardnem_loss"
CRITIC_LOSS = "critic_loss"
ACTOR_LOSS = "actor_loss"
Q_MEAN = "q_taken_mean"
LOGP_MEAN = "logp_mean"

U_HAT_FLOOR = "u_hat_floor"                        # the floor û is clamped to (absolute value)
U_HAT_CLAMPED_FRACTION = "u_hat_clamped_fraction"  # share of real (step, agent) entries with û < floor

# Phase names (Stage I, II, III).
PHASE_ARDNEM, PHASE_DPER, PHASE_AGENTS = "ardnem", "dper", "agents"

# The two readings of "priorities linearly scaled to a uniform range" (§DPER, Table 11 "Rescaled
# priority range [0, 20]"): "minmax" maps each agent type's own p̂ (min -> low, max -> high) onto the
# range, per dataset; "return_range" maps the environment's episode-return range (Tables 4-6: SMAC
# 0~20, MPE/MAMuJoCo from the random pool's low to the expert pool's high) onto it, the same fixed
# map for every dataset of a map (the identity on SMAC).
PRIORITY_SCALES = ("minmax", "return_range")

# Uncertainty floor modes: "absolute" (floor = uncertainty_floor) or "relative"
# (floor = uncertainty_floor × mean |r̂| over the dataset's real steps and agents).
FLOOR_MODES = ("absolute", "relative")
# The guard of η/û in the learner when Stage II already clamped û (relative mode).
MIN_UNCERTAINTY = 1e-8
# Stream of the bootstrap weights' RNG (np.random.default_rng([seed, BOOTSTRAP_STREAM])): apart
# from the Stage I batch RNG, so bootstrap on/off sample the same batches.
BOOTSTRAP_STREAM = 0xB007


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


def map_return_range(p: np.ndarray, return_range, low: float = 0.0, high: float = 20.0) -> np.ndarray:
    """Fixed linear map of ``p`` taking ``return_range = (R_lo, R_hi)`` onto ``[low, high]``.

    Values outside the return range are extrapolated (not clipped): Eq. 7 only needs differences.
    """
    r_lo, r_hi = float(return_range[0]), float(return_range[1])
    if not r_hi > r_lo:
        raise ValueError(f"return_range={tuple(return_range)!r} is invalid; expected (low, high) with low < high")
    return low + (np.asarray(p, np.float64) - r_lo) * (high - low) / (r_hi - r_lo)


def scale_priorities(p: np.ndarray, scale: str = "minmax", priority_range=(0.0, 20.0),
                     return_range=None) -> np.ndarray:
    """p̂ onto ``priority_range`` by the chosen reading (``PRIORITY_SCALES``)."""
    if scale == "minmax":
        return rescale_priorities(p, *priority_range)
    if scale == "return_range":
        if return_range is None:
            raise ValueError("priority_scale='return_range' needs the environment's return range; got None")
        return map_return_range(p, return_range, *priority_range)
    raise ValueError(f"priority_scale={scale!r} is invalid; expected one of {PRIORITY_SCALES}")


def softmax_priorities(p: np.ndarray, alpha: float) -> np.ndarray:
    """Eq. 7: softmax of p̂/α over all individual trajectories of one type, stably in float64."""
    z = np.asarray(p, np.float64) / float(alpha)
    z = z - z.max()
    e = np.exp(z)
    return e / e.sum()


def dper_distribution(priorities: np.ndarray, agent_modules: Sequence[str], alpha: float,
                      priority_range=(0.0, 20.0), prioritized: bool = True, scale: str = "minmax",
                      return_range=None):
    """Sampling probabilities of every module's individual trajectories and their summary.

    ``priorities [K, N]`` (p̂ per episode and agent). For each module (agent type) its trajectories
    (episode-major, then the type's agents in order: the sampler's leaf order) are mapped linearly
    onto ``priority_range`` (``scale``: per type min–max, or the fixed map of the environment's
    ``return_range``) and turned into probabilities by Eq. 7; ``prioritized=False`` gives uniform
    ones. Returns ``({module: probs [K * n_m]}, {module: summary})``.
    """
    agent_modules = list(agent_modules)
    pri = np.asarray(priorities, np.float64)
    if pri.ndim != 2 or pri.shape[1] != len(agent_modules):
        raise ValueError(f"dper_distribution: priorities of shape {pri.shape}; expected (episodes, "
                         f"{len(agent_modules)})")
    probs: Dict[str, np.ndarray] = {}
    summary: Dict[str, Dict[str, float]] = {}
    for m in dict.fromkeys(agent_modules):
        cols = [i for i, a in enumerate(agent_modules) if a == m]
        raw = pri[:, cols].reshape(-1)
        scaled = scale_priorities(raw, scale, priority_range, return_range)
        p = softmax_priorities(scaled, alpha) if prioritized else np.full(raw.size, 1.0 / raw.size)
        probs[m] = p
        summary[m] = {"priority_min": float(scaled.min()), "priority_mean": float(scaled.mean()),
                      "priority_max": float(scaled.max()), "prob_max": float(p.max()),
                      "ess": effective_sample_size(p), "num_trajectories": int(p.size)}
    return probs, summary


# -- û: the floor and how often it binds ------------------------------------------------------------
def uncertainty_floor_value(r_hat: np.ndarray, filled: np.ndarray, floor: float, mode: str = "absolute") -> float:
    """The absolute floor of û: ``floor`` itself ("absolute"), or ``floor`` × mean |r̂| over the
    real (step, agent) entries of the dataset ("relative"; ``r_hat [K, T, N]``, ``filled [K, T]``)."""
    if mode == "absolute":
        return float(floor)
    if mode != "relative":
        raise ValueError(f"uncertainty_floor_mode={mode!r} is invalid; expected one of {FLOOR_MODES}")
    mask = np.asarray(filled, bool)
    real = np.abs(np.asarray(r_hat)[mask])  # [n_real, N]
    return float(floor) * float(real.mean(dtype=np.float64)) if real.size else float(floor)


def clamped_fraction(u_hat: np.ndarray, filled: np.ndarray, floor: float) -> float:
    """Share of the real (step, agent) entries whose û lies below ``floor`` (η/û uses the floor there)."""
    mask = np.asarray(filled, bool)
    real = np.asarray(u_hat)[mask]
    return float((real < floor).mean()) if real.size else 0.0


def sampled_clamped_fraction(u_hat: np.ndarray, filled: np.ndarray, floor: float, probs: np.ndarray,
                             columns: Sequence[int]) -> float:
    """The clamped share Stage III sees: Σ_(k,j) p_(k,j) · (clamped real steps / real steps of episode k)
    over one type's individual trajectories (episode-major, then the type's agent ``columns``: the
    DPER's leaf order); ``probs [K * len(columns)]``."""
    f = np.asarray(filled, bool)
    steps = np.maximum(f.sum(1), 1)[:, None]  # [K, 1]
    below = ((np.asarray(u_hat)[:, :, list(columns)] < floor) & f[..., None]).sum(1) / steps  # [K, n_m]
    return float((np.asarray(probs, np.float64) * below.reshape(-1)).sum())


def bootstrap_weights(num_episodes: int, ensemble_size: int, seed: int) -> np.ndarray:
    """Per-member bootstrap of the dataset by episodes: ``w [K, M]`` ~ Poisson(1), fixed for the run.

    Member m trains on the timesteps of episode k with weight w[k, m] (0: left out of its resample,
    2: counted twice), the online form of resampling K episodes with replacement per member. Whole
    episodes are the resampling unit (their steps are correlated).
    """
    rng = np.random.default_rng([int(seed), BOOTSTRAP_STREAM])
    return rng.poisson(1.0, size=(int(num_episodes), int(ensemble_size))).astype(np.float32)
