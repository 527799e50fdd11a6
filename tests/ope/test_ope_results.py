"""``rllib-sit ope --results DIR`` on a tiny benchmark folder run with ``keep_checkpoints``: one
ope.csv row per evaluated checkpoint with the simulator returns of curves.csv, resuming without
refitting, and ``--score`` (table + figure). Ray is started once, by the runner."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from rllib_sit.cli.sit_cmd import main as sit_main

HERE = os.path.dirname(os.path.abspath(__file__))
SETUP = os.path.join(os.path.dirname(HERE), "algorithms", "tiny_fixtures.py") + ":register_tiny_env"


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    import ray

    from tiny_fixtures import make_tiny_dataset

    from rllib_sit.experiments import build_plan, run_benchmark

    dataset = make_tiny_dataset(str(tmp_path_factory.mktemp("tiny") / "ds"), n_episodes=16, seed=0)
    out = str(tmp_path_factory.mktemp("bench"))
    plan = build_plan("quick", algos=["MABC"], maps=[dataset], seeds=[0], updates=["4"], eval_points=2,
                      eval_episodes=2, config=dict(batch_size_episodes=8, rnn_hidden=8), command="test")
    report = run_benchmark(plan, out, setup=[SETUP], num_cpus=2, max_concurrent=1, threads=1, progress=False,
                           figures=False, keep_checkpoints=True)
    assert not report.errors and not ray.is_initialized()
    return out


def test_scores_every_evaluated_checkpoint_and_resumes(bench, capsys):
    from rllib_sit.experiments import results as R
    from rllib_sit.ope.scoring import OPE_CSV, read_ope_csv

    assert sit_main(["ope", "--results", bench, "--updates", "30"]) == 0
    capsys.readouterr()
    rows = read_ope_csv(os.path.join(bench, OPE_CSV))
    curves = R.read_csv(os.path.join(bench, R.CURVES_CSV))
    assert len(rows) == len(curves) == 2
    by_iter = {c["iteration"]: c for c in curves}
    for r in rows:
        c = by_iter[r["iteration"]]
        assert (r["algorithm"], r["seed"], r["policy_updates"]) == ("MABC", 0, c["policy_updates"])
        assert r["return_greedy"] == pytest.approx(c["return_mean"])
        assert r["return_sampled"] == pytest.approx(c["return_mean_sampled"])
        assert os.path.isdir(r["checkpoint"]) and np.isfinite(r["fqe_estimate"]) and np.isfinite(r["training_loss"])
        assert r["fqe_ci_low"] <= r["fqe_estimate"] <= r["fqe_ci_high"] and r["explore"] == "False"
    assert len({r["checkpoint"] for r in rows}) == 2
    # resuming: nothing left to fit, the file is untouched
    before = open(os.path.join(bench, OPE_CSV)).read()
    assert sit_main(["ope", "--results", bench, "--updates", "30"]) == 0
    assert "0 to score" in capsys.readouterr().out
    assert open(os.path.join(bench, OPE_CSV)).read() == before
    assert not [f for f in os.listdir(bench) if ".tmp-" in f]


def test_score_prints_the_table_and_draws_the_figure(bench, capsys):
    if not os.path.exists(os.path.join(bench, "ope.csv")):
        assert sit_main(["ope", "--results", bench, "--updates", "30"]) == 0
    capsys.readouterr()
    assert sit_main(["ope", "--results", bench, "--score"]) == 0
    text = capsys.readouterr().out
    assert "| dataset | checkpoints | Spearman |" in text and "| tiny:coop random | 2 |" in text
    assert os.path.getsize(os.path.join(bench, "ope_estimates.png")) > 1000
    assert sit_main(["ope", "--results", bench, "--score", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)["tiny:coop random"]
    assert rep["candidates"] == 2 and rep["runs"] == 1
    # settings given with --score pick the rows fitted with them; settings no row has: one error line
    assert sit_main(["ope", "--results", bench, "--score", "--json", "--updates", "30"]) == 0
    assert json.loads(capsys.readouterr().out)["tiny:coop random"]["candidates"] == 2
    assert sit_main(["ope", "--results", bench, "--score", "--updates", "30", "--conservative-weight", "0.1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "has no rows of the FQE settings given" in err, err


def test_benchmark_ope_option_scores_every_evaluation_point(tmp_path, capsys):
    """``rllib-sit benchmark --ope``: every iteration's checkpoint kept, every evaluation point scored
    into ope.csv beside its simulator return, then the selection table."""
    from tiny_fixtures import make_tiny_dataset

    from rllib_sit.experiments import results as R
    from rllib_sit.ope.scoring import OPE_CSV, read_ope_csv

    dataset = make_tiny_dataset(str(tmp_path / "ds"), n_episodes=16, seed=1)
    out = str(tmp_path / "bench")
    rc = sit_main(["benchmark", "--profile", "quick", "--algos", "MABC", "--maps", dataset, "--seeds", "0",
                   "--updates", "4", "--eval-points", "2", "--eval-episodes", "2", "--setup", SETUP,
                   "--config", json.dumps(dict(batch_size_episodes=8, rnn_hidden=8)), "--num-cpus", "2",
                   "--max-concurrent-trials", "1", "--threads", "1", "--no-progress", "--out", out,
                   "--ope", "--ope-config", json.dumps({"updates": 20})])
    text = capsys.readouterr().out
    assert rc == 0, text
    (row,) = R.read_csv(os.path.join(out, R.RESULTS_CSV))
    trial = os.path.dirname(row["checkpoint"].rstrip("/"))
    assert len([c for c in os.listdir(trial) if c.startswith("checkpoint_")]) == 2  # one per iteration, all kept
    rows = read_ope_csv(os.path.join(out, OPE_CSV))
    curves = R.read_csv(os.path.join(out, R.CURVES_CSV))
    assert sorted(r["return_greedy"] for r in rows) == pytest.approx(sorted(c["return_mean"] for c in curves))
    assert len(rows) == 2 and all(np.isfinite(r["fqe_estimate"]) for r in rows)
    assert "| dataset | checkpoints | Spearman |" in text


def test_benchmark_refuses_a_bad_ope_config(capsys):
    assert sit_main(["benchmark", "--profile", "quick", "--dry-run", "--ope", "--ope-config", '{"updatez": 5}']) != 0
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "--ope-config" in err and "'updatez'" in err and "did you mean 'updates'" in err


def test_results_filters_by_seed_and_quality(bench, capsys):
    """``--seeds`` / ``--qualities`` keep only those cells (the fixture has seed 0, quality 'random')."""
    assert sit_main(["ope", "--results", bench, "--updates", "30", "--seeds", "1"]) == 0
    assert capsys.readouterr().out.startswith(f"0 checkpoint(s) in {bench}")
    assert sit_main(["ope", "--results", bench, "--updates", "30", "--qualities", "low"]) == 0
    assert capsys.readouterr().out.startswith(f"0 checkpoint(s) in {bench}")
    assert sit_main(["ope", "--results", bench, "--updates", "30", "--seeds", "0", "--qualities", "random"]) == 0
    assert capsys.readouterr().out.startswith(f"2 checkpoint(s) in {bench}")
