"""Graph attention over all agents' observations (SIT Eq. 8, after Veličković et al. 2018).

    w_ij = softmax_j LeakyReLU(W_2^T [W_1 o_i ; W_1 o_j]),   e_i,global = Σ_j w_ij W_1 o_j

``W_2^T [x; y]`` splits into ``a_src·x + a_dst·y``, so all N×N scores are one broadcast add.
"""

from __future__ import annotations

import torch
from torch import nn


def gat_attention_weights(h: torch.Tensor, a_src: torch.Tensor, a_dst: torch.Tensor,
                          alive: torch.Tensor | None = None, negative_slope: float = 0.2) -> torch.Tensor:
    """Eq. 8 attention matrix ``[..., N, N]`` from embeddings ``h = W_1 o`` ``[..., N, H]``.

    Row i is a distribution over j (sums to 1). ``alive [..., N]`` (optional) masks out agents
    whose observation is all zeros (dead SMAC units) as neighbours; a row with nobody alive
    falls back to uniform.
    """
    s_src = h @ a_src  # [..., N]
    s_dst = h @ a_dst  # [..., N]
    # .float(): the softmax runs in fp32 when bf16 autocast made the scores bf16 (learner precision="bf16").
    scores = nn.functional.leaky_relu(s_src.unsqueeze(-1) + s_dst.unsqueeze(-2), negative_slope).float()
    if alive is not None:
        mask = (alive > 0).unsqueeze(-2).expand_as(scores)
        any_alive = mask.any(-1, keepdim=True)
        mask = torch.where(any_alive, mask, torch.ones_like(mask))
        scores = scores.masked_fill(~mask, float("-inf"))
    return torch.softmax(scores, dim=-1)


class GATAggregator(nn.Module):
    """Global embedding of agent i from all observations of one joint timestep (Eq. 8)."""

    def __init__(self, obs_dim: int, hidden: int):
        super().__init__()
        self.w1 = nn.Linear(obs_dim, hidden, bias=False)
        self.a_src = nn.Parameter(torch.randn(hidden) / hidden ** 0.5)
        self.a_dst = nn.Parameter(torch.randn(hidden) / hidden ** 0.5)

    def attention(self, obs_all: torch.Tensor) -> torch.Tensor:
        """``obs_all [..., N, obs_dim]`` -> attention ``[..., N, N]`` (rows sum to 1)."""
        return gat_attention_weights(self.w1(obs_all), self.a_src, self.a_dst)

    def forward(self, obs_all: torch.Tensor, agent_index: torch.Tensor) -> torch.Tensor:
        """``obs_all [B, T, N, obs_dim]``, ``agent_index [B]`` -> e_global of that agent ``[B, T, H]``."""
        h = self.w1(obs_all)  # [B, T, N, H]
        own = torch.gather(h, 2, agent_index.view(-1, 1, 1, 1).expand(-1, h.shape[1], 1, h.shape[-1]))
        s_src = own.squeeze(2) @ self.a_src  # [B, T]
        s_dst = h @ self.a_dst  # [B, T, N]
        # .float(): an fp32 softmax under bf16 autocast (the scores come from bf16 matmuls).
        w = torch.softmax(nn.functional.leaky_relu(s_src.unsqueeze(-1) + s_dst, 0.2).float(), dim=-1)
        return (w.unsqueeze(-1) * h).sum(-2)
