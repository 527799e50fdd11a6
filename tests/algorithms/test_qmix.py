"""QMIX trained naively on offline data (the SIT paper's QMIX row): the TD loss against a NumPy
recomputation (gather, max over available actions / double-Q, QMixer, masked TD) on a hand-made
joint batch, masking (padded steps and unavailable actions change nothing), monotonic mixing,
hard target copies, greedy acting = arg max of Q over the available actions, build-train-evaluate,
checkpoints, config checks, the ``run: QMIX`` registration and the tuned examples, and a learning
check that can fail. Ray is started once for the module (conftest)."""

import glob
import os

import numpy as np
import pytest
import torch

from tiny_fixtures import (TINY_CONT_ENV_ID, TINY_ENV_ID, TinyContinuousEnv, TinyCoopEnv, np_qmixer,
                           assert_learns_the_rewarding_actions, register_tiny_continuous_env)

from rllib_sit.algorithms.common.joint import MIXER_MODULE_ID
from rllib_sit.algorithms.qmix import QMIX, QMIXConfig
from rllib_sit.algorithms.qmix.qmix import joint_batch
from rllib_sit.algorithms.qmix.qmix_learner import Q_TOT_MEAN, TD_LOSS
from rllib_sit.algorithms.qmix.torch.qmix_torch_learner import QMIXTorchLearner, max_available_next_q
from rllib_sit.replay import keys as K

TUNED = os.path.join(os.path.dirname(__file__), "..", "..", "tuned_examples")
AGENT_MODULES = ["scout", "scout", "tank"]  # tiny:coop's agents a0, a1, b0 by type


def tiny_qmix(path, env=TINY_ENV_ID, **training):
    kw = dict(agent_updates=6, agent_updates_per_iteration=3, batch_size_episodes=8, target_update_interval=2)
    kw.update(training)
    return (QMIXConfig().environment(env).offline_data(input_=path).training(**kw)
            .evaluation(evaluation_duration=2).debugging(seed=0))


# -- a learner on a hand-made joint batch ------------------------------------------------------------

class _NoDatasetConfig(QMIXConfig):
    """The module specs of tiny:coop without a dataset (the learner asks its config for them)."""

    def get_multi_rl_module_spec(self, **kwargs):
        return self.build_module_specs(TinyCoopEnv().info)


def _learner(**training):
    """QMIXTorchLearner for tiny:coop (3 agents, 2 types, 3 actions) with small nets; the target
    networks are perturbed so that online and target values differ."""
    cfg = _NoDatasetConfig().training(rnn_hidden=8, mixing_embed_dim=4, hypernet_embed=6, **training)
    spec = cfg.get_multi_rl_module_spec()
    torch.manual_seed(0)
    learner = QMIXTorchLearner(config=cfg, module_spec=spec)
    learner.build()
    with torch.no_grad():
        for m in ("scout", "tank", MIXER_MODULE_ID):
            mod = learner.module[m].unwrapped()
            target = mod.target_mixer if m == MIXER_MODULE_ID else mod.target_actor
            for p in target.parameters():
                p.add_(0.3 * torch.randn_like(p))
    return learner


def _joint_batch(seed=0):
    """B=2 episodes, L=3 steps: episode 0 terminates at t=2, episode 1 is cut after 2 steps (t=2 is
    padding, o^2 its final observation). Some actions are unavailable at t+1 (the tank's 2 always)."""
    rng = np.random.default_rng(seed)
    B, L, N, od, S, A = 2, 3, 3, 4, 5, 3
    obs = rng.normal(size=(B, L + 1, N, od)).astype(np.float32)
    state = rng.normal(size=(B, L + 1, S)).astype(np.float32)
    avail = (rng.random((B, L + 1, N, A)) < 0.6).astype(np.float32)
    avail[..., 0] = 1.0
    avail[:, :, 2, 2] = 0.0
    avail[1, 3] = 0.0  # padding past episode 1's final observation: nothing available
    actions = np.zeros((B, L, N), np.int64)
    for b in range(B):
        for t in range(L):
            for i in range(N):
                actions[b, t, i] = rng.choice(np.flatnonzero(avail[b, t, i]))
    actions[1, 2] = 0  # padding
    filled = np.array([[1, 1, 1], [1, 1, 0]], np.float32)
    terminated = np.array([[0, 0, 1], [0, 0, 0]], np.float32)
    reward = (rng.normal(size=(B, L)) * filled).astype(np.float32)
    joint = {K.STATE: state, K.REWARD: reward, K.TERMINATED: terminated, K.FILLED: filled}
    batch = {MIXER_MODULE_ID: joint}
    for m in ("scout", "tank"):
        members = [i for i, a in enumerate(AGENT_MODULES) if a == m]
        rows = [(b, j) for b in range(B) for j in members]  # the sampler's order: episode-major
        k, j = np.array([r[0] for r in rows]), np.array([r[1] for r in rows])
        acts = actions[k, :, j]
        batch[m] = {K.OBS_ALL: obs[k], K.AGENT_INDEX: j, K.ACTIONS: acts,
                    K.PREV_ACTIONS: np.concatenate([np.full((len(k), 1), -1), acts], 1),
                    K.AVAIL_ACTIONS: avail[k, :, j], K.FILLED: filled[k]}
    raw = dict(obs=obs, state=state, avail=avail, actions=actions, filled=filled, terminated=terminated, reward=reward)
    return batch, raw


def _tensors(batch):
    return {m: {k: torch.as_tensor(v) for k, v in b.items()} for m, b in batch.items()}


def _td_loss(learner, batch):
    tb = _tensors(batch)
    fwd = learner.module.forward_train(tb)
    terms = learner.compute_joint_losses(batch=tb, fwd_out=fwd)
    assert list(terms) == ["td"]
    return terms["td"]


def _np_expected_loss(learner, raw, double_q, gamma=0.99):
    """The QMIX TD loss recomputed per (episode, agent) in NumPy; only the GRU Q-networks are called."""
    obs, avail, acts = raw["obs"], raw["avail"], raw["actions"]
    B, L1, N, _ = obs.shape
    L = L1 - 1
    q_on, q_tg = np.zeros((B, L1, N, 3)), np.zeros((B, L1, N, 3))
    for b in range(B):
        for i in range(N):
            mod = learner.module[AGENT_MODULES[i]].unwrapped()
            o = torch.as_tensor(obs[b, :, i])[None]
            prev = torch.as_tensor(np.concatenate([[-1], acts[b, :, i]]))[None]
            with torch.no_grad():
                q_on[b, :, i] = mod.actor(o, prev)[0].double().numpy()
                q_tg[b, :, i] = mod.target_actor(o, prev)[0].double().numpy()
    taken = np.take_along_axis(q_on[:, :L], acts[..., None], -1)[..., 0]
    nxt = np.zeros((B, L, N))
    for b in range(B):
        for t in range(L):
            for i in range(N):
                ok = np.flatnonzero(avail[b, t + 1, i]) if avail[b, t + 1, i].any() else np.arange(3)
                if double_q:
                    nxt[b, t, i] = q_tg[b, t + 1, i, ok[np.argmax(q_on[b, t + 1, i, ok])]]
                else:
                    nxt[b, t, i] = q_tg[b, t + 1, i, ok].max()
    mix = learner.module[MIXER_MODULE_ID].unwrapped()
    s = raw["state"].astype(np.float64)
    q_tot = np_qmixer(mix.mixer, taken.reshape(-1, N), s[:, :L].reshape(B * L, -1)).reshape(B, L)
    target = np_qmixer(mix.target_mixer, nxt.reshape(-1, N), s[:, 1:].reshape(B * L, -1)).reshape(B, L)
    y = raw["reward"] + gamma * (1 - raw["terminated"]) * target
    f = raw["filled"]
    return float((f * (q_tot - y) ** 2).sum() / f.sum())


@pytest.mark.parametrize("double_q", [True, False])
def test_td_loss_matches_numpy(double_q):
    learner = _learner(double_q=double_q)
    batch, raw = _joint_batch()
    loss, targets = _td_loss(learner, batch)
    assert loss.item() == pytest.approx(_np_expected_loss(learner, raw, double_q), rel=1e-5)
    assert targets == [("scout", "q"), ("tank", "q"), (MIXER_MODULE_ID, "mixer")]


def test_double_q_and_plain_max_differ_on_this_batch():
    """Guards the parametrized test above: the two targets are not accidentally equal here."""
    _, raw = _joint_batch()
    assert _np_expected_loss(_learner(double_q=True), raw, True) != pytest.approx(
        _np_expected_loss(_learner(double_q=False), raw, False), rel=1e-3)


def test_padded_steps_change_nothing_and_get_no_gradient():
    learner = _learner()
    batch, _ = _joint_batch()
    loss = _td_loss(learner, batch)[0].item()
    changed = {m: {k: v.copy() for k, v in b.items()} for m, b in batch.items()}
    joint = changed[MIXER_MODULE_ID]
    joint[K.REWARD][1, 2] = 100.0  # episode 1, padded step t=2
    joint[K.STATE][1, 3] += 50.0  # state after the final observation
    for m in ("scout", "tank"):
        b = changed[m]
        ep1 = np.flatnonzero(np.arange(len(b[K.AGENT_INDEX])) >= len(b[K.AGENT_INDEX]) // 2)
        b[K.OBS_ALL][ep1, 3] += 50.0
        b[K.ACTIONS][ep1, 2] = 1
        b[K.PREV_ACTIONS][ep1, 3] = 1
    assert _td_loss(learner, changed)[0].item() == pytest.approx(loss, rel=1e-6)
    # gradient of the loss w.r.t. the mixed values is zero at the padded step
    from rllib_sit.algorithms.qmix.torch.qmix_torch_learner import qmix_td_loss

    q_tot = torch.randn(2, 3, requires_grad=True)
    qmix_td_loss(q_tot, torch.randn(2, 3), torch.as_tensor(batch[MIXER_MODULE_ID][K.FILLED])).backward()
    assert q_tot.grad[1, 2] == 0 and torch.count_nonzero(q_tot.grad) == 5


@pytest.mark.parametrize("double_q", [True, False])
def test_unavailable_actions_never_enter_the_target(double_q):
    g = torch.Generator().manual_seed(3)
    q, qt = torch.randn(4, 5, 6, generator=g), torch.randn(4, 5, 6, generator=g)
    avail = (torch.rand(4, 5, 6, generator=g) < 0.5).float()
    avail[..., 1] = 1.0
    avail[0, 0] = 0.0  # nothing available (padding): every action allowed, value finite
    base = max_available_next_q(q, qt, avail, double_q)
    big = avail <= 0
    big[0, 0] = False
    q2, qt2 = q.masked_fill(big, 1e6), qt.masked_fill(big, 1e6)  # huge values on unavailable actions
    torch.testing.assert_close(max_available_next_q(q2, qt2, avail, double_q), base)
    assert torch.isfinite(base).all()
    ok = avail > 0
    expected = (qt.gather(-1, q.masked_fill(~ok, -np.inf).argmax(-1, keepdim=True)).squeeze(-1) if double_q
                else qt.masked_fill(~ok, -np.inf).max(-1).values)
    torch.testing.assert_close(base[1:], expected[1:])


def test_greedy_action_is_argmax_of_q_over_available_actions():
    from ray.rllib.core.columns import Columns

    learner = _learner()
    mod = learner.module["tank"].unwrapped()
    g = torch.Generator().manual_seed(1)
    obs = torch.randn(6, 1, 4, generator=g)
    mask = (torch.rand(6, 1, 3, generator=g) < 0.5).float()
    mask[..., 0] = 1.0
    state = {"h": torch.randn(6, 8, generator=g), "prev_action": torch.tensor([-1, 0, 1, 2, 0, 1])}
    out = mod._forward_inference({Columns.OBS: {"obs": obs, "action_mask": mask}, Columns.STATE_IN: state})
    with torch.no_grad():
        q, _ = mod.actor.step(obs[:, 0], state["prev_action"], state["h"])
    expected = np.where(mask[:, 0].numpy() > 0, q.numpy(), -np.inf).argmax(-1)
    np.testing.assert_array_equal(out[Columns.ACTIONS][:, 0].numpy(), expected)


def test_joint_batch_keeps_own_observations_only(dataset):
    from rllib_sit.data.episode_store import EpisodeStore
    from rllib_sit.replay.samplers import JointEpisodeSampler

    store = EpisodeStore.open(dataset)
    full = JointEpisodeSampler(store.columns, seed=4, agent_modules=AGENT_MODULES).sample_by_module(5, MIXER_MODULE_ID)
    cut = joint_batch(JointEpisodeSampler(store.columns, seed=4, agent_modules=AGENT_MODULES), 5)
    for m in ("scout", "tank"):
        j = full[m][K.AGENT_INDEX]
        np.testing.assert_array_equal(cut[m][K.OBS_ALL][:, :, 0], full[m][K.OBS_ALL][np.arange(len(j)), :, j])
        assert (cut[m][K.AGENT_INDEX] == 0).all() and K.REWARD not in cut[m]
    assert set(cut[MIXER_MODULE_ID]) == {K.STATE, K.REWARD, K.TERMINATED, K.FILLED}


# -- config --------------------------------------------------------------------------------------

@pytest.mark.parametrize("key, value", [("lr", 0.0), ("agent_updates", -1), ("rnn_hidden", 0),
                                        ("mixing_embed_dim", 2.5), ("hypernet_embed", 0),
                                        ("target_update_interval", 0), ("double_q", "yes"),
                                        ("agent_updates_per_iteration", 0), ("batch_size_episodes", 0),
                                        ("optimizer", "sgd")])
def test_config_validation_names_the_parameter(key, value):
    cfg = QMIXConfig().environment(TINY_ENV_ID).training(**{key: value})
    with pytest.raises(ValueError, match=f"QMIXConfig: {key}="):
        cfg.validate()


def test_defaults_are_table_11_shared_rows_and_pymarl():
    cfg = QMIXConfig()
    assert (cfg.lr, cfg.rnn_hidden, cfg.agent_updates, cfg.batch_size_episodes, cfg.optimizer, cfg.grad_clip,
            cfg.gamma, cfg.target_update_interval, cfg.mixing_embed_dim) == \
        (5e-4, 64, 15000, 32, "rmsprop", 10.0, 0.99, 100, 32)
    assert (cfg.hypernet_embed, cfg.double_q) == (64, True)


def test_continuous_env_is_refused_by_name():
    with pytest.raises(ValueError, match="QMIXConfig: env='tinycont:coop' is invalid.*FACMAC"):
        QMIXConfig().build_module_specs(TinyContinuousEnv().info)


def test_every_tuned_example_validates():
    from rllib_sit.cli.rllib_cmd import load_experiments

    files = sorted(glob.glob(os.path.join(TUNED, "qmix_*.yaml")))
    maps = {os.path.basename(f)[len("sit_"):] for f in glob.glob(os.path.join(TUNED, "sit_*.yaml"))
            if "_quick" not in f and "_sweep" not in f and "mamujoco" not in open(f).read()}
    assert {os.path.basename(f)[len("qmix_"):] for f in files} == maps and len(maps) == 9
    for f in files:
        for exp in load_experiments(f).values():
            assert exp["run"] == "QMIX" and exp["env"].split(":")[0] in ("smac", "mpe")
            QMIXConfig().update_from_dict(dict(exp["config"], env=exp["env"])).validate()


# -- build, train, evaluate, checkpoint ----------------------------------------------------------

def test_train_evaluate_and_hard_target_copies(dataset):
    algo = tiny_qmix(dataset, agent_updates=5, agent_updates_per_iteration=3).evaluation(evaluation_interval=2) \
        .build_algo()
    learner = algo.learner_group._learner
    scout, mixer = learner.module["scout"].unwrapped(), learner.module[MIXER_MODULE_ID].unwrapped()

    def synced():
        return (all(torch.equal(p, q) for p, q in zip(scout.actor.parameters(), scout.target_actor.parameters()))
                and all(torch.equal(p, q) for p, q in zip(mixer.mixer.parameters(), mixer.target_mixer.parameters())))

    try:
        r1 = algo.train()  # 3 updates: copied at update 2, moved at update 3
        assert r1["phases"] == dict(r1["phases"], current="td", td_updates_done=3) and not synced()
        r2 = algo.train()  # updates 4-5: copied at 4, moved at 5
        assert r2["phases"]["current"] == "done" and r2["phases"]["td_updates_done"] == 5 and not synced()
        assert learner.module_updates("scout") == learner.module_updates(MIXER_MODULE_ID) == 5
        m = r2["learners"][MIXER_MODULE_ID]
        assert np.isfinite(m[TD_LOSS]) and np.isfinite(m[Q_TOT_MEAN])
        ev = r2["evaluation"]["env_runners"]
        assert ev["num_episodes"] == 2 and np.isfinite(ev["episode_return_mean"]) and "win_rate" in ev
        # monotonic mixing: ∂Q_tot/∂Q_i ≥ 0 for the trained mixer
        q = torch.randn(16, 3, requires_grad=True)
        grad = torch.autograd.grad(mixer.mix(q, torch.randn(16, 5)).sum(), q)[0]
        assert (grad >= 0).all()
    finally:
        algo.stop()


def test_continuous_dataset_fails_at_build(ray_session, tmp_path):
    from rllib_sit.data.synthetic import make_random_dataset

    register_tiny_continuous_env()
    path = make_random_dataset(TinyContinuousEnv(), 4, str(tmp_path / "cont"), seed=0)
    with pytest.raises(Exception, match="QMIXConfig: env='tinycont:coop'"):
        tiny_qmix(path, env=TINY_CONT_ENV_ID).build_algo()


def test_checkpoint_round_trip(dataset, tmp_path):
    algo = tiny_qmix(dataset, agent_updates=8, agent_updates_per_iteration=4, target_update_interval=3).build_algo()
    try:
        algo.train()  # 4 of 8 updates
        ckpt = algo.save_to_path(str(tmp_path / "ckpt"))
        ev_before = algo.evaluate()["env_runners"]["episode_return_mean"]
        mod = algo.learner_group._learner.module["tank"].unwrapped()
        w, wt = mod.actor.fc_out.weight.detach().clone(), mod.target_actor.fc_out.weight.detach().clone()
        next_batch = joint_batch(algo.sampler, 8)  # the sampler's RNG is part of the checkpoint
    finally:
        algo.stop()
    restored = QMIX.from_checkpoint(ckpt)
    try:
        assert restored.schedule.current_name == "td" and restored.schedule.done["td"] == 4
        lrn = restored.learner_group._learner
        rmod = lrn.module["tank"].unwrapped()
        torch.testing.assert_close(rmod.actor.fc_out.weight, w)
        torch.testing.assert_close(rmod.target_actor.fc_out.weight, wt)
        assert lrn.module_updates("tank") == 4
        assert restored.evaluate()["env_runners"]["episode_return_mean"] == ev_before
        again = joint_batch(restored.sampler, 8)
        np.testing.assert_array_equal(again[MIXER_MODULE_ID][K.STATE], next_batch[MIXER_MODULE_ID][K.STATE])
        r = restored.train()
        assert r["phases"]["td_updates_done"] == 8 and r["phases"]["current"] == "done"
    finally:
        restored.stop()


# -- learning ------------------------------------------------------------------------------------

def test_learns_the_rewarding_actions_from_random_data(dataset):
    """tiny:coop pays 1 when a0 takes action 1 and 0.5 when b0 does; its random dataset covers every
    action. 100 updates (γ = 0.5, bootstrapping through the target networks and the mixer) make the
    greedy agents take them: the evaluation earns 1.5 per step, which the untrained agents do not."""
    algo = tiny_qmix(dataset, agent_updates=100, agent_updates_per_iteration=100, lr=5e-3, gamma=0.5,
                     target_update_interval=20, batch_size_episodes=16).build_algo()
    assert_learns_the_rewarding_actions(algo)
