"""SIT's priority scale read two ways (issue 20): per-type min–max ("minmax") or the environment's
return range mapped onto [0, 20] ("return_range").

Every expectation is recomputed in NumPy by hand (loops, explicit formulas), never by the functions
under test: the two maps, Eq. 7 probabilities, the effective sample size 1 / Σ p², the range the
data specs give each environment, and — through a built algorithm — the probabilities the DPER
actor holds after Stage II, rebuilt from the r̂ it was handed.
"""

import numpy as np
import pytest

from rllib_sit.algorithms.sit import SITConfig
from rllib_sit.algorithms.sit import sit_learner as K

# A fixed p̂ of one agent type: 9 ordinary trajectories and one outlier, as on 2s3z low.
P_HAT = np.array([0.40, 0.55, 0.60, 0.62, 0.70, 0.71, 0.75, 0.80, 0.90, 1.20])


def _softmax(x, alpha):
    z = np.array([v / alpha for v in x])
    e = np.array([np.exp(v - z.max()) for v in z])
    return e / e.sum()


def _ess(p):
    return 1.0 / float(sum(v * v for v in p))


def test_minmax_map_by_hand():
    lo, hi = P_HAT.min(), P_HAT.max()
    expected = [20.0 * (v - lo) / (hi - lo) for v in P_HAT]
    np.testing.assert_allclose(K.scale_priorities(P_HAT, "minmax", (0.0, 20.0)), expected, rtol=1e-12)


@pytest.mark.parametrize("rr,lo_out,hi_out", [((0.0, 20.0), 0.0, 20.0), ((-174.41, -37.32), 0.0, 20.0),
                                               ((-203.47, 198.7), 5.0, 15.0)])
def test_return_range_map_by_hand(rr, lo_out, hi_out):
    """A fixed affine map: R_lo -> low, R_hi -> high, the same whatever the dataset holds (SMAC: identity)."""
    p = np.array([rr[0], rr[1], 0.5 * (rr[0] + rr[1]), rr[0] - 3.0, 0.7])
    expected = [lo_out + (v - rr[0]) / (rr[1] - rr[0]) * (hi_out - lo_out) for v in p]
    got = K.scale_priorities(p, "return_range", (lo_out, hi_out), rr)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
    if rr == (0.0, 20.0) and (lo_out, hi_out) == (0.0, 20.0):
        np.testing.assert_allclose(got, p)  # SMAC: the identity
    # the map does not depend on the other values: one trajectory's priority alone gives the same number
    np.testing.assert_allclose(K.scale_priorities(p[:1], "return_range", (lo_out, hi_out), rr), expected[:1])


def test_unknown_scale_and_missing_range_are_refused():
    with pytest.raises(ValueError, match="priority_scale='zscore' is invalid"):
        K.scale_priorities(P_HAT, "zscore")
    with pytest.raises(ValueError, match="needs the environment's return range"):
        K.scale_priorities(P_HAT, "return_range", (0.0, 20.0), None)


def test_ess_of_both_readings_on_a_fixed_input():
    """At the paper's α = 0.2 the min–max reading puts the mass on the outlier (ESS ≈ 1); the SMAC
    return-range reading (the identity) keeps it spread (ESS ≈ 2.9 of 10)."""
    agents = ["t"] * 2
    pri = P_HAT.reshape(5, 2)  # 5 episodes x 2 agents of one type; leaf order = episode-major
    for scale, rr in (("minmax", None), ("return_range", (0.0, 20.0))):
        probs, summary = K.dper_distribution(pri, agents, 0.2, (0.0, 20.0), True, scale, rr)
        flat = pri.reshape(-1)
        scaled = ([20.0 * (v - flat.min()) / (flat.max() - flat.min()) for v in flat] if scale == "minmax"
                  else list(flat))
        expected = _softmax(scaled, 0.2)
        np.testing.assert_allclose(probs["t"], expected, rtol=1e-10)
        assert summary["t"]["ess"] == pytest.approx(_ess(expected), rel=1e-10)
        if scale == "minmax":
            assert summary["t"]["ess"] < 1.01
        else:
            assert 2.5 < summary["t"]["ess"] < 3.5


def test_data_specs_give_the_papers_return_ranges():
    """Tables 4-6: SMAC 0~20 on every map; MPE / MAMuJoCo from the random pool's low to the expert's high."""
    for env, rr in (("smac:2s3z", (0.0, 20.0)), ("smac:10m_vs_11m", (0.0, 20.0)),
                    ("mpe:cn_3ls3l", (-174.41, -37.32)), ("mamujoco:halfcheetah_2l", (-203.47, 198.7))):
        c = SITConfig().environment(env).training(priority_scale="return_range")
        assert c.resolved_priority_return_range() == pytest.approx(rr)
        c.validate_settings()
    # an explicit range wins over the spec; "minmax" has none
    c = SITConfig().environment("smac:2s3z").training(priority_scale="return_range", priority_return_range=(1, 9))
    assert c.resolved_priority_return_range() == (1.0, 9.0)
    assert SITConfig().environment("smac:2s3z").training(priority_scale="minmax").resolved_priority_return_range() is None
    # the default is the return-range reading (the decision of docs/algorithms/sit.md), the paper's α
    assert (SITConfig().priority_scale, SITConfig().alpha) == ("return_range", 0.2)


@pytest.mark.parametrize("kw,match", [
    (dict(priority_scale="zscore"), "priority_scale"),
    (dict(priority_scale="return_range", priority_return_range=(5, 5)), "priority_return_range"),
    (dict(priority_scale="return_range", priority_return_range=(0, "20")), "priority_return_range"),
    (dict(priority_scale="return_range"), "give no return range for env 'mpe:dg'"),
])
def test_validation_names_the_setting(kw, match):
    c = SITConfig().environment("mpe:dg").training(**kw)
    with pytest.raises(ValueError, match=match):
        c.validate_settings()


def test_an_env_without_a_range_is_refused_before_training(dataset):
    """The default reading needs the env's return range: a config naming an env the data specs give
    no range for fails at validate(); one that leaves the env to the dataset fails at build, before
    Stage I, naming the setting and the dataset's env."""
    from rllib_sit.algorithms.sit import SITConfig as C

    with pytest.raises(ValueError, match="priority_return_range=None is invalid.*'tiny:coop'.*priority_scale='minmax'"):
        C().environment("tiny:coop").offline_data(input_=dataset).validate()
    with pytest.raises(ValueError, match="priority_return_range=None is invalid.*'tiny:coop'"):
        C().offline_data(input_=dataset).training(ardnem_updates=1, agent_updates=1).build_algo()
    C().environment("tiny:coop").training(priority_scale="minmax").validate_settings()
    C().environment("tiny:coop").training(priority_return_range=(0, 3)).validate_settings()


def test_stage2_hands_the_dper_the_return_range_probabilities(dataset):
    """Wiring: after Stage II with ``priority_scale="return_range"``, the DPER actor's probabilities
    equal Eq. 6–7 recomputed here from the r̂ it holds (discounted returns by explicit loops, the fixed
    affine map, a NumPy softmax) — not the min–max ones."""
    import ray

    from tiny_fixtures import tiny_config

    rr, alpha, gamma = (-1.0, 3.0), 0.5, 0.99
    algo = tiny_config(dataset, priority_scale="return_range", priority_return_range=rr, alpha=alpha, gamma=gamma,
                       ardnem_updates=1, ardnem_updates_per_iteration=1, agent_updates=1).build_algo()
    try:
        algo.train()  # Stage I (1 update) + Stage II
        r_hat = np.asarray(ray.get(algo.dper.get_state.remote())["step_values"][K.REWARD_HAT], np.float64)
        filled = np.asarray(algo.store["filled"], bool)
        n_ep, _, n_ag = r_hat.shape
        p_hat = np.zeros((n_ep, n_ag))
        for e in range(n_ep):
            n = int(filled[e].sum())
            for i in range(n_ag):
                g = [sum(gamma ** (tp - t) * r_hat[e, tp, i] for tp in range(t, n)) for t in range(n)]
                p_hat[e, i] = np.mean(g)
        for t, cols in (("scout", [0, 1]), ("tank", [2])):
            flat = [p_hat[e, c] for e in range(n_ep) for c in cols]  # episode-major, the sampler's leaf order
            scaled = [(v - rr[0]) / (rr[1] - rr[0]) * 20.0 for v in flat]
            expected = _softmax(scaled, alpha)
            got = np.asarray(ray.get(algo.dper.probabilities.remote(t)))
            np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-9)
            assert algo.dper_summary[t]["ess"] == pytest.approx(_ess(expected), rel=1e-4)
            mm = _softmax([20.0 * (v - min(flat)) / (max(flat) - min(flat)) for v in flat], alpha)
            assert np.abs(mm - expected).max() > 1e-3  # the min-max reading would give other probabilities
    finally:
        algo.stop()
