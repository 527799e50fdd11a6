"""Behaviour policy pools: loading cards, member kinds, clear errors, calibration, and the
committed pool cards of the eleven SIT maps (measured returns inside the paper's ranges)."""

import json

import numpy as np
import pytest

from rllib_sit.data.composition import load_specs
from rllib_sit.data.pools import Candidate, PoolMember, calibrate, load_pool, pool_card_path, pools_dir, pool_table
from rllib_sit.envs.base import CoopEnv, EnvInfo

SIT_MAPS = ["smac:2s3z", "smac:3s_vs_5z", "smac:2s_vs_1sc", "smac:8m", "smac:1c3s5z", "smac:10m_vs_11m",
            "mpe:cn_3ls3l", "mpe:cn_4ls4l", "mpe:pp_3p1p", "mamujoco:halfcheetah_2l", "mamujoco:walker_2l"]


class ToyEnv(CoopEnv):
    """2 agents, 3 actions, 4 steps; reward = number of agents taking action 2; action 1 masked."""

    def __init__(self):
        self.info = EnvInfo(env_id="toy:pool", agents=["a1", "a2"], agent_types=["x", "x"], obs_dim=1,
                            state_dim=1, episode_limit=4, discrete=True, n_actions=3)
        super().__init__()
        self.t = 0

    def _reset(self, seed):
        self.t = 0

    def _step(self, actions):
        self.t += 1
        return float(np.sum(actions == 2)), False, self.t >= 4, {}

    def _obs(self):
        return np.zeros((2, 1), np.float32)

    def state(self):
        return np.zeros(1, np.float32)

    def action_masks(self):
        return np.array([[1, 0, 1], [1, 0, 1]], np.float32)


def heuristic(env, i, rng, skill=1.0):
    """Module-level so a pool card can name it as ``test_pools:heuristic``."""
    if rng.random() < skill:
        return 2
    return int(rng.choice(np.flatnonzero(env.action_masks()[i])))


def write_card(tmp_path, levels, env="toy:pool"):
    path = pool_card_path(env, tmp_path)
    path.write_text(json.dumps({"env": env, "paper_ranges": {}, "levels": levels}))
    return path


def test_load_pool_gives_per_agent_callables(tmp_path):
    write_card(tmp_path, {"random": [{"kind": "uniform", "params": {}}],
                          "expert": [{"kind": "heuristic", "params": {"fn": "test_pools:heuristic", "skill": 1.0}}]})
    pool = load_pool("toy:pool", tmp_path)
    env = ToyEnv()
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    assert pool["expert"](env, 0, rng) == 2
    assert pool["e"](env, 1, rng) == 2  # letters work too
    draws = {pool["random"](env, 0, rng) for _ in range(50)}
    assert draws == {0, 2}  # uniform over *available* actions only
    with pytest.raises(ValueError, match=r"policy pool of toy:pool has no 'medium' level; it has \['expert', 'random'\]"):
        pool["medium"]


def test_pool_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no policy pool for toy:none .* python -m rllib_sit.data.pools build"):
        load_pool("toy:none", tmp_path)
    write_card(tmp_path, {"random": [{"kind": "magic"}]})
    with pytest.raises(ValueError, match=r"level random: member kind 'magic' is unknown; expected one of"):
        load_pool("toy:pool", tmp_path)
    write_card(tmp_path, {"best": [{"kind": "uniform"}]})
    with pytest.raises(ValueError, match=r"unknown pool level 'best'; expected one of \['random', 'medium', 'expert'\]"):
        load_pool("toy:pool", tmp_path)
    pool_card_path("toy:other", tmp_path).write_text(json.dumps({"env": "toy:pool", "levels": {}}))
    with pytest.raises(ValueError, match=r"pool card is for env 'toy:pool', expected 'toy:other'"):
        load_pool("toy:other", tmp_path)
    m = PoolMember("heuristic", {"fn": "no_such_module:f", "skill": 1.0})
    with pytest.raises(ValueError, match=r"policy function 'no_such_module:f' cannot be imported"):
        m.build(tmp_path)


def test_continuous_uniform_corners():
    class Box(ToyEnv):
        def __init__(self):
            super().__init__()
            self.info = EnvInfo(env_id="toy:box", agents=["a1", "a2"], agent_types=["x", "x"], obs_dim=1,
                                state_dim=1, episode_limit=4, discrete=False, act_dim=3)

    act = PoolMember("uniform", {"support": "corners"}).build()
    a = act(Box(), 0, np.random.default_rng(0))
    assert a.shape == (3,) and set(np.abs(a).tolist()) == {1.0}


def test_calibrate_bisects_skill_into_range():
    env = ToyEnv()
    cand = Candidate("heuristic", {"fn": "test_pools:heuristic", "skill": 0.0}, "toy", knob="skill")
    member, mean = calibrate(env, cand, (4.0, 6.0), n_episodes=20, seed=0, log=lambda *_: None)
    assert 4.0 <= mean <= 6.0
    assert 0.0 < member.params["skill"] < 1.0
    # out of reach: full skill scores 8 at most
    assert calibrate(env, cand, (9.0, 10.0), n_episodes=5, seed=0, log=lambda *_: None) is None


@pytest.mark.parametrize("env_id", SIT_MAPS)
def test_committed_pool_cards(env_id):
    """Every SIT map has a pool card; each member present was measured on >= 50 episodes inside
    the paper's range, and each absent level is explained under missing_levels."""
    path = pool_card_path(env_id)
    assert path.exists(), f"missing {path}; run python -m rllib_sit.data.pools build --env {env_id}"
    card = json.loads(path.read_text())
    spec = load_specs()[env_id]
    assert {k: tuple(v) for k, v in card["paper_ranges"].items()} == spec.pool_ranges
    for lvl in ("random", "medium", "expert"):
        members = card["levels"].get(lvl, [])
        if not members:
            assert lvl in card["missing_levels"], f"{env_id}: {lvl} level neither built nor explained"
        for m in members:
            mr = m["measured_return"]
            assert mr["n"] >= 50, (env_id, lvl, mr)
            if mr.get("stand_in"):  # best available policy below the range, explained
                assert lvl in card["missing_levels"] and not mr["in_range"]
                continue
            assert mr["in_range"], (env_id, lvl, mr)
            lo, hi = spec.pool_ranges[lvl]
            assert lo <= mr["mean"] <= hi
    pool = load_pool(env_id)
    for lvl in card["levels"]:
        assert callable(pool[lvl])


def test_pool_table_lists_every_level():
    rows = pool_table(pools_dir())
    assert {(r["env"], r["level"]) for r in rows} >= {(e, l) for e in SIT_MAPS for l in ("random", "medium", "expert")}


def test_pool_card_reproduces_on_current_env():
    """Guards against a silently stale pool: re-measuring the MPE CN_3ls3l members (fast) on the
    card's evaluation seeds gives the card's numbers; if the simulator changed, rebuild the pools."""
    from rllib_sit.data.pools import measure
    from rllib_sit.envs.registry import make_env

    card = json.loads(pool_card_path("mpe:cn_3ls3l").read_text())
    pool = load_pool("mpe:cn_3ls3l")
    env = make_env("mpe:cn_3ls3l")
    seed = int(card["eval_seeds"].split("..")[0])
    for lvl, members in pool.levels.items():
        got = measure(env, members[0].build(pool.base_dir), 10, seed)
        want = members[0].measured["first10_mean"]
        assert got["mean"] == pytest.approx(want, abs=1e-3), \
            f"{lvl}: card {want} vs now {got['mean']} (first 10 eval episodes): rebuild with {card['rebuild']}"
