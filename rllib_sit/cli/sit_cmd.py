"""``rllib-sit``: the package's own commands.

Sub-commands live in their own modules (one per command group) and are listed in ``COMMANDS``;
each module exposes ``add_arguments(parser)`` and ``run(args) -> int``.

    rllib-sit data inspect PATH
    rllib-sit data generate smac:2s3z --quality low [--episodes N] [--seed S] [--out DIR]
    rllib-sit data pools list | show smac:2s3z | build smac:2s3z
    rllib-sit data import PATH... --env smac:3m [--format og-marl-vault|pymarl-hdf5] [--out DIR]
    rllib-sit export CHECKPOINT [--out DIR] [--format torchscript onnx]
    rllib-sit benchmark [--profile quick|paper|...] [--algos ...] [--maps ...] [--seeds ...] [--out DIR]
    rllib-sit ope CHECKPOINT [--dataset PATH_OR_SPEC] [--explore] [--json] | --results DIR [--score]
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Dict, List, Optional, Tuple

# (group, command) -> (module, one-line help); command None: the group is the command itself
COMMANDS: Dict[Tuple[str, Optional[str]], Tuple[str, str]] = {
    ("data", "inspect"): ("rllib_sit.cli.data_inspect", "print a dataset's card and per-agent statistics"),
    ("data", "generate"): ("rllib_sit.cli.data_generate", "generate an offline dataset from behaviour policy pools"),
    ("data", "pools"): ("rllib_sit.cli.data_pools", "list, show or (re)build the behaviour policy pools"),
    ("data", "import"): ("rllib_sit.cli.data_import", "import an OG-MARL vault or a pymarl/ICQ/CFCQL HDF5 dataset"),
    ("export", None): ("rllib_sit.cli.export_cmd", "export a checkpoint's actors to TorchScript and ONNX"),
    ("benchmark", None): ("rllib_sit.cli.benchmark_cmd", "run algorithms x maps x qualities x seeds: CSV, Table 1, figures"),
    ("ope", None): ("rllib_sit.cli.ope_cmd", "off-policy evaluation (FQE, PDWIS) of checkpoints and selection metrics"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rllib-sit", description="rllib_sit: offline cooperative MARL on RLlib")
    groups = parser.add_subparsers(dest="group", required=True)
    group_parsers: Dict[str, argparse._SubParsersAction] = {}
    for (group, cmd), (module, help_) in COMMANDS.items():
        if cmd is None:
            sub = groups.add_parser(group, help=help_, description=help_)
        else:
            if group not in group_parsers:
                gp = groups.add_parser(group, help=f"{group} commands")
                group_parsers[group] = gp.add_subparsers(dest="command", required=True)
            sub = group_parsers[group].add_parser(cmd, help=help_, description=help_)
        sub.set_defaults(_module=module)
        try:
            importlib.import_module(module).add_arguments(sub)
        except ImportError as e:  # keep the other commands usable
            sub.set_defaults(_import_error=str(e))
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "_import_error", None):
        print(f"rllib-sit: command unavailable: {args._import_error}", file=sys.stderr)
        return 2
    try:
        return int(importlib.import_module(args._module).run(args) or 0)
    except (ValueError, FileNotFoundError) as e:  # bad input: one clear message, no traceback
        print(f"rllib-sit: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
