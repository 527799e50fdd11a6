"""MACQL (SIT paper Eq. 13, Table 11; CQL): the penalties (per-agent and joint, discrete and
continuous) and the TD loss against NumPy on hand-made batches with unavailable actions and padded
steps, non-negative mixer weights, a learning check that can fail (the penalty must lower the
values of actions the data never took), build-train-evaluate on the tiny discrete and continuous
envs, checkpoints, config checks, ``run: MACQL`` and the tuned examples. Ray is started once for
the module (conftest)."""

import copy
import glob
import math
import os

import numpy as np
import pytest
import torch

from tiny_fixtures import TINY_CONT_ENV_ID, TINY_ENV_ID, TinyContinuousEnv, TinyCoopEnv, register_tiny_continuous_env

from rllib_sit.algorithms.common.algorithm import to_multi_agent_batch
from rllib_sit.algorithms.common.joint import MIXER_MODULE_ID
from rllib_sit.algorithms.common.losses import masked_mean
from rllib_sit.algorithms.macql import MACQL, MACQLConfig
from rllib_sit.algorithms.macql.macql import joint_batch
from rllib_sit.algorithms.macql.macql_learner import (CQL_PENALTY, DATA_ACTION_GAP, GREEDY_ACCURACY, Q_ALL,
                                                      Q_ALL_TARGET, TD_LOSS)
from rllib_sit.algorithms.macql.torch.macql_torch_learner import (joint_cql_penalty, per_agent_cql_penalty,
                                                                  sample_available_uniform,
                                                                  sampled_per_agent_cql_penalty, td_loss, td_targets)
from rllib_sit.data.episode_store import EpisodeStore
from rllib_sit.replay import keys as K
from rllib_sit.replay.samplers import JointEpisodeSampler

TUNED = os.path.join(os.path.dirname(__file__), "..", "..", "tuned_examples")


def tiny_macql(path, env=TINY_ENV_ID, **training):
    kw = dict(agent_updates=6, agent_updates_per_iteration=3, batch_size_episodes=8)
    kw.update(training)
    return (MACQLConfig().environment(env).offline_data(input_=path).training(**kw)
            .evaluation(evaluation_duration=2).debugging(seed=0))


# -- NumPy references (independent of the code under test) ---------------------------------------

def np_lse(x):
    x = np.asarray(x, np.float64)
    m = x.max()
    return m + np.log(np.exp(x - m).sum())


def np_linear_mixer(mixer, s):
    """w(s), b(s) of a StateLinearMixer from its parameters (``s [..., S]``)."""
    def lin(layer, x):
        return x @ layer.weight.detach().double().numpy().T + layer.bias.detach().double().numpy()

    hw, hb = mixer.hyper.hyper_w, mixer.hyper.hyper_b
    w = np.abs(lin(hw[2], np.maximum(lin(hw[0], s), 0)))
    b = lin(hb[2], np.maximum(lin(hb[0], s), 0))[..., 0]
    return w, b


def _hand_batch(seed=0, B=2, L=3, N=3, A=4):
    """Q values of every action, availability (some actions unavailable), dataset actions among the
    available ones, mixer weights/bias, and ``filled`` with a padded tail in the first episode."""
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, L, N, A, generator=g, dtype=torch.float64) * 2
    avail = (torch.rand(B, L, N, A, generator=g) < 0.6).double()
    avail[..., 0] = 1.0
    avail[0, 1, 2] = torch.tensor([0.0, 0.0, 1.0, 0.0], dtype=torch.float64)  # a single available action
    acts = torch.multinomial(avail.reshape(-1, A), 1, generator=g).reshape(B, L, N)
    w = torch.rand(B, L, N, generator=g, dtype=torch.float64) * 1.5
    b = torch.randn(B, L, generator=g, dtype=torch.float64)
    filled = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]], dtype=torch.float64)
    avail[0, 2] = 0.0  # padded step: nothing available (as in the data)
    return q, avail, acts, w, b, filled


# -- the per-agent penalty (Eq. 13) --------------------------------------------------------------

@pytest.mark.parametrize("weights, literal_bias", [("mixer", False), ("none", False), ("mixer", True)])
def test_per_agent_penalty_matches_numpy(weights, literal_bias):
    q, avail, acts, w, b, filled = _hand_batch()
    scale = w if weights == "mixer" else torch.ones_like(w)
    per_step = per_agent_cql_penalty(q, acts, avail, scale, b if literal_bias else None)
    got = masked_mean(per_step, filled).item()
    qn, an, cn, bn, wn = q.numpy(), avail.numpy(), scale.numpy(), b.numpy(), w.numpy()
    vals = []
    for i in range(2):
        for t in range(3):
            if not filled[i, t]:
                continue
            if literal_bias:  # Eq. 13 as printed: Σ_i log Σ_{a_i} exp(w_i Q_i + b) − Q_tot(s, a_data)
                q_tot = sum(wn[i, t, j] * qn[i, t, j, acts[i, t, j]] for j in range(3)) + bn[i, t]
                v = sum(np_lse([wn[i, t, j] * qn[i, t, j, a] + bn[i, t] for a in range(4) if an[i, t, j, a]])
                        for j in range(3)) - q_tot
            else:
                v = sum(np_lse([cn[i, t, j] * qn[i, t, j, a] for a in range(4) if an[i, t, j, a]])
                        - cn[i, t, j] * qn[i, t, j, acts[i, t, j]] for j in range(3))
            vals.append(v)
    assert got == pytest.approx(np.mean(vals), rel=1e-10)


def test_per_agent_penalty_ignores_unavailable_actions_and_padded_steps():
    q, avail, acts, w, b, filled = _hand_batch(seed=1)
    base = masked_mean(per_agent_cql_penalty(q, acts, avail, w), filled)
    changed = q.clone()
    changed[avail == 0] = 1e6  # an unavailable action worth a fortune never enters the logsumexp
    changed[0, 2] = -1e6  # the padded step
    w2 = w.clone()
    w2[0, 2] = 1e3
    leaf = changed.clone().requires_grad_(True)
    pen = masked_mean(per_agent_cql_penalty(leaf, acts, avail, w2), filled)
    assert pen.item() == pytest.approx(base.item(), rel=1e-10)
    pen.backward()
    assert torch.count_nonzero(leaf.grad[avail == 0]) == 0
    assert torch.count_nonzero(leaf.grad[0, 2]) == 0
    # and it is a CQL penalty: ≥ 0 per agent, 0 where the data action is the only available one
    assert (per_agent_cql_penalty(q, acts, avail, w)[filled > 0] >= 0).all()
    single = per_agent_cql_penalty(q[:, :, 2:], acts[:, :, 2:], avail[:, :, 2:], w[:, :, 2:])
    assert single[0, 1].item() == pytest.approx(0.0, abs=1e-12)


# -- the joint penalty ----------------------------------------------------------------------------

def test_uniform_samples_are_available_actions_only():
    _, avail, _, _, _, _ = _hand_batch()
    s = sample_available_uniform(avail[:, :2], 400, generator=torch.Generator().manual_seed(0))
    assert s.shape == (2, 2, 3, 400)
    assert (avail[:, :2].gather(-1, s) > 0).all()
    # uniform over the available ones: every available action is drawn about 1/|A_i| of the time
    counts = torch.nn.functional.one_hot(s, 4).double().mean(-2)
    expected = avail[:, :2] / avail[:, :2].sum(-1, keepdim=True)
    assert torch.allclose(counts, expected, atol=0.1)


def test_joint_penalty_matches_numpy_and_estimates_the_joint_logsumexp():
    q, avail, acts, w, b, filled = _hand_batch(seed=2)
    n = 5
    sampled = sample_available_uniform(avail, n, generator=torch.Generator().manual_seed(1))
    q_samples = q.gather(-1, sampled)
    size = avail.sum(-1, keepdim=True).clamp(min=1.0)
    log_q = -torch.log(size).expand_as(q_samples)
    q_data = q.gather(-1, acts.unsqueeze(-1)).squeeze(-1)
    got = masked_mean(joint_cql_penalty(q_samples, log_q, q_data, w, b), filled).item()
    qn, sn, wn, bn, an = q.numpy(), sampled.numpy(), w.numpy(), b.numpy(), avail.numpy()
    vals = []
    for i in range(2):
        for t in range(3):
            if not filled[i, t]:
                continue
            q_tot_k = [sum(wn[i, t, j] * qn[i, t, j, sn[i, t, j, k]] for j in range(3)) + bn[i, t] for k in range(n)]
            correction = sum(np.log(an[i, t, j].sum()) for j in range(3)) - np.log(n)
            q_tot_data = sum(wn[i, t, j] * qn[i, t, j, acts[i, t, j]] for j in range(3)) + bn[i, t]
            vals.append(np_lse(q_tot_k) + correction - q_tot_data)
    assert got == pytest.approx(np.mean(vals), rel=1e-10)
    # Padded step and unavailable actions change nothing: the samples never pick those.
    q2 = q.clone()
    q2[avail == 0] = 1e6
    q2[0, 2] = -1e6
    again = masked_mean(joint_cql_penalty(q2.gather(-1, sampled), log_q, q2.gather(-1, acts.unsqueeze(-1)).squeeze(-1),
                                          w, b), filled).item()
    assert again == pytest.approx(got, rel=1e-10)
    # With many samples the importance-corrected estimate approaches log Σ_{available joint a} exp Q_tot(s, a).
    big = sample_available_uniform(avail, 20000, generator=torch.Generator().manual_seed(3))
    est = joint_cql_penalty(q.gather(-1, big), -torch.log(size).expand(*big.shape), q_data, w, b)
    i, t = 1, 2
    joint = [sum(wn[i, t, j] * qn[i, t, j, a[j]] for j in range(3)) + bn[i, t]
             for a in np.ndindex(4, 4, 4) if all(an[i, t, j, a[j]] for j in range(3))]
    exact = np_lse(joint) - (sum(wn[i, t, j] * qn[i, t, j, acts[i, t, j]] for j in range(3)) + bn[i, t])
    assert est[i, t].item() == pytest.approx(exact, abs=0.05)


# -- continuous (sampled, importance-corrected) penalties -----------------------------------------

def test_sampled_penalties_match_numpy_and_mask_padded_steps():
    g = torch.Generator().manual_seed(4)
    B, L, N, S = 2, 3, 2, 6
    q_samples = torch.randn(B, L, N, S, generator=g, dtype=torch.float64)
    log_q = torch.randn(B, L, N, S, generator=g, dtype=torch.float64) - 1.0
    q_data = torch.randn(B, L, N, generator=g, dtype=torch.float64)
    w = torch.rand(B, L, N, generator=g, dtype=torch.float64)
    b = torch.randn(B, L, generator=g, dtype=torch.float64)
    filled = torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 1.0]], dtype=torch.float64)
    per = masked_mean(sampled_per_agent_cql_penalty(q_samples, log_q, q_data, w), filled).item()
    joint = masked_mean(joint_cql_penalty(q_samples, log_q, q_data, w, b), filled).item()
    qs, lq, qd, wn, bn = (x.numpy() for x in (q_samples, log_q, q_data, w, b))
    ref_per, ref_joint = [], []
    for i in range(B):
        for t in range(L):
            if not filled[i, t]:
                continue
            ref_per.append(sum(np_lse(wn[i, t, j] * qs[i, t, j] - lq[i, t, j]) - np.log(S) - wn[i, t, j] * qd[i, t, j]
                               for j in range(N)))
            q_tot_k = (wn[i, t, :, None] * qs[i, t]).sum(0) + bn[i, t]
            ref_joint.append(np_lse(q_tot_k - lq[i, t].sum(0)) - np.log(S) - ((wn[i, t] * qd[i, t]).sum() + bn[i, t]))
    assert per == pytest.approx(np.mean(ref_per), rel=1e-10)
    assert joint == pytest.approx(np.mean(ref_joint), rel=1e-10)
    q2 = q_samples.clone()
    q2[0, 1:] = 1e6
    assert masked_mean(sampled_per_agent_cql_penalty(q2, log_q, q_data, w), filled).item() == pytest.approx(per)
    assert masked_mean(joint_cql_penalty(q2, log_q, q_data, w, b), filled).item() == pytest.approx(joint)


def test_td_loss_functions_match_numpy():
    g = torch.Generator().manual_seed(5)
    q_tot, q_next = torch.randn(2, 4, generator=g), torch.randn(2, 4, generator=g)
    r = torch.randn(2, 4, generator=g)
    term = torch.tensor([[0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    filled = torch.tensor([[1.0, 1.0, 1.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
    y = td_targets(r, term, q_next, 0.9)
    got = td_loss(q_tot, y, filled).item()
    yn = r.numpy() + 0.9 * (1 - term.numpy()) * q_next.numpy()
    m = filled.numpy() > 0
    assert got == pytest.approx(0.5 * np.mean(((yn - q_tot.numpy()) ** 2)[m]), rel=1e-6)


# -- the learner on a real batch of the tiny dataset ----------------------------------------------

def _learner(path, **training):
    cfg = tiny_macql(path, **training)
    torch.manual_seed(0)
    learner = cfg.get_default_learner_class()(config=cfg, module_spec=cfg.get_multi_rl_module_spec())
    learner.build()
    return cfg, learner


def _sampler(path, cfg, seed=0):
    store = EpisodeStore.open(path, validate="none")
    agent_modules = cfg.agent_module_order(store.info)
    return JointEpisodeSampler(store.columns, seed=seed, agent_modules=agent_modules), agent_modules


def _tensors(batch):
    return {m: {k: torch.as_tensor(np.asarray(v)) for k, v in b.items()} for m, b in batch.items()}


def _np_stack(values, agent_modules):
    """``{m: [B * n_m, ...]}`` -> ``[B, T, N, ...]`` (row b * n_m + s = episode b's s-th agent of m)."""
    members = {m: [i for i, a in enumerate(agent_modules) if a == m] for m in dict.fromkeys(agent_modules)}
    some = next(iter(values.values()))
    B = some.shape[0] // len(members[agent_modules[0]])
    out = np.zeros((B, some.shape[1], len(agent_modules)) + some.shape[2:])
    for m, idx in members.items():
        for row in range(values[m].shape[0]):
            out[row // len(idx), :, idx[row % len(idx)]] = values[m][row]
    return out


@pytest.mark.parametrize("variant", ["per_agent", "joint"])
def test_learner_loss_on_a_dataset_batch_matches_numpy(dataset, variant):
    """Eq. 13 end to end through the learner (stacking, slicing, double-Q target on the target
    networks, target mixer, termination, masks), recomputed in NumPy from the networks' Q values."""
    cfg, learner = _learner(dataset, cql_variant=variant, cql_num_samples=3, gamma=0.9)
    mixer_mod = learner.module[MIXER_MODULE_ID].unwrapped()
    with torch.no_grad():  # targets differ from the online nets, so that double Q matters
        for mid in ("scout", "tank"):
            for p in learner.module[mid].unwrapped().target_q.parameters():
                p.add_(0.3 * torch.randn_like(p))
        for p in mixer_mod.target_mixer.parameters():
            p.add_(0.3 * torch.randn_like(p))
    sampler, agent_modules = _sampler(dataset, cfg)
    batch = _tensors(joint_batch(sampler, 8))
    mb = batch[MIXER_MODULE_ID]
    assert (mb[K.FILLED] == 0).any() and (mb[K.TERMINATED] > 0).any()  # the batch has padded and terminal steps
    assert (mb[K.AVAIL_ACTIONS][:, :-1][mb[K.FILLED] > 0] == 0).any()  # and unavailable actions
    fwd = learner.module.forward_train(batch)
    torch.manual_seed(7)
    loss, targets = learner.compute_joint_losses(batch=batch, fwd_out=fwd)["critic"]
    assert set(targets) == {("scout", "q"), ("tank", "q"), (MIXER_MODULE_ID, "mixer")}
    td_got = learner.metrics.peek((MIXER_MODULE_ID, TD_LOSS))
    pen_got = learner.metrics.peek((MIXER_MODULE_ID, CQL_PENALTY))

    q = _np_stack({m: fwd[m][Q_ALL].detach().double().numpy() for m in ("scout", "tank")}, agent_modules)
    qt = _np_stack({m: fwd[m][Q_ALL_TARGET].double().numpy() for m in ("scout", "tank")}, agent_modules)
    filled, L = mb[K.FILLED].numpy(), mb[K.FILLED].shape[1]
    avail, acts, state = mb[K.AVAIL_ACTIONS].numpy(), mb[K.ACTIONS].numpy(), mb[K.STATE].double().numpy()
    r, term = mb[K.REWARD].numpy(), mb[K.TERMINATED].numpy()
    w, b = np_linear_mixer(mixer_mod.mixer, state)
    wt, bt = np_linear_mixer(mixer_mod.target_mixer, state)
    td, pens = [], []
    torch.manual_seed(7)  # the joint variant's samples, as the learner drew them
    sampled = sample_available_uniform(mb[K.AVAIL_ACTIONS][:, :L], 3).numpy() if variant == "joint" else None
    for i in range(8):
        for t in range(L):
            if not filled[i, t]:
                continue
            q_tot = sum(w[i, t, j] * q[i, t, j, acts[i, t, j]] for j in range(3)) + b[i, t]
            nxt = 0.0
            for j in range(3):
                avail_next = np.flatnonzero(avail[i, t + 1, j])
                a_star = avail_next[np.argmax(q[i, t + 1, j, avail_next])]  # double Q: online arg max
                nxt += wt[i, t + 1, j] * qt[i, t + 1, j, a_star]
            y = r[i, t] + 0.9 * (1 - term[i, t]) * (nxt + bt[i, t + 1])
            td.append(0.5 * (y - q_tot) ** 2)
            if variant == "per_agent":
                pens.append(sum(np_lse([w[i, t, j] * q[i, t, j, a] for a in np.flatnonzero(avail[i, t, j])])
                                - w[i, t, j] * q[i, t, j, acts[i, t, j]] for j in range(3)))
            else:
                q_tot_k = [sum(w[i, t, j] * q[i, t, j, sampled[i, t, j, k]] for j in range(3)) + b[i, t]
                           for k in range(3)]
                corr = sum(np.log(avail[i, t, j].sum()) for j in range(3)) - np.log(3)
                pens.append(np_lse(q_tot_k) + corr - q_tot)
    assert td_got == pytest.approx(np.mean(td), rel=1e-4)
    assert pen_got == pytest.approx(np.mean(pens), rel=1e-4)
    assert loss.item() == pytest.approx(np.mean(td) + 2.0 * np.mean(pens), rel=1e-4)


def test_mixer_weights_stay_non_negative_and_q_tot_is_monotonic(dataset):
    cfg, learner = _learner(dataset, lr=0.05)  # large steps: weights pushed around hard
    sampler, _ = _sampler(dataset, cfg)
    for _ in range(3):
        learner.update(batch=to_multi_agent_batch(joint_batch(sampler, 8)))
    mixer = learner.module[MIXER_MODULE_ID].unwrapped().mixer
    state = torch.as_tensor(sampler.sample(16)[K.STATE]).float() * 10
    w, _ = mixer.weights(state)
    assert (w >= 0).all()
    qs = torch.randn(*state.shape[:2], 3, requires_grad=True)
    assert torch.autograd.grad(mixer(qs, state).sum(), qs)[0].ge(0).all()


def _always_action_0_dataset(path, n_episodes=16):
    """``tiny:coop`` episodes where every agent always takes action 0 and every step costs −1: the
    data's Q values are pulled down by TD; actions 1 and 2 never occur in the data."""
    from rllib_sit.data import schema as S
    from rllib_sit.data.episode import rollout_episode
    from rllib_sit.data.io import write_dataset

    env = TinyCoopEnv()

    def rows():
        for k in range(n_episodes):
            row = rollout_episode(env, lambda e, obs: np.zeros(3, np.int64), seed=k, episode_id=k)
            row[S.REWARD] = -row[S.FILLED].astype(np.float32)
            row[S.EPISODE_RETURN] = np.float32(row[S.REWARD].sum())
            yield row

    return write_dataset(rows(), path, S.DatasetMeta(env=env.info), {"quality": "action-0, reward -1"})


def _gap_after_training(path, beta, updates=20):
    cfg, learner = _learner(path, cql_beta=beta, lr=3e-3, target_update_interval=10)
    sampler, _ = _sampler(path, cfg)
    for _ in range(updates):
        learner.update(batch=to_multi_agent_batch(joint_batch(sampler, 8)))
    batch = _tensors(joint_batch(sampler, 16))
    learner.compute_joint_losses(batch=batch, fwd_out=learner.module.forward_train(batch))
    return {m: learner.metrics.peek((m, DATA_ACTION_GAP)) for m in ("scout", "tank")}, \
        {m: learner.metrics.peek((m, GREEDY_ACCURACY)) for m in ("scout", "tank")}


def test_penalty_lowers_out_of_data_actions_relative_to_data_actions(ray_session, tmp_path):
    """The data only ever takes action 0, at a cost of −1 per step. Plain TD (β_CQL = 0) drags
    Q(a = 0) down and leaves the never-seen actions where they were, so greedy agents would pick an
    out-of-data action (extrapolation error). With the penalty (β_CQL = 2) the data action must end
    up valued above every other available action, by a clear margin, and be the greedy one."""
    path = _always_action_0_dataset(str(tmp_path / "a0"))
    gap_td, acc_td = _gap_after_training(path, beta=0.0)
    gap_cql, acc_cql = _gap_after_training(path, beta=2.0)
    for m in ("scout", "tank"):
        assert gap_td[m] < 0, (gap_td, gap_cql)  # TD alone: out-of-data actions look better
        assert gap_cql[m] > 1.0, (gap_td, gap_cql)
        assert acc_cql[m] == 1.0 and acc_td[m] < 0.5, (acc_td, acc_cql)


# -- config --------------------------------------------------------------------------------------

@pytest.mark.parametrize("key, value", [("lr", 0.0), ("cql_beta", -1.0), ("cql_beta", "2"), ("cql_variant", "sum"),
                                        ("cql_agent_weights", "softmax"), ("cql_num_samples", 0),
                                        ("double_q", 1), ("target_update_interval", 0), ("target_update_tau", 1.5),
                                        ("mixer_hidden", 0), ("agent_updates", -1), ("actor_lr", -1e-3),
                                        ("target_entropy", "auto"), ("cql_bias_per_agent", "yes")])
def test_config_validation_names_the_parameter(key, value):
    cfg = MACQLConfig().environment(TINY_ENV_ID).training(**{key: value})
    with pytest.raises(ValueError, match=f"MACQLConfig: {key}="):
        cfg.validate()


def test_literal_bias_needs_the_mixer_weighted_per_agent_penalty():
    cfg = MACQLConfig().environment(TINY_ENV_ID).training(cql_bias_per_agent=True, cql_variant="joint")
    with pytest.raises(ValueError, match="MACQLConfig: cql_bias_per_agent=True"):
        cfg.validate()


def test_defaults_are_table_11():
    cfg = MACQLConfig()
    assert (cfg.cql_beta, cfg.cql_variant, cfg.cql_agent_weights, cfg.cql_bias_per_agent) == \
        (2.0, "per_agent", "mixer", False)
    assert (cfg.lr, cfg.rnn_hidden, cfg.mixer_hidden, cfg.target_update_interval, cfg.agent_updates,
            cfg.batch_size_episodes, cfg.optimizer, cfg.grad_clip, cfg.gamma) == \
        (5e-4, 64, 32, 100, 15000, 32, "rmsprop", 10.0, 0.99)


def test_every_tuned_example_validates():
    from rllib_sit.cli.rllib_cmd import load_experiments

    files = sorted(glob.glob(os.path.join(TUNED, "macql_*.yaml")))
    maps = {os.path.basename(f)[len("sit_"):] for f in glob.glob(os.path.join(TUNED, "sit_*.yaml"))
            if "_quick" not in f and "_sweep" not in f}
    assert {os.path.basename(f)[len("macql_"):] for f in files} == maps and len(maps) == 11
    for f in files:
        for exp in load_experiments(f).values():
            assert exp["run"] == "MACQL"
            cfg = MACQLConfig().update_from_dict(dict(exp["config"], env=exp["env"]))
            cfg.validate()
            assert cfg.cql_beta == 2.0 and cfg.cql_variant == "per_agent"


# -- build, train, evaluate, checkpoint ----------------------------------------------------------

def test_train_two_iterations_and_evaluate_discrete(dataset):
    algo = tiny_macql(dataset).evaluation(evaluation_interval=2).build_algo()
    try:
        r1 = algo.train()
        assert r1["phases"] == dict(r1["phases"], current="cql", cql_updates_done=3)
        r2 = algo.train()
        assert r2["phases"]["current"] == "done" and r2["phases"]["cql_updates_done"] == 6
        mix = r2["learners"][MIXER_MODULE_ID]
        assert np.isfinite(mix[TD_LOSS]) and mix[CQL_PENALTY] >= 0
        for t in ("scout", "tank"):
            assert 0 <= r2["learners"][t][GREEDY_ACCURACY] <= 1
        ev = r2["evaluation"]["env_runners"]
        assert ev["num_episodes"] == 2 and np.isfinite(ev["episode_return_mean"]) and "win_rate" in ev
    finally:
        algo.stop()


def test_train_and_evaluate_continuous(ray_session, tmp_path):
    from rllib_sit.data.synthetic import make_random_dataset

    register_tiny_continuous_env()
    path = make_random_dataset(TinyContinuousEnv(), 12, str(tmp_path / "cont"), seed=0)
    algo = tiny_macql(path, env=TINY_CONT_ENV_ID, batch_size_episodes=4, cql_num_samples=4).build_algo()
    try:
        critic0 = copy.deepcopy(algo.learner_group._learner.module["leg"].unwrapped().critic.state_dict())
        algo.train()
        r = algo.train()
        assert r["phases"]["cql_updates_done"] == 6
        mix, leg = r["learners"][MIXER_MODULE_ID], r["learners"]["leg"]
        for key in (TD_LOSS, CQL_PENALTY, "actor_loss"):
            assert np.isfinite(mix[key])
        assert 0 < leg["alpha"] < 1.0  # the temperature moved (SAC) from its initial 1.0
        critic = algo.learner_group._learner.module["leg"].unwrapped().critic.state_dict()
        assert any(not torch.equal(critic[k], critic0[k]) for k in critic)
        ev = algo.evaluate()["env_runners"]
        assert ev["episode_len_mean"] == 5 and np.isfinite(ev["episode_return_mean"])
    finally:
        algo.stop()


def test_checkpoint_round_trip(dataset, tmp_path):
    algo = tiny_macql(dataset, agent_updates=8, agent_updates_per_iteration=4, cql_variant="joint").build_algo()
    try:
        algo.train()  # 4 of 8 updates
        ckpt = algo.save_to_path(str(tmp_path / "ckpt"))
        ev_before = algo.evaluate()["env_runners"]["episode_return_mean"]
        learner = algo.learner_group._learner
        w_before = learner.module["tank"].unwrapped().q.fc_out.weight.detach().clone()
        mix_before = learner.module[MIXER_MODULE_ID].unwrapped().mixer.state_dict()
        mix_before = {k: v.clone() for k, v in mix_before.items()}
        next_batch = joint_batch(algo.sampler, 8)  # the sampler's RNG is in the checkpoint
    finally:
        algo.stop()
    restored = MACQL.from_checkpoint(ckpt)
    try:
        assert restored.config.cql_variant == "joint"
        assert restored.schedule.current_name == "cql" and restored.schedule.done["cql"] == 4
        learner = restored.learner_group._learner
        torch.testing.assert_close(learner.module["tank"].unwrapped().q.fc_out.weight, w_before)
        for k, v in learner.module[MIXER_MODULE_ID].unwrapped().mixer.state_dict().items():
            torch.testing.assert_close(v, mix_before[k])
        assert learner.module_updates("tank") == 4
        assert restored.evaluate()["env_runners"]["episode_return_mean"] == ev_before
        again = joint_batch(restored.sampler, 8)
        np.testing.assert_array_equal(again[MIXER_MODULE_ID][K.EPISODE_INDEX], next_batch[MIXER_MODULE_ID][K.EPISODE_INDEX])
        r = restored.train()
        assert r["phases"]["cql_updates_done"] == 8 and r["phases"]["current"] == "done"
    finally:
        restored.stop()


def test_targets_are_frozen_copies_synced_on_the_schedule(dataset):
    cfg, learner = _learner(dataset, target_update_interval=3)
    sampler, _ = _sampler(dataset, cfg)
    tank = learner.module["tank"].unwrapped()
    mixer_mod = learner.module[MIXER_MODULE_ID].unwrapped()
    assert all(not p.requires_grad for p in tank.target_q.parameters())
    t0 = copy.deepcopy(tank.target_q.state_dict())
    for n in range(3):
        res = learner.update(batch=to_multi_agent_batch(joint_batch(sampler, 8)))
        if n < 2:
            for k, v in tank.target_q.state_dict().items():
                torch.testing.assert_close(v, t0[k])
    for k, v in tank.target_q.state_dict().items():
        torch.testing.assert_close(v, tank.q.state_dict()[k])
    for k, v in mixer_mod.target_mixer.state_dict().items():
        torch.testing.assert_close(v, mixer_mod.mixer.state_dict()[k])
    td = res[MIXER_MODULE_ID][TD_LOSS]
    assert math.isfinite(float(td.peek() if hasattr(td, "peek") else td))


def test_discrete_q_network_is_q_and_the_agent_acts_with_it(dataset):
    """The discrete Q-network is registered as ``q`` (target ``target_q``), not under the policy's
    name; ``actor`` (what acting, evaluation and export read) is that same network, and the
    continuous module keeps its policy as ``actor`` beside the critic."""
    _, learner = _learner(dataset)
    tank = learner.module["tank"].unwrapped()
    names = {n for n, _ in tank.named_children()}
    assert {"q", "target_q"} <= names and "actor" not in names and "target_actor" not in names
    assert tank.actor is tank.q
    assert all(k.startswith(("q.", "target_q.")) for k in tank.state_dict())
    from rllib_sit.envs.base import EnvInfo

    info = EnvInfo(env_id="box:test", agents=["l0", "l1"], agent_types=["leg", "leg"], obs_dim=3, state_dim=4,
                   discrete=False, n_actions=None, act_dim=2, episode_limit=5, action_low=-1.0, action_high=1.0)
    cont = MACQLConfig().agent_module_spec(info, "leg", ["l0", "l1"]).build()
    assert cont.actor is cont._modules["actor"] and "q" not in dict(cont.named_children())
