"""``rllib-sit benchmark``: algorithms × maps × qualities × seeds as Ray Tune trials -> CSV, Table 1, figures.

    rllib-sit benchmark --profile quick                      # smac:2s3z, 3 seeds, < 1 h on 2 CPUs
    rllib-sit benchmark --profile paper --out results/table1 # the paper's Table 1 (days on 2 CPUs)
    rllib-sit benchmark --algos SIT MABC --maps smac:2s3z --qualities low --seeds 0 1 \\
        --episodes 200 --updates 100 SIT.ardnem_updates=100
    rllib-sit benchmark --profile ablations                  # SIT[prioritized=False] etc. (Figure 4a/b)
    rllib-sit benchmark --profile quick --dry-run            # the plan, the time estimate, what is done

Interrupted? Run the same command again: finished cells are skipped. See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys


def add_arguments(p: argparse.ArgumentParser) -> None:
    from rllib_sit.experiments.profiles import PROFILES

    p.add_argument("--profile", choices=sorted(PROFILES), default="paper",
                   help="what to run (default: paper); the options below override it")
    p.add_argument("--algos", nargs="+", metavar="ALGO",
                   help="registered names or variants, e.g. SIT MABC 'SIT[prioritized=False]' "
                        "'SIT[alpha=0.2|5]' (default: every registered Table 1 algorithm)")
    p.add_argument("--maps", nargs="+", metavar="MAP", help="family:scenario ids (e.g. smac:2s3z) or dataset folders/URIs")
    p.add_argument("--qualities", nargs="+", metavar="Q", help="dataset qualities of the data specs (e.g. low medium)")
    p.add_argument("--seeds", nargs="+", type=int, metavar="S", help="training seeds (paper: 5)")
    p.add_argument("--episodes", type=int, help="episodes per generated dataset (paper: 10,000)")
    p.add_argument("--dataset-seed", type=int, help="seed of the generated datasets (default 0)")
    p.add_argument("--updates", nargs="+", metavar="N|ALGO=N|ALGO.setting=N",
                   help="policy-phase updates of every algorithm (N), of one (MABC=1000), or any length setting "
                        "(SIT.ardnem_updates=300, OMAC.value_updates=300)")
    p.add_argument("--eval-points", type=int, help="evaluations per trial, evenly spread over the policy updates")
    p.add_argument("--eval-episodes", type=int, help="greedy episodes per evaluation (paper: 32)")
    p.add_argument("--config", help='JSON settings for every algorithm, e.g. \'{"batch_size_episodes": 16}\'')
    p.add_argument("--out", help="output folder (default: results/benchmark/<profile>)")
    p.add_argument("--max-concurrent-trials", type=int, help="default: Ray's CPUs - 1 (at least 1): one trial per core "
                   "when the runner starts Ray")
    p.add_argument("--num-cpus", type=int, help="CPUs of the local Ray instance (default: the cores + 1, one slot "
                   "kept for Ray Data reads)")
    p.add_argument("--threads", type=int, help="torch threads per trial (default: (Ray's CPUs - 1) // concurrent "
                   "trials, at least 1)")
    p.add_argument("--max-failures", type=int, default=1,
                   help="restarts of a trial that crashed after its first result, from its last checkpoint (default "
                        "1); a trial that fails in its setup (its config, its dataset) fails once, not retried")
    p.add_argument("--checkpoint-freq", type=int, default=0, help="also checkpoint every N iterations (default: end only)")
    p.add_argument("--keep-checkpoints", action="store_true",
                   help="checkpoint after every iteration (every evaluation point) and keep them all, for "
                        "off-policy evaluation later (default: only the last checkpoint is kept)")
    p.add_argument("--ope", action="store_true",
                   help="after the trials, score every evaluation point by fitted Q evaluation on its own dataset "
                        "(DIR/ope.csv beside the simulator returns) and print the selection table; implies "
                        "--keep-checkpoints (docs/ope.md)")
    p.add_argument("--ope-config", metavar="JSON", help='with --ope: FQE settings, e.g. \'{"updates": 2000}\' '
                   "(rllib_sit.ope.FQEConfig; default: its defaults)")
    p.add_argument("--setup", action="append", default=[], metavar="MODULE[:FN]|FILE.py[:FN]",
                   help="code that registers custom environments, run in the driver and every Ray worker")
    p.add_argument("--sensitivity-from", metavar="CSV|TUNE_DIR",
                   help="draw Figure 8 from this CSV (map, quality, seed, alpha, beta, eta, return) or Tune sweep folder")
    p.add_argument("--dry-run", action="store_true", help="print the plan, the time estimate and what is done; run nothing")
    p.add_argument("--figures-only", action="store_true", help="redraw table.md and the figures from --out; train nothing")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (one line per finished cell)")
    p.add_argument("-v", "--verbose", action="store_true", help="Tune's tables and the workers' logs")


def command_line(args) -> str:
    """The command as typed (from ``sys.argv``), or rebuilt from ``args`` when called from Python."""
    argv = sys.argv
    if "benchmark" in argv[1:]:
        return "rllib-sit " + shlex.join(argv[argv.index("benchmark"):])
    parts = ["rllib-sit", "benchmark", "--profile", args.profile]
    for name in ("algos", "maps", "qualities", "seeds", "updates"):
        v = getattr(args, name)
        if v:
            parts += [f"--{name}"] + [str(x) for x in v]
    for name in ("episodes", "dataset_seed", "eval_points", "eval_episodes", "config", "out"):
        v = getattr(args, name)
        if v is not None:
            parts += [f"--{name.replace('_', '-')}", str(v)]
    for s in args.setup:
        parts += ["--setup", s]
    return shlex.join(parts)


def cell_name(key) -> str:
    """``('MABC', 'smac:3m', 'low', 0)`` -> ``MABC on smac:3m low seed 0``."""
    label, map_, quality, seed = key
    return f"{label} on {map_} {quality} seed {seed}"


def failure_line(key, where: str, cause) -> str:
    """A failed cell in the one-line form of ``rllib train file``: the cell, its trial folder and the
    root cause (e.g. the ``DatasetError``), not Ray's traceback."""
    from rllib_sit.cli.front_door import error_line

    trial = os.path.basename(where.split(": ", 1)[0].rstrip("/"))
    what = error_line(cause) if cause is not None else where.split(": ", 1)[-1]
    return f"cell {cell_name(key)}, trial {trial}: {what}"


def run(args) -> int:
    from rllib_sit.cli.trial_guard import NoRetryBeforeFirstResult
    from rllib_sit.experiments import plan as PL
    from rllib_sit.experiments import results as R
    from rllib_sit.experiments import runner

    config = {}
    if args.config:
        from rllib_sit.cli.front_door import check_config_keys, json_object_arg

        config = json_object_arg("--config", args.config)

        check_config_keys(config)
    for s in args.setup:  # before the plan: a setup may register the maps it names
        runner.run_setup(s)
    out = args.out or os.path.join("results", "benchmark", args.profile)
    plan = PL.build_plan(args.profile, algos=args.algos, maps=args.maps, qualities=args.qualities, seeds=args.seeds,
                         episodes=args.episodes, updates=args.updates, eval_points=args.eval_points,
                         eval_episodes=args.eval_episodes, config=config, dataset_seed=args.dataset_seed,
                         command=command_line(args))
    ope_config = _ope_config(args)
    if not args.figures_only:  # bad settings: one line now, not a failed trial per cell after the data is made
        from rllib_sit.cli.front_door import check_plan

        check_plan(plan)
    if args.figures_only:
        report = runner.BenchmarkReport(out=os.path.abspath(out), cells=len(plan.cells), already_done=0)
        runner.finish(plan, os.path.abspath(out), report, sensitivity_source=args.sensitivity_from)
        print(f"table: {report.table}")
        for f in report.figures:
            print(f"figure: {f}")
        return 0
    if args.dry_run:
        done = R.ResultStore(os.path.abspath(out)).results() if os.path.isdir(out) else {}
        n_done = sum(1 for c in plan.cells if c.key in done)
        est = plan.estimate(concurrent=args.max_concurrent_trials or runner.default_concurrency())
        print(f"command: {plan.command}")
        print(plan.describe())
        print(f"output: {os.path.abspath(out)}; finished before: {n_done} of {len(plan.cells)} cells")
        print(f"estimate (2s3z-sized maps, one-thread trials, docs/benchmarks.md): data "
              f"{est['data_s'] / 60:.0f} min + trials {est['trials_s'] / 60:.0f} min = {est['total_s'] / 60:.0f} min")
        return 0
    try:
        report = runner.run_benchmark(
            plan, out, max_concurrent=args.max_concurrent_trials, num_cpus=args.num_cpus, threads=args.threads,
            max_failures=args.max_failures, checkpoint_freq=args.checkpoint_freq,
            keep_checkpoints=args.keep_checkpoints or args.ope, setup=args.setup, progress=not args.no_progress, verbose=args.verbose, sensitivity_source=args.sensitivity_from,
            # A setup failure (config, dataset) is not retried; --max-failures is for crashes after training started.
            callbacks=[NoRetryBeforeFirstResult(args.max_failures)])
    except KeyboardInterrupt as e:
        print(f"[benchmark] interrupted ({e}); finished cells are saved in {os.path.abspath(out)}: "
              "run the same command again to go on", file=sys.stderr)
        return 130
    print(f"[benchmark] {report.ran} cell(s) run now, {report.already_done} finished before, "
          f"{report.recovered} recovered from {runner.TUNE_DIR}/; results: {os.path.join(report.out, R.RESULTS_CSV)}")
    print(f"[benchmark] table: {report.table}")
    for f in report.figures:
        print(f"[benchmark] figure: {f}")
    sys.stdout.flush()
    if report.errors:
        print(f"[benchmark] {len(report.errors)} cell(s) failed (run the command again to retry them):", file=sys.stderr)
        for key, where in report.errors:
            print(f"[benchmark]   {key}: {where}", file=sys.stderr)
        # The last line: what went wrong (e.g. the DatasetError), as `rllib train file` says it.
        key, where = report.errors[0]
        more = f" (and {len(report.errors) - 1} more cell(s) above)" if len(report.errors) > 1 else ""
        print(f"rllib-sit: error: benchmark: {failure_line(key, where, report.causes.get(key))}{more}",
              file=sys.stderr, flush=True)
        return 1
    if args.ope:
        return _score_ope(report.out, ope_config)
    return 0


def _ope_config(args):
    """``--ope-config`` as an FQEConfig (None without ``--ope``); a bad one is refused before any work."""
    if args.ope_config and not args.ope:
        raise ValueError("--ope-config: only used with --ope")
    if not args.ope:
        return None
    from rllib_sit.ope.fitted_q import FQEConfig

    if not args.ope_config:
        return FQEConfig()
    from rllib_sit.cli.front_door import json_object_arg

    d = json_object_arg("--ope-config", args.ope_config, "a JSON object of FQEConfig fields")
    try:
        return FQEConfig.from_dict(d)
    except (TypeError, ValueError) as e:
        raise ValueError(f"--ope-config: {e}") from None


def _score_ope(out: str, config) -> int:
    """``--ope``: FQE of every kept evaluation point (resumable ``ope.csv``), then the selection table."""
    from rllib_sit.cli import ope_cmd
    from rllib_sit.ope.scoring import score_results

    path = score_results(out, config=config, log=lambda m: print(f"[benchmark] ope: {m}", flush=True))
    print(f"[benchmark] ope: {path}")
    return ope_cmd._score(argparse.Namespace(results=out, explore=False, figure=None, json=False))
