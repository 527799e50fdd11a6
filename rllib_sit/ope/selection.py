"""Off-policy *selection* metrics: how well an estimate ranks and picks policies.

Paine et al. (2020), "Hyperparameter Selection for Offline RL", and Fu et al. (DOPE, ICLR 2021):

* Spearman rank correlation between estimates and true returns (ties: average ranks);
* regret@k = (max_j R_j − max_{j ∈ top-k by estimate} R_j) / (max_j R_j − min_j R_j)          (SEL-1)
  (normalised by the range of true returns; 0 = the best policy is among the k picked);
* precision@k = |top-k by estimate ∩ top-k by true return| / k, where the true top-k holds every
  candidate whose return reaches the k-th largest (ties count as relevant)                       (SEL-2)

Selection rules compared (:func:`dataset_report`), each without a simulator:

* ``fqe``: the candidate with the highest estimate;
* ``last``: a run's last checkpoint (what a table reports when nothing else is known);
* ``min_loss``: a run's checkpoint with the lowest training loss (the learners' own losses).

Candidates are the scored checkpoints of one dataset (every algorithm, variant, seed and
evaluation point). ``last`` and ``min_loss`` choose *within a run* (one cell = algorithm variant ×
seed), so the comparison is made per run: the normalised regret of each rule's choice among the
run's checkpoints, averaged over runs. ``variant`` picks (e.g. SIT's α) compare the variant with
the best mean estimate at the runs' last checkpoints with the one the simulator ranks first.

Trusted fits (``max_td_ratio=K``, ``rllib-sit ope --score --max-td-ratio K``): a fit whose final TD
loss exceeds K times the median final TD loss of the dataset's fits is not used to choose. Its
candidate is ranked below every trusted one (regret@k and precision@k still judge against every
candidate's true return), Spearman is taken over the trusted candidates, and a run whose fits are all
untrusted falls back to the ``last`` rule. The ratio is scale-free (SMAC's TD losses are ~0.1,
CN's ~50), so it needs no per-environment threshold, and it uses nothing the simulator knows: it
flags the fits that diverged relative to their peers on the same data (docs/ope.md, eighth reading).
"""

from __future__ import annotations

import math
import os
from collections import defaultdict
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np


def _finite(x) -> bool:
    return x is not None and isinstance(x, (int, float, np.floating)) and math.isfinite(float(x))


def spearman(estimates: Sequence[float], returns: Sequence[float]) -> float:
    """Spearman's ρ (average ranks for ties); NaN with fewer than 2 candidates or a constant side."""
    from scipy.stats import rankdata

    e, r = np.asarray(estimates, np.float64), np.asarray(returns, np.float64)
    if len(e) < 2 or np.ptp(e) == 0 or np.ptp(r) == 0:
        return float("nan")
    re, rr = rankdata(e), rankdata(r)
    return float(np.corrcoef(re, rr)[0, 1])


def top_k(estimates: Sequence[float], k: int) -> np.ndarray:
    """Indices of the ``k`` largest estimates (ties broken by position, stable)."""
    e = np.asarray(estimates, np.float64)
    return np.argsort(-e, kind="stable")[: max(0, min(int(k), len(e)))]


def regret_at_k(estimates: Sequence[float], returns: Sequence[float], k: int, normalize: bool = True) -> float:
    """SEL-1. Unnormalised with ``normalize=False``; 0 when all returns are equal."""
    r = np.asarray(returns, np.float64)
    if len(r) == 0:
        return float("nan")
    gap = float(r.max() - r[top_k(estimates, k)].max())
    if not normalize:
        return gap
    span = float(r.max() - r.min())
    return gap / span if span > 0 else 0.0


def precision_at_k(estimates: Sequence[float], returns: Sequence[float], k: int) -> float:
    """SEL-2."""
    r = np.asarray(returns, np.float64)
    k = max(1, min(int(k), len(r)))
    if len(r) == 0:
        return float("nan")
    kth = np.sort(r)[::-1][k - 1]
    relevant = set(np.flatnonzero(r >= kth).tolist())
    return len(relevant.intersection(top_k(estimates, k).tolist())) / k


def choice_regret(returns: Sequence[float], chosen: int, span: Optional[float] = None) -> float:
    """(max R − R[chosen]) / span (span: the range of ``returns`` unless given; 0 if it is 0)."""
    r = np.asarray(returns, np.float64)
    span = float(r.max() - r.min()) if span is None else float(span)
    gap = float(r.max() - r[int(chosen)])
    return gap / span if span > 0 else 0.0


def choose_last(iterations: Sequence[int]) -> int:
    """The ``last`` rule: index of the highest iteration."""
    return int(np.argmax(np.asarray(iterations, np.int64)))


def choose_min(values: Sequence[Optional[float]]) -> Optional[int]:
    """The ``min_loss`` rule: index of the lowest finite value (None if there is none)."""
    v = np.array([float(x) if _finite(x) else np.inf for x in values])
    return None if not np.isfinite(v).any() else int(np.argmin(v))


# ------------------------------------------------------------------------------------------------
# Reports over ope.csv rows
# ------------------------------------------------------------------------------------------------

def true_return(row: Dict[str, Any], which: str = "auto") -> Optional[float]:
    """The simulator return a row is judged against: the pass the policy was evaluated as
    (``auto``: sampled when the FQE estimate was of the sampled policy, else greedy)."""
    if which == "auto":
        which = "sampled" if str(row.get("explore")).lower() in ("true", "1") else "greedy"
    v = row.get("return_sampled" if which == "sampled" else "return_greedy")
    return float(v) if _finite(v) else None


def trusted_fits(td_losses: Sequence[Optional[float]], max_td_ratio: Optional[float]) -> np.ndarray:
    """Boolean mask: final TD loss <= ``max_td_ratio`` × the median of the finite ones (every fit
    when ``max_td_ratio`` is None; a fit without a finite TD loss is not trusted)."""
    td = np.array([float(x) if _finite(x) else np.nan for x in td_losses], np.float64)
    if max_td_ratio is None:
        return np.ones(len(td), bool)
    finite = np.isfinite(td)
    if not finite.any():
        return np.zeros(len(td), bool)
    return finite & (np.where(finite, td, np.inf) <= float(max_td_ratio) * float(np.median(td[finite])))


def dataset_report(rows: Sequence[Dict[str, Any]], estimate: str = "fqe_estimate", which: str = "auto",
                   ks: Sequence[int] = (1, 3), max_td_ratio: Optional[float] = None) -> Dict[str, Any]:
    """Selection metrics of one dataset's candidates (ope.csv rows with an estimate and a true return);
    ``max_td_ratio``: choose only among trusted fits (module docstring)."""
    cand = [r for r in rows if _finite(r.get(estimate)) and true_return(r, which) is not None]
    ret = np.array([true_return(r, which) for r in cand])
    trusted = trusted_fits([_float_or_none(r.get("td_loss_last")) for r in cand], max_td_ratio)
    # untrusted candidates rank below every trusted one: they are never chosen before a trusted fit
    est = np.array([float(r[estimate]) if t else -np.inf for r, t in zip(cand, trusted)])
    out: Dict[str, Any] = {"candidates": len(cand), "trusted": int(trusted.sum()), "max_td_ratio": max_td_ratio,
                           "spearman": spearman(est[trusted], ret[trusted]) if trusted.any() else float("nan")}
    for k in ks:
        out[f"regret@{k}"] = regret_at_k(est, ret, k) if trusted.any() else float("nan")
        out[f"precision@{k}"] = precision_at_k(est, ret, k) if trusted.any() else float("nan")
    if trusted.any():
        best = int(np.argmax(est))
        out["fqe_pick"] = _describe(cand[best], ret[best])
        out["true_best"] = _describe(cand[int(np.argmax(ret))], float(ret.max()))
    span = float(np.ptp(ret)) if len(cand) else 0.0
    # within-run rules
    runs: Dict[Tuple, List[int]] = defaultdict(list)
    for i, r in enumerate(cand):
        runs[(r["algorithm"], int(r["seed"]))].append(i)
    per_rule: Dict[str, List[float]] = {"fqe": [], "last": [], "min_loss": []}
    n_runs = 0
    for idx in runs.values():
        if len(idx) < 2:
            continue
        n_runs += 1
        rr = ret[idx]
        best_in_run = float(rr.max())
        last = choose_last([int(cand[i]["iteration"]) for i in idx])
        pick = {"fqe": int(np.argmax(est[idx])) if trusted[idx].any() else last, "last": last,
                "min_loss": choose_min([cand[i].get("training_loss") for i in idx])}
        for rule, j in pick.items():
            if j is not None:
                per_rule[rule].append((best_in_run - float(rr[j])) / span if span > 0 else 0.0)
    out["runs"] = n_runs
    for rule, v in per_rule.items():
        out[f"run_regret_{rule}"] = float(np.mean(v)) if v else float("nan")
    out["variants"] = variant_picks(cand, est, ret)
    return out


def _finite_mean(x: np.ndarray) -> float:
    """Mean of the finite values (untrusted fits carry -inf); -inf when there is none."""
    x = x[np.isfinite(x)]
    return float(np.mean(x)) if len(x) else -np.inf


def _float_or_none(x) -> Optional[float]:
    try:
        return float(x)
    except (TypeError, ValueError):
        return None


def _describe(row: Dict[str, Any], ret: float) -> str:
    return f"{row['algorithm']} s{row['seed']} it{row['iteration']} ({ret:.2f})"


def variant_picks(cand: Sequence[Dict[str, Any]], est: np.ndarray, ret: np.ndarray) -> Dict[str, Dict[str, Any]]:
    """Per algorithm with several variants (labels, e.g. ``SIT[alpha=5]``), and over all labels
    (``*``): the label with the best mean estimate at its runs' last checkpoints, the label with the
    best mean true return there, and whether they agree. Estimates of -inf (untrusted fits) are left
    out of a label's mean; a label with none left is never the estimate's pick."""
    last: Dict[Tuple[str, int], int] = {}
    for i, r in enumerate(cand):
        key = (r["algorithm"], int(r["seed"]))
        if key not in last or int(r["iteration"]) > int(cand[last[key]]["iteration"]):
            last[key] = i
    by_label: Dict[str, List[int]] = defaultdict(list)
    for (label, _), i in last.items():
        by_label[label].append(i)
    families: Dict[str, List[str]] = defaultdict(list)
    for label, idx in by_label.items():
        families[str(cand[idx[0]].get("algorithm_name") or label.split("[")[0])].append(label)
    groups = {name: labels for name, labels in families.items() if len(labels) > 1}
    if len(by_label) > 1:
        groups["*"] = list(by_label)
    out = {}
    for name, labels in sorted(groups.items()):
        mean_est = {lb: _finite_mean(est[by_label[lb]]) for lb in labels}
        mean_ret = {lb: float(np.mean(ret[by_label[lb]])) for lb in labels}
        pe, pr = max(mean_est, key=mean_est.get), max(mean_ret, key=mean_ret.get)
        out[name] = {"fqe_pick": pe, "true_pick": pr, "agree": pe == pr, "fqe_pick_return": mean_ret[pe],
                     "true_pick_return": mean_ret[pr], "variants": len(labels)}
    return out


def score_rows(rows: Sequence[Dict[str, Any]], estimate: str = "fqe_estimate", which: str = "auto",
               max_td_ratio: Optional[float] = None) -> Dict[Tuple[str, str], Dict[str, Any]]:
    """``{(map, quality): dataset_report}`` over every dataset of ``rows``."""
    groups: Dict[Tuple[str, str], List[Dict[str, Any]]] = defaultdict(list)
    for r in rows:
        groups[(r["map"], r["quality"])].append(r)
    return {k: dataset_report(v, estimate, which, max_td_ratio=max_td_ratio) for k, v in sorted(groups.items())}


def _fmt(x, digits=2) -> str:
    return "—" if not _finite(x) else f"{float(x):.{digits}f}"


def format_table(reports: Dict[Tuple[str, str], Dict[str, Any]]) -> str:
    """Markdown: one line per dataset (SEL-1/2 over all candidates, then the per-run rules), and
    the variant picks below it."""
    head = ("| dataset | checkpoints | Spearman | regret@1 | regret@3 | precision@1 | precision@3 | runs | "
            "run regret@1 FQE | run regret@1 last | run regret@1 min-loss |")
    lines = [head, "|---|" + "---:|" * (head.count("|") - 2)]
    for (m, q), r in reports.items():
        lines.append(f"| {m} {q} | {r['candidates']} | {_fmt(r['spearman'])} | {_fmt(r.get('regret@1'))} | "
                     f"{_fmt(r.get('regret@3'))} | {_fmt(r.get('precision@1'))} | {_fmt(r.get('precision@3'))} | "
                     f"{r['runs']} | {_fmt(r['run_regret_fqe'])} | {_fmt(r['run_regret_last'])} | "
                     f"{_fmt(r['run_regret_min_loss'])} |")
    picks = []
    for (m, q), r in reports.items():
        for name, v in r.get("variants", {}).items():
            what = "all variants" if name == "*" else f"{name} variants"
            picks.append(f"- {m} {q}, {what} ({v['variants']}): FQE picks {v['fqe_pick']} "
                         f"(true {v['fqe_pick_return']:.2f}), the simulator picks {v['true_pick']} "
                         f"({v['true_pick_return']:.2f}){'' if v['agree'] else ' — disagree'}")
        if r.get("max_td_ratio") is not None:
            picks.append(f"- {m} {q}: {r['trusted']} of {r['candidates']} fits trusted (final TD loss <= "
                         f"{r['max_td_ratio']:g} x the dataset's median); Spearman over those")
        if r.get("fqe_pick"):
            picks.append(f"- {m} {q}: FQE's top checkpoint {r['fqe_pick']}; the best {r['true_best']}")
    return "\n".join(lines + ([""] + picks if picks else []))


def plot_estimates(rows: Sequence[Dict[str, Any]], path: str, estimate: str = "fqe_estimate",
                   which: str = "auto", max_td_ratio: Optional[float] = None) -> str:
    """Scatter of estimate vs true return, one panel per dataset, coloured by algorithm (PNG, atomic);
    with ``max_td_ratio``, untrusted fits are drawn hollow and the title's Spearman is the trusted one."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups: Dict[Tuple[str, str], List[Dict[str, Any]]] = defaultdict(list)
    for r in rows:
        if _finite(r.get(estimate)) and true_return(r, which) is not None:
            groups[(r["map"], r["quality"])].append(r)
    n = max(1, len(groups))
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 3.8), squeeze=False)
    for ax, ((m, q), rs) in zip(axes[0], sorted(groups.items())):
        trusted = trusted_fits([_float_or_none(r.get("td_loss_last")) for r in rs], max_td_ratio)
        names = sorted({str(r.get("algorithm_name") or r["algorithm"]) for r in rs})
        for j, name in enumerate(names):
            for keep in (True, False):
                sel = [r for r, t in zip(rs, trusted) if t == keep and str(r.get("algorithm_name") or r["algorithm"]) == name]
                if not sel:
                    continue
                ax.errorbar([true_return(r, which) for r in sel], [float(r[estimate]) for r in sel],
                            yerr=[[max(0.0, float(r[estimate]) - float(r.get("fqe_ci_low") or r[estimate])) for r in sel],
                                  [max(0.0, float(r.get("fqe_ci_high") or r[estimate]) - float(r[estimate])) for r in sel]]
                            if estimate == "fqe_estimate" else None, fmt="o", ms=3, alpha=0.7,
                            label=name if keep else None, color=f"C{j % 10}", mfc=None if keep else "none")
        est = [float(r[estimate]) for r in rs]
        ret = [true_return(r, which) for r in rs]
        lo, hi = min(est + ret), max(est + ret)
        ax.plot([lo, hi], [lo, hi], color="0.6", lw=0.8, ls="--")
        rho = spearman(np.asarray(est)[trusted], np.asarray(ret)[trusted]) if trusted.any() else float("nan")
        what = "" if max_td_ratio is None else f"\n{int(trusted.sum())} of {len(rs)} fits trusted (hollow: untrusted)"
        ax.set_title(f"{m} {q}: Spearman {_fmt(rho)}{what}", fontsize=9)
        ax.set_xlabel("simulator return")
        ax.set_ylabel(estimate.replace("_", " "))
        ax.legend(fontsize=6)
    fig.tight_layout()
    root, ext = os.path.splitext(path)
    tmp = f"{root}.tmp-{os.getpid()}{ext or '.png'}"
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, path)
    return path
