"""SIT losses and Stage II math against NumPy recomputations on tiny hand-made batches."""

import numpy as np
import pytest
import torch

from rllib_sit.algorithms.sit import sit_learner as K
from rllib_sit.algorithms.sit.torch.sit_torch_learner import (ardnem_mse_loss, crr_filter_weights,
                                                              crr_filtered_actor_loss, uncertainty_weighted_td_loss)


def _np(x):
    return x.detach().numpy().astype(np.float64)


def test_ardnem_mse_loss_eq3():
    torch.manual_seed(0)
    wr = torch.randn(5, 7, 3)  # [M, n, N]
    r = torch.randn(7)
    expected = np.mean([(( _np(wr)[m].sum(-1) - _np(r)) ** 2).mean() for m in range(5)])
    assert ardnem_mse_loss(wr, r).item() == pytest.approx(expected, rel=1e-6)


def _stage3_batch(seed=0, B=3, T=4):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, T, generator=g)
    q_next = torch.randn(B, T, generator=g)
    r = torch.randn(B, T, generator=g)
    u = torch.rand(B, T, generator=g) * 0.2  # some below the floor
    term = torch.zeros(B, T)
    term[0, 2] = 1.0
    filled = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1], [1, 1, 0, 0]], dtype=torch.float32)
    next_filled = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 0], [1, 0, 0, 0]], dtype=torch.float32)
    logp = torch.log(torch.rand(B, T, generator=g))
    return q, q_next, r, u, term, filled, next_filled, logp


def test_uncertainty_weighted_td_loss_eq9():
    q, qn, r, u, term, filled, nf, _ = _stage3_batch()
    gamma, eta, floor = 0.99, 1.5, 0.05
    loss = uncertainty_weighted_td_loss(q, qn, r, u, term, filled, nf, gamma, eta, floor)
    target = _np(r) + gamma * (1 - _np(term)) * _np(nf) * _np(qn)
    w = eta / np.maximum(_np(u), floor)
    m = _np(filled)
    expected = (m * w * (target - _np(q)) ** 2).sum() / m.sum()
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_td_loss_gradient_reaches_only_q_taken():
    q, qn, r, u, term, filled, nf, _ = _stage3_batch()
    q.requires_grad_(True)
    qn.requires_grad_(True)
    uncertainty_weighted_td_loss(q, qn, r, u, term, filled, nf, 0.99, 1.0, 0.01).backward()
    assert q.grad is not None and qn.grad is None  # target is a constant


def test_crr_filtered_actor_loss_eq10_interpretation():
    q, _, _, u, _, filled, _, logp = _stage3_batch(seed=1)
    beta, eta, floor = 0.1, 1.0, 0.05
    logp = logp.clone().requires_grad_(True)
    loss = crr_filtered_actor_loss(logp, q, u, filled, beta, eta, floor)
    m = _np(filled) > 0
    z = np.where(m, _np(q) / beta, -np.inf)
    e = np.exp(z - z[m].max())
    soft = e / e.sum()
    expected = -(soft * eta / np.maximum(_np(u), floor) * _np(logp) * m).sum()
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    w = crr_filter_weights(q, filled, beta)
    assert w.sum().item() == pytest.approx(1.0, abs=1e-6) and (w[filled == 0] == 0).all()
    loss.backward()
    assert torch.count_nonzero(logp.grad[filled == 0]) == 0


def test_stage2_math_eq4_to_eq7_against_numpy():
    rng = np.random.default_rng(0)
    wr = rng.normal(size=(5, 2, 4, 3))  # [M, episodes, T, N]
    r_hat, u_hat = K.weighted_reward_stats(wr)
    np.testing.assert_allclose(r_hat, wr.mean(0), rtol=1e-5)
    np.testing.assert_allclose(u_hat, wr.std(0), rtol=1e-5)  # population std (Eq. 5)
    filled = np.array([[1, 1, 1, 0], [1, 1, 1, 1]], bool)
    g = K.monte_carlo_returns(r_hat, filled, 0.9)
    for e in range(2):
        L = filled[e].sum()
        for t in range(L):
            exp = sum(0.9 ** (tp - t) * r_hat[e, tp] for tp in range(t, L))
            np.testing.assert_allclose(g[e, t], exp, rtol=1e-5)
    p = K.episode_priorities(g, filled)
    np.testing.assert_allclose(p[0], g[0, :3].mean(0), rtol=1e-6)
    sc = K.rescale_priorities(np.array([-3.0, 1.0, 5.0]), 0, 20)
    np.testing.assert_allclose(sc, [0, 10, 20])
    probs = K.softmax_priorities(np.array([0.0, 10.0, 20.0]), 0.2)
    z = np.array([0.0, 50.0, 100.0])
    np.testing.assert_allclose(probs, np.exp(z - 100) / np.exp(z - 100).sum())
    assert np.isfinite(K.softmax_priorities(np.array([0.0, 2000.0]), 1e-3)).all()  # stable
    assert K.effective_sample_size(np.full(8, 1 / 8)) == pytest.approx(8.0)


def test_ardnem_attention_weights_sum_to_one_over_agents():
    from rllib_sit.algorithms.sit.torch.default_sit_torch_rl_module import ARDNEM

    torch.manual_seed(0)
    net = ARDNEM(obs_dim=4, state_dim=5, n_agents=3, act_feat_dim=3, discrete=True, ensemble_size=5)
    obs, acts, state = torch.randn(7, 3, 4), torch.randint(0, 3, (7, 3)), torch.randn(7, 5)
    lam = net.attention_weights(obs, acts, state)
    torch.testing.assert_close(lam.sum(-1), torch.ones(5, 7))
    wr = net.weighted_rewards(obs, acts, state)
    assert wr.shape == (5, 7, 3)
    mono = ARDNEM(4, 5, 3, 3, True, ensemble_size=2, weight_mode="monotonic")
    assert mono.weighted_rewards(obs, acts, state).shape == (2, 7, 3)



def test_ardnem_attention_matches_numpy_eq1_and_eq2():
    """Eq. 1–2 recomputed literally in NumPy: λ_i = softmax_i((W_q e_s)·(W_k e_i + b_k)), r̂_tot = Σ λ_i f(o_i, a_i).

    Guards the query-side W_k fold in ``ARDNEM._attention`` (same function, 1/N of the cost).
    """
    from rllib_sit.algorithms.sit.torch.default_sit_torch_rl_module import ARDNEM

    torch.manual_seed(1)
    M, n, N, od, sd, A = 3, 6, 4, 5, 7, 3
    net = ARDNEM(obs_dim=od, state_dim=sd, n_agents=N, act_feat_dim=A, discrete=True, ensemble_size=M,
                 reward_hidden=8, attention_hidden=6)
    obs, acts, state = torch.randn(n, N, od), torch.randint(0, A, (n, N)), torch.randn(n, sd)
    P = {k: _np(v) for k, v in net.state_dict().items()}

    def mlp(x, prefix, n_layers, m):
        for i in range(n_layers):
            x = x @ P[f"{prefix}.layers.{i}.weight"][m] + P[f"{prefix}.layers.{i}.bias"][m]
            x = np.maximum(x, 0) if i < n_layers - 1 else x
        return x

    x = np.concatenate([_np(obs), np.eye(A)[acts.numpy()]], -1)  # [n, N, od + A]
    lam_np, wr_np = np.zeros((M, n, N)), np.zeros((M, n, N))
    for m in range(M):
        e_s, e_i = mlp(_np(state), "state_embed", 2, m), mlp(x, "agent_embed", 2, m)
        q = e_s @ P["w_q.weight"][m] + P["w_q.bias"][m, 0]  # [n, H]
        k = e_i @ P["w_k.weight"][m] + P["w_k.bias"][m, 0]  # [n, N, H]
        z = np.einsum("nh,nkh->nk", q, k)
        lam_np[m] = np.exp(z - z.max(-1, keepdims=True)) / np.exp(z - z.max(-1, keepdims=True)).sum(-1, keepdims=True)
        wr_np[m] = lam_np[m] * mlp(x, "reward_net", 3, m)[..., 0]
    with torch.no_grad():
        np.testing.assert_allclose(_np(net.attention_weights(obs, acts, state)), lam_np, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(_np(net.weighted_rewards(obs, acts, state)), wr_np, rtol=1e-4, atol=1e-6)

def test_stage2_decompose_batch_matches_numpy_eq4_to_eq6():
    from rllib_sit.algorithms.sit import stage2
    from rllib_sit.algorithms.sit.torch.default_sit_torch_rl_module import ARDNEM

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    net = ARDNEM(obs_dim=4, state_dim=5, n_agents=3, act_feat_dim=3, discrete=True, ensemble_size=5).eval()
    B, T = 2, 4
    filled = np.array([[1, 1, 0, 0], [1, 1, 1, 1]], bool)
    batch = {"obs": rng.normal(size=(B, T + 1, 3, 4)).astype(np.float32),
             "actions": rng.integers(0, 3, (B, T, 3)), "state": rng.normal(size=(B, T + 1, 5)).astype(np.float32),
             "filled": filled, "reward": rng.normal(size=(B, T)).astype(np.float32)}
    res = stage2.decompose_batch(net, batch, gamma=0.9)
    with torch.no_grad():
        wr = net.weighted_rewards(torch.as_tensor(batch["obs"][:, :T].reshape(B * T, 3, 4)),
                                  torch.as_tensor(batch["actions"].reshape(B * T, 3)),
                                  torch.as_tensor(batch["state"][:, :T].reshape(B * T, 5))).numpy()
    r_hat, u_hat = K.weighted_reward_stats(wr.reshape(5, B, T, 3))
    np.testing.assert_allclose(res["r_hat"][filled], r_hat[filled], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(res["u_hat"][filled], u_hat[filled], rtol=1e-4, atol=1e-6)
    assert (res["r_hat"][~filled] == 0).all()
    g = K.monte_carlo_returns(res["r_hat"], filled, 0.9)
    np.testing.assert_allclose(res["priority"], K.episode_priorities(g, filled), rtol=1e-6)
