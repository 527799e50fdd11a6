"""Pools fitted to the paper's dataset averages (issue 20, :mod:`rllib_sit.data.pool_fit`).

The env below has closed-form returns, so every expectation is arithmetic, not a call of the code
under test: 2 agents, 5 steps, box actions in [-1, 1]^2, reward −|a0 − 0.5|₁ − |a1 + 0.5|₁ per step.
Per agent and step: the optimum costs 0, a box-uniform action 1.25 (E|U − 0.5| = 0.625 per
dimension), a corner action 2.0. So an all-uniform team scores −12.5, an all-corner team −20.
"""

import numpy as np
import pytest

from rllib_sit.data import pool_fit as F
from rllib_sit.data.composition import DatasetSpec, EnvSpec, parse_composition
from rllib_sit.data.pool_card import PoolMember, check_member
from rllib_sit.envs.base import CoopEnv, EnvInfo

ENV_ID = "fitbox:coop"
TARGET = np.array([[0.5, 0.5], [-0.5, -0.5]], np.float32)  # each agent's optimal action


class BoxEnv(CoopEnv):
    def __init__(self):
        self.info = EnvInfo(env_id=ENV_ID, agents=["l0", "l1"], agent_types=["leg", "leg"], obs_dim=2, state_dim=2,
                            episode_limit=5, discrete=False, act_dim=2)
        super().__init__()

    def _reset(self, seed):
        self.t = 0

    def _step(self, actions):
        r = -float(np.abs(np.asarray(actions, np.float64) - TARGET).sum())
        self.t += 1
        return r, False, self.t >= 5, {}

    def _obs(self):
        return np.full((2, 2), self.t / 5.0, np.float32)

    def state(self):
        return np.full(2, self.t / 5.0, np.float32)


def heuristic(env, i, rng, skill=1.0):
    """The optimum with probability ``skill``, else a box-uniform action (the families' convention)."""
    if rng.random() < skill:
        return TARGET[i].copy()
    return rng.uniform(-1.0, 1.0, 2).astype(np.float32)


HEUR = f"{__name__}:heuristic"


def _spec(datasets):
    agents = ["l0", "l1"]
    return EnvSpec(ENV_ID, agents, {"random": (-20.0, -11.0), "medium": (-11.0, -4.0), "expert": (-4.0, 0.0)},
                   {q: DatasetSpec(ENV_ID, q, parse_composition(c, agents), avg, "Table 9") for q, (c, avg)
                    in datasets.items()})


def test_ladder_grades_map_to_members_and_back():
    for family, discrete, key in (("smac", True, "attack_drop"), ("mpe", True, "drift"), ("mamujoco", False,
                                                                                         "corner_prob")):
        m = F.ladder_member(family, discrete, HEUR, -0.25)
        assert (m.kind, m.params) == ("uniform", {key: 0.25})
        check_member(m.kind, m.params, "test")
        assert F.grade_of(m) == -0.25
    m = F.ladder_member("mpe", True, HEUR, 0.6)
    assert (m.kind, m.params) == ("heuristic", {"fn": HEUR, "skill": 0.6}) and F.grade_of(m) == 0.6
    assert F.grade_of(PoolMember("uniform", {"support": "corners"})) == -1.0
    assert F.ladder_member("mpe", True, None, 0.6).params == {}  # no controller: uniform actions


def test_new_uniform_params_do_what_they_say():
    env = BoxEnv()
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    corners = PoolMember("uniform", {"corner_prob": 1.0}).build()
    box = PoolMember("uniform", {"corner_prob": 0.0}).build()
    a = np.stack([corners(env, 0, rng) for _ in range(200)])
    assert set(np.unique(a)) == {-1.0, 1.0}
    b = np.stack([box(env, 0, rng) for _ in range(200)])
    assert (np.abs(b) < 1.0).all() and b.std() > 0.4
    half = np.stack([PoolMember("uniform", {"corner_prob": 0.5}).build()(env, 0, rng) for _ in range(2000)])
    share = np.mean(np.all(np.abs(half) == 1.0, axis=1))
    assert 0.45 < share < 0.55


def test_drift_repeats_the_agents_own_move():
    class Disc(BoxEnv):
        def __init__(self):
            super().__init__()
            self.info = EnvInfo(env_id=ENV_ID, agents=["l0", "l1"], agent_types=["leg", "leg"], obs_dim=2,
                                state_dim=2, episode_limit=5, discrete=True, n_actions=5)

        def action_masks(self):
            return np.ones((2, 5), np.float32)

    env, rng = Disc(), np.random.default_rng(1)
    always = PoolMember("uniform", {"drift": 1.0}).build()
    assert {always(env, 0, rng) for _ in range(50)} == {1} and {always(env, 1, rng) for _ in range(50)} == {2}
    never = [PoolMember("uniform", {"drift": 0.0}).build()(env, 0, rng) for _ in range(500)]
    assert set(never) == {0, 1, 2, 3, 4}


def test_band_interval_and_golden_section_on_known_functions():
    iv = F.band_interval(lambda g: 10.0 + 10.0 * g, (5.0, 12.0))
    assert iv[0] == pytest.approx(-0.5, abs=2 / 2 ** 7) and iv[1] == pytest.approx(0.2, abs=2 / 2 ** 7)
    assert iv[0] >= -0.5 and iv[1] <= 0.2  # both ends inside the band
    assert F.band_interval(lambda g: 30.0 + g, (0.0, 6.0)) is None
    x, fx = F.golden_section(lambda x: (x - 0.3) ** 2, -1.0, 1.0, x0=-0.9, iters=12)
    assert x == pytest.approx(0.3, abs=0.01) and fx < 1e-4


def test_composition_return_is_the_closed_form():
    env = BoxEnv()
    opt = PoolMember("heuristic", {"fn": HEUR, "skill": 1.0})
    zero = PoolMember("uniform", {}, fn=lambda env, i, rng, obs=None: np.zeros(2, np.float32))
    members = {"random": zero, "medium": opt, "expert": opt}
    both = parse_composition("50% [l0:r, l1:r] + 50% [l0:m, l1:m]", ["l0", "l1"])
    # the zero action costs exactly 1.0 per agent and step: 50% of episodes at -10, 50% at 0
    assert F.composition_return(env, both, members, 10, seed=0) == pytest.approx(-5.0)
    mixed = parse_composition("100% [l0:e, l1:r]", ["l0", "l1"])
    assert F.composition_return(env, mixed, members, 7, seed=3) == pytest.approx(-5.0)


def test_fit_brings_every_dataset_to_its_target_with_members_in_their_bands():
    """Targets reachable inside the bands (R_r = −13, R_m = −7, R_e = −3 solve both): after the fit both
    datasets are within tolerance on fresh episodes and every member's all-agents return is in its band."""
    from rllib_sit.data.pool_calibration import measure

    spec = _spec({"low": ("50% [l0:r, l1:r] + 50% [l0:m, l1:m]", -10.0), "medium": ("100% [l0:r, l1:e]", -8.0)})
    env = BoxEnv()
    start = {"random": PoolMember("uniform", {}), "medium": PoolMember("heuristic", {"fn": HEUR, "skill": 0.5}),
             "expert": PoolMember("heuristic", {"fn": HEUR, "skill": 1.0})}
    res = F.fit_pool(env, spec, "mamujoco", HEUR, start, cal_episodes=60, fit_episodes=60, seed=0, log=lambda *_: None)
    out = F.measure_datasets(env, spec, "mamujoco", res["members"], res["fit"], 400, seed=7)
    for q, target in (("low", -10.0), ("medium", -8.0)):
        assert abs(out[q]["measured_average_return"] - target) <= 0.15 * abs(target), out
        assert out[q]["within"]
    for lvl, (lo, hi) in spec.pool_ranges.items():
        r = measure(env, res["members"][lvl].build(), 200, 11)["mean"]
        assert lo <= r <= hi, (lvl, r)
    # the start (uniform random -12.5, medium -6.9) put "medium" 1.7 above its target: the fit moved it
    assert F.composition_return(env, spec.datasets["medium"].composition, start, 200, 7) > -7.0


def test_fit_targets_only_tables_7_to_9():
    spec = _spec({"low": ("100% [l0:r, l1:r]", -15.0)})
    other = DatasetSpec(ENV_ID, "vdtn", parse_composition("100% [l0:r, l1:r]", ["l0", "l1"]), -1.0, "VD+TN §5.3")
    spec.datasets["vdtn"] = other
    assert set(F.fit_targets(spec)) == {"low"}
    assert F.tolerance("smac", 3.24) == 0.5 and F.tolerance("smac", 10.0) == pytest.approx(1.5)
    assert F.tolerance("mpe", -157.7) == pytest.approx(23.655)


def test_a_fitted_member_measured_outside_its_band_is_moved_inside(monkeypatch):
    """The fit hands back a medium member at grade 0.05 (all-agents return −12.5·(1 − 0.05) = −11.875,
    below the band (−11, −4)); its calibrated interval is (0.15, 0.65). The card's member must measure
    inside the band: one move halfway to the interval's centre, grade 0.225, return −9.69."""
    from rllib_sit.data import pool_calibration as C

    spec = _spec({"medium": ("100% [l0:m, l1:m]", -8.0)})
    env = BoxEnv()
    edge = F.ladder_member("mamujoco", False, HEUR, 0.05)
    fake = {"members": {"medium": edge}, "grades": {"medium": 0.05}, "intervals": {"medium": (0.15, 0.65)},
            "fit": {"medium": {"paper_average_return": -8.0, "fitted_average_return": -11.9, "tolerance": 1.2,
                               "within": False}}}
    monkeypatch.setattr(F, "fit_pool", lambda *a, **k: fake)
    monkeypatch.setattr(C, "_find_heuristic", lambda family: HEUR)
    levels = {"medium": [PoolMember("heuristic", {"fn": HEUR, "skill": 0.5})]}
    out = C._fit_to_datasets(env, spec, "mamujoco", levels, cal_episodes=20, eval_episodes=200, seed=0,
                             log=lambda *_: None)
    mem = levels["medium"][0]
    assert mem.params["skill"] == pytest.approx(0.225) and out["grades"]["medium"] == pytest.approx(0.225)
    assert mem.measured["in_range"] and -11.0 <= mem.measured["mean"] <= -4.0
    assert mem.measured["mean"] == pytest.approx(-12.5 * (1 - 0.225), abs=0.6)  # 200 episodes of 10 draws
