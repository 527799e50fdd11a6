"""Does bf16 learn what fp32 learns? The learning-equivalence table of issue 22 from benchmark folders.

    # the bf16 cells (SIT in both precisions, the others in bf16), quick profile, 3 seeds
    rllib-sit benchmark --profile quick --algos 'SIT[precision=fp32|bf16]' 'MABC[precision=bf16]' \
        'ICQ[precision=bf16]' 'OMAC[precision=bf16]' --maps smac:2s3z --qualities low --out results/bf16_equivalence
    # the table: fp32 cells from any folder (here the quick Table 1's own), bf16 cells from the new one
    python benchmarks/precision_equivalence.py --results results/quick_v2 results/bf16_equivalence \
        --csv docs/results/bf16_equivalence.csv

A cell's precision is its label's ``precision=`` override (``SIT[precision=bf16]``), else fp32 (the
default of every algorithm). Cells are matched by (algorithm, map, quality, seed); where a folder
holds the same cell twice (a later folder's row wins, as in table1.py). The verdict per algorithm and
dataset: **equivalent** when the bf16 seeds' mean final greedy return lies within the fp32 seeds'
range (min to max) — the criterion of issue 22 ("the bf16 mean within the fp32 seeds' spread") —
and the same for the sampled return; every number is shown so a reader can apply a stricter one.
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import shlex
import sys
from typing import Dict, List, Sequence, Tuple

import numpy as np

FIELDS = ["map", "quality", "algorithm", "precision", "seed", "final_return", "final_return_sampled", "best_return",
          "folder"]


def precision_of(label: str) -> Tuple[str, str]:
    """(base algorithm, precision) of a runner label: ``SIT[precision=bf16]`` -> ("SIT", "bf16")."""
    base = label.split("[", 1)[0]
    m = re.search(r"precision=(fp32|bf16)", label)
    return base, (m.group(1) if m else "fp32")


def read_rows(folders: Sequence[str]) -> List[Dict[str, object]]:
    cells: Dict[tuple, Dict[str, object]] = {}
    for folder in folders:
        path = os.path.join(folder, "results.csv")
        if not os.path.exists(path):
            raise FileNotFoundError(f"--results: {path}: missing; expected a 'rllib-sit benchmark' output folder")
        with open(path, newline="") as f:
            for r in csv.DictReader(f):
                base, prec = precision_of(r["algorithm"])
                other = {k for k in re.findall(r"(\w+)=", r["algorithm"].split("[", 1)[-1]) if k != "precision"}
                if "[" in r["algorithm"] and other:
                    continue  # a variant with other overrides is not this comparison's cell
                row = {"map": r["map"], "quality": r["quality"], "algorithm": base, "precision": prec,
                       "seed": int(r["seed"]), "final_return": float(r["final_return"]),
                       "final_return_sampled": float(r["final_return_sampled"] or "nan"),
                       "best_return": float(r["best_return"]), "folder": os.path.basename(folder.rstrip("/"))}
                cells[(row["map"], row["quality"], base, prec, row["seed"])] = row
    return list(cells.values())


def _stat(v: Sequence[float]) -> str:
    v = np.asarray(v, np.float64)
    return f"{v.mean():.2f} ± {v.std():.2f} ({', '.join(f'{x:.2f}' for x in v)})"


def table(rows: List[Dict[str, object]]) -> Tuple[str, List[Dict[str, object]]]:
    """The Markdown table and one verdict dict per (map, quality, algorithm) with both precisions."""
    groups: Dict[tuple, Dict[str, List[Dict]]] = {}
    for r in rows:
        groups.setdefault((r["map"], r["quality"], r["algorithm"]), {}).setdefault(r["precision"], []).append(r)
    lines = ["| map | quality | algorithm | return | fp32 (mean ± std, per seed) | bf16 (mean ± std, per seed) | "
             "bf16 mean within fp32 range |", "|---|---|---|---|---|---|---|"]
    verdicts = []
    for (m, q, a), by in sorted(groups.items()):
        if "fp32" not in by or "bf16" not in by:
            continue
        f32 = sorted(by["fp32"], key=lambda r: r["seed"])
        b16 = sorted(by["bf16"], key=lambda r: r["seed"])
        verdict = {"map": m, "quality": q, "algorithm": a, "fp32_seeds": len(f32), "bf16_seeds": len(b16)}
        for key, name in (("final_return", "final, greedy"), ("final_return_sampled", "final, sampled")):
            x, y = [r[key] for r in f32], [r[key] for r in b16]
            inside = bool(min(x) <= np.mean(y) <= max(x))
            verdict[key] = inside
            lines.append(f"| {m} | {q} | {a} | {name} | {_stat(x)} | {_stat(y)} | {'yes' if inside else '**no**'} |")
        verdicts.append(verdict)
    return "\n".join(lines), verdicts


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--results", nargs="+", required=True, metavar="DIR", help="benchmark folders (fp32 and bf16 cells)")
    p.add_argument("--csv", help="write the matched per-seed rows here")
    args = p.parse_args(argv)
    try:
        rows = read_rows(args.results)
    except FileNotFoundError as e:
        p.error(str(e))
    md, verdicts = table(rows)
    if not verdicts:
        p.error("--results: no (algorithm, dataset) has cells in both fp32 and bf16; expected "
                "'ALGO[precision=bf16]' cells beside fp32 ones")
    if args.csv:
        keep = {(v["map"], v["quality"], v["algorithm"]) for v in verdicts}
        out = sorted((r for r in rows if (r["map"], r["quality"], r["algorithm"]) in keep),
                     key=lambda r: (r["map"], r["quality"], r["algorithm"], r["precision"], r["seed"]))
        os.makedirs(os.path.dirname(os.path.abspath(args.csv)) or ".", exist_ok=True)
        tmp = args.csv + ".tmp"
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, FIELDS)
            w.writeheader()
            w.writerows(out)
        os.replace(tmp, args.csv)
    print(f"\nCommand: python benchmarks/precision_equivalence.py {shlex.join(argv or sys.argv[1:])}\n\n{md}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
