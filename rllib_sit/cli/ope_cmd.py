"""``rllib-sit ope``: off-policy evaluation of checkpoints, without a simulator (docs/ope.md).

    rllib-sit ope CHECKPOINT [--dataset PATH_OR_SPEC] [--explore] [--json]     one checkpoint
    rllib-sit ope --results DIR [--explore] [--all-checkpoints] [--limit N]      every kept checkpoint -> DIR/ope.csv
    rllib-sit ope --results DIR --score [--json] [--figure PNG] [--max-td-ratio K]  selection metrics per dataset

FQE settings: ``--updates``, ``--gamma``, ``--lr``, ``--batch-size``, ``--target-update-interval``,
``--bootstrap-fits``, ``--seed``, or any ``FQEConfig`` field through ``--config '{"hidden": 256}'``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", nargs="?", help="algorithm checkpoint folder (a Tune trial's checkpoint_00000N)")
    parser.add_argument("--dataset", help="dataset folder/URI, or MAP/QUALITY[/EPISODES[/SEED]] (generated and cached; "
                                          "default: the checkpoint's own training dataset)")
    parser.add_argument("--results", metavar="DIR", help="a 'rllib-sit benchmark --keep-checkpoints' folder: score "
                                                         "every evaluated checkpoint into DIR/ope.csv (resumable)")
    parser.add_argument("--score", action="store_true", help="with --results: print the selection table of DIR/ope.csv")
    parser.add_argument("--figure", metavar="PNG", help="with --score: figure path (default DIR/ope_estimates.png)")
    parser.add_argument("--max-td-ratio", type=float, metavar="K",
                        help="with --score: choose only among trusted fits, whose final TD loss is at most K x the "
                             "median of the dataset's fits (e.g. 10; default: every fit)")
    parser.add_argument("--explore", action="store_true", help="evaluate the sampled policy (default: greedy, as "
                                                               "the benchmark's headline return)")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--all-checkpoints", action="store_true", help="with --results: also checkpoints of "
                                                                       "iterations without a simulator evaluation")
    parser.add_argument("--limit", type=int, help="with --results: score at most N more checkpoints")
    parser.add_argument("--seeds", nargs="+", type=int, metavar="S",
                        help="with --results: score only the cells of these training seeds")
    parser.add_argument("--qualities", nargs="+", metavar="Q",
                        help="with --results: score only the cells of these dataset qualities")
    parser.add_argument("--no-wis", action="store_true", help="skip importance sampling even where the dataset has "
                                                              "behaviour_logp")
    parser.add_argument("--updates", type=int, help="FQE gradient steps (default 5000)")
    parser.add_argument("--gamma", type=float, help="discount (default 1.0: the undiscounted episode return)")
    parser.add_argument("--lr", type=float, help="critic learning rate (default 3e-4)")
    parser.add_argument("--batch-size", type=int, help="transitions per step (default 256)")
    parser.add_argument("--target-update-interval", type=int, help="updates between target copies (default 50)")
    parser.add_argument("--bootstrap-fits", type=int, help="refit on N episode resamples for the interval (default 0: "
                                                           "resample the initial states of one fit)")
    parser.add_argument("--conservative-weight", type=float, metavar="ALPHA",
                        help="conservative FQE: CQL's policy-evaluation penalty of weight ALPHA (default 0: off)")
    parser.add_argument("--seed", type=int, help="seed of the fit (default 0)")
    parser.add_argument("--config", metavar="JSON", help="more FQEConfig fields as JSON, e.g. '{\"hidden\": 256}'")


def _fqe_config(args):
    from dataclasses import asdict

    from rllib_sit.ope.fitted_q import FQEConfig

    d = asdict(FQEConfig())
    if args.config:
        from rllib_sit.cli.front_door import json_object_arg

        d.update(json_object_arg("--config", args.config, "a JSON object of FQEConfig fields"))
    for name in _FQE_FLAGS:
        v = getattr(args, name)
        if v is not None:
            d[name] = v
    try:
        return FQEConfig.from_dict(d)
    except (TypeError, ValueError) as e:
        raise ValueError(str(e)) from None


# The FQE setting flags; each carries the FQEConfig field of its name.
_FQE_FLAGS = ("updates", "gamma", "lr", "batch_size", "target_update_interval", "bootstrap_fits",
              "conservative_weight", "seed")


def _settings_given(args) -> bool:
    return any(getattr(args, name, None) is not None for name in (*_FQE_FLAGS, "config"))


def _check_args(args) -> None:
    """Every flag combination and path checked before any work (one error line each)."""
    if args.checkpoint and args.results:
        raise ValueError("give either CHECKPOINT or --results DIR, not both")
    if not args.checkpoint and not args.results:
        raise ValueError("expected CHECKPOINT (a checkpoint folder) or --results DIR (a benchmark folder)")
    if (args.seeds or args.qualities) and not args.results:
        raise ValueError("--seeds/--qualities: only used with --results DIR")
    if args.score and not args.results:
        raise ValueError("--score needs --results DIR")
    if args.figure and not args.score:
        raise ValueError("--figure needs --results DIR --score")
    if args.max_td_ratio is not None and not args.score:
        raise ValueError("--max-td-ratio: only used with --results DIR --score")
    if args.max_td_ratio is not None and not (args.max_td_ratio > 0 and math.isfinite(args.max_td_ratio)):
        raise ValueError(f"--max-td-ratio: {args.max_td_ratio} is invalid; expected a finite number > 0 (e.g. 10)")
    if args.results and args.dataset:
        raise ValueError("--dataset: not used with --results (each cell is scored on its own dataset from results.csv)")
    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit: {args.limit} is invalid; expected an int >= 1")
    if args.checkpoint:
        from rllib_sit.ope.policy import CTOR_FILE, MODULES_SUBDIR

        path = os.path.abspath(os.path.expanduser(args.checkpoint))
        if not os.path.isdir(path):
            raise FileNotFoundError(f"CHECKPOINT: {path}: no such folder; expected an algorithm checkpoint folder")
        for need in (CTOR_FILE, MODULES_SUBDIR):
            if not os.path.exists(os.path.join(path, need)):
                raise FileNotFoundError(f"CHECKPOINT: {os.path.join(path, need)}: missing; expected an RLlib "
                                        f"algorithm checkpoint (algo.save_to_path(...) or a Tune checkpoint_00000N)")
    if args.results:
        from rllib_sit.ope.scoring import OPE_CSV, check_results_dir

        folder = check_results_dir(args.results)
        if args.score and not os.path.isfile(os.path.join(folder, OPE_CSV)):
            raise FileNotFoundError(f"--score: {os.path.join(folder, OPE_CSV)}: missing; run 'rllib-sit ope "
                                    f"--results {args.results}' first")


def run(args: argparse.Namespace) -> int:
    _check_args(args)
    if args.results and args.score:
        return _score(args)
    config = _fqe_config(args)
    if args.results:
        from rllib_sit.ope.scoring import score_results

        path = score_results(args.results, explore=args.explore, config=config, all_checkpoints=args.all_checkpoints,
                             limit=args.limit, wis=not args.no_wis, seeds=args.seeds, qualities=args.qualities,
                             log=lambda s: print(s, flush=True))
        print(path)
        return 0
    return _one(args, config)


def _one(args, config) -> int:
    from rllib_sit.ope.api import evaluate, resolve_dataset_arg
    from rllib_sit.ope.data import OPEData
    from rllib_sit.ope.policy import checkpoint_config

    ckpt = os.path.abspath(os.path.expanduser(args.checkpoint))
    cfg = checkpoint_config(ckpt)
    dataset = resolve_dataset_arg(args.dataset, cfg)
    from rllib_sit.data.episode_store import dataset_env_info

    env_id = dataset_env_info(dataset).env_id  # metadata only: a wrong dataset fails before any work
    if isinstance(cfg.get("env"), str) and cfg["env"] != env_id:
        raise ValueError(f"--dataset: {dataset}: recorded in {env_id!r}, but the checkpoint was trained on env "
                         f"{cfg['env']!r}; expected a dataset of {cfg['env']}")
    data = OPEData.open(dataset, bootstrap_truncated=config.bootstrap_truncated)

    def progress(u, loss):
        if not args.json and (u % max(config.updates // 10, config.log_every) == 0 or u == config.updates):
            print(f"  FQE update {u}/{config.updates}: TD loss {loss:.4g}", file=sys.stderr, flush=True)

    out = evaluate(ckpt, data, explore=args.explore, config=config, wis=not args.no_wis, progress=progress)
    if args.json:
        print(json.dumps(out, indent=2, default=str))
        return 0
    f, d = out["fqe"], out["fqe"]["diagnostics"]
    pol = "sampled" if args.explore else "greedy"
    print(f"checkpoint: {out['checkpoint']} ({out['algorithm']}, {pol} policy)")
    print(f"dataset:    {out['dataset']} ({d['num_episodes']} episodes, {d['num_transitions']} steps; behaviour return "
          f"{d['behaviour_return_mean']:.3f} ± {d['behaviour_return_std']:.3f})")
    alpha = float(f["config"].get("conservative_weight") or 0.0)
    name = f"conservative FQE (α={alpha:g}; pessimistic, for ranking)" if alpha > 0 else "FQE"
    print(f"{name} estimate (γ={f['gamma']:g}{', undiscounted episode return' if f['gamma'] == 1 else ''}): "
          f"{f['estimate']:.4f}  {int(f['ci_level'] * 100)}% CI [{f['ci_low']:.4f}, {f['ci_high']:.4f}] "
          f"({f['ci_method']})")
    print(f"fit: TD loss {d['td_loss_first']:.4g} -> {d['td_loss_last']:.4g} over {f['config']['updates']} updates; "
          f"Bellman residual RMS {d['bellman_residual_rms']:.4g}; Q on data {d['q_data_mean']:.3f} ± "
          f"{d['q_data_std']:.3f}; {d['fit_seconds']:.1f} s")
    if d.get("value_bounds"):
        lo, hi = d["value_bounds"]
        vb = f["config"].get("value_bounds", "data")
        source = ({"data": "the data's return-to-go range", "env": "the environment's return range"}[vb]
                  if isinstance(vb, str) else f"the given range {list(vb)}")
        print(f"value bounds [{lo:.4g}, {hi:.4g}] ({source} ± margin): "
              f"{100 * d['clipped_fraction_last']:.2f}% of the last tenth's targets clipped, "
              f"{100 * d['initial_values_clipped']:.1f}% of the initial values"
              + ("  <- the fit leans on the bound, not on the data" if d["clipped_fraction_last"] > 0.01 else ""))
    if out["wis"]:
        w = out["wis"]
        print(f"PDWIS estimate: {w['estimate']:.4f}  CI [{w['ci_low']:.4f}, {w['ci_high']:.4f}]  ESS {w['ess']:.1f} "
              f"of {w['num_episodes']} episodes")
    else:
        print(f"PDWIS: skipped ({out['wis_skipped']})")
    return 0


def _score(args) -> int:
    from rllib_sit.ope.scoring import OPE_CSV, score_table
    from rllib_sit.ope.selection import format_table, plot_estimates, score_rows

    _, rows = score_table(args.results)
    have = {str(r.get("explore")).lower() in ("true", "1") for r in rows}
    explore = args.explore if args.explore in have else next(iter(have))
    rows = [r for r in rows if (str(r.get("explore")).lower() in ("true", "1")) == explore]
    hashes = [r.get("fqe_settings_hash") for r in rows]
    if _settings_given(args):  # score the rows of exactly these settings
        from rllib_sit.ope.scoring import settings_hash

        want = settings_hash(_fqe_config(args))
        if want not in hashes:
            raise ValueError(f"--score: {os.path.join(args.results, OPE_CSV)} has no rows of the FQE settings given "
                             f"(hash {want}); it has {sorted(set(map(str, hashes)))}: score them first with the "
                             f"same settings, without --score")
        rows = [r for r in rows if r.get("fqe_settings_hash") == want]
    elif len(set(hashes)) > 1:
        latest = max(rows, key=lambda r: str(r.get("scored_at")))["fqe_settings_hash"]
        print(f"warning: ope.csv mixes FQE settings {sorted(set(map(str, hashes)))}; scoring {latest} (the latest)",
              file=sys.stderr)
        rows = [r for r in rows if r.get("fqe_settings_hash") == latest]
    max_td_ratio = getattr(args, "max_td_ratio", None)  # absent when benchmark --ope calls this
    reports = score_rows(rows, max_td_ratio=max_td_ratio)
    fig = args.figure or os.path.join(os.path.abspath(args.results), "ope_estimates.png")
    plot_estimates(rows, fig, max_td_ratio=max_td_ratio)
    if args.json:
        print(json.dumps({f"{m} {q}": r for (m, q), r in reports.items()}, indent=2, default=str))
        return 0
    print(f"Off-policy selection ({'sampled' if explore else 'greedy'} policies; true return = the simulator's "
          f"{'sampled' if explore else 'greedy'} pass), {len(rows)} checkpoints:\n")
    print(format_table(reports))
    print(f"\nfigure: {fig}")
    return 0
