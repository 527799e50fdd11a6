"""Datasets of the offline decentralized MARL paper (VD+TN, papers/offline_decentralized_marl_vd_tn.md):
SMAC random / medium / expert on 3m, 8m, 3s_vs_3z, 3s_vs_4z (§5.3), uniform-random DG and CN data
(§5.4) and the MAMuJoCo per-agent mixture (Appendix B). The specs and pool cards are checked
against the paper's recipes as written here, not against the code that reads them; every new
quality is generated at tiny size through ``rllib-sit data generate ... --decentralize``."""

import json
import textwrap
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from rllib_sit.cli.sit_cmd import main as sit_main
from rllib_sit.data import read_dataset
from rllib_sit.data import schema as S
from rllib_sit.data.composition import load_specs, parse_composition
from rllib_sit.data.generation import noisy_action
from rllib_sit.data.pools import load_pool, pool_card_path
from rllib_sit.envs.base import CoopEnv, EnvInfo

R, M, E = 0, 1, 2  # schema policy level codes
VDTN_SMAC = {"smac:3m": ["m1", "m2", "m3"], "smac:3s_vs_3z": ["s1", "s2", "s3"],
             "smac:3s_vs_4z": ["s1", "s2", "s3"], "smac:8m": [f"m{i}" for i in range(1, 9)]}
# §5.3: random = uniform policies, medium = "mixed medium and uniform policies" (no ratio given:
# 50/50 by episodes here), expert = expert policies.
SMAC_RECIPES = {"vdtn-random": [(100, "r")], "vdtn-medium": [(50, "m"), (50, "r")], "vdtn-expert": [(100, "e")]}
# Appendix B, agent i's dataset: (percent, own level, others' level, noisy)
MIXTURE = [(20, "r", "r", False), (35, "m", "e", True), (35, "e", "m", True), (10, "e", "e", True)]
NOISE = 0.1
NEW_DATASETS = [(env, q) for env in VDTN_SMAC for q in SMAC_RECIPES] + [
    ("mpe:dg", "vdtn-random"), ("mpe:dg_partial", "vdtn-random"), ("mpe:cn_4ls4l", "vdtn-random"), ("mamujoco:halfcheetah_2l", "vdtn-mixture")]


def uniform_text(agents, level):
    return "[" + ", ".join(f"{a}:{level}" for a in agents) + "]"


# ------------------------------------------------------------------------------------------------
# Specs
# ------------------------------------------------------------------------------------------------

def test_smac_specs_follow_the_paper():
    specs = load_specs()
    for env_id, agents in VDTN_SMAC.items():
        spec = specs[env_id]
        assert spec.agents == agents
        for quality, parts in SMAC_RECIPES.items():
            want = " + ".join(f"{p}% {uniform_text(agents, lvl)}" for p, lvl in parts)
            assert str(spec.datasets[quality].composition) == want, (env_id, quality)
        # the VD+TN paper gives no pool ranges: SIT's SMAC ranges (Table 4), as on every SMAC map
        assert spec.pool_ranges == {"random": (0.0, 6.0), "medium": (6.0, 14.0), "expert": (14.0, 20.0)}
    # 8m keeps SIT's qualities unchanged
    assert str(specs["smac:8m"].datasets["medium"].composition) == \
        "100% [m1:r, m2:e, m3:e, m4:e, m5:e, m6:e, m7:e, m8:e]"
    assert specs["smac:8m"].datasets["low"].paper_average_return == 3.1


def test_mpe_and_mamujoco_specs_follow_the_paper():
    specs = load_specs()
    for env_id in ("mpe:dg", "mpe:dg_partial", "mpe:dg50", "mpe:dg50_partial"):  # §5.4: full/partial, same recipe
        dg = specs[env_id]
        assert dg.agents == ["a1", "a2"] and dg.pool_ranges == {}  # the paper gives no DG pool ranges
        assert str(dg.datasets["vdtn-random"].composition) == "100% [a1:r, a2:r]"
        assert dg.levels_used() == ["random"]
    assert str(specs["mpe:cn_4ls4l"].datasets["vdtn-random"].composition) == "100% [ls1:r, ls2:r, ls3:r, ls4:r]"
    comp = specs["mamujoco:halfcheetah_2l"].datasets["vdtn-mixture"].composition
    # two agents: agent 1's parts (own, other) and agent 2's parts (other, own) are the same components
    want = Counter()
    for pct, own, other, noisy in MIXTURE:
        want[(own, other, NOISE if noisy else 0.0)] += pct
    got = Counter()
    for c in comp.components:
        got[(c.level_of("l1"), c.level_of("l2"), c.noise)] += c.percent
    assert got == want
    got2 = Counter({(c.level_of("l2"), c.level_of("l1"), c.noise): c.percent for c in comp.components})
    assert got2 == want


# ------------------------------------------------------------------------------------------------
# Composition option noise=σ and spec errors
# ------------------------------------------------------------------------------------------------

def test_noise_option_round_trips():
    c = parse_composition("20% [a:r, b:r] + 80% [b:e, a:m]  noise=0.25", ["a", "b"])
    assert [x.noise for x in c.components] == [0.0, 0.25]
    assert c.to_string() == "20% [a:r, b:r] + 80% [a:m, b:e] noise=0.25"
    assert parse_composition(c.to_string(), ["a", "b"]) == c
    assert parse_composition("100% [a:r] noise=0").components[0].noise == 0.0


@pytest.mark.parametrize("text, message", [
    ("100% [a:r] nosie=0.1", r"component 1: unknown option 'nosie'; expected one of \['noise'\]"),
    ("50% [a:r] + 50% [a:m] noise=1.5", r"component 2: option noise='1.5'; expected a number in \[0, 1\]"),
    ("100% [a:r] noise=abc", r"component 1: option noise='abc'; expected a number in \[0, 1\]"),
    ("100% [a:r] noise", r"component 1: option 'noise' must look like 'name=value'"),
    ("100% [a:r] noise=0.1 noise=0.2", r"component 1: option 'noise' is given twice"),
])
def test_noise_option_errors(text, message):
    with pytest.raises(ValueError, match=message):
        parse_composition(text)


@pytest.mark.parametrize("entry, message", [
    ("  pool_ranges: {randm: [0, 1]}\n  datasets: {}",
     r"x.yaml: toy:a: pool_ranges.randm: unknown pool level 'randm'; expected some of \['random', 'medium', 'expert'\]"),
    ("  pool_ranges: [0, 1]\n  datasets: {}", r"x.yaml: toy:a.pool_ranges must be a mapping level -> \[low, high\]"),
    ("  pool_ranges: {}\n  datasets:\n    q: {composition: '100% [a1:r, a2:r] noise=2'}",
     r"x.yaml: toy:a.datasets.q: composition component 1: option noise='2'; expected a number in \[0, 1\]"),
    ("  pool_ranges: {}\n  datasets:\n    q: {composition: '100% [a1:r, a2:r]', paper_average: 3}",
     r"x.yaml: toy:a.datasets.q: unknown field\(s\) \['paper_average'\]; expected some of"),
    ("  pool_ranges: {}\n  datasets:\n    q: {composition: '100% [a1:r, a2:r]', paper_average_return: high}",
     r"x.yaml: toy:a.datasets.q.paper_average_return must be a number or null, got 'high'"),
    ("  pool_ranges: {}\n  datasets: [q]", r"x.yaml: toy:a.datasets must be a mapping quality ->"),
])
def test_bad_spec_entry_names_the_field(tmp_path, entry, message):
    (tmp_path / "x.yaml").write_text("toy:a:\n  agents: [a1, a2]\n" + entry + "\n")
    with pytest.raises(ValueError, match=message):
        load_specs(tmp_path)


class _Box(CoopEnv):
    def __init__(self, discrete):
        self.info = EnvInfo(env_id="toy:box", agents=["a"], agent_types=["x"], obs_dim=1, state_dim=1,
                            episode_limit=1, discrete=discrete, n_actions=4 if discrete else 0,
                            act_dim=0 if discrete else 3, action_low=-2.0, action_high=2.0)

    def action_masks(self):
        return np.array([[1, 0, 1, 1]], np.float32)


def test_noisy_action_continuous_and_discrete():
    rng = np.random.default_rng(0)
    env = _Box(discrete=False)
    a = np.stack([noisy_action(env, 0, np.zeros(3, np.float32), 0.1, rng) for _ in range(4000)])
    assert a.dtype == np.float32 and a.std() == pytest.approx(0.1 * 4 / 2, rel=0.05)  # σ x half the range
    edge = np.stack([noisy_action(env, 0, np.full(3, 2.0, np.float32), 0.5, rng) for _ in range(200)])
    assert edge.max() <= 2.0 and edge.min() >= -2.0  # clipped to the box
    state = rng.bit_generator.state
    assert noisy_action(env, 0, "unchanged", 0.0, rng) == "unchanged" and rng.bit_generator.state == state
    env = _Box(discrete=True)
    d = np.array([noisy_action(env, 0, 2, 0.3, rng) for _ in range(4000)])
    assert set(d.tolist()) <= {0, 2, 3}  # only available actions
    # replaced with probability 0.3 by a uniform choice over 3 available actions: P(changed) = 0.3 * 2/3
    assert (d != 2).mean() == pytest.approx(0.2, abs=0.03)


# ------------------------------------------------------------------------------------------------
# Pool cards
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("env_id", ["smac:3m", "smac:3s_vs_3z", "smac:3s_vs_4z"])
def test_new_smac_pool_cards_are_in_range(env_id):
    card = json.loads(pool_card_path(env_id).read_text())
    assert card["missing_levels"] == {}
    for lvl, (lo, hi) in {"random": (0, 6), "medium": (6, 14), "expert": (14, 20)}.items():
        (m,) = card["levels"][lvl]
        mr = m["measured_return"]
        assert mr["n"] >= 50 and mr["in_range"] is True and lo <= mr["mean"] <= hi, (lvl, mr)
    assert card["levels"]["random"][0]["kind"] == "uniform"  # §5.3: uniform policies
    pool = load_pool(env_id)
    assert all(callable(pool[lvl]) for lvl in ("r", "m", "e"))


@pytest.mark.parametrize("env_id", ["mpe:dg", "mpe:dg_partial", "mpe:dg50", "mpe:dg50_partial"])
def test_dg_pool_is_uniform_random_only(env_id):
    card = json.loads(pool_card_path(env_id).read_text())
    (m,) = card["levels"]["random"]
    assert m["kind"] == "uniform" and m["params"] == {}  # uniform in the speed box [-0.1, 0.1]
    assert m["measured_return"]["in_range"] is None and m["measured_return"]["n"] >= 50
    assert set(card["missing_levels"]) == {"medium", "expert"} and card["paper_ranges"] == {}
    assert load_pool(env_id).warnings("random") == []  # no range is not a stand-in


# ------------------------------------------------------------------------------------------------
# Generation through the CLI, with --decentralize
# ------------------------------------------------------------------------------------------------

def cli_generate(tmp_path, env_id, quality, episodes, seed=0):
    out = tmp_path / f"{env_id.replace(':', '_')}_{quality}"
    assert sit_main(["data", "generate", env_id, "--quality", quality, "--episodes", str(episodes),
                     "--seed", str(seed), "--out", str(out), "--workers", "0", "--no-progress",
                     "--decentralize"]) == 0
    return out


@pytest.mark.parametrize("env_id, quality", NEW_DATASETS)
def test_generate_new_quality_with_decentralize(tmp_path, env_id, quality, capsys):
    out = cli_generate(tmp_path, env_id, quality, episodes=8)
    spec = load_specs()[env_id]
    card = json.loads((out / "card.json").read_text())
    assert card["quality"] == quality and card["n_episodes"] == 8
    assert card["composition"] == str(spec.datasets[quality].composition)
    assert sum(card["episodes_per_component"]) == 8
    joint = read_dataset(out).to_numpy()
    printed = capsys.readouterr().out
    for i, agent in enumerate(spec.agents):
        path = Path(str(out) + "-decentralized") / agent
        assert f"{agent}: {path}" in printed
        ds = read_dataset(path)
        assert ds.meta.env.agents == [agent] and ds.card["decentralized_agent"] == agent
        d = ds.to_numpy()
        np.testing.assert_array_equal(d[S.ACTIONS][:, :, 0], joint[S.ACTIONS][:, :, i])
        np.testing.assert_array_equal(d[S.POLICY_LEVELS][:, 0], joint[S.POLICY_LEVELS][:, i])


@pytest.mark.parametrize("full_id, steps", [("mpe:dg", 25), ("mpe:dg50", 50)])
def test_dg_partial_dataset_is_the_full_one_with_own_positions_only(tmp_path, full_id, steps):
    """§5.4: the partial-observation datasets hold the same transitions, each agent's observation cut to
    its own position. Same --episodes and --seed: same actions, rewards, flags and state; episodes of
    the id's length."""
    full = read_dataset(cli_generate(tmp_path, full_id, "vdtn-random", episodes=6, seed=3)).to_numpy()
    part = read_dataset(cli_generate(tmp_path, f"{full_id}_partial", "vdtn-random", episodes=6, seed=3)).to_numpy()
    assert full[S.OBS].shape[-1] == 2 and part[S.OBS].shape[-1] == 1
    assert full[S.OBS].shape[1] >= steps and set(np.asarray(full[S.LENGTH]).tolist()) == {steps}
    np.testing.assert_array_equal(part[S.OBS], full[S.OBS][..., :1])
    for key in set(full) - {S.OBS}:
        np.testing.assert_array_equal(part[key], full[key], err_msg=key)
    own = read_dataset(tmp_path / f"{full_id.replace(':', '_')}_partial_vdtn-random-decentralized" / "a2").to_numpy()
    np.testing.assert_array_equal(own[S.OBS][:, :, 0], full[S.OBS][:, :, 1, :1])  # agent 2 sees x2 only


def test_mamujoco_mixture_proportions_per_agent(tmp_path):
    """40 episodes, seed 7: each agent's dataset holds exactly the Appendix B parts (8 / 14 / 14 / 4
    episodes), the early part without noise, the other three with it."""
    n = 40
    out = cli_generate(tmp_path, "mamujoco:halfcheetah_2l", "vdtn-mixture", episodes=n, seed=7)
    code = {"r": R, "m": M, "e": E}
    for i, agent in enumerate(["l1", "l2"]):
        d = read_dataset(Path(str(out) + "-decentralized") / agent).to_numpy()
        own = d[S.POLICY_LEVELS][:, 0]
        other = read_dataset(out).to_numpy([S.POLICY_LEVELS])[S.POLICY_LEVELS][:, 1 - i]
        for pct, own_lvl, other_lvl, _ in MIXTURE:
            count = int(((own == code[own_lvl]) & (other == code[other_lvl])).sum())
            assert count == pct * n // 100, (agent, own_lvl, other_lvl, count)
    # noise: the early (random) part keeps the random pool member's own actions: a corner of the box
    # (every joint exactly ±1) with its corner_prob (data v2: 0.67; "support: corners" = 1), else a
    # box-uniform action (every joint strictly inside); the noisy parts rarely sit on a corner
    from rllib_sit.data.pools import load_pool

    params = load_pool("mamujoco:halfcheetah_2l").members("random")[0].params
    corner_p = 1.0 if params.get("support") == "corners" else float(params.get("corner_prob", 0.0))
    d = read_dataset(out).to_numpy()
    acts, filled, levels = d[S.ACTIONS], d[S.FILLED].astype(bool), d[S.POLICY_LEVELS]
    early = (levels == R).all(axis=1)
    early_acts = np.abs(acts[early][filled[early]])  # [steps, agents, joints]
    corner, inside = np.all(early_acts == 1.0, axis=-1), np.all(early_acts < 1.0, axis=-1)
    assert np.all(corner | inside)
    assert abs(corner.mean() - corner_p) < 0.05, (corner.mean(), corner_p)
    noisy = acts[~early][filled[~early]]
    assert np.all(np.abs(noisy) <= 1.0) and np.mean(np.abs(noisy) == 1.0) < 0.2
    # an agent's three joints share one gait value without noise; with noise they differ
    same = np.all(noisy == noisy[..., :1], axis=-1)
    assert same.mean() < 0.01


def test_generation_rejects_bad_noise_on_the_command_line(capsys):
    assert sit_main(["data", "generate", "mpe:dg", "--composition", "100% [a1:r, a2:r] noise=-1"]) == 2
    assert "component 1: option noise='-1'; expected a number in [0, 1]" in capsys.readouterr().err


def test_spec_file_for_a_new_env_is_validated(tmp_path):
    """A spec's composition is checked against the spec's own agents, naming env and quality."""
    (tmp_path / "x.yaml").write_text(textwrap.dedent("""
        smac:3m:
          agents: [m1, m2, m3]
          pool_ranges: {random: [0, 6], medium: [6, 14], expert: [14, 20]}
          datasets:
            vdtn-medium: {composition: "50% [m1:m, m2:m, m3:m] + 50% [m1:r, m2:r]"}
    """))
    with pytest.raises(ValueError, match=r"x.yaml: smac:3m.datasets.vdtn-medium: composition component 2: "
                                         r"missing agent\(s\) \['m3'\]"):
        load_specs(tmp_path)


def test_decentralize_independent_gives_each_agent_its_own_episodes(tmp_path, capsys):
    """--decentralize independent: the first agent's dataset is split from the joint one, the
    second's from a run with another seed; both keep the recipe's per-agent proportions
    (Appendix B for agent i: own level r 20%, m 35%, e 35% + 10%), and share no episode."""
    n = 20
    out = tmp_path / "hc"
    assert sit_main(["data", "generate", "mamujoco:halfcheetah_2l", "--quality", "vdtn-mixture", "--episodes", str(n),
                     "--out", str(out), "--workers", "0", "--no-progress", "--decentralize", "independent"]) == 0
    root = Path(str(out) + "-decentralized-independent")
    assert sorted(p.name for p in root.iterdir()) == ["l1", "l2"]  # the temporary joint run is gone
    joint = read_dataset(out).to_numpy()
    data = {a: read_dataset(root / a) for a in ("l1", "l2")}
    for i, (agent, ds) in enumerate(data.items()):
        d = ds.to_numpy()
        assert ds.card["decentralized_mode"] == "independent" and ds.card["quality"] == f"vdtn-mixture/{agent}"
        own = Counter(d[S.POLICY_LEVELS][:, 0].tolist())
        assert own == {R: 20 * n // 100, M: 35 * n // 100, E: (35 + 10) * n // 100}, (agent, own)
        same_as_joint = np.array_equal(d[S.STATE], joint[S.STATE])
        assert same_as_joint == (i == 0), agent
    assert data["l1"].card["source_seed"] == 0 and data["l2"].card["source_seed"] != 0
    s1, s2 = data["l1"].to_numpy()[S.STATE], data["l2"].to_numpy()[S.STATE]
    assert not any(np.array_equal(s1[k], s2[j]) for k in range(n) for j in range(n))
