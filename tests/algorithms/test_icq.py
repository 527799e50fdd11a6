"""ICQ (SIT paper Eq. 14; ICQ paper Algorithm 2, Eq. 55–56, Theorem 3).

Unit tier (no Ray): the critic's importance weights, the λ-return target, the critic loss, the
actor's weights and loss and the discrete advantage baseline, each against an independent NumPy
recomputation on tiny hand-made batches; masking (a padded step or a step without a successor,
with any value, changes nothing); the whole joint loss through the learner against NumPy on a
hand-made joint episode batch (agent order, t+1 alignment, dataset next actions); mixer weights
non-negative and equal to ∂Q_tot/∂Q_i; a learning check that can fail (the actor moves probability
to the data action with the largest advantage, never to an unseen one).
Ray tier (Ray once per module, conftest): build → train → evaluate (discrete and continuous), a
checkpoint round trip, the ``run: ICQ`` registration, the tuned examples, validation messages.
"""

import copy
import glob
import os

import numpy as np
import pytest
import torch

from tiny_fixtures import (TINY_CONT_ENV_ID, TINY_ENV_ID, TinyContinuousEnv, TinyCoopEnv,
                           assert_gaussian_entropy_logged,
                           register_tiny_continuous_env)

from rllib_sit.algorithms.common.joint import MIXER_MODULE_ID
from rllib_sit.algorithms.common.torch_learner import POLICY_ENTROPY
from rllib_sit.algorithms.icq import ICQ, ICQConfig
from rllib_sit.algorithms.icq import icq_learner as N
from rllib_sit.algorithms.icq.torch.icq_torch_learner import (ICQTorchLearner, discrete_policy_baseline,
                                                              icq_actor_loss, icq_critic_loss, icq_critic_targets,
                                                              masked_batch_softmax_weights)
from rllib_sit.data import schema as S
from rllib_sit.replay import keys as K
from rllib_sit.replay.samplers import JointEpisodeSampler

TUNED = os.path.join(os.path.dirname(__file__), "..", "..", "tuned_examples")


def tiny_icq(path, env=TINY_ENV_ID, **training):
    kw = dict(agent_updates=6, agent_updates_per_iteration=3, batch_size_episodes=8, target_update_interval=2,
              rnn_hidden=16, mixer_hidden=8)
    kw.update(training)
    return (ICQConfig().environment(env).offline_data(input_=path).training(**kw)
            .evaluation(evaluation_duration=2).debugging(seed=0))


# -- independent NumPy recomputations --------------------------------------------------------------

def np_weights(values, valid, beta, over):
    """n · exp(v/β) / Σ_valid exp(v/β), per normalisation group, by explicit loops (0 where invalid)."""
    v, m = np.asarray(values, np.float64), np.asarray(valid) > 0
    out = np.zeros_like(v)
    lead = v.shape[:2]
    agents = v.shape[2] if v.ndim == 3 else None
    for i in ([None] if agents is None else range(agents)):
        vi = v if i is None else v[..., i]
        mi = m if i is None else m[..., i]
        groups = [[(b, t) for b in range(lead[0]) for t in range(lead[1])]] if over == "batch" else \
            [[(b, t) for b in range(lead[0])] for t in range(lead[1])]
        for g in groups:
            g = [bt for bt in g if mi[bt]]
            if not g:
                continue
            zmax = max(vi[bt] / beta for bt in g)
            den = sum(np.exp(vi[bt] / beta - zmax) for bt in g)
            for bt in g:
                w = len(g) * np.exp(vi[bt] / beta - zmax) / den
                if i is None:
                    out[bt] = w
                else:
                    out[bt + (i,)] = w
    return out


def np_lambda_returns(reward, y_next, boot, gamma, lam):
    """G^λ_t = (1 − λ) Σ_{n=1}^{e−t} λ^{n−1} G^(n)_t + λ^{e−t} G^MC_t, with e the first step ≥ t without a
    successor, G^(n)_t = Σ_{k<n} γ^k r_{t+k} + γ^n y_{t+n} (``y_next`` aligned at t: y_next[t] = y_{t+1})."""
    B, L = reward.shape
    out = np.zeros((B, L))
    for b in range(B):
        for t in range(L):
            e = t
            while e < L - 1 and boot[b, e] > 0:
                e += 1
            mc = sum(gamma ** (j - t) * reward[b, j] for j in range(t, e + 1))
            g = lam ** (e - t) * mc
            for n in range(1, e - t + 1):
                gn = sum(gamma ** k * reward[b, t + k] for k in range(n)) + gamma ** n * y_next[b, t + n - 1]
                g += (1 - lam) * lam ** (n - 1) * gn
            out[b, t] = g
    return out


# -- hand-made batches -----------------------------------------------------------------------------

def _critic_batch():
    """3 episodes, 5 steps: lengths 5 (truncated), 3 (terminated at t=2), 4 (terminated at t=3)."""
    filled = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 1, 1, 1, 0]], np.float32)
    next_filled = np.concatenate([filled[:, 1:], np.zeros((3, 1), np.float32)], 1)
    terminated = np.zeros((3, 5), np.float32)
    terminated[1, 2] = terminated[2, 3] = 1.0
    reward = np.array([[0.5, 1.0, -0.2, 0.3, 2.0], [1.5, 0.0, 0.7, 0.0, 0.0], [0.1, 0.2, 0.3, 0.4, 0.0]],
                      np.float32)
    q_next = np.array([[1.0, 1.2, 0.9, 1.1, 0.4], [0.8, 1.3, 1.0, 0.0, 0.0], [1.05, 0.95, 1.15, 0.6, 0.0]],
                      np.float32)
    return reward, q_next, terminated, filled, next_filled


def _t(*arrays):
    return [torch.as_tensor(a) for a in arrays]


# -- the critic's weights and target ---------------------------------------------------------------

@pytest.mark.parametrize("over", ["batch", "episodes"])
@pytest.mark.parametrize("beta", [0.1, 1.0, 1000.0])
def test_critic_weights_and_lambda_return_match_numpy(over, beta):
    reward, q_next, term, filled, nf = _critic_batch()
    G, rho = icq_critic_targets(*_t(reward, q_next, term, filled, nf), gamma=0.99, lam=0.8, beta=beta, over=over)
    boot = (1 - term) * nf * filled  # t has a successor in the data
    rho_np = np_weights(q_next, boot, beta, over)
    np.testing.assert_allclose(rho.numpy(), rho_np, rtol=1e-5, atol=1e-7)
    assert rho.numpy()[boot > 0].mean() == pytest.approx(1.0, rel=1e-5) or over == "episodes"
    G_np = np_lambda_returns(reward * filled, rho_np * q_next * boot, boot, 0.99, 0.8)
    np.testing.assert_allclose(G.numpy()[filled > 0], G_np[filled > 0], rtol=1e-5, atol=1e-6)


def test_critic_weights_at_beta_0_1_put_the_mass_on_the_largest_next_value():
    """β_ICQ = 0.1 (Table 11) on values 0.1 apart: nearly a point mass (what the ICQ code's β = 1000
    avoids); β = 1000: nearly uniform (ρ ≈ 1). Documents the behaviour of the two defaults."""
    reward, q_next, term, filled, nf = _critic_batch()
    _, rho = icq_critic_targets(*_t(reward, q_next, term, filled, nf), gamma=0.99, lam=0.8, beta=0.1)
    boot = (1 - term) * nf * filled > 0
    n = boot.sum()
    assert rho.numpy()[boot].max() > 0.3 * n and rho.numpy()[boot].argmax() == q_next[boot].argmax()
    _, rho = icq_critic_targets(*_t(reward, q_next, term, filled, nf), gamma=0.99, lam=0.8, beta=1000.0)
    np.testing.assert_allclose(rho.numpy()[boot], 1.0, atol=2e-3)


def test_lambda_one_and_zero_are_monte_carlo_and_one_step():
    reward, q_next, term, filled, nf = _critic_batch()
    boot = (1 - term) * nf * filled
    G1, _ = icq_critic_targets(*_t(reward, q_next, term, filled, nf), gamma=0.9, lam=1.0, beta=1e6)
    mc = np.zeros_like(reward)
    for b in range(3):
        acc = 0.0
        for t in range(4, -1, -1):
            acc = reward[b, t] * filled[b, t] + 0.9 * acc * boot[b, t]
            mc[b, t] = acc
    np.testing.assert_allclose(G1.numpy()[filled > 0], mc[filled > 0], rtol=1e-5)
    G0, rho = icq_critic_targets(*_t(reward, q_next, term, filled, nf), gamma=0.9, lam=0.0, beta=0.5)
    one_step = reward + 0.9 * boot * rho.numpy() * q_next
    np.testing.assert_allclose(G0.numpy()[filled > 0], one_step[filled > 0], rtol=1e-5)


def test_critic_loss_matches_numpy():
    q_tot = np.array([[0.3, -1.0, 2.0], [0.5, 0.1, 9.0]], np.float32)
    target = np.array([[1.0, -0.5, 1.0], [0.0, 0.4, -3.0]], np.float32)
    filled = np.array([[1, 1, 1], [1, 1, 0]], np.float32)
    loss = icq_critic_loss(*_t(q_tot, target, filled))
    err = [(q_tot[b, t] - target[b, t]) ** 2 for b in range(2) for t in range(3) if filled[b, t]]
    assert loss.item() == pytest.approx(np.mean(err), rel=1e-6)


# -- the actor's weights and loss ------------------------------------------------------------------

def _actor_batch(seed=0, B=3, L=4, Nag=2):
    g = np.random.default_rng(seed)
    filled = np.array([[1, 1, 1, 0], [1, 1, 1, 1], [1, 1, 0, 0]], np.float32)[:B, :L]
    valid = np.repeat(filled[..., None], Nag, -1)
    adv = g.normal(scale=0.3, size=(B, L, Nag)).astype(np.float32)
    w = np.abs(g.normal(size=(B, L, Nag))).astype(np.float32)
    logp = -np.abs(g.normal(size=(B, L, Nag))).astype(np.float32)
    return adv, w, logp, valid


@pytest.mark.parametrize("over", ["batch", "episodes"])
def test_actor_weights_and_loss_match_numpy(over):
    adv, w, logp, valid = _actor_batch()
    loss, rho = icq_actor_loss(*_t(logp, adv, w, valid), beta=0.1, over=over)
    rho_np = np_weights(adv, valid, 0.1, over)  # one normaliser per agent (Theorem 3's Z_i)
    np.testing.assert_allclose(rho.numpy(), rho_np, rtol=1e-5, atol=1e-7)
    terms = [w[b, t, i] * rho_np[b, t, i] * logp[b, t, i]
             for b in range(3) for t in range(4) for i in range(2) if valid[b, t, i]]
    assert loss.item() == pytest.approx(-np.mean(terms), rel=1e-5)
    if over == "batch":  # mean 1 over each agent's valid steps
        for i in range(2):
            assert rho_np[..., i][valid[..., i] > 0].mean() == pytest.approx(1.0)


def test_discrete_baseline_is_the_policy_mean_over_available_actions():
    g = np.random.default_rng(3)
    q = g.normal(size=(2, 3, 4)).astype(np.float32)
    avail = (g.random((2, 3, 4)) < 0.6).astype(np.float32)
    avail[..., 0] = 1
    logits = np.where(avail > 0, g.normal(size=(2, 3, 4)), -np.inf)
    p = np.exp(logits - logits.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    q_bad = np.where(avail > 0, q, 1e6).astype(np.float32)  # unavailable actions' Q must not count
    got = discrete_policy_baseline(*_t(q_bad, p.astype(np.float32), avail))
    expected = [[sum(p[b, t, a] * q[b, t, a] for a in range(4) if avail[b, t, a]) for t in range(3)] for b in range(2)]
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=1e-6)


# -- masking: padded steps change nothing ----------------------------------------------------------

@pytest.mark.parametrize("over", ["batch", "episodes"])
@pytest.mark.parametrize("pad_value", [1e6, -1e6, float("inf"), float("nan")])
def test_a_padded_step_with_any_value_changes_nothing(over, pad_value):
    """Append a padded step (filled = 0) to every episode and put ``pad_value`` in every per-step
    input there (Q values, advantages, rewards, log-probs); also put it in the Q' of the steps that
    have no successor. Weights, targets and both losses on the real steps are unchanged."""
    reward, q_next, term, filled, nf = _critic_batch()
    G, rho = icq_critic_targets(*_t(reward, q_next, term, filled, nf), gamma=0.99, lam=0.8, beta=0.1, over=over)

    def pad(x, v=0.0):
        return np.concatenate([x, np.full((x.shape[0], 1) + x.shape[2:], v, np.float32)], 1)

    no_succ = (1 - term) * nf * filled == 0
    q_next_bad = np.where(no_succ, pad_value, q_next).astype(np.float32)
    G2, rho2 = icq_critic_targets(*_t(pad(reward, pad_value), pad(q_next_bad, pad_value), pad(term), pad(filled),
                                      pad(nf)), gamma=0.99, lam=0.8, beta=0.1, over=over)
    np.testing.assert_allclose(rho2.numpy()[:, :5], rho.numpy(), rtol=1e-6)
    assert np.all(rho2.numpy()[:, 5] == 0) and np.all(rho2.numpy()[:, :5][no_succ] == 0)
    np.testing.assert_allclose(G2.numpy()[:, :5][filled > 0], G.numpy()[filled > 0], rtol=1e-6)
    q_tot = np.random.default_rng(0).normal(size=(3, 5)).astype(np.float32)
    l1 = icq_critic_loss(*_t(q_tot, G.numpy(), filled))
    l2 = icq_critic_loss(*_t(pad(q_tot, pad_value), G2.numpy(), pad(filled)))
    assert l2.item() == pytest.approx(l1.item(), rel=1e-6)

    adv, w, logp, valid = _actor_batch()
    a1, r1 = icq_actor_loss(*_t(logp, adv, w, valid), beta=0.1, over=over)
    a2, r2 = icq_actor_loss(*_t(pad(logp, pad_value), pad(adv, pad_value), pad(w, pad_value), pad(valid)),
                            beta=0.1, over=over)
    assert a2.item() == pytest.approx(a1.item(), rel=1e-6)
    np.testing.assert_allclose(r2.numpy()[:, :4], r1.numpy(), rtol=1e-6)
    assert np.all(r2.numpy()[:, 4] == 0)


def test_the_unmasked_softmax_of_the_public_code_would_change():
    """Regression guard for the public ICQ code's bug (softmax over padded steps, og-marl issue #10):
    an unmasked softmax moves when a padded step's value changes; ours does not."""
    reward, q_next, term, filled, nf = _critic_batch()
    boot = (1 - term) * nf * filled
    q2 = np.where(filled > 0, q_next, 3.0).astype(np.float32)
    unmasked = [torch.softmax(torch.as_tensor(q / 0.1).reshape(-1), 0).numpy() for q in (q_next, q2)]
    assert not np.allclose(unmasked[0], unmasked[1])
    ours = [masked_batch_softmax_weights(torch.as_tensor(q), torch.as_tensor(boot), 0.1).numpy() for q in (q_next, q2)]
    np.testing.assert_array_equal(ours[0], ours[1])


# -- the joint loss through the learner ------------------------------------------------------------

def _learner(info, **training):
    class _Config(ICQConfig):
        def dataset_info(self):  # no dataset on disk: the env's info stands for the dataset's
            return info

    cfg = _Config().environment(info.env_id).training(rnn_hidden=8, mixer_hidden=6, critic_hidden=6, **training)
    torch.manual_seed(0)
    learner = ICQTorchLearner(config=cfg, module_spec=cfg.build_module_specs(info))
    learner.build()
    return learner


def _episodes(info, lengths, terminated_at_end, seed=0):
    """Hand-made joint episodes of ``info``'s env (columns as in the episode store)."""
    g = np.random.default_rng(seed)
    Kn, T, Nag = len(lengths), info.episode_limit, info.n_agents
    filled = np.zeros((Kn, T), np.float32)
    term = np.zeros((Kn, T), np.float32)
    for k, (n, done) in enumerate(zip(lengths, terminated_at_end)):
        filled[k, :n] = 1
        term[k, n - 1] = float(done)
    ep = {S.OBS: g.normal(size=(Kn, T + 1, Nag, info.obs_dim)).astype(np.float32),
          S.STATE: g.normal(size=(Kn, T + 1, info.state_dim)).astype(np.float32),
          S.REWARD: (g.normal(size=(Kn, T)) * filled).astype(np.float32), S.TERMINATED: term, S.FILLED: filled}
    if info.discrete:
        avail = np.ones((Kn, T + 1, Nag, info.n_actions), np.float32)
        avail[:, :, 2, 2] = 0  # the tank cannot take action 2
        avail[:, 1, 0, 0] = 0  # nor can agent a0 take action 0 at t = 1
        acts = g.integers(0, 3, (Kn, T, Nag))
        acts[:, :, 2] = g.integers(0, 2, (Kn, T))  # available ones only
        acts[:, 1, 0] = g.integers(1, 3, Kn)
        ep[S.AVAIL_ACTIONS], ep[S.ACTIONS] = avail, (acts * filled[..., None]).astype(np.int64)
    else:
        ep[S.ACTIONS] = (g.uniform(-0.9, 0.9, (Kn, T, Nag, info.act_dim)) * filled[..., None, None]).astype(np.float32)
    return ep


def _np_mixer(mixer_net, q, state):
    w, b = (x.detach().double().numpy() for x in mixer_net.weights(torch.as_tensor(state)))
    return (w * q).sum(-1) + b, w


@pytest.mark.parametrize("over", ["batch", "episodes"])
def test_joint_losses_through_the_learner_match_numpy(over):
    """The learner's two terms on a hand-made joint batch of ``tiny:coop`` (agents a0, a1 of type
    scout and b0 of type tank; episodes of 6 (truncated), 4 (terminated), 5 (terminated) steps),
    recomputed in NumPy from the raw networks: per-agent Q at the data actions in env agent order,
    target critics at t+1 with the data's next actions, the mixer at s_t / s_{t+1}, ρ, G^λ, the
    advantage baseline over the available actions, w_i(s), ρ_i."""
    info = TinyCoopEnv().info
    learner = _learner(info, softmax_over=over, critic_beta=0.5, actor_beta=0.2)
    mods = {m: learner.module[m].unwrapped() for m in ("scout", "tank", MIXER_MODULE_ID)}
    for m in ("scout", "tank"):  # targets differ from the online critics
        with torch.no_grad():
            for p in mods[m].target_critic.parameters():
                p.add_(0.1 * torch.randn_like(p))
    ep = _episodes(info, [6, 4, 5], [False, True, True])
    sampler = JointEpisodeSampler(ep, seed=0, agent_modules=["scout", "scout", "tank"])
    sampler.sample_indices = lambda n: np.array([0, 1, 2])  # the three episodes in order
    raw = sampler.sample_by_module(3, MIXER_MODULE_ID)
    batch = {m: {k: torch.as_tensor(np.asarray(v)) for k, v in b.items()} for m, b in raw.items()}
    fwd = learner.module.forward_train(batch)
    terms = learner.compute_joint_losses(batch=batch, fwd_out=fwd)

    # NumPy recomputation.
    j = raw[MIXER_MODULE_ID]
    L = j[K.FILLED].shape[1]
    obs, state, acts, avail = j[K.OBS], j[K.STATE], j[K.ACTIONS], j[K.AVAIL_ACTIONS]
    filled, term, nf, rew = j[K.FILLED], j[K.TERMINATED], j[K.NEXT_FILLED], j[K.REWARD]
    owner = {0: "scout", 1: "scout", 2: "tank"}
    q_all, q_tgt, logits = np.zeros((3, L + 1, 3, 3)), np.zeros((3, L + 1, 3, 3)), np.zeros((3, L, 3, 3))
    for i in range(3):
        mod = mods[owner[i]]
        prev = np.concatenate([np.full((3, 1), -1), acts[:, :, i]], 1)  # a^{t-1}, none at t = 0
        with torch.no_grad():
            o, pa = torch.as_tensor(obs[:, :, i]), torch.as_tensor(prev)
            q_all[:, :, i] = mod.critic(o, pa).double().numpy()
            q_tgt[:, :, i] = mod.target_critic(o, pa).double().numpy()
            logits[:, :, i] = mod.actor(o[:, :L], pa[:, :L]).double().numpy()
    b_ix, t_ix, i_ix = np.meshgrid(np.arange(3), np.arange(L), np.arange(3), indexing="ij")
    q_taken = q_all[b_ix, t_ix, i_ix, acts]
    next_acts = np.concatenate([acts[:, 1:], np.zeros((3, 1, 3), np.int64)], 1)
    q_next = q_tgt[b_ix, t_ix + 1, i_ix, next_acts]
    q_tot, w = _np_mixer(mods[MIXER_MODULE_ID].mixer, q_taken, state[:, :L])
    q_tot_next, _ = _np_mixer(mods[MIXER_MODULE_ID].target_mixer, q_next, state[:, 1:L + 1])
    boot = (1 - term) * nf * filled
    rho = np_weights(q_tot_next, boot, 0.5, over)
    G = np_lambda_returns(rew, rho * q_tot_next * boot, boot, 0.99, 0.8)
    critic = np.mean([(q_tot[b, t] - G[b, t]) ** 2 for b in range(3) for t in range(L) if filled[b, t]])
    assert terms["critic"][0].item() == pytest.approx(critic, rel=1e-4)

    av = avail[:, :L]
    z = np.where(av > 0, logits, -np.inf)
    pi = np.exp(z - z.max(-1, keepdims=True))
    pi /= pi.sum(-1, keepdims=True)
    adv = q_taken - (np.where(av > 0, pi * q_all[:, :L], 0.0)).sum(-1)
    logp = np.log(pi[b_ix, t_ix, i_ix, acts])
    valid = np.repeat(filled[..., None], 3, -1)
    rho_a = np_weights(adv, valid, 0.2, over)
    actor = -np.mean([w[b, t, i] * rho_a[b, t, i] * logp[b, t, i]
                      for b in range(3) for t in range(L) for i in range(3) if valid[b, t, i]])
    assert terms["actor"][0].item() == pytest.approx(actor, rel=1e-4)
    assert sorted(terms["critic"][1]) == sorted([("scout", "critic"), ("tank", "critic"), (MIXER_MODULE_ID, "mixer")])
    assert sorted(terms["actor"][1]) == [("scout", "actor"), ("tank", "actor")]


def test_continuous_module_forward_and_sampled_baseline():
    """Continuous: Q_i(τ, a) at the data action, the target at t+1 with the data's next action, and
    the baseline = mean of Q_i(τ, ã) over ã ~ π (a sampled estimate of E_π Q: checked against a
    NumPy mean over 4000 draws of the tanh-Gaussian, and against its 10-sample value's spread)."""
    info = TinyContinuousEnv().info
    learner = _learner(info, n_action_samples=4000)
    mod = learner.module["leg"].unwrapped()
    ep = _episodes(info, [5, 3], [False, False], seed=1)
    sampler = JointEpisodeSampler(ep, seed=0, agent_modules=["leg", "leg"])
    sampler.sample_indices = lambda n: np.array([0, 1])
    raw = sampler.sample_by_module(2, MIXER_MODULE_ID)
    b = {k: torch.as_tensor(np.asarray(v)) for k, v in raw["leg"].items()}
    torch.manual_seed(0)
    out = mod._forward_train(b)
    L = b[K.FILLED].shape[1]
    own = b[K.OBS_ALL][torch.arange(4), :, b[K.AGENT_INDEX]]
    with torch.no_grad():
        h = mod.critic.trunk(own, b[K.PREV_ACTIONS])
        np.testing.assert_allclose(out[K.Q_TAKEN].detach().numpy(), mod.critic.value(h[:, :L], b[K.ACTIONS]).numpy(),
                                   rtol=1e-5)
        ht = mod.target_critic.trunk(own, b[K.PREV_ACTIONS])
        np.testing.assert_allclose(out[K.Q_NEXT_TARGET].numpy(),
                                   mod.target_critic.value(ht[:, 1:L + 1], b[K.NEXT_ACTIONS]).numpy(), rtol=1e-5)
        means = mod.actor(own[:, :L], b[K.PREV_ACTIONS][:, :L]).double().numpy()
        std = mod.actor.log_std.exp().double().numpy()
        g = np.random.default_rng(0)
        draws = np.tanh(means[:, :, None] + std * g.normal(size=means.shape[:2] + (4000, means.shape[-1])))
        q_draws = mod.critic.value(h[:, :L].unsqueeze(2), torch.as_tensor(draws, dtype=torch.float32)).double().numpy()
    np.testing.assert_allclose(out[N.Q_BASELINE].numpy(), q_draws.mean(-1), atol=4 * q_draws.std(-1).max() / np.sqrt(
        4000) + 1e-4)


# -- mixer weights ---------------------------------------------------------------------------------

def test_mixer_weights_are_nonnegative_and_are_dQtot_dQi_even_when_trained_against_it():
    """w_i(s) = |hyper(s)| ≥ 0 on any state (also after 100 Adam steps on a loss that rewards
    negative weights: Q_tot fitted to −Σ Q_i), and it equals ∂Q_tot/∂Q_i (what the actor uses)."""
    learner = _learner(TinyCoopEnv().info)
    mixer = learner.module[MIXER_MODULE_ID].unwrapped().mixer
    g = torch.Generator().manual_seed(0)
    opt = torch.optim.Adam(mixer.parameters(), lr=1e-2)
    for _ in range(100):
        q, s = torch.rand(64, 3, generator=g) + 0.5, torch.randn(64, 5, generator=g) * 3
        loss = ((mixer(q, s) + q.sum(-1)) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    s = torch.randn(256, 5, generator=g) * 10
    w, _ = mixer.weights(s)
    assert (w >= 0).all()
    q = torch.randn(256, 3, generator=g, requires_grad=True)
    grad = torch.autograd.grad(mixer(q, s).sum(), q)[0]
    torch.testing.assert_close(grad, w.detach())


# -- learning check (can fail) ---------------------------------------------------------------------

@pytest.mark.parametrize("data_actions, best", [((0, 1, 2), 1), ((0, 2), 2)])
def test_actor_moves_toward_the_data_action_with_the_largest_advantage(data_actions, best):
    """One agent type, constant observations, Q(τ, ·) = [0, 1, 0.5] (critic head fixed). With the data
    actions {0, 1, 2}, 60 Adam steps on the ICQ actor loss move π to action 1 (the largest advantage);
    with data {0, 2} (action 1 never seen) π moves to 2 and π(1) shrinks: the actor believes only
    what it sees. Both from a near-uniform start."""
    info = TinyCoopEnv().info
    learner = _learner(info)
    mod = learner.module["scout"].unwrapped()
    with torch.no_grad():
        mod.critic.fc_out.weight.zero_()
        mod.critic.fc_out.bias.copy_(torch.tensor([0.0, 1.0, 0.5]))
    B, L = 12, 4
    acts = torch.tensor([data_actions[k % len(data_actions)] for k in range(B * L)]).reshape(B, L)
    batch = {K.OBS_ALL: torch.zeros(B, L + 1, 3, 4), K.AGENT_INDEX: torch.zeros(B, dtype=torch.long),
             K.ACTIONS: acts, K.PREV_ACTIONS: torch.full((B, L + 1), -1), K.NEXT_ACTIONS: torch.zeros(B, L).long(),
             K.AVAIL_ACTIONS: torch.ones(B, L + 1, 3), K.FILLED: torch.ones(B, L)}
    opt = torch.optim.Adam(mod.actor.parameters(), lr=1e-2)

    def probs():
        with torch.no_grad():
            return mod._forward_train(batch)[N.PI_PROBS].mean((0, 1)).numpy()

    p0 = probs()
    assert np.abs(p0 - 1 / 3).max() < 0.15
    for _ in range(60):
        out = mod._forward_train(batch)
        adv = out[K.Q_TAKEN].detach() - discrete_policy_baseline(out[N.Q_VALUES], out[N.PI_PROBS])
        loss, _ = icq_actor_loss(out[K.LOGP], adv, torch.ones_like(adv), batch[K.FILLED], beta=0.1)
        opt.zero_grad()
        loss.backward()
        opt.step()
    p = probs()
    assert p.argmax() == best and p[best] > 0.8, (p0, p)
    if 1 not in data_actions:
        assert p[1] < p0[1]


# -- config ----------------------------------------------------------------------------------------

def test_defaults_are_table_11():
    cfg = ICQConfig()
    assert (cfg.critic_beta, cfg.actor_beta, cfg.td_lambda, cfg.critic_lr, cfg.actor_lr) == (0.1, 0.1, 0.8, 1e-4, 5e-4)
    assert (cfg.agent_updates, cfg.target_update_interval, cfg.rnn_hidden, cfg.mixer_hidden, cfg.batch_size_episodes,
            cfg.optimizer, cfg.grad_clip, cfg.gamma, cfg.softmax_over) == \
        (15000, 100, 64, 32, 32, "rmsprop", 10.0, 0.99, "batch")


@pytest.mark.parametrize("key, value", [("critic_beta", 0.0), ("actor_beta", -1.0), ("critic_lr", 0), ("actor_lr", None),
                                        ("td_lambda", 1.5), ("softmax_over", "steps"), ("agent_updates", -1),
                                        ("target_update_interval", 0), ("mixer_hidden", 2.5),
                                        ("n_action_samples", 0), ("batch_size_episodes", 0)])
def test_config_validation_names_the_parameter(key, value):
    cfg = ICQConfig().environment(TINY_ENV_ID).training(**{key: value})
    with pytest.raises(ValueError, match=f"ICQConfig: {key}="):
        cfg.validate()


def test_every_tuned_example_validates():
    from rllib_sit.cli.rllib_cmd import load_experiments

    files = sorted(glob.glob(os.path.join(TUNED, "icq_*.yaml")))
    maps = {os.path.basename(f)[len("sit_"):] for f in glob.glob(os.path.join(TUNED, "sit_*.yaml"))
            if "_quick" not in f and "_sweep" not in f}
    assert {os.path.basename(f)[len("icq_"):] for f in files} == maps and len(maps) == 11
    for f in files:
        for exp in load_experiments(f).values():
            assert exp["run"] == "ICQ"
            cfg = ICQConfig().update_from_dict(dict(exp["config"], env=exp["env"]))
            cfg.validate()
            assert (cfg.critic_beta, cfg.td_lambda, cfg.critic_lr) == (0.1, 0.8, 1e-4)


# -- Ray: registration, build → train → evaluate, checkpoints ----------------------------------------


def _mixer_weights_on(algo, batch):
    mixer = algo.learner_group._learner.module[MIXER_MODULE_ID].unwrapped().mixer
    with torch.no_grad():
        return mixer.weights(torch.as_tensor(batch[MIXER_MODULE_ID][K.STATE]))[0]


def test_train_evaluate_checkpoint_round_trip_discrete(dataset, tmp_path):
    algo = tiny_icq(dataset, agent_updates=8, agent_updates_per_iteration=4).evaluation(evaluation_interval=1) \
        .build_algo()
    try:
        r = algo.train()  # 4 of 8 updates
        assert r["phases"] == dict(r["phases"], current="icq", icq_updates_done=4)
        for key in (N.CRITIC_LOSS, N.Q_TOT_MEAN, N.TARGET_MEAN, N.CRITIC_WEIGHT_MAX, N.CRITIC_WEIGHT_ESS):
            assert np.isfinite(r["learners"][MIXER_MODULE_ID][key]), key
        for m in ("scout", "tank"):
            for key in (N.ACTOR_LOSS, N.ACTOR_WEIGHT_MAX, N.ADVANTAGE_MEAN, N.LOGP_MEAN):
                assert np.isfinite(r["learners"][m][key]), (m, key)
            assert 0 < r["learners"][m][POLICY_ENTROPY] <= np.log(3) + 1e-6  # tiny:coop: 3 actions
        assert 0 < r["learners"][MIXER_MODULE_ID][N.CRITIC_WEIGHT_ESS] <= 1
        ev = r["evaluation"]["env_runners"]
        assert ev["num_episodes"] == 2 and np.isfinite(ev["episode_return_mean"]) and "win_rate" in ev
        learner = algo.learner_group._learner
        # hard target copies every 2 updates: after 4 the targets equal the online nets
        for m, pairs in (("scout", "critic"), (MIXER_MODULE_ID, "mixer")):
            mod = learner.module[m].unwrapped()
            for a, b in zip(getattr(mod, pairs).parameters(), getattr(mod, f"target_{pairs}").parameters()):
                torch.testing.assert_close(a, b)
        assert (_mixer_weights_on(algo, algo.sampler.sample_by_module(8, MIXER_MODULE_ID)) >= 0).all()
        ckpt = algo.save_to_path(str(tmp_path / "ckpt"))
        ev_before = algo.evaluate()["env_runners"]["episode_return_mean"]
        weights = {m: copy.deepcopy(learner.module[m].unwrapped().state_dict()) for m in ("scout", "tank", MIXER_MODULE_ID)}
        next_batch = algo.sampler.sample_by_module(8, MIXER_MODULE_ID)  # the sampler RNG is checkpointed
    finally:
        algo.stop()
    restored = ICQ.from_checkpoint(ckpt)
    try:
        assert restored.schedule.current_name == "icq" and restored.schedule.done["icq"] == 4
        for m, sd in weights.items():
            for k, v in restored.learner_group._learner.module[m].unwrapped().state_dict().items():
                torch.testing.assert_close(v, sd[k])
        assert restored.evaluate()["env_runners"]["episode_return_mean"] == ev_before
        again = restored.sampler.sample_by_module(8, MIXER_MODULE_ID)
        np.testing.assert_array_equal(again[MIXER_MODULE_ID][K.EPISODE_INDEX], next_batch[MIXER_MODULE_ID][K.EPISODE_INDEX])
        r = restored.train()
        assert r["phases"]["icq_updates_done"] == 8 and r["phases"]["current"] == "done"
    finally:
        restored.stop()


def test_train_and_evaluate_continuous(ray_session, tmp_path):
    from rllib_sit.data.synthetic import make_random_dataset

    register_tiny_continuous_env()
    path = make_random_dataset(TinyContinuousEnv(), 12, str(tmp_path / "cont"), seed=0)
    algo = tiny_icq(path, env=TINY_CONT_ENV_ID, batch_size_episodes=4, n_action_samples=5).build_algo()
    try:
        algo.train()
        r = algo.train()
        assert r["phases"]["icq_updates_done"] == 6
        assert np.isfinite(r["learners"][MIXER_MODULE_ID][N.CRITIC_LOSS])
        assert np.isfinite(r["learners"]["leg"][N.ACTOR_LOSS]) and np.isfinite(r["learners"]["leg"][N.ADVANTAGE_MEAN])
        assert_gaussian_entropy_logged(algo, r, "leg")
        ev = algo.evaluate()["env_runners"]
        assert ev["episode_len_mean"] == 5 and np.isfinite(ev["episode_return_mean"])
    finally:
        algo.stop()
