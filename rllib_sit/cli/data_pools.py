"""``rllib-sit data pools``: the behaviour policy pools (random / medium / expert) behind the datasets.

    rllib-sit data pools list [--markdown] [--dir DIR]     # one row per (map, level): member, measured return
    rllib-sit data pools show smac:2s3z [--json] [--dir DIR]
    rllib-sit data pools build smac:2s3z [mpe:cn_3ls3l ...] | --all [--episodes N] [--cal-episodes N]
                                [--seed S] [--dir DIR]

Cards are read from (and ``build`` writes to) ``--dir``, else ``$RLLIB_SIT_POOLS_DIR``, else the
package data ``rllib_sit/resources/policy_pools/``. ``build`` recalibrates every level (minutes per
map) and replaces the card atomically; all arguments are checked before any work starts.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rllib_sit.data.paths import pools_dir


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="pools_command", required=True, metavar="{list,show,build}")
    dir_help = "folder of pool cards (default: $RLLIB_SIT_POOLS_DIR or the package's resources/policy_pools)"
    ls = sub.add_parser("list", help="table of every pool card: map, level, paper range, member, measured return")
    ls.add_argument("--markdown", action="store_true", help="as a Markdown table (docs/datasets.md)")
    ls.add_argument("--dir", help=dir_help)
    sh = sub.add_parser("show", help="one map's pool card: members, how they were made, measured returns")
    sh.add_argument("env", help="environment id, e.g. smac:2s3z")
    sh.add_argument("--json", action="store_true", help="print the card as JSON")
    sh.add_argument("--dir", help=dir_help)
    b = sub.add_parser("build", help="calibrate the members of each level and (re)write the pool card")
    b.add_argument("env", nargs="*", help="environment id(s), e.g. smac:2s3z")
    b.add_argument("--all", action="store_true", help="every environment of the data specs")
    b.add_argument("--episodes", type=int, default=None,
                   help="evaluation episodes per member (>= 50; default per family: smac 50, mpe 200, mamujoco 50)")
    b.add_argument("--cal-episodes", type=int, default=None,
                   help="episodes per calibration probe (>= 1; default per family: smac 20, mpe 100, mamujoco 40)")
    b.add_argument("--seed", type=int, default=0, help="evaluation seeds seed..seed+episodes-1 (default 0)")
    b.add_argument("--no-fit", dest="fit", action="store_false",
                   help="keep each level's member mid-band; by default members are moved within their bands so "
                        "that the Table 7-9 datasets get the paper's average returns (docs/datasets.md)")
    b.add_argument("--refit", action="store_true",
                   help="start the fit from the existing card's members (no per-level calibration): a cheaper "
                        "rebuild")
    b.add_argument("--dir", help="folder to write the cards to (default: $RLLIB_SIT_POOLS_DIR or the package's "
                                 "resources/policy_pools)")


def _folder(args: argparse.Namespace) -> Path:
    folder = Path(args.dir).expanduser() if args.dir else pools_dir()
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"--dir {folder} is a file; expected a folder of pool cards")
    return folder


def _fmt_return(mean, std, n=None) -> str:
    if mean is None:
        return "—"
    return f"{mean:.2f} ± {std:.2f}" + ("" if n is None else f" ({n})")


def run_list(args: argparse.Namespace) -> int:
    from rllib_sit.data.pool_card import pool_table

    folder = _folder(args)
    rows = pool_table(folder)
    if not rows:
        print(f"no pool cards (*.json) in {folder}")
        return 0
    if args.markdown:
        print("| map | level | paper range | member | measured return (mean ± std, n) | in range |")
        print("|---|---|---|---|---|---|")
        for r in rows:
            rng = "—" if r["range"] is None else f"{r['range'][0]} to {r['range'][1]}"
            ok = {True: "yes", False: "**no**", None: "no paper range"}[r["in_range"]]
            print(f"| {r['env']} | {r['level']} | {rng} | {r['member']} | "
                  f"{_fmt_return(r['mean'], r['std'], r['n'])} | {ok} |")
        return 0
    print(f"{'map':24s} {'level':7s} {'paper range':22s} {'member':28s} {'measured return':18s} in range")
    for r in rows:
        print(f"{r['env']:24s} {r['level']:7s} {str(r['range']):22s} {r['member']:28s} "
              f"{_fmt_return(r['mean'], r['std']):18s} {r['in_range']}")
    print(f"({len({r['env'] for r in rows})} pool cards in {folder})")
    return 0


def run_show(args: argparse.Namespace) -> int:
    from rllib_sit.data.pool_card import list_pool_cards, pool_card_path, read_pool_card

    folder = _folder(args)
    try:
        card = read_pool_card(args.env, folder)
    except FileNotFoundError as e:
        known = sorted(c["env"] for c in list_pool_cards(folder)) if folder.is_dir() else []
        raise FileNotFoundError(f"{e}; pool cards exist for {known}") from None
    if args.json:
        print(json.dumps(card, indent=2))
        return 0
    print(f"{card['env']}: {pool_card_path(args.env, folder)}")
    ranges = card.get("paper_ranges") or {}
    if ranges:
        print("paper ranges: " + ", ".join(f"{lvl} {r}" for lvl, r in ranges.items()))
    for key in ("eval_episodes", "eval_seeds", "env_code", "build_seconds", "rebuild", "method"):
        if key in card:
            print(f"{key}: {card[key]}")
    for lvl, members in card["levels"].items():
        for m in members:
            mr = m.get("measured_return") or {}
            flag = "" if mr.get("in_range") is not False else "  OUT OF RANGE" + (" (stand-in)" if mr.get("stand_in") else "")
            print(f"  {lvl:7s} {m['kind']:9s} {json.dumps(m.get('params', {}))}  "
                  f"-> {_fmt_return(mr.get('mean'), mr.get('std'), mr.get('n'))}{flag}")
            if m.get("how"):
                print(f"          how: {m['how']}")
    for lvl, why in (card.get("missing_levels") or {}).items():
        print(f"  {lvl:7s} MISSING: {why}")
    return 0


def run_build(args: argparse.Namespace) -> int:
    from rllib_sit.data.composition import load_specs
    from rllib_sit.data.pool_calibration import build_pool, check_build_request
    from rllib_sit.data.pool_card import pool_card_path

    if args.all and args.env:
        raise ValueError(f"give environment ids or --all, not both (got {args.env} and --all)")
    if not args.all and not args.env:
        raise ValueError("give environment id(s) to build (e.g. smac:2s3z) or --all")
    if args.refit and not args.fit:
        raise ValueError("--refit starts the fit from the existing card; it cannot be combined with --no-fit")
    envs = list(load_specs()) if args.all else list(dict.fromkeys(args.env))
    folder = _folder(args)
    # every argument is checked before the first (minutes-long) calibration starts
    check_build_request(envs, eval_episodes=args.episodes, cal_episodes=args.cal_episodes, seed=args.seed)
    for env_id in envs:
        card = build_pool(env_id, eval_episodes=args.episodes, seed=args.seed, cal_episodes=args.cal_episodes,
                          directory=folder, fit_datasets=args.fit,
                          refit=args.refit)
        missing = card.get("missing_levels") or {}
        print(f"{env_id}: wrote {pool_card_path(env_id, folder)} in {card['build_seconds']} s"
              + (f"; missing levels: {sorted(missing)}" if missing else ""), flush=True)
    return 0


SUBCOMMANDS = {"list": run_list, "show": run_show, "build": run_build}


def run(args: argparse.Namespace) -> int:
    return SUBCOMMANDS[args.pools_command](args)
