"""OMAC: Eq. 2/5/6/8 against NumPy recomputations, coupled credit assignment (Eq. 3) positivity and
coupling, the two phases, evaluation and checkpoints on the tiny env (Ray once per module); the
continuous variant (this package's design): the learner's Eq. 5/6/8 on a tiny continuous batch against
NumPy, the tanh-Gaussian log π and the CCA weights on scaled box actions against NumPy, Q_tot = V_tot
when every Q_i = V_i, padded steps, and build → train → evaluate → restore on ``tinycont:coop``."""

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from tiny_fixtures import (TINY_CONT_ENV_ID, TINY_ENV_ID, TinyContinuousEnv, assert_gaussian_entropy_logged,
                           register_tiny_continuous_env)

from rllib_sit.algorithms.common.joint import MIXER_MODULE_ID
from rllib_sit.algorithms.common.torch_learner import POLICY_ENTROPY
from rllib_sit.algorithms.omac import OMAC, OMACConfig
from rllib_sit.algorithms.omac.torch.default_omac_torch_rl_module import Q_TARGET_TAKEN, V, V_SHARE, W_Q, W_V
from rllib_sit.algorithms.omac.torch.omac_torch_learner import (OMACTorchLearner, advantage_weighted_actor_loss,
                                                                coupled_factorization, coupled_td_loss,
                                                                expectile_value_loss)
from rllib_sit.envs.base import EnvInfo
from rllib_sit.replay import keys as K

RNG = np.random.default_rng(0)


def _t(x):
    return torch.as_tensor(np.asarray(x, np.float32))


def test_expectile_value_loss_eq5():
    q, v = RNG.normal(size=(3, 5)), RNG.normal(size=(3, 5))
    filled = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]], np.float32)
    u = q - v
    expected = (np.abs(0.7 - (u < 0)) * u ** 2 * filled).sum() / filled.sum()
    got = expectile_value_loss(_t(q), _t(v), _t(filled), 0.7)
    np.testing.assert_allclose(got.item(), expected, rtol=1e-5)
    # a padded step changes nothing, whatever its values
    q2 = q.copy()
    q2[0, 4] = 1e6
    assert expectile_value_loss(_t(q2), _t(v), _t(filled), 0.7).item() == pytest.approx(got.item(), rel=1e-6)
    # τ > 0.5 pushes V up: the loss of an under-estimate exceeds that of an equal over-estimate
    assert expectile_value_loss(_t([[1.0]]), _t([[0.0]]), _t([[1.0]]), 0.7) > \
        expectile_value_loss(_t([[0.0]]), _t([[1.0]]), _t([[1.0]]), 0.7)


def test_coupled_factorization_and_td_eq2_eq6():
    B, L, N = 2, 4, 3
    v, q = RNG.normal(size=(B, L, N)), RNG.normal(size=(B, L, N))
    w_v, w_q, vs = np.abs(RNG.normal(size=(B, L, N))), np.abs(RNG.normal(size=(B, L, N))), RNG.normal(size=(B, L))
    v_tot, q_tot = coupled_factorization(_t(v), _t(q), _t(w_v), _t(w_q), _t(vs))
    ev_tot = (w_v * v).sum(-1) + vs
    np.testing.assert_allclose(v_tot.numpy(), ev_tot, rtol=1e-5)
    np.testing.assert_allclose(q_tot.numpy(), ev_tot + (w_q * (q - v)).sum(-1), rtol=1e-5)
    r, vn = RNG.normal(size=(B, L)), RNG.normal(size=(B, L))
    term = np.array([[0, 0, 1, 0], [0, 0, 0, 0]], np.float32)
    filled = np.array([[1, 1, 1, 0], [1, 1, 1, 1]], np.float32)
    nf = np.array([[1, 1, 0, 0], [1, 1, 1, 0]], np.float32)
    y = r + 0.9 * (1 - term) * nf * vn
    expected = (((y - q_tot.numpy()) ** 2) * filled).sum() / filled.sum()
    got = coupled_td_loss(q_tot, _t(vn), _t(r), _t(term), _t(nf), _t(filled), 0.9)
    np.testing.assert_allclose(got.item(), expected, rtol=1e-5)


def test_property1_q_tot_never_exceeds_v_tot_when_v_is_the_max():
    q_all = RNG.normal(size=(5, 3, 4))  # [n, N, A]
    v = q_all.max(-1)
    a = RNG.integers(0, 4, size=(5, 3))
    q = np.take_along_axis(q_all, a[..., None], -1)[..., 0]
    w_v, w_q, vs = np.abs(RNG.normal(size=(5, 3))), np.abs(RNG.normal(size=(5, 3))), RNG.normal(size=5)
    v_tot, q_tot = coupled_factorization(_t(v), _t(q), _t(w_v), _t(w_q), _t(vs))
    assert (q_tot <= v_tot + 1e-6).all()


def test_advantage_weighted_actor_loss_eq8_with_clip():
    logp, q, v = RNG.normal(size=(2, 3)) - 2, RNG.normal(size=(2, 3)) * 3, RNG.normal(size=(2, 3))
    filled = np.array([[1, 1, 0], [1, 1, 1]], np.float32)
    w = np.minimum(np.exp(2.0 * (q - v)), 5.0)
    expected = -(w * logp * filled).sum() / filled.sum()
    got = advantage_weighted_actor_loss(_t(logp), _t(q), _t(v), _t(filled), beta=2.0, exp_max=5.0)
    np.testing.assert_allclose(got.item(), expected, rtol=1e-5)
    lp, qt = _t(logp).requires_grad_(True), _t(q).requires_grad_(True)
    advantage_weighted_actor_loss(lp, qt, _t(v), _t(filled), 2.0, 5.0).backward()
    assert lp.grad is not None and qt.grad is None  # only π moves: Q_i and V_i are fixed (Eq. 8)


def _config(dataset, **kw):
    train = dict(value_updates=4, policy_updates=4, value_updates_per_iteration=2, policy_updates_per_iteration=2,
                 batch_size_episodes=8, hidden=16, cca_hidden=8)
    train.update(kw)
    return (OMACConfig().environment(TINY_ENV_ID).offline_data(input_=dataset).training(**train)
            .evaluation(evaluation_duration=2).debugging(seed=0))


def test_cca_weights_are_nonnegative_and_coupled(dataset):
    from rllib_sit.data.episode_store import dataset_env_info

    spec = _config(dataset).extra_module_specs(dataset_env_info(dataset))[MIXER_MODULE_ID]
    mixer = spec.build()
    obs, acts = torch.randn(6, 3, 4), torch.randint(0, 3, (6, 3))
    w_v, w_q, _ = mixer.weights(obs, acts)
    assert (w_v >= 0).all() and (w_q >= 0).all() and w_v.shape == w_q.shape == (6, 3)
    # coupling (Eq. 3): training w^q moves the shared encoder of w^v
    w_q.sum().backward()
    assert mixer.f_v1[0].weight.grad is not None and mixer.f_v1[0].weight.grad.abs().sum() > 0


def test_two_phases_train_evaluate_and_restore(dataset, tmp_path):
    algo = _config(dataset).build_algo()
    try:
        r1 = algo.train()
        assert r1["phases"]["current"] == "value" and np.isfinite(r1["learners"]["__mixer__"]["q_loss"])
        mixer_before = {k: v.clone() for k, v in algo.learner_group._learner.module["__mixer__"].state_dict().items()}
        algo.train()  # value phase done
        r3 = algo.train()  # policy phase: the mixer and Q_i stay fixed
        assert r3["phases"]["current"] == "policy" and np.isfinite(r3["learners"]["tank"]["actor_loss"])
        assert all(0 < r3["learners"][m][POLICY_ENTROPY] <= np.log(3) + 1e-6 for m in ("scout", "tank"))
        mixer_mid = {k: v.clone() for k, v in algo.learner_group._learner.module["__mixer__"].state_dict().items()}
        assert any(not torch.equal(mixer_before[k], v) for k, v in mixer_mid.items())
        algo.train()
        for k, v in algo.learner_group._learner.module["__mixer__"].state_dict().items():
            torch.testing.assert_close(v, mixer_mid[k])
        ev = algo.evaluate()["env_runners"]
        assert ev["num_episodes"] == 2 and np.isfinite(ev["episode_return_mean"])
        ckpt = algo.save_to_path(str(tmp_path / "omac"))
    finally:
        algo.stop()
    restored = OMAC.from_checkpoint(ckpt)
    try:
        assert restored.schedule.current_name == "done" and restored.schedule.done == {"value": 4, "policy": 4}
        assert restored.evaluate()["env_runners"]["episode_return_mean"] == ev["episode_return_mean"]
    finally:
        restored.stop()


@pytest.mark.parametrize("kwargs, name", [(dict(expectile=1.0), "expectile"), (dict(beta=0), "beta"),
                                          (dict(target_update_tau=2.0), "target_update_tau"),
                                          (dict(value_updates=-1), "value_updates")])
def test_validation_names_the_parameter(kwargs, name):
    with pytest.raises(ValueError, match=name):
        OMACConfig().training(**kwargs).validate()




# -- continuous actions (MAMuJoCo; this package's design) ------------------------------------------

LOW, HIGH = -2.0, 2.0  # a box other than [-1, 1]: the scaling to [-1, 1] matters
CONT_INFO = EnvInfo(env_id="box:test", agents=["l0", "l1"], agent_types=["leg", "leg"], obs_dim=3, state_dim=4,
                    episode_limit=4, discrete=False, act_dim=2, action_low=LOW, action_high=HIGH)


def _cont_modules(seed=0):
    torch.manual_seed(seed)
    cfg = OMACConfig().training(hidden=8, cca_hidden=6)
    agent = cfg.agent_module_spec(CONT_INFO, "leg", ["l0", "l1"]).build()
    agent.make_target_networks()
    mixer = cfg.extra_module_specs(CONT_INFO)[MIXER_MODULE_ID].build()
    return agent, mixer


def _cont_batch(seed=0):
    """2 joint episodes of 2 agents (one module "leg"), L = 4: episode 0 ends by termination after 3
    steps (step 3 is padding), episode 1 is cut by the time limit after 4."""
    rng = np.random.default_rng(seed)
    B, L, N, od, A = 2, 4, 2, 3, 2
    obs = rng.normal(size=(B, L + 1, N, od)).astype(np.float32)
    acts = rng.uniform(0.9 * LOW, 0.9 * HIGH, size=(B, L, N, A)).astype(np.float32)
    filled = np.array([[1, 1, 1, 0], [1, 1, 1, 1]], np.float32)
    joint = {K.OBS: obs, K.ACTIONS: acts, K.REWARD: rng.normal(size=(B, L)).astype(np.float32),
             K.TERMINATED: np.array([[0, 0, 1, 0], [0, 0, 0, 0]], np.float32), K.FILLED: filled,
             K.NEXT_FILLED: np.array([[1, 1, 0, 0], [1, 1, 1, 0]], np.float32)}
    rows = [(b, i) for b in range(B) for i in range(N)]  # episode-major, as the joint sampler
    prev = np.concatenate([np.zeros((B, 1, N, A), np.float32), acts], 1)  # a^{t-1}: 0 at t = 0
    agent = {K.OBS_ALL: np.stack([obs[b] for b, _ in rows]), K.AGENT_INDEX: np.array([i for _, i in rows]),
             K.ACTIONS: np.stack([acts[b, :, i] for b, i in rows]),
             K.PREV_ACTIONS: np.stack([prev[b, :, i] for b, i in rows]),
             K.FILLED: np.stack([filled[b] for b, _ in rows])}
    return agent, joint


def _torch(d):
    return {k: torch.as_tensor(v) for k, v in d.items()}


def _fake_learner(**training):
    noop = SimpleNamespace(log_value=lambda *a, **k: None, log_dict=lambda *a, **k: None)
    return SimpleNamespace(config=OMACConfig().training(**training), metrics=noop,
                           log_policy_entropy=lambda *a, **k: None)


def _cont_losses(agent, mixer, agent_batch, joint_batch, **training):
    """The learner's own ``compute_joint_losses`` (value phase, then policy phase) on the two modules."""
    fake = _fake_learner(**training)
    fake.module = {MIXER_MODULE_ID: mixer}  # the agent order: the mixer's model_config["agent_modules"]
    ab, jb = _torch(agent_batch), _torch(joint_batch)
    fwd = {"leg": agent.forward_train(ab), MIXER_MODULE_ID: mixer.forward_train(jb)}
    value = OMACTorchLearner.compute_joint_losses(fake, batch={"leg": ab, MIXER_MODULE_ID: jb}, fwd_out=fwd)
    policy = OMACTorchLearner.compute_joint_losses(fake, batch={"leg": ab}, fwd_out={"leg": fwd["leg"]})
    return fwd, {k: t[0].item() for k, t in {**value, **policy}.items()}


def np_tanh_gaussian_logp(pre_mean, log_std, a, low, high):
    """log density of a box action under low + (tanh(u) + 1)(high − low)/2, u ~ N(mean, std²), by hand."""
    out = np.zeros(a.shape[:-1])
    for idx in np.ndindex(*a.shape[:-1]):
        total = 0.0
        for d in range(a.shape[-1]):
            y = 2.0 * (a[idx][d] - low) / (high - low) - 1.0
            u = math.atanh(y)
            s = math.exp(log_std[d])
            total += (-0.5 * ((u - pre_mean[idx][d]) / s) ** 2 - math.log(s) - 0.5 * math.log(2 * math.pi)
                      - math.log(1.0 - y * y) - math.log((high - low) / 2.0))
        out[idx] = total
    return out


def np_cca(mixer, obs, acts):
    """Eq. 3 in NumPy from the mixer's weights, the joint action scaled to [-1, 1]: (w^v, w^q, V_share)."""
    P = {k: v.detach().double().numpy() for k, v in mixer.state_dict().items()}

    def mlp(x, prefix, layers):
        for j, last in layers:
            x = x @ P[f"{prefix}.{j}.weight"].T + P[f"{prefix}.{j}.bias"]
            x = x if last else np.maximum(x, 0)
        return x

    o = obs.reshape(*obs.shape[:-2], -1).astype(np.float64)
    a = (2.0 * (acts - LOW) / (HIGH - LOW) - 1.0).reshape(*acts.shape[:-2], -1)
    h_v = mlp(o, "f_v1", [(0, False), (2, False)])
    h_q = mlp(np.concatenate([o, a], -1), "f_q1", [(0, False), (2, False)])
    w_v = np.abs(h_v @ P["f_v2.weight"].T + P["f_v2.bias"])
    w_q = np.abs(np.concatenate([h_v, h_q], -1) @ P["f_q2.weight"].T + P["f_q2.bias"])
    vs = mlp(o, "v_share", [(0, False), (2, False), (4, True)])[..., 0]
    return w_v, w_q, vs


def test_continuous_losses_eq5_eq6_eq8_against_numpy():
    agent, mixer = _cont_modules()
    ab, jb = _cont_batch()
    tau, gamma, beta, clip = 0.7, 0.9, 2.0, 3.0
    fwd, got = _cont_losses(agent, mixer, ab, jb, expectile=tau, gamma=gamma, beta=beta, exp_adv_max=clip)
    f = {k: v.detach().double().numpy() for k, v in fwd["leg"].items()}
    m = {k: v.detach().double().numpy() for k, v in fwd[MIXER_MODULE_ID].items()}
    # the CCA weights and V_share on the scaled continuous joint action (Eq. 3)
    w_v, w_q, vs = np_cca(mixer, jb[K.OBS][:, :4], jb[K.ACTIONS])
    np.testing.assert_allclose(m[W_Q], w_q, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(m[W_V][:, :4], w_v, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(m[V_SHARE][:, :4], vs, rtol=1e-4, atol=1e-6)
    # log π_i(a_data | τ_i): the tanh-Gaussian density of the box action, by hand
    with torch.no_grad():
        pre = agent.actor(torch.as_tensor(ab[K.OBS_ALL][np.arange(4), :4, ab[K.AGENT_INDEX]]),
                          torch.as_tensor(ab[K.PREV_ACTIONS][:, :4])).double().numpy()
    log_std = agent.actor.log_std.detach().double().numpy()
    logp = np_tanh_gaussian_logp(pre, log_std, ab[K.ACTIONS].astype(np.float64), LOW, HIGH)
    np.testing.assert_allclose(f[K.LOGP], logp, rtol=1e-4, atol=1e-4)
    filled_rows, B, L, N = ab[K.FILLED], 2, 4, 2
    # Eq. 5 per real step of every agent's trajectory
    num = den = 0.0
    for r in range(4):
        for t in range(L):
            if filled_rows[r, t]:
                u = f[Q_TARGET_TAKEN][r, t] - f[V][r, t]
                num += (tau if u >= 0 else 1 - tau) * u * u
                den += 1
    assert got["leg/value"] == pytest.approx(num / den, rel=1e-5)
    # Eq. 2 + Eq. 6: row b * N + i is agent i of episode b
    num = den = 0.0
    for b in range(B):
        for t in range(L):
            if not jb[K.FILLED][b, t]:
                continue
            vi = [f[V][b * N + i, t] for i in range(N)]
            qi = [f[K.Q_TAKEN][b * N + i, t] for i in range(N)]
            v_tot = sum(m[W_V][b, t, i] * vi[i] for i in range(N)) + m[V_SHARE][b, t]
            q_tot = v_tot + sum(m[W_Q][b, t, i] * (qi[i] - vi[i]) for i in range(N))
            v_next = sum(m[W_V][b, t + 1, i] * f[V][b * N + i, t + 1] for i in range(N)) + m[V_SHARE][b, t + 1]
            boot = (1 - jb[K.TERMINATED][b, t]) * jb[K.NEXT_FILLED][b, t]
            num += (jb[K.REWARD][b, t] + gamma * boot * v_next - q_tot) ** 2
            den += 1
    assert got["q"] == pytest.approx(num / den, rel=1e-5)
    # Eq. 8: −mean of min(exp(β (Q_i − V_i)), clip) · log π_i(a_data) over the real steps
    num = den = 0.0
    for r in range(4):
        for t in range(L):
            if filled_rows[r, t]:
                num += min(math.exp(beta * (f[K.Q_TAKEN][r, t] - f[V][r, t])), clip) * logp[r, t]
                den += 1
    assert got["leg/actor"] == pytest.approx(-num / den, rel=1e-4)


def test_continuous_padded_steps_change_nothing():
    agent, mixer = _cont_modules()
    ab, jb = _cont_batch()
    _, base = _cont_losses(agent, mixer, ab, jb)
    ab2, jb2 = {k: v.copy() for k, v in ab.items()}, {k: v.copy() for k, v in jb.items()}
    # episode 0 (rows 0, 1) has 3 real steps: its step 3 and o^4 are padding
    jb2[K.ACTIONS][0, 3], jb2[K.REWARD][0, 3], jb2[K.OBS][0, 4] = 1.9, 50.0, 50.0
    for r in (0, 1):
        ab2[K.ACTIONS][r, 3], ab2[K.PREV_ACTIONS][r, 4], ab2[K.OBS_ALL][r, 4] = 1.9, 1.9, 50.0
    _, padded = _cont_losses(agent, mixer, ab2, jb2)
    assert set(padded) == set(base) == {"leg/value", "q", "leg/actor"}
    for k in base:
        assert padded[k] == pytest.approx(base[k], rel=1e-6), k


def test_continuous_coupled_factorization_identity_and_nonnegative_weights():
    """Q_tot = V_tot when every Q_i = V_i (any continuous joint action); Q_tot ≤ V_tot when every
    Q_i ≤ V_i (Property 1's argument with the in-sample V_i); w^v, w^q ≥ 0."""
    _, mixer = _cont_modules()
    g = torch.Generator().manual_seed(1)
    obs = torch.randn(64, 2, 3, generator=g)
    acts = LOW + (HIGH - LOW) * torch.rand(64, 2, 2, generator=g)
    w_v, w_q, vs = mixer.weights(obs, acts)
    assert (w_v >= 0).all() and (w_q >= 0).all() and w_q.shape == (64, 2)
    v = torch.randn(64, 2, generator=g)
    v_tot, q_tot = coupled_factorization(v, v.clone(), w_v, w_q, vs)
    torch.testing.assert_close(q_tot, v_tot)
    _, q_tot_low = coupled_factorization(v, v - torch.rand(64, 2, generator=g), w_v, w_q, vs)
    assert (q_tot_low <= v_tot + 1e-6).all()
    # w^q depends on the continuous action (the action reaches the CCA network)
    assert not torch.allclose(mixer.weights(obs, -acts)[1], w_q)


def test_continuous_config_builds_modules_for_a_box_env():
    cfg = OMACConfig()
    cfg.check_action_space(CONT_INFO)  # no error: continuous is accepted
    agent, _ = _cont_modules()
    assert not agent.discrete and set(agent.get_non_inference_attributes()) == {"q", "v", "target_q"}
    # greedy acting = tanh of the mean, in [-1, 1] (RLlib maps it onto the box)
    from ray.rllib.core.columns import Columns

    state = {k: v.unsqueeze(0).expand(3, *v.shape) for k, v in agent.get_initial_state().items()}
    out = agent.forward_inference({Columns.OBS: {"obs": torch.randn(3, 1, 3)}, Columns.STATE_IN: state})
    a = out[Columns.ACTIONS]
    assert a.shape == (3, 1, 2) and (a.abs() <= 1).all()
    h = out[Columns.STATE_OUT]["h"]
    torch.testing.assert_close(a[:, 0], torch.tanh(agent.actor.mean(h)))


def test_continuous_train_evaluate_and_restore(ray_session, tmp_path):
    from rllib_sit.data.synthetic import make_random_dataset

    register_tiny_continuous_env()
    path = make_random_dataset(TinyContinuousEnv(), 12, str(tmp_path / "cont"), seed=0)
    algo = (OMACConfig().environment(TINY_CONT_ENV_ID).offline_data(input_=path)
            .training(value_updates=2, policy_updates=2, value_updates_per_iteration=2, policy_updates_per_iteration=2,
                      batch_size_episodes=4, hidden=16, cca_hidden=8)
            .evaluation(evaluation_duration=2).debugging(seed=0)).build_algo()
    try:
        r1 = algo.train()
        assert r1["phases"]["value_updates_done"] == 2 and np.isfinite(r1["learners"][MIXER_MODULE_ID]["q_loss"])
        assert np.isfinite(r1["learners"]["leg"]["value_loss"])
        r2 = algo.train()
        assert r2["phases"]["policy_updates_done"] == 2 and np.isfinite(r2["learners"]["leg"]["actor_loss"])
        assert_gaussian_entropy_logged(algo, r2, "leg")
        ev = algo.evaluate()["env_runners"]
        assert ev["num_episodes"] == 2 and np.isfinite(ev["episode_return_mean"])
        ckpt = algo.save_to_path(str(tmp_path / "omac_cont"))
    finally:
        algo.stop()
    restored = OMAC.from_checkpoint(ckpt)
    try:
        assert restored.schedule.done == {"value": 2, "policy": 2}
        assert restored.evaluate()["env_runners"]["episode_return_mean"] == pytest.approx(ev["episode_return_mean"])
    finally:
        restored.stop()


def test_tuned_examples_cover_the_sit_maps_and_validate():
    """One ``omac_<map>.yaml`` per map of the SIT examples, MAMuJoCo included, each with Table 2's values."""
    import glob
    import os

    from rllib_sit.cli.rllib_cmd import load_experiments

    tuned = os.path.join(os.path.dirname(__file__), "..", "..", "tuned_examples")
    files = sorted(glob.glob(os.path.join(tuned, "omac_*.yaml")))
    maps = {os.path.basename(f)[len("sit_"):] for f in glob.glob(os.path.join(tuned, "sit_*.yaml"))
            if "_quick" not in f and "_sweep" not in f}
    assert {os.path.basename(f)[len("omac_"):] for f in files} == maps
    assert {"halfcheetah_2l.yaml", "walker_2l.yaml"} <= maps
    for f in files:
        for exp in load_experiments(f).values():
            assert exp["run"] == "OMAC"
            cfg = OMACConfig().update_from_dict(dict(exp["config"], env=exp["env"]))
            cfg.validate()
            assert (cfg.expectile, cfg.beta, cfg.lr, cfg.critic_lr, cfg.hidden, cfg.cca_hidden) == \
                (0.7, 1.0, 5e-4, 5e-4, 256, 64)
