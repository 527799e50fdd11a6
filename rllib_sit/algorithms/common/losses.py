"""Loss helpers shared by the algorithms' torch learners (generic math on padded ``[B, L(, N)]``
batches; each algorithm's losses, named after their paper equations, live in its own folder)."""

from __future__ import annotations

from typing import Tuple

import torch

SOFTMAX_OVER = ("batch", "episodes")


def masked_mean(x: torch.Tensor, filled: torch.Tensor) -> torch.Tensor:
    """Mean of ``x`` over the real entries (``filled`` = 1); 0 when there are none."""
    return (x * filled).sum() / filled.sum().clamp(min=1.0)


def behaviour_cloning_nll(logp: torch.Tensor, filled: torch.Tensor) -> torch.Tensor:
    """SIT paper Eq. 11 (MABC; MABCQ's behaviour model): L_BC(θ_i) = E_{τ_i, a_i ~ B}[−log π_i(a_i | τ_i)].

    ``logp [B, L]`` = log π(a_j^t | τ_j^t) on B individual trajectories of agents j of one type;
    the expectation is the mean over their real steps (padded steps, ``filled`` = 0, excluded).
    """
    return -masked_mean(logp, filled)


def _softmax_dims(over: str) -> Tuple[int, ...]:
    if over == "batch":
        return (0, 1)  # every (episode, step) of the mini-batch
    if over == "episodes":
        return (0,)  # the episodes of the mini-batch, separately at each step
    raise ValueError(f"softmax_over={over!r} is invalid; expected one of {SOFTMAX_OVER}")


def masked_batch_softmax_weights(values: torch.Tensor, valid: torch.Tensor, beta: float,
                                 over: str = "batch") -> torch.Tensor:
    """Eq. 55–56: ρ = exp(v/β) / Z with Z = the mean of exp(v/β) over the valid entries of the
    mini-batch, i.e. ρ = n_valid · softmax(v/β) (mean 1 over the valid entries, as the ICQ code's
    ``len(batch) * softmax``).

    ``values``/``valid`` ``[B, L]`` or ``[B, L, N]`` (a trailing agent axis is never mixed: one
    normaliser per agent, Theorem 3's Z_i). ``over="batch"``: normalised over all valid (episode,
    step) entries; ``"episodes"``: over the valid episodes of each step separately. Computed in
    float64, max-subtracted (log-sum-exp), detached; exactly 0 where ``valid`` is 0, and an entry
    outside the mask enters no normaliser whatever its value (NaN and ±inf included).
    """
    dims = _softmax_dims(over)
    ok = valid > 0
    z = torch.where(ok, values.detach().double() / beta, torch.full_like(values, float("-inf"), dtype=torch.float64))
    lse = torch.logsumexp(z, dim=dims, keepdim=True)  # -inf where a group has no valid entry
    w = torch.where(ok, torch.exp(z - torch.where(torch.isfinite(lse), lse, torch.zeros_like(lse))),
                    torch.zeros_like(z))
    n = ok.double().sum(dim=dims, keepdim=True)
    return (w * n).to(values.dtype)


def bootstrap_mask(terminated: torch.Tensor, next_filled: torch.Tensor) -> torch.Tensor:
    """1 where step t has a successor in the data (t+1 is real and t is not a termination)."""
    return (1.0 - terminated) * next_filled


def lambda_returns(reward: torch.Tensor, next_values: torch.Tensor, bootstrap: torch.Tensor,
                   gamma: float, lam: float) -> torch.Tensor:
    """TD(λ) targets G_t = r_t + γ c_t [(1 − λ) y_{t+1} + λ G_{t+1}] over ``[B, L]`` (Eq. 14's
    Σ_t (γλ)^t-weighted TD errors, written as the λ-return the ICQ code regresses on).

    ``next_values`` y_{t+1} (the importance-weighted target value at t+1, aligned at t),
    ``bootstrap`` c_t ∈ {0, 1} (:func:`bootstrap_mask`). Where c_t = 0 the return is r_t, so
    nothing beyond the last valid step (padding, a value after the end) enters any target.
    """
    L = reward.shape[1]
    nv = torch.where(bootstrap > 0, next_values, torch.zeros_like(next_values))
    out = []
    g_next = torch.zeros_like(reward[:, 0])
    zero = torch.zeros_like(g_next)
    for t in range(L - 1, -1, -1):
        ahead = (1.0 - lam) * nv[:, t] + lam * g_next
        g = reward[:, t] + torch.where(bootstrap[:, t] > 0, gamma * ahead, zero)
        out.append(g)
        g_next = g
    return torch.stack(out[::-1], 1)
