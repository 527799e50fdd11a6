"""Seed games of the decentralized-MARL paper: the Table 1 matrix game (``matrix:vdtn``) and the
§5.4 differential game (``mpe:dg``, full and partial observation)."""

import numpy as np
import pytest

from rllib_sit.envs import make_env, make_rllib_env
from rllib_sit.envs.games import BEHAVIOUR_PROBS, OPTIMAL_ACTIONS, PAYOFF, behaviour_actions, expected_return
from rllib_sit.envs.mpe import dg_reward
from rllib_sit.envs.mpe_policies import heuristic_actions


def test_matrix_payoffs_one_step_and_masks():
    env = make_env("matrix:vdtn")
    assert env.possible_agents == ["a1", "a2"] and env.info.n_actions == 2 and env.info.episode_limit == 1
    for a1 in range(2):
        for a2 in range(2):
            obs, infos = env.reset(seed=0)
            np.testing.assert_array_equal(infos["a2"]["action_mask"], [1.0, 1.0])
            assert obs["a1"].shape == (1,) and env.state().shape == (1,)
            _, rew, term, trunc, _ = env.step({"a1": a1, "a2": a2})
            assert rew["a1"] == rew["a2"] == PAYOFF[a1, a2]
            assert term["a1"] and not trunc["a1"]
    assert PAYOFF.tolist() == [[1, 5], [6, 1]] and PAYOFF[tuple(OPTIMAL_ACTIONS)] == PAYOFF.max()


def test_behaviour_policies_reproduce_table_2():
    """The expected returns each agent computes from the behaviour data (paper Table 2)."""
    p1, p2 = BEHAVIOUR_PROBS
    np.testing.assert_allclose([p1, p2], [[0.8, 0.2], [0.4, 0.6]])
    eye = np.eye(2)
    assert [expected_return(eye[a], p2) for a in range(2)] == pytest.approx([3.4, 3.0])  # agent 1
    assert [expected_return(p1, eye[a]) for a in range(2)] == pytest.approx([2.0, 4.2])  # agent 2
    rng = np.random.default_rng(0)
    draws = np.stack([behaviour_actions(rng) for _ in range(4000)])
    np.testing.assert_allclose((draws == 0).mean(axis=0), [0.8, 0.4], atol=0.03)


def test_matrix_bad_input():
    env = make_env("matrix:vdtn")
    env.reset()
    with pytest.raises(ValueError, match="actions must be in"):
        env.step({"a1": 2, "a2": 0})
    with pytest.raises(ValueError, match="payoff"):
        make_env("matrix:vdtn", payoff=[1, 2, 3])
    with pytest.raises(ValueError, match="unknown scenario"):
        make_env("matrix:climb")


def test_dg_reward_pieces():
    assert dg_reward(0.0, 0.0) == pytest.approx(1.0)
    assert dg_reward(0.1, 0.0) == pytest.approx(0.5 * (np.cos(1.5) + 1))
    assert dg_reward(0.3, 0.3) == 0.0
    assert dg_reward(1.0, 1.0) == pytest.approx(0.5 * (np.sqrt(2) - 0.6) ** 2)


@pytest.mark.parametrize("observe,obs_dim", [("full", 2), ("partial", 1)])
def test_dg_observation_modes_and_dynamics(observe, obs_dim):
    env = make_env("mpe:dg", observe=observe)
    assert env.info.obs_dim == obs_dim and env.info.state_dim == 2 and env.info.act_dim == 1
    assert (env.info.action_low, env.info.action_high) == (-0.1, 0.1)
    obs, _ = env.reset(seed=3)
    x = env.x.copy()
    np.testing.assert_allclose(env.state(), x, rtol=1e-6)
    np.testing.assert_allclose(obs["a1"], x[[0, 1]][:obs_dim], rtol=1e-6)
    np.testing.assert_allclose(obs["a2"], x[[1, 0]][:obs_dim], rtol=1e-6)
    _, rew, _, trunc, _ = env.step({"a1": np.array([0.5]), "a2": np.array([-0.05])})  # a1's speed clipped to 0.1
    expect = np.clip(x + [0.1, -0.05], -1, 1)
    np.testing.assert_allclose(env.x, expect)
    assert rew["a1"] == pytest.approx(float(dg_reward(*expect)))
    for _ in range(24):
        _, _, term, trunc, _ = env.step({"a1": np.array([1.0]), "a2": np.array([1.0])})
    assert trunc["a1"] and not term["a1"] and np.all(env.x <= 1.0)


def test_dg_partial_obs_hides_other_agent_but_state_is_global():
    env = make_env("mpe:dg", observe="partial")
    env.reset(seed=0)
    before, state = env._obs().copy(), env.state().copy()
    env.x[1] = -env.x[1] + 0.01
    assert env._obs()[0] == before[0] and not np.allclose(env.state(), state)


def test_dg_seeding_and_heuristic():
    env = make_env("mpe:dg")
    starts = []
    for seed in (1, 1, 2):
        env.reset(seed=seed)
        starts.append(env.x.copy())
    np.testing.assert_array_equal(starts[0], starts[1])
    assert not np.array_equal(starts[0], starts[2])
    rng = np.random.default_rng(0)
    env.reset(seed=1)
    total = 0.0
    for _ in range(25):
        a = heuristic_actions(env, rng, 1.0)
        _, rew, _, _, _ = env.step({"a1": a[0], "a2": a[1]})
        total += rew["a1"]
    assert np.allclose(env.x, 0.0) and total > 10  # reaches the global optimum r = 1 at the origin
    with pytest.raises(ValueError, match="observe"):
        make_env("mpe:dg", observe="local")


@pytest.mark.parametrize("env_id", ["matrix:vdtn", "mpe:dg"])
def test_rllib_wrapper_reset_step(env_id):
    env = make_rllib_env(env_id)
    obs, infos = env.reset(seed=0)
    act = {"a1": 1, "a2": 0} if env_id.startswith("matrix") else {"a1": np.zeros(1), "a2": np.zeros(1)}
    obs, rew, term, trunc, infos = env.step(act)
    assert rew["a1"] == rew["a2"]
    if env_id.startswith("matrix"):
        assert set(obs["a1"]) == {"obs", "action_mask"} and rew["a1"] == 6.0 and term["__all__"]
    else:
        assert set(obs["a1"]) == {"obs"} and not term["__all__"] and infos["a1"]["state"].shape == (2,)


@pytest.mark.parametrize("env_id", ["mpe:cn_3ls3l", "mpe:pp_3p1p", "mpe:dg", "matrix:vdtn",
                                    "mamujoco:halfcheetah_2l"])
def test_agent_stats_before_reset_and_data_rollout(env_id):
    """Regression: the data layer's rollout_episode reads agent_stats() names before reset()."""
    from rllib_sit.data.episode import rollout_episode
    from rllib_sit.envs import uniform_random_actions

    env = make_env(env_id)
    names = list(env.agent_stats())
    assert names and all(v.shape == (env.info.n_agents,) for v in env.agent_stats().values())
    rng = np.random.default_rng(0)
    row = rollout_episode(env, lambda e, obs: uniform_random_actions(e, rng), seed=0, episode_id=0)
    assert row["agent_stats"].shape == (env.info.n_agents, len(names))
    env.close()
