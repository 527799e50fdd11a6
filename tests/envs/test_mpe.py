"""MPE family: CN_3ls3l, CN_4ls4l, PP_3p1p (partial observability of SIT Table 3, global state,
team rewards, heuristic prey) and their reference policies."""

import numpy as np
import pytest

from rllib_sit.envs import make_env, make_rllib_env
from rllib_sit.envs.base import actions_to_dict
from rllib_sit.envs.mpe import prey_flee_direction
from rllib_sit.envs.mpe_policies import greedy_landmark_assignment, heuristic_action, heuristic_actions

SIZES = {  # env id -> (agent ids, agent type, obs_dim, state_dim)
    "mpe:cn_3ls3l": (["ls1", "ls2", "ls3"], "landmark_seeker", 10, 18),
    "mpe:cn_4ls4l": (["ls1", "ls2", "ls3", "ls4"], "landmark_seeker", 10, 24),
    "mpe:pp_3p1p": (["p1", "p2", "p3"], "predator", 10, 16),
}


def _run(env, actions_fn, seed):
    obs, _ = env.reset(seed=seed)
    trace, done = [np.stack(list(obs.values()))], False
    rewards = []
    while not done:
        obs, rew, term, trunc, _ = env.step(actions_to_dict(env, actions_fn()))
        trace.append(np.stack(list(obs.values())))
        rewards.append(rew[env.possible_agents[0]])
        done = any(term.values()) or any(trunc.values())
    return np.stack(trace), np.array(rewards)


@pytest.mark.parametrize("env_id", sorted(SIZES))
def test_spaces_sizes_and_masks(env_id):
    agents, agent_type, obs_dim, state_dim = SIZES[env_id]
    env = make_env(env_id)
    assert env.possible_agents == agents
    assert set(env.agent_types.values()) == {agent_type}
    assert env.info.discrete and env.info.n_actions == 5 and env.info.episode_limit == 25
    obs, infos = env.reset(seed=0)
    for a in agents:
        assert obs[a].shape == (obs_dim,) and obs[a].dtype == np.float32
        assert env.observation_space(a).contains(obs[a])
        assert env.action_space(a).n == 5
        np.testing.assert_array_equal(infos[a]["action_mask"], np.ones(5, np.float32))
    assert env.state().shape == (state_dim,) == env.state_space.shape
    assert env.action_masks().shape == (len(agents), 5)


@pytest.mark.parametrize("env_id", sorted(SIZES))
def test_episode_length_and_step_after_end(env_id):
    env = make_env(env_id)
    env.reset(seed=1)
    zeros = {a: 0 for a in env.possible_agents}
    for t in range(25):
        _, _, term, trunc, _ = env.step(zeros)
        assert not any(term.values())
        assert all(trunc.values()) == (t == 24)
    with pytest.raises(RuntimeError, match="finished episode"):
        env.step(zeros)


@pytest.mark.parametrize("env_id", sorted(SIZES))
def test_seeded_reset_is_deterministic(env_id):
    env = make_env(env_id)
    runs = []
    for seed in (7, 7, 8):
        rng = np.random.default_rng(0)
        runs.append(_run(env, lambda rng=rng: rng.integers(0, 5, env.info.n_agents), seed))
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    np.testing.assert_array_equal(runs[0][1], runs[1][1])
    assert not np.array_equal(runs[0][0][0], runs[2][0][0])


def test_cn_observation_is_partial_and_state_global():
    """Moving one seeker far away changes the state but not the obs of the seekers that do not see it."""
    env = make_env("mpe:cn_4ls4l")
    env.reset(seed=3)
    obs0, state0 = env._obs().copy(), env.state().copy()
    pos = env.seeker_pos()
    # seekers whose single observed neighbour is not ls1 (index 0)
    blind = [j for j in range(1, 4)
             if np.argsort(np.where(np.arange(4) == j, np.inf, np.linalg.norm(pos - pos[j], axis=1)))[0] != 0]
    assert blind, "seed 3 should have a seeker that does not observe ls1"
    env.seekers[0].state.p_pos = env.seekers[0].state.p_pos + np.array([10.0, 0.0])
    assert not np.allclose(env.state(), state0)
    assert not np.allclose(env._obs()[0], obs0[0])
    for j in blind:
        np.testing.assert_array_equal(env._obs()[j], obs0[j])
    # every agent and every landmark enters the state
    for ent in env.seekers + env.landmarks:
        before = env.state().copy()
        ent.state.p_pos = ent.state.p_pos + 0.5
        assert not np.allclose(env.state(), before)


def test_cn_observation_layout():
    env = make_env("mpe:cn_3ls3l")
    env.reset(seed=5)
    o = env._obs()[1]
    pos, lms = env.seeker_pos(), env.landmark_pos()
    np.testing.assert_allclose(o[2:4], pos[1], atol=1e-6)
    d = np.linalg.norm(lms - pos[1], axis=1)
    np.testing.assert_allclose(o[4:6], lms[np.argmin(d)] - pos[1], atol=1e-6)  # nearest landmark first
    np.testing.assert_allclose(o[6:8], lms[np.argsort(d)[1]] - pos[1], atol=1e-6)
    others = [0, 2]
    k = others[int(np.argmin([np.linalg.norm(pos[k] - pos[1]) for k in others]))]
    np.testing.assert_allclose(o[8:10], pos[k] - pos[1], atol=1e-6)


def test_cn_team_reward_is_n_times_global_reward():
    env = make_env("mpe:cn_3ls3l")
    env.reset(seed=2)
    _, rew, _, _, _ = env.step({"ls1": 2, "ls2": 3, "ls3": 0})
    s = env.state()
    pos, lms = s[:12].reshape(3, 4)[:, :2], s[12:].reshape(3, 2)
    expected = -3 * np.linalg.norm(lms[:, None] - pos[None], axis=2).min(axis=1).sum()
    assert list(rew.values()) == pytest.approx([expected] * 3, abs=1e-5)


def test_pp_reward_prey_flees_and_stays_in_arena():
    env = make_env("mpe:pp_3p1p")
    env.reset(seed=0)
    placements = [(0.5, 0.0), (-1.5, 1.5), (1.5, -1.5)]
    for p, xy in zip(env.predators, placements):
        p.state.p_pos, p.state.p_vel = np.array(xy), np.zeros(2)
    env.prey.state.p_pos, env.prey.state.p_vel = np.zeros(2), np.zeros(2)
    _, rew, _, _, _ = env.step({a: 0 for a in env.possible_agents})
    # the nearest predator is at +x: the prey accelerates straight to -x
    # (MPE integrates position with the old velocity, so the push shows in the velocity first)
    assert env.prey.state.p_vel[0] < 0 and abs(env.prey.state.p_vel[1]) < 1e-12
    env.step({a: 0 for a in env.possible_agents})
    assert env.prey.state.p_pos[0] < 0 and abs(env.prey.state.p_pos[1]) < 1e-12
    d = np.linalg.norm(np.array(placements) - 0.0, axis=1)  # nobody has moved yet
    assert rew["p1"] == pytest.approx(-2.5 * d.sum())
    # pushed against the wall, the prey stays inside [-1, 1]^2
    env.prey.state.p_pos = np.array([-0.99, 0.0])
    for _ in range(5):
        env.step({a: 0 for a in env.possible_agents})
    assert np.all(np.abs(env.prey_pos()) <= 1.0)


def test_pp_catch_bonus_and_state_global():
    env = make_env("mpe:pp_3p1p")
    env.reset(seed=4)
    env.predators[0].state.p_pos = env.prey_pos() + np.array([0.05, 0.0])
    assert env.touching()[0] == 1.0
    assert env._team_reward() == pytest.approx(-2.5 * env.prey_distances().sum() + 10.0)
    state0, obs0 = env.state().copy(), env._obs().copy()
    pos = env.predator_pos()
    env.predators[2].state.p_pos = env.predators[2].state.p_pos + np.array([0.0, 20.0])
    assert not np.allclose(env.state(), state0)
    nearest_of_0 = 1 if np.linalg.norm(pos[1] - pos[0]) < np.linalg.norm(pos[2] - pos[0]) else 2
    if nearest_of_0 == 1:
        np.testing.assert_array_equal(env._obs()[0], obs0[0])
    env.prey.state.p_pos = env.prey.state.p_pos + 0.3
    assert not np.allclose(env._obs()[:, 6:8], obs0[:, 6:8])  # every predator sees the prey


def test_prey_flee_direction_unit():
    d = prey_flee_direction(np.array([0.0, 0.0]), np.array([[0.0, 1.0], [3.0, 3.0], [0.0, -2.0]]))
    np.testing.assert_allclose(d, [0.0, -1.0])


def test_heuristics_beat_random_and_skill_grades_returns():
    env = make_env("mpe:cn_3ls3l")
    means = {}
    for skill in (0.0, 1.0):
        rng = np.random.default_rng(0)
        means[skill] = np.mean([_run(env, lambda rng=rng, skill=skill: heuristic_actions(env, rng, skill), s)[1].sum() for s in range(8)])
    assert means[1.0] > means[0.0] + 50  # ~ -52 vs ~ -160 over 100 episodes


def test_pp_heuristic_chases_prey():
    env = make_env("mpe:pp_3p1p")
    env.reset(seed=0)
    for p, xy in zip(env.predators, [(0.5, 0.0), (0.0, -0.8), (-0.6, 0.1)]):
        p.state.p_pos, p.state.p_vel = np.array(xy), np.zeros(2)
    env.prey.state.p_pos = np.array([0.0, 0.0])
    rng = np.random.default_rng(0)
    assert [heuristic_action(env, i, rng) for i in range(3)] == [1, 4, 2]  # left, up, right


def test_cn_assignment_is_a_matching_and_policy_input_checks():
    env = make_env("mpe:cn_4ls4l")
    env.reset(seed=9)
    assert sorted(greedy_landmark_assignment(env)) == [0, 1, 2, 3]
    rng = np.random.default_rng(0)
    assert heuristic_actions(env, rng, [0.0, 0.5, 1.0, 1.0]).shape == (4,)
    with pytest.raises(ValueError, match="skill"):
        heuristic_actions(env, rng, 1.5)
    with pytest.raises(ValueError, match="skill"):
        heuristic_actions(env, rng, [1.0, 1.0])


def test_agent_stats_per_agent():
    env = make_env("mpe:cn_3ls3l")
    rng = np.random.default_rng(1)
    _run(env, lambda: heuristic_actions(env, rng, 1.0), 0)
    stats = env.agent_stats()
    assert stats["mean_dist_nearest_landmark"].shape == (3,)
    np.testing.assert_allclose(stats["final_dist_nearest_landmark"], env.nearest_landmark_distances(), atol=1e-6)
    env = make_env("mpe:pp_3p1p")
    _run(env, lambda: np.zeros(3, int), 0)
    assert set(env.agent_stats()) == {"mean_dist_to_prey", "catches"}


def test_bad_input_names_the_parameter():
    with pytest.raises(ValueError, match="unknown scenario"):
        make_env("mpe:cn_5ls5l")
    with pytest.raises(ValueError, match="bad keyword"):
        make_env("mpe:cn_3ls3l", sight=2)
    with pytest.raises(ValueError, match="episode_limit"):
        make_env("mpe:pp_3p1p", episode_limit=0)
    env = make_env("mpe:cn_3ls3l")
    env.reset(seed=0)
    with pytest.raises(ValueError, match="actions must be in"):
        env.step({"ls1": 5, "ls2": 0, "ls3": 0})


@pytest.mark.parametrize("env_id", ["mpe:cn_3ls3l", "mpe:pp_3p1p"])
def test_rllib_wrapper_reset_step(env_id):
    env = make_rllib_env(env_id)
    obs, infos = env.reset(seed=0)
    a0 = env.possible_agents[0]
    assert set(obs[a0]) == {"obs", "action_mask"} and obs[a0]["obs"].shape == (10,)
    assert infos[a0]["state"].shape == (SIZES[env_id][3],)
    for _ in range(25):
        obs, rew, term, trunc, infos = env.step({a: 1 for a in env.possible_agents})
    # RLlib's convention (its env checker): agents stay listed on the final step, until the next reset.
    assert trunc["__all__"] and not term["__all__"] and env.agents == env.possible_agents
    assert len(set(rew.values())) == 1  # one team reward


# ------------------------------------------------------------------------------------------------
# The differential game of the VD+TN paper (§5.4): mpe:dg (full observation), mpe:dg_partial
# ------------------------------------------------------------------------------------------------

DG_OBS_DIM = {"mpe:dg": 2, "mpe:dg_partial": 1, "mpe:dg50": 2, "mpe:dg50_partial": 1}
DG_LIMIT = {"mpe:dg": 25, "mpe:dg_partial": 25, "mpe:dg50": 50, "mpe:dg50_partial": 50}


@pytest.mark.parametrize("env_id", sorted(DG_OBS_DIM))
def test_dg_spaces_and_observation(env_id):
    env = make_env(env_id)
    assert env.info.env_id == env_id and env.possible_agents == ["a1", "a2"]
    assert not env.info.discrete and env.info.act_dim == 1 and env.info.obs_dim == DG_OBS_DIM[env_id]
    obs, _ = env.reset(seed=0)
    x = env.state()
    assert x.shape == (2,) == env.state_space.shape  # the global state is [x1, x2] in both settings
    for i, a in enumerate(env.possible_agents):
        assert obs[a].shape == (DG_OBS_DIM[env_id],) and obs[a].dtype == np.float32
        assert env.observation_space(a).contains(obs[a])
        assert obs[a][0] == x[i]  # own position first
        if DG_OBS_DIM[env_id] == 2:
            assert obs[a][1] == x[1 - i]  # full: the other agent's position too
        np.testing.assert_allclose(env.action_space(a).low, [-0.1])
        np.testing.assert_allclose(env.action_space(a).high, [0.1])


@pytest.mark.parametrize("full_id", ["mpe:dg", "mpe:dg50"])
def test_dg_full_and_partial_share_dynamics_and_rewards(full_id):
    """Same seed and actions: the same positions, rewards and episode ends (after the id's number of
    steps); the partial observation is the full one cut to the agent's own position."""
    full, part = make_env(full_id), make_env(f"{full_id}_partial")
    assert full.info.episode_limit == part.info.episode_limit == DG_LIMIT[full_id]
    rng = np.random.default_rng(0)
    for seed in (0, 1):
        of, _ = full.reset(seed=seed)
        op, _ = part.reset(seed=seed)
        done, steps = False, 0
        while not done:
            steps += 1
            np.testing.assert_array_equal(full.state(), part.state())
            for a in full.possible_agents:
                np.testing.assert_array_equal(op[a], of[a][:1])
            act = rng.uniform(-0.15, 0.15, 2)  # also beyond the speed limit (clipped)
            of, rf, tf, trf, _ = full.step({a: act[i:i + 1] for i, a in enumerate(full.possible_agents)})
            op, rp, tp, trp, _ = part.step({a: act[i:i + 1] for i, a in enumerate(part.possible_agents)})
            assert rf == rp and tf == tp and trf == trp
            done = any(trf.values())
        assert steps == DG_LIMIT[full_id]
        np.testing.assert_array_equal(full.agent_stats()["mean_abs_position"],
                                      part.agent_stats()["mean_abs_position"])


@pytest.mark.parametrize("full_id", ["mpe:dg", "mpe:dg50"])
def test_dg_partial_is_always_partial(full_id):
    assert make_env(full_id, observe="partial").info.obs_dim == 1  # the kwarg still works on the full id
    assert make_env(f"{full_id}_partial", observe="partial").info.obs_dim == 1
    with pytest.raises(ValueError, match=f"{full_id}_partial: observe is always 'partial'"):
        make_env(f"{full_id}_partial", observe="full")


def test_dg_episode_limit_is_an_option():
    """The id sets the default length; ``episode_limit`` overrides it on every DG id."""
    assert make_env("mpe:dg", episode_limit=50).info.episode_limit == 50
    assert make_env("mpe:dg50", episode_limit=10).info.episode_limit == 10
    with pytest.raises(ValueError, match="mpe:dg50: episode_limit must be a positive int"):
        make_env("mpe:dg50", episode_limit=0)
