"""``benchmarks/table1.py --results``: the per-trial CSV and the Markdown tables that issue 23's
paper-length table and the quick Table 1 are published with. Hand-made runner rows; every expected
number is computed here with NumPy, not by the script."""

import csv
import os
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNNER_FIELDS = ["algorithm", "map", "quality", "seed", "settings", "policy_updates", "evaluations", "final_return",
                 "final_return_sampled", "best_return", "best_policy_updates", "best_return_sampled", "win_rate",
                 "win_rate_sampled", "behaviour_return", "wall_time_s", "finished_at", "trial_dir"]


def _row(algo, seed, greedy, sampled, best, quality="low"):
    return {"algorithm": algo, "map": "smac:2s3z", "quality": quality, "seed": seed, "settings": "{}",
            "policy_updates": 500, "evaluations": 4, "final_return": greedy, "final_return_sampled": sampled,
            "best_return": best, "best_policy_updates": 250, "best_return_sampled": sampled, "win_rate": 0.5,
            "win_rate_sampled": 0.1, "behaviour_return": 3.36, "wall_time_s": 60.0 + seed,
            "finished_at": "2026-12-06T12:00:00", "trial_dir": "/x"}


def _write(folder, rows):
    os.makedirs(folder)
    with open(os.path.join(folder, "results.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, RUNNER_FIELDS)
        w.writeheader()
        w.writerows(rows)


def test_table1_tabulates_greedy_and_sampled_finals_and_a_later_folder_wins(tmp_path):
    sit = {0: (19.4, 6.9, 19.4), 1: (20.0, 7.1, 20.0), 2: (11.8, 7.5, 12.7)}
    _write(tmp_path / "a", [_row("SIT", s, *v) for s, v in sit.items()] + [_row("MABC", 0, 1.0, 1.0, 1.0)])
    _write(tmp_path / "b", [_row("MABC", 0, 12.0, 3.5, 13.7), _row("MABC", 1, 11.9, 2.8, 19.4)])
    out_csv = tmp_path / "docs" / "table.csv"
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "table1.py"), "--results",
                           str(tmp_path / "a"), str(tmp_path / "b"), "--csv", str(out_csv)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader(open(out_csv)))
    assert [(r["algorithm"], r["seed"]) for r in rows] == [("MABC", "0"), ("MABC", "1"), ("SIT", "0"), ("SIT", "1"),
                                                            ("SIT", "2")]  # Table 1's order; b's MABC seed 0 won
    assert rows[0]["final_return"] == "12.0" and "trial_dir" not in rows[0]
    md = proc.stdout
    greedy = md[md.index("**Final evaluation, greedy**"):md.index("**Final evaluation, sampled**")]
    sampled = md[md.index("**Final evaluation, sampled**"):md.index("**Best evaluation point, greedy**")]
    g = np.array([v[0] for v in sit.values()])
    s = np.array([v[1] for v in sit.values()])
    assert f"{g.mean():.2f} ± {g.std():.2f}" in greedy and f"{s.mean():.2f} ± {s.std():.2f}" in sampled
    m = np.array([12.0, 11.9])
    assert f"{m.mean():.2f} ± {m.std():.2f} (n=2)" in greedy  # 2 of the 3 seeds finished
    assert "| smac:2s3z | low | 3.36 |" in greedy and "Command: python benchmarks/table1.py --results" in md


def test_table1_names_a_folder_without_results(tmp_path):
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "table1.py"), "--results",
                           str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (f"table1.py: error: --results: {tmp_path}/results.csv: missing; "
                                                   "expected a 'rllib-sit benchmark' output folder")


def _trial(folder, name, cell, lines):
    import json

    d = folder / name
    d.mkdir(parents=True)
    (d / "params.json").write_text(json.dumps({"cell": cell}))
    (d / "result.json").write_text("".join(json.dumps(r) + "\n" for r in lines))
    return str(d)


def _result(it, ts, critic, entropy, lr=1e-4, ess=None):
    r = {"training_iteration": it, "timestamp": ts,
         "learners": {"stalker": {"critic_loss": critic[0], "policy_entropy": entropy[0], "actor_learning_rate": lr},
                      "zealot": {"critic_loss": critic[1], "policy_entropy": entropy[1], "actor_learning_rate": lr},
                      "__all_modules__": {"num_module_steps_trained": 5}}}
    if ess is not None:
        r["algorithm"] = {"dper": {"stalker": {"ess": ess, "num_trajectories": 10}}}
    return r


def test_table1_diagnostics_stitch_resumed_trials_and_summarise_first_and_final(tmp_path):
    """--diagnostics: each finished trial's learner logs, stitched over the run that was cut (iterations
    1-2) and the one that resumed it in another process (3-4, the results row's trial; its config's
    function repr has another address); another seed's trial is not mixed
    in; learning rates and counters are not diagnostics; the Markdown's first -> final values are the
    mean over modules, then over seeds, recomputed here."""
    exp = tmp_path / "tune" / "plan"
    fn = "<function AlgorithmConfig.DEFAULT_POLICY_MAPPING_FN at 0x{}>"  # as Tune writes a function: per process
    cell = {"label": "SIT", "algorithm": "SIT", "config": {"env": "smac:2s3z", "seed": 0, "input": "/d",
                                                           "policy_mapping_fn": fn.format("7f8f4a6e3ba0")}}
    other = dict(cell, config=dict(cell["config"], seed=1))
    _trial(exp, "SIT_s0_a_00000", cell, [_result(1, 10, (4.0, 2.0), (1.5, 1.1), ess=30.0),
                                         _result(2, 20, (3.0, 1.0), (1.4, 1.0), ess=30.0)])
    cell = dict(cell, config=dict(cell["config"], policy_mapping_fn=fn.format("7f65b811bba0")))  # the resuming process
    resumed = _trial(exp, "SIT_s0_b_00000", cell, [_result(3, 30, (2.0, 1.0), (1.2, 0.9), ess=30.0),
                                                   _result(4, 40, (1.0, 0.5), (1.0, 0.6), ess=30.0)])
    seed1 = _trial(exp, "SIT_s1_a_00001", other, [_result(1, 15, (8.0, 6.0), (1.6, 1.6)),
                                                  _result(4, 45, (0.2, 0.2), (0.4, 0.2))])
    folder = tmp_path / "bench"
    folder.mkdir()
    rows = [dict(_row("SIT", 0, 19.4, 6.9, 19.4), trial=resumed), dict(_row("SIT", 1, 18.0, 6.0, 19.0), trial=seed1)]
    with open(folder / "results.csv", "w", newline="") as f:
        w = csv.DictWriter(f, RUNNER_FIELDS + ["trial"])
        w.writeheader()
        w.writerows(rows)
    diag_csv = tmp_path / "diag.csv"
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "table1.py"), "--results", str(folder),
                           "--diagnostics", str(diag_csv)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    got = {(r["seed"], r["module"], r["metric"]): r for r in csv.DictReader(open(diag_csv))}
    assert {k[2] for k in got} == {"critic_loss", "policy_entropy", "dper_ess"}  # no learning rate, no counter
    c = got[("0", "stalker", "critic_loss")]
    assert (float(c["first"]), float(c["final"]), c["first_iteration"], c["final_iteration"]) == (4.0, 1.0, "1", "4")
    assert float(got[("1", "zealot", "critic_loss")]["first"]) == 6.0  # seed 1's own trial
    first = np.mean([np.mean([4.0, 2.0]), np.mean([8.0, 6.0])])
    final = np.mean([np.mean([1.0, 0.5]), np.mean([0.2, 0.2])])
    h_first = np.mean([np.mean([1.5, 1.1]), np.mean([1.6, 1.6])])
    h_final = np.mean([np.mean([1.0, 0.6]), np.mean([0.4, 0.2])])
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("| smac:2s3z | low | SIT |"))
    assert f"critic_loss {first:.3g} → {final:.3g}" in line and f"policy_entropy {h_first:.3g} → {h_final:.3g}" in line
    assert "dper_ess 30 → 30" in line


def test_diagnostic_series_follow_training_and_table1_draws_them(tmp_path):
    """``results.diagnostic_series``: per iteration with a policy-update count, each column's metric
    (the first of its names the trial logged: critic_loss before td_loss) as the mean over modules;
    ``--figures`` draws one PNG per dataset of the fixed 3 × 2 panel size."""
    from rllib_sit.experiments import figures as F
    from rllib_sit.experiments import results as R

    lines = [_result(1, 10, (4.0, 2.0), (1.5, 1.1), ess=30.0), _result(2, 20, (3.0, 1.0), (1.4, 1.0), ess=40.0),
             _result(3, 30, (2.0, 1.0), (1.2, 0.9))]
    lines[0]["learners"]["stalker"]["td_loss"] = 99.0  # a later name of the loss column: not chosen
    for r, x in zip(lines[1:], (500, 1000)):  # iteration 1 has no policy-update count: left out
        r["benchmark"] = {"policy_updates": x, "evaluated": True}
    got = {(d["column"], d["policy_updates"]): (d["metric"], d["value"]) for d in R.diagnostic_series(lines)}
    assert got == {("loss", 500): ("critic_loss", np.mean([3.0, 1.0])), ("loss", 1000): ("critic_loss", 1.5),
                   ("policy entropy", 500): ("policy_entropy", np.mean([1.4, 1.0])),
                   ("policy entropy", 1000): ("policy_entropy", np.mean([1.2, 0.9])),
                   ("weight ESS", 500): ("dper_ess", 40.0)}

    exp = tmp_path / "tune" / "plan"
    cell = {"label": "SIT", "algorithm": "SIT", "config": {"env": "smac:2s3z", "seed": 0, "input": "/d"}}
    trial = _trial(exp, "SIT_s0_a_00000", cell, lines)
    folder = tmp_path / "bench"
    folder.mkdir()
    with open(folder / "results.csv", "w", newline="") as f:
        w = csv.DictWriter(f, RUNNER_FIELDS + ["trial"])
        w.writeheader()
        w.writerow(dict(_row("SIT", 0, 19.4, 6.9, 19.4), trial=trial))
    with open(folder / "curves.csv", "w", newline="") as f:
        w = csv.DictWriter(f, R.CURVE_FIELDS)
        w.writeheader()
        w.writerows([{"algorithm": "SIT", "map": "smac:2s3z", "quality": "low", "seed": 0, "iteration": i,
                      "policy_updates": x, "return_mean": v} for i, x, v in ((2, 500, 12.0), (3, 1000, 15.0))])
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "table1.py"), "--results", str(folder),
                           "--figures", str(tmp_path / "figs")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    png = tmp_path / "figs" / "diagnostics_2s3z_low.png"
    assert F.png_size(str(png)) == F.expected_png_size(3, True, rows=2)


def test_diagnostics_use_a_log_axis_only_where_a_panel_spans_a_decade(tmp_path, monkeypatch):
    """A log axis where the values span ≥ 10× (a falling loss); a linear one where a log-flagged metric
    is flat (ICQ's weight ESS at 1.0, whose log axis printed crowded tick labels; it is drawn at ±5 %
    around its value, not its 1e-7 noise magnified); never on a linear column, however wide."""
    from rllib_sit.experiments import figures as F

    drawn, limits = {}, {}

    def keep(fig, out_png):
        drawn.update({ax.get_title().split(" (")[0]: ax.get_yscale() for ax in fig.axes if ax.get_title()})
        limits.update({ax.get_title().split(" (")[0]: ax.get_ylim() for ax in fig.axes if ax.get_title()})
        F._plt().close(fig)
        return out_png

    monkeypatch.setattr(F, "_save", keep)
    rows = []
    for seed in (0, 1):
        for x, loss, ess, q in ((500, 30.0, 1.0, 0.5), (1000, 3.0, 1.0, 5.0), (1500, 0.2, 1.0, 50.0)):
            for column, metric, v in (("loss", "td_loss", loss),
                                      ("weight ESS", "critic_weight_ess", ess - 1e-7 * (x == 1000)),
                                      ("Q scale", "q_mean", q)):
                rows.append({"map": "smac:2s3z", "quality": "low", "algorithm": "ICQ", "seed": seed,
                             "policy_updates": x, "column": column, "metric": metric, "value": v})
    curves = [{"map": "smac:2s3z", "quality": "low", "algorithm": "ICQ", "seed": 0, "policy_updates": 500,
               "return_mean": 10.0}]
    F.plot_diagnostics(rows, curves, str(tmp_path / "d.png"), "smac:2s3z", "low")
    assert drawn["loss"] == "log" and drawn["weight ESS"] == "linear" and drawn["Q scale"] == "linear"
    lo, hi = limits["weight ESS"]  # flat up to 1e-7: drawn at 1.0 ± 5 %, not its noise magnified
    assert np.isclose(lo, 0.95, atol=1e-6) and np.isclose(hi, 1.05, atol=1e-6)
    assert limits["Q scale"][0] < 0.5 and limits["Q scale"][1] > 50.0  # a moving metric keeps autoscale
    assert F._spans_decade([0.5, 4.9]) is False and F._spans_decade([0.5, 5.0]) is True
    assert F._spans_decade([-1.0, 50.0]) is False and F._spans_decade([]) is False


def _table1_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("table1", os.path.join(ROOT, "benchmarks", "table1.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _store_rows(folder, name, fields, rows):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name), "w", newline="") as f:
        w = csv.DictWriter(f, fields, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)


def test_store_sync_copies_only_the_cells_the_other_folder_lacks(tmp_path):
    """--store's copy: a fresh machine's empty --out gets the committed cells (results and curves);
    a cell both hold keeps the destination's numbers, curve included; nothing is left half-written."""
    from rllib_sit.experiments import results as R

    key = {"map": "smac:2s3z", "quality": "low"}
    committed, out = str(tmp_path / "store"), str(tmp_path / "out")
    _store_rows(committed, R.RESULTS_CSV, R.RESULT_FIELDS,
                [dict(key, algorithm="SIT", seed=0, final_return=11.3), dict(key, algorithm="MABC", seed=1, final_return=9.0)])
    _store_rows(committed, R.CURVES_CSV, R.CURVE_FIELDS,
                [dict(key, algorithm="SIT", seed=0, iteration=i, return_mean=10.0 + i) for i in (1, 2)] +
                [dict(key, algorithm="MABC", seed=1, iteration=1, return_mean=-1.0)])
    _store_rows(out, R.RESULTS_CSV, R.RESULT_FIELDS, [dict(key, algorithm="MABC", seed=1, final_return=7.5)])
    _store_rows(out, R.CURVES_CSV, R.CURVE_FIELDS, [dict(key, algorithm="MABC", seed=1, iteration=1, return_mean=7.5)])

    table1 = _table1_module()
    assert table1.sync_store(committed, out) == [("SIT", "smac:2s3z", "low", 0)]
    res = {(r["algorithm"], r["seed"]): r["final_return"] for r in R.read_csv(os.path.join(out, R.RESULTS_CSV))}
    assert res == {("SIT", 0): 11.3, ("MABC", 1): 7.5}  # out's own MABC row stays
    curves = sorted((r["algorithm"], r["iteration"], r["return_mean"]) for r in R.read_csv(os.path.join(out, R.CURVES_CSV)))
    assert curves == [("MABC", 1, 7.5), ("SIT", 1, 11.0), ("SIT", 2, 12.0)]
    assert sorted(os.listdir(out)) == [R.CURVES_CSV, R.RESULTS_CSV]  # no temporary file, no empty detail files
    assert table1.sync_store(committed, out) == []  # nothing new the second time
    fresh = str(tmp_path / "fresh")
    assert len(table1.sync_store(out, fresh)) == 2 and os.path.isdir(fresh)


def test_store_without_run_is_refused_in_one_line(tmp_path):
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "table1.py"), "--results", str(tmp_path),
                           "--store", str(tmp_path / "s")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and not os.path.exists(tmp_path / "s")
    assert proc.stderr.strip().splitlines()[-1] == ("table1.py: error: --store: only with --run paper (it is the "
                                                   "run's committed copy of the finished cells)")


def test_diagnostics_keep_the_rows_of_a_trial_no_longer_on_this_machine(tmp_path):
    """A fresh machine has the committed rows but not their Tune folders: --diagnostics keeps those
    cells' rows of the existing CSV (and drops rows of cells that are not in the table)."""
    folder = tmp_path / "bench"
    _write(folder, [dict(_row("SIT", 0, 11.3, 8.5, 15.5))])
    fields = ["map", "quality", "algorithm", "seed", "module", "metric", "first", "final", "first_iteration",
              "final_iteration"]
    kept = {"map": "smac:2s3z", "quality": "low", "algorithm": "SIT", "seed": 0, "module": "stalker",
            "metric": "critic_loss", "first": 4.0, "final": 1.0, "first_iteration": 1, "final_iteration": 30}
    _store_rows(str(tmp_path), "diag.csv", fields, [kept, dict(kept, algorithm="MABC")])
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "table1.py"), "--results", str(folder),
                           "--diagnostics", str(tmp_path / "diag.csv")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    got = list(csv.DictReader(open(tmp_path / "diag.csv")))
    assert [(r["algorithm"], r["metric"], float(r["first"]), float(r["final"])) for r in got] == [
        ("SIT", "critic_loss", 4.0, 1.0)]
    assert "critic_loss 4 → 1" in proc.stdout


def _checkpoint(folder, iteration, complete=True):
    """A minimal algorithm checkpoint as trial_guard.checkpoint_is_complete reads one."""
    import json
    import pickle

    os.makedirs(os.path.join(folder, "learner_group"))
    with open(os.path.join(folder, "rllib_checkpoint.json"), "w") as f:
        json.dump({"state_file": "state"}, f)
    with open(os.path.join(folder, "class_and_ctor_args.pkl"), "wb") as f:
        pickle.dump({}, f)
    if complete:
        with open(os.path.join(folder, "state.pkl"), "wb") as f:
            pickle.dump({"training_iteration": iteration}, f)


def test_part_way_trials_are_packed_with_their_newest_complete_checkpoint_and_restored(tmp_path):
    """A cell cut twice (trials a then b) is packed with both trials' params and results and b's
    complete checkpoint only; a finished cell and a cell without a complete checkpoint are not; a
    fresh --out gets the folders back, a folder it has already is not overwritten; nothing part-way
    left: the archive goes."""
    table1 = _table1_module()
    exp = tmp_path / "out" / "tune" / "plan"
    sit = {"label": "SIT", "algorithm": "SIT", "config": {"env": "smac:2s3z", "seed": 2, "input": "/d/low"}}
    mabc = {"label": "MABC", "algorithm": "MABC", "config": {"env": "smac:2s3z", "seed": 0, "input": "/d/low"}}
    icq = {"label": "ICQ", "algorithm": "ICQ", "config": {"env": "smac:2s3z", "seed": 0, "input": "/d/low"}}
    running = {"phases": {"current": "agents"}}
    _trial(exp, "SIT_a_00000", sit, [dict(running, training_iteration=i) for i in (1, 2, 3)])
    _checkpoint(str(exp / "SIT_a_00000" / "checkpoint_000000"), 2)
    _checkpoint(str(exp / "SIT_a_00000" / "checkpoint_000001"), 3, complete=False)  # cut by the kill
    _trial(exp, "SIT_b_00001", sit, [dict(running, training_iteration=i) for i in (3, 4, 5)])
    _checkpoint(str(exp / "SIT_b_00001" / "checkpoint_000000"), 5)
    _trial(exp, "MABC_c_00002", mabc, [{"training_iteration": 1, "phases": {"current": "done"}}])
    _checkpoint(str(exp / "MABC_c_00002" / "checkpoint_000000"), 1)
    _trial(exp, "ICQ_d_00003", icq, [dict(running, training_iteration=1)])
    store = tmp_path / "store"

    assert table1.pack_unfinished(str(tmp_path / "out"), str(store)) == ["SIT_a_00000", "SIT_b_00001"]
    import tarfile

    with tarfile.open(store / table1.UNFINISHED) as tar:
        files = sorted(m.name for m in tar.getmembers() if m.isfile())
    assert files == ["plan/SIT_a_00000/params.json", "plan/SIT_a_00000/result.json",
                     "plan/SIT_b_00001/checkpoint_000000/class_and_ctor_args.pkl",
                     "plan/SIT_b_00001/checkpoint_000000/rllib_checkpoint.json",
                     "plan/SIT_b_00001/checkpoint_000000/state.pkl",
                     "plan/SIT_b_00001/params.json", "plan/SIT_b_00001/result.json"]
    assert os.listdir(store) == [table1.UNFINISHED]  # no temporary file left

    fresh = tmp_path / "fresh"
    (fresh / "tune" / "plan" / "SIT_a_00000").mkdir(parents=True)  # already here: left alone
    assert table1.unpack_unfinished(str(store), str(fresh)) == ["SIT_b_00001"]
    assert not os.listdir(fresh / "tune" / "plan" / "SIT_a_00000")
    got = fresh / "tune" / "plan" / "SIT_b_00001"
    assert (got / "result.json").read_text() == (exp / "SIT_b_00001" / "result.json").read_text()
    from rllib_sit.cli.trial_guard import checkpoint_is_complete, checkpoint_iteration

    assert checkpoint_is_complete(str(got / "checkpoint_000000")) and checkpoint_iteration(str(got / "checkpoint_000000")) == 5
    assert table1.unpack_unfinished(str(store), str(fresh)) == []  # a second time: nothing new

    with open(exp / "SIT_b_00001" / "result.json", "a") as f:  # the cell finishes
        f.write('{"training_iteration": 6, "phases": {"current": "done"}}\n')
    assert table1.pack_unfinished(str(tmp_path / "out"), str(store)) == [] and os.listdir(store) == []
