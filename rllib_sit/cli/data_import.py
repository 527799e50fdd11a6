"""``rllib-sit data import``: convert a public offline MARL dataset into schema v1.

    rllib-sit data import vaults/smac_v1/3m.vlt/Good --env smac:3m            # OG-MARL vault
    rllib-sit data import icq_3m_medium.h5 --env smac:3m [--quality medium]   # pymarl / ICQ / CFCQL HDF5
    rllib-sit data import part1.h5 part2.h5 --env smac:3m --format pymarl-hdf5 --out DIR
"""

from __future__ import annotations

import argparse

from rllib_sit.data.importers import IMPORTERS, TEAM_REWARDS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", help="the dataset: a vault folder <scenario>.vlt/<uid>, or HDF5 file(s)")
    parser.add_argument("--env", required=True, help="our environment id the data belongs to, e.g. smac:3m "
                                                     "(every size of the source is checked against it)")
    parser.add_argument("--format", choices=sorted(IMPORTERS),
                        help="source format (default: detected from the first path): " +
                             "; ".join(f"{k}: {v.description}" for k, v in IMPORTERS.items()))
    parser.add_argument("--out", help="dataset folder (default <data dir>/datasets/<family>_<scenario>/"
                                      "<format>_<quality>)")
    parser.add_argument("--quality", help="quality written on the card (default: the vault uid or the file name)")
    parser.add_argument("--team-reward", default="mean", choices=sorted(TEAM_REWARDS),
                        help="how per-agent rewards become the team reward (default mean: the shared value when "
                             "every agent got the team reward, as in OG-MARL's cooperative tasks)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing dataset at the output path")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from rllib_sit.data.importers import import_dataset
    from rllib_sit.data.io import read_dataset

    try:
        path = import_dataset(args.paths, args.env, args.out, format=args.format, quality=args.quality,
                              team_reward=args.team_reward, overwrite=args.overwrite, progress=not args.no_progress)
    except FileExistsError as e:  # the dispatcher prints ValueErrors as one clean line
        raise ValueError(str(e)) from None
    card = read_dataset(path, validate="none").card
    print(f"{path}: {card['n_episodes']} episodes of {card['env']} from {card['source']['format']}, "
          f"return mean {card['return_mean']:.3f} (min {card['return_min']:.3f}, max {card['return_max']:.3f})")
    return 0
