"""DPER buffer: type-wise trees, Eq. 7 probabilities, the i(j) gather and state round trip."""

import numpy as np
import pytest

from rllib_sit.data import schema as S
from rllib_sit.replay import dper as D


def _episodes(K=6, T=4, N=3, od=2, nA=3, seed=0):
    rng = np.random.default_rng(seed)
    lengths = np.array([4, 2, 3, 4, 1, 4])[:K]
    filled = np.arange(T)[None] < lengths[:, None]
    obs = rng.normal(size=(K, T + 1, N, od)).astype(np.float32)
    acts = rng.integers(0, nA, size=(K, T, N)) * filled[..., None]
    term = np.zeros((K, T), bool)
    term[np.arange(K), lengths - 1] = True
    return {S.OBS: obs, S.ACTIONS: acts, S.TERMINATED: term, S.FILLED: filled,
            S.AVAIL_ACTIONS: np.ones((K, T + 1, N, nA), np.float32)}


def test_probabilities_follow_eq7_per_type():
    ep = _episodes()
    buf = D.DPERBuffer(ep, ["x", "x", "y"], seed=0)
    pri = np.random.default_rng(1).normal(size=(6, 3))
    r = np.zeros((6, 4, 3), np.float32)
    summary = buf.load(r, r + 1, pri, alpha=2.0, priority_range=(0.0, 20.0))
    # NumPy recomputation: leaf order = episode-major, then slot within type
    raw_x = pri[:, [0, 1]].reshape(-1)
    sc = (raw_x - raw_x.min()) * 20 / (raw_x.max() - raw_x.min())
    z = np.exp(sc / 2.0 - (sc / 2.0).max())
    np.testing.assert_allclose(buf.probabilities("x"), z / z.sum(), rtol=1e-10)
    assert summary["x"]["num_trajectories"] == 12 and summary["y"]["num_trajectories"] == 6
    assert summary["x"]["priority_min"] == pytest.approx(0.0) and summary["x"]["priority_max"] == pytest.approx(20.0)
    np.testing.assert_allclose(summary["y"]["ess"], 1 / np.sum(buf.probabilities("y") ** 2))


def test_uniform_when_not_prioritized():
    ep = _episodes()
    buf = D.DPERBuffer(ep, ["x", "x", "y"])
    buf.load(np.zeros((6, 4, 3)), np.ones((6, 4, 3)), np.random.default_rng(0).normal(size=(6, 3)), 0.2,
             prioritized=False)
    np.testing.assert_allclose(buf.probabilities("x"), np.full(12, 1 / 12))


def test_gather_uses_agent_j_data_and_all_observations():
    ep = _episodes()
    buf = D.DPERBuffer(ep, ["x", "x", "y"])
    r_hat = np.random.default_rng(2).normal(size=(6, 4, 3)).astype(np.float32)
    buf.load(r_hat, np.ones_like(r_hat), np.zeros((6, 3)), 0.2)
    k, j = np.array([0, 1, 2]), np.array([1, 0, 1])
    b = buf.gather(k, j)
    L = 4  # longest of lengths [4, 2, 3]
    assert b[D.OBS_ALL].shape == (3, L + 1, 3, 2)
    np.testing.assert_array_equal(b[D.OBS_ALL][1], ep[S.OBS][1, :L + 1])
    np.testing.assert_array_equal(b[D.ACTIONS][0], ep[S.ACTIONS][0, :L, 1])
    np.testing.assert_array_equal(b[D.PREV_ACTIONS][0], np.r_[-1, ep[S.ACTIONS][0, :L, 1]])
    np.testing.assert_array_equal(b[D.REWARD_HAT][2], r_hat[2, :L, 1])
    # episode 1 has length 2: next action exists only at t=0; next_filled masks the rest
    np.testing.assert_array_equal(b[D.NEXT_FILLED][1], [1, 0, 0, 0])
    assert b[D.NEXT_ACTIONS][1, 0] == ep[S.ACTIONS][1, 1, 0]
    np.testing.assert_array_equal(b[D.FILLED][1], [1, 1, 0, 0])


def test_state_round_trip_restores_trees_and_rng():
    ep = _episodes()
    buf = D.DPERBuffer(ep, ["x", "x", "y"], seed=3)
    buf.load(np.zeros((6, 4, 3)), np.ones((6, 4, 3)), np.random.default_rng(0).normal(size=(6, 3)), 1.0)
    state = buf.get_state()
    expected = buf.sample(5)
    other = D.DPERBuffer(ep, ["x", "x", "y"], seed=99)
    other.set_state(state)
    got = other.sample(5)
    for t in ("x", "y"):
        np.testing.assert_array_equal(got[t][D.EPISODE_INDEX], expected[t][D.EPISODE_INDEX])
        np.testing.assert_array_equal(got[t][D.AGENT_INDEX], expected[t][D.AGENT_INDEX])
