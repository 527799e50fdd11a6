"""``rllib-sit data generate``: build an offline dataset from the behaviour policy pools.

    rllib-sit data generate smac:2s3z --quality low [--episodes N] [--seed S] [--out DIR] [--workers K]
    rllib-sit data generate smac:2s3z --composition "70% [s1:e, s2:r, z1:m, z2:r, z3:e] + 30% [...]"
    rllib-sit data generate smac:2s3z --quality low --decentralize   # + one dataset per agent
    rllib-sit data generate smac:3m --quality vdtn-medium --decentralize independent   # own episodes per agent
    rllib-sit data generate --list                                    # every env and quality in the specs
"""

from __future__ import annotations

import argparse

from rllib_sit.data.generation import DEFAULT_EPISODES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("env", nargs="?", help="environment id, e.g. smac:2s3z, mpe:cn_3ls3l, mamujoco:walker_2l")
    parser.add_argument("--quality", help="dataset quality from the data specs: low, medium; for smac:2s3z also "
                                          "low-closer-look, balanced-random, balanced-medium, balanced-expert, extreme; "
                                          "the VD+TN paper's vdtn-random, vdtn-medium, vdtn-expert (smac:3m, 8m, "
                                          "3s_vs_3z, 3s_vs_4z), vdtn-random (mpe:dg, mpe:dg_partial, mpe:cn_4ls4l), vdtn-mixture "
                                          "(mamujoco:halfcheetah_2l); all: --list")
    parser.add_argument("--composition", help='custom composition, e.g. "70%% [s1:e, s2:r, z1:m, z2:r, z3:e] + '
                                              '30%% [s1:r, s2:r, z1:r, z2:r, z3:r]" (overrides --quality\'s)')
    parser.add_argument("--episodes", type=int, default=DEFAULT_EPISODES,
                        help=f"number of episodes (default {DEFAULT_EPISODES}, as in the paper)")
    parser.add_argument("--seed", type=int, default=0, help="the one seed everything derives from (default 0)")
    parser.add_argument("--out", help="dataset folder (default: the cache <data dir>/datasets/<family>_<scenario>/"
                                      "<quality>_<episodes>_<seed>; data dir $RLLIB_SIT_DATA_DIR, else ./offline_data)")
    parser.add_argument("--workers", type=int, default=None,
                        help="parallel Ray tasks (default: all CPUs of the Ray cluster; 0 = no Ray, in-process)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing dataset at the output path")
    parser.add_argument("--decentralize", nargs="?", const="shared", choices=["shared", "independent"],
                        help="also write one single-agent dataset per agent (own observations and actions only; "
                             "offline decentralized MARL): 'shared' (the default) splits this dataset into "
                             "<out>-decentralized/<agent>/; 'independent' gives every agent its own episodes "
                             "(agent i>1 from an extra run with a derived seed) in "
                             "<out>-decentralized-independent/<agent>/")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--list", action="store_true", help="list the environments and qualities of the data specs")


def run(args: argparse.Namespace) -> int:
    if args.list:
        from rllib_sit.data.composition import load_specs

        for env_id, spec in load_specs().items():
            for q, d in spec.datasets.items():
                avg = "" if d.paper_average_return is None else f"  (paper avg {d.paper_average_return:g})"
                print(f"{env_id:24s} {q:16s} {d.composition}{avg}")
        return 0
    if not args.env:
        raise ValueError("give an environment id (e.g. smac:2s3z) or --list")
    if args.quality is None and args.composition is None:
        raise ValueError("give --quality (e.g. low, medium) or --composition")
    from rllib_sit.data.generation import decentralize, decentralize_independent, generate_dataset

    try:
        path = generate_dataset(args.env, quality=args.quality, composition=args.composition,
                                n_episodes=args.episodes, seed=args.seed, out=args.out, num_workers=args.workers,
                                progress=not args.no_progress, overwrite=args.overwrite)
    except FileExistsError as e:  # the dispatcher prints ValueErrors as one clean line
        raise ValueError(str(e)) from None
    print(path)
    if args.decentralize == "shared":
        split = decentralize(path, path.rstrip("/") + "-decentralized", overwrite=args.overwrite)
    elif args.decentralize == "independent":
        split = decentralize_independent(path, path.rstrip("/") + "-decentralized-independent",
                                         overwrite=args.overwrite, num_workers=args.workers,
                                         progress=not args.no_progress)
    else:
        split = {}
    for agent, p in split.items():
        print(f"{agent}: {p}")
    return 0
