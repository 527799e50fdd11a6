"""Composition strings and data specs: parsing, every validation error, episode splits."""

import textwrap

import pytest

from rllib_sit.data.composition import (
    dataset_spec,
    load_specs,
    parse_composition,
    specs_dir,
    uniform_composition,
)
from rllib_sit.data.paths import resources_dir

AGENTS_2S3Z = ["s1", "s2", "z1", "z2", "z3"]
SIT_MAPS = ["smac:2s3z", "smac:3s_vs_5z", "smac:2s_vs_1sc", "smac:8m", "smac:1c3s5z", "smac:10m_vs_11m",
            "mpe:cn_3ls3l", "mpe:cn_4ls4l", "mpe:pp_3p1p", "mamujoco:halfcheetah_2l", "mamujoco:walker_2l"]


def test_parse_two_components():
    c = parse_composition("50% [s1:r, s2:r, z1:r, z2:r, z3:r] + 50% [s1:m, s2:m, z1:m, z2:m, z3:m]", AGENTS_2S3Z)
    assert [x.percent for x in c.components] == [50.0, 50.0]
    assert c.components[1].level_codes(AGENTS_2S3Z) == [1, 1, 1, 1, 1]
    assert c.agents == AGENTS_2S3Z
    assert c.levels_used() == ["r", "m"]


def test_parse_is_whitespace_tolerant_and_orders_by_env_agents():
    c = parse_composition("100%[z3:e,z2:e , z1:r,s2:e,s1:r]", AGENTS_2S3Z)
    assert c.components[0].level_codes(AGENTS_2S3Z) == [0, 2, 0, 2, 2]
    assert c.to_string() == "100% [s1:r, s2:e, z1:r, z2:e, z3:e]"
    assert parse_composition(c.to_string(), AGENTS_2S3Z) == c


def test_fractional_percentages():
    c = parse_composition("99.5% [a:r, b:r] + 0.5% [a:m, b:m]")
    assert c.episode_counts(1000) == [995, 5]
    assert c.episode_counts(10) == [10, 0]


@pytest.mark.parametrize("n", [0, 1, 2, 3, 7, 100, 10_000])
def test_episode_counts_sum_exactly(n):
    c = parse_composition("33.3% [a:r] + 33.3% [a:m] + 33.4% [a:e]")
    counts = c.episode_counts(n)
    assert sum(counts) == n
    assert counts == c.episode_counts(n)  # deterministic


def test_episode_counts_ties_go_to_earlier_component():
    c = parse_composition("50% [a:r] + 50% [a:m]")
    assert c.episode_counts(3) == [2, 1]
    with pytest.raises(ValueError, match="non-negative integer"):
        c.episode_counts(-1)


def test_uniform_composition():
    assert str(uniform_composition(["a", "b"], "e")) == "100% [a:e, b:e]"


@pytest.mark.parametrize("text, agents, message", [
    ("50% [s1:r, s2:r, z1:r, z2:r, z3:r] + 40% [s1:m, s2:m, z1:m, z2:m, z3:m]", AGENTS_2S3Z,
     r"percentages sum to 90%, expected 100% \(50% \+ 40%\)"),
    ("100% [s1:r, s2:r, z1:r, z2:r, z9:r]", AGENTS_2S3Z,
     r"component 1: unknown agent\(s\) \['z9'\]; expected the agents \['s1', 's2', 'z1', 'z2', 'z3'\]"),
    ("100% [s1:r, s2:r, z1:r, z2:r]", AGENTS_2S3Z,
     r"component 1: missing agent\(s\) \['z3'\]; every component must name all agents"),
    ("100% [s1:x, s2:r, z1:r, z2:r, z3:r]", AGENTS_2S3Z,
     r"agent 's1' has level 'x'; expected one of \['e', 'm', 'r'\]"),
    ("100% [s1:r, s1:m, s2:r, z1:r, z2:r, z3:r]", AGENTS_2S3Z, r"agent 's1' appears twice"),
    ("100% [s1 r, s2:r]", None, r"entry 's1 r' must look like 'agent:level'"),
    ("50 [a:r] + 50% [a:m]", None, r"component 1 '50 \[a:r\]' is malformed; expected 'P% \[agent:level, ...\]'"),
    ("100% [a:r] + 0% [a:m]", None, r"component 2 '0% \[a:m\]': percentage 0% must be in \(0, 100\]"),
    ("50% [a:r, b:r] + 50% [a:m]", None, r"component 2: missing agent\(s\) \['b'\]"),
    ("", None, r"expected a string like"),
])
def test_validation_errors(text, agents, message):
    with pytest.raises(ValueError, match=message):
        parse_composition(text, agents)


def test_every_paper_composition_is_in_the_specs():
    specs = load_specs()
    assert set(SIT_MAPS) <= set(specs)  # + the offline decentralized MARL paper's maps (test_vdtn_specs.py)
    for env_id in SIT_MAPS:
        spec = specs[env_id]
        assert {"low", "medium"} <= set(spec.datasets), env_id
        for q in spec.datasets.values():
            assert q.composition.agents == spec.agents
        lo = [spec.pool_ranges[l] for l in ("random", "medium", "expert")]
        assert lo[0][1] == lo[1][0] and lo[1][1] == lo[2][0], env_id  # contiguous ranges
    s = specs["smac:2s3z"].datasets
    assert set(s) == {"low", "medium", "low-closer-look", "balanced-random", "balanced-medium",
                      "balanced-expert", "extreme"}
    assert str(s["low-closer-look"].composition) == \
        "50% [s1:r, s2:e, z1:r, z2:e, z3:e] + 50% [s1:r, s2:m, z1:r, z2:m, z3:m]"
    assert s["low"].paper_average_return == 3.24
    assert [c.percent for c in s["extreme"].composition.components] == [99.5, 0.5]
    assert str(specs["mamujoco:halfcheetah_2l"].datasets["low"].composition) == "100% [l1:m, l2:r]"
    assert specs["mpe:pp_3p1p"].pool_ranges["expert"] == (-130.44, -54.96)


def test_dataset_spec_unknown_quality_and_env():
    assert dataset_spec("smac:8m", "medium").paper_average_return == 9.85
    with pytest.raises(ValueError, match=r"unknown quality 'extreme' for smac:8m; expected one of \['low', 'medium', "
                                         r"'vdtn-expert', 'vdtn-medium', 'vdtn-random'\]"):
        dataset_spec("smac:8m", "extreme")
    with pytest.raises(ValueError, match=r"no data spec for environment 'smac:9m'"):
        dataset_spec("smac:9m", "low")


def test_bad_spec_file_names_file_and_entry(tmp_path):
    (tmp_path / "x.yaml").write_text(textwrap.dedent("""
        toy:a:
          agents: [a1, a2]
          pool_ranges: {random: [0, 1], medium: [1, 2], expert: [2, 3]}
          datasets:
            low: {composition: "50% [a1:r, a2:r] + 60% [a1:m, a2:m]"}
    """))
    with pytest.raises(ValueError, match=r"x.yaml: toy:a.datasets.low: composition percentages sum to 110%"):
        load_specs(tmp_path)
    (tmp_path / "x.yaml").write_text("toy:a:\n  agents: [a1]\n  pool_ranges: {random: [1, 0]}\n  datasets: {}\n")
    with pytest.raises(ValueError, match=r"toy:a: pool_ranges.random must be \[low, high\] with low < high"):
        load_specs(tmp_path)


def test_specs_are_package_data(monkeypatch):
    """Regression (issue 10): the specs lived in <checkout>/offline_data/specs, absent from a wheel."""
    monkeypatch.delenv("RLLIB_SIT_SPECS_DIR", raising=False)
    assert specs_dir() == resources_dir() / "specs"
    assert sorted(p.name for p in specs_dir().glob("*.yaml")) == ["mamujoco.yaml", "mpe.yaml", "smac.yaml"]
    assert "smac:2s3z" in load_specs()


def test_missing_or_unreadable_specs_name_the_folder_and_file(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match=rf"no data specs \(\*.yaml\) found in {tmp_path} \(the directory "
                                                r"argument\); expected one <family>.yaml per environment family"):
        load_specs(tmp_path)
    monkeypatch.setenv("RLLIB_SIT_SPECS_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=rf"found in {tmp_path} \(\$RLLIB_SIT_SPECS_DIR\)"):
        dataset_spec("smac:2s3z", "low")
    (tmp_path / "x.yaml").write_text("toy:a: [unclosed\n")
    with pytest.raises(ValueError, match=r"x.yaml: not valid YAML at line 2, column 1 \(expected ',' or '\]', "
                                         r"but got '<stream end>'\); expected a mapping of environment ids$"):
        load_specs()
