"""MAMuJoCo family: sizes, agent types, global state, early termination, seeding, RLlib wrapper."""

import os

import numpy as np
import pytest

from rllib_sit.envs import make_env, make_rllib_env, uniform_random_actions
from rllib_sit.envs.base import actions_to_dict

SIZES = {  # id -> (agents, types, obs_dim, state_dim, act_dim, episode_limit)
    "mamujoco:halfcheetah_2l": (["l1", "l2"], ["leg_back", "leg_front"], 12, 17, 3, 200),
    "mamujoco:walker_2l": (["l1", "l2"], ["leg_right", "leg_left"], 12, 17, 3, 200),
    "mamujoco:hopper_3x1": (["l1", "l2", "l3"], ["thigh", "leg", "foot"], 9, 11, 1, 1000),
    "mamujoco:ant_2x4": (["l1", "l2"], ["legs_front", "legs_back"], 63, 105, 4, 1000),
}


@pytest.fixture(scope="module")
def cheetah():
    env = make_env("mamujoco:halfcheetah_2l")
    yield env
    env.close()


@pytest.mark.parametrize("env_id", sorted(SIZES))
def test_spaces_and_sizes(env_id):
    agents, types, obs_dim, state_dim, act_dim, limit = SIZES[env_id]
    env = make_env(env_id)
    assert env.possible_agents == agents and [env.agent_types[a] for a in agents] == types
    assert not env.info.discrete and env.info.act_dim == act_dim and env.info.episode_limit == limit
    assert (env.info.action_low, env.info.action_high) == (-1.0, 1.0)
    obs, infos = env.reset(seed=0)
    for a in agents:
        assert obs[a].shape == (obs_dim,) and env.action_space(a).shape == (act_dim,)
        assert "action_mask" not in infos[a]
    assert env.state().shape == (state_dim,)
    assert env.action_masks().shape == (len(agents), 0)
    env.close()


def test_hopper_pads_short_observations():
    env = make_env("mamujoco:hopper_3x1")
    obs, _ = env.reset(seed=0)
    sizes = [env.env.observation_space(k).shape[0] for k in env.env.possible_agents]
    assert sizes == [8, 9, 8]
    assert obs["l1"][8] == 0.0 and obs["l3"][8] == 0.0
    np.testing.assert_array_equal(obs["l2"], env._last_obs[env.env.possible_agents[1]].astype(np.float32))


def test_state_is_single_agent_observation_and_depends_on_every_agent(cheetah):
    cheetah.reset(seed=0)
    np.testing.assert_allclose(cheetah.state(), cheetah.env.unwrapped.single_agent_env.unwrapped._get_obs(),
                               rtol=1e-6)
    states = []
    for a1, a2 in [(0.0, 0.0), (1.0, 0.0), (0.0, 1.0)]:
        cheetah.reset(seed=0)
        cheetah.step({"l1": np.full(3, a1, np.float32), "l2": np.full(3, a2, np.float32)})
        states.append(cheetah.state())
    assert not np.allclose(states[0], states[1]) and not np.allclose(states[0], states[2])


def test_episode_length_truncation_and_seeding(cheetah):
    traces = []
    for _ in range(2):
        obs, _ = cheetah.reset(seed=11)
        first = obs["l1"].copy()
        steps, done, ret = 0, False, 0.0
        while not done:
            _, rew, term, trunc, _ = cheetah.step(actions_to_dict(cheetah, np.zeros((2, 3), np.float32)))
            steps, ret = steps + 1, ret + rew["l1"]
            done = term["l1"] or trunc["l1"]
        traces.append((first, ret))
        assert steps == 200 and trunc["l1"] and not term["l1"]
    np.testing.assert_array_equal(traces[0][0], traces[1][0])
    assert traces[0][1] == traces[1][1]
    other, _ = cheetah.reset(seed=12)
    assert not np.array_equal(other["l1"], traces[0][0])


def test_walker_terminates_early_when_unhealthy():
    env = make_env("mamujoco:walker_2l")
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    for t in range(200):  # noqa: B007 - t is read after the loop
        _, _, term, trunc, _ = env.step(actions_to_dict(env, uniform_random_actions(env, rng)))
        if term["l1"] or trunc["l1"]:
            break
    assert term["l1"] and not trunc["l1"] and t < 199
    stats = env.agent_stats()
    assert stats["mean_abs_action"].shape == (2,) and np.all((stats["mean_abs_action"] > 0.3) & (stats["mean_abs_action"] < 0.7))


def test_bad_input_and_episode_limit_kwarg():
    with pytest.raises(ValueError, match="unknown scenario"):
        make_env("mamujoco:swimmer_2l")
    with pytest.raises(ValueError, match="unknown keyword"):
        make_env("mamujoco:walker_2l", obsk=2)
    env = make_env("mamujoco:hopper_3x1", episode_limit=5)
    env.reset(seed=0)
    for _ in range(5):
        _, _, term, trunc, _ = env.step({a: np.zeros(1, np.float32) for a in env.possible_agents})
    assert trunc["l1"] or term["l1"]


def test_no_mujoco_log_in_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    env = make_env("mamujoco:ant_2x4")  # compiling the Ant model emits a MuJoCo deprecation warning
    env.reset(seed=0)
    env.close()
    assert not os.path.exists(tmp_path / "MUJOCO_LOG.TXT")


def test_rllib_wrapper_reset_step():
    env = make_rllib_env("mamujoco:walker_2l")
    obs, infos = env.reset(seed=0)
    assert set(obs["l1"]) == {"obs"} and infos["l2"]["state"].shape == (17,)
    obs, rew, term, trunc, _ = env.step({"l1": np.zeros(3, np.float32), "l2": np.zeros(3, np.float32)})
    assert rew["l1"] == rew["l2"] and "__all__" in term and "__all__" in trunc


def test_sine_gait_heuristic_beats_random_and_is_graded(cheetah):
    from rllib_sit.envs.mamujoco import heuristic_actions

    rets = {}
    for skill in (0.0, 1.0):
        rng = np.random.default_rng(0)
        cheetah.reset(seed=0)
        total, done = 0.0, False
        while not done:
            _, rew, term, trunc, _ = cheetah.step(actions_to_dict(cheetah, heuristic_actions(cheetah, rng, skill)))
            total, done = total + rew["l1"], term["l1"] or trunc["l1"]
        rets[skill] = total
    assert rets[1.0] > 150 > 0 > rets[0.0]  # ~ +200 vs ~ -65 over 200 steps
    with pytest.raises(ValueError, match="no scripted gait"):
        heuristic_actions(make_env("mamujoco:hopper_3x1"), np.random.default_rng(0))
    with pytest.raises(ValueError, match="skill"):
        heuristic_actions(cheetah, np.random.default_rng(0), [1.0])
