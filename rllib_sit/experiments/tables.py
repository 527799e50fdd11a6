"""The benchmark's Markdown table in the layout of the SIT paper's Table 1.

Rows: quality, then map (the paper's map order, other maps after in order of appearance).
Columns: Behaviour, MABC, QMIX/FacMAC, MABCQ, MACQL, ICQ, OMAC, SIT (the paper's order; QMIX on
discrete maps, FACMAC on MAMuJoCo), then any other algorithm or variant (``SIT[prioritized=False]``)
in order of appearance. A cell is the mean ± std (population, ddof = 0) over seeds of the final
evaluation return; "—" where the algorithm has no finished seed. Behaviour is the
dataset card's mean episode return (one dataset per map × quality, as in the paper).

:func:`markdown_report` shows the greedy policies' table first (``final_return``: arg max / the
mean action, the package's default), then the sampled policies' (``final_return_sampled``: actions
drawn from the policy, same env seeds), each under a heading that says which it is.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from rllib_sit.experiments import profiles as P

MISSING = "—"
RETURN_FIELDS = ("final_return", "final_return_sampled")  # the tables with a Behaviour column
GREEDY_TEXT = "greedy policies (arg max / the mean action)"
SAMPLED_TEXT = "sampled policies (actions drawn from the policy; same env seeds as the greedy evaluation)"


def _ordered(values: Sequence[str], order: Sequence[str]) -> List[str]:
    seen = list(dict.fromkeys(values))
    return [v for v in order if v in seen] + [v for v in seen if v not in order]


def mean_std(values: Sequence[float]) -> Tuple[float, float]:
    a = np.asarray([v for v in values if v is not None], np.float64)
    return float(a.mean()), float(a.std())


def fmt(mean: float, std: Optional[float] = None, digits: int = 2) -> str:
    return f"{mean:.{digits}f}" if std is None else f"{mean:.{digits}f} ± {std:.{digits}f}"


def columns(labels: Sequence[str]) -> List[Tuple[str, Tuple[str, ...]]]:
    """Table 1's columns plus one per label that is not one of its algorithms."""
    table1 = {a for _, algos in P.TABLE1_COLUMNS for a in algos}
    extra = [lab for lab in dict.fromkeys(labels) if lab not in table1]
    return list(P.TABLE1_COLUMNS) + [(lab, (lab,)) for lab in extra]


def _cell(rows: List[Dict[str, Any]], field: str, digits: int, max_n: int) -> str:
    vals = [r[field] for r in rows if r.get(field) is not None]
    if not vals:
        return MISSING
    m, s = mean_std(vals)
    text = fmt(m, s, digits)
    return text if len(vals) >= max_n else f"{text} (n={len(vals)})"


def table1(rows: Sequence[Dict[str, Any]], field: str = "final_return", digits: int = 2) -> str:
    """The Markdown table (no header text) of ``field`` over ``rows`` of results.csv."""
    rows = list(rows)
    if not rows:
        return "(no finished cell yet)"
    by: Dict[Tuple[str, str, str], List[Dict[str, Any]]] = {}
    for r in rows:
        by.setdefault((r["algorithm"], r["map"], r["quality"]), []).append(r)
    max_n = max(len(v) for v in by.values())
    cols = columns([r["algorithm"] for r in rows])
    qualities = _ordered([r["quality"] for r in rows], P.PAPER_QUALITIES)
    maps = _ordered([r["map"] for r in rows], P.PAPER_MAPS)
    head = ["quality", "map"] + [c for c, _ in cols]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for q in qualities:
        for m in maps:
            here = [r for r in rows if r["map"] == m and r["quality"] == q]
            if not here:
                continue
            cells = [q, m]
            for _name, algos in cols:
                if not algos:  # Behaviour: the dataset card's mean return
                    beh = [r["behaviour_return"] for r in here if r.get("behaviour_return") is not None]
                    cells.append(fmt(beh[0], None, digits) if beh and field in RETURN_FIELDS else MISSING)
                    continue
                got = [r for a in algos for r in by.get((a, m, q), [])]
                cells.append(_cell(got, field, digits, max_n))
            out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def markdown_report(rows: Sequence[Dict[str, Any]], command: str, eval_episodes: Optional[int] = None,
                    digits: int = 2) -> str:
    """table.md: the exact command, what the numbers are, the return table (and win rates on SMAC)."""
    rows = list(rows)
    seeds = sorted({int(r["seed"]) for r in rows})
    ev = f"{eval_episodes} episodes" if eval_episodes else "episodes"
    parts = [
        "# Benchmark: evaluation return in the layout of the SIT paper's Table 1", "",
        f"Command: `{command}`" if command else "Command: (not recorded)", "",
        f"Final evaluation return ({ev} after the last update, each evaluated twice on the same env seeds: "
        f"greedy and sampled actions), mean ± std (population) over seeds "
        f"{seeds}; \"(n=k)\" marks a cell with fewer finished seeds than the others. Behaviour: the dataset "
        "card's mean episode return. QMIX/FacMAC: QMIX on discrete maps, FACMAC on MAMuJoCo. "
        f"\"{MISSING}\": not run or not registered.", ""]
    for suffix, text in (("", GREEDY_TEXT), ("_sampled", SAMPLED_TEXT)):
        field, win = f"final_return{suffix}", f"win_rate{suffix}"
        if suffix and not any(r.get(field) is not None for r in rows):
            continue  # results written before the sampled pass existed
        parts += [f"## Table 1: return of {text}", "", table1(rows, field, digits), ""]
        if any(r.get(win) is not None for r in rows):
            parts += [f"Win rate (SMAC; final evaluation) of {text}, mean ± std over seeds:", "",
                      table1([r for r in rows if r.get(win) is not None], win, digits), ""]
    return "\n".join(parts).rstrip("\n") + "\n"
