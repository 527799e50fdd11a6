"""Table 1 of the SIT paper from benchmark folders: one CSV of per-trial rows, Markdown tables with
greedy and sampled returns (final and best point), and the command that made them.

    # the paper-length comparison of issue 23 (2s3z low + medium, every Table 1 algorithm, 3 seeds):
    # resumable, interrupt it any time and run the same command again (finished cells are skipped,
    # a cut trial resumes from its last iteration's checkpoint)
    python benchmarks/table1.py --run paper --out results/table1_paper --store docs/results/table1_paper \
        --csv docs/results/table1_paper.csv --diagnostics docs/results/table1_paper_diagnostics.csv \
        --figures docs/figures/paper
    # the quick Table 1 of data version 2, from the folders its runs wrote
    python benchmarks/table1.py --results results/quick_v2 results/quick_v2_cn_hc --csv docs/results/table1_quick_v2.csv

``--run paper`` is ``rllib-sit benchmark --profile paper`` restricted to issue 23's plan: smac:2s3z
low and medium (10,000 episodes), MABC, QMIX, MABCQ, MACQL, ICQ at the critic beta its page
recommends for these data (``ICQ[critic_beta=1000]``, the ICQ code's; Table 11's 0.1 puts the
critic's softmax on one step and its loss grows to ~5e5, docs/algorithms/icq.md), OMAC at the shared
width 64 (``OMAC[hidden=64]``: at its own 256 one update costs 1.4-1.8 s, docs/benchmarks.md), SIT; each at
its defaults (the papers' lengths: 15,000 policy updates, SIT + 20,000 ARDNEM, OMAC + 10,000 value
updates), 10 evaluation points of 32 episodes, seeds 0-2, two one-thread trials at a time, a
checkpoint every iteration (only the newest kept). ``--algos``/``--qualities``/``--seeds`` and
``--config`` (e.g. ``'{"precision": "bf16"}'``) narrow or change it.

``--store DIR`` is the committed copy of the finished cells (the runner's ``results.csv``,
``curves.csv``, ``sit_rewards.csv``, ``dper_priorities.csv``): before the run, its cells that
``--out`` lacks are copied into ``--out`` (so a fresh machine, whose ``--out`` is empty, skips them
instead of running them again); after the run, even an interrupted one, the cells ``--out``
finished are copied back into it, and the part-way trials (their params, results and newest complete
checkpoint) are packed into ``unfinished_trials.tar.gz`` there, which the next run restores, so that
they resume from that checkpoint. Commit the folder after each session: a new session's machine
keeps nothing of the last one's, and the restored trials only match their cells when the datasets
are at the same path (``RLLIB_SIT_DATA_DIR``; otherwise they start again from iteration 1).
``--diagnostics`` keeps the rows of an existing CSV for the cells whose Tune folder is no longer on
this machine.

The Markdown shows the **final** point (as the paper's Table 1 does) greedy and sampled, then the
best greedy point; mean ± population std over the seeds, and per seed.
"""

from __future__ import annotations

import argparse
import csv
import glob
import os
import shlex
import subprocess
import sys
import tarfile
from typing import Dict, List, Sequence

import numpy as np

PAPER_ALGOS = ["MABC", "QMIX", "MABCQ", "MACQL", "ICQ[critic_beta=1000]", "OMAC[hidden=64]", "SIT"]
# The columns of the committed CSV (a subset of the runner's results.csv, in this order).
CSV_FIELDS = ["map", "quality", "algorithm", "settings", "seed", "policy_updates", "evaluations",
              "final_return", "final_return_sampled", "best_return", "best_policy_updates", "best_return_sampled",
              "win_rate", "win_rate_sampled", "behaviour_return", "wall_time_s", "finished_at"]
DIAGNOSTIC_CSV_FIELDS = ["map", "quality", "algorithm", "seed", "module", "metric", "first", "final",
                         "first_iteration", "final_iteration"]
# Table 1's column order (the runner's labels; variants follow their base algorithm).
ORDER = ["MABC", "QMIX", "FACMAC", "MABCQ", "MACQL", "ICQ", "OMAC", "SIT"]


def read_rows(folders: Sequence[str]) -> List[Dict[str, str]]:
    rows = []
    for folder in folders:
        path = os.path.join(folder, "results.csv")
        if not os.path.exists(path):
            raise FileNotFoundError(f"--results: {path}: missing; expected a 'rllib-sit benchmark' output folder")
        with open(path, newline="") as f:
            rows += list(csv.DictReader(f))
    seen, out = set(), []
    for r in rows:  # one row per cell (a later folder's row for the same cell wins)
        key = (r["algorithm"], r["map"], r["quality"], r["seed"])
        if key in seen:
            out = [o for o in out if (o["algorithm"], o["map"], o["quality"], o["seed"]) != key]
        seen.add(key)
        out.append(r)
    return out


def sync_store(src: str, dst: str) -> List[tuple]:
    """Copy the cells finished in benchmark folder ``src`` and missing from ``dst`` into ``dst``:
    their rows of each of the runner's CSVs, the results row last (it is what marks a cell finished),
    each file written to a temporary name and renamed. A cell ``dst`` holds already is left as it is
    (the runner refuses to resume over a row made with other settings). Returns the copied cells' keys."""
    from rllib_sit.experiments import results as R

    have = {R.row_key(r) for r in R.read_csv(os.path.join(dst, R.RESULTS_CSV))}
    new = [k for k in (R.row_key(r) for r in R.read_csv(os.path.join(src, R.RESULTS_CSV))) if k not in have]
    if not new:
        return []
    os.makedirs(dst, exist_ok=True)
    files = [n for n in R.ResultStore.FILES if n != R.RESULTS_CSV] + [R.RESULTS_CSV]
    for name in files:
        fields = R.ResultStore.FILES[name]
        rows = [r for r in R.read_csv(os.path.join(src, name), fields) if R.row_key(r) in set(new)]
        if rows or name == R.RESULTS_CSV:
            R.write_csv(os.path.join(dst, name), fields, R.read_csv(os.path.join(dst, name), fields) + rows)
    return new


# The part-way trials of the last session, in the --store folder (see pack_unfinished).
UNFINISHED = "unfinished_trials.tar.gz"


def _trial_groups(out: str) -> Dict[tuple, List[str]]:
    """The plan experiment's trial folders by cell (label, env, input, seed): a cell cut and resumed
    has several, the later ones continuing the earlier ones."""
    from rllib_sit.experiments import results as R
    from rllib_sit.experiments.runner import PLAN_EXPERIMENT, TUNE_DIR
    from rllib_sit.experiments.trainable import CELL

    exp = os.path.join(out, TUNE_DIR, PLAN_EXPERIMENT)
    groups: Dict[tuple, List[str]] = {}
    for name in sorted(os.listdir(exp)) if os.path.isdir(exp) else []:
        params, _ = R.read_trial(os.path.join(exp, name))
        cell = params.get(CELL) if isinstance(params, dict) else None
        if isinstance(cell, dict) and isinstance(cell.get("config"), dict):
            c = cell["config"]
            groups.setdefault((cell.get("label"), c.get("env"), c.get("input"), c.get("seed")), []).append(
                os.path.join(exp, name))
    return groups


def pack_unfinished(out: str, store: str) -> List[str]:
    """Write ``store``/unfinished_trials.tar.gz: the Tune folders of the cells ``out`` has part-way
    (no trial of the cell finished, one has a complete checkpoint), so that a fresh machine resumes
    them from that checkpoint instead of from iteration 1 (a SIT trial is 40-80 min, and a session's
    machine is not kept). Per cell: every trial's params.json and result.json (the runner stitches the
    curve from them) and the newest complete checkpoint (2 MB or so). Written to a temporary name and
    renamed; removed when no cell is part-way. Returns the trial folders' names."""
    from rllib_sit.cli.trial_guard import checkpoint_is_complete, checkpoint_iteration
    from rllib_sit.experiments import results as R
    from rllib_sit.experiments.runner import TUNE_DIR

    tune = os.path.join(out, TUNE_DIR)
    members: List[str] = []  # paths relative to tune/
    for trials in _trial_groups(out).values():
        if any(R.trial_finished(R.read_trial(t)[1]) for t in trials):
            continue
        ckpts = [(checkpoint_iteration(c), c) for t in trials for c in glob.glob(os.path.join(t, "checkpoint_[0-9]*"))
                 if checkpoint_is_complete(c)]
        ckpts = [(it, c) for it, c in ckpts if it is not None]
        if not ckpts:
            continue
        for t in trials:
            members += [os.path.relpath(os.path.join(t, f), tune) for f in ("params.json", "result.json")
                        if os.path.isfile(os.path.join(t, f))]
        members.append(os.path.relpath(max(ckpts)[1], tune))
    path = os.path.join(store, UNFINISHED)
    if not members:
        if os.path.exists(path):
            os.remove(path)
        return []
    os.makedirs(store, exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    with tarfile.open(tmp, "w:gz") as tar:
        for m in members:
            tar.add(os.path.join(tune, m), arcname=m)
    os.replace(tmp, path)
    return sorted({m.split(os.sep)[1] for m in members})


def unpack_unfinished(store: str, out: str) -> List[str]:
    """Extract ``store``/unfinished_trials.tar.gz into ``out``/tune for the trial folders ``out``
    lacks (a fresh machine); a folder ``out`` has already is left alone. Returns the extracted folders."""
    from rllib_sit.experiments.runner import TUNE_DIR

    path = os.path.join(store, UNFINISHED)
    if not os.path.isfile(path):
        return []
    tune = os.path.join(out, TUNE_DIR)
    have = {f"{e}/{t}" for e in (os.listdir(tune) if os.path.isdir(tune) else [])
            if os.path.isdir(os.path.join(tune, e)) for t in os.listdir(os.path.join(tune, e))}
    folder = lambda m: "/".join(m.name.split("/")[:2])  # noqa: E731 - <experiment>/<trial>
    with tarfile.open(path, "r:gz") as tar:
        members = [m for m in tar.getmembers() if m.name.count("/") >= 1]
        new = sorted({folder(m) for m in members} - have)
        tar.extractall(tune, members=[m for m in members if folder(m) in new], filter="data")
    return [n.split("/")[1] for n in new]


def write_csv(rows: List[Dict[str, str]], path: str) -> None:
    _write(rows, path, CSV_FIELDS)


def _write(rows: List[Dict], path: str, fields: Sequence[str]) -> None:
    """``rows`` sorted in Table 1's order, written to a temporary name and renamed."""
    tmp = f"{path}.tmp-{os.getpid()}"
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fields, extrasaction="ignore")
        w.writeheader()
        for r in sorted(rows, key=lambda r: (r["map"], r["quality"], _order(r["algorithm"]), int(r["seed"]),
                                             r.get("module", ""), r.get("metric", ""))):
            w.writerow(r)
    os.replace(tmp, path)


def _order(label: str):
    base = label.split("[", 1)[0]
    return (ORDER.index(base) if base in ORDER else len(ORDER), label)


def _stat(vals: Sequence[float]) -> str:
    return f"{np.mean(vals):.2f} ± {np.std(vals):.2f}" if vals else "—"


def markdown(rows: List[Dict[str, str]]) -> str:
    datasets = sorted({(r["map"], r["quality"]) for r in rows})
    algos = sorted({r["algorithm"] for r in rows}, key=_order)
    seeds = sorted({int(r["seed"]) for r in rows})
    get = {(r["algorithm"], r["map"], r["quality"], int(r["seed"])): r for r in rows}
    out = []
    for title, col in (("Final evaluation, greedy", "final_return"), ("Final evaluation, sampled", "final_return_sampled"),
                       ("Best evaluation point, greedy", "best_return")):
        head = ["map", "quality", "Behaviour", *algos]
        lines = [f"**{title}** (mean ± std over seeds {seeds}; \"(n=k)\": k seeds finished)", "",
                 "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for m, q in datasets:
            beh = [float(r["behaviour_return"]) for r in rows if r["map"] == m and r["quality"] == q]
            cells = [m, q, f"{beh[0]:.2f}" if beh else "—"]
            for a in algos:
                vals = [float(get[(a, m, q, s)][col]) for s in seeds if (a, m, q, s) in get and get[(a, m, q, s)][col]]
                cells.append(_stat(vals) + (f" (n={len(vals)})" if vals and len(vals) < len(seeds) else ""))
            lines.append("| " + " | ".join(cells) + " |")
        out.append("\n".join(lines))
    per_seed = ["**Per seed** (final greedy / final sampled / best greedy):", ""]
    for m, q in datasets:
        parts = []
        for a in algos:
            vals = [get[(a, m, q, s)] for s in seeds if (a, m, q, s) in get]
            if vals:
                parts.append(f"{a} " + ", ".join(f"{float(r['final_return']):.2f} / {float(r['final_return_sampled']):.2f}"
                                                  f" / {float(r['best_return']):.2f}" for r in vals))
        per_seed.append(f"* {m} {q}: " + "; ".join(parts) + ".")
    out.append("\n".join(per_seed))
    wall = ["**Wall time per trial** (s, mean over the finished seeds; runs that shared the machine are not "
            "speed figures):", ""]
    for m, q in datasets:
        parts = [f"{a} {np.mean([float(r['wall_time_s']) for r in rows if (r['algorithm'], r['map'], r['quality']) == (a, m, q)]):.0f}"
                 for a in algos if any((r["algorithm"], r["map"], r["quality"]) == (a, m, q) for r in rows)]
        wall.append(f"* {m} {q}: " + ", ".join(parts) + ".")
    out.append("\n".join(wall))
    return "\n\n".join(out)


def diagnostics(rows: List[Dict[str, str]], kept: Sequence[Dict[str, str]] = ()) -> List[Dict[str, object]]:
    """The learner diagnostics of every finished trial (first and final value per module and metric),
    read from its Tune folder(s) (results.csv's ``trial``; resumed runs stitched). A trial whose
    folder is not on this machine keeps its rows of ``kept`` (an earlier diagnostics CSV)."""
    from rllib_sit.experiments import results as R

    out = []
    for r in rows:
        key = (r["algorithm"], r["map"], r["quality"], int(r["seed"]))
        if r.get("trial") and os.path.isdir(r["trial"]):
            out += R.diagnostic_rows(key, R.cell_results(r["trial"]))
        else:
            out += [d for d in kept if (d["algorithm"], d["map"], d["quality"], int(d["seed"])) == key]
    return out


def diagnostics_markdown(diag: List[Dict[str, object]]) -> str:
    """Per dataset and algorithm: each column's metric, first → final value, mean over the modules
    that logged it and then over the seeds."""
    by: Dict[tuple, Dict[str, Dict[int, List[tuple]]]] = {}
    for d in diag:
        cell = by.setdefault((d["map"], d["quality"], d["algorithm"]), {})
        cell.setdefault(d["metric"], {}).setdefault(int(d["seed"]), []).append((float(d["first"]), float(d["final"])))
    from rllib_sit.experiments import results as R

    head = ["map", "quality", "algorithm", *[c for c, _, _ in R.DIAGNOSTIC_COLUMNS]]
    lines = ["**What the logs say** (first → final logged value; mean over the modules that log it, then over "
             "the seeds)", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m, q, a in sorted(by, key=lambda k: (k[0], k[1], _order(k[2]))):
        metrics, cells = by[(m, q, a)], [m, q, a]
        for _, names, every in R.DIAGNOSTIC_COLUMNS:
            parts = []
            for name in names:
                if name in metrics:
                    per_seed = [np.mean(v, axis=0) for v in metrics[name].values()]
                    first, final = np.mean(per_seed, axis=0)
                    parts.append(f"{name} {_num(first)} → {_num(final)}")
                    if not every:
                        break
            cells.append("; ".join(parts) or "—")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def diagnostic_figures(rows: List[Dict[str, str]], folders: Sequence[str], out_dir: str) -> List[str]:
    """Per dataset: the greedy learning curve beside what the logs say over training (loss, Q scale,
    policy entropy, weight ESS, data fit), from the folders' curves.csv and each trial's Tune folder(s)."""
    from rllib_sit.experiments import figures as F
    from rllib_sit.experiments import results as R

    key = lambda r: (r["algorithm"], r["map"], r["quality"], str(r["seed"]))  # noqa: E731
    keys = {key(r) for r in rows}
    curves: Dict[tuple, List[Dict]] = {}
    for folder in folders:  # a later folder's curve of a cell replaces an earlier one's, as its row does
        path = os.path.join(folder, R.CURVES_CSV)
        mine: Dict[tuple, List[Dict]] = {}
        for c in (R.read_csv(path) if os.path.exists(path) else []):
            if key(c) in keys:
                mine.setdefault(key(c), []).append(c)
        curves.update(mine)
    series = R.trial_diagnostic_series(rows)
    flat = [c for cs in curves.values() for c in cs]
    return [F.plot_diagnostics(series, flat, os.path.join(out_dir, f"diagnostics_{m.split(':')[-1]}_{q}.png"), m, q)
            for m, q in dict.fromkeys((r["map"], r["quality"]) for r in rows)]


def _num(x: float) -> str:
    return f"{x:.3g}" if abs(x) < 1e4 else f"{x:.2e}"


def paper_command(args) -> List[str]:
    cmd = ["benchmark", "--profile", "paper", "--maps", "smac:2s3z", "--qualities", *args.qualities,
           "--seeds", *map(str, args.seeds), "--algos", *args.algos, "--checkpoint-freq", "1",
           "--max-concurrent-trials", str(args.concurrent), "--threads", "1", "--out", args.out, "--no-progress"]
    if args.config:
        cmd += ["--config", args.config]
    return cmd


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", choices=["paper"], help="run issue 23's paper-length plan into --out first")
    p.add_argument("--results", nargs="+", metavar="DIR", help="benchmark folders to tabulate (default: --out)")
    p.add_argument("--out", default="results/table1_paper")
    p.add_argument("--store", metavar="DIR",
                   help="the committed copy of the finished cells (e.g. docs/results/table1_paper): with --run, its "
                        "cells are copied into --out before the run and --out's finished cells back after it")
    p.add_argument("--csv", help="write the per-trial rows here (e.g. docs/results/table1_paper.csv)")
    p.add_argument("--diagnostics", metavar="CSV",
                   help="also read each finished trial's learner logs (losses, Q scale, policy entropy, ESS) from "
                        "its Tune folder: write them here (first and final value per module and metric) and add "
                        "the \"What the logs say\" table")
    p.add_argument("--figures", metavar="DIR",
                   help="draw DIR/diagnostics_MAP_QUALITY.png per dataset: the greedy learning curve beside the "
                        "logs' loss, Q scale, policy entropy, weight ESS and data fit over training")
    p.add_argument("--algos", nargs="+", default=PAPER_ALGOS)
    p.add_argument("--qualities", nargs="+", default=["low", "medium"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--concurrent", type=int, default=2, help="trials at a time (one thread each)")
    p.add_argument("--config", help="JSON settings for every algorithm (e.g. '{\"precision\": \"bf16\"}')")
    args = p.parse_args(argv)
    if args.store and not args.run:
        p.error("--store: only with --run paper (it is the run's committed copy of the finished cells)")
    if args.store and os.path.exists(args.store) and not os.path.isdir(args.store):
        p.error(f"--store: {args.store}: not a folder; expected a benchmark folder (results.csv, curves.csv, ...)")
    if args.run:
        cmd = paper_command(args)
        if args.store:
            copied = sync_store(args.store, args.out)
            resumed = unpack_unfinished(args.store, args.out)
            print(f"--store: {len(copied)} finished cell(s) copied from {args.store} into {args.out}; "
                  f"{len(resumed)} part-way trial folder(s) restored", flush=True)
        print("rllib-sit " + shlex.join(cmd), flush=True)
        try:
            rc = subprocess.call([sys.executable, "-m", "rllib_sit.cli.sit_cmd", *cmd])
        except KeyboardInterrupt:  # the benchmark got the same SIGINT and saved what finished
            rc = 130
        if args.store:
            copied = sync_store(args.out, args.store)
            packed = pack_unfinished(args.out, args.store)
            print(f"--store: {len(copied)} newly finished cell(s) copied into {args.store}; {len(packed)} part-way "
                  f"trial folder(s) packed into {os.path.join(args.store, UNFINISHED)}", flush=True)
        if rc != 0:
            print(f"rllib-sit benchmark exited with {rc}; finished cells are kept in {args.out}", file=sys.stderr)
            return rc
    try:
        rows = read_rows(args.results or [args.out])
    except FileNotFoundError as e:
        p.error(str(e))  # one line, exit 2
    if args.csv:
        write_csv(rows, args.csv)
    parts = [markdown(rows)]
    if args.diagnostics:
        from rllib_sit.experiments import results as R

        diag = diagnostics(rows, R.read_csv(args.diagnostics))
        _write(diag, args.diagnostics, DIAGNOSTIC_CSV_FIELDS)
        parts.append(diagnostics_markdown(diag))
    if args.figures:
        for path in diagnostic_figures(rows, args.results or [args.out], args.figures):
            print(f"wrote {path}", file=sys.stderr)
    print("\n".join(["", "Command: python benchmarks/table1.py " + shlex.join(argv or sys.argv[1:]), "",
                     "\n\n".join(parts), ""]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
