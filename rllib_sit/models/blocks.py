"""Small torch layers shared by the algorithms: plain MLPs and ensembles of MLPs.

An ensemble of ``M`` MLPs is evaluated in one batched matmul (``EnsembleLinear`` holds weights
``[M, in, out]``), so a 5-member ensemble costs one forward pass instead of five.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn


def mlp(in_dim: int, hidden: Sequence[int], out_dim: int, act: type = nn.ReLU,
        out_act: type | None = None) -> nn.Sequential:
    """``Linear -> act`` for every hidden size, then ``Linear(out_dim)`` (+ optional ``out_act``)."""
    layers = []
    d = in_dim
    for h in hidden:
        layers += [nn.Linear(d, h), act()]
        d = h
    layers.append(nn.Linear(d, out_dim))
    if out_act is not None:
        layers.append(out_act())
    return nn.Sequential(*layers)


class EnsembleLinear(nn.Module):
    """``M`` independent linear layers: ``x [M, ..., in] -> [M, ..., out]``."""

    def __init__(self, ensemble_size: int, in_dim: int, out_dim: int):
        super().__init__()
        self.ensemble_size, self.in_dim, self.out_dim = ensemble_size, in_dim, out_dim
        bound = 1.0 / math.sqrt(in_dim)  # torch.nn.Linear's default init, per member
        self.weight = nn.Parameter(torch.empty(ensemble_size, in_dim, out_dim).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(ensemble_size, 1, out_dim).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        flat = x.reshape(self.ensemble_size, -1, self.in_dim)
        out = torch.baddbmm(self.bias, flat, self.weight)
        return out.reshape(*shape[:-1], self.out_dim)


class EnsembleMLP(nn.Module):
    """``M`` MLPs with the same architecture evaluated together: ``[M, ..., in] -> [M, ..., out]``."""

    def __init__(self, ensemble_size: int, in_dim: int, hidden: Sequence[int], out_dim: int):
        super().__init__()
        dims = [in_dim, *hidden, out_dim]
        self.layers = nn.ModuleList(EnsembleLinear(ensemble_size, a, b) for a, b in zip(dims[:-1], dims[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = torch.relu(x)
        return x
