"""FQE and PDWIS on hand-made data (no Ray, no simulator): the TD target recomputed in NumPy, the
finite-horizon bootstrap flags, known policy values on a chain MDP and the matrix game, PDWIS
against a hand computation, and the config's validation messages."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ope_fixtures import (CHAIN_INFO, H, LEGS_INFO, chain_columns, chain_value, legs_columns, legs_value,
                          matrix_columns)

from rllib_sit.data import schema as S
from rllib_sit.ope.data import OPEData, bootstrap_flags, episode_subset
from rllib_sit.ope.fitted_q import FQE, FQEConfig, bootstrap_interval, numpy_critic
from rllib_sit.ope.importance import cumulative_log_ratios, pdwis, pdwis_value
from rllib_sit.ope.policy import PolicyActions, constant_policy_actions


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _chain(n=400, seed=0):
    cols, logp = chain_columns(n, seed=seed)
    return OPEData.from_columns(cols, CHAIN_INFO, behaviour_logp=logp), cols, logp


# -- the pieces ------------------------------------------------------------------------------------

def test_bootstrap_flags_end_every_episode_at_its_last_step():
    filled = np.array([[1, 1, 1, 0], [1, 1, 1, 1]], np.uint8)
    term = np.array([[0, 0, 1, 0], [0, 0, 0, 0]], np.uint8)  # episode 1 is cut by the limit
    np.testing.assert_array_equal(bootstrap_flags(term, filled), [[1, 1, 0, 0], [1, 1, 1, 0]])
    # infinite-horizon reading: a time-limit end bootstraps from o^length, a termination never does
    np.testing.assert_array_equal(bootstrap_flags(term, filled, bootstrap_truncated=True), [[1, 1, 0, 0], [1, 1, 1, 1]])


def test_td_target_recomputed_in_numpy():
    """y = r + γ b mean_m Q_target(s', π_m(s')) with the critic's own weights, the standardised
    inputs at t+1 and the policy's M = 3 draws at t+1."""
    data, cols, _ = _chain(20)
    pa = constant_policy_actions([np.array([0.3, 0.7]), np.array([0.6, 0.4])], data.num_episodes, H,
                                 num_samples=3, seed=1)
    fqe = FQE(data, pa, FQEConfig(gamma=0.9, hidden=8, embed=4, value_clip_margin=None))
    torch.manual_seed(3)
    critic = fqe.new_critic()
    rows = np.arange(24)  # the first episodes, their last steps included
    got = fqe.td_targets(critic, rows).double().numpy()

    k, t = data.k[rows], data.t[rows]
    s = (cols[S.STATE][k, t + 1] - data.state_mean) / data.state_std
    o = (cols[S.OBS][k, t + 1] - data.obs_mean) / data.obs_std
    tm = ((t + 1) / H)[:, None]
    q = np.stack([numpy_critic(critic, s, o, tm, np.eye(2)[pa.actions[k, t + 1, m]]) for m in range(3)], 1)
    filled = cols[S.FILLED][k] > 0
    nxt = np.concatenate([filled[:, 1:], np.zeros((len(k), 1), bool)], 1)[np.arange(len(k)), t]
    b = nxt & (cols[S.TERMINATED][k, t] == 0)
    want = cols[S.REWARD][k, t] + 0.9 * b * q.mean(1)
    assert (~b).any() and b.any()  # the batch holds both kinds of steps
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_conservative_loss_recomputed_in_numpy():
    """FQE-3: mean (Q(s, a_D) − y)² + α (mean_b mean_m Q(s, π_m(s)) − mean_b Q(s, a_D)), every Q from the
    critic's weights in NumPy, y from the target critic's (a different network) at t+1."""
    data, cols, _ = _chain(20)
    pa = constant_policy_actions([np.array([0.3, 0.7]), np.array([0.6, 0.4])], data.num_episodes, H,
                                 num_samples=3, seed=1)
    fqe = FQE(data, pa, FQEConfig(gamma=0.9, hidden=8, embed=4, value_clip_margin=None, conservative_weight=0.7))
    torch.manual_seed(3)
    critic, target = fqe.new_critic(), fqe.new_critic()
    with torch.no_grad():  # make the fresh critic's Q depend on the actions visibly
        critic.agent_enc[0].weight.mul_(20.0)
    rows = np.arange(24)
    loss, y, _ = fqe.batch_loss(critic, target, rows)

    k, t = data.k[rows], data.t[rows]
    feats = lambda tt: ((cols[S.STATE][k, tt] - data.state_mean) / data.state_std,  # noqa: E731
                        (cols[S.OBS][k, tt] - data.obs_mean) / data.obs_std, (tt / H)[:, None])
    q_next = np.stack([numpy_critic(target, *feats(t + 1), np.eye(2)[pa.actions[k, t + 1, m]]) for m in range(3)], 1)
    np.testing.assert_allclose(y.double().numpy(), cols[S.REWARD][k, t] + 0.9 * data.bootstrap[rows] * q_next.mean(1),
                               rtol=1e-5, atol=1e-5)
    q_data = numpy_critic(critic, *feats(t), np.eye(2)[cols[S.ACTIONS][k, t]])
    q_pi = np.stack([numpy_critic(critic, *feats(t), np.eye(2)[pa.actions[k, t, m]]) for m in range(3)], 1).mean(1)
    want = np.mean((q_data - y.double().numpy()) ** 2) + 0.7 * (q_pi.mean() - q_data.mean())
    assert abs(q_pi.mean() - q_data.mean()) > 0.005  # the penalty term is not negligible here
    assert loss.item() == pytest.approx(want, rel=1e-5, abs=1e-6)
    plain, _, _ = FQE(data, pa, FQEConfig(gamma=0.9, hidden=8, embed=4, value_clip_margin=None)).batch_loss(
        critic, target, rows)
    assert plain.item() == pytest.approx(np.mean((q_data - y.double().numpy()) ** 2), rel=1e-5)


def _numpy_returns_to_go(cols, gamma):
    """G_t = r_t + γ G_{t+1} within each episode's real steps, by explicit loops (finite horizon)."""
    out = {}
    for k in range(cols[S.REWARD].shape[0]):
        n = int((cols[S.FILLED][k] > 0).sum())
        g = 0.0
        for t in range(n - 1, -1, -1):
            g = float(cols[S.REWARD][k, t]) + (gamma * g if not cols[S.TERMINATED][k, t] else 0.0)
            out[(k, t)] = g
    return out


def test_returns_to_go_recomputed_by_loops():
    data, cols, _ = _chain(30)
    want = _numpy_returns_to_go(cols, 0.8)
    got = data.returns_to_go(0.8)
    np.testing.assert_allclose(got, [want[(k, t)] for k, t in zip(data.k, data.t)], atol=1e-9)
    assert got.max() > 0 and len(set(np.round(got, 6))) > 2  # the chain pays: not a trivial all-zero check


def test_value_clip_bounds_the_targets_and_the_estimate():
    """A critic that extrapolates (a bias of +1000 on its output) gives y = r + γ b Q ≈ 1000; with the
    value bounds (the data's return-to-go range ± 10 % of its width, recomputed by loops) every bootstrapped
    target sits on the upper bound; without them (``value_clip_margin=None``) it does not."""
    data, cols, _ = _chain(40)
    pa = constant_policy_actions([np.array([0.5, 0.5])] * 2, data.num_episodes, H, num_samples=1, seed=1)
    g = np.array(list(_numpy_returns_to_go(cols, 1.0).values()))
    lo, hi = g.min() - 0.1 * (g.max() - g.min()), g.max() + 0.1 * (g.max() - g.min())
    rows = np.arange(data.num_transitions)
    fqe = FQE(data, pa, FQEConfig(hidden=8, embed=4))
    assert fqe.value_bounds == pytest.approx((lo, hi))
    torch.manual_seed(0)
    critic = fqe.new_critic()
    with torch.no_grad():
        critic.head[-1].bias.fill_(1000.0)
    y = fqe.td_targets(critic, rows).double().numpy()
    y_raw = FQE(data, pa, FQEConfig(hidden=8, embed=4, value_clip_margin=None)).td_targets(critic, rows).double().numpy()
    boot = data.bootstrap > 0
    assert boot.any() and (~boot).any()
    np.testing.assert_allclose(y[boot], hi, rtol=1e-6)
    assert (y_raw[boot] > 900).all()
    np.testing.assert_allclose(y[~boot], np.clip(y_raw[~boot], lo, hi), rtol=1e-6)  # last steps: y = r
    init = fqe.q_of_policy(critic, np.arange(data.num_episodes), np.zeros(data.num_episodes, np.int64))
    assert (init > 900).all() and (fqe.clip_values(init) == pytest.approx(hi))


def _on_env(data, env_id):
    import dataclasses

    return dataclasses.replace(data, info=dataclasses.replace(data.info, env_id=env_id))


@pytest.mark.parametrize("env_id,source,want", [
    # SMAC: the pool tables' [0, 20], widened by 10 % of 20
    ("smac:2s3z", "env", (-2.0, 22.0)),
    # CN_3ls3l: [-174.41, -37.32] with 0 added (a return-to-go is a partial sum), widened by 17.441
    ("mpe:cn_3ls3l", "env", (-174.41 - 17.441, 17.441)),
    ("smac:2s3z", [-1.0, 3.0], (-1.4, 3.4))])
def test_value_bounds_from_the_environment_or_given(env_id, source, want):
    """value_bounds="env" reads the environment's episode-return range from the dataset specs (not the
    data's returns-to-go, which cap every policy better than the data); [low, high] is taken as given;
    the extrapolating critic's bootstrapped targets sit on the new upper bound."""
    data, _, _ = _chain(40)
    data = _on_env(data, env_id)
    pa = constant_policy_actions([np.array([0.5, 0.5])] * 2, data.num_episodes, H, num_samples=1, seed=1)
    fqe = FQE(data, pa, FQEConfig(hidden=8, embed=4, value_bounds=source))
    assert fqe.value_bounds == pytest.approx(want)
    data_bounds = FQE(data, pa, FQEConfig(hidden=8, embed=4)).value_bounds
    assert data_bounds != pytest.approx(want)  # the switch changes the bounds
    torch.manual_seed(0)
    critic = fqe.new_critic()
    with torch.no_grad():
        critic.head[-1].bias.fill_(1000.0)
    y = fqe.td_targets(critic, np.arange(data.num_transitions)).double().numpy()
    np.testing.assert_allclose(y[data.bootstrap > 0], want[1], rtol=1e-6)


def test_value_bounds_env_without_a_return_range_is_one_error_before_any_work():
    from rllib_sit.ope.api import open_data

    data, _, _ = _chain(10)
    with pytest.raises(ValueError, match=(r"^FQEConfig: value_bounds='env' needs the environment's return range; "
                                          rf"<memory>: '{data.info.env_id}' has none in the dataset specs")):
        open_data(data, FQEConfig(value_bounds="env"))
    assert open_data(_on_env(data, "mpe:dg"), FQEConfig()) is not None  # "data" needs no env range
    with pytest.raises(ValueError, match="'mpe:dg' has none"):
        open_data(_on_env(data, "mpe:dg"), FQEConfig(value_bounds="env"))


def test_episode_subset_repeats_episodes():
    data, _, _ = _chain(5)
    rows = episode_subset(data, [1, 1, 3])
    assert list(data.k[rows]) == [1] * (2 * data.lengths[1]) + [3] * data.lengths[3]


def test_bootstrap_interval_covers_the_mean():
    v = np.random.default_rng(0).normal(2.0, 1.0, 400)
    lo, hi = bootstrap_interval(v, 0.95, 1000)
    assert lo < v.mean() < hi and hi - lo == pytest.approx(2 * 1.96 / 20, rel=0.2)


# -- known values -------------------------------------------------------------------------------------

CHAIN_FIT = dict(updates=1500, batch_size=128, target_update_interval=20, hidden=64, embed=16, lr=1e-3,
                 ci_resamples=200)


@pytest.mark.parametrize("p", [1.0, 0.7])
def test_fqe_recovers_the_chain_value(p):
    """A multi-step value (G = 3 joint successes within H = 6 steps) from uniform-random data."""
    data, _, _ = _chain(600)
    pa = constant_policy_actions([np.array([1 - p, p])] * 2, data.num_episodes, H, num_samples=4,
                                 explore=0 < p < 1, seed=2)
    res = FQE(data, pa, FQEConfig(**CHAIN_FIT)).fit()
    assert res.estimate == pytest.approx(chain_value(p), abs=0.08), (p, chain_value(p), res.estimate)
    assert res.ci_low <= res.estimate <= res.ci_high
    d = res.diagnostics
    assert d["td_loss_last"] < d["td_loss_first"] and d["num_transitions"] == data.num_transitions


def test_fqe_recovers_the_matrix_game_value():
    from rllib_sit.envs.games import expected_return

    cols, info = matrix_columns(500)
    data = OPEData.from_columns(cols, info)
    p1, p2 = np.array([0.2, 0.8]), np.array([0.9, 0.1])
    pa = constant_policy_actions([p1, p2], data.num_episodes, 1, num_samples=8, seed=0)
    res = FQE(data, pa, FQEConfig(updates=400, batch_size=128, lr=3e-3, hidden=32, embed=8, ci_resamples=200)).fit()
    assert res.estimate == pytest.approx(expected_return(p1, p2), abs=0.25)
    greedy = constant_policy_actions([p1, p2], data.num_episodes, 1, explore=False)  # (a_2, a_1): payoff 6
    res = FQE(data, greedy, FQEConfig(updates=400, batch_size=128, lr=3e-3, hidden=32, embed=8,
                                      ci_resamples=200)).fit()
    assert res.estimate == pytest.approx(6.0, abs=0.25)


def test_conservative_fqe_reaches_cqls_fixed_point_on_the_matrix_game():
    """One step, so y = r and FQE-3's fixed point is Q̂(a) = r(a) − (α/2)(μ(a)/π̂_β(a) − 1) for every joint
    a (π̂_β: the data's joint frequencies): at α = 0.4 a greedy policy on the rare best action (payoff 6,
    π_β = 0.2·0.4) is read 6 − 0.2·11.5 ≈ 3.7, below the well-supported payoff-5 action (π_β = 0.8·0.6),
    read 5 − 0.2·1.08 ≈ 4.78; without the penalty FQE reads the payoff itself. The behaviour policy
    itself is read without bias."""
    from rllib_sit.envs.games import BEHAVIOUR_PROBS, expected_return

    cols, info = matrix_columns(2000)
    data = OPEData.from_columns(cols, info)
    a = cols[S.ACTIONS][:, 0]
    fit = dict(updates=600, batch_size=256, lr=3e-3, hidden=32, embed=8, ci_resamples=200, value_clip_margin=None)
    alpha, reads = 0.4, []
    for probs, payoff in (((0.0, 1.0), (1.0, 0.0)), 6.0), (((1.0, 0.0), (0.0, 1.0)), 5.0):
        greedy = constant_policy_actions([np.array(p) for p in probs], data.num_episodes, 1, explore=False)
        j = greedy.actions[0, 0, 0]
        p_beta = np.mean((a[:, 0] == j[0]) & (a[:, 1] == j[1]))
        reads.append(FQE(data, greedy, FQEConfig(conservative_weight=alpha, **fit)).fit().estimate)
        assert reads[-1] == pytest.approx(payoff - alpha / 2 * (1 / p_beta - 1), abs=0.25), (reads[-1], p_beta)
        if payoff == 6.0:
            assert FQE(data, greedy, FQEConfig(**fit)).fit().estimate == pytest.approx(payoff, abs=0.25)
    assert reads[0] < reads[1] - 0.5  # the order of the two policies flips under the penalty
    behaviour = constant_policy_actions(list(BEHAVIOUR_PROBS), data.num_episodes, 1, num_samples=16, seed=0)
    got = FQE(data, behaviour, FQEConfig(conservative_weight=alpha, **fit)).fit().estimate
    assert got == pytest.approx(expected_return(*BEHAVIOUR_PROBS), abs=0.25)


def test_fqe_recovers_a_continuous_value():
    """Box actions: the critic's action input is continuous; 5 steps of r = −Σ|a_i − target_i|₁.
    (Away from the kink at the targets: there a ReLU critic smooths the max and FQE reads ~2 low.)"""
    data = OPEData.from_columns(legs_columns(400), LEGS_INFO)
    joint = np.array([[-0.5, 1.0], [0.5, 0.0]], np.float32)
    acts = np.broadcast_to(joint, (data.num_episodes, 6, 1, 2, 2)).copy()
    res = FQE(data, PolicyActions(acts, explore=False), FQEConfig(**CHAIN_FIT)).fit()
    assert res.estimate == pytest.approx(legs_value(joint), abs=1.0)  # -15


# -- PDWIS ----------------------------------------------------------------------------------------------

def test_pdwis_by_hand():
    """Two episodes of two steps, one agent: ratios ρ^0 = (2, 0.5), ρ^1 = (2·1, 0.5·4) = (2, 2)."""
    rewards = np.array([[1.0, 2.0], [3.0, 0.0]])
    filled = np.ones((2, 2))
    target = np.log(np.array([[[0.8], [0.5]], [[0.2], [0.8]]]))
    behaviour = np.log(np.array([[[0.4], [0.5]], [[0.4], [0.2]]]))
    log_rho = cumulative_log_ratios(target, behaviour, filled)
    np.testing.assert_allclose(np.exp(log_rho), [[2.0, 2.0], [0.5, 2.0]])
    want = (2 * 1 + 0.5 * 3) / 2.5 + 0.9 * (2 * 2 + 2 * 0) / 4
    assert pdwis_value(rewards, log_rho, filled, gamma=0.9) == pytest.approx(want)


def test_pdwis_ended_episode_keeps_its_weight():
    rewards = np.array([[1.0, 0.0], [0.0, 1.0]])
    filled = np.array([[1, 0], [1, 1]])
    lr = np.log(np.array([[[1.0], [9.0]], [[1.0], [1.0]]]))  # the padding step's ratio must not count
    log_rho = cumulative_log_ratios(lr, np.zeros_like(lr), filled)
    assert pdwis_value(rewards, log_rho, filled) == pytest.approx(0.5 + 0.5)


def test_pdwis_recovers_the_chain_value():
    data, cols, logp = _chain(1500, seed=1)
    p = 0.7
    target = np.log(np.where(cols[S.ACTIONS] == 1, p, 1 - p)) * (cols[S.FILLED][..., None] > 0)
    out = pdwis(cols[S.REWARD], cols[S.FILLED], target, logp, resamples=200)
    assert out["estimate"] == pytest.approx(chain_value(p), abs=0.06)
    assert out["ci_low"] <= out["estimate"] <= out["ci_high"] and 10 < out["ess"] <= 1500


# -- validation -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("key,value,match", [("gamma", 0.0, "gamma=0.0"), ("updates", 0, "updates=0"),
                                             ("lr", -1.0, "lr=-1.0"), ("ci_level", 1.5, "ci_level=1.5"),
                                             ("use_obs", "yes", "use_obs='yes'"),
                                             ("value_clip_margin", -0.1, "value_clip_margin=-0.1"),
                                             ("value_bounds", "envv", "value_bounds='envv'"),
                                             ("value_bounds", [3.0, 1.0], r"value_bounds=\[3.0, 1.0\]"),
                                             ("conservative_weight", -1.0, "conservative_weight=-1.0"),
                                             ("conservative_weight", float("nan"), "conservative_weight=nan")])
def test_config_validation_names_the_setting(key, value, match):
    with pytest.raises(ValueError, match=f"FQEConfig: {match} is invalid"):
        FQEConfig(**{key: value}).validate()


def test_config_unknown_setting_suggests_the_closest():
    with pytest.raises(ValueError, match="unknown setting 'updats'; did you mean 'updates'"):
        FQEConfig.from_dict({"updats": 3})


def test_policy_actions_shape_is_checked():
    data, _, _ = _chain(4)
    with pytest.raises(ValueError, match="policy actions have shape"):
        FQE(data, PolicyActions(np.zeros((4, H, 1, 2), np.int64), False))


def test_behaviour_logp_shape_is_checked():
    cols, logp = chain_columns(4)
    with pytest.raises(ValueError, match="behaviour_logp' has shape"):
        OPEData.from_columns(cols, CHAIN_INFO, behaviour_logp=logp[:, :-1])
