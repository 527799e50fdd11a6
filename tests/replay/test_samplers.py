"""Samplers: individual trajectories per module (uniform / given probabilities, the i(j) gather,
attached step values, state round trip), joint episodes, and SIT's Eq. 7 distribution on top."""

import numpy as np
import pytest

from rllib_sit.algorithms.sit.sit_learner import dper_distribution
from rllib_sit.data import schema as S
from rllib_sit.replay import keys as K
from rllib_sit.replay.samplers import IndividualTrajectorySampler, JointEpisodeSampler, TrajectoryGatherer


def _episodes(K_=6, T=4, N=3, od=2, nA=3, seed=0):
    rng = np.random.default_rng(seed)
    lengths = np.array([4, 2, 3, 4, 1, 4])[:K_]
    filled = np.arange(T)[None] < lengths[:, None]
    obs = rng.normal(size=(K_, T + 1, N, od)).astype(np.float32)
    acts = rng.integers(0, nA, size=(K_, T, N)) * filled[..., None]
    term = np.zeros((K_, T), bool)
    term[np.arange(K_), lengths - 1] = True
    return {S.OBS: obs, S.ACTIONS: acts, S.TERMINATED: term, S.FILLED: filled,
            S.REWARD: rng.normal(size=(K_, T)).astype(np.float32) * filled,
            S.STATE: rng.normal(size=(K_, T + 1, 5)).astype(np.float32),
            S.AVAIL_ACTIONS: np.ones((K_, T + 1, N, nA), np.float32)}


def test_eq7_distribution_per_type_against_numpy():
    pri = np.random.default_rng(1).normal(size=(6, 3))
    probs, summary = dper_distribution(pri, ["x", "x", "y"], alpha=2.0, priority_range=(0.0, 20.0))
    # NumPy recomputation: leaf order = episode-major, then slot within type
    raw_x = pri[:, [0, 1]].reshape(-1)
    sc = (raw_x - raw_x.min()) * 20 / (raw_x.max() - raw_x.min())
    z = np.exp(sc / 2.0 - (sc / 2.0).max())
    np.testing.assert_allclose(probs["x"], z / z.sum(), rtol=1e-10)
    assert summary["x"]["num_trajectories"] == 12 and summary["y"]["num_trajectories"] == 6
    assert summary["x"]["priority_min"] == pytest.approx(0.0) and summary["x"]["priority_max"] == pytest.approx(20.0)
    np.testing.assert_allclose(summary["y"]["ess"], 1 / np.sum(probs["y"] ** 2))
    # loaded into the sampler, the tree gives back exactly these probabilities
    s = IndividualTrajectorySampler(_episodes(), ["x", "x", "y"])
    s.set_probabilities(probs)
    np.testing.assert_allclose(s.probabilities("x"), z / z.sum(), rtol=1e-10)


def test_uniform_by_default_and_when_not_prioritized():
    s = IndividualTrajectorySampler(_episodes(), ["x", "x", "y"])
    np.testing.assert_allclose(s.probabilities("x"), np.full(12, 1 / 12))
    probs, summary = dper_distribution(np.random.default_rng(0).normal(size=(6, 3)), ["x", "x", "y"], 0.2,
                                       prioritized=False)
    np.testing.assert_allclose(probs["x"], np.full(12, 1 / 12))
    assert summary["x"]["ess"] == pytest.approx(12.0)


def test_sampling_frequencies_follow_the_probabilities():
    s = IndividualTrajectorySampler(_episodes(), ["x", "x", "y"], seed=0)
    p = np.zeros(12)
    p[[0, 5, 11]] = [0.5, 0.3, 0.2]
    s.set_probabilities({"x": p})
    k, j = s.sample_indices("x", 20000)
    leaf = k * 2 + (j == 1)
    np.testing.assert_allclose(np.bincount(leaf, minlength=12) / 20000, p, atol=0.015)


def test_gather_uses_agent_j_data_and_all_observations():
    ep = _episodes()
    s = IndividualTrajectorySampler(ep, ["x", "x", "y"])
    r_hat = np.random.default_rng(2).normal(size=(6, 4, 3)).astype(np.float32)
    s.set_step_values({"reward_hat": r_hat})
    k, j = np.array([0, 1, 2]), np.array([1, 0, 1])
    b = s.gather(k, j)
    L = 4  # longest of lengths [4, 2, 3]
    assert b[K.OBS_ALL].shape == (3, L + 1, 3, 2)
    np.testing.assert_array_equal(b[K.OBS_ALL][1], ep[S.OBS][1, :L + 1])
    np.testing.assert_array_equal(b[K.ACTIONS][0], ep[S.ACTIONS][0, :L, 1])
    np.testing.assert_array_equal(b[K.PREV_ACTIONS][0], np.r_[-1, ep[S.ACTIONS][0, :L, 1]])
    np.testing.assert_array_equal(b["reward_hat"][2], r_hat[2, :L, 1])
    np.testing.assert_array_equal(b[K.REWARD][2], ep[S.REWARD][2, :L])
    # episode 1 has length 2: next action exists only at t=0; next_filled masks the rest
    np.testing.assert_array_equal(b[K.NEXT_FILLED][1], [1, 0, 0, 0])
    assert b[K.NEXT_ACTIONS][1, 0] == ep[S.ACTIONS][1, 1, 0]
    np.testing.assert_array_equal(b[K.FILLED][1], [1, 1, 0, 0])


def test_bad_probabilities_and_step_values_name_the_module():
    s = IndividualTrajectorySampler(_episodes(), ["x", "x", "y"])
    with pytest.raises(ValueError, match=r"set_probabilities\['x'\].*12"):
        s.set_probabilities({"x": np.ones(5)})
    with pytest.raises(ValueError, match="unknown module ids"):
        s.set_probabilities({"z": np.ones(6)})
    with pytest.raises(ValueError, match=r"set_step_values\['r'\]"):
        s.set_step_values({"r": np.zeros((6, 4, 2))})


def test_state_round_trip_restores_trees_values_and_rng():
    ep = _episodes()
    s = IndividualTrajectorySampler(ep, ["x", "x", "y"], seed=3)
    s.set_probabilities(dper_distribution(np.random.default_rng(0).normal(size=(6, 3)), ["x", "x", "y"], 1.0)[0])
    s.set_step_values({"u": np.ones((6, 4, 3), np.float32)})
    state = s.get_state()
    expected = s.sample(5)
    other = IndividualTrajectorySampler(ep, ["x", "x", "y"], seed=99)
    other.set_state(state)
    got = other.sample(5)
    for t in ("x", "y"):
        for key in (K.EPISODE_INDEX, K.AGENT_INDEX, "u"):
            np.testing.assert_array_equal(got[t][key], expected[t][key])


@pytest.mark.parametrize("n", [1, 2, 5])
def test_indices_of_many_batches_gathered_elsewhere_equal_sample(n):
    """SIT's Stage III: the actor draws n batches' indices in one call (``sample_indices_many``) and
    the algorithm gathers them (``TrajectoryGatherer``): the batches of n ``sample`` calls, and the
    RNG left where they leave it."""
    ep = _episodes()
    p = {"x": np.random.default_rng(2).random(12), "y": np.random.default_rng(3).random(6) ** 4}
    values = {"v": np.random.default_rng(4).normal(size=(6, 4, 3)).astype(np.float32)}
    a, b = IndividualTrajectorySampler(ep, ["x", "x", "y"], seed=7), IndividualTrajectorySampler(ep, ["x", "x", "y"], seed=7)
    for s in (a, b):
        s.set_probabilities(p)
        s.set_step_values(values)
    expected = [a.sample(5) for _ in range(n)]
    indices = b.sample_indices_many(5, n)
    assert {m: k.shape for m, (k, _) in indices.items()} == {"x": (n, 5), "y": (n, 5)}
    gatherer = TrajectoryGatherer(ep, ["x", "x", "y"])
    gatherer.set_step_values(values)
    for u in range(n):
        got = gatherer.gather_batch({m: (k[u], j[u]) for m, (k, j) in indices.items()})
        assert set(got) == set(expected[u])
        for m in got:
            assert set(got[m]) == set(expected[u][m])
            for key in got[m]:
                np.testing.assert_array_equal(got[m][key], expected[u][m][key])
    assert a.rng.bit_generator.state == b.rng.bit_generator.state
    np.testing.assert_array_equal(a.sample_indices("y", 9)[0], b.sample_indices("y", 9)[0])


def test_joint_episodes_are_whole_episodes_trimmed_to_the_longest():
    ep = _episodes()
    s = JointEpisodeSampler(ep, seed=0)
    b = s.gather(np.array([1, 4]))  # lengths 2 and 1
    assert b[K.ACTIONS].shape == (2, 2, 3) and b[K.OBS].shape == (2, 3, 3, 2) and b[K.STATE].shape == (2, 3, 5)
    np.testing.assert_array_equal(b[K.OBS][0], ep[S.OBS][1, :3])
    np.testing.assert_array_equal(b[K.REWARD][1], ep[S.REWARD][4, :2])
    np.testing.assert_array_equal(b[K.FILLED], [[1, 1], [1, 0]])
    np.testing.assert_array_equal(b[K.NEXT_FILLED], [[1, 0], [0, 0]])
    np.testing.assert_array_equal(b[K.AVAIL_ACTIONS][0], ep[S.AVAIL_ACTIONS][1, :3])
    k = s.sample_indices(4000)
    np.testing.assert_allclose(np.bincount(k, minlength=6) / 4000, np.full(6, 1 / 6), atol=0.03)


def test_joint_batches_by_module_line_up_with_the_joint_episode():
    import torch

    from rllib_sit.algorithms.common.joint import stack_agents

    ep = _episodes()
    s = JointEpisodeSampler(ep, seed=1, agent_modules=["x", "y", "x"])
    b = s.sample_by_module(4, "__mixer__")
    joint, L = b["__mixer__"], b["__mixer__"][K.FILLED].shape[1]
    assert b["x"][K.ACTIONS].shape == (8, L) and b["y"][K.ACTIONS].shape == (4, L)
    np.testing.assert_array_equal(b["x"][K.AGENT_INDEX], np.tile([0, 2], 4))
    np.testing.assert_array_equal(b["x"][K.EPISODE_INDEX], np.repeat(joint[K.EPISODE_INDEX], 2))
    # each module's per-agent actions, stacked back, are the joint episode's actions
    stacked = stack_agents({m: torch.as_tensor(b[m][K.ACTIONS]) for m in ("x", "y")}, ["x", "y", "x"])
    np.testing.assert_array_equal(stacked.numpy(), joint[K.ACTIONS])
    with pytest.raises(ValueError, match="agent_modules"):
        JointEpisodeSampler(ep).sample_by_module(2, "m")
