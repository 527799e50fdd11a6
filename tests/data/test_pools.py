"""Behaviour policy pools: loading cards, member kinds, clear errors, calibration, the committed
pool cards of the eleven SIT maps (measured returns inside the paper's ranges, shipped as package
data), and the ``rllib-sit data pools list|show|build`` command (no calibration runs here)."""

import json

import numpy as np
import pytest

from rllib_sit.cli.sit_cmd import main as sit_main
from rllib_sit.data import pool_calibration
from rllib_sit.data.composition import load_specs
from rllib_sit.data.paths import display_path, resources_dir
from rllib_sit.data.pools import (
    Candidate,
    PoolMember,
    calibrate,
    load_pool,
    pool_card_path,
    pool_table,
    pools_dir,
    read_pool_card,
    write_pool_card,
)
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
    with pytest.raises(FileNotFoundError,
                       match=r"no policy pool for toy:none .*; build it with: rllib-sit data pools build toy:none"):
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
    assert path.exists(), f"missing {path}; run rllib-sit data pools build {env_id}"
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


# ------------------------------------------------------------------------------------------------
# Card model: validation, atomic writes, package data
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("levels, message", [
    ([], r"field 'levels' = \[\]; expected a mapping level -> list of members"),
    ({"random": {"kind": "uniform"}}, r"levels.random must be a list of members, got dict"),
    ({"random": ["uniform"]}, r"levels.random\[0\] must be an object with 'kind' and 'params'"),
    ({"medium": [{"kind": "heuristic", "params": {"fn": "test_pools:heuristic"}}]},
     r"level medium: heuristic member is missing params.skill \(expected a number in \[0, 1\]\)"),
    ({"medium": [{"kind": "heuristic", "params": {"fn": "test_pools:heuristic", "skill": 1.5}}]},
     r"level medium: params.skill = 1.5; expected a number in \[0, 1\]"),
    ({"random": [{"kind": "uniform"}, {"kind": "uniform", "params": {"support": "sphere"}}]},
     r"level random member 1: params.support = 'sphere'; expected 'box' or 'corners'"),
    ({"random": [{"kind": "uniform", "params": {"attack_dorp": 0.5}}]},
     r"uniform member has unknown params.attack_dorp; expected some of \['attack_drop', "),
    ({"random": [{"kind": "uniform", "measured_return": 3.0}]},
     r"levels.random\[0\].measured_return must be an object with a numeric 'mean', got 3.0"),
])
def test_card_validation_names_file_and_field(tmp_path, levels, message):
    path = write_card(tmp_path, levels)
    with pytest.raises(ValueError, match=message) as e:
        load_pool("toy:pool", tmp_path)
    assert str(path) in str(e.value)


def test_card_not_json_or_not_an_object(tmp_path):
    path = pool_card_path("toy:pool", tmp_path)
    path.write_text('{"env": "toy:pool", "levels": {')
    with pytest.raises(ValueError, match=r"toy_pool.json: not valid JSON \(.*\); expected a pool card"):
        load_pool("toy:pool", tmp_path)
    path.write_text('["toy:pool"]')
    with pytest.raises(ValueError, match=r"toy_pool.json: expected a JSON object \(a pool card\), got list"):
        load_pool("toy:pool", tmp_path)
    path.write_text(json.dumps({"env": "toy:pool", "levels": {}, "paper_ranges": {"random": [0]}}))
    with pytest.raises(ValueError, match=r"paper_ranges.random = \[0\]; expected \[low, high\]"):
        load_pool("toy:pool", tmp_path)


def test_write_pool_card_round_trip_and_refuses_invalid_cards(tmp_path):
    card = {"env": "toy:pool", "paper_ranges": {"random": [0, 1]},
            "levels": {"random": [{"kind": "uniform", "params": {}, "how": "h",
                                   "measured_return": {"mean": 0.5, "std": 0.1, "n": 50, "in_range": True}}]}}
    path = write_pool_card("toy:pool", card, tmp_path)
    assert read_pool_card("toy:pool", tmp_path) == card
    assert load_pool("toy:pool", tmp_path).card_path == path
    bad = dict(card, levels={"random": [{"kind": "magic"}]})
    with pytest.raises(ValueError, match=r"pool card of toy:pool: level random: member kind 'magic' is unknown"):
        write_pool_card("toy:pool", bad, tmp_path)
    assert read_pool_card("toy:pool", tmp_path) == card  # the good card is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["toy_pool.json"]  # no temporary file left


def test_pool_cards_are_package_data(monkeypatch):
    """Regression (issue 10): the cards lived in <checkout>/offline_data/policy_pools, absent from a wheel."""
    monkeypatch.delenv("RLLIB_SIT_POOLS_DIR", raising=False)
    assert pools_dir() == resources_dir() / "policy_pools"
    assert resources_dir().parent.name == "rllib_sit" and (resources_dir().parent / "__init__.py").exists()
    assert display_path(pool_card_path("smac:2s3z")) == "rllib_sit/resources/policy_pools/smac_2s3z.json"
    assert load_pool("smac:2s3z").card_path == pool_card_path("smac:2s3z")


def test_pools_dir_override(tmp_path, monkeypatch):
    write_card(tmp_path, {"random": [{"kind": "uniform", "params": {}}]})
    monkeypatch.setenv("RLLIB_SIT_POOLS_DIR", str(tmp_path))
    assert pools_dir() == tmp_path
    assert load_pool("toy:pool").base_dir == tmp_path


# ------------------------------------------------------------------------------------------------
# rllib-sit data pools list | show | build
# ------------------------------------------------------------------------------------------------

def test_cli_list(tmp_path, capsys):
    assert sit_main(["data", "pools", "list"]) == 0
    out = capsys.readouterr().out
    for env_id in SIT_MAPS:
        assert env_id in out
    assert f"({len(list(pools_dir().glob('*.json')))} pool cards in" in out  # SIT maps + VD+TN maps
    write_card(tmp_path, {"random": [{"kind": "uniform", "params": {},
                                      "measured_return": {"mean": 1.25, "std": 0.5, "n": 50, "in_range": True}}]})
    assert sit_main(["data", "pools", "list", "--dir", str(tmp_path), "--markdown"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("| map | level |")
    assert "| toy:pool | random | — | uniform | 1.25 ± 0.50 (50) | yes |" in lines
    assert "| toy:pool | expert | — | MISSING | — | **no** |" in lines


def test_cli_list_errors(tmp_path, capsys):
    assert sit_main(["data", "pools", "list", "--dir", str(tmp_path / "nope")]) == 2
    assert "policy pool folder" in capsys.readouterr().err
    (tmp_path / "toy_pool.json").write_text("{")
    assert sit_main(["data", "pools", "list", "--dir", str(tmp_path)]) == 2
    assert "toy_pool.json: not valid JSON" in capsys.readouterr().err


def test_cli_show(capsys, tmp_path):
    assert sit_main(["data", "pools", "show", "smac:2s3z"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"smac:2s3z: {pool_card_path('smac:2s3z')}")
    card = json.loads(pool_card_path("smac:2s3z").read_text())
    for lvl, members in card["levels"].items():
        mr = members[0]["measured_return"]
        assert f"{lvl:7s} {members[0]['kind']:9s}" in out and f"{mr['mean']:.2f} ± {mr['std']:.2f}" in out
    assert sit_main(["data", "pools", "show", "smac:2s3z", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == card
    assert sit_main(["data", "pools", "show", "smac:9m"]) == 2
    err = capsys.readouterr().err
    assert "no policy pool for smac:9m" in err and "pool cards exist for [" in err and "'smac:2s3z'" in err


@pytest.fixture
def no_calibration(monkeypatch):
    """Replaces build_pool: records the calls and writes a small valid card instead of calibrating."""
    calls = []

    def fake_build_pool(env_id, eval_episodes=None, seed=0, cal_episodes=None, directory=None, log=print,
                        fit_datasets=True, refit=False):
        calls.append(dict(env_id=env_id, eval_episodes=eval_episodes, seed=seed, cal_episodes=cal_episodes,
                          directory=directory, fit_datasets=fit_datasets, refit=refit))
        card = {"env": env_id, "levels": {}, "missing_levels": {"random": "fake"}, "build_seconds": 0.0}
        write_pool_card(env_id, card, directory)
        return card

    monkeypatch.setattr(pool_calibration, "build_pool", fake_build_pool)
    return calls


@pytest.mark.parametrize("argv, message", [
    ([], r"give environment id\(s\) to build \(e.g. smac:2s3z\) or --all"),
    (["smac:2s3z", "--all"], r"give environment ids or --all, not both"),
    (["smac:2s3z", "smac:9m"], r"no data spec for environment 'smac:9m'; specs exist for \["),
    (["smac:2s3z", "--episodes", "10"], r"eval_episodes \(--episodes\) must be an integer >= 50 .* got 10"),
    (["smac:2s3z", "--cal-episodes", "0"], r"cal_episodes \(--cal-episodes\) must be an integer >= 1, got 0"),
    (["smac:2s3z", "--seed", "-1"], r"seed \(--seed\) must be a non-negative integer, got -1"),
    (["smac:2s3z", "--refit", "--no-fit"], r"--refit starts the fit from the existing card; it cannot be combined with --no-fit"),
])
def test_cli_build_validates_before_any_work(argv, message, no_calibration, tmp_path, capsys):
    import re

    assert sit_main(["data", "pools", "build", *argv, "--dir", str(tmp_path)]) == 2
    assert re.search(message, capsys.readouterr().err)
    assert no_calibration == [] and list(tmp_path.iterdir()) == []


def test_cli_build_dir_must_be_a_folder(no_calibration, tmp_path, capsys):
    (tmp_path / "file").write_text("")
    assert sit_main(["data", "pools", "build", "smac:2s3z", "--dir", str(tmp_path / "file")]) == 2
    assert "is a file; expected a folder of pool cards" in capsys.readouterr().err
    assert no_calibration == []


def test_cli_build_passes_arguments_and_writes_to_dir(no_calibration, tmp_path, capsys):
    assert sit_main(["data", "pools", "build", "smac:2s3z", "mpe:cn_3ls3l", "smac:2s3z", "--episodes", "60",
                     "--cal-episodes", "5", "--seed", "3", "--dir", str(tmp_path)]) == 0
    assert [c["env_id"] for c in no_calibration] == ["smac:2s3z", "mpe:cn_3ls3l"]  # duplicates built once
    assert all(c["eval_episodes"] == 60 and c["cal_episodes"] == 5 and c["seed"] == 3
               and c["directory"] == tmp_path and c["fit_datasets"] and not c["refit"] for c in no_calibration)
    out = capsys.readouterr().out
    assert f"smac:2s3z: wrote {tmp_path / 'smac_2s3z.json'}" in out and "missing levels: ['random']" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mpe_cn_3ls3l.json", "smac_2s3z.json"]
    assert sit_main(["data", "pools", "build", "mpe:cn_3ls3l", "--no-fit", "--dir", str(tmp_path)]) == 0
    assert no_calibration[-1]["fit_datasets"] is False
    assert sit_main(["data", "pools", "build", "mpe:cn_3ls3l", "--refit", "--dir", str(tmp_path)]) == 0
    assert no_calibration[-1]["refit"] is True
    del no_calibration[2:]
    assert sit_main(["data", "pools", "build", "--all", "--dir", str(tmp_path)]) == 0
    assert {c["env_id"] for c in no_calibration[2:]} == set(load_specs()) >= set(SIT_MAPS)


def test_build_pool_evaluation_must_confirm_and_levels_without_range(tmp_path, monkeypatch):
    """A member that calibrates inside the range but evaluates outside it (smac:3s_vs_3z's full-skill
    expert: 20.00 on the calibration seeds, 20.01 on the evaluation seeds, SIT's range ends at 20)
    gives way to the next candidate; a level without a paper range is built only if a dataset uses
    it (as its fixed candidate, in_range null), else listed as missing with the reason."""
    from rllib_sit.data.composition import DatasetSpec, EnvSpec, parse_composition

    comp = parse_composition("50% [a1:r, a2:r] + 50% [a1:e, a2:e]", ["a1", "a2"])
    spec = EnvSpec("toy:pool", ["a1", "a2"], {"expert": (14.0, 20.0)},
                   {"q": DatasetSpec("toy:pool", "q", comp, None)})
    fn = {"fn": "test_pools:heuristic"}
    cands = {"random": [Candidate("uniform", {}, "uniform")], "medium": [],
             "expert": [Candidate("heuristic", {**fn, "skill": 1.0}, "full skill"),
                        Candidate("heuristic", {**fn, "skill": 1.0}, "calibrated skill", knob="skill")]}

    def fake_measure(env, policy, n_episodes, seed):  # policy = the member's params (build patched)
        mean = 20.0 * policy.get("skill", 0.1) + (0.0 if seed >= 1_000_000 else 0.01)
        return {"mean": round(mean, 3), "std": 0.0, "n": n_episodes, "first10_mean": round(mean, 3)}

    monkeypatch.setattr(pool_calibration, "env_spec", lambda env_id: spec)
    monkeypatch.setattr("rllib_sit.envs.registry.make_env", lambda env_id: ToyEnv())
    monkeypatch.setattr(pool_calibration, "default_candidates", lambda env, heuristic: cands)
    monkeypatch.setattr(pool_calibration, "measure", fake_measure)
    monkeypatch.setattr(PoolMember, "build", lambda self, base_dir=None: dict(self.params))
    logged = []
    card = pool_calibration.build_pool("toy:pool", directory=tmp_path, log=logged.append)
    (expert,) = card["levels"]["expert"]
    assert expert["params"]["skill"] == 0.875 and expert["measured_return"]["in_range"] is True
    assert expert["measured_return"]["mean"] == pytest.approx(17.51)
    assert any("evaluation 20.01 outside [14.0, 20.0]; trying the next candidate" in x for x in logged)
    (rnd,) = card["levels"]["random"]
    assert rnd["kind"] == "uniform" and rnd["measured_return"]["in_range"] is None
    assert "no return range" in rnd["how"]
    assert set(card["levels"]) == {"random", "expert"}
    assert card["missing_levels"] == {"medium": "the paper gives no return range for this level and no dataset "
                                                "of the specs uses it"}
    assert read_pool_card("toy:pool", tmp_path)["paper_ranges"] == {"expert": [14.0, 20.0]}
