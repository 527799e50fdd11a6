"""SMAC simulator: interface sizes, masks, observations, reward scaling, seeding, limits, RLlib."""

import numpy as np
import pytest

from rllib_sit.envs import make_env, make_rllib_env
from rllib_sit.envs.smac import MAPS
from rllib_sit.envs.smac.obs import SHOOT_RANGE, SIGHT_RANGE
from rllib_sit.envs.smac.policies import heuristic_actions, random_actions

# map: (obs, state, n_actions, n_agents, n_enemies, limit); the six spec maps + the formula maps.
SPEC = {
    "2s3z": (80, 120, 11, 5, 5, 120),
    "3s_vs_5z": (48, 68, 11, 3, 5, 250),
    "2s_vs_1sc": (17, 27, 7, 2, 1, 300),
    "8m": (80, 168, 14, 8, 8, 120),
    "1c3s5z": (162, 270, 15, 9, 9, 180),
    "10m_vs_11m": (105, 243, 17, 10, 11, 150),
    "3m": (30, 48, 9, 3, 3, 60),
    "3s_vs_3z": (36, 54, 9, 3, 3, 150),
    "3s_vs_4z": (42, 61, 10, 3, 4, 200),
}
MAX_REWARD = {"2s3z": 1020, "3s_vs_5z": 1000, "2s_vs_1sc": 510, "8m": 640, "1c3s5z": 1870, "10m_vs_11m": 805}


@pytest.mark.parametrize("name", sorted(SPEC))
def test_sizes_match_spec(name):
    obs_dim, state_dim, n_actions, n_ag, n_en, limit = SPEC[name]
    env = make_env(f"smac:{name}")
    assert (env.info.obs_dim, env.info.state_dim, env.info.n_actions) == (obs_dim, state_dim, n_actions)
    assert (env.info.n_agents, env.n_enemies, env.info.episode_limit) == (n_ag, n_en, limit)
    obs, infos = env.reset(seed=0)
    assert all(o.shape == (obs_dim,) and o.dtype == np.float32 for o in obs.values())
    assert env.state().shape == (state_dim,)
    assert env.action_masks().shape == (n_ag, n_actions)
    assert infos[env.possible_agents[0]]["action_mask"].shape == (n_actions,)


def test_agent_ids_types_and_max_reward():
    env = make_env("smac:2s3z")
    assert env.possible_agents == ["s1", "s2", "z1", "z2", "z3"]
    assert env.info.agent_types == ["stalker"] * 2 + ["zealot"] * 3
    assert make_env("smac:1c3s5z").possible_agents == ["c1", "s1", "s2", "s3"] + [f"z{i}" for i in range(1, 6)]
    assert make_env("smac:10m_vs_11m").possible_agents == [f"m{i}" for i in range(1, 11)]
    for name, mr in MAX_REWARD.items():
        assert MAPS[name].max_reward == mr


def test_bad_input_raises_clear_value_errors():
    with pytest.raises(ValueError, match="unknown scenario"):
        make_env("smac:4m")
    with pytest.raises(ValueError, match="backend"):
        make_env("smac:2s3z", backend="pysc2")
    env = make_env("smac:3m")
    env.reset(seed=0)
    with pytest.raises(ValueError, match="shape"):
        env._step(np.array([1, 1]))
    with pytest.raises(ValueError, match=r"\[0, 9\)"):
        env._step(np.array([1, 1, 9]))
    with pytest.raises(ValueError, match="not available"):
        env._step(np.array([0, 1, 1]))  # no-op is not available to a living agent (SMAC)
    with pytest.raises(ValueError, match="skill"):
        heuristic_actions(env, np.random.default_rng(0), skill=1.5)
    with pytest.raises(ValueError, match="agent_index"):
        from rllib_sit.envs.smac.policies import heuristic_action
        heuristic_action(env, 3, np.random.default_rng(0))


def _place(env, agent_xy=None, enemy_xy=None):
    b = env.battle
    if agent_xy is not None:
        b.pos[: env.n_agents] = agent_xy
    if enemy_xy is not None:
        b.pos[env.n_agents:] = enemy_xy
    env._refresh()


def test_masks_dead_agent_range_and_pathing():
    env = make_env("smac:3m")
    env.reset(seed=0)
    b = env.battle
    # agent 0 at (10, 16); enemies at distance 5.9, 6.1 and far away
    _place(env, [[10, 16], [10, 12], [10, 20]], [[15.9, 16], [10, 9.9 + 16 - 10 + 0.2], [30, 16]])
    b.pos[env.n_agents + 1] = [10 + 6.1, 16]
    env._refresh()
    m = env.action_masks()
    assert m[0, 0] == 0 and m[0, 1] == 1
    assert m[0, 6] == 1 and m[0, 7] == 0 and m[0, 8] == 0  # 5.9 in range, 6.1 and far not
    assert (SHOOT_RANGE, SIGHT_RANGE) == (6.0, 9.0)
    # pathing: 3m/8m terrain is open for y in [8, 24): at y=8.5 south (y-1=7.5) is blocked
    _place(env, [[10, 8.5], [10, 23.2], [31.5, 16]])
    m = env.action_masks()
    assert m[0, 2] == 1 and m[0, 3] == 0  # N ok, S blocked
    assert m[1, 2] == 0 and m[1, 3] == 1  # N blocked at y=24.2
    assert m[2, 4] == 0 and m[2, 5] == 1  # E out of bounds (x + 1 >= 32)
    _place(env, [[0.5, 16], [10, 12], [10, 20]])
    assert env.action_masks()[0, 5] == 1  # SMAC quirk: int(-0.5) == 0 passes check_bounds
    # dead agent: only the no-op
    b.alive[1] = False
    b.hp[1] = 0.0
    env._refresh()
    m = env.action_masks()
    assert m[1].tolist() == [1.0] + [0.0] * (env.n_actions - 1)
    obs = env._obs()
    assert not obs[1].any()


def test_observation_layout_2s3z():
    env = make_env("smac:2s3z", spawn_jitter=0.0)
    env.reset(seed=0)
    b = env.battle
    _place(env, [[10, 16], [10, 14], [10, 18], [4, 12], [1, 16]],
           [[14, 16], [10, 22], [30, 16], [30, 12], [30, 20]])
    b.sh[5] = 40.0  # enemy 0 (a stalker) at half shields
    b.hp[1] = 40.0  # ally s2 at half HP
    env._refresh()
    o = env._obs()[0]
    assert o[:4].tolist() == [1, 1, 1, 1]
    # enemy block: 5 x (avail, dist, dx, dy, hp, shield, type(2)); enemy 0 is a stalker -> type id 1
    e0 = o[4:12]
    np.testing.assert_allclose(e0, [1, 4 / 9, 4 / 9, 0, 1, 0.5, 0, 1], atol=1e-6)
    e1 = o[12:20]  # stalker at distance 6 north: in shoot range (<= 6)
    np.testing.assert_allclose(e1[:4], [1, 6 / 9, 0, 6 / 9], atol=1e-6)
    assert not o[20:44].any()  # enemies 2..4 out of sight (>= 9)
    # ally block: s2, z1, z2, z3 (self skipped) x (visible, dist, dx, dy, hp, shield, type(2))
    a_s2 = o[44:52]
    np.testing.assert_allclose(a_s2, [1, 2 / 9, 0, -2 / 9, 0.5, 1, 1, 0], atol=1e-6)
    a_z1 = o[52:60]
    np.testing.assert_allclose(a_z1[-2:], [0, 1], atol=1e-6)  # zealot ally type id 1
    np.testing.assert_allclose(o[60:68][:4], [1, np.sqrt(52) / 9, -6 / 9, -4 / 9], atol=1e-6)  # z2 at 7.2
    assert not o[68:76].any()  # z3 at distance exactly 9: not visible (SMAC uses dist < sight)
    # own: hp, shield, type
    np.testing.assert_allclose(o[76:80], [1, 1, 1, 0])


def test_state_layout_and_last_action():
    env = make_env("smac:3m", spawn_jitter=0.0)
    env.reset(seed=0)
    s0 = env.state()
    assert not s0[-27:].any()  # no last action yet
    b = env.battle
    x, y = b.pos[0]
    np.testing.assert_allclose(s0[:4], [1, 0, (x - 16) / 32, (y - 16) / 32], atol=1e-6)
    env._step(np.array([1, 2, 3]))
    s1 = env.state()
    last = s1[-27:].reshape(3, 9)
    assert last.argmax(1).tolist() == [1, 2, 3] and last.sum() == 3


def test_seed_determinism():
    def trace(seed):
        env = make_env("smac:2s3z")
        env.reset(seed=seed)
        rng = np.random.default_rng(7)
        out = []
        for _ in range(30):
            r, te, tr, _ = env._step(random_actions(env, rng))
            out.append((r, env._obs().copy(), env.state().copy()))
            if te or tr:
                break
        return out

    a, b, c = trace(3), trace(3), trace(4)
    assert len(a) == len(b)
    for (ra, oa, sa), (rb, ob, sb) in zip(a, b):
        assert ra == rb and np.array_equal(oa, ob) and np.array_equal(sa, sb)
    assert not np.array_equal(a[0][2], c[0][2])  # another seed -> another spawn jitter


def test_episode_ends_at_limit():
    """2s_vs_1sc: the spine crawler cannot move; agents that only stop out of range never fight."""
    env = make_env("smac:2s_vs_1sc")
    env.reset(seed=0)
    stop = {a: 1 for a in env.possible_agents}
    for t in range(env.info.episode_limit):  # noqa: B007 - t is read after the loop
        obs, rew, term, trunc, infos = env.step(stop)
        done = any(term.values()) or any(trunc.values())
        if done:
            break
    assert t + 1 == 300 and all(trunc.values()) and not any(term.values())
    assert infos["s1"]["episode_limit"] is True and infos["s1"]["battle_won"] is False
    assert infos["s1"]["dead_allies"] == 0 and infos["s1"]["dead_enemies"] == 0
    with pytest.raises(RuntimeError):
        env.step(stop)


def test_full_win_returns_about_20():
    env = make_env("smac:3s_vs_3z")
    rng = np.random.default_rng(0)
    env.reset(seed=0)
    total, done = 0.0, False
    while not done:
        r, te, tr, info = env._step(heuristic_actions(env, rng))
        total += r
        done = te or tr
    assert info["battle_won"] and info["dead_enemies"] == 3
    # damage (HP + shields of all enemies) + 10/kill + 200 = max_reward -> 20; zealot shield
    # regeneration during the fight adds a little (SMAC's abs() reward), never takes away.
    assert 20.0 - 1e-6 <= total <= 21.0


def test_heuristic_beats_random_and_random_actions_are_available():
    env = make_env("smac:2s3z")
    rng = np.random.default_rng(1)
    ret = {}
    for name, pol in (("random", random_actions), ("heuristic", heuristic_actions)):
        rs = []
        for ep in range(3):
            env.reset(seed=ep)
            total, done = 0.0, False
            while not done:
                a = pol(env, rng)
                assert (env.action_masks()[np.arange(env.n_agents), a] == 1).all()
                r, te, tr, _ = env._step(a)
                total += r
                done = te or tr
            rs.append(total)
        ret[name] = np.mean(rs)
    assert ret["heuristic"] > ret["random"] + 5.0


def test_rllib_wrapper_reset_step():
    env = make_rllib_env("smac:2s3z")
    obs, infos = env.reset(seed=0)
    assert set(obs) == {"s1", "s2", "z1", "z2", "z3"}
    assert obs["s1"]["obs"].shape == (80,) and obs["s1"]["action_mask"].shape == (11,)
    assert infos["s1"]["state"].shape == (120,)
    assert env.observation_spaces["s1"].contains(obs["s1"])
    acts = {a: int(np.flatnonzero(obs[a]["action_mask"])[0]) for a in obs}
    obs, rew, term, trunc, infos = env.step(acts)
    assert "__all__" in term and "__all__" in trunc and set(rew) == set(obs) - set()
    assert len({float(v) for v in rew.values()}) == 1  # team reward


def test_agent_stats_and_render(tmp_path):
    env = make_env("smac:2s3z")
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    b = env.battle
    pool0 = float((b.hp[5:] + b.sh[5:]).sum())
    for _ in range(20):
        r, te, tr, _ = env._step(heuristic_actions(env, rng))
        if te or tr:
            break
    st = env.agent_stats()
    assert set(st) >= {"damage_dealt", "kills"} and st["damage_dealt"].shape == (5,)
    lost = pool0 - float((b.hp[5:] + b.sh[5:]).sum())
    # what the agents dealt = what the enemies lost (minus their shield regeneration)
    assert st["damage_dealt"].sum() == pytest.approx(lost, abs=60.0) and st["damage_dealt"].sum() > 0
    path = env.render_png(str(tmp_path / "f.png"))
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
