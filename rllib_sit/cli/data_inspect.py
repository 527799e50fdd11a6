"""``rllib-sit data inspect PATH``: the dataset card and per-agent statistics."""

from __future__ import annotations

import argparse
import json

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from rllib_sit.data.io import read_dataset
from rllib_sit.data.stats import agent_statistics, stat_columns


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", help="dataset folder (with card.json and part-*.parquet)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    parser.add_argument("--no-validate", action="store_true", help="skip the value checks (schema only)")


def run(args: argparse.Namespace) -> int:
    ds = read_dataset(args.path, validate="schema" if args.no_validate else "full")
    stats = agent_statistics(ds)
    if args.json:
        print(json.dumps({"card": ds.card, "episodes": ds.num_episodes, "files": len(ds.files),
                          "agents": stats}, indent=2))
        return 0
    console = Console()
    card = Table(title=escape(ds.path), show_header=False)
    for k, v in ds.card.items():
        card.add_row(escape(k), escape(json.dumps(v) if isinstance(v, (dict, list)) else str(v)))
    card.add_row("files", str(len(ds.files)))
    console.print(card)
    cols = stat_columns(stats)
    table = Table(title="per-agent statistics (means per episode / shares of steps)")
    table.add_column("agent")
    table.add_column("type")
    for c in cols:
        table.add_column(c, justify="right")
    for agent, typ in zip(ds.env.agents, ds.env.agent_types, strict=True):
        table.add_row(agent, typ, *(f"{stats[agent].get(c, float('nan')):.3f}" for c in cols))
    console.print(table)
    return 0
