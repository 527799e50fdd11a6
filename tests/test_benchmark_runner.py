"""``rllib-sit benchmark`` (rllib_sit.experiments): the runner on the tiny env as real Tune trials,
resuming, the Table 1 Markdown, every figure, and the quick profile's plan.

The tiny env (``tiny:coop`` of tests/algorithms/tiny_fixtures.py) is not a package family: the
runner's ``setup`` registers it in the driver and, through Ray's worker setup hook, in the trials.
Ray is started once, by the first run; the rerun must not start it at all.
"""

from __future__ import annotations

import os
import shutil
import sys

import numpy as np
import pytest

from rllib_sit.experiments import build_plan, run_benchmark
from rllib_sit.experiments import figures as F
from rllib_sit.experiments import profiles as P
from rllib_sit.experiments import results as R
from rllib_sit.experiments.plan import parse_algorithms
from rllib_sit.experiments.runner import TUNE_DIR

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "algorithms", "tiny_fixtures.py")
SETUP = f"{FIXTURES}:register_tiny_env"
TINY = dict(batch_size_episodes=8, rnn_hidden=8, critic_hidden=8, reward_hidden=8, attention_hidden=8,
            ensemble_size=2, target_update_interval=2, stage2_batch_episodes=16,
            priority_scale="minmax")  # SIT only (settings apply where an algorithm has them); tiny:coop has no range


def _tiny_plan(dataset, **kw):
    args = dict(algos=["MABC", "SIT"], maps=[dataset], seeds=[0, 1], updates=["4", "SIT.ardnem_updates=4"],
                eval_points=2, eval_episodes=2, config=TINY, command="rllib-sit benchmark (test)")
    args.update(kw)
    return build_plan("quick", **args)


def _trial_dirs(out):
    root = os.path.join(out, TUNE_DIR)
    return sorted(os.path.join(e, t) for e in os.listdir(root) for t in os.listdir(os.path.join(root, e))
                  if os.path.isfile(os.path.join(root, e, t, "params.json")))


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    """2 algorithms × 1 tiny dataset × 2 seeds run once through Tune; Ray is shut down afterwards."""
    import ray

    sys.path.insert(0, os.path.dirname(FIXTURES))
    from tiny_fixtures import make_tiny_dataset

    dataset = make_tiny_dataset(str(tmp_path_factory.mktemp("tiny") / "ds"), n_episodes=24, seed=0)
    out = str(tmp_path_factory.mktemp("bench"))
    plan = _tiny_plan(dataset)
    report = run_benchmark(plan, out, setup=[SETUP], num_cpus=2, max_concurrent=2, threads=1, progress=False)
    assert not ray.is_initialized()  # the runner shut down the Ray it started
    return plan, out, report, dataset


def test_writes_one_csv_row_per_cell_seed(bench):
    plan, out, report, dataset = bench
    assert not report.errors and report.ran == 4
    rows = R.read_csv(os.path.join(out, R.RESULTS_CSV))
    assert sorted(R.row_key(r) for r in rows) == sorted(c.key for c in plan.cells)
    card = R.behaviour_stats(dataset)
    for r in rows:
        assert r["map"] == "tiny:coop" and r["quality"] == "random"
        assert np.isfinite(r["final_return"]) and r["best_return"] >= r["final_return"]
        assert r["behaviour_return"] == pytest.approx(card[0])
        assert r["evaluations"] == 2 and r["policy_updates"] == 4 and r["iterations"] >= 2
        assert os.path.isfile(os.path.join(r["checkpoint"], "algorithm_state.pkl"))
        assert r["wall_time_s"] > 0 and r["settings_hash"] == plan.settings_hash(
            next(c for c in plan.cells if c.key == R.row_key(r)))
    curves = R.read_csv(os.path.join(out, R.CURVES_CSV))
    assert sorted({c["policy_updates"] for c in curves}) == [2, 4] and len(curves) == 8
    # Both passes of every evaluation: greedy (final_return, win_rate) and sampled (*_sampled), the
    # row's final values being its last curve point's.
    for r in rows:
        last = max((c for c in curves if R.row_key(c) == R.row_key(r)), key=lambda c: c["policy_updates"])
        for row_field, curve_field in (("final_return", "return_mean"), ("win_rate", "win_rate"),
                                       ("final_return_sampled", "return_mean_sampled"),
                                       ("final_return_std_sampled", "return_std_sampled"),
                                       ("win_rate_sampled", "win_rate_sampled")):
            assert np.isfinite(r[row_field]) and r[row_field] == pytest.approx(last[curve_field]), row_field
        assert r["best_return_sampled"] >= r["final_return_sampled"]
    rewards = R.read_csv(os.path.join(out, R.REWARDS_CSV))
    assert {(r["seed"], r["agent"]) for r in rewards} == {(s, a) for s in (0, 1) for a in ("a0", "a1", "b0")}
    assert {r["agent_type"] for r in rewards} == {"scout", "tank"} and {r["behaviour_level"] for r in rewards} == {"r"}
    dper = R.read_csv(os.path.join(out, R.DPER_CSV))
    for s in (0, 1):  # every agent's 24 trajectories are in its histogram
        for a in ("a0", "a1", "b0"):
            assert sum(r["count"] for r in dper if r["seed"] == s and r["agent"] == a) == 24


def test_table_holds_mean_and_std_over_seeds_of_the_csv(bench):
    plan, out, report, _ = bench
    rows = R.read_csv(os.path.join(out, R.RESULTS_CSV))
    text = open(report.table).read()
    assert "Command: `rllib-sit benchmark (test)`" in text
    lines = [ln for ln in text.splitlines() if ln.startswith("| ")]
    head = [c.strip() for c in lines[0].strip("|").split("|")]
    assert head == ["quality", "map", "Behaviour", "MABC", "QMIX/FacMAC", "MABCQ", "MACQL", "ICQ", "OMAC", "SIT"]
    cells = dict(zip(head, [c.strip() for c in lines[1].strip("|").split("|")]))
    for algo in ("MABC", "SIT"):
        v = np.array([r["final_return"] for r in rows if r["algorithm"] == algo])
        assert len(v) == 2
        assert cells[algo] == f"{v.mean():.2f} ± {v.std():.2f}"
    assert cells["Behaviour"] == f"{rows[0]['behaviour_return']:.2f}"
    assert cells["QMIX/FacMAC"] == cells["ICQ"] == "—"
    # The sampled pass's table follows under its own heading (greedy first: the default).
    heads = [ln for ln in text.splitlines() if ln.startswith("## Table 1")]
    assert len(heads) == 2 and "greedy" in heads[0] and "sampled" in heads[1]
    sampled = text.split(heads[1])[1]
    row = [c.strip() for c in [ln for ln in sampled.splitlines() if ln.startswith("| ")][1].strip("|").split("|")]
    for algo in ("MABC", "SIT"):
        v = np.array([r["final_return_sampled"] for r in rows if r["algorithm"] == algo])
        assert dict(zip(head, row))[algo] == f"{v.mean():.2f} ± {v.std():.2f}"


def test_rerun_skips_finished_cells_without_starting_a_trial(bench):
    import ray

    plan, out, report, _ = bench
    before = _trial_dirs(out)
    again = run_benchmark(plan, out, setup=[SETUP], progress=False)
    assert again.already_done == 4 and again.ran == 0 and again.recovered == 0
    assert _trial_dirs(out) == before and not ray.is_initialized()  # no trial, not even Ray


def test_finished_trial_missing_from_the_csv_is_read_back_from_tune(bench, tmp_path):
    plan, out, _, _ = bench
    copy = str(tmp_path / "copy")
    shutil.copytree(out, copy)
    rows = R.read_csv(os.path.join(copy, R.RESULTS_CSV))
    lost = rows[0]
    R.write_csv(os.path.join(copy, R.RESULTS_CSV), R.RESULT_FIELDS, rows[1:])
    rep = run_benchmark(plan, copy, progress=False, figures=False)
    assert rep.recovered == 1 and rep.ran == 0
    back = R.ResultStore(copy).results()[R.row_key(lost)]
    for k in ("final_return", "best_return", "policy_updates", "evaluations", "behaviour_return"):
        assert back[k] == pytest.approx(lost[k])


def test_other_settings_in_the_output_folder_are_refused(bench):
    _, out, _, dataset = bench
    with pytest.raises(ValueError, match="other settings"):
        run_benchmark(_tiny_plan(dataset, updates=["6", "SIT.ardnem_updates=4"]), out, progress=False)


def test_every_figure_is_a_png_of_its_size(bench):
    _, out, report, _ = bench
    names = sorted(os.path.basename(f) for f in report.figures)
    assert names == ["curves_coop.png", "decomposition_coop_random.png", "diagnostics_coop_random.png",
                     "dper_coop_random.png"]
    panels = {"curves_coop.png": (1, 1), "decomposition_coop_random.png": (1, 1), "dper_coop_random.png": (2, 1),
              "diagnostics_coop_random.png": (3, 2)}
    for f in report.figures:
        assert os.path.getsize(f) > 5000
        cols, rows = panels[os.path.basename(f)]
        assert F.png_size(f) == F.expected_png_size(cols, rows=rows)


# ------------------------------------------------------------------------------------------------
# Figures from synthetic data (no Ray)
# ------------------------------------------------------------------------------------------------

def _synthetic_results():
    rng = np.random.default_rng(0)
    rows, curves = [], []
    combos = [(a, "low") for a in ["MABC", "QMIX", "ICQ", "SIT"] + list(P.ABLATIONS)]
    combos += [(a, q) for a in ("MABC", "ICQ", "SIT") for q in ("balanced-random", "balanced-medium", "balanced-expert")]
    combos += [(f"SIT[alpha={a},beta={b},eta={e}]", "low") for a in (0.2, 1, 5) for b in (0.1, 1) for e in (1, 2)]
    combos += [(a, "medium") for a in ("MABC", "SIT")]
    for algo, q in combos:
        for seed in range(3):
            ret = float(rng.normal(8, 2))
            rows.append({"algorithm": algo, "map": "smac:2s3z", "quality": q, "seed": seed, "final_return": ret,
                         "best_return": ret + 1, "behaviour_return": 6.4, "win_rate": 0.1})
            curves += [{"algorithm": algo, "map": "smac:2s3z", "quality": q, "seed": seed, "policy_updates": u,
                        "return_mean": ret * u / 500} for u in (125, 250, 375, 500)]
    return rows, curves


def test_figure_functions_on_synthetic_data(tmp_path):
    rows, curves = _synthetic_results()
    paths = {
        "curves": F.plot_training_curves([c for c in curves if c["algorithm"] in ("MABC", "QMIX", "ICQ", "SIT")
                                          and c["quality"] in ("low", "medium")],
                                         str(tmp_path / "curves.png"), "smac:2s3z", {"low": 6.4, "medium": 8.1}),
        "ablations": F.plot_ablations(rows, str(tmp_path / "ablations.png")),
        "balanced": F.plot_balanced(rows, str(tmp_path / "balanced.png")),
        "sensitivity": F.plot_sensitivity([r for r in F.sensitivity_rows(rows) if r["quality"] == "low"],
                                          str(tmp_path / "sens.png")),
    }
    agents = [("s1", "stalker", "r"), ("s2", "stalker", "e 50% + m 50%"), ("z1", "zealot", "r"),
              ("z2", "zealot", "e 50% + m 50%"), ("z3", "zealot", "e 50% + m 50%")]
    rew = [{"algorithm": "SIT", "map": "smac:2s3z", "quality": "low", "seed": s, "agent": a, "agent_type": t,
            "r_hat_mean": 0.01 + 0.03 * (lv != "r") + 0.001 * s, "behaviour_level": lv}
           for s in range(3) for a, t, lv in agents]
    paths["decomposition"] = F.plot_decomposition(rew, str(tmp_path / "dec.png"), "smac:2s3z", "low")
    edges = np.linspace(0, 20, 41)
    dper = [{"algorithm": "SIT", "map": "smac:2s3z", "quality": "low", "seed": 0, "agent": a, "agent_type": t,
             "bin_low": lo, "bin_high": hi, "count": int(100 * np.exp(-((lo - (4 if lv == "r" else 12)) / 3) ** 2)),
             "type_ess": 12.5} for a, t, lv in agents for lo, hi in zip(edges[:-1], edges[1:])]
    paths["dper"] = F.plot_dper_priorities(dper, str(tmp_path / "dper.png"), "smac:2s3z", "low")
    panels = {"curves": 2, "dper": 2}
    for name, p in paths.items():
        assert os.path.getsize(p) > 5000, name
        assert F.png_size(p) == F.expected_png_size(panels.get(name, 1)), name
    sens = [r for r in F.sensitivity_rows(rows) if r["quality"] == "low"]  # ablations are not on these axes
    assert len(sens) == 3 * (12 + 1) and {r["alpha"] for r in sens} == {0.2, 1.0, 5.0}  # SIT = (0.2, 0.1, 1)


def test_a_variant_label_takes_its_algorithms_colour_unless_that_colour_is_taken():
    omac, icq, sit = "#17becf", "#ff7f0e", "#d62728"  # figures._PALETTE, written out
    c = F.colors_for(["OMAC[hidden=64]", "ICQ[critic_beta=1000]", "SIT", "Foo"])
    assert (c["OMAC[hidden=64]"], c["ICQ[critic_beta=1000]"], c["SIT"]) == (omac, icq, sit)
    assert c["Foo"] not in {omac, icq, sit}
    # The bare algorithm keeps its colour; its variants, and a second variant, get others.
    c = F.colors_for(["ICQ[critic_beta=1000]", "ICQ", "ICQ[critic_beta=10]"])
    assert c["ICQ"] == icq
    assert len({c["ICQ"], c["ICQ[critic_beta=1000]"], c["ICQ[critic_beta=10]"]}) == 3
    c = F.colors_for(["SIT[alpha=0.5]", "SIT[alpha=2]"])
    assert c["SIT[alpha=0.5]"] == sit and c["SIT[alpha=2]"] != sit


def test_results_csv_without_sampled_columns_still_reads(tmp_path):
    """A results.csv/curves.csv written before the sampled pass existed: its *_sampled fields read as
    None, the table shows only the greedy one, and a new cell rewrites the old rows with empty cells."""
    from rllib_sit.experiments.tables import markdown_report

    old_fields = [f for f in R.RESULT_FIELDS if not f.endswith("_sampled")]
    row = {"algorithm": "MABC", "map": "smac:2s3z", "quality": "low", "seed": 0, "final_return": 7.5,
           "win_rate": 0.25, "behaviour_return": 6.4}
    R.write_csv(str(tmp_path / R.RESULTS_CSV), old_fields, [row])
    store = R.ResultStore(str(tmp_path))
    got = store.results()[("MABC", "smac:2s3z", "low", 0)]
    assert got["final_return"] == 7.5 and got["final_return_sampled"] is None and got["win_rate_sampled"] is None
    text = markdown_report(list(store.results().values()), "cmd")
    assert [ln for ln in text.splitlines() if ln.startswith("## ")] == [
        "## Table 1: return of greedy policies (arg max / the mean action)"]
    store.add_cell(dict(row, seed=1, final_return_sampled=6.0))
    rows = store.read(R.RESULTS_CSV)
    assert [r["final_return_sampled"] for r in rows] == [None, 6.0]
    assert "## Table 1: return of sampled policies" in markdown_report(rows, "cmd")


def test_curve_points_read_both_passes_and_old_results():
    from rllib_sit.experiments.callbacks import BENCHMARK_RESULTS, EVALUATED, POLICY_UPDATES

    bench = {EVALUATED: True, POLICY_UPDATES: 4}
    new = {"episode_return_mean": 3.0, "episode_return_mean_greedy": 3.0, "episode_return_std_greedy": 0.5,
           "win_rate_greedy": 1.0, "episode_return_mean_sampled": 2.0, "episode_return_std_sampled": 0.25,
           "win_rate_sampled": 0.5, "explore": False}
    old = {"episode_return_mean": 4.0, "episode_return_std": 1.0, "win_rate": 0.75}
    # A headline of the sampled pass (evaluation_config explore=True) is not read as the greedy one.
    headline_sampled = dict(new, episode_return_mean=2.0, explore=True)
    pts = R.evaluations([{"training_iteration": i, BENCHMARK_RESULTS: bench, "evaluation": {"env_runners": ev}}
                         for i, ev in enumerate((new, old, headline_sampled))])
    assert [(p["return_mean"], p["return_std"], p["win_rate"]) for p in pts] == [(3.0, 0.5, 1.0), (4.0, 1.0, 0.75),
                                                                                (3.0, 0.5, 1.0)]
    assert [(p["return_mean_sampled"], p["win_rate_sampled"]) for p in pts] == [(2.0, 0.5), (None, None), (2.0, 0.5)]


def test_write_figures_draws_what_the_folder_supports(tmp_path):
    rows, curves = _synthetic_results()
    R.write_csv(str(tmp_path / R.RESULTS_CSV), R.RESULT_FIELDS, rows)
    R.write_csv(str(tmp_path / R.CURVES_CSV), R.CURVE_FIELDS, curves)
    names = sorted(os.path.basename(p) for p in F.write_figures(str(tmp_path)))
    assert names == ["ablations.png", "balanced.png", "curves_2s3z.png", "sensitivity_2s3z_low.png"]


# ------------------------------------------------------------------------------------------------
# Plans
# ------------------------------------------------------------------------------------------------

def test_quick_profile_plan_is_what_the_doc_says():
    """docs/benchmarks.md, "Profiles": smac:2s3z × {low, medium} × seeds 0-2, 1,000-episode datasets,
    500 policy updates for every algorithm (SIT + 500 ARDNEM, OMAC + 500 value updates), 4
    evaluations of 16 episodes, every registered Table 1 algorithm that fits a discrete map, and
    an estimate under one hour on 2 CPUs."""
    from rllib_sit.algorithms import ALGORITHMS

    plan = build_plan("quick")
    algos = [a for a in P.TABLE1_ALGORITHMS if a in ALGORITHMS and a != "FACMAC"]
    assert [a.label for a in plan.algorithms] == algos
    assert {(d.map, d.quality, d.episodes, d.seed) for d in plan.datasets} == {
        ("smac:2s3z", "low", 1000, 0), ("smac:2s3z", "medium", 1000, 0)}
    assert sorted({c.seed for c in plan.cells}) == [0, 1, 2] and len(plan.cells) == len(algos) * 2 * 3
    assert (plan.eval_points, plan.eval_episodes) == (4, 16)
    for c in plan.cells:
        cfg = plan.cell_config(c)
        key, per_it = P.policy_keys(c.algo.name)
        assert cfg[key] == 500 and cfg[per_it] == 125
        if c.algo.name == "SIT":
            assert cfg["ardnem_updates"] == 500
        if c.algo.name == "OMAC":
            assert cfg["value_updates"] == 500 and cfg["hidden"] == 64  # Table 11's shared width
        else:
            assert "hidden" not in cfg  # the profile fixes no other algorithm's settings
    # two one-thread trials at a time (the runner's default on 2 cores)
    assert plan.estimate(concurrent=2, datasets_to_generate=2)["total_s"] < 3600


def test_profile_settings_yield_to_config_and_variants():
    """A profile's setting (quick: OMAC's width) is under ``--config`` and a variant's own value, and
    a different value is a different cell (its settings hash changes, so resuming reruns it)."""
    base = build_plan("quick", algos=["OMAC"], qualities=["low"], seeds=[0])
    wide = build_plan("quick", algos=["OMAC[hidden=256]"], qualities=["low"], seeds=[0])
    cfg = build_plan("quick", algos=["OMAC"], qualities=["low"], seeds=[0], config={"hidden": 128})
    got = [p.cell_config(p.cells[0])["hidden"] for p in (base, wide, cfg)]
    assert got == [64, 256, 128]
    assert len({p.settings_hash(p.cells[0]) for p in (base, wide, cfg)}) == 3
    assert build_plan("paper", algos=["OMAC"], maps=["smac:2s3z"], qualities=["low"], seeds=[0]).profile_settings == {}
    # the estimate scales OMAC's measured width-256 cost by the square of the width
    est = [p.estimate(datasets_to_generate=0)["trials_s"] for p in (base, wide)]
    fixed = P.TRIAL_OVERHEAD_S + 4 * 2 * 16 * P.EVAL_STEPS_PER_EPISODE * P.EVAL_STEP_MS / 1000.0  # 2 passes
    assert abs((est[1] - fixed) / (est[0] - fixed) - 16.0) < 1e-9


def test_estimate_counts_both_evaluation_passes():
    """docs/benchmarks.md, "Time estimate of quick": every evaluation runs a greedy and a sampled
    pass (issue 26), so one quick MABC trial is 15 s + 500 updates x 58 ms + 4 points x 2 passes x
    16 episodes x 60 steps x 3 ms = 15 + 29 + 23.04 s (the table's 67 s; 56 s with one pass).
    That evaluate() runs ``evaluation_passes()`` passes: tests/algorithms/test_evaluation_protocol.py."""
    assert P.evaluation_passes() == 2
    plan = build_plan("quick", algos=["MABC"], qualities=["low"], seeds=[0])
    assert plan.estimate(datasets_to_generate=0)["trials_s"] == pytest.approx(67.04)
    one_pass = P.estimate_seconds([("MABC", plan.cell_config(plan.cells[0]))], 4, 16, eval_passes=1)
    assert one_pass["trials_s"] == pytest.approx(67.04 - 11.52)
    # the whole quick profile: 5,607 s of trials, two at a time, + 2 datasets of 1,000 episodes = 49 min
    est = build_plan("quick").estimate(concurrent=2, datasets_to_generate=2)
    assert est["trials_s"] * 2 == pytest.approx(5607.37, abs=0.01) and round(est["total_s"] / 60) == 49


def test_planner_skips_what_each_config_rejects():
    """The planner's skip rule is each config's own ``action_spaces``: the cells it plans on a
    continuous map are exactly the algorithms whose config builds modules for a continuous env."""
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "algorithms"))
    from tiny_fixtures import TinyContinuousEnv, TinyCoopEnv

    from rllib_sit.algorithms import ALGORITHMS

    for continuous, info in ((True, TinyContinuousEnv().info), (False, TinyCoopEnv().info)):
        for name, (module, cls) in ALGORITHMS.items():
            import importlib

            cfg = getattr(importlib.import_module(module), cls).get_default_config()
            try:
                cfg.check_action_space(info)
                builds = True
            except ValueError as e:
                assert "actions" in str(e) and info.env_id in str(e)
                builds = False
            assert P.algorithm_fits_map(name, continuous) == builds, (name, continuous)
    assert P.algorithm_fits_map("OMAC", True) and P.algorithm_fits_map("OMAC", False)
    assert not P.algorithm_fits_map("QMIX", True)
    assert not P.algorithm_fits_map("FACMAC", False) and P.algorithm_fits_map("SIT", True)
    # the action space of a map is its env's, not its family's: MPE's differential game is continuous
    assert [P.is_continuous_map(m) for m in ("mpe:dg", "mpe:dg_partial", "mpe:cn_3ls3l", "mamujoco:halfcheetah_2l",
                                             "smac:2s3z")] == [True, True, False, True, False]
    plan = build_plan("quick", maps=["mamujoco:halfcheetah_2l"], qualities=["low"], seeds=[0])
    assert {c.algo.name for c in plan.cells} == {a for a in P.TABLE1_ALGORITHMS if a != "QMIX"}
    assert "OMAC" in {c.algo.name for c in plan.cells}


def test_algorithm_variants_and_bad_names():
    got = parse_algorithms(["SIT[alpha=0.2|5,prioritized=False]", "MABC"], registered=["SIT", "MABC"])
    assert [a.label for a in got] == ["SIT[alpha=0.2,prioritized=False]", "SIT[alpha=5,prioritized=False]", "MABC"]
    assert got[1].config == {"alpha": 5, "prioritized": False}
    assert parse_algorithms(["SIT[decomposition=none]"], registered=["SIT"])[0].config == {"decomposition": "none"}
    with pytest.raises(ValueError, match="not a registered algorithm"):
        parse_algorithms(["BCQ"], registered=["SIT"])
    with pytest.raises(ValueError, match="has no setting 'alhpa'"):
        build_plan("quick", algos=["SIT[alhpa=1]"])
    with pytest.raises(ValueError, match="no dataset quality 'huge'"):
        build_plan("quick", qualities=["huge"])


# ------------------------------------------------------------------------------------------------
# One Tune experiment for the whole plan (issue 22: no core idles at the end of each variant)
# ------------------------------------------------------------------------------------------------

def _plan_trials(out):
    """[(trial index, params.json)] of tune/plan, in Tune's trial order."""
    import json

    from rllib_sit.experiments.runner import PLAN_EXPERIMENT

    root = os.path.join(out, TUNE_DIR, PLAN_EXPERIMENT)
    got = []
    for name in os.listdir(root):
        if os.path.isfile(os.path.join(root, name, "params.json")):
            with open(os.path.join(root, name, "params.json")) as f:
                got.append((int(name.rsplit("_", 1)[1]), name, json.load(f)))
    return sorted(got)


def test_whole_plan_is_one_tune_experiment_queued_longest_first(bench):
    """Every cell of both variants is a trial of ONE experiment (tune/plan), so Tune starts the next
    cell of any variant the moment a slot frees; the queue is the plan's run order (longest
    estimated cell first), and each trial folder names its cell."""
    from rllib_sit.experiments.runner import PLAN_EXPERIMENT

    plan, out, _, _ = bench
    assert [d for d in os.listdir(os.path.join(out, TUNE_DIR)) if not d.startswith(".")] == [PLAN_EXPERIMENT]
    trials = _plan_trials(out)
    order = plan.run_order(plan.cells)
    assert [(p["cell"]["label"], p["cell"]["config"]["seed"]) for _, _, p in trials] == [
        (c.algo.label, c.seed) for c in order]
    assert order[0].algo.name == "SIT"  # Stage I + Stage III: the longer cells go first
    for _, name, p in trials:
        assert name.startswith(f"{p['cell']['label']}_tiny_coop_s{p['cell']['config']['seed']}_")
        assert p["cell"]["algorithm"] == p["cell"]["label"] and p["cell"]["config"]["env"] == "tiny:coop"


def test_run_order_is_longest_estimate_first_and_stable():
    plan = build_plan("quick", qualities=["low"], seeds=[0, 1])
    order = plan.run_order(plan.cells)
    assert sorted(order, key=lambda c: c.key) == sorted(plan.cells, key=lambda c: c.key)
    cost = [P.estimate_seconds([(c.algo.name, plan.cell_config(c))], plan.eval_points, plan.eval_episodes)["trials_s"]
            for c in order]
    assert cost == sorted(cost, reverse=True) and cost[0] > cost[-1]
    index = {c.key: i for i, c in enumerate(plan.cells)}
    ties = [(a, b) for (a, ca), (b, cb) in zip(zip(order, cost), zip(order[1:], cost[1:])) if ca == cb]
    assert ties and all(index[a.key] < index[b.key] for a, b in ties)  # equal estimates keep the plan's order


def test_trials_of_per_variant_experiments_of_earlier_runs_are_recovered(bench, tmp_path):
    """Output folders of runs before the one-experiment plan (tune/<variant>/<trial>, flat
    params.json) still resume: a finished trial there whose row is missing is read back."""
    import json

    from rllib_sit.experiments.runner import PLAN_EXPERIMENT, experiment_name

    plan, out, _, _ = bench
    old = str(tmp_path / "old")
    shutil.copytree(out, old)
    root = os.path.join(old, TUNE_DIR)
    for _, name, p in _plan_trials(old):
        dest = os.path.join(root, experiment_name(p["cell"]["label"]), name)
        shutil.move(os.path.join(root, PLAN_EXPERIMENT, name), dest)
        with open(os.path.join(dest, "params.json"), "w") as f:
            json.dump(p["cell"]["config"], f)
    shutil.rmtree(os.path.join(root, PLAN_EXPERIMENT))
    rows = R.read_csv(os.path.join(old, R.RESULTS_CSV))
    lost = next(r for r in rows if r["algorithm"] == "SIT")
    R.write_csv(os.path.join(old, R.RESULTS_CSV), R.RESULT_FIELDS, [r for r in rows if r is not lost])
    rep = run_benchmark(plan, old, progress=False, figures=False)
    assert rep.recovered == 1 and rep.ran == 0
    assert R.ResultStore(old).results()[R.row_key(lost)]["final_return"] == pytest.approx(lost["final_return"])


def test_an_interrupted_trial_resumes_from_its_checkpoint_and_ends_as_the_uninterrupted_one(tmp_path):
    """A run cut after iteration 2 of a cell (its result.json ends there, its row is missing) goes on
    from that iteration's checkpoint on the next run, instead of starting the cell again: the new
    trial's first iteration is 3, and its row's greedy returns and curve equal the uninterrupted run's."""
    import json

    sys.path.insert(0, os.path.dirname(FIXTURES))
    from tiny_fixtures import make_tiny_dataset

    dataset = make_tiny_dataset(str(tmp_path / "ds"), n_episodes=24, seed=0)
    plan = _tiny_plan(dataset, algos=["SIT"], seeds=[0], eval_points=4)
    out = str(tmp_path / "out")
    run_benchmark(plan, out, setup=[SETUP], num_cpus=2, max_concurrent=1, threads=1, progress=False, figures=False,
                  keep_checkpoints=True)
    (full,) = R.read_csv(os.path.join(out, R.RESULTS_CSV))
    full_curve = R.read_csv(os.path.join(out, R.CURVES_CSV))
    (trial,) = [os.path.join(out, TUNE_DIR, t) for t in _trial_dirs(out)]
    with open(os.path.join(trial, "result.json")) as f:
        lines = [line for line in f if line.strip()]
    assert len(lines) > 3 and json.loads(lines[1])["training_iteration"] == 2
    with open(os.path.join(trial, "result.json"), "w") as f:  # "killed" after iteration 2
        f.writelines(lines[:2])
    for name in (R.RESULTS_CSV, R.CURVES_CSV):
        os.remove(os.path.join(out, name))

    rep = run_benchmark(plan, out, setup=[SETUP], num_cpus=2, max_concurrent=1, threads=1, progress=False,
                        figures=False)
    assert rep.ran == 1 and rep.recovered == 0
    new = [t for t in (os.path.join(out, TUNE_DIR, d) for d in _trial_dirs(out)) if t != trial]
    assert len(new) == 1
    _, results = R.read_trial(new[0])
    assert results[0]["training_iteration"] == 3 and len(results) == len(lines) - 2
    (row,) = R.read_csv(os.path.join(out, R.RESULTS_CSV))
    for k in ("final_return", "best_return", "best_policy_updates", "policy_updates", "evaluations", "iterations"):
        assert row[k] == pytest.approx(full[k]), k
    # The sampled pass draws its actions from the evaluation runner's RNG, which a checkpoint does not
    # hold: after a resume its draws differ (docs/benchmarks.md); it is still recorded.
    assert row["final_return_sampled"] is not None
    curve = R.read_csv(os.path.join(out, R.CURVES_CSV))
    assert [(c["policy_updates"], c["return_mean"]) for c in curve] == pytest.approx(
        [(c["policy_updates"], c["return_mean"]) for c in full_curve])
