"""Shared torch blocks: GAT attention (Eq. 8), ensemble layers, masked GRU actor."""

import numpy as np
import torch

from rllib_sit.models import EnsembleLinear, GATAggregator, GRUActor, GaussianGRUActor


def test_gat_attention_rows_sum_to_one_and_match_eq8():
    torch.manual_seed(0)
    gat = GATAggregator(obs_dim=5, hidden=8)
    obs = torch.randn(2, 3, 4, 5)  # [B, T, N, obs_dim]
    w = gat.attention(obs)
    assert w.shape == (2, 3, 4, 4)
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 3, 4))
    # NumPy recomputation of Eq. 8 for one (b, t)
    W1 = gat.w1.weight.detach().numpy()
    a_src, a_dst = gat.a_src.detach().numpy(), gat.a_dst.detach().numpy()
    h = obs[1, 2].numpy() @ W1.T
    s = (h @ a_src)[:, None] + (h @ a_dst)[None, :]
    s = np.where(s > 0, s, 0.2 * s)
    e = np.exp(s - s.max(1, keepdims=True))
    np.testing.assert_allclose(w[1, 2].detach().numpy(), e / e.sum(1, keepdims=True), rtol=1e-5, atol=1e-6)
    # forward(): e_global of agent i = row i of the attention times W1 o
    idx = torch.tensor([2, 0])
    out = gat(obs, idx)
    hh = gat.w1(obs)
    for b in range(2):
        expected = (w[b, :, idx[b]].unsqueeze(-1) * hh[b]).sum(-2)
        torch.testing.assert_close(out[b], expected)


def test_ensemble_linear_is_m_independent_linears():
    torch.manual_seed(0)
    layer = EnsembleLinear(3, 4, 2)
    x = torch.randn(3, 5, 4)
    out = layer(x)
    for m in range(3):
        torch.testing.assert_close(out[m], x[m] @ layer.weight[m] + layer.bias[m])


def test_gru_actor_masks_unavailable_actions_and_step_matches_unroll():
    torch.manual_seed(0)
    actor = GRUActor(obs_dim=3, n_actions=4, hidden=8)
    obs = torch.randn(2, 5, 3)
    prev = torch.randint(-1, 4, (2, 5))
    avail = torch.ones(2, 5, 4)
    avail[:, :, 3] = 0
    logits = actor(obs, prev, avail)
    assert (torch.softmax(logits, -1)[..., 3] == 0).all()
    h = actor.initial_state(2)
    for t in range(5):
        lt, h = actor.step(obs[:, t], prev[:, t], h, avail[:, t])
        torch.testing.assert_close(lt, logits[:, t])


def test_gaussian_actor_log_prob_is_finite_at_the_bounds():
    torch.manual_seed(0)
    actor = GaussianGRUActor(obs_dim=3, act_dim=2, hidden=8, low=-1.0, high=1.0)
    means = actor(torch.randn(2, 4, 3), torch.zeros(2, 4, 2))
    lp = actor.log_prob(means, torch.tensor([1.0, -1.0]).expand(2, 4, 2))
    assert torch.isfinite(lp).all() and lp.shape == (2, 4)
