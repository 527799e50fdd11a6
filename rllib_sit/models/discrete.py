"""Discrete-action helpers shared by the agent modules: BCQ's behaviour-ratio action filter (the
SIT paper's Eq. 12 for MABCQ, discrete BCQ in VD+TN) and the arg max over allowed actions."""

from __future__ import annotations

import math
from typing import Optional

import torch

from rllib_sit.models.gru_actor import MASKED_LOGIT

__all__ = ["bcq_action_filter", "bcq_filtered_logits", "masked_argmax"]


def bcq_action_filter(behaviour_logits: torch.Tensor, avail: Optional[torch.Tensor], zeta: float) -> torch.Tensor:
    """Eq. 12's filter: ``allowed[a] = avail[a] and μ(a|τ) / max_{a' available} μ(a'|τ) ≥ ζ``.

    μ is the behaviour model's softmax renormalised over the *available* actions (unavailable
    logits masked first), so an unavailable action is never the most likely one and never
    allowed. The comparison is made in log space (log μ(a) − max log μ ≥ log ζ); ζ = 0 allows
    every available action, ζ = 1 only the most likely one(s). ``behaviour_logits [.., A]``,
    ``avail [.., A]`` (None: all available) -> bool ``[.., A]``.
    """
    ok = torch.ones_like(behaviour_logits, dtype=torch.bool) if avail is None else avail > 0
    logp = torch.log_softmax(behaviour_logits.masked_fill(~ok, MASKED_LOGIT), -1)
    best = logp.masked_fill(~ok, -math.inf).amax(-1, keepdim=True)
    log_zeta = math.log(zeta) if zeta > 0 else -math.inf
    return ok & (logp - best >= log_zeta)


def bcq_filtered_logits(q: torch.Tensor, behaviour_logits: torch.Tensor, avail: Optional[torch.Tensor],
                        zeta: float) -> torch.Tensor:
    """``q [.., A]`` with every action that fails :func:`bcq_action_filter` (unavailable ones included)
    set to ``MASKED_LOGIT``: acting logits whose arg max is the filtered greedy action and whose softmax
    samples only kept actions (MABCQ's acting rule, and what its exported policy outputs)."""
    return q.masked_fill(~bcq_action_filter(behaviour_logits, avail, zeta), MASKED_LOGIT)


def masked_argmax(values: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """arg max of ``values [.., A]`` over the ``allowed`` actions (index 0 where none is)."""
    return values.masked_fill(~allowed, -math.inf).argmax(-1)
