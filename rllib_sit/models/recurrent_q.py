"""``RecurrentActionValue``: a recurrent Q_i(τ_i, a) for continuous actions, shared by the agent
modules that need one (ICQ's and OMAC's critics, MABCQ's BCQ Q-network)."""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from rllib_sit.models.blocks import mlp

__all__ = ["RecurrentActionValue"]


class RecurrentActionValue(nn.Module):
    """Q_i(τ_i^t, a): ``fc -> ReLU -> GRU(rnn_hidden)`` over the step inputs x^t (e.g. (o^t, a^{t-1}))
    gives h^t; the head ``mlp([h^t ; a]) -> 1`` gives the value of any action a, so n candidate
    actions share one unroll. Actions (current and previous) are given scaled to [-1, 1].

    Args:
        in_dim: size of a step input x^t (obs_dim + act_dim for (o^t, a^{t-1})).
        act_dim: action size of the head's input.
        rnn_hidden: GRU width.
        hidden: the head's hidden width (default: ``rnn_hidden``).
    """

    def __init__(self, in_dim: int, act_dim: int, rnn_hidden: int = 64, hidden: Optional[int] = None):
        super().__init__()
        self.hidden = rnn_hidden
        self.fc_in = nn.Linear(in_dim, rnn_hidden)
        self.gru = nn.GRU(rnn_hidden, rnn_hidden, batch_first=True)
        self.head = mlp(rnn_hidden + act_dim, [hidden or rnn_hidden], 1)

    def trunk(self, *parts: torch.Tensor) -> torch.Tensor:
        """Step inputs ``[B, T, ...]`` (concatenated on the last axis, e.g. ``obs, prev_actions``) ->
        GRU outputs h ``[B, T, rnn_hidden]``, from a zero state."""
        x = torch.cat(parts, -1) if len(parts) > 1 else parts[0]
        out, _ = self.gru(torch.relu(self.fc_in(x)), x.new_zeros(1, x.shape[0], self.hidden))
        return out

    def step(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """One step: ``x [B, in_dim]``, ``h [B, rnn_hidden]`` -> h'."""
        _, h = self.gru(torch.relu(self.fc_in(x)).unsqueeze(1), h.unsqueeze(0))
        return h.squeeze(0)

    def value(self, h: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """``h [..., H]``, ``actions [..., A]`` (in [-1, 1]; h broadcast over extra leading dims of
        the actions) -> Q ``[...]``."""
        h = h.expand(*actions.shape[:-1], h.shape[-1])
        return self.head(torch.cat([h, actions], -1)).squeeze(-1)
