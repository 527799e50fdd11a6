"""SIT's priority scale (issue 20): α × reading × dataset, 3 seeds, with the DPER's effective sample size.

    python benchmarks/sit_priority_scale.py --maps smac:2s3z --qualities low medium
    python benchmarks/sit_priority_scale.py --maps mpe:cn_3ls3l mamujoco:halfcheetah_2l --qualities low
    python benchmarks/sit_priority_scale.py --table-only --out results/priority_scale

A thin driver of ``rllib-sit benchmark`` (resumable: finished cells are skipped) at the quick
profile's lengths (1,000-episode datasets, 500 ARDNEM + 500 agent updates, 16 greedy episodes at 4
points), variants ``SIT[alpha=0.2|1|5,priority_scale=minmax|return_range]``; Stage I is trained once per
(dataset, seed) and shared by the six variants (SIT's Stage I cache). Prints, per dataset, a Markdown
table: final greedy return per seed, mean ± std, and the DPER's effective sample size per agent type
(mean over seeds, from ``dper_priorities.csv``), then the command.
"""

from __future__ import annotations

import argparse
import csv
import os
import shlex
import subprocess
import sys
from collections import defaultdict

import numpy as np

ALPHAS = ("0.2", "1", "5")
SCALES = ("minmax", "return_range")
ALGOS = f"SIT[alpha={'|'.join(ALPHAS)},priority_scale={'|'.join(SCALES)}]"


def label(alpha: str, scale: str) -> str:
    return f"SIT[alpha={alpha},priority_scale={scale}]"


def read_rows(path: str):
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def tables(out: str, seeds) -> str:
    rows = read_rows(os.path.join(out, "results.csv"))
    dper = read_rows(os.path.join(out, "dper_priorities.csv"))
    final = {(r["algorithm"], r["map"], r["quality"], int(r["seed"])): float(r["final_return"]) for r in rows}
    behaviour = {(r["map"], r["quality"]): float(r["behaviour_return"]) for r in rows if r.get("behaviour_return")}
    ess = defaultdict(dict)  # (algo, map, quality, seed) -> {type: ess}
    for r in dper:
        if r.get("type_ess"):
            ess[(r["algorithm"], r["map"], r["quality"], int(r["seed"]))][r["agent_type"]] = float(r["type_ess"])
    out_lines = []
    for m, q in sorted({(k[1], k[2]) for k in final}):
        b = behaviour.get((m, q))
        out_lines.append(f"**{m} {q}** (behaviour {b:.2f})" if b is not None else f"**{m} {q}**")
        head = ["α", "reading", *[f"seed {s}" for s in seeds], "mean ± std", "DPER ESS per type (mean over seeds)"]
        out_lines += ["", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for scale in SCALES:
            for a in ALPHAS:
                algo = label(a, scale)
                vals = [final.get((algo, m, q, s)) for s in seeds]
                done = [v for v in vals if v is not None]
                stat = f"{np.mean(done):.2f} ± {np.std(done):.2f}" if done else "—"
                if done and len(done) < len(seeds):
                    stat += f" (n={len(done)})"
                types = defaultdict(list)
                for s in seeds:
                    for t, e in ess.get((algo, m, q, s), {}).items():
                        types[t].append(e)
                ess_cell = ", ".join(f"{t} {np.mean(v):,.1f}" for t, v in sorted(types.items())) or "—"
                out_lines.append("| " + " | ".join([a, scale, *[f"{v:.2f}" if v is not None else "—" for v in vals],
                                                    stat, ess_cell]) + " |")
        out_lines.append("")
    return "\n".join(out_lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--maps", nargs="+", default=["smac:2s3z"])
    p.add_argument("--qualities", nargs="+", default=["low"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--out", default="results/priority_scale")
    p.add_argument("--table-only", action="store_true", help="only print the table of what finished")
    args = p.parse_args(argv)
    cmd = ["rllib-sit", "benchmark", "--profile", "quick", "--algos", ALGOS, "--maps", *args.maps,
           "--qualities", *args.qualities, "--seeds", *map(str, args.seeds), "--max-concurrent-trials", "2",
           "--threads", "1", "--out", args.out, "--no-progress"]
    if not args.table_only:
        rc = subprocess.call(cmd)
        if rc != 0:
            print(f"benchmark exited {rc}; the table shows what finished", file=sys.stderr)
    print(tables(args.out, args.seeds))
    print("command: " + " ".join(shlex.quote(x) for x in [sys.executable.split("/")[-1], *sys.argv]))
    print("runs:    " + " ".join(shlex.quote(x) for x in cmd))
    return 0


if __name__ == "__main__":
    sys.exit(main())
