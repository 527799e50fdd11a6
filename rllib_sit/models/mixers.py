"""Monotonic (QMIX-style) hypernetwork weights, used by SIT's E.1 'monotonic decomposition' ablation."""

from __future__ import annotations

import torch
from torch import nn


class MonotonicHyperWeights(nn.Module):
    """State-conditioned non-negative weights ``w(s) [.., N]`` and bias ``b(s) [..]`` (Rashid et al. 2018).

    ``r_tot ≈ Σ_i w_i(s) r_i + b(s)`` is monotonic in every ``r_i`` because ``w = |hyper(s)|``.
    """

    def __init__(self, state_dim: int, n_agents: int, hidden: int):
        super().__init__()
        self.hyper_w = nn.Sequential(nn.Linear(state_dim, hidden), nn.ReLU(), nn.Linear(hidden, n_agents))
        self.hyper_b = nn.Sequential(nn.Linear(state_dim, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, state: torch.Tensor):
        return torch.abs(self.hyper_w(state)), self.hyper_b(state).squeeze(-1)
