"""FacMAC trained naively on offline data (the SIT paper's MAMuJoCo FacMAC row): the critic and
actor losses against a NumPy recomputation (critic MLP, QMixer, targets from the target actor,
critic and mixer) on a hand-made joint batch, the actor loss moving only the actors, masking,
Polyak targets, deterministic acting (tanh of the mean), build-train-evaluate, checkpoints, config
checks, the ``run: FACMAC`` registration and the tuned examples. Ray once per module (conftest)."""

import glob
import os

import numpy as np
import pytest
import torch

from tiny_fixtures import (TINY_CONT_ENV_ID, TINY_ENV_ID, TinyContinuousEnv, TinyCoopEnv, np_qmixer,
                           register_tiny_continuous_env)

from rllib_sit.algorithms.common.algorithm import to_multi_agent_batch
from rllib_sit.algorithms.common.joint import MIXER_MODULE_ID
from rllib_sit.algorithms.facmac import FACMAC, FACMACConfig
from rllib_sit.algorithms.facmac.facmac_learner import ACTOR_LOSS, CRITIC_LOSS
from rllib_sit.algorithms.facmac.torch.facmac_torch_learner import FACMACTorchLearner
from rllib_sit.algorithms.facmac.facmac import joint_batch
from rllib_sit.replay import keys as K

TUNED = os.path.join(os.path.dirname(__file__), "..", "..", "tuned_examples")
AGENT_MODULES = ["leg", "leg"]  # tinycont:coop's l0, l1: one type


@pytest.fixture(scope="module")
def cont_dataset(ray_session, tmp_path_factory):
    """12 random episodes of ``tinycont:coop`` (2 agents of one type, 2-dim actions in [-1, 1])."""
    from rllib_sit.data.synthetic import make_random_dataset

    register_tiny_continuous_env()
    return make_random_dataset(TinyContinuousEnv(), 12, str(tmp_path_factory.mktemp("cont") / "ds"), seed=0)


def tiny_facmac(path, **training):
    kw = dict(agent_updates=6, agent_updates_per_iteration=3, batch_size_episodes=4)
    kw.update(training)
    return (FACMACConfig().environment(TINY_CONT_ENV_ID).offline_data(input_=path).training(**kw)
            .evaluation(evaluation_duration=2).debugging(seed=0))


# -- a learner on a hand-made joint batch ------------------------------------------------------------

class _NoDatasetConfig(FACMACConfig):
    """The module specs of tinycont:coop without a dataset (the learner asks its config for them)."""

    def get_multi_rl_module_spec(self, **kwargs):
        return self.build_module_specs(TinyContinuousEnv().info)


def _learner(perturb=True, **training):
    """FACMACTorchLearner for tinycont:coop with small nets; the targets are perturbed so that online
    and target values differ."""
    cfg = _NoDatasetConfig().training(rnn_hidden=8, critic_hidden=6, mixing_embed_dim=4, hypernet_embed=5, **training)
    torch.manual_seed(0)
    learner = FACMACTorchLearner(config=cfg, module_spec=cfg.get_multi_rl_module_spec())
    learner.build()
    if perturb:
        leg, mix = learner.module["leg"].unwrapped(), learner.module[MIXER_MODULE_ID].unwrapped()
        with torch.no_grad():
            for net in (leg.target_actor, leg.target_critic, mix.target_mixer):
                for p in net.parameters():
                    p.add_(0.3 * torch.randn_like(p))
    return learner


def _joint_batch(seed=0):
    """B=2 episodes, L=3: episode 0 terminates at t=2; episode 1 is cut after 2 steps (t=2 padding)."""
    rng = np.random.default_rng(seed)
    B, L, N, od, S, A = 2, 3, 2, 3, 4, 2
    obs = rng.normal(size=(B, L + 1, N, od)).astype(np.float32)
    state = rng.normal(size=(B, L + 1, S)).astype(np.float32)
    actions = rng.uniform(-0.9, 0.9, size=(B, L, N, A)).astype(np.float32)
    actions[1, 2] = 0.0  # padding
    filled = np.array([[1, 1, 1], [1, 1, 0]], np.float32)
    terminated = np.array([[0, 0, 1], [0, 0, 0]], np.float32)
    reward = (rng.normal(size=(B, L)) * filled).astype(np.float32)
    batch = {MIXER_MODULE_ID: {K.STATE: state, K.REWARD: reward, K.TERMINATED: terminated, K.FILLED: filled}}
    k, j = np.repeat(np.arange(B), N), np.tile(np.arange(N), B)  # the sampler's order: episode-major
    acts = actions[k, :, j]
    batch["leg"] = {K.OBS_ALL: obs[k], K.AGENT_INDEX: j, K.ACTIONS: acts,
                    K.PREV_ACTIONS: np.concatenate([np.zeros((len(k), 1, A), np.float32), acts], 1),
                    K.FILLED: filled[k]}
    raw = dict(obs=obs, state=state, actions=actions, filled=filled, terminated=terminated, reward=reward)
    return batch, raw


def _tensors(batch):
    return {m: {k: torch.as_tensor(v) for k, v in b.items()} for m, b in batch.items()}


def _losses(learner, batch):
    tb = _tensors(batch)
    return learner.compute_joint_losses(batch=tb, fwd_out=learner.module.forward_train(tb))


def _np_critic(critic, o, prev, a):
    """FACMACCritic in NumPy: fc-ReLU-fc-ReLU-fc on o ⊕ a^{t-1} ⊕ a^t."""
    P = {k: v.detach().double().numpy() for k, v in critic.state_dict().items()}
    x = np.concatenate([o, prev, a], -1)
    x = np.maximum(x @ P["net.0.weight"].T + P["net.0.bias"], 0)
    x = np.maximum(x @ P["net.2.weight"].T + P["net.2.bias"], 0)
    return (x @ P["net.4.weight"].T + P["net.4.bias"])[..., 0]


def _np_expected(learner, raw, gamma=0.99, action_reg=1e-3):
    """Critic and actor losses recomputed per (episode, agent); only the GRU actors are called."""
    leg = learner.module["leg"].unwrapped()
    mix = learner.module[MIXER_MODULE_ID].unwrapped()
    obs, acts = raw["obs"].astype(np.float64), raw["actions"].astype(np.float64)
    B, L1, N, _ = obs.shape
    L = L1 - 1
    q_data, q_pi, q_next = np.zeros((B, L, N)), np.zeros((B, L, N)), np.zeros((B, L, N))
    pi_sq = np.zeros((B, L, N))
    for b in range(B):
        for i in range(N):
            prev = np.concatenate([np.zeros((1, 2)), acts[b, :, i]], 0)  # a^{t-1}, t = 0..L (box = [-1, 1])
            o, p = torch.as_tensor(obs[b, :, i], dtype=torch.float32)[None], torch.as_tensor(prev).float()[None]
            with torch.no_grad():
                mu = np.tanh(leg.actor(o[:, :L], p[:, :L])[0].double().numpy())
                mu_next = np.tanh(leg.target_actor(o, p)[0].double().numpy())[1:]
            q_data[b, :, i] = _np_critic(leg.critic, obs[b, :L, i], prev[:L], acts[b, :, i])
            q_pi[b, :, i] = _np_critic(leg.critic, obs[b, :L, i], prev[:L], mu)
            q_next[b, :, i] = _np_critic(leg.target_critic, obs[b, 1:, i], prev[1:], mu_next)
            pi_sq[b, :, i] = (mu ** 2).mean(-1)
    s = raw["state"].astype(np.float64)
    s_now, s_next = s[:, :L].reshape(B * L, -1), s[:, 1:].reshape(B * L, -1)
    q_tot = np_qmixer(mix.mixer, q_data.reshape(-1, N), s_now).reshape(B, L)
    q_tot_pi = np_qmixer(mix.mixer, q_pi.reshape(-1, N), s_now).reshape(B, L)
    target = np_qmixer(mix.target_mixer, q_next.reshape(-1, N), s_next).reshape(B, L)
    y = raw["reward"] + gamma * (1 - raw["terminated"]) * target
    f = raw["filled"]
    critic = (f * (q_tot - y) ** 2).sum() / f.sum()
    actor = -(f * q_tot_pi).sum() / f.sum() + action_reg * (f * pi_sq.mean(-1)).sum() / f.sum()
    return float(critic), float(actor)


def test_critic_and_actor_losses_match_numpy():
    learner = _learner()
    batch, raw = _joint_batch()
    terms = _losses(learner, batch)
    critic, actor = _np_expected(learner, raw)
    assert terms["critic"][0].item() == pytest.approx(critic, rel=1e-5)
    assert terms["actor"][0].item() == pytest.approx(actor, rel=1e-5, abs=1e-7)
    assert terms["critic"][1] == [("leg", "critic"), (MIXER_MODULE_ID, "mixer")]
    assert terms["actor"][1] == [("leg", "actor")]


def test_actor_loss_moves_only_the_actors():
    """The actor loss −Q_tot(s, μ(τ)) goes through the critics and the mixer; yet the critic's and
    mixer's gradients are the critic loss's alone and the actor's the actor loss's alone."""
    learner = _learner()
    batch, _ = _joint_batch()
    leg, mix = learner.module["leg"].unwrapped(), learner.module[MIXER_MODULE_ID].unwrapped()
    critic_params = list(leg.critic.parameters()) + list(mix.mixer.parameters())
    actor_params = [p for n, p in leg.actor.named_parameters() if n != "log_std"]
    terms = _losses(learner, batch)
    ref_critic = torch.autograd.grad(terms["critic"][0], critic_params, retain_graph=True)
    ref_actor = torch.autograd.grad(terms["actor"][0], actor_params, retain_graph=True)
    leak = torch.autograd.grad(terms["actor"][0], critic_params, retain_graph=True)
    assert any(torch.count_nonzero(g) > 0 for g in leak)  # the actor loss does reach the critics
    assert all(g is None or torch.count_nonzero(g) == 0 for g in
               torch.autograd.grad(terms["critic"][0], actor_params, allow_unused=True))
    tb = _tensors(batch)
    grads = learner.compute_gradients(learner.compute_losses(fwd_out=learner.module.forward_train(tb), batch=tb))
    for p, g in zip(critic_params, ref_critic):
        torch.testing.assert_close(grads[learner.get_param_ref(p)], g)
    for p, g in zip(actor_params, ref_actor):
        torch.testing.assert_close(grads[learner.get_param_ref(p)], g)
    assert learner.get_param_ref(leg.actor.log_std) not in grads  # the deterministic actor's unused Gaussian std


def test_padded_steps_change_nothing():
    learner = _learner()
    batch, _ = _joint_batch()
    terms = {k: v[0].item() for k, v in _losses(learner, batch).items()}
    changed = {m: {k: v.copy() for k, v in b.items()} for m, b in batch.items()}
    changed[MIXER_MODULE_ID][K.REWARD][1, 2] = 100.0  # episode 1, padded step t=2
    changed[MIXER_MODULE_ID][K.STATE][1, 3] += 50.0  # after the final observation
    leg = changed["leg"]
    leg[K.OBS_ALL][2:, 3] += 50.0  # rows 2, 3 = episode 1's agents
    leg[K.ACTIONS][2:, 2] = 0.7
    leg[K.PREV_ACTIONS][2:, 3] = 0.7
    for k, v in _losses(learner, changed).items():
        assert v[0].item() == pytest.approx(terms[k], rel=1e-6)


def test_polyak_targets_for_actor_critic_and_mixer():
    learner = _learner(perturb=True, target_update_tau=0.25)
    leg, mix = learner.module["leg"].unwrapped(), learner.module[MIXER_MODULE_ID].unwrapped()
    pairs = [(leg.actor, leg.target_actor), (leg.critic, leg.target_critic), (mix.mixer, mix.target_mixer)]
    before = [[p.detach().clone() for p in t.parameters()] for _, t in pairs]
    learner.update(batch=to_multi_agent_batch(_joint_batch()[0]))
    for (net, target), old in zip(pairs, before):
        for p, pt, po in zip(net.parameters(), target.parameters(), old):
            torch.testing.assert_close(pt, 0.25 * p + 0.75 * po)
    assert learner.module_updates("leg") == learner.module_updates(MIXER_MODULE_ID) == 1


def test_deterministic_acting_is_the_learners_mu():
    """Greedy acting on EnvRunners (inherited) = tanh of the actor's mean = the μ the learner trains
    (first step of an episode: zero GRU state, a^{-1} = 0)."""
    from ray.rllib.core.columns import Columns

    leg = _learner().module["leg"].unwrapped()
    obs = torch.randn(5, 1, 3, generator=torch.Generator().manual_seed(2))
    state = {"h": torch.zeros(5, 8), "prev_action": torch.zeros(5, 2)}
    with torch.no_grad():
        out = leg._forward_inference({Columns.OBS: {"obs": obs}, Columns.STATE_IN: state})
        mu = leg.policy(obs, torch.zeros(5, 1, 2))[:, 0]
    torch.testing.assert_close(out[Columns.ACTIONS][:, 0], mu)
    assert not torch.equal(out[Columns.ACTIONS][:, 0], leg._forward_exploration(
        {Columns.OBS: {"obs": obs}, Columns.STATE_IN: state})[Columns.ACTIONS][:, 0])  # greedy ≠ sampled


# -- config --------------------------------------------------------------------------------------

@pytest.mark.parametrize("key, value", [("actor_lr", 0.0), ("critic_lr", -1e-3), ("optimizer_eps", 0),
                                        ("action_reg", -0.1), ("target_update_tau", 1.5),
                                        ("target_update_tau", 0.0), ("target_update_interval", 0),
                                        ("rnn_hidden", 0), ("critic_hidden", 1.5), ("mixing_embed_dim", 0),
                                        ("hypernet_embed", 0), ("agent_updates", -1),
                                        ("agent_updates_per_iteration", 0), ("optimizer", "sgd")])
def test_config_validation_names_the_parameter(key, value):
    cfg = FACMACConfig().environment(TINY_CONT_ENV_ID).training(**{key: value})
    with pytest.raises(ValueError, match=f"FACMACConfig: {key}="):
        cfg.validate()


def test_defaults():
    cfg = FACMACConfig()
    # FacMAC facmac_mamujoco.yaml / facmac_learner.py
    assert (cfg.optimizer, cfg.optimizer_eps, cfg.actor_lr, cfg.critic_lr, cfg.grad_clip, cfg.target_update_tau,
            cfg.action_reg, cfg.hypernet_embed) == ("adam", 0.01, 1e-3, 1e-3, 0.5, 0.001, 1e-3, 64)
    # SIT paper Table 11 (Shared)
    assert (cfg.rnn_hidden, cfg.critic_hidden, cfg.mixing_embed_dim, cfg.agent_updates, cfg.batch_size_episodes,
            cfg.gamma) == (64, 32, 32, 15000, 32, 0.99)
    FACMACConfig().training(target_update_tau=None).environment(TINY_CONT_ENV_ID).validate()  # hard copies


def test_discrete_env_is_refused_by_name():
    with pytest.raises(ValueError, match="FACMACConfig: env='tiny:coop' is invalid.*QMIX"):
        FACMACConfig().build_module_specs(TinyCoopEnv().info)


def test_every_tuned_example_validates():
    from rllib_sit.cli.rllib_cmd import load_experiments

    files = sorted(glob.glob(os.path.join(TUNED, "facmac_*.yaml")))
    assert [os.path.basename(f) for f in files] == ["facmac_halfcheetah_2l.yaml", "facmac_walker_2l.yaml"]
    for f in files:
        assert os.path.exists(os.path.join(TUNED, os.path.basename(f).replace("facmac_", "sit_")))
        for exp in load_experiments(f).values():
            assert exp["run"] == "FACMAC" and exp["env"].startswith("mamujoco:")
            FACMACConfig().update_from_dict(dict(exp["config"], env=exp["env"])).validate()


# -- build, train, evaluate, checkpoint ----------------------------------------------------------

def test_train_two_iterations_and_evaluate(cont_dataset):
    algo = tiny_facmac(cont_dataset).evaluation(evaluation_interval=2).build_algo()
    try:
        r1 = algo.train()
        assert r1["phases"] == dict(r1["phases"], current="actor_critic", actor_critic_updates_done=3)
        r2 = algo.train()
        assert r2["phases"]["current"] == "done" and r2["phases"]["actor_critic_updates_done"] == 6
        m = r2["learners"][MIXER_MODULE_ID]
        assert np.isfinite(m[CRITIC_LOSS]) and np.isfinite(m[ACTOR_LOSS])
        ev = r2["evaluation"]["env_runners"]
        assert ev["num_episodes"] == 2 and ev["episode_len_mean"] == 5 and np.isfinite(ev["episode_return_mean"])
        opt = algo.learner_group._learner.get_optimizer("leg", "actor")
        assert isinstance(opt, torch.optim.Adam) and opt.defaults["eps"] == 0.01
    finally:
        algo.stop()


def test_discrete_dataset_fails_at_build(dataset):
    with pytest.raises(Exception, match="FACMACConfig: env='tiny:coop'"):
        (FACMACConfig().environment(TINY_ENV_ID).offline_data(input_=dataset)
         .evaluation(evaluation_duration=2).build_algo())


def test_checkpoint_round_trip(cont_dataset, tmp_path):
    algo = tiny_facmac(cont_dataset, agent_updates=8, agent_updates_per_iteration=4).build_algo()
    try:
        algo.train()  # 4 of 8 updates
        ckpt = algo.save_to_path(str(tmp_path / "ckpt"))
        ev_before = algo.evaluate()["env_runners"]["episode_return_mean"]
        leg = algo.learner_group._learner.module["leg"].unwrapped()
        w, wt = leg.critic.net[0].weight.detach().clone(), leg.target_actor.mean.weight.detach().clone()
        next_batch = joint_batch(algo.sampler, 4)
    finally:
        algo.stop()
    restored = FACMAC.from_checkpoint(ckpt)
    try:
        assert restored.schedule.current_name == "actor_critic" and restored.schedule.done["actor_critic"] == 4
        leg = restored.learner_group._learner.module["leg"].unwrapped()
        torch.testing.assert_close(leg.critic.net[0].weight, w)
        torch.testing.assert_close(leg.target_actor.mean.weight, wt)
        assert restored.evaluate()["env_runners"]["episode_return_mean"] == ev_before
        again = joint_batch(restored.sampler, 4)
        np.testing.assert_array_equal(again[MIXER_MODULE_ID][K.STATE], next_batch[MIXER_MODULE_ID][K.STATE])
        r = restored.train()
        assert r["phases"]["actor_critic_updates_done"] == 8 and r["phases"]["current"] == "done"
    finally:
        restored.stop()


# -- learning ------------------------------------------------------------------------------------

def test_actors_climb_the_critic_in_the_rewarded_direction(cont_dataset):
    """tinycont:coop pays −|a0 − 0.5|₁ − |a1 + 0.5|₁; on its random data (one actor and critic per
    agent), 50 updates move agent l0's μ up and l1's μ down in both action dimensions, and the
    mixed value of the actors' actions rises above that of the data's. A sign error in the actor
    loss, a swapped agent order in the mixer or a critic that does not learn fails this."""
    algo = tiny_facmac(cont_dataset, agent_updates=50, agent_updates_per_iteration=50, gamma=0.0, actor_lr=1e-2,
                       critic_lr=1e-2, batch_size_episodes=8, module_mapping="agent_id").build_algo()
    try:
        r = algo.train()
        m = r["learners"][MIXER_MODULE_ID]
        assert m["q_tot_pi_mean"] > m["q_tot_mean"]
        batch = joint_batch(algo.sampler, 8)
        mu = {}
        for agent in ("l0", "l1"):
            mod = algo.learner_group._learner.module[agent].unwrapped()
            with torch.no_grad():
                out = mod._forward_train({k: torch.as_tensor(v) for k, v in batch[agent].items()})
            f = torch.as_tensor(batch[agent][K.FILLED])[..., None]
            mu[agent] = ((out["pi"] * f).sum((0, 1)) / f.sum((0, 1))).numpy()
        assert (mu["l0"] > 0.2).all() and (mu["l1"] < -0.2).all(), mu
    finally:
        algo.stop()
