"""Fitting a behaviour policy pool to the paper's dataset averages (SIT Tables 7–9).

The pool builder (:mod:`.pool_calibration`) puts each level's member in the middle of its return
band (Tables 4–6). The paper's levels are bands of training snapshots, and its datasets' average
returns (Tables 7–9) say *where in its band* each level sat: on 2s3z, "low" = 50% all-random +
50% all-medium averages 3.24 while the medium band starts at 6, so the paper's random level scored
about 0.5; a uniformly random team of our simulator scores 4.16. Mid-band members therefore give
datasets much easier than the paper's (behaviour returns up to 2x), which takes away the very thing
SIT is for: bad agents that are really bad.

This module moves every level's member *within its band* so that the datasets of the data specs
that cite Tables 7–9 get the paper's average return:

* Each family has a one-parameter **ladder** of graded policies, a grade ``g`` in [-1, 1] with the
  return increasing in ``g``: ``g >= 0`` is the scripted controller at skill ``g`` (``g = 0`` is
  uniformly random), ``g < 0`` degrades uniform actions further with strength ``-g`` (SMAC: attack
  actions dropped, ``attack_drop``; other discrete envs: a fixed move repeated, ``drift``;
  continuous envs: saturated corner actions, ``corner_prob``), the way untrained snapshots behave.
* Per level, the grades whose all-agents return stays inside the level's band (shrunk by
  ``BAND_MARGIN`` of its width) are found by bisection: ``[g_lo, g_hi]``.
* The grades are then chosen by coordinate-wise golden-section search inside those intervals
  (then polished once on 4x the episodes in a ±0.1 window: noisy returns), minimising Σ_q ((D_q − paper_q) / tol_q)² over the datasets q, where D_q is the dataset's
  average return simulated with common random numbers and ``tol_q = max(15 % |paper_q|, 0.5 on SMAC)``
  (the acceptance band of issue 20).

Everything is measured by simulation; nothing is set from a table. A dataset whose target the band
constraints make unreachable keeps the closest grade, and the card says so (``dataset_fit``).
"""

from __future__ import annotations

import math
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from rllib_sit.data.composition import LEVEL_WORDS, Composition, EnvSpec
from rllib_sit.data.pool_card import PoolMember
from rllib_sit.data.pool_rollout import measure, run_episode
from rllib_sit.envs.base import CoopEnv

# Datasets whose paper average the fit targets: the SIT paper's Tables 7-9 (not the VD+TN recipes).
FIT_SOURCES = ("Table 7", "Table 8", "Table 9")
BAND_MARGIN = 0.03  # the member's all-agents return must lie this share of the band width inside it
REL_TOL = 0.15  # issue 20: within ±15 % of the paper's average ...
SMAC_ABS_TOL = 0.5  # ... or within 0.5 on SMAC's 0-20 scale
FIT_EPISODES = {"smac": 60, "mpe": 200, "mamujoco": 40}  # per dataset and probe (common random numbers)
GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0


def ladder_member(family: str, discrete: bool, heuristic: Optional[str], g: float) -> PoolMember:
    """The graded policy at grade ``g`` in [-1, 1] (see the module docstring)."""
    g = float(np.clip(g, -1.0, 1.0))
    if g >= 0.0:
        if heuristic is None:
            return PoolMember("uniform", {}, "uniformly random action (no scripted controller for this family)")
        return PoolMember("heuristic", {"fn": heuristic, "skill": round(g, 4)},
                          f"scripted controller at skill {g:.4f} (with probability 1 - skill a uniformly random "
                          "action), grade fitted to the paper's dataset averages (Tables 7-9) within the level's band")
    d = round(-g, 4)
    if family == "smac":
        params, what = {"attack_drop": d}, "an attack drawn is replaced by a random move/stop"
    elif discrete:
        params, what = {"drift": d}, "the agent's own fixed move instead"
    else:
        params, what = {"corner_prob": d}, "a corner of the action box instead of a box-uniform action"
    return PoolMember("uniform", params, f"uniformly random action; with probability {d:.4f} {what}; grade fitted "
                                         "to the paper's dataset averages (Tables 7-9) within the level's band")


def grade_of(member: PoolMember) -> float:
    """The ladder grade of an existing member (the fit's starting point)."""
    p = member.params
    if member.kind == "heuristic":
        return float(p.get("skill", 0.0))
    if p.get("support") == "corners":
        return -1.0
    return -float(p.get("attack_drop", 0.0) or p.get("drift", 0.0) or p.get("corner_prob", 0.0))


def fit_targets(spec: EnvSpec) -> Dict[str, Tuple[Composition, float]]:
    """The datasets of ``spec`` whose paper average the fit targets: {quality: (composition, average)}."""
    return {q: (d.composition, d.paper_average_return) for q, d in spec.datasets.items()
            if d.paper_average_return is not None and d.source.startswith(FIT_SOURCES)}


def tolerance(family: str, target: float) -> float:
    return max(REL_TOL * abs(target), SMAC_ABS_TOL if family == "smac" else 0.0)


def composition_return(env: CoopEnv, comp: Composition, members: Dict[str, PoolMember], n_episodes: int,
                       seed: int) -> float:
    """Average team return of ``n_episodes`` of ``comp`` (components by exact counts; episode k seeded
    ``seed + k``, so two calls with other members see the same episodes: common random numbers)."""
    built = {lvl: m.build() for lvl, m in members.items()}
    rets, k = [], 0
    for c, cnt in zip(comp.components, comp.episode_counts(n_episodes)):
        pols = [built[LEVEL_WORDS[c.level_of(a)]] for a in env.info.agents]
        for _ in range(cnt):
            rets.append(run_episode(env, pols, seed + k)[0])
            k += 1
    return float(np.mean(rets))


def band_interval(ret: Callable[[float], float], band: Tuple[float, float], iters: int = 7
                  ) -> Optional[Tuple[float, float]]:
    """Grades in [-1, 1] whose return ``ret(g)`` (increasing in g) lies in ``band``: ``(g_lo, g_hi)``
    by bisection at both band edges, or None when no grade reaches the band."""
    lo_b, hi_b = band
    f_lo, f_hi = ret(-1.0), ret(1.0)
    if f_lo > hi_b or f_hi < lo_b:
        return None

    def crossing(level: float, first_above: bool) -> float:
        a, b = -1.0, 1.0
        for _ in range(iters):
            x = 0.5 * (a + b)
            if ret(x) < level:
                a = x
            else:
                b = x
        return b if first_above else a

    g_lo = -1.0 if f_lo >= lo_b else crossing(lo_b, True)
    g_hi = 1.0 if f_hi <= hi_b else crossing(hi_b, False)
    return (g_lo, g_hi) if g_lo <= g_hi else None


def golden_section(f: Callable[[float], float], a: float, b: float, x0: float, iters: int = 8) -> Tuple[float, float]:
    """Minimise ``f`` on [a, b] (golden-section); ``x0`` (clipped) is kept if nothing beats it."""
    best_x = float(np.clip(x0, a, b))
    best_f = f(best_x)
    c, d = b - GOLDEN * (b - a), a + GOLDEN * (b - a)
    fc, fd = f(c), f(d)
    for _ in range(iters):
        for x, fx in ((c, fc), (d, fd)):
            if fx < best_f:
                best_x, best_f = x, fx
        if fc <= fd:
            b, d, fd = d, c, fc
            c = b - GOLDEN * (b - a)
            fc = f(c)
        else:
            a, c, fc = c, d, fd
            d = a + GOLDEN * (b - a)
            fd = f(d)
    for x, fx in ((c, fc), (d, fd)):
        if fx < best_f:
            best_x, best_f = x, fx
    return best_x, best_f


def fit_pool(env: CoopEnv, spec: EnvSpec, family: str, heuristic: Optional[str], start: Dict[str, PoolMember],
             cal_episodes: int, fit_episodes: int, seed: int, rounds: int = 3, log=print) -> Dict[str, object]:
    """Grades per level that bring the spec's Table 7–9 datasets to the paper's averages.

    ``start``: the builder's members (level -> member), the starting grades. Returns ``{"members":
    {level: PoolMember}, "intervals": {level: (g_lo, g_hi)}, "fit": {quality: {...}}}``; a level
    without a band or without a reachable grade keeps its starting member.
    """
    targets = fit_targets(spec)
    levels = [lvl for lvl in ("random", "medium", "expert") if lvl in start and lvl in spec.pool_ranges
              and any(LEVEL_WORDS[x] == lvl for c, _ in targets.values() for x in c.levels_used())]
    member_of = dict(start)
    intervals: Dict[str, Tuple[float, float]] = {}
    grades: Dict[str, float] = {}
    cal_seed, fit_seed = 1_000_000 + seed, 2_000_000 + seed
    discrete = env.info.discrete
    for lvl in levels:
        lo, hi = spec.pool_ranges[lvl]
        margin = BAND_MARGIN * (hi - lo)

        def all_agents(g, _lvl=lvl):
            return measure(env, ladder_member(family, discrete, heuristic, g).build(), cal_episodes, cal_seed)["mean"]

        iv = band_interval(all_agents, (lo + margin, hi - margin))
        log(f"{spec.env_id}: {lvl} grades in band [{lo}, {hi}]: {iv}")
        if iv is None:
            levels = [x for x in levels if x != lvl]
            continue
        intervals[lvl] = iv
        grades[lvl] = float(np.clip(grade_of(start[lvl]), *iv))

    def members(gr: Dict[str, float]) -> Dict[str, PoolMember]:
        out = dict(member_of)
        out.update({lvl: ladder_member(family, discrete, heuristic, g) for lvl, g in gr.items()})
        return out

    def averages(gr: Dict[str, float], n: int, s: int) -> Dict[str, float]:
        ms = members(gr)
        return {q: composition_return(env, comp, ms, n, s) for q, (comp, _) in targets.items()}

    def loss(gr: Dict[str, float]) -> float:
        avg = averages(gr, fit_episodes, fit_seed)
        return sum(((avg[q] - t) / tolerance(family, t)) ** 2 for q, (_, t) in targets.items())

    current = loss(grades) if levels else 0.0
    log(f"{spec.env_id}: start grades {grades}, loss {current:.3f}")
    for r in range(rounds):
        if current < 0.25 * len(targets):  # every dataset well inside its tolerance (on average)
            break
        for lvl in levels:
            g, f = golden_section(lambda x, _l=lvl: loss({**grades, _l: x}), *intervals[lvl], grades[lvl])
            if f < current:
                grades[lvl], current = g, f
            log(f"{spec.env_id}: round {r + 1}, {lvl} grade {grades[lvl]:.4f}, loss {current:.3f}")
    # Polish: the coarse fit matches its own (few) common-random-number episodes; where returns are noisy
    # (MAMuJoCo: std ~ 45 over 40 episodes, tol ~ 6) that sample can sit a tolerance away from the mean.
    # Re-fit once on 4x the episodes (other seeds) in a window of ±0.1 grade around each coarse grade.
    fit_episodes, fit_seed = 4 * fit_episodes, 3_000_000 + seed
    current = loss(grades) if levels else 0.0
    log(f"{spec.env_id}: polish on {fit_episodes} episodes, loss {current:.3f}")
    if current >= 0.25 * len(targets):
        for lvl in levels:
            lo, hi = max(intervals[lvl][0], grades[lvl] - 0.1), min(intervals[lvl][1], grades[lvl] + 0.1)
            g, f = golden_section(lambda x, _l=lvl: loss({**grades, _l: x}), lo, hi, grades[lvl], iters=5)
            if f < current:
                grades[lvl], current = g, f
            log(f"{spec.env_id}: polish, {lvl} grade {grades[lvl]:.4f}, loss {current:.3f}")
    final = averages(grades, fit_episodes, fit_seed)
    fit = {q: {"paper_average_return": t, "fitted_average_return": round(final[q], 3),
               "tolerance": round(tolerance(family, t), 3),
               "within": bool(abs(final[q] - t) <= tolerance(family, t))} for q, (_, t) in targets.items()}
    return {"members": members(grades), "intervals": intervals, "fit": fit, "grades": grades}


def measure_datasets(env: CoopEnv, spec: EnvSpec, family: str, members: Dict[str, PoolMember],
                     fit: Dict[str, dict], n_episodes: int, seed: int) -> Dict[str, dict]:
    """The fitted datasets' averages on fresh episodes (seeds ``seed``..): what a generated dataset shows."""
    out = {}
    for q, (comp, t) in fit_targets(spec).items():
        if not all(LEVEL_WORDS[x] in members for x in comp.levels_used()):
            continue
        avg = composition_return(env, comp, members, n_episodes, seed)
        row = dict(fit.get(q, {"paper_average_return": t, "tolerance": round(tolerance(family, t), 3)}))
        row.update({"measured_average_return": round(avg, 3), "measured_episodes": int(n_episodes),
                    "within": bool(abs(avg - t) <= tolerance(family, t))})
        out[q] = row
    return out


def describe_levels(members: Dict[str, PoolMember], order: Sequence[str]) -> List[str]:
    return [f"{lvl}: {members[lvl].kind} {members[lvl].params}" for lvl in order if lvl in members]
