"""Ours vs the paper for every Table 7–9 dataset, from the pool cards' ``dataset_fit`` (issue 20).

    python benchmarks/dataset_fit_table.py            # the shipped cards
    python benchmarks/dataset_fit_table.py --dir /tmp/pools

Each card's ``dataset_fit.datasets`` holds, per dataset the specs cite from Tables 7–9, the paper's
average return, the average the fit reached on its own episodes, and the average measured afterwards
on fresh episodes (4x the card's evaluation episodes) with the card's members — what a generated
dataset of that recipe shows. A card built before the fit (no ``dataset_fit``) is listed as such.
"""

from __future__ import annotations

import argparse
import shlex
import sys


def rows(directory=None):
    from rllib_sit.data.composition import load_specs
    from rllib_sit.data.pool_card import read_pool_card
    from rllib_sit.data.pool_fit import fit_targets, tolerance

    out = []
    for env_id, spec in sorted(load_specs().items()):
        targets = fit_targets(spec)
        if not targets:
            continue
        try:
            card = read_pool_card(env_id, directory)
        except FileNotFoundError:
            card = {}
        fit = (card.get("dataset_fit") or {}).get("datasets", {})
        for q, (comp, paper) in targets.items():
            r = fit.get(q)
            out.append({"env": env_id, "quality": q, "composition": comp.to_string(), "paper": paper,
                        "tolerance": tolerance(env_id.split(":")[0], paper),
                        "ours": None if r is None else r["measured_average_return"],
                        "episodes": None if r is None else r["measured_episodes"],
                        "within": None if r is None else r["within"]})
    return out


def markdown(rs) -> str:
    lines = ["| map | quality | composition | paper | ours (fresh episodes) | accepted band | within |",
             "|---|---|---|---|---|---|---|"]
    for r in rs:
        ours = "not fitted (card predates the fit)" if r["ours"] is None else f"{r['ours']:.2f} ({r['episodes']})"
        band = f"{r['paper'] - r['tolerance']:.2f} … {r['paper'] + r['tolerance']:.2f}"
        within = "—" if r["within"] is None else ("yes" if r["within"] else "**no**")
        lines.append(f"| {r['env']} | {r['quality']} | `{r['composition']}` | {r['paper']} | {ours} | {band} | {within} |")
    n = sum(1 for r in rs if r["within"])
    lines.append(f"\n{n} of {len(rs)} datasets within the band; "
                 f"{sum(1 for r in rs if r['ours'] is None)} not fitted.")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dir", default=None, help="folder of pool cards (default: the shipped ones)")
    args = p.parse_args(argv)
    print(markdown(rows(args.dir)))
    print("\ncommand: python " + " ".join(shlex.quote(x) for x in sys.argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
