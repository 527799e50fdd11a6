"""VD+TN's weights and losses against independent NumPy recomputations on tiny hand-made batches:
λ_vd (§3.4, with its clipping, terminal rule and ~0 denominators), λ_tn from the VAE latent means
(§3.4) and from counts, the λ-weighted TD losses of discrete BCQ (filtered double-Q target),
discrete CQL (logsumexp over the available actions) and TD3+BC (twin critics, weighted actor,
policy delay), BCQ's weighted perturbation objective (Eq. 2); the weights carry no gradient; and
the decentralization property: nothing of another agent reaches an agent's learner.
"""

import numpy as np
import pytest
import torch

from tiny_fixtures import TinyContinuousEnv, TinyCoopEnv

from rllib_sit.algorithms.vdtn import VDTNBCQConfig, VDTNCQLConfig, VDTNTD3BCConfig
from rllib_sit.algorithms.vdtn import vdtn_learner as V
from rllib_sit.algorithms.vdtn.torch.vdtn_torch_learner import (td_target, transition_normalization_weights,
                                                                value_deviation_weights)
from rllib_sit.data import schema as S
from rllib_sit.data.synthetic import make_random_dataset

GAMMA = 0.99


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def disc_path(tmp_path_factory):
    return make_random_dataset(TinyCoopEnv(), 6, str(tmp_path_factory.mktemp("vdtn_d") / "ds"), seed=0)


@pytest.fixture(scope="module")
def cont_path(tmp_path_factory):
    return make_random_dataset(TinyContinuousEnv(), 6, str(tmp_path_factory.mktemp("vdtn_cc") / "ds"), seed=0)


# -- NumPy helpers --------------------------------------------------------------------------------

def np_mlp(seq, x):
    """A ``models.blocks.mlp`` (Linear/ReLU ... Linear) evaluated in NumPy from its weights."""
    layers = [m for m in seq if isinstance(m, torch.nn.Linear)]
    for i, lin in enumerate(layers):
        x = x @ lin.weight.detach().double().numpy().T + lin.bias.detach().double().numpy()
        if i < len(layers) - 1:
            x = np.maximum(x, 0.0)
    return x


def np_lambda_vd(v_next, q_hat, r, boot, eps, terminal="outcome", floor=1e-6):
    out = np.empty_like(r)
    for j in range(len(r)):
        if boot[j] > 0:
            e = (q_hat[j] - r[j]) / GAMMA
            lam = 1 + (v_next[j] - e) / max(abs(e), floor)
        elif terminal == "outcome":
            lam = 1 + (r[j] - q_hat[j]) / max(abs(q_hat[j]), floor)
        else:
            lam = 1.0
        out[j] = min(max(lam, 1 - eps), 1 + eps)
    return out


def np_mean_one(log_w):
    w = np.exp(log_w - log_w.max())
    return len(w) * w / w.sum()


# -- λ_vd -----------------------------------------------------------------------------------------

def test_lambda_vd_matches_numpy_and_clips():
    #            inside   high-clip  low-clip  E≈0     terminal  terminal  Q̂≈0 terminal
    v_next = np.array([4.0, 50.0, -20.0, 3.0, 9.0, 9.0, 9.0])
    q_hat = np.array([4.0, 4.0, 4.0, 1.0, 4.0, 2.0, 0.0])
    r = np.array([0.5, 0.5, 0.5, 1.0, 6.0, 1.0, 1.0])
    boot = np.array([1, 1, 1, 1, 0, 0, 0], float)
    t = lambda x: torch.tensor(x, dtype=torch.float64)  # noqa: E731
    for eps in (0.3, 0.9):
        for terminal in ("outcome", "none"):
            got = value_deviation_weights(t(v_next), t(q_hat), t(r), t(boot), GAMMA, eps, 1e-6, terminal).numpy()
            np.testing.assert_allclose(got, np_lambda_vd(v_next, q_hat, r, boot, eps, terminal), rtol=1e-12)
            assert got.min() >= 1 - eps - 1e-12 and got.max() <= 1 + eps + 1e-12
    got = value_deviation_weights(t(v_next), t(q_hat), t(r), t(boot), GAMMA, 0.3).numpy()
    assert got[1] == pytest.approx(1.3) and got[2] == pytest.approx(0.7)  # clipped at 1 ± ε
    # The unclipped first entry: E = (4 − 0.5)/0.99, λ = 1 + (4 − E)/|E|.
    e = 3.5 / GAMMA
    assert got[0] == pytest.approx(1 + (4 - e) / e) and 1 < got[0] < 1.3
    assert np.all(np.isfinite(got))  # E ≈ 0 and Q̂ = 0 rows: floored denominators, then clipped
    # Terminal, "outcome": the matrix game's reading, λ = r / Q̂ for Q̂ > 0 (here 6/4 -> clipped to 1.3).
    assert got[4] == pytest.approx(1.3)
    assert value_deviation_weights(t([0.0]), t([4.0]), t([5.0]), t([0.0]), GAMMA, 0.9).item() == pytest.approx(1.25)


# -- λ_tn -----------------------------------------------------------------------------------------

def _learner(cfg_cls, path, info, **training):
    cfg = cfg_cls().offline_data(input_=path).training(hidden=[8, 8], vae_latent_dim=3, **training)
    torch.manual_seed(0)
    learner = cfg.get_default_learner_class()(config=cfg, module_spec=cfg.build_module_specs(info))
    learner.build()
    return learner


def _disc_batch(B=6, seed=0, td=True):
    rng = np.random.default_rng(seed)
    avail = (rng.random((B, 3)) < 0.7).astype(np.float32)
    next_avail = (rng.random((B, 3)) < 0.7).astype(np.float32)
    avail[:, 0] = next_avail[:, 0] = 1.0
    acts = np.array([rng.choice(np.flatnonzero(a)) for a in avail])
    b = {V.OBS: rng.normal(size=(B, 4)).astype(np.float32), V.NEXT_OBS: rng.normal(size=(B, 4)).astype(np.float32),
         V.ACTIONS: acts.astype(np.int64), V.REWARD: rng.normal(size=B).astype(np.float32) + 2.0,
         V.TERMINATED: np.zeros(B, np.float32), V.BOOTSTRAP: np.array([1, 1, 1, 1, 0, 1], np.float32)[:B],
         V.AVAIL: avail, V.NEXT_AVAIL: next_avail}
    b[V.TERMINATED][4] = 1.0
    if td:
        b[V.TD_PHASE] = np.ones(B, np.float32)
    return b


def _t(b):
    return {k: torch.as_tensor(v) for k, v in b.items()}


def _perturb(net, scale=0.3, seed=3):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))


def test_lambda_tn_from_vae_latent_means_matches_numpy(disc_path):
    learner = _learner(VDTNCQLConfig, disc_path, TinyCoopEnv().info, use_value_deviation=False)
    mod = learner.module["a1"].unwrapped()
    b = _disc_batch()
    out = mod._forward_train(_t(b))
    lam = learner.lambda_weights(learner.config, _t(b), out)
    # NumPy: x¹ = [o, onehot(a)], x² = [o, onehot(a), r, o′, bootstrap]; μ = first half of the encoder output.
    onehot = np.eye(3)[b[V.ACTIONS]]
    x1 = np.concatenate([b[V.OBS], onehot], 1).astype(np.float64)
    x2 = np.concatenate([x1, b[V.REWARD][:, None], b[V.NEXT_OBS], b[V.BOOTSTRAP][:, None]], 1)
    mu1 = np_mlp(mod.tn_vae_sa.encoder, x1)[:, :3]
    mu2 = np_mlp(mod.tn_vae_sas.encoder, x2)[:, :3]
    # ρ_N(0,I)(μ) = (2π)^{-d/2} exp(−‖μ‖²/2): the ratio ρ(μ¹)/ρ(μ²), normalised to mean 1 over the batch.
    rho = lambda m: (2 * np.pi) ** (-1.5) * np.exp(-0.5 * (m ** 2).sum(1))  # noqa: E731
    ratio = rho(mu1) / rho(mu2)
    np.testing.assert_allclose(lam["tn"].double().numpy(), len(ratio) * ratio / ratio.sum(), rtol=1e-4)
    assert not lam["tn"].requires_grad and torch.equal(lam["vd"], torch.ones(6))


def test_count_estimator_is_one_over_the_empirical_transition_probability():
    # One agent, scalar obs; (s, a) = (0, 0) leads to s′ ∈ {1, 1, 1, 2} (P = 3/4, 1/4), (0, 1) to {3, 3}.
    obs = np.zeros((6, 2, 1, 1), np.float32)
    nxt = [1, 1, 1, 2, 3, 3]
    obs[:, 1, 0, 0] = nxt
    acts = np.array([0, 0, 0, 0, 1, 1])[:, None, None]
    cols = {S.OBS: obs, S.ACTIONS: acts.astype(np.int64), S.REWARD: np.zeros((6, 1), np.float32),
            S.TERMINATED: np.ones((6, 1), np.uint8), S.FILLED: np.ones((6, 1), np.uint8)}
    sampler = V.AgentTransitionSampler(cols, ["x"])
    got = np.exp(-V.count_transition_log_weights(sampler)[:, 0])  # P̂(s′|s, a)
    counts = {}
    for a, s2 in zip(acts[:, 0, 0], nxt):
        counts[(a, s2)] = counts.get((a, s2), 0) + 1
    expected = [counts[(a, s2)] / sum(v for (aa, _), v in counts.items() if aa == a) for a, s2 in zip(acts[:, 0, 0], nxt)]
    np.testing.assert_allclose(got, expected)
    # With the reward in the outcome, equal s′ with different r are different outcomes.
    cols[S.REWARD] = np.array([[0], [0], [5], [0], [0], [0]], np.float32)
    p = np.exp(-V.count_transition_log_weights(V.AgentTransitionSampler(cols, ["x"]))[:, 0])
    np.testing.assert_allclose(p, [0.5, 0.5, 0.25, 0.25, 1.0, 1.0])
    np.testing.assert_allclose(transition_normalization_weights(torch.tensor(np.log(1 / p))).numpy(),
                               np_mean_one(np.log(1 / p)))


# -- TD losses ------------------------------------------------------------------------------------

def np_filter(logits, avail, tau):
    z = np.where(avail > 0, logits, -np.inf)
    p = np.exp(z - z.max(-1, keepdims=True))
    p = p / p.sum(-1, keepdims=True)
    return (avail > 0) & (p / p.max(-1, keepdims=True) >= tau)


@pytest.mark.parametrize("estimator, double_q", [("vae", False), ("count", False), ("count", True)])
def test_discrete_bcq_weighted_td_loss_matches_numpy(disc_path, estimator, double_q):
    learner = _learner(VDTNBCQConfig, disc_path, TinyCoopEnv().info, optimism=0.5, bcq_threshold=0.3,
                       tn_estimator=estimator, double_q=double_q)
    mod = learner.module["b0"].unwrapped()
    _perturb(mod.target_q)
    with torch.no_grad():
        mod.behaviour[-1].weight.mul_(30.0)  # a peaked behaviour model: the filter bites
    b = _disc_batch()
    if estimator == "count":
        b[V.TN_LOG_WEIGHT] = np.log(np.array([1.0, 2.0, 4.0, 1.0, 3.0, 1.5], np.float32))
    tb = _t(b)
    out = mod._forward_train(tb)
    losses = learner.compute_losses_for_module(module_id="b0", config=learner.config, batch=tb, fwd_out=out)
    q, tq = np_mlp(mod.q, b[V.OBS].astype(np.float64)), np_mlp(mod.target_q, b[V.OBS].astype(np.float64))
    q2, tq2 = np_mlp(mod.q, b[V.NEXT_OBS].astype(np.float64)), np_mlp(mod.target_q, b[V.NEXT_OBS].astype(np.float64))
    allowed = np_filter(np_mlp(mod.behaviour, b[V.NEXT_OBS].astype(np.float64)), b[V.NEXT_AVAIL], 0.3)
    assert ((b[V.NEXT_AVAIL] > 0) & ~allowed).any()  # some available action is filtered out
    a_star = np.where(allowed, q2 if double_q else tq2, -np.inf).argmax(1)  # π̂: arg max of Q̂ (Eq. 1)
    idx = np.arange(6)
    v_next, q_taken, q_hat = tq2[idx, a_star], q[idx, b[V.ACTIONS]], tq[idx, b[V.ACTIONS]]
    r, boot = b[V.REWARD].astype(np.float64), b[V.BOOTSTRAP].astype(np.float64)
    lvd = np_lambda_vd(v_next, q_hat, r, boot, 0.5)
    log_w = out[V.TN_LOG_RATIO].double().numpy() if estimator == "vae" else b[V.TN_LOG_WEIGHT].astype(np.float64)
    y = r + GAMMA * boot * v_next
    expected = np.mean(lvd * np_mean_one(log_w) * (q_taken - y) ** 2)
    assert losses["q"].item() == pytest.approx(expected, rel=1e-4)
    assert set(losses) == {"q"}  # the fitted behaviour model / VAEs are frozen in the td phase


def test_discrete_cql_loss_matches_numpy(disc_path):
    learner = _learner(VDTNCQLConfig, disc_path, TinyCoopEnv().info, optimism=0.8, cql_alpha=0.7,
                       use_transition_normalization=False)
    mod = learner.module["a0"].unwrapped()
    _perturb(mod.target_q)
    b = _disc_batch(seed=1)
    out = mod._forward_train(_t(b))
    losses = learner.compute_losses_for_module(module_id="a0", config=learner.config, batch=_t(b), fwd_out=out)
    o, o2 = b[V.OBS].astype(np.float64), b[V.NEXT_OBS].astype(np.float64)
    q, tq, tq2 = np_mlp(mod.q, o), np_mlp(mod.target_q, o), np_mlp(mod.target_q, o2)
    idx = np.arange(6)
    a_star = np.where(b[V.NEXT_AVAIL] > 0, tq2, -np.inf).argmax(1)
    r, boot = b[V.REWARD].astype(np.float64), b[V.BOOTSTRAP].astype(np.float64)
    q_taken = q[idx, b[V.ACTIONS]]
    y = r + GAMMA * boot * tq2[idx, a_star]
    lvd = np_lambda_vd(tq2[idx, a_star], tq[idx, b[V.ACTIONS]], r, boot, 0.8)
    qa = np.where(b[V.AVAIL] > 0, q, -np.inf)
    lse = qa.max(1) + np.log(np.exp(qa - qa.max(1, keepdims=True)).sum(1))
    expected = np.mean(lvd * (q_taken - y) ** 2) + 0.7 * np.mean(lse - q_taken)
    assert losses["q"].item() == pytest.approx(expected, rel=1e-4)


def _cont_batch(B=5, seed=2):
    rng = np.random.default_rng(seed)
    return {V.OBS: rng.normal(size=(B, 3)).astype(np.float32), V.NEXT_OBS: rng.normal(size=(B, 3)).astype(np.float32),
            V.ACTIONS: rng.uniform(-0.9, 0.9, (B, 2)).astype(np.float32),
            V.REWARD: rng.normal(size=B).astype(np.float32) - 1.0, V.TERMINATED: np.zeros(B, np.float32),
            V.BOOTSTRAP: np.array([1, 1, 0, 1, 1], np.float32)[:B], V.TD_PHASE: np.ones(B, np.float32)}


def test_td3bc_losses_match_numpy_and_actor_is_delayed(cont_path):
    learner = _learner(VDTNTD3BCConfig, cont_path, TinyContinuousEnv().info, optimism=0.6, td3_alpha=2.5,
                       use_transition_normalization=False, policy_noise=0.0)
    mod = learner.module["l0"].unwrapped()
    for net in (mod.target_q1, mod.target_q2, mod.target_actor):
        _perturb(net)
    b = _cont_batch()
    out = mod._forward_train(_t(b))
    losses = learner.compute_losses_for_module(module_id="l0", config=learner.config, batch=_t(b), fwd_out=out)
    o, o2, a = (b[k].astype(np.float64) for k in (V.OBS, V.NEXT_OBS, V.ACTIONS))
    qf = lambda net, s, act: np_mlp(net.net, np.concatenate([s, act], 1))[:, 0]  # noqa: E731
    pi2 = np.tanh(np_mlp(mod.target_actor[:-1], o2))
    v_next = np.minimum(qf(mod.target_q1, o2, pi2), qf(mod.target_q2, o2, pi2))
    q_hat = np.minimum(qf(mod.target_q1, o, a), qf(mod.target_q2, o, a))
    r, boot = b[V.REWARD].astype(np.float64), b[V.BOOTSTRAP].astype(np.float64)
    lvd = np_lambda_vd(v_next, q_hat, r, boot, 0.6)
    y = r + GAMMA * boot * v_next
    td = np.mean(lvd * (qf(mod.q1, o, a) - y) ** 2) + np.mean(lvd * (qf(mod.q2, o, a) - y) ** 2)
    assert losses["q"].item() == pytest.approx(td, rel=1e-4)
    pi = np.tanh(np_mlp(mod.actor[:-1], o))
    q_pi = qf(mod.q1, o, pi)
    q_term = -np.mean(lvd * 2.5 / np.abs(q_pi).mean() * q_pi)
    actor = q_term + np.mean((pi - a) ** 2)  # the TD3+BC code's F.mse_loss: mean over batch and action dims
    assert losses["actor"].item() == pytest.approx(actor, rel=1e-4)  # no actor_update mark: always
    # Speeds in [-0.1, 0.1] (DG): the same unit-scale batch; the BC term is taken in env units (x 0.1²)
    # by default ("env", the TD3+BC code), in [-1, 1] with bc_units="unit".
    for units, c in (("env", 0.1), ("unit", 1.0)):
        lrn = learner if units == "env" else _learner(VDTNTD3BCConfig, cont_path, TinyContinuousEnv().info,
                                                      optimism=0.6, use_transition_normalization=False,
                                                      policy_noise=0.0, bc_units="unit")
        m = lrn.module["l0"].unwrapped()
        m.load_state_dict(mod.state_dict())
        m.low, m.high = -0.1, 0.1
        bs = _t(dict(b, **{V.ACTIONS: (b[V.ACTIONS] * 0.1).astype(np.float32)}))
        got = lrn.compute_losses_for_module(module_id="l0", config=lrn.config, batch=bs, fwd_out=m._forward_train(bs))
        assert got["actor"].item() == pytest.approx(q_term + c ** 2 * np.mean((pi - a) ** 2), rel=1e-4), units
    skip = _t(dict(b, **{V.ACTOR_UPDATE: np.zeros(5, np.float32)}))  # a delayed step: critics only
    assert "actor" not in learner.compute_losses_for_module(module_id="l0", config=learner.config, batch=skip,
                                                            fwd_out=out)
    again = _t(dict(b, **{V.ACTOR_UPDATE: np.ones(5, np.float32)}))
    assert "actor" in learner.compute_losses_for_module(module_id="l0", config=learner.config, batch=again,
                                                        fwd_out=out)


def test_bcq_perturbation_objective_is_lambda_weighted(cont_path):
    learner = _learner(VDTNBCQConfig, cont_path, TinyContinuousEnv().info, optimism=0.9, tn_estimator="count")
    mod = learner.module["l1"].unwrapped()
    b = _cont_batch(seed=5)
    b[V.TN_LOG_WEIGHT] = np.log(np.array([1.0, 3.0, 2.0, 1.0, 0.5], np.float32))
    out = mod._forward_train(_t(b))
    losses = learner.compute_losses_for_module(module_id="l1", config=learner.config, batch=_t(b), fwd_out=out)
    lvd = np_lambda_vd(*(x.double().numpy() for x in (out[V.V_NEXT_TARGET], out[V.Q_TAKEN_TARGET])),
                       b[V.REWARD].astype(np.float64), b[V.BOOTSTRAP].astype(np.float64), 0.9)
    w = lvd * np_mean_one(b[V.TN_LOG_WEIGHT].astype(np.float64))
    assert losses["perturb"].item() == pytest.approx(-np.mean(w * out[V.Q_PERTURBED].detach().double().numpy()),
                                                     rel=1e-4)
    # |ξ| ≤ Φ: the greedy action is within Φ of a generator sample, inside [-1, 1].
    act = mod._forward_inference({"obs": {"obs": torch.as_tensor(b[V.OBS])}})["actions"]
    assert act.abs().max() <= 1.0


def test_weights_carry_no_gradient(disc_path):
    """λ_tn λ_vd are constants of the loss: the Q loss's gradient reaches only Q, not the target
    network or the VAEs, and equals the gradient of the same loss with the weights as NumPy constants."""
    learner = _learner(VDTNBCQConfig, disc_path, TinyCoopEnv().info, bcq_threshold=0.0)
    mod = learner.module["a1"].unwrapped()
    _perturb(mod.target_q)
    b = _t(_disc_batch(seed=4))
    out = mod._forward_train(b)
    lam = learner.lambda_weights(learner.config, b, out)
    assert not lam["both"].requires_grad
    loss = learner.compute_losses_for_module(module_id="a1", config=learner.config, batch=b, fwd_out=out)["q"]
    loss.backward()
    g = [p.grad.clone() for p in mod.q.parameters()]
    assert all(p.grad is None for net in (mod.target_q, mod.tn_vae_sa, mod.tn_vae_sas) for p in net.parameters())
    mod.zero_grad()
    out2 = mod._forward_train(b)
    y = b[V.REWARD] + GAMMA * b[V.BOOTSTRAP] * out2[V.V_NEXT_TARGET]
    const = torch.tensor(lam["both"].numpy())
    ((const * (out2[V.Q_TAKEN] - y) ** 2).mean()).backward()
    for a, c in zip(g, (p.grad for p in mod.q.parameters())):
        torch.testing.assert_close(a, c)


# -- decentralization ---------------------------------------------------------------------------------

def _columns(seed=0, E=5, T=4, N=3):
    rng = np.random.default_rng(seed)
    filled = np.ones((E, T), np.uint8)
    filled[1, 3:] = filled[3, 2:] = 0
    term = np.zeros((E, T), np.uint8)
    term[1, 2] = 1
    return {S.OBS: rng.normal(size=(E, T + 1, N, 4)).astype(np.float32),
            S.STATE: rng.normal(size=(E, T + 1, 5)).astype(np.float32),
            S.ACTIONS: rng.integers(0, 3, (E, T, N)), S.AVAIL_ACTIONS: np.ones((E, T + 1, N, 3), np.float32),
            S.REWARD: rng.normal(size=(E, T)).astype(np.float32), S.TERMINATED: term, S.FILLED: filled}


def test_other_agents_actions_never_reach_an_agents_learner(disc_path):
    """Agent a1's batch holds only its own columns; scrambling every other agent's actions,
    observations and masks in the dataset leaves a1's batch, losses and gradients bit-identical."""
    cols = _columns()
    other = {k: v.copy() for k, v in cols.items()}
    rng = np.random.default_rng(7)
    for i in (0, 2):
        other[S.ACTIONS][:, :, i] = rng.integers(0, 3, other[S.ACTIONS][:, :, i].shape)
        other[S.OBS][:, :, i] += 10.0
        other[S.AVAIL_ACTIONS][:, :, i, 1] = 0.0
    other[S.STATE] += 5.0  # the global state is not an input either (SMAC's holds last actions)
    batches = []
    for c in (cols, other):
        s = V.AgentTransitionSampler(c, ["a0", "a1", "b0"], seed=3)
        batches.append(s.sample(16)["a1"])
    assert set(batches[0]) <= set(V.BATCH_KEYS)
    for k, v in batches[0].items():
        assert v.shape[0] == 16 and (v.ndim == 1 or v.shape[1:] in {(4,), (3,)}), k  # no agent axis
        np.testing.assert_array_equal(v, batches[1][k])
    assert V.TD_PHASE not in batches[0]
    results = []
    for b in batches:
        learner = _learner(VDTNBCQConfig, disc_path, TinyCoopEnv().info, bcq_threshold=0.0)
        mod = learner.module["a1"].unwrapped()
        tb = _t(dict(b, **{V.TD_PHASE: np.ones(16, np.float32)}))
        torch.manual_seed(1)
        losses = learner.compute_losses_for_module(module_id="a1", config=learner.config, batch=tb,
                                                   fwd_out=mod._forward_train(tb))
        losses["q"].backward()
        results.append((losses["q"].item(), [p.grad.clone() for p in mod.q.parameters()]))
    assert results[0][0] == results[1][0]
    assert all(torch.equal(a, c) for a, c in zip(results[0][1], results[1][1]))


def test_joint_slice_equals_the_decentralized_dataset(tmp_path):
    """The sampler's slice of agent i equals the same transitions read from ``decentralize()``'s
    per-agent dataset of agent i (the paper's B_i): a joint dataset is only a container here."""
    from rllib_sit.data.episode_store import EpisodeStore
    from rllib_sit.data.generation import decentralize

    path = make_random_dataset(TinyCoopEnv(), 5, str(tmp_path / "joint"), seed=1)
    parts = decentralize(path, str(tmp_path / "dec"), agents=["a1"])
    joint = EpisodeStore.open(path, validate="none", cache_root=str(tmp_path / "c"))
    own = EpisodeStore.open(parts["a1"], validate="none", cache_root=str(tmp_path / "c"))
    sj = V.AgentTransitionSampler(joint.columns, ["a0", "a1", "b0"])
    so = V.AgentTransitionSampler(own.columns, ["a1"])
    rows = np.arange(sj.num_transitions)
    assert so.num_transitions == sj.num_transitions
    bj, bo = sj.gather(rows, 1), so.gather(rows, 0)
    assert set(bj) == set(bo)
    for k in bj:
        np.testing.assert_array_equal(bj[k], bo[k])


def test_truncated_episode_ends_bootstrap_only_with_the_switch():
    """Episode 0 terminates at its 2nd step, episode 1 is cut by the limit T = 3 after 3 steps, episode 2
    is cut after 2 steps (a shorter limit in another source). With ``bootstrap_truncated`` every step
    that did not terminate bootstraps from the stored o[t+1]; without it, only steps followed by
    another step do. The TD target follows (y = r + γ·bootstrap·V̂(s′))."""
    T = 3
    obs = np.arange(3 * (T + 1), dtype=np.float32).reshape(3, T + 1, 1, 1)
    filled = np.array([[1, 1, 0], [1, 1, 1], [1, 1, 0]], np.uint8)
    term = np.array([[0, 1, 0], [0, 0, 0], [0, 0, 0]], np.uint8)
    cols = {S.OBS: obs, S.ACTIONS: np.zeros((3, T, 1, 1), np.float32), S.REWARD: np.ones((3, T), np.float32),
            S.TERMINATED: term, S.FILLED: filled}
    on = V.AgentTransitionSampler(cols, ["x"], bootstrap_truncated=True)
    off = V.AgentTransitionSampler(cols, ["x"], bootstrap_truncated=False)
    # real steps, episode-major: (0,0) (0,1) (1,0) (1,1) (1,2) (2,0) (2,1)
    np.testing.assert_array_equal(on.bootstrap, [1, 0, 1, 1, 1, 1, 1])
    np.testing.assert_array_equal(off.bootstrap, [1, 0, 1, 1, 0, 1, 0])
    b = on.gather(np.arange(on.num_transitions), 0)
    np.testing.assert_array_equal(b[V.NEXT_OBS][:, 0], [1, 2, 5, 6, 7, 9, 10])  # o[t+1], incl. o[length]
    y = td_target(torch.tensor(b[V.REWARD]), torch.tensor(b[V.BOOTSTRAP]), torch.full((7,), 10.0), 0.5)
    np.testing.assert_allclose(y.numpy(), [6, 1, 6, 6, 6, 6, 6])
    assert VDTNTD3BCConfig().bootstrap_truncated is True
