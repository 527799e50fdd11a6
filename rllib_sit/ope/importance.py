"""Per-decision weighted importance sampling (PDWIS) for a multi-agent policy.

Precup, Sutton & Singh (2000), per-decision importance sampling, with the weighted (self-normalised)
form of Thomas (2015) / SCOPE-RL's ``SNPDIS``. With decentralised policies the joint ratio is the
product of the agents' ratios:

    ρ_k^t = Π_{t' ≤ t} Π_i  π_i(a_i^{t'} | τ_i^{t'}) / μ_i(a_i^{t'} | τ_i^{t'})                      (IS-1)

    V̂_PDWIS(π) = Σ_t γ^t  Σ_k ρ_k^t r_k^t / Σ_k ρ_k^t                                                 (IS-2)

An episode that has ended keeps its last ratio and contributes r = 0 (the absorbing-state
convention), so every step's normalisation runs over all K episodes. Computed in log space.
μ_i comes from the dataset's optional ``behaviour_logp`` column; π_i from the checkpoint
(:meth:`rllib_sit.ope.policy.CheckpointPolicy.log_probs`). The effective sample size of the
final weights, (Σ_k ρ_k)^2 / Σ_k ρ_k^2, says how many episodes the estimate really rests on.
"""

from __future__ import annotations

from typing import Any, Dict

import numpy as np

from rllib_sit.ope.fitted_q import _jsonable


def cumulative_log_ratios(target_logp: np.ndarray, behaviour_logp: np.ndarray, filled: np.ndarray) -> np.ndarray:
    """IS-1 in log space: ``[K, T]`` log ρ_k^t (padding steps add 0, so an ended episode keeps its ratio)."""
    filled = np.asarray(filled) > 0
    step = (np.asarray(target_logp, np.float64) - np.asarray(behaviour_logp, np.float64)).sum(-1)
    step = np.where(filled, step, 0.0)
    return np.cumsum(step, axis=1)


def pdwis_value(rewards: np.ndarray, log_rho: np.ndarray, filled: np.ndarray, gamma: float = 1.0) -> float:
    """IS-2 from ``rewards [K, T]``, ``log_rho [K, T]`` (IS-1) and ``filled [K, T]``; NaN when every
    episode has weight 0 at some step that matters."""
    r = np.where(np.asarray(filled) > 0, np.asarray(rewards, np.float64), 0.0)
    m = log_rho.max(0, keepdims=True)
    w = np.exp(np.where(np.isfinite(m), log_rho - m, -np.inf))  # per-step rescaling cancels in the ratio
    den = w.sum(0)
    num = (w * r).sum(0)
    T = r.shape[1]
    disc = float(gamma) ** np.arange(T)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_step = np.where(den > 0, num / np.where(den > 0, den, 1.0), np.where(np.abs(num) > 0, np.nan, 0.0))
    active = (r != 0).any(0)
    if np.any(~(den > 0) & active):
        return float("nan")
    return float((disc * per_step).sum())


def effective_sample_size(log_w: np.ndarray) -> float:
    """(Σ w)^2 / Σ w^2 of weights given as logs (0 when all are zero)."""
    log_w = np.asarray(log_w, np.float64)
    if not np.isfinite(log_w).any():
        return 0.0
    w = np.exp(log_w - log_w[np.isfinite(log_w)].max())
    return float(w.sum() ** 2 / max((w ** 2).sum(), 1e-300))


def pdwis(rewards: np.ndarray, filled: np.ndarray, target_logp: np.ndarray, behaviour_logp: np.ndarray,
          gamma: float = 1.0, ci_level: float = 0.95, resamples: int = 2000, seed: int = 0) -> Dict[str, Any]:
    """PDWIS estimate with a percentile bootstrap interval over episodes (the whole ratio estimator
    recomputed on each resample) and the final weights' ESS."""
    filled = np.asarray(filled) > 0
    log_rho = cumulative_log_ratios(target_logp, behaviour_logp, filled)
    est = pdwis_value(rewards, log_rho, filled, gamma)
    K = log_rho.shape[0]
    lengths = filled.sum(1)
    final = log_rho[np.arange(K), np.maximum(lengths - 1, 0)]
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(int(resamples)):
        idx = rng.integers(0, K, K)
        boots.append(pdwis_value(rewards[idx], log_rho[idx], filled[idx], gamma))
    boots = np.asarray(boots)
    ok = boots[np.isfinite(boots)]
    a = (1.0 - ci_level) / 2.0
    lo, hi = (float(np.quantile(ok, a)), float(np.quantile(ok, 1 - a))) if len(ok) else (float("nan"),) * 2
    return _jsonable({"estimate": est, "ci_low": lo, "ci_high": hi, "ci_level": ci_level,
                      "ess": effective_sample_size(final), "num_episodes": int(K),
                      "nonzero_weight_episodes": int(np.isfinite(final).sum()),
                      "failed_resamples": int(len(boots) - len(ok))})
