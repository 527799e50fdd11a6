"""The benchmark's figures (matplotlib, Agg backend, PNG). Each function takes rows of the benchmark
CSVs (:mod:`rllib_sit.experiments.results`) and writes one PNG of a fixed pixel size (``DPI`` ×
the figure size in inches; :func:`png_size` reads it back).

=========================  ==========================================  ====================
function                   what                                        SIT paper
=========================  ==========================================  ====================
plot_training_curves       evaluation return vs policy updates, one    Figures 9-14
                           panel per quality, one line per algorithm,
                           mean ± std band over seeds
plot_decomposition         SIT's mean decomposed reward r̂ per agent,   Figures 3a/d, 15-20
                           coloured by type, with each agent's
                           behaviour level from the dataset card
plot_dper_priorities       histograms of the rescaled DPER priorities  Figure 3b/c/e/f
                           of every agent, one panel per agent type
plot_ablations             final return of SIT and its ablations       Figure 4a/b
plot_balanced              final return on the balanced datasets       Figure 4c
plot_sensitivity           final return vs α, one line per (β, η)      Figure 8
plot_diagnostics           what the logs say over training: greedy     (issue 23; none)
                           return, loss, Q scale, policy entropy,
                           weight ESS, data fit; one line per algorithm
=========================  ==========================================  ====================

:func:`write_figures` draws every figure the data of an output folder supports (the diagnostics from
the Tune trial folders that results.csv names, where they are still there).
"""

from __future__ import annotations

import os
import struct
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from rllib_sit.experiments import profiles as P

DPI = 100
PANEL_W, PANEL_H = 4.6, 3.6  # inches per panel
LEGEND_H = 0.7  # inches below the panels for a shared legend
_PALETTE = {"MABC": "#1f77b4", "QMIX": "#8c564b", "FACMAC": "#8c564b", "MABCQ": "#2ca02c", "MACQL": "#9467bd",
            "ICQ": "#ff7f0e", "OMAC": "#17becf", "SIT": "#d62728"}
_EXTRA = ["#e377c2", "#7f7f7f", "#bcbd22", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd",
          "#31a354", "#756bb1", "#636363"]
_TYPE_COLORS = ["#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"]
# SIT defaults of the sensitivity axes (SITConfig: Table 11 / Eq. 7).
SIT_DEFAULTS = {"alpha": 0.2, "beta": 0.1, "eta": 1.0}


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def colors_for(labels: Sequence[str]) -> Dict[str, str]:
    """One colour per label: an algorithm's own colour, also for a variant label
    (``OMAC[hidden=64]``) when it is the only line of its algorithm; the default
    cycle for everything else (a second variant of one algorithm, unknown names)."""
    bases = [lab.split("[", 1)[0] for lab in labels]
    claimed = {lab for lab in labels if lab in _PALETTE}
    out, k = {}, 0
    for lab, base in zip(labels, bases):
        if lab in _PALETTE:
            out[lab] = _PALETTE[lab]
        elif base in _PALETTE and base not in claimed:
            out[lab] = _PALETTE[base]
            claimed.add(base)
        else:
            out[lab] = _EXTRA[k % len(_EXTRA)]
            k += 1
    return out


def algorithm_order(labels: Sequence[str]) -> List[str]:
    """Table 1's order, then other labels (variants) in order of appearance."""
    seen = list(dict.fromkeys(labels))
    return [a for a in P.TABLE1_ALGORITHMS if a in seen] + [a for a in seen if a not in P.TABLE1_ALGORITHMS]


def figure_size(panels: int = 1, legend: bool = True, rows: int = 1) -> Tuple[float, float]:
    """Figure size in inches: ``panels`` side by side (per row, ``rows`` rows), plus a legend strip below."""
    return (PANEL_W * max(1, panels), PANEL_H * max(1, rows) + (LEGEND_H if legend else 0.0))


def expected_png_size(panels: int = 1, legend: bool = True, rows: int = 1) -> Tuple[int, int]:
    w, h = figure_size(panels, legend, rows)
    return int(round(w * DPI)), int(round(h * DPI))


def png_size(path: str) -> Tuple[int, int]:
    """(width, height) in pixels from a PNG's IHDR chunk."""
    with open(path, "rb") as f:
        head = f.read(24)
    if head[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError(f"{path}: not a PNG file")
    return struct.unpack(">II", head[16:24])


def _save(fig, out_png: str) -> str:
    os.makedirs(os.path.dirname(os.path.abspath(out_png)) or ".", exist_ok=True)
    tmp = out_png + ".tmp.png"
    fig.savefig(tmp, dpi=DPI)  # fixed size: no bbox_inches="tight"
    _plt().close(fig)
    os.replace(tmp, out_png)
    return out_png


def _layout(fig, legend: bool) -> None:
    bottom = LEGEND_H / fig.get_size_inches()[1] if legend else 0.0
    fig.tight_layout(rect=(0, bottom, 1, 1))


def _legend_below(fig, handles, labels) -> None:
    ncol = max(1, min(len(labels), int(fig.get_size_inches()[0] / 1.5)))
    fig.legend(handles, labels, loc="lower center", ncol=ncol, frameon=False, fontsize=8)


def _short(map_id: str) -> str:
    return map_id.split(":", 1)[-1]


# ------------------------------------------------------------------------------------------------
# Figures 9-14: training curves
# ------------------------------------------------------------------------------------------------

def aggregate_curve(rows: Sequence[Dict[str, Any]], key: str = "return_mean"
                    ) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x, mean, std, n) over seeds of ``key`` at each policy-update count of ``rows`` (one algorithm)."""
    by: Dict[int, List[float]] = {}
    for r in rows:
        by.setdefault(int(r["policy_updates"]), []).append(float(r[key]))
    xs = np.array(sorted(by))
    vals = [np.asarray(by[x]) for x in xs]
    return (xs, np.array([v.mean() for v in vals]), np.array([v.std() for v in vals]),
            np.array([len(v) for v in vals]))


def plot_training_curves(curves: Sequence[Dict[str, Any]], out_png: str, map_id: str,
                         behaviour: Optional[Dict[str, float]] = None) -> str:
    """Figures 9-14: evaluation return vs policy updates on ``map_id``, a panel per quality."""
    plt = _plt()
    rows = [r for r in curves if r["map"] == map_id]
    if not rows:
        raise ValueError(f"plot_training_curves: no curve rows for {map_id}")
    qualities = list(dict.fromkeys(q for q in P.PAPER_QUALITIES if any(r["quality"] == q for r in rows)))
    qualities += [q for q in dict.fromkeys(r["quality"] for r in rows) if q not in qualities]
    labels = algorithm_order([r["algorithm"] for r in rows])
    colors = colors_for(labels)
    fig, axes = plt.subplots(1, len(qualities), figsize=figure_size(len(qualities)), squeeze=False)
    handles: Dict[str, Any] = {}
    for ax, q in zip(axes[0], qualities):
        for lab in labels:
            sub = [r for r in rows if r["quality"] == q and r["algorithm"] == lab]
            if not sub:
                continue
            x, m, s, _ = aggregate_curve(sub)
            (line,) = ax.plot(x, m, marker="o", ms=3, lw=1.6, color=colors[lab])
            ax.fill_between(x, m - s, m + s, color=colors[lab], alpha=0.18, lw=0)
            handles.setdefault(lab, line)
        if behaviour and behaviour.get(q) is not None:
            handles.setdefault("Behaviour", ax.axhline(behaviour[q], color="black", ls="--", lw=1.0))
        ax.set_title(f"{_short(map_id)} {q}", fontsize=10)
        ax.set_xlabel("policy updates", fontsize=9)
        ax.set_ylabel("evaluation return", fontsize=9)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
    _legend_below(fig, list(handles.values()), list(handles))
    _layout(fig, True)
    return _save(fig, out_png)


# ------------------------------------------------------------------------------------------------
# What the logs say over training (issue 23)
# ------------------------------------------------------------------------------------------------

DIAGNOSTIC_PANELS = [("greedy return", False), ("loss", True), ("Q scale", False), ("policy entropy", False),
                     ("weight ESS", True), ("data fit", False)]  # (column, log y where it spans a decade)
LOG_AXIS_MIN_SPAN = 10.0  # max / min of a panel's values below which a log axis only crowds its tick labels


def _finite(values: Sequence[float]) -> np.ndarray:
    v = np.asarray(values, dtype=float)
    return v[np.isfinite(v)]


def _spans_decade(values: Sequence[float]) -> bool:
    """Whether positive ``values`` span a factor of at least ``LOG_AXIS_MIN_SPAN`` (a log axis reads
    them better); a flat metric such as ICQ's weight ESS at 1.0 stays on a linear axis."""
    v = _finite(values)
    return bool(v.size and v.min() > 0 and v.max() / v.min() >= LOG_AXIS_MIN_SPAN)


def _readable_linear_axis(ax, values: Sequence[float]) -> None:
    """Plain tick labels on a linear panel (no '1e-6+9.9999e-1' offset), and a flat metric (range below
    0.1 % of its size, e.g. an ESS fraction of 1.0 that moves in the 7th decimal) drawn at ±5 % around
    its value instead of magnified noise."""
    ax.ticklabel_format(axis="y", style="plain", useOffset=False)
    v = _finite(values)
    if v.size:
        mid, size = (v.max() + v.min()) / 2, max(abs(v.max()), abs(v.min()))
        if v.max() - v.min() < 1e-3 * size:
            ax.set_ylim(mid - 0.05 * size, mid + 0.05 * size)


def plot_diagnostics(series: Sequence[Dict[str, Any]], curves: Sequence[Dict[str, Any]], out_png: str,
                     map_id: str, quality: str) -> str:
    """One dataset's learning curve beside what the logs say (``results.diagnostic_series`` rows with
    ``algorithm`` and ``seed`` added): a panel per column, one line per algorithm, the mean over seeds at
    each policy-update count (band: std). The metric behind a column can differ between algorithms
    (e.g. ``critic_loss`` / ``td_loss`` / ``bc_loss``); the panel's title lists the ones shown."""
    plt = _plt()
    series = [r for r in series if r["map"] == map_id and r["quality"] == quality]
    curve_rows = [dict(r, column="greedy return", metric="return_mean", value=r["return_mean"]) for r in curves
                  if r["map"] == map_id and r["quality"] == quality]
    rows = curve_rows + list(series)
    if not rows:
        raise ValueError(f"plot_diagnostics: no rows for {map_id} {quality}")
    labels = algorithm_order([r["algorithm"] for r in rows])
    colors = colors_for(labels)
    ncol = 3
    nrow = -(-len(DIAGNOSTIC_PANELS) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=figure_size(ncol, True, nrow), squeeze=False)
    handles: Dict[str, Any] = {}
    for ax, (column, log_y) in zip(axes.flat, DIAGNOSTIC_PANELS):
        sub = [r for r in rows if r["column"] == column]
        for lab in labels:
            mine = [r for r in sub if r["algorithm"] == lab]
            if not mine:
                continue
            x, m, s, _ = aggregate_curve(mine, "value")
            (line,) = ax.plot(x, m, marker="o" if len(x) <= 12 else None, ms=3, lw=1.4, color=colors[lab])
            ax.fill_between(x, m - s, m + s, color=colors[lab], alpha=0.15, lw=0)
            handles.setdefault(lab, line)
        metrics = list(dict.fromkeys(r["metric"] for r in sub))
        values = [float(r["value"]) for r in sub]
        if log_y and _spans_decade(values):
            ax.set_yscale("log")
        elif values:
            _readable_linear_axis(ax, values)
        ax.set_title(column + (f" ({', '.join(metrics)})" if metrics and column != "greedy return" else ""),
                     fontsize=9)
        ax.set_xlabel("policy updates", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        if not sub:
            ax.text(0.5, 0.5, "not logged", ha="center", va="center", transform=ax.transAxes, fontsize=9)
    fig.suptitle(f"{_short(map_id)} {quality}: what the logs say", fontsize=10)
    _legend_below(fig, list(handles.values()), list(handles))
    _layout(fig, True)
    return _save(fig, out_png)


# ------------------------------------------------------------------------------------------------
# Figures 3a/d, 15-20: decomposed reward per agent
# ------------------------------------------------------------------------------------------------

def plot_decomposition(rewards: Sequence[Dict[str, Any]], out_png: str, map_id: str, quality: str,
                       algorithm: str = "SIT") -> str:
    """Bars of SIT's mean r̂ per agent (mean ± std over seeds), coloured by agent type; under each
    bar the agent's behaviour level(s) from the dataset card's composition."""
    plt = _plt()
    rows = [r for r in rewards if r["map"] == map_id and r["quality"] == quality and r["algorithm"] == algorithm]
    if not rows:
        raise ValueError(f"plot_decomposition: no r̂ rows for {algorithm} on {map_id} {quality}")
    agents = list(dict.fromkeys(r["agent"] for r in rows))
    types = {r["agent"]: r.get("agent_type") or "" for r in rows}
    levels = {r["agent"]: r.get("behaviour_level") or "" for r in rows}
    type_color = {t: _TYPE_COLORS[i % len(_TYPE_COLORS)] for i, t in enumerate(dict.fromkeys(types.values()))}
    vals = [np.asarray([float(r["r_hat_mean"]) for r in rows if r["agent"] == a]) for a in agents]
    seeds = len({r["seed"] for r in rows})
    fig, ax = plt.subplots(figsize=figure_size(1))
    x = np.arange(len(agents))
    ax.bar(x, [v.mean() for v in vals], yerr=[v.std() for v in vals], capsize=3,
           color=[type_color[types[a]] for a in agents], edgecolor="black", lw=0.5)
    ax.set_xticks(x, [f"{a}\n" + levels[a].replace(" + ", "\n") if levels[a] else a for a in agents], fontsize=8)
    ax.set_xlabel("agent (its behaviour level in the dataset card: r/m/e, % of episodes)", fontsize=8)
    ax.axhline(0, color="black", lw=0.6)
    ax.set_ylabel("mean decomposed reward r̂", fontsize=9)
    ax.set_title(f"{algorithm} r̂ per agent: {_short(map_id)} {quality} ({seeds} seed{'s' * (seeds > 1)})",
                 fontsize=10)
    ax.tick_params(axis="y", labelsize=8)
    ax.grid(axis="y", alpha=0.3)
    from matplotlib.patches import Patch

    handles = [Patch(color=c, label=f"type {t}") for t, c in type_color.items()]
    _legend_below(fig, handles, [h.get_label() for h in handles])
    _layout(fig, True)
    return _save(fig, out_png)


# ------------------------------------------------------------------------------------------------
# Figure 3b/c/e/f: DPER priority distributions
# ------------------------------------------------------------------------------------------------

def plot_dper_priorities(dper: Sequence[Dict[str, Any]], out_png: str, map_id: str, quality: str,
                         algorithm: str = "SIT", levels: Optional[Dict[str, str]] = None) -> str:
    """One panel per agent type: a step histogram (share of the agent's trajectories per bin,
    counts pooled over seeds) of each agent's rescaled DPER priorities."""
    plt = _plt()
    rows = [r for r in dper if r["map"] == map_id and r["quality"] == quality and r["algorithm"] == algorithm]
    if not rows:
        raise ValueError(f"plot_dper_priorities: no DPER rows for {algorithm} on {map_id} {quality}")
    types = list(dict.fromkeys(r["agent_type"] for r in rows))
    fig, axes = plt.subplots(1, len(types), figsize=figure_size(len(types)), squeeze=False)
    handles: Dict[str, Any] = {}
    k = 0
    for ax, t in zip(axes[0], types):
        sub = [r for r in rows if r["agent_type"] == t]
        agents = list(dict.fromkeys(r["agent"] for r in sub))
        ess = [r["type_ess"] for r in sub if r.get("type_ess") is not None]
        for a in agents:
            bins: Dict[Tuple[float, float], int] = {}
            for r in sub:
                if r["agent"] == a:
                    key = (float(r["bin_low"]), float(r["bin_high"]))
                    bins[key] = bins.get(key, 0) + int(r["count"])
            edges = sorted(bins)
            counts = np.array([bins[e] for e in edges], np.float64)
            share = counts / max(1.0, counts.sum())
            x = [e[0] for e in edges] + [edges[-1][1]]
            color = _TYPE_COLORS[k % len(_TYPE_COLORS)]
            k += 1
            line = ax.stairs(share, x, color=color, lw=1.6, fill=False)
            label = a + (f" ({levels[a]})" if levels and levels.get(a) else "")
            handles[label] = line
        title = f"type {t}" + (f" (ESS {np.mean(ess):,.1f})" if ess else "")
        ax.set_title(f"{_short(map_id)} {quality}: {title}", fontsize=10)
        ax.set_xlabel("rescaled priority (Eq. 7 input)", fontsize=9)
        ax.set_ylabel("share of the agent's trajectories", fontsize=9)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
    _legend_below(fig, list(handles.values()), list(handles))
    _layout(fig, True)
    return _save(fig, out_png)


# ------------------------------------------------------------------------------------------------
# Figures 4a/b, 4c: bar charts of final returns
# ------------------------------------------------------------------------------------------------

def bar_panels(groups: int) -> int:
    """Width (in panels) of a bar chart of ``groups`` groups."""
    return 1 if groups <= 3 else 2


def _grouped_bars(results: Sequence[Dict[str, Any]], groups: List[Tuple[str, str]], labels: List[str],
                  names: Dict[str, str], title: str, out_png: str) -> str:
    plt = _plt()
    colors = colors_for(labels)
    fig, ax = plt.subplots(figsize=figure_size(bar_panels(len(groups))))
    width = 0.8 / max(1, len(labels))
    handles = {}
    for gi, (m, q) in enumerate(groups):
        for li, lab in enumerate(labels):
            v = np.asarray([r["final_return"] for r in results if r["algorithm"] == lab and r["map"] == m
                            and r["quality"] == q and r.get("final_return") is not None], np.float64)
            if not v.size:
                continue
            bar = ax.bar(gi - 0.4 + width * (li + 0.5), v.mean(), width, yerr=v.std(), capsize=2,
                         color=colors[lab], edgecolor="black", lw=0.4)
            handles.setdefault(names.get(lab, lab), bar)
        beh = [r["behaviour_return"] for r in results if r["map"] == m and r["quality"] == q
               and r.get("behaviour_return") is not None]
        if beh:
            handles.setdefault("Behaviour", ax.hlines(beh[0], gi - 0.45, gi + 0.45, colors="black", linestyles="--",
                                                      lw=1.0))
    ax.set_xticks(range(len(groups)), [f"{_short(m)}\n{q}" for m, q in groups], fontsize=8)
    ax.set_ylabel("final evaluation return", fontsize=9)
    ax.set_title(title, fontsize=10)
    ax.tick_params(axis="y", labelsize=8)
    ax.grid(axis="y", alpha=0.3)
    _legend_below(fig, list(handles.values()), list(handles))
    _layout(fig, True)
    return _save(fig, out_png)


def ablation_labels(labels: Sequence[str]) -> List[str]:
    return [lab for lab in dict.fromkeys(labels) if lab == "SIT" or lab in P.ABLATIONS]


def plot_ablations(results: Sequence[Dict[str, Any]], out_png: str) -> str:
    """Figure 4a/b: SIT vs its ablations (mean ± std over seeds), one group per map × quality."""
    labels = ablation_labels([r["algorithm"] for r in results])
    if not any(lab in P.ABLATIONS for lab in labels):
        raise ValueError("plot_ablations: no SIT ablation (e.g. SIT[prioritized=False]) in the results")
    groups = list(dict.fromkeys((r["map"], r["quality"]) for r in results if r["algorithm"] in P.ABLATIONS))
    rows = [r for r in results if r["algorithm"] in labels and (r["map"], r["quality"]) in groups]
    names = dict(P.ABLATIONS, SIT="SIT")
    return _grouped_bars(rows, groups, ["SIT"] + [a for a in P.ABLATIONS if a in labels], names,
                         "SIT ablations (Figure 4a/b)", out_png)


def plot_balanced(results: Sequence[Dict[str, Any]], out_png: str) -> str:
    """Figure 4c: every algorithm on the agent-wise balanced datasets (qualities ``balanced-*``)."""
    rows = [r for r in results if str(r["quality"]).startswith("balanced-")]
    if not rows:
        raise ValueError("plot_balanced: no balanced-* quality in the results")
    order = {"balanced-random": 0, "balanced-medium": 1, "balanced-expert": 2}
    groups = sorted(dict.fromkeys((r["map"], r["quality"]) for r in rows), key=lambda g: (g[0], order.get(g[1], 9)))
    labels = algorithm_order([r["algorithm"] for r in rows])
    return _grouped_bars(rows, groups, labels, {}, "Agent-wise balanced datasets (Figure 4c)", out_png)


# ------------------------------------------------------------------------------------------------
# Figure 8: α × β × η sensitivity
# ------------------------------------------------------------------------------------------------

def sensitivity_rows(results: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Rows {map, quality, seed, alpha, beta, eta, return} of SIT and SIT[...] variants of results.csv
    (unset axes take SIT's defaults)."""
    from rllib_sit.experiments.plan import parse_algorithms

    out = []
    for r in results:
        lab = r["algorithm"]
        if not (lab == "SIT" or lab.startswith("SIT[")) or r.get("final_return") is None:
            continue
        over = parse_algorithms([lab], registered=["SIT"])[0].config
        if set(over) - set(SIT_DEFAULTS):
            continue  # another switch (an ablation): not on these axes
        out.append({"map": r["map"], "quality": r["quality"], "seed": r["seed"],
                    **{k: float(over.get(k, d)) for k, d in SIT_DEFAULTS.items()}, "return": float(r["final_return"])})
    return out


def sensitivity_rows_from_tune(experiment_dir: str) -> List[Dict[str, Any]]:
    """The same rows from a Tune sweep folder (e.g. ``rllib train file tuned_examples/sit_2s3z_sweep.yaml``):
    each trial's params.json (alpha, beta, eta, env, seed) and its last reported evaluation return."""
    from rllib_sit.experiments.results import read_trial

    out = []
    for name in sorted(os.listdir(experiment_dir)):
        trial = os.path.join(experiment_dir, name)
        if not os.path.isfile(os.path.join(trial, "params.json")):
            continue
        params, results = read_trial(trial)
        ev = [((r.get("evaluation") or {}).get("env_runners") or {}).get("episode_return_mean") for r in results]
        ev = [v for v in ev if v is not None]
        if not ev:
            continue
        ds = params.get("dataset") or {}
        out.append({"map": params.get("env"), "quality": ds.get("quality", params.get("input")),
                    "seed": params.get("seed", 0),
                    **{k: float(params.get(k, d)) for k, d in SIT_DEFAULTS.items()}, "return": float(ev[-1])})
    return out


def plot_sensitivity(rows: Sequence[Dict[str, Any]], out_png: str, title: str = "") -> str:
    """Figure 8: final return vs α (log axis), one line per (β, η), mean ± std over seeds."""
    plt = _plt()
    rows = list(rows)
    alphas = sorted({r["alpha"] for r in rows})
    if len(alphas) < 2:
        raise ValueError(f"plot_sensitivity: needs at least two alpha values, got {alphas}")
    fig, ax = plt.subplots(figsize=figure_size(1))
    lines = sorted({(r["beta"], r["eta"]) for r in rows})
    handles = {}
    for i, (b, e) in enumerate(lines):
        xs, ms, ss = [], [], []
        dodge = 10 ** (0.025 * (i - (len(lines) - 1) / 2))  # side by side on the log axis
        for a in alphas:
            v = np.asarray([r["return"] for r in rows if r["alpha"] == a and r["beta"] == b and r["eta"] == e])
            if v.size:
                xs.append(a * dodge)
                ms.append(v.mean())
                ss.append(v.std())
        color = _EXTRA[i % len(_EXTRA)] if (b, e) != (SIT_DEFAULTS["beta"], SIT_DEFAULTS["eta"]) else _PALETTE["SIT"]
        h = ax.errorbar(xs, ms, yerr=ss, marker="o", ms=4, capsize=3, lw=1.5, color=color)
        handles[f"β={b:g}, η={e:g}"] = h
    ax.set_xscale("log")
    ax.set_xticks(alphas, [f"{a:g}" for a in alphas])
    ax.minorticks_off()
    ax.axvline(SIT_DEFAULTS["alpha"], color="#999999", ls=":", lw=1)
    ax.set_xlabel("α (DPER temperature, Eq. 7); dotted: the paper's 0.2", fontsize=9)
    ax.set_ylabel("final evaluation return", fontsize=9)
    ax.set_title(title or "SIT sensitivity to α, β, η (Figure 8)", fontsize=10)
    ax.tick_params(labelsize=8)
    ax.grid(alpha=0.3)
    _legend_below(fig, list(handles.values()), list(handles))
    _layout(fig, True)
    return _save(fig, out_png)


# ------------------------------------------------------------------------------------------------
# Everything an output folder supports
# ------------------------------------------------------------------------------------------------

def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)


def write_figures(folder: str, sensitivity_source: Optional[str] = None, keys: Optional[set] = None) -> List[str]:
    """Draw every figure the CSVs of ``folder`` support into ``folder/figures``; returns their paths.

    ``sensitivity_source``: a CSV with columns map, quality, seed, alpha, beta, eta, return, or a
    Tune experiment folder of a SIT sweep, for Figure 8 (otherwise it comes from SIT[alpha=...]
    variants in results.csv when they span two or more α values). ``keys``: only these cells
    ((algorithm, map, quality, seed)); default all rows.
    """
    from rllib_sit.experiments import results as R

    out_dir = os.path.join(folder, "figures")
    results = R.read_csv(os.path.join(folder, R.RESULTS_CSV))
    curves = R.read_csv(os.path.join(folder, R.CURVES_CSV))
    rewards = R.read_csv(os.path.join(folder, R.REWARDS_CSV))
    dper = R.read_csv(os.path.join(folder, R.DPER_CSV))
    if keys is not None:
        results = [r for r in results if R.row_key(r) in keys]
    done = {R.row_key(r) for r in results}
    curves = [r for r in curves if R.row_key(r) in done]
    rewards = [r for r in rewards if R.row_key(r) in done]
    dper = [r for r in dper if R.row_key(r) in done]
    written = []
    behaviour = {}
    for r in results:
        if r.get("behaviour_return") is not None:
            behaviour.setdefault(r["map"], {})[r["quality"]] = r["behaviour_return"]
    for m in dict.fromkeys(r["map"] for r in curves):
        written.append(plot_training_curves(curves, os.path.join(out_dir, f"curves_{_safe(_short(m))}.png"), m,
                                            behaviour.get(m)))
    sit_like = [lab for lab in dict.fromkeys(r["algorithm"] for r in rewards)]
    main = "SIT" if "SIT" in sit_like else (sit_like[0] if sit_like else None)
    if main:
        for m, q in dict.fromkeys((r["map"], r["quality"]) for r in rewards if r["algorithm"] == main):
            written.append(plot_decomposition(rewards, os.path.join(
                out_dir, f"decomposition_{_safe(_short(m))}_{_safe(q)}.png"), m, q, main))
    dper_main = "SIT" if any(r["algorithm"] == "SIT" for r in dper) else (dper[0]["algorithm"] if dper else None)
    if dper_main:
        for m, q in dict.fromkeys((r["map"], r["quality"]) for r in dper if r["algorithm"] == dper_main):
            levels = {r["agent"]: r.get("behaviour_level") for r in rewards if r["map"] == m and r["quality"] == q}
            written.append(plot_dper_priorities(dper, os.path.join(
                out_dir, f"dper_{_safe(_short(m))}_{_safe(q)}.png"), m, q, dper_main, levels))
    series = R.trial_diagnostic_series(results)
    for m, q in dict.fromkeys((r["map"], r["quality"]) for r in series):
        written.append(plot_diagnostics(series, curves, os.path.join(
            out_dir, f"diagnostics_{_safe(_short(m))}_{_safe(q)}.png"), m, q))
    if any(r["algorithm"] in P.ABLATIONS for r in results):
        written.append(plot_ablations(results, os.path.join(out_dir, "ablations.png")))
    if any(str(r["quality"]).startswith("balanced-") for r in results):
        written.append(plot_balanced(results, os.path.join(out_dir, "balanced.png")))
    sens = []
    if sensitivity_source:
        if os.path.isdir(sensitivity_source):
            sens = sensitivity_rows_from_tune(sensitivity_source)
        else:
            sens = [{k: (float(v) if k in ("alpha", "beta", "eta", "return") else v) for k, v in r.items()}
                    for r in R.read_csv(sensitivity_source)]
    else:
        sens = sensitivity_rows(results)
    for m, q in dict.fromkeys((r["map"], r["quality"]) for r in sens):
        sub = [r for r in sens if r["map"] == m and r["quality"] == q]
        if len({r["alpha"] for r in sub}) >= 2:
            written.append(plot_sensitivity(sub, os.path.join(
                out_dir, f"sensitivity_{_safe(_short(str(m)))}_{_safe(str(q))}.png"),
                f"SIT on {_short(str(m))} {q}: α × β × η (Figure 8)"))
    return written
