"""Wall time of a benchmark plan in the runner's two layouts: one Tune experiment per algorithm variant
(the runner before issue 22) against the whole plan as one experiment (the runner now).

    # the quick profile's 2s3z-low half, each layout from scratch, on an idle machine
    python benchmarks/runner_layout.py --profile quick --qualities low --layout per-variant --out /tmp/layout_pv
    python benchmarks/runner_layout.py --profile quick --qualities low --layout one --out /tmp/layout_one

Both layouts run the same cells through the same code (:func:`rllib_sit.experiments.runner.run_benchmark`)
on one Ray instance started here with the runner's defaults (cores + 1 CPU slots, one trial per core,
one torch thread per trial): ``per-variant`` calls it once per variant, one after the other, each on its
own folder (``OUT/<label>``), which is what the runner did before the change: the last trial of each
variant ran alone while a core idled. ``one`` calls it once on the whole plan (``OUT``). Figures are
not drawn in either (they are not what changed).

Printed: the wall time from the first trial's start to the last trial's end (datasets are resolved
before, from the cache), the sum of the trials' own wall times, and the cores' use: that sum over
(trials at a time × wall time). The numbers are written to ``OUT/layout_time.json``. The machine must
be otherwise idle for the wall time to mean anything.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import sys
import time
from typing import Dict, List


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--profile", default="quick")
    p.add_argument("--algos", nargs="+", default=None, help="algorithm variants (default: the profile's)")
    p.add_argument("--maps", nargs="+", default=None)
    p.add_argument("--qualities", nargs="+", default=None)
    p.add_argument("--seeds", nargs="+", type=int, default=None)
    p.add_argument("--layout", required=True, choices=["one", "per-variant"])
    p.add_argument("--out", required=True, help="a new (or empty) folder: the timing is of a run from scratch")
    return p.parse_args(argv)


def trial_seconds(out: str) -> List[float]:
    """The wall time of every finished trial under ``out`` (results.csv's ``wall_time_s``)."""
    import csv

    secs: List[float] = []
    for root, _, files in os.walk(out):
        if "results.csv" in files and "tune" not in os.path.relpath(root, out).split(os.sep):
            with open(os.path.join(root, "results.csv"), newline="") as f:
                secs += [float(r["wall_time_s"]) for r in csv.DictReader(f) if r.get("wall_time_s")]
    return secs


def main(argv=None) -> int:
    args = parse_args(argv)
    out = os.path.abspath(args.out)
    if os.path.isdir(out) and os.listdir(out):
        raise SystemExit(f"runner_layout.py: error: --out {out}: not empty; expected a new folder "
                         "(a resumed run's wall time is not the layout's)")
    import ray

    from rllib_sit.experiments import plan as PL
    from rllib_sit.experiments import runner

    plan = PL.build_plan(args.profile, algos=args.algos, maps=args.maps, qualities=args.qualities, seeds=args.seeds)
    for d in plan.datasets:  # from the cache (or made now), before the clock starts
        d.resolve(progress=False)
    ray.init(num_cpus=runner.default_num_cpus(), include_dashboard=False, log_to_driver=False)
    concurrent = runner.default_concurrency()
    t0 = time.perf_counter()
    if args.layout == "one":
        runner.run_benchmark(plan, out, figures=False, progress=False)
    else:
        for algo in plan.algorithms:
            sub = dataclasses.replace(plan, cells=[c for c in plan.cells if c.algo.label == algo.label])
            runner.run_benchmark(sub, os.path.join(out, algo.label), figures=False, progress=False)
    wall = time.perf_counter() - t0
    ray.shutdown()
    secs = trial_seconds(out)
    record: Dict[str, object] = {
        "layout": args.layout, "cells": len(plan.cells), "finished": len(secs), "concurrent": concurrent,
        "wall_s": round(wall, 1), "trial_s_sum": round(sum(secs), 1),
        "core_use": round(sum(secs) / (concurrent * wall), 3) if wall > 0 else None,
        "command": "python benchmarks/runner_layout.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:])),
    }
    tmp = os.path.join(out, ".layout_time.json.tmp")
    with open(tmp, "w") as f:
        json.dump(record, f, indent=2)
    os.replace(tmp, os.path.join(out, "layout_time.json"))
    print("| layout | cells (finished) | wall | sum of trial walls | core use |")
    print("|---|---|---|---|---|")
    print(f"| {record['layout']} | {record['cells']} ({record['finished']}) | {wall / 60:.1f} min | "
          f"{sum(secs) / 60:.1f} min | {record['core_use']:.0%} |")
    print(f"command: {record['command']}")
    return 0 if len(secs) == len(plan.cells) else 1


if __name__ == "__main__":
    sys.exit(main())
