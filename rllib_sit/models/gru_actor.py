"""Recurrent decentralised actors on the local action-observation history τ_i = (o_i^t, a_i^{t-1}).

No agent-id input: agents of one type share the actor (SIT's i(j) sharing), and an id would undo
the sharing (specs/sit_notes.md).
"""

from __future__ import annotations

import math
from typing import Tuple

import torch
from torch import nn

# Logit given to unavailable actions (finite so that 0 * masked stays finite in sums).
MASKED_LOGIT = -1e10


class GRUActor(nn.Module):
    """Discrete actor: ``fc -> ReLU -> GRU(hidden) -> fc -> logits`` masked by availability.

    Input per step: ``o_i^t`` ⊕ one-hot ``a_i^{t-1}`` (zeros at t = 0).
    """

    def __init__(self, obs_dim: int, n_actions: int, hidden: int = 64, out_dim: int | None = None):
        super().__init__()
        self.obs_dim, self.n_actions, self.hidden = obs_dim, n_actions, hidden
        self.fc_in = nn.Linear(obs_dim + n_actions, hidden)
        self.gru = nn.GRU(hidden, hidden, batch_first=True)  # fused unroll (faster than a GRUCell loop)
        # out_dim: n_actions (logits / per-action values) by default; e.g. 1 for a state value V(τ).
        self.fc_out = nn.Linear(hidden, n_actions if out_dim is None else out_dim)

    def initial_state(self, batch: int) -> torch.Tensor:
        return torch.zeros(batch, self.hidden)

    def prev_action_features(self, prev_actions: torch.Tensor) -> torch.Tensor:
        """one-hot of int actions ``[...]`` (-1 = none, gives zeros) -> ``[..., n_actions]``."""
        valid = (prev_actions >= 0)
        oh = nn.functional.one_hot(prev_actions.clamp(min=0).long(), self.n_actions).float()
        return oh * valid.unsqueeze(-1).float()

    def step(self, obs: torch.Tensor, prev_actions: torch.Tensor, h: torch.Tensor,
             avail: torch.Tensor | None = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """One step for a batch: ``obs [B, obs_dim]``, ``prev_actions [B]`` -> (logits [B, A], h')."""
        x = torch.relu(self.fc_in(torch.cat([obs, self.prev_action_features(prev_actions)], -1)))
        _, h = self.gru(x.unsqueeze(1), h.unsqueeze(0))
        h = h.squeeze(0)
        logits = self.fc_out(h)
        if avail is not None:
            logits = logits.masked_fill(avail <= 0, MASKED_LOGIT)
        return logits, h

    def forward(self, obs: torch.Tensor, prev_actions: torch.Tensor,
                avail: torch.Tensor | None = None) -> torch.Tensor:
        """Unroll over time: ``obs [B, T, obs_dim]``, ``prev_actions [B, T]`` -> masked logits [B, T, A]."""
        B, T = obs.shape[:2]
        x = torch.relu(self.fc_in(torch.cat([obs, self.prev_action_features(prev_actions)], -1)))
        out, _ = self.gru(x, self.initial_state(B).to(obs.device).unsqueeze(0))
        logits = self.fc_out(out)
        if avail is not None:
            logits = logits.masked_fill(avail <= 0, MASKED_LOGIT)
        return logits


class GaussianGRUActor(nn.Module):
    """Continuous actor: GRU trunk -> mean and state-independent log-std of a tanh-squashed Gaussian.

    Actions are in ``[low, high]``; ``log_prob`` takes dataset actions (clipped just inside the box).
    """

    LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0

    def __init__(self, obs_dim: int, act_dim: int, hidden: int = 64, low: float = -1.0, high: float = 1.0):
        super().__init__()
        self.obs_dim, self.act_dim, self.hidden = obs_dim, act_dim, hidden
        self.low, self.high = float(low), float(high)
        self.fc_in = nn.Linear(obs_dim + act_dim, hidden)
        self.gru = nn.GRU(hidden, hidden, batch_first=True)
        self.mean = nn.Linear(hidden, act_dim)
        self.log_std = nn.Parameter(torch.zeros(act_dim))

    def initial_state(self, batch: int) -> torch.Tensor:
        return torch.zeros(batch, self.hidden)

    def _scale(self, u: torch.Tensor) -> torch.Tensor:
        return self.low + (u + 1.0) * 0.5 * (self.high - self.low)

    def _unscale(self, a: torch.Tensor) -> torch.Tensor:
        return 2.0 * (a - self.low) / (self.high - self.low) - 1.0

    def step(self, obs, prev_actions, h, avail=None):
        """One step: ``obs [B, obs_dim]``, ``prev_actions [B, act_dim]`` -> (mean action in box, h')."""
        x = torch.relu(self.fc_in(torch.cat([obs, self._unscale(prev_actions)], -1)))
        _, h = self.gru(x.unsqueeze(1), h.unsqueeze(0))
        h = h.squeeze(0)
        return self._scale(torch.tanh(self.mean(h))), h

    def forward(self, obs: torch.Tensor, prev_actions: torch.Tensor, avail=None) -> torch.Tensor:
        """``obs [B, T, obs_dim]``, ``prev_actions [B, T, act_dim]`` -> pre-tanh means [B, T, act_dim]."""
        B, T = obs.shape[:2]
        x = torch.relu(self.fc_in(torch.cat([obs, self._unscale(prev_actions)], -1)))
        out, _ = self.gru(x, self.initial_state(B).to(obs.device).unsqueeze(0))
        return self.mean(out)

    def log_prob(self, means: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """log π(a|τ) of box actions ``[B, T, act_dim]`` under the tanh-Gaussian -> [B, T]."""
        u = self._unscale(actions).clamp(-1 + 1e-5, 1 - 1e-5)
        pre = torch.atanh(u)
        log_std = self.log_std.clamp(self.LOG_STD_MIN, self.LOG_STD_MAX)
        var = torch.exp(2 * log_std)
        lp = -0.5 * ((pre - means) ** 2 / var + 2 * log_std + math.log(2 * math.pi))
        lp = lp - torch.log(1 - u ** 2 + 1e-6) - math.log(0.5 * (self.high - self.low))
        return lp.sum(-1)
