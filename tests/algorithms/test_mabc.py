"""MABC (SIT paper Eq. 11): the loss against NumPy / ``torch.distributions`` on hand-made batches,
build-train-evaluate on the tiny discrete and continuous envs, checkpoints, config checks, the
``run: MABC`` registration, the tuned examples, and a learning check that can fail (a
deterministic behaviour policy must be cloned). Ray is started once for the module (conftest)."""

import glob
import os

import numpy as np
import pytest
import torch

from tiny_fixtures import (TINY_CONT_ENV_ID, TINY_ENV_ID, TinyContinuousEnv, TinyCoopEnv,
                               register_tiny_continuous_env)

from rllib_sit.algorithms.mabc import MABC, MABCConfig
from rllib_sit.algorithms.mabc.mabc_learner import BC_LOSS, GREEDY_ACCURACY, GREEDY_MATCH
from rllib_sit.algorithms.mabc.torch.default_mabc_torch_rl_module import MABCAgentTorchRLModule
from rllib_sit.algorithms.common.losses import behaviour_cloning_nll
from rllib_sit.algorithms.common.torch_learner import POLICY_ENTROPY
from rllib_sit.replay import keys as K

TUNED = os.path.join(os.path.dirname(__file__), "..", "..", "tuned_examples")


def tiny_mabc(path, env=TINY_ENV_ID, **training):
    kw = dict(agent_updates=6, agent_updates_per_iteration=3, batch_size_episodes=8)
    kw.update(training)
    return (MABCConfig().environment(env).offline_data(input_=path).training(**kw)
            .evaluation(evaluation_duration=2).debugging(seed=0))


# -- the loss on hand-made batches ---------------------------------------------------------------

def _module(discrete, obs_dim=4, n_actions=3, act_dim=2, low=-1.0, high=1.0):
    torch.manual_seed(0)
    mc = dict(obs_dim=obs_dim, discrete=discrete, n_actions=n_actions if discrete else 0,
              act_dim=0 if discrete else act_dim, action_low=low, action_high=high, rnn_hidden=8)
    return MABCAgentTorchRLModule(model_config=mc)


def _batch(discrete, B=3, L=4, N=3, obs_dim=4, n_actions=3, act_dim=2, seed=0):
    """B individual trajectories of agents ``j`` (episode lengths 3, 4, 2: padded tails)."""
    g = torch.Generator().manual_seed(seed)
    filled = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1], [1, 1, 0, 0]], dtype=torch.float32)
    batch = {K.OBS_ALL: torch.randn(B, L + 1, N, obs_dim, generator=g), K.AGENT_INDEX: torch.tensor([2, 0, 1]),
             K.FILLED: filled}
    if discrete:
        avail = (torch.rand(B, L + 1, n_actions, generator=g) < 0.6).float()
        avail[..., 1] = 1.0
        acts = torch.multinomial(avail[:, :L].reshape(-1, n_actions), 1, generator=g).reshape(B, L)
        batch[K.AVAIL_ACTIONS] = avail
    else:
        acts = torch.rand(B, L, act_dim, generator=g) * 1.6 - 0.8  # inside the box (no edge clamp)
    prev = torch.cat([torch.full((B, 1), -1, dtype=acts.dtype) if discrete else torch.zeros(B, 1, act_dim), acts], 1)
    batch.update({K.ACTIONS: acts, K.PREV_ACTIONS: prev})
    return batch


def test_discrete_loss_is_masked_nll_over_real_steps():
    mod, batch = _module(True), _batch(True)
    out = mod._forward_train(batch)
    loss = behaviour_cloning_nll(out[K.LOGP], batch[K.FILLED])
    # Independent recomputation: agent j's own obs, logits from the actor, masked log-softmax in NumPy.
    own = batch[K.OBS_ALL][torch.arange(3), :, batch[K.AGENT_INDEX]][:, :4]
    with torch.no_grad():
        logits = mod.actor(own, batch[K.PREV_ACTIONS][:, :4]).numpy().astype(np.float64)
    avail, acts, m = batch[K.AVAIL_ACTIONS][:, :4].numpy(), batch[K.ACTIONS].numpy(), batch[K.FILLED].numpy()
    nll = []
    for b in range(3):
        for t in range(4):
            if m[b, t]:
                z = logits[b, t][avail[b, t] > 0]
                lse = z.max() + np.log(np.exp(z - z.max()).sum())
                nll.append(lse - logits[b, t, acts[b, t]])
    assert loss.item() == pytest.approx(np.mean(nll), rel=1e-5)
    greedy = np.where(avail > 0, logits, -np.inf).argmax(-1)
    np.testing.assert_array_equal(out[GREEDY_MATCH].numpy(), (greedy == acts).astype(np.float32))


def test_policy_entropy_against_numpy():
    """K.ENTROPY of the forward pass (logged as ``policy_entropy``): the masked softmax's entropy
    recomputed in NumPy, log(#available) for a uniform policy, and the pre-tanh Gaussian's closed
    form for a continuous one."""
    mod, batch = _module(True), _batch(True)
    out = mod._forward_train(batch)
    own = batch[K.OBS_ALL][torch.arange(3), :, batch[K.AGENT_INDEX]][:, :4]
    with torch.no_grad():
        logits = mod.actor(own, batch[K.PREV_ACTIONS][:, :4]).numpy().astype(np.float64)
    avail = batch[K.AVAIL_ACTIONS][:, :4].numpy() > 0
    z = np.where(avail, logits, -np.inf)
    p = np.exp(z - z.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    h = -np.where(avail, p * np.log(np.where(avail, p, 1.0)), 0.0).sum(-1)
    np.testing.assert_allclose(out[K.ENTROPY].numpy(), h, rtol=1e-5, atol=1e-6)
    assert not out[K.ENTROPY].requires_grad
    with torch.no_grad():  # a uniform policy over the available actions
        mod.actor.fc_out.weight.zero_()
        mod.actor.fc_out.bias.zero_()
    np.testing.assert_allclose(mod._forward_train(batch)[K.ENTROPY].numpy(), np.log(avail.sum(-1)), rtol=1e-6)

    cmod, cbatch = _module(False), _batch(False)
    with torch.no_grad():
        cmod.actor.log_std.copy_(torch.tensor([-0.7, 0.4]))
    want = sum(0.5 * np.log(2 * np.pi * np.e) + s for s in (-0.7, 0.4))
    np.testing.assert_allclose(cmod._forward_train(cbatch)[K.ENTROPY].numpy(), np.full((3, 4), want), rtol=1e-6)


def test_padded_steps_do_not_change_the_loss_or_get_gradient():
    mod, batch = _module(True), _batch(True)
    loss = behaviour_cloning_nll(mod._forward_train(batch)[K.LOGP], batch[K.FILLED])
    pad = batch[K.FILLED] == 0
    changed = dict(batch, **{K.ACTIONS: torch.where(pad, (batch[K.ACTIONS] + 1) % 2, batch[K.ACTIONS])})
    obs = batch[K.OBS_ALL].clone()
    obs[:, :4][pad] += 5.0
    changed[K.OBS_ALL] = obs
    logp = mod._forward_train(changed)[K.LOGP]
    assert behaviour_cloning_nll(logp, batch[K.FILLED]).item() == pytest.approx(loss.item(), rel=1e-6)
    leaf = logp.detach().requires_grad_(True)
    behaviour_cloning_nll(leaf, batch[K.FILLED]).backward()
    assert torch.count_nonzero(leaf.grad[pad]) == 0
    assert torch.allclose(leaf.grad[~pad], torch.full_like(leaf.grad[~pad], -1.0 / 9))  # 9 real steps


@pytest.mark.parametrize("low, high", [(-1.0, 1.0), (-0.4, 2.0)])
def test_continuous_loss_matches_torch_distributions(low, high):
    from torch.distributions import AffineTransform, Normal, TanhTransform, TransformedDistribution

    mod, batch = _module(False, low=low, high=high), _batch(False)
    batch[K.ACTIONS] = low + (batch[K.ACTIONS] + 1) * 0.5 * (high - low)
    batch[K.PREV_ACTIONS][:, 1:] = batch[K.ACTIONS]
    with torch.no_grad():
        mod.actor.log_std.copy_(torch.tensor([-0.3, 0.2]))
        loss = behaviour_cloning_nll(mod._forward_train(batch)[K.LOGP], batch[K.FILLED])
        own = batch[K.OBS_ALL][torch.arange(3), :, batch[K.AGENT_INDEX]][:, :4]
        mean = mod.actor(own, batch[K.PREV_ACTIONS][:, :4])
        dist = TransformedDistribution(Normal(mean, mod.actor.log_std.exp()),
                                       [TanhTransform(), AffineTransform((low + high) / 2, (high - low) / 2)])
        logp = dist.log_prob(batch[K.ACTIONS]).sum(-1).double()
    m = batch[K.FILLED].double()
    expected = -(logp * m).sum() / m.sum()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-4)


# -- config --------------------------------------------------------------------------------------

@pytest.mark.parametrize("key, value", [("lr", 0.0), ("lr", [[0, 1e-3], [100, 1e-4]]), ("agent_updates", -1),
                                        ("rnn_hidden", 0), ("agent_updates_per_iteration", 1.5),
                                        ("batch_size_episodes", 0), ("optimizer", "sgd")])
def test_config_validation_names_the_parameter(key, value):
    cfg = MABCConfig().environment(TINY_ENV_ID).training(**{key: value})
    with pytest.raises(ValueError, match=f"MABCConfig: {key}="):
        cfg.validate()


def test_defaults_are_table_11_shared_rows():
    cfg = MABCConfig()
    assert (cfg.lr, cfg.rnn_hidden, cfg.agent_updates, cfg.batch_size_episodes, cfg.optimizer, cfg.grad_clip) == \
        (5e-4, 64, 15000, 32, "rmsprop", 10.0)


def test_every_tuned_example_validates():
    from rllib_sit.cli.rllib_cmd import load_experiments

    files = sorted(glob.glob(os.path.join(TUNED, "mabc_*.yaml")))
    maps = {os.path.basename(f)[len("sit_"):] for f in glob.glob(os.path.join(TUNED, "sit_*.yaml"))
            if "_quick" not in f and "_sweep" not in f}
    assert {os.path.basename(f)[len("mabc_"):] for f in files} == maps and len(maps) == 11
    for f in files:
        for exp in load_experiments(f).values():
            assert exp["run"] == "MABC"
            MABCConfig().update_from_dict(dict(exp["config"], env=exp["env"])).validate()


# -- build, train, evaluate, checkpoint ----------------------------------------------------------

def test_train_two_iterations_and_evaluate_discrete(dataset):
    algo = tiny_mabc(dataset).evaluation(evaluation_interval=2).build_algo()
    try:
        # A training batch is the sampler's draw with agent j's own observations only.
        state = algo.sampler.get_state()
        own = algo._bc_batch()
        algo.sampler.set_state(state)
        full = algo.sampler.sample(8)
        for m in ("scout", "tank"):
            np.testing.assert_array_equal(own[m][K.EPISODE_INDEX], full[m][K.EPISODE_INDEX])
            j = full[m][K.AGENT_INDEX]
            np.testing.assert_array_equal(own[m][K.OBS_ALL][:, :, 0], full[m][K.OBS_ALL][np.arange(8), :, j])
            np.testing.assert_array_equal(own[m][K.AVAIL_ACTIONS], full[m][K.AVAIL_ACTIONS])
        r1 = algo.train()
        assert r1["phases"] == dict(r1["phases"], current="bc", bc_updates_done=3)
        r2 = algo.train()
        assert r2["phases"]["current"] == "done" and r2["phases"]["bc_updates_done"] == 6
        for t in ("scout", "tank"):
            assert np.isfinite(r2["learners"][t][BC_LOSS]) and 0 <= r2["learners"][t][GREEDY_ACCURACY] <= 1
            assert 0 < r2["learners"][t][POLICY_ENTROPY] <= np.log(3) + 1e-6  # tiny:coop has 3 actions
        ev = r2["evaluation"]["env_runners"]
        assert ev["num_episodes"] == 2 and np.isfinite(ev["episode_return_mean"]) and "win_rate" in ev
    finally:
        algo.stop()


def test_train_two_iterations_and_evaluate_continuous(ray_session, tmp_path):
    from rllib_sit.data.synthetic import make_random_dataset

    register_tiny_continuous_env()
    path = make_random_dataset(TinyContinuousEnv(), 12, str(tmp_path / "cont"), seed=0)
    algo = tiny_mabc(path, env=TINY_CONT_ENV_ID, batch_size_episodes=4).build_algo()
    try:
        algo.train()
        r = algo.train()
        assert r["phases"]["bc_updates_done"] == 6 and np.isfinite(r["learners"]["leg"][BC_LOSS])
        assert GREEDY_ACCURACY not in r["learners"]["leg"] and np.isfinite(r["learners"]["leg"][POLICY_ENTROPY])
        ev = algo.evaluate()["env_runners"]
        assert ev["episode_len_mean"] == 5 and np.isfinite(ev["episode_return_mean"])
    finally:
        algo.stop()


def test_checkpoint_round_trip(dataset, tmp_path):
    algo = tiny_mabc(dataset, agent_updates=8, agent_updates_per_iteration=4).build_algo()
    try:
        algo.train()  # 4 of 8 updates
        ckpt = algo.save_to_path(str(tmp_path / "ckpt"))
        ev_before = algo.evaluate()["env_runners"]["episode_return_mean"]
        w_before = algo.learner_group._learner.module["tank"].unwrapped().actor.fc_out.weight.detach().clone()
        next_batch = algo.sampler.sample(8)  # the sampler's RNG is part of the checkpoint
    finally:
        algo.stop()
    restored = MABC.from_checkpoint(ckpt)
    try:
        assert restored.schedule.current_name == "bc" and restored.schedule.done["bc"] == 4
        torch.testing.assert_close(restored.learner_group._learner.module["tank"].unwrapped().actor.fc_out.weight,
                                   w_before)
        assert restored.evaluate()["env_runners"]["episode_return_mean"] == ev_before
        again = restored.sampler.sample(8)
        for m in next_batch:
            np.testing.assert_array_equal(again[m][K.EPISODE_INDEX], next_batch[m][K.EPISODE_INDEX])
        r = restored.train()
        assert r["phases"]["bc_updates_done"] == 8 and r["phases"]["current"] == "done"
    finally:
        restored.stop()


# -- learning ------------------------------------------------------------------------------------

def _always_action_1_dataset(path, n_episodes=24):
    """Episodes of ``tiny:coop`` where every agent always takes action 1 (reward 1.5 per step)."""
    from rllib_sit.data import schema as S
    from rllib_sit.data.episode import rollout_episode
    from rllib_sit.data.io import write_dataset

    env = TinyCoopEnv()
    rows = (rollout_episode(env, lambda e, obs: np.ones(3, np.int64), seed=k, episode_id=k) for k in range(n_episodes))
    return write_dataset(rows, path, S.DatasetMeta(env=env.info), {"quality": "action-1"})


def _prob_of_action_1(algo, module_id):
    mod = algo.learner_group._learner.module[module_id].unwrapped()
    batch = {k: torch.as_tensor(np.asarray(v)) for k, v in algo.sampler.sample(16, [module_id])[module_id].items()}
    with torch.no_grad():
        own, prev, avail = mod.own_trajectory(batch)
        p = torch.softmax(mod.actor(own, prev, avail), -1)[..., 1]
    m = batch[K.FILLED]
    return float((p * m).sum() / m.sum())


def test_clones_a_deterministic_behaviour_policy(ray_session, tmp_path):
    """Every agent of the data always takes action 1: after 150 updates the greedy actors do too
    (π(1|τ) > 0.9, and every evaluation step earns the 1.5 reward of all agents taking 1)."""
    path = _always_action_1_dataset(str(tmp_path / "a1"))
    algo = tiny_mabc(path, agent_updates=150, agent_updates_per_iteration=150).build_algo()
    try:
        before = {m: _prob_of_action_1(algo, m) for m in ("scout", "tank")}
        assert max(before.values()) < 0.7  # an untrained actor is near uniform (1/3, tank 1/2)
        r = algo.train()
        after = {m: _prob_of_action_1(algo, m) for m in ("scout", "tank")}
        assert min(after.values()) > 0.9, (before, after)
        assert all(r["learners"][m][GREEDY_ACCURACY] == 1.0 for m in ("scout", "tank"))
        ev = algo.evaluate()["env_runners"]
        assert ev["episode_return_mean"] == pytest.approx(1.5 * ev["episode_len_mean"])
    finally:
        algo.stop()
