"""Building a behaviour policy pool: graded policies calibrated into the paper's return ranges.

The paper (SIT, Appendix C.2, Tables 4–6) snapshots online QMIX / FacMAC training and bins the
snapshots by episode return. This package cannot run that training on a laptop-sized CPU budget,
so a pool level is realised by a *graded* policy whose measured episode return (all agents of the
team using that level) lies in the paper's range for that level:

* ``uniform`` — a uniformly random available action (discrete) or a uniform box action;
* ``heuristic`` — the environment family's scripted per-agent controller
  ``heuristic_action(env, agent_index, rng, skill)``; ``skill`` in [0, 1] degrades it toward
  random, and is calibrated by bisection so that the measured return lands in the range.

Where uniform actions score outside the random range, a calibrated variant is used (continuous:
uniform over the corners of the action box; SMAC: a share of the attack actions replaced by moves).
Where the controller at full skill stays below the expert range, the expert level is a flagged
*stand-in* (the best policy available) and every dataset using it says so in its card.

:func:`build_pool` writes the card (:mod:`rllib_sit.data.pool_card`) with every member's measured
return mean ± std over ``eval_episodes`` (≥ 50) episodes. Command line::

    rllib-sit data pools build smac:2s3z        # or --all; --dir DIR writes the cards elsewhere
"""

from __future__ import annotations

import dataclasses
import os
import time
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple


from rllib_sit.data.composition import POOL_LEVELS, env_spec
from rllib_sit.data.pool_card import REBUILD_COMMAND, PoolMember, _import_fn, write_pool_card
from rllib_sit.data.pool_rollout import measure, run_episode  # noqa: F401  (re-exported: rllib_sit.data.pools)
from rllib_sit.envs.base import CoopEnv

# Where each family's scripted per-agent controller lives (first importable one wins).
HEURISTIC_CANDIDATES: Dict[str, List[str]] = {
    "smac": ["rllib_sit.envs.smac.policies:heuristic_action"],
    "mpe": ["rllib_sit.envs.mpe_policies:heuristic_action"],
    "mamujoco": ["rllib_sit.envs.mamujoco:heuristic_action"],
}
DEFAULT_EVAL_EPISODES = 50
MIN_EVAL_EPISODES = 50  # pool cards report mean ± std over >= 50 episodes
# Episodes per calibration probe / per final measurement, by family: MPE returns are noisy
# (std ~ 40-60 over 25 steps) but episodes are cheap, SMAC episodes are ~10x slower.
CAL_EPISODES = {"smac": 20, "mpe": 100, "mamujoco": 40}
EVAL_EPISODES = {"smac": 50, "mpe": 200, "mamujoco": 50}


def check_build_request(env_ids: Sequence[str], eval_episodes: Optional[int] = None,
                        cal_episodes: Optional[int] = None, seed: int = 0) -> None:
    """Fail before any work if a build request is invalid: every env id must have a data spec (its
    pool ranges), ``eval_episodes`` >= 50, ``cal_episodes`` >= 1, ``seed`` >= 0."""
    if not env_ids:
        raise ValueError("no environment to build a pool for; expected at least one env id (e.g. smac:2s3z)")
    if eval_episodes is not None and (isinstance(eval_episodes, bool) or int(eval_episodes) != eval_episodes
                                      or eval_episodes < MIN_EVAL_EPISODES):
        raise ValueError(f"eval_episodes (--episodes) must be an integer >= {MIN_EVAL_EPISODES} (pool cards report "
                         f"mean ± std over >= {MIN_EVAL_EPISODES} episodes), got {eval_episodes}")
    if cal_episodes is not None and (isinstance(cal_episodes, bool) or int(cal_episodes) != cal_episodes
                                     or cal_episodes < 1):
        raise ValueError(f"cal_episodes (--cal-episodes) must be an integer >= 1, got {cal_episodes}")
    if int(seed) != seed or seed < 0:
        raise ValueError(f"seed (--seed) must be a non-negative integer, got {seed}")
    for env_id in env_ids:
        env_spec(env_id)  # ValueError naming the known environments


# ------------------------------------------------------------------------------------------------
# Measuring and calibrating
# ------------------------------------------------------------------------------------------------

def _find_heuristic(family: str) -> Optional[str]:
    for path in HEURISTIC_CANDIDATES.get(family, []):
        try:
            _import_fn(path)
            return path
        except ValueError as e:
            warnings.warn(f"scripted controller {path} unavailable: {e}", RuntimeWarning, stacklevel=2)
            continue
    return None


@dataclasses.dataclass
class Candidate:
    """A way to realise a pool level: a member ``kind`` + ``params``, optionally with one numeric
    ``knob`` (a param name) calibrated by bisection in [``lo``, ``hi``]."""

    kind: str
    params: Dict[str, Any]
    how: str
    knob: Optional[str] = None
    lo: float = 0.0
    hi: float = 1.0

    def member(self, value: Optional[float] = None, how: str = "") -> PoolMember:
        params = dict(self.params)
        if self.knob is not None:
            params[self.knob] = round(float(value), 4)
        return PoolMember(self.kind, params, how or self.how)


def default_candidates(env: CoopEnv, heuristic: Optional[str]) -> Dict[str, List[Candidate]]:
    """Per level, the candidate behaviour policies tried in order (first in range wins)."""
    from rllib_sit.envs.registry import parse_env_id

    family, _ = parse_env_id(env.info.env_id)
    rnd: List[Candidate] = [Candidate("uniform", {}, "uniformly random (available) action every step")]
    if not env.info.discrete:
        rnd.append(Candidate("uniform", {"support": "corners"},
                             "uniformly random corner of the action box every step (saturated random "
                             "actions, like an untrained tanh policy), used where box-uniform actions "
                             "score above the paper's random range"))
    if family == "smac":
        rnd.append(Candidate("uniform", {"attack_drop": 0.0}, "uniformly random available action; an attack "
                             "drawn is replaced by a random move/stop with probability attack_drop (calibrated), "
                             "used where a uniform team scores above the random range", knob="attack_drop"))
    out: Dict[str, List[Candidate]] = {"random": rnd, "medium": [], "expert": []}
    if heuristic is not None:
        out["random"].append(Candidate("heuristic", {"fn": heuristic, "skill": 0.0},
                                       "scripted controller degraded toward random (skill calibrated)", knob="skill"))
        out["medium"].append(Candidate("heuristic", {"fn": heuristic, "skill": 0.5},
                                       "scripted controller; with probability 1 - skill a uniformly random action "
                                       "(skill bisected so the return lands mid-range)", knob="skill"))
        out["expert"].append(Candidate("heuristic", {"fn": heuristic, "skill": 1.0},
                                       "scripted controller at full skill (the best policy available)"))
        out["expert"].append(Candidate("heuristic", {"fn": heuristic, "skill": 1.0},
                                       "scripted controller at calibrated skill (full skill scores above the "
                                       "expert range)", knob="skill"))
    return out


def calibrate(env: CoopEnv, cand: Candidate, rng_range: Tuple[float, float], n_episodes: int, seed: int,
              iters: int = 7, log=print) -> Optional[Tuple[PoolMember, float]]:
    """Find a member of ``cand`` whose mean return (``n_episodes``, common seeds) is in ``rng_range``.

    Without a knob: measure it once. With a knob: measure both ends (the return is assumed monotone
    in the knob) and bisect toward the middle of the reachable part of the range, stopping early
    once the mean lies in the central 40% of the range. Returns ``(member, mean)`` or ``None``.
    """
    lo_r, hi_r = rng_range

    def ret(member):
        return measure(env, member.build(), n_episodes, seed)["mean"]

    if cand.knob is None:
        m = ret(cand.member())
        log(f"    {cand.kind} {cand.params}: {m:.2f}")
        return (cand.member(), m) if lo_r <= m <= hi_r else None
    a, b = cand.lo, cand.hi
    fa, fb = ret(cand.member(a)), ret(cand.member(b))
    log(f"    {cand.kind} {cand.knob}={a}: {fa:.2f}, {cand.knob}={b}: {fb:.2f}")
    reach_lo, reach_hi = max(lo_r, min(fa, fb)), min(hi_r, max(fa, fb))
    if reach_lo > reach_hi:
        return None
    target = (reach_lo + reach_hi) / 2
    band = (lo_r + 0.3 * (hi_r - lo_r), hi_r - 0.3 * (hi_r - lo_r))
    increasing = fb >= fa
    best: Optional[Tuple[float, float]] = None
    for _ in range(iters):
        x = (a + b) / 2
        m = ret(cand.member(x))
        log(f"    {cand.knob}={x:.4f}: {m:.2f} (target {target:.2f})")
        if lo_r <= m <= hi_r and (best is None or abs(m - target) < abs(best[1] - target)):
            best = (x, m)
        if band[0] <= m <= band[1]:
            break
        if (m < target) == increasing:
            a = x
        else:
            b = x
    if best is None:
        return None
    return cand.member(best[0], cand.how.replace("calibrated", f"calibrated to {best[0]:.4f}")), best[1]


def build_pool(env_id: str, eval_episodes: Optional[int] = None, seed: int = 0,
               cal_episodes: Optional[int] = None, directory: Optional[os.PathLike] = None,
               log=print, fit_datasets: bool = True, refit: bool = False) -> Dict[str, Any]:
    """Calibrate the random/medium/expert members of ``env_id`` and write its pool card.

    For each level the candidates of :func:`default_candidates` are tried in order (random: uniform
    actions, then variants, then a degraded controller; medium: the controller with a bisected
    skill; expert: the controller at full skill, else a bisected skill). Every chosen member is
    then measured on ``eval_episodes`` fresh episodes (seeds ``seed``..``seed+eval_episodes-1``;
    calibration uses seeds from 1,000,000 + ``seed``); a member whose evaluation falls outside the
    range gives way to the next candidate that calibrates and evaluates inside it (if none does, the
    first is kept with ``in_range: false``). A level that no candidate reaches is listed under
    ``missing_levels``. A level without a paper range in the data spec is built only if a dataset of
    the specs uses it: its first fixed candidate (random: uniform actions), measured, ``in_range:
    null``.

    ``fit_datasets`` (default): the members are then moved within their bands so that the datasets
    of the specs citing Tables 7–9 get the paper's average returns (:mod:`.pool_fit`); the card's
    ``dataset_fit`` holds, per dataset, the paper's average, the fitted and the freshly measured one.
    ``refit``: skip the per-level calibration and start the fit from the members of the existing card
    (in ``directory``, else the shipped one): a cheaper rebuild after a change of the fit.
    """
    from rllib_sit.envs.registry import make_env, parse_env_id

    check_build_request([env_id], eval_episodes, cal_episodes, seed)
    family, _ = parse_env_id(env_id)
    eval_episodes = int(eval_episodes or EVAL_EPISODES.get(family, DEFAULT_EVAL_EPISODES))
    cal_episodes = int(cal_episodes or CAL_EPISODES.get(family, 20))
    spec = env_spec(env_id)
    env = make_env(env_id)
    if list(env.info.agents) != list(spec.agents):
        raise ValueError(f"{env_id}: data spec lists agents {spec.agents} but the env has {env.info.agents}")
    t0 = time.time()
    cands = default_candidates(env, _find_heuristic(family))
    levels: Dict[str, List[PoolMember]] = {}
    missing: Dict[str, str] = {}
    used = spec.levels_used()
    if refit:
        from rllib_sit.data.pool_card import load_pool

        old = load_pool(env_id, directory)
        levels = {lvl: list(ms) for lvl, ms in old.levels.items()}
        missing = dict(old.card.get("missing_levels") or {})
        log(f"{env_id}: refit from {old.card_path}")
    for lvl in (() if refit else POOL_LEVELS):
        if lvl not in spec.pool_ranges:
            # The paper gives no return range (e.g. the differential game's uniform-random data):
            # a level the specs use is its first fixed candidate as defined (random: uniform), measured;
            # a level nobody uses is not built.
            fixed = [c for c in cands[lvl] if c.knob is None]
            if lvl in used and fixed:
                mem = fixed[0].member(how=fixed[0].how + " (the paper gives no return range for this level: "
                                                          "taken as defined, not calibrated)")
                mem.measured = measure(env, mem.build(), eval_episodes, seed)
                mem.measured["in_range"] = None
                levels[lvl] = [mem]
                log(f"{env_id}: {lvl:6s} {mem.kind:9s} {mem.params} -> {mem.measured['mean']:.2f} ± "
                    f"{mem.measured['std']:.2f} (no paper range)")
            else:
                missing[lvl] = ("the paper gives no return range for this level and no dataset of the specs uses it"
                                if lvl not in used else "no candidate without a calibration knob for this level")
                log(f"{env_id}: {lvl} not built: {missing[lvl]}")
            continue
        lo, hi = spec.pool_ranges[lvl]
        log(f"{env_id}: {lvl} level, range {spec.pool_ranges[lvl]}")
        chosen: Optional[PoolMember] = None
        outside: Optional[PoolMember] = None  # calibrated in range, but its evaluation is not
        for cand in cands[lvl]:
            found = calibrate(env, cand, spec.pool_ranges[lvl], cal_episodes, 1_000_000 + seed, log=log)
            if found is None:
                continue
            mem = found[0]
            mem.measured = measure(env, mem.build(), eval_episodes, seed)
            mem.measured["in_range"] = bool(lo <= mem.measured["mean"] <= hi)
            if mem.measured["in_range"]:
                chosen = mem
                break
            # the fresh evaluation seeds disagree with the calibration probe: try the next candidate
            log(f"    evaluation {mem.measured['mean']:.2f} outside [{lo}, {hi}]; trying the next candidate")
            outside = outside or mem
        if chosen is None and outside is not None:
            chosen = outside  # kept as measured (in_range false), as before
        if chosen is None:
            missing[lvl] = (f"no candidate ({', '.join(c.kind + ('/' + c.knob if c.knob else '') for c in cands[lvl])}"
                            f") reached the range {list(spec.pool_ranges[lvl])}")
            log(f"{env_id}: {lvl} MISSING: {missing[lvl]}")
            if lvl == "expert" and cands[lvl]:
                # stand-in: the best policy available, flagged, so that datasets naming this level can
                # still be generated (their cards carry a warning)
                chosen = cands[lvl][0].member(how=cands[lvl][0].how + "; STAND-IN: below the paper's expert range")
                res = measure(env, chosen.build(), eval_episodes, seed)
                res["in_range"] = bool(lo <= res["mean"] <= hi)
                if res["in_range"]:  # calibration probe was unlucky; the fresh seeds agree
                    del missing[lvl]
                    chosen.how = chosen.how.split("; STAND-IN")[0] + " (calibration probe fell just outside the " \
                        "range; the evaluation episodes are inside it)"
                else:
                    res["stand_in"] = True
                chosen.measured = res
        if chosen is not None:
            levels[lvl] = [chosen]
            res = chosen.measured
            log(f"{env_id}: {lvl:6s} {chosen.kind:9s} {chosen.params} -> {res['mean']:.2f} ± {res['std']:.2f} "
                f"in range [{lo}, {hi}]: {res['in_range']}")
    dataset_fit = None
    if fit_datasets and levels:
        dataset_fit = _fit_to_datasets(env, spec, family, levels, cal_episodes, eval_episodes, seed, log)
    card = {
        "env": env_id,
        "paper_ranges": {k: list(v) for k, v in spec.pool_ranges.items()},
        "eval_episodes": eval_episodes,
        "eval_seeds": f"{seed}..{seed + eval_episodes - 1}",
        "rebuild": REBUILD_COMMAND.format(env_id=env_id),
        "method": ("graded scripted policies (the paper snapshots online QMIX/FacMAC training, which the "
                   "CPU budget here does not allow); each member's return is measured with all agents at "
                   "that level"),
        "build_seconds": round(time.time() - t0, 1),
        "env_code": _env_code_version(family),
        "levels": {lvl: [m.describe() for m in ms] for lvl, ms in levels.items()},
        "missing_levels": missing,
    }
    if dataset_fit is not None:
        card["method"] += ("; each level's member then moved within its band so that the Table 7-9 datasets get "
                           "the paper's average returns (rllib_sit.data.pool_fit)")
        card["dataset_fit"] = dataset_fit
    write_pool_card(env_id, card, directory)
    return card


BAND_RETRIES = 3  # moves of a fitted member that measured outside its band (see _fit_to_datasets)


def _fit_to_datasets(env: CoopEnv, spec, family: str, levels: Dict[str, List[PoolMember]], cal_episodes: int,
                     eval_episodes: int, seed: int, log) -> Optional[Dict[str, Any]]:
    """Replace ``levels``' members by the dataset-fitted ones (measured on the evaluation seeds) and
    return the card's ``dataset_fit`` (None when the specs cite no Table 7-9 dataset for this env)."""
    from rllib_sit.data import pool_fit

    if not pool_fit.fit_targets(spec):
        return None
    fit_eps = pool_fit.FIT_EPISODES.get(family, 40)
    heuristic = _find_heuristic(family)
    res = pool_fit.fit_pool(env, spec, family, heuristic, {l: ms[0] for l, ms in levels.items()},
                            cal_episodes, fit_eps, seed, log=log)
    for lvl in res["grades"]:
        mem = res["members"][lvl]
        lo, hi = spec.pool_ranges[lvl]
        mem.measured = measure(env, mem.build(), eval_episodes, seed)
        mem.measured["in_range"] = bool(lo <= mem.measured["mean"] <= hi)
        # The fit's intervals come from short calibration probes: a grade at an interval's end can
        # measure just outside the band on the evaluation seeds. Move it halfway to the interval's
        # centre until it measures inside (at most BAND_RETRIES times); the datasets are measured after.
        g_lo, g_hi = res["intervals"][lvl]
        for _ in range(BAND_RETRIES):
            if mem.measured["in_range"]:
                break
            g = res["grades"][lvl]
            res["grades"][lvl] = g + 0.5 * (0.5 * (g_lo + g_hi) - g)
            log(f"{spec.env_id}: {lvl} member measured {mem.measured['mean']:.2f}, outside [{lo}, {hi}]: grade "
                f"{g:.4f} -> {res['grades'][lvl]:.4f}")
            mem = pool_fit.ladder_member(family, env.info.discrete, heuristic, res["grades"][lvl])
            mem.measured = measure(env, mem.build(), eval_episodes, seed)
            mem.measured["in_range"] = bool(lo <= mem.measured["mean"] <= hi)
        levels[lvl] = [mem]
        log(f"{spec.env_id}: {lvl:6s} fitted {mem.kind} {mem.params} -> {mem.measured['mean']:.2f} ± "
            f"{mem.measured['std']:.2f} in range [{lo}, {hi}]: {mem.measured['in_range']}")
    out = pool_fit.measure_datasets(env, spec, family, {l: ms[0] for l, ms in levels.items()}, res["fit"],
                                    4 * eval_episodes, seed)
    for q, row in out.items():
        log(f"{spec.env_id}: {q:8s} paper {row['paper_average_return']:8.2f}  fitted "
            f"{row.get('fitted_average_return', float('nan')):8.2f}  fresh {row['measured_average_return']:8.2f}"
            f"  within ±{row['tolerance']}: {row['within']}")
    return {"grades": {k: round(v, 4) for k, v in res["grades"].items()},
            "grade_intervals": {k: [round(v[0], 4), round(v[1], 4)] for k, v in res["intervals"].items()},
            "datasets": out}


def _env_code_version(family: str) -> str:
    """Last git commit touching the env family's code (+ "dirty" if it has local edits): a pool's
    measured returns hold for that simulator version only. "unknown" outside a git checkout (an
    installed package)."""
    import subprocess

    package = Path(__file__).resolve().parents[1]  # rllib_sit/
    paths = [p for p in (f"envs/{family}", f"envs/{family}.py", f"envs/{family}_policies.py") if (package / p).exists()]
    try:
        log = subprocess.run(["git", "log", "-1", "--format=%h", "--", *paths], cwd=package, capture_output=True,
                             text=True, timeout=10)
        if log.returncode != 0:  # not a git checkout
            return "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--", *paths], cwd=package, capture_output=True,
                               text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (log.stdout.strip() or "uncommitted") + ("+dirty" if dirty else "")
