"""VD+TN differential-game benchmark (not a unit test): MATD3+BC (``VDTN_TD3BC`` with λ_vd and λ_tn)
against plain TD3+BC (both switches off) on the paper's DG, full and partial observation
(papers/offline_decentralized_marl_vd_tn.md §5.4, Table 9).

    python benchmarks/vdtn_dg_learning.py                       # both + plain, mpe:dg and mpe:dg_partial, seeds 0 1 2
    python benchmarks/vdtn_dg_learning.py --variants both plain vd tn --seeds 0 1 2 3 4
    python benchmarks/vdtn_dg_learning.py --table-only          # only the table of what finished
    python benchmarks/vdtn_dg_learning.py --maps mpe:dg50 mpe:dg50_partial --episodes 20000 --out results/vdtn_dg50

A thin driver of ``rllib-sit benchmark`` (docs/benchmarks.md): one invocation per seed (so an
interrupted run holds every variant of the earlier seeds), all into ``--out``, whose ``results.csv``
makes it resumable (finished (variant, map, seed) cells are skipped; rows are written atomically).
Datasets: ``vdtn-random`` of ``mpe:dg`` and ``mpe:dg_partial`` (uniform random, ``--episodes`` 40,000 x
25 steps = the paper's 1e6 transitions, dataset seed 0; the two hold the same trajectories). Every
setting not named here is the algorithm's default = Table 12 / Appendix B (ε = 0.9 for MPE,
(256, 256), batch 100, γ = 0.99). Evaluation: greedy team return, ``--eval-episodes`` episodes after
each of ``--eval-points`` equal parts of the TD updates; a seed's value is its last evaluation.
Prints Markdown tables (per seed, mean ± std over seeds, the paper's Table 9; the return at every
evaluation point, mean ± std over seeds) and the command.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shlex
import subprocess
import sys

import numpy as np

ALGO = "VDTN_TD3BC"
VARIANTS = {  # name -> (use_value_deviation, use_transition_normalization)
    "both": (True, True), "plain": (False, False), "vd": (True, False), "tn": (False, True)}
TITLES = {"both": "MATD3+BC (λ_vd + λ_tn)", "plain": "TD3+BC", "vd": "TD3+BC w/ λ_vd", "tn": "TD3+BC w/ λ_tn"}
MAPS = {"mpe:dg": "full observation", "mpe:dg_partial": "partial observation",
        "mpe:dg50": "full observation, 50 steps", "mpe:dg50_partial": "partial observation, 50 steps"}
DEFAULT_MAPS = ["mpe:dg", "mpe:dg_partial"]
QUALITY = "vdtn-random"
# Table 9 of the paper (mean ± std over its five seeds); its episode length is not given, so only the
# ordering, not the scale, is comparable with this package's 25- and 50-step episodes.
PAPER = {(f"mpe:{g}", v): x for g in ("dg", "dg50")
         for v, x in (("both", "46.5 ± 0.9"), ("plain", "38.9 ± 0.8"))}
PAPER.update({(f"mpe:{g}_partial", v): x for g in ("dg", "dg50")
              for v, x in (("both", "31.4 ± 0.6"), ("plain", "20.7 ± 0.6"))})


def label(variant: str) -> str:
    vd, tn = VARIANTS[variant]
    return f"{ALGO}[use_value_deviation={vd},use_transition_normalization={tn}]"


def benchmark_args(args, seed: int):
    return (["benchmark", "--algos", *[label(v) for v in args.variants], "--maps", *args.maps,
             "--qualities", QUALITY, "--seeds", str(seed), "--episodes", str(args.episodes),
             "--dataset-seed", str(args.dataset_seed),
             "--updates", f"{ALGO}={args.td_updates}", f"{ALGO}.fit_updates={args.fit_updates}",
             "--eval-points", str(args.eval_points), "--eval-episodes", str(args.eval_episodes),
             "--threads", str(args.threads), "--max-concurrent-trials", "1", "--num-cpus", str(args.num_cpus),
             "--out", args.out, "--no-progress"])


def read_rows(path: str):
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def table(args) -> str:
    rows = read_rows(os.path.join(args.out, "results.csv"))
    got = {(r["algorithm"], r["map"], int(r["seed"])): float(r["final_return"]) for r in rows
           if r["quality"] == QUALITY}
    behaviour = {r["map"]: float(r["behaviour_return"]) for r in rows if r.get("behaviour_return")}
    seeds = sorted(args.seeds)
    head = ["observation", "algorithm", *[f"seed {s}" for s in seeds], "mean ± std", "paper (Table 9)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m in args.maps:
        for v in args.variants:
            vals = [got.get((label(v), m, s)) for s in seeds]
            done = [x for x in vals if x is not None]
            stat = f"{np.mean(done):.2f} ± {np.std(done):.2f}" if done else "—"
            if done and len(done) < len(seeds):
                stat += f" (n={len(done)})"
            cells = [f"{x:.2f}" if x is not None else "—" for x in vals]
            lines.append("| " + " | ".join([MAPS.get(m, m), TITLES[v], *cells, stat, PAPER.get((m, v), "—")]) + " |")
        if m in behaviour:
            lines.append("| " + " | ".join([MAPS.get(m, m), "behaviour (dataset mean)", *[""] * len(seeds),
                                            f"{behaviour[m]:.2f}", "—"]) + " |")
    return "\n".join(lines)


def curve_table(args) -> str:
    """Mean ± std over the finished seeds of every evaluation point (``curves.csv``)."""
    rows = [r for r in read_rows(os.path.join(args.out, "curves.csv")) if r["quality"] == QUALITY
            and int(r["seed"]) in args.seeds]
    points = sorted({int(r["policy_updates"]) for r in rows})
    if not points:
        return ""
    head = ["observation", "algorithm", *[f"{u} updates" for u in points]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m in args.maps:
        for v in args.variants:
            cells = []
            for u in points:
                vals = [float(r["return_mean"]) for r in rows
                        if r["algorithm"] == label(v) and r["map"] == m and int(r["policy_updates"]) == u]
                cells.append(f"{np.mean(vals):.2f} ± {np.std(vals):.2f} (n={len(vals)})" if vals else "—")
            lines.append("| " + " | ".join([MAPS.get(m, m), TITLES[v], *cells]) + " |")
    return "\n".join(lines)


DIAGNOSTICS = ("q_mean", "lambda_vd_mean", "lambda_vd_clipped", "lambda_tn_min", "lambda_tn_max")


def last_learner_stats(checkpoint: str):
    """The trial's last ``learners/<agent>/...`` values (``result.json`` next to its checkpoint), averaged
    over the agents."""
    path = os.path.join(os.path.dirname(checkpoint.rstrip("/")), "result.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        lines = [line for line in f if line.strip()]
    learners = json.loads(lines[-1]).get("learners", {})
    per_agent = [v for k, v in learners.items() if isinstance(v, dict) and "q_mean" in v]
    return {k: float(np.mean([a[k] for a in per_agent if k in a])) for k in DIAGNOSTICS} if per_agent else None


def diagnostics_table(args) -> str:
    """Learner statistics at the end of training (last update's batch; mean over agents, then seeds)."""
    rows = [r for r in read_rows(os.path.join(args.out, "results.csv")) if r["quality"] == QUALITY
            and int(r["seed"]) in args.seeds]
    head = ["observation", "algorithm", "Q mean", "λ_vd mean", "λ_vd at the clip", "λ_tn min", "λ_tn max"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m in args.maps:
        for v in args.variants:
            stats = [st for r in rows if r["algorithm"] == label(v) and r["map"] == m
                     for st in [last_learner_stats(r["checkpoint"])] if st]
            if stats:
                cells = [f"{np.mean([st[k] for st in stats]):.2f}" for k in DIAGNOSTICS]
                lines.append("| " + " | ".join([MAPS.get(m, m), TITLES[v], *cells]) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variants", nargs="+", choices=sorted(VARIANTS), default=["both", "plain"])
    p.add_argument("--maps", nargs="+", default=DEFAULT_MAPS, help=f"any of {list(MAPS)}")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--episodes", type=int, default=40000, help="dataset episodes (40000 x 25 steps = 1e6 transitions; on mpe:dg50*, 20000)")
    p.add_argument("--dataset-seed", type=int, default=0)
    p.add_argument("--td-updates", type=int, default=10000)
    p.add_argument("--fit-updates", type=int, default=2000, help="density-VAE fit (only variants with λ_tn)")
    p.add_argument("--eval-points", type=int, default=5)
    p.add_argument("--eval-episodes", type=int, default=50)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--num-cpus", type=int, default=2)
    p.add_argument("--out", default="results/vdtn_dg")
    p.add_argument("--table-only", action="store_true")
    args = p.parse_args(argv)
    commands = []
    for seed in args.seeds:
        cmd = benchmark_args(args, seed)
        commands.append("rllib-sit " + shlex.join(cmd))
        if not args.table_only:
            rc = subprocess.call([sys.executable, "-m", "rllib_sit.cli.sit_cmd", *cmd])
            if rc != 0:
                print(f"seed {seed}: rllib-sit benchmark exited with {rc}", file=sys.stderr)
                return rc
    print("\n".join(["", "Command: python benchmarks/vdtn_dg_learning.py " + shlex.join(argv or sys.argv[1:]),
                     "", table(args), "", "Greedy return at each evaluation (mean ± std over seeds):", "",
                     curve_table(args), "", "Learner statistics after the last update (mean over agents and seeds):",
                     "", diagnostics_table(args), ""]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
