"""What a benchmark writes and reads back: one CSV row per finished cell-seed, its curve, SIT's details.

Files in the output folder (each rewritten atomically: a temporary file, then ``os.replace``)::

    results.csv          one row per finished (algorithm, map, quality, seed): RESULT_FIELDS
    curves.csv           every evaluation of those trials: CURVE_FIELDS (Figures 9-14)
    sit_rewards.csv      SIT (and its variants): mean decomposed reward r̂ per agent: REWARD_FIELDS
                         (Figures 3a/d, 15-20), from results["algorithm"]["r_hat_mean_per_agent"]
    dper_priorities.csv  SIT: histogram of the rescaled DPER priorities of each agent: DPER_FIELDS
                         (Figure 3b/c/e/f), from the final checkpoint (see :func:`dper_histograms`)

Every evaluation has a greedy and a sampled pass on the same env seeds
(:mod:`rllib_sit.algorithms.common.evaluation`): ``final_return``/``win_rate``/``return_mean``...
are the greedy pass's, the ``*_sampled`` fields the sampled pass's. A CSV written before the
``*_sampled`` fields existed reads them as None (empty cells once rewritten).

A trial's numbers come from its results (Tune's ``result.json`` lines or the live results of the
driver callback) through :func:`cell_row`; the same function rebuilds rows of finished trials
whose row is missing (an interrupted driver) from the Tune folder.
"""

from __future__ import annotations

import csv
import glob
import json
import os
import pickle
import re
import time
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from rllib_sit.algorithms.common.evaluation import EVALUATION_EXPLORE, pass_key
from rllib_sit.experiments.callbacks import BENCHMARK_RESULTS, EVALUATED, POLICY_UPDATES

RESULTS_CSV, CURVES_CSV, REWARDS_CSV, DPER_CSV = ("results.csv", "curves.csv", "sit_rewards.csv",
                                                  "dper_priorities.csv")
KEY_FIELDS = ["algorithm", "map", "quality", "seed"]
RESULT_FIELDS = KEY_FIELDS + [
    "final_return", "final_return_std", "best_return", "best_policy_updates", "win_rate", "best_win_rate",
    "behaviour_return", "behaviour_return_std", "iterations", "policy_updates", "evaluations", "wall_time_s",
    "train_time_s", "checkpoint", "dataset", "algorithm_name", "settings_hash", "settings", "trial", "finished_at",
    # The same evaluations' sampled pass (actions drawn from the policy); the fields above are the greedy pass.
    "final_return_sampled", "final_return_std_sampled", "best_return_sampled", "win_rate_sampled"]
CURVE_FIELDS = KEY_FIELDS + ["iteration", "policy_updates", "time_s", "return_mean", "return_std", "win_rate",
                             "return_mean_sampled", "return_std_sampled", "win_rate_sampled"]
REWARD_FIELDS = KEY_FIELDS + ["agent", "agent_type", "r_hat_mean", "behaviour_level"]
DPER_FIELDS = KEY_FIELDS + ["agent", "agent_type", "bin_low", "bin_high", "count", "type_ess"]
DPER_BINS = 40
_FLOATS = {"final_return", "final_return_std", "best_return", "win_rate", "best_win_rate", "behaviour_return",
           "behaviour_return_std", "wall_time_s", "train_time_s", "time_s", "return_mean", "return_std",
           "r_hat_mean", "bin_low", "bin_high", "type_ess", "final_return_sampled", "final_return_std_sampled",
           "best_return_sampled", "win_rate_sampled", "return_mean_sampled", "return_std_sampled"}
_INTS = {"seed", "best_policy_updates", "iterations", "policy_updates", "evaluations", "iteration", "count"}


# ------------------------------------------------------------------------------------------------
# CSV files
# ------------------------------------------------------------------------------------------------

def _parse(field: str, value: str) -> Any:
    if value is None or value == "":
        return None
    if field in _INTS:
        return int(float(value))
    if field in _FLOATS:
        return float(value)
    return value


def read_csv(path: str, fields: Sequence[str] = ()) -> List[Dict[str, Any]]:
    """Rows of a benchmark CSV with numbers parsed (empty cells -> None); [] if absent. ``fields``
    missing from the file (a CSV written before they existed) read as None."""
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        return [dict({k: None for k in fields}, **{k: _parse(k, v) for k, v in row.items()})
                for row in csv.DictReader(f)]


def write_csv(path: str, fields: Sequence[str], rows: Iterable[Dict[str, Any]]) -> None:
    """Write ``rows`` atomically (temporary file + ``os.replace``): never a half-written CSV."""
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(fields), extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in fields})
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def row_key(row: Dict[str, Any]) -> Tuple[str, str, str, int]:
    return (row["algorithm"], row["map"], row["quality"], int(row["seed"]))


class ResultStore:
    """The CSVs of one output folder; rows of a cell replace earlier rows of the same cell."""

    FILES = {RESULTS_CSV: RESULT_FIELDS, CURVES_CSV: CURVE_FIELDS, REWARDS_CSV: REWARD_FIELDS, DPER_CSV: DPER_FIELDS}

    def __init__(self, folder: str):
        self.folder = folder
        os.makedirs(folder, exist_ok=True)

    def path(self, name: str) -> str:
        return os.path.join(self.folder, name)

    def read(self, name: str) -> List[Dict[str, Any]]:
        return read_csv(self.path(name), self.FILES.get(name, ()))

    def results(self) -> Dict[Tuple[str, str, str, int], Dict[str, Any]]:
        return {row_key(r): r for r in self.read(RESULTS_CSV)}

    def add_cell(self, row: Dict[str, Any], curve: Sequence[Dict[str, Any]] = (),
                 rewards: Sequence[Dict[str, Any]] = (), dper: Sequence[Dict[str, Any]] = ()) -> None:
        """Store one finished cell: its detail files first, its results row last (the row is what
        marks the cell finished, so an interruption in between only redoes the details)."""
        key = row_key(row)
        for name, new in ((CURVES_CSV, curve), (REWARDS_CSV, rewards), (DPER_CSV, dper)):
            old = [r for r in self.read(name) if row_key(r) != key]
            if new or len(old) != len(self.read(name)):
                write_csv(self.path(name), self.FILES[name], old + list(new))
        rows = [r for r in self.read(RESULTS_CSV) if row_key(r) != key] + [row]
        write_csv(self.path(RESULTS_CSV), RESULT_FIELDS, rows)


# ------------------------------------------------------------------------------------------------
# One finished trial -> rows
# ------------------------------------------------------------------------------------------------

# What the benchmark keeps of result["evaluation"]["env_runners"]: the headline keys and both passes.
EVALUATION_KEYS = ("episode_return_mean", "episode_return_std", "win_rate", EVALUATION_EXPLORE) + tuple(
    pass_key(k, x) for x in (False, True) for k in ("episode_return_mean", "episode_return_std", "win_rate"))


def _pass_value(ev: Dict[str, Any], key: str, explore: bool) -> Optional[float]:
    """``key``'s value of the greedy (sampled) evaluation pass: ``<key>_greedy`` (``_sampled``); a
    result without them (written before both passes existed) had only the greedy headline keys."""
    value = ev.get(pass_key(key, explore))
    if value is None and not explore and not ev.get(EVALUATION_EXPLORE):
        value = ev.get(key)
    return None if value is None else float(value)


def evaluations(results: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """The evaluated results of a trial as curve points (policy updates; return mean/std and win
    rate of the greedy pass, and ``*_sampled`` of the sampled pass)."""
    out = []
    for r in results:
        bench = r.get(BENCHMARK_RESULTS) or {}
        ev = ((r.get("evaluation") or {}).get("env_runners") or {})
        greedy = _pass_value(ev, "episode_return_mean", False)
        if not bench.get(EVALUATED) or greedy is None:
            continue
        out.append({"iteration": int(r.get("training_iteration", 0)), "policy_updates": int(bench[POLICY_UPDATES]),
                    "time_s": float(r.get("time_total_s", 0.0)), "return_mean": greedy,
                    "return_std": _pass_value(ev, "episode_return_std", False) or 0.0,
                    "win_rate": _pass_value(ev, "win_rate", False),
                    "return_mean_sampled": _pass_value(ev, "episode_return_mean", True),
                    "return_std_sampled": _pass_value(ev, "episode_return_std", True),
                    "win_rate_sampled": _pass_value(ev, "win_rate", True)})
    return out


def cell_row(key: Tuple[str, str, str, int], results: Sequence[Dict[str, Any]], *, algorithm_name: str,
             dataset: str, behaviour: Tuple[Optional[float], Optional[float]], checkpoint: Optional[str],
             trial: Optional[str], settings: Dict[str, Any], settings_hash: str,
             wall_time_s: Optional[float]) -> Tuple[Dict[str, Any], List[Dict[str, Any]]]:
    """(results row, curve rows) of a finished trial."""
    algo, map_id, quality, seed = key
    base = dict(zip(KEY_FIELDS, key))
    points = evaluations(results)
    curve = [dict(base, **p) for p in points]
    last = results[-1] if results else {}
    final = points[-1] if points else {}
    best = max(points, key=lambda p: p["return_mean"]) if points else {}
    row = dict(base, final_return=final.get("return_mean"), final_return_std=final.get("return_std"),
               best_return=best.get("return_mean"), best_policy_updates=best.get("policy_updates"),
               win_rate=final.get("win_rate"), best_win_rate=best.get("win_rate"),
               behaviour_return=behaviour[0], behaviour_return_std=behaviour[1],
               iterations=last.get("training_iteration"),
               policy_updates=(last.get(BENCHMARK_RESULTS) or {}).get(POLICY_UPDATES), evaluations=len(points),
               wall_time_s=None if wall_time_s is None else round(float(wall_time_s), 1),
               train_time_s=None if last.get("time_total_s") is None else round(float(last["time_total_s"]), 1),
               checkpoint=checkpoint, dataset=dataset, algorithm_name=algorithm_name, settings_hash=settings_hash,
               settings=json.dumps(settings, sort_keys=True, default=str), trial=trial,
               finished_at=time.strftime("%Y-%m-%dT%H:%M:%S"),
               final_return_sampled=final.get("return_mean_sampled"),
               final_return_std_sampled=final.get("return_std_sampled"),
               best_return_sampled=max((p["return_mean_sampled"] for p in points
                                        if p.get("return_mean_sampled") is not None), default=None),
               win_rate_sampled=final.get("win_rate_sampled"))
    return row, curve


def behaviour_stats(dataset: str) -> Tuple[Optional[float], Optional[float]]:
    """The dataset card's return mean and std (the Behaviour column)."""
    from rllib_sit.data.card import read_card
    from rllib_sit.data.episode_store import has_scheme

    card = {} if has_scheme(dataset) else read_card(dataset)
    return card.get("return_mean"), card.get("return_std")


def agent_levels(dataset: str) -> Dict[str, Dict[str, float]]:
    """``{agent: {level letter: % of episodes}}`` from the card's composition ({} if it has none)."""
    from rllib_sit.data.card import read_card
    from rllib_sit.data.composition import parse_composition
    from rllib_sit.data.episode_store import has_scheme

    card = {} if has_scheme(dataset) else read_card(dataset)
    if not card.get("composition"):
        return {}
    try:
        comp = parse_composition(card["composition"])
    except ValueError:
        return {}
    out: Dict[str, Dict[str, float]] = {}
    for c in comp.components:
        for agent, level in c.levels:
            out.setdefault(agent, {}).setdefault(level, 0.0)
            out[agent][level] += c.percent
    return out


def format_levels(levels: Dict[str, float]) -> str:
    """``{"e": 50, "m": 50}`` -> ``"e 50% + m 50%"``; a single level -> its letter."""
    if not levels:
        return ""
    if len(levels) == 1:
        return next(iter(levels))
    order = {"r": 0, "m": 1, "e": 2}
    return " + ".join(f"{lv} {pct:g}%" for lv, pct in sorted(levels.items(), key=lambda kv: order.get(kv[0], 9)))


def reward_rows(key, last_result: Dict[str, Any], dataset: str) -> List[Dict[str, Any]]:
    """SIT's mean r̂ per agent (results["algorithm"]["r_hat_mean_per_agent"]) with type and level."""
    from rllib_sit.data.episode_store import dataset_env_info

    r_hat = ((last_result or {}).get("algorithm") or {}).get("r_hat_mean_per_agent") or {}
    if not r_hat:
        return []
    info = dataset_env_info(dataset)
    types = dict(zip(info.agents, info.agent_types))
    levels = agent_levels(dataset)
    base = dict(zip(KEY_FIELDS, key))
    return [dict(base, agent=a, agent_type=types.get(a, ""), r_hat_mean=float(r_hat[a]),
                 behaviour_level=format_levels(levels.get(a, {}))) for a in info.agents if a in r_hat]


def latest_checkpoint(trial_dir: str) -> Optional[str]:
    found = sorted(glob.glob(os.path.join(trial_dir, "checkpoint_*")))
    return found[-1] if found else None


def dper_state(checkpoint: str) -> Optional[Dict[str, Any]]:
    """SIT's sampler state in a checkpoint: ``algorithm_state.pkl`` -> ``["offline_marl"]["extra"]["dper"]``
    (``leaves``: Eq. 7 probabilities per type in leaf order k·n_m + slot; ``step_values``:
    Stage II's ``reward_hat``/``uncertainty`` [K, T, N]); None for other algorithms."""
    path = os.path.join(checkpoint, "algorithm_state.pkl")
    if not os.path.exists(path):
        return None
    with open(path, "rb") as f:
        state = pickle.load(f)
    return ((state.get("offline_marl") or {}).get("extra") or {}).get("dper")


def dper_priorities(checkpoint: str, dataset: str, gamma: float = 0.99,
                    priority_range: Sequence[float] = (0.0, 20.0), column_cache_dir: Optional[str] = None,
                    scale: str = "minmax", return_range: Optional[Sequence[float]] = None):
    """Scaled DPER priorities of every individual trajectory, per agent, from a SIT checkpoint.

    The checkpoint holds Stage II's r̂ ``[K, T, N]`` and the Eq. 7 probabilities, not p̂ itself;
    p̂ = mean over the real steps of the Monte Carlo return of r̂ (Eq. 6) is recomputed with SIT's
    own functions and the dataset's ``filled`` mask (the algorithm's episode order:
    :class:`EpisodeStore`), then mapped per agent type onto ``priority_range`` by the run's
    ``scale`` (and ``return_range``) as ``dper_distribution`` does. Returns ``({agent: priorities [K]}, {agent: type},
    {type: ESS of the checkpoint's probabilities})`` or None when the checkpoint has no DPER.
    """
    from rllib_sit.algorithms.sit import sit_learner as K
    from rllib_sit.data import schema as S
    from rllib_sit.data.episode_store import EpisodeStore
    from rllib_sit.replay.samplers import effective_sample_size

    state = dper_state(checkpoint)
    if not state or K.REWARD_HAT not in (state.get("step_values") or {}):
        return None
    r_hat = np.asarray(state["step_values"][K.REWARD_HAT], np.float64)
    store = EpisodeStore.open(dataset, validate="none", cache_root=column_cache_dir)
    filled = np.asarray(store[S.FILLED][:, : r_hat.shape[1]], np.float64)
    if filled.shape[0] != r_hat.shape[0]:
        raise ValueError(f"{checkpoint}: DPER r̂ has {r_hat.shape[0]} episodes but {dataset} has {filled.shape[0]}")
    p_hat = K.episode_priorities(K.monte_carlo_returns(r_hat, filled, gamma), filled)  # [K, N]
    info = store.info
    out, types, ess = {}, {}, {}
    for t in dict.fromkeys(info.agent_types):
        cols = [i for i, x in enumerate(info.agent_types) if x == t]
        scaled = K.scale_priorities(p_hat[:, cols], scale, priority_range, return_range)
        for j, i in enumerate(cols):
            out[info.agents[i]] = scaled[:, j]
            types[info.agents[i]] = t
        probs = (state.get("leaves") or {}).get(t)
        if probs is not None:
            ess[t] = float(effective_sample_size(np.asarray(probs, np.float64)))
    return out, types, ess


def dper_histograms(key, checkpoint: Optional[str], dataset: str, config: Dict[str, Any],
                    bins: int = DPER_BINS) -> List[Dict[str, Any]]:
    """Histogram rows (DPER_FIELDS) of :func:`dper_priorities` over ``priority_range`` in ``bins`` bins."""
    if not checkpoint:
        return []
    from rllib_sit.data.composition import load_specs

    pr = tuple(config.get("priority_range") or (0.0, 20.0))
    scale = config.get("priority_scale") or "minmax"
    rr = config.get("priority_return_range")
    if scale == "return_range" and rr is None:
        spec = load_specs().get(config.get("env"))
        rr = spec.return_range() if spec is not None else None
    got = dper_priorities(checkpoint, dataset, float(config.get("gamma", 0.99)), pr, config.get("column_cache_dir"),
                          scale, rr)
    if got is None:
        return []
    pri, types, ess = got
    # "return_range" does not fill priority_range (on SMAC it is the identity): bin the values' own span.
    lo, hi = pr
    if scale != "minmax":
        allv = np.concatenate([np.asarray(v, np.float64) for v in pri.values()])
        lo, hi = float(allv.min()), float(max(allv.max(), allv.min() + 1e-6))
    edges = np.linspace(lo, hi, bins + 1)
    base = dict(zip(KEY_FIELDS, key))
    rows = []
    for agent, values in pri.items():
        counts, _ = np.histogram(values, edges)
        rows += [dict(base, agent=agent, agent_type=types[agent], bin_low=float(lo), bin_high=float(hi),
                      count=int(c), type_ess=ess.get(types[agent])) for lo, hi, c in zip(edges[:-1], edges[1:], counts)]
    return rows


def read_trial(trial_dir: str) -> Tuple[Dict[str, Any], List[Dict[str, Any]]]:
    """(params.json, result.json lines) of a Tune trial folder ({} / [] when absent or unreadable)."""
    params, results = {}, []
    try:
        with open(os.path.join(trial_dir, "params.json")) as f:
            params = json.load(f)
    except (OSError, json.JSONDecodeError):
        pass
    try:
        with open(os.path.join(trial_dir, "result.json")) as f:
            for line in f:
                line = line.strip()
                if line:
                    try:
                        results.append(json.loads(line))
                    except json.JSONDecodeError:  # a line cut by a crash: the results before it stand
                        break
    except OSError:
        pass
    return params, results


def trial_finished(results: Sequence[Dict[str, Any]]) -> bool:
    return bool(results) and (results[-1].get("phases") or {}).get("current") == "done"


# ------------------------------------------------------------------------------------------------
# What a trial's logs say: learner and replay diagnostics per iteration
# ------------------------------------------------------------------------------------------------
# Learner metrics that are settings or bookkeeping, not diagnostics.
_NOT_DIAGNOSTIC = ("learning_rate", "throughput", "num_", "weights_seq_no", "module_train_batch_size",
                   "gradients_", "diff_num_grad_updates")
# What each "what the logs say" column shows (benchmarks/table1.py's Markdown, the diagnostics figure):
# (column, metric names, every). The first of the names a trial logged, or all of them where ``every``.
DIAGNOSTIC_COLUMNS = [("loss", ("critic_loss", "td_loss", "q_loss", "bc_loss"), False),
                      ("Q scale", ("q_tot_mean", "q_taken_mean"), False),
                      ("policy entropy", ("policy_entropy",), False),
                      ("weight ESS", ("critic_weight_ess", "dper_ess"), False),
                      ("data fit", ("greedy_accuracy", "behaviour_accuracy", "logp_mean"), False),
                      ("other", ("cql_penalty", "filter_kept", "dper_u_hat_clamped_fraction"), True)]


_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def _cell_key(cell: Dict[str, Any]) -> str:
    """A cell's label, algorithm and config as one string, without the memory addresses of object
    reprs: Tune writes a function in the config (RLlib's default ``policy_mapping_fn``) as
    ``<function ... at 0x7f..>``, whose address differs in every process, so a resumed run's trial
    would otherwise never match the one it continues."""
    return _ADDRESS.sub("", json.dumps({k: cell.get(k) for k in ("label", "algorithm", "config")},
                                       sort_keys=True, default=str))


def cell_results(trial_dir: str) -> List[Dict[str, Any]]:
    """Every result of the cell ``trial_dir`` ran, stitched over the trials of interrupted runs that
    continued one another (the siblings in its experiment folder with the same cell config; a later
    trial's result of an iteration replaces an earlier one's), in iteration order."""
    from rllib_sit.experiments.trainable import CELL

    params, _ = read_trial(trial_dir)
    cell = params.get(CELL) if isinstance(params, dict) else None
    key = _cell_key(cell) if isinstance(cell, dict) else None
    exp = os.path.dirname(os.path.abspath(trial_dir))
    runs = []
    for name in sorted(os.listdir(exp)):
        sibling = os.path.join(exp, name)
        p, results = read_trial(sibling)
        same = sibling == os.path.abspath(trial_dir) or (
            key is not None and isinstance(p.get(CELL), dict) and _cell_key(p[CELL]) == key)
        if same and results:
            runs.append((results[0].get("timestamp", 0), results))
    history: Dict[int, Dict[str, Any]] = {}
    for _, results in sorted(runs, key=lambda r: r[0]):
        for r in results:
            history[int(r.get("training_iteration", 0))] = r
    return [history[i] for i in sorted(history)]


def iteration_diagnostics(result: Dict[str, Any]) -> Dict[Tuple[str, str], float]:
    """``{(module, metric): value}`` of one result: every numeric learner metric of every module
    (losses, Q means, ``policy_entropy``, weight ESS, ...; not learning rates, gradient norms or
    counters) and SIT's replay diagnostics per agent type (``dper_ess``, ``dper_prob_max``,
    ``dper_u_hat_clamped_fraction``)."""
    out: Dict[Tuple[str, str], float] = {}
    for module, metrics in (result.get("learners") or {}).items():
        if module == "__all_modules__" or not isinstance(metrics, dict):
            continue
        for k, v in metrics.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool) and not any(x in k for x in _NOT_DIAGNOSTIC):
                out[(module, k)] = float(v)
    for module, stats in ((result.get("algorithm") or {}).get("dper") or {}).items():
        for k in ("ess", "prob_max", "u_hat_clamped_fraction"):
            if isinstance(stats, dict) and isinstance(stats.get(k), (int, float)):
                out[(module, f"dper_{k}")] = float(stats[k])
    return out


def diagnostic_rows(key: Tuple[str, str, str, int], results: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """One row per (module, metric) a trial logged: its first and final value (the iterations that
    logged it, e.g. SIT's agents from Stage III on) — how far the critic's loss, the Q scale or the
    policy's entropy moved over training."""
    first: Dict[Tuple[str, str], Tuple[int, float]] = {}
    final: Dict[Tuple[str, str], Tuple[int, float]] = {}
    for r in results:
        it = int(r.get("training_iteration", 0))
        for mk, v in iteration_diagnostics(r).items():
            if np.isfinite(v):
                first.setdefault(mk, (it, v))
                final[mk] = (it, v)
    return [dict(zip(KEY_FIELDS, key), module=m, metric=k, first=first[(m, k)][1], final=final[(m, k)][1],
                 first_iteration=first[(m, k)][0], final_iteration=final[(m, k)][0]) for m, k in sorted(final)]


def diagnostic_series(results: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """The one-metric columns of :data:`DIAGNOSTIC_COLUMNS` over training: one row per column and
    iteration that logged its metric (the first of the column's names this trial logged anywhere),
    ``{column, metric, policy_updates, value}`` with the value's mean over the modules that logged it.
    Iterations without a policy-update count (results written before the benchmark callback) are left out."""
    its = [(r, iteration_diagnostics(r)) for r in results]
    logged = {k for _, d in its for (_, k), v in d.items() if np.isfinite(v)}
    rows = []
    for column, names, every in DIAGNOSTIC_COLUMNS:
        metric = next((n for n in names if n in logged), None)
        if every or metric is None:
            continue
        for r, d in its:
            x = (r.get(BENCHMARK_RESULTS) or {}).get(POLICY_UPDATES)
            vals = [v for (_, k), v in d.items() if k == metric and np.isfinite(v)]
            if x is not None and vals:
                rows.append({"column": column, "metric": metric, "policy_updates": int(x),
                             "value": float(np.mean(vals))})
    return rows


def trial_diagnostic_series(rows: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """:func:`diagnostic_series` of every results row whose Tune trial folder is still there (resumed
    runs stitched), each row tagged with the cell's ``algorithm``, ``map``, ``quality`` and ``seed``."""
    out = []
    for r in rows:
        trial = r.get("trial")
        if trial and os.path.isdir(str(trial)):
            tag = {k: r[k] for k in KEY_FIELDS}
            tag["seed"] = int(tag["seed"])
            out += [dict(d, **tag) for d in diagnostic_series(cell_results(str(trial)))]
    return out

