"""Score every kept checkpoint of a benchmark folder: ``<DIR>/ope.csv`` (``rllib-sit ope --results DIR``).

A benchmark run with ``--keep-checkpoints`` keeps a Tune checkpoint after every iteration in
``<DIR>/tune/<experiment>/<trial>/checkpoint_00000K``; ``results.csv`` names each cell's trial folder
and dataset, ``curves.csv`` holds the simulator return (greedy and sampled passes) at every
evaluated iteration, and the trial's ``result.json`` the learners' losses of every iteration.

For each cell, each checkpoint whose training iteration was evaluated (all checkpoints with
``all_checkpoints``) gets one ``ope.csv`` row (:data:`OPE_FIELDS`): cell key, iteration, checkpoint,
FQE estimate and interval, PDWIS where the dataset has behaviour probabilities, the simulator
returns of that evaluation and the training loss. The file is rewritten atomically after every
row, and rows already there (same cell, checkpoint, ``explore`` and FQE settings) are skipped, so
an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from rllib_sit.experiments import results as R
from rllib_sit.ope.fitted_q import FQEConfig

OPE_CSV = "ope.csv"
OPE_FIELDS = R.KEY_FIELDS + [
    "algorithm_name", "iteration", "policy_updates", "checkpoint", "explore", "fqe_estimate", "fqe_ci_low",
    "fqe_ci_high", "fqe_ci_method", "td_loss_last", "bellman_residual_rms", "q_data_mean", "clipped_fraction",
    "wis_estimate", "wis_ci_low", "wis_ci_high", "wis_ess", "return_greedy", "return_sampled", "training_loss", "fit_seconds",
    "dataset", "fqe_settings_hash", "scored_at"]
_FLOAT_FIELDS = {"fqe_estimate", "fqe_ci_low", "fqe_ci_high", "td_loss_last", "bellman_residual_rms", "q_data_mean",
                 "clipped_fraction", "wis_estimate", "wis_ci_low", "wis_ci_high", "wis_ess", "return_greedy",
                 "return_sampled", "training_loss", "fit_seconds"}
_INT_FIELDS = {"seed", "iteration", "policy_updates"}


def read_ope_csv(path: str) -> List[Dict[str, Any]]:
    """Rows of an ``ope.csv`` with numbers parsed ([] when absent)."""
    import csv

    if not os.path.exists(path):
        return []
    out = []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            r: Dict[str, Any] = {}
            for k, v in row.items():
                if v is None or v == "":
                    r[k] = None
                elif k in _INT_FIELDS:
                    r[k] = int(float(v))
                elif k in _FLOAT_FIELDS:
                    r[k] = float(v)
                else:
                    r[k] = v
            out.append(r)
    return out


def settings_hash(config: FQEConfig) -> str:
    """Short hash of the FQE settings a row was fitted with (rows of other settings are not skipped)."""
    from dataclasses import asdict

    d = {k: v for k, v in asdict(config).items() if k not in ("num_threads", "max_table_bytes", "log_every")}
    # settings added after rows were scored: at their defaults they are what those rows ran with
    for name, default in (("value_bounds", "data"), ("conservative_weight", 0.0)):
        if name in d and d[name] == default:
            del d[name]
    return hashlib.sha1(json.dumps(d, sort_keys=True).encode()).hexdigest()[:10]


def training_loss(result: Dict[str, Any]) -> Optional[float]:
    """The learners' loss of one iteration's result: the sum over agent modules (not ``__...__``
    modules) of ``total_loss``, or of every ``*_loss`` metric when there is no total. None if none."""
    learners = result.get("learners") or {}
    total, found = 0.0, False
    for module, metrics in learners.items():
        if str(module).startswith("__") or not isinstance(metrics, dict):
            continue
        keys = ["total_loss"] if "total_loss" in metrics else [k for k in metrics if str(k).endswith("_loss")]
        for k in keys:
            v = metrics.get(k)
            if isinstance(v, (int, float)) and np.isfinite(v):
                total, found = total + float(v), True
    return total if found else None


def check_results_dir(folder: str) -> str:
    """The results folder, or a clear error naming what is missing."""
    folder = os.path.abspath(os.path.expanduser(folder))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"--results: {folder}: no such folder; expected the --out folder of "
                                f"'rllib-sit benchmark --keep-checkpoints'")
    for name in (R.RESULTS_CSV, R.CURVES_CSV):
        if not os.path.isfile(os.path.join(folder, name)):
            raise FileNotFoundError(f"--results: {os.path.join(folder, name)}: missing; expected a benchmark "
                                    f"output folder (results.csv, curves.csv, tune/)")
    return folder


def _trial_dir(folder: str, row: Dict[str, Any]) -> Optional[str]:
    """The cell's Tune trial folder: results.csv's ``trial``, or the folder of that name under
    ``<DIR>/tune/*/`` (a results folder that was moved)."""
    trial = row.get("trial")
    if trial and os.path.isdir(trial):
        return trial
    if trial:
        found = glob.glob(os.path.join(folder, R_TUNE, "*", os.path.basename(str(trial).rstrip("/"))))
        if found:
            return found[0]
    return None


R_TUNE = "tune"


def _checkpoint_index(path: str) -> int:
    try:
        return int(os.path.basename(path).split("_")[-1])
    except ValueError:
        return -1


def list_candidates(folder: str, all_checkpoints: bool = False) -> Tuple[List[Dict[str, Any]], List[str]]:
    """Every (cell, checkpoint) to score as a partial ope.csv row, and warnings (cells without kept
    checkpoints, checkpoints whose iteration has no evaluation)."""
    from rllib_sit.ope.policy import checkpoint_iteration

    results = R.read_csv(os.path.join(folder, R.RESULTS_CSV), R.RESULT_FIELDS)
    curves = R.read_csv(os.path.join(folder, R.CURVES_CSV), R.CURVE_FIELDS)
    points = {(R.row_key(c), int(c["iteration"])): c for c in curves if c.get("iteration") is not None}
    out, warnings = [], []
    for row in results:
        key = R.row_key(row)
        trial = _trial_dir(folder, row)
        if trial is None:
            warnings.append(f"{key}: trial folder {row.get('trial')!r} not found; skipped")
            continue
        ckpts = sorted(glob.glob(os.path.join(trial, "checkpoint_*")), key=_checkpoint_index)
        if len(ckpts) <= 1:
            warnings.append(f"{key}: {len(ckpts)} checkpoint(s) kept in {trial} (run the benchmark with "
                            f"--keep-checkpoints to score every evaluation point)")
        _, lines = R.read_trial(trial)
        by_iter = {int(r.get("training_iteration", -1)): r for r in lines}
        for c in ckpts:
            it = checkpoint_iteration(c)
            if it is None:
                it = _checkpoint_index(c) + 1
            point = points.get((key, it))
            if point is None and not all_checkpoints:
                continue
            res = by_iter.get(it) or {}
            out.append(dict(zip(R.KEY_FIELDS, key), algorithm_name=row.get("algorithm_name"), iteration=it,
                            policy_updates=None if point is None else point.get("policy_updates"),
                            checkpoint=c, dataset=row.get("dataset"),
                            return_greedy=None if point is None else point.get("return_mean"),
                            return_sampled=None if point is None else point.get("return_mean_sampled"),
                            training_loss=training_loss(res)))
    return out, warnings


def _row_id(r: Dict[str, Any]) -> Tuple:
    return (r["algorithm"], r["map"], r["quality"], int(r["seed"]), os.path.basename(str(r["checkpoint"])),
            str(r["explore"]).lower() in ("true", "1"), r.get("fqe_settings_hash"))


def score_results(folder: str, *, explore: bool = False, config: Optional[FQEConfig] = None,
                  all_checkpoints: bool = False, limit: Optional[int] = None, wis: bool = True,
                  seeds: Optional[Sequence[int]] = None, qualities: Optional[Sequence[str]] = None,
                  log: Callable[[str], None] = print) -> str:
    """Score the checkpoints of the benchmark folder ``folder`` into ``<folder>/ope.csv``; returns its path.
    ``seeds`` / ``qualities``: only the cells of these training seeds / dataset qualities."""
    from rllib_sit.ope.api import evaluate

    folder = check_results_dir(folder)
    config = (config or FQEConfig()).validate()
    h = settings_hash(config)
    path = os.path.join(folder, OPE_CSV)
    rows = read_ope_csv(path)
    done = {_row_id(r) for r in rows}
    cands, warnings = list_candidates(folder, all_checkpoints)
    if seeds is not None:
        cands = [c for c in cands if int(c["seed"]) in {int(x) for x in seeds}]
    if qualities is not None:
        cands = [c for c in cands if str(c["quality"]) in {str(q) for q in qualities}]
    for w in warnings:
        log(f"warning: {w}")
    todo = [c for c in cands if _row_id(dict(c, explore=explore, fqe_settings_hash=h)) not in done]
    already = len(cands) - len(todo)
    todo.sort(key=lambda c: (str(c["dataset"]), c["algorithm"], c["seed"], c["iteration"]))
    if limit is not None:
        todo = todo[: int(limit)]
    log(f"{len(cands)} checkpoint(s) in {folder}; {already} already scored, {len(todo)} to score "
        f"({'sampled' if explore else 'greedy'} policy, FQE settings {h})")
    data_cache: Dict[str, Any] = {}
    t0 = time.time()
    for n, c in enumerate(todo, 1):
        ds = str(c["dataset"])
        if ds not in data_cache:  # open each dataset once (ordered by dataset)
            from rllib_sit.ope.data import OPEData

            data_cache.clear()
            data_cache[ds] = OPEData.open(ds, bootstrap_truncated=config.bootstrap_truncated, validate="none")
        out = evaluate(c["checkpoint"], data_cache[ds], explore=explore, config=config, wis=wis)
        f = out["fqe"]
        w = out.get("wis") or {}
        row = dict(c, explore=explore, fqe_estimate=f["estimate"], fqe_ci_low=f["ci_low"], fqe_ci_high=f["ci_high"],
                   fqe_ci_method=f["ci_method"], td_loss_last=f["diagnostics"]["td_loss_last"],
                   bellman_residual_rms=f["diagnostics"]["bellman_residual_rms"],
                   q_data_mean=f["diagnostics"]["q_data_mean"],
                   clipped_fraction=f["diagnostics"].get("clipped_fraction_last"), wis_estimate=w.get("estimate"),
                   wis_ci_low=w.get("ci_low"), wis_ci_high=w.get("ci_high"), wis_ess=w.get("ess"),
                   fit_seconds=f["diagnostics"]["fit_seconds"], fqe_settings_hash=h,
                   scored_at=time.strftime("%Y-%m-%dT%H:%M:%S"))
        rows = [r for r in rows if _row_id(r) != _row_id(row)] + [row]
        R.write_csv(path, OPE_FIELDS, rows)
        eta = (time.time() - t0) / n * (len(todo) - n)
        log(f"[{n}/{len(todo)}] {c['algorithm']} {c['map']} {c['quality']} s{c['seed']} it{c['iteration']}: "
            f"FQE {f['estimate']:.3f} [{f['ci_low']:.3f}, {f['ci_high']:.3f}]  simulator "
            f"{_num(c.get('return_sampled') if explore else c.get('return_greedy'))}  (eta {eta / 60:.1f} min)")
    return path


def _num(x) -> str:
    return "—" if x is None else f"{float(x):.3f}"


def score_table(folder: str, which: str = "auto") -> Tuple[Dict, List[Dict[str, Any]]]:
    """(reports per dataset, ope.csv rows) of a scored folder."""
    from rllib_sit.ope.selection import score_rows

    folder = os.path.abspath(os.path.expanduser(folder))
    path = os.path.join(folder, OPE_CSV)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--score: {path}: missing; run 'rllib-sit ope --results {folder}' first")
    rows = read_ope_csv(path)
    if not rows:
        raise ValueError(f"--score: {path} has no rows; run 'rllib-sit ope --results {folder}' first")
    return score_rows(rows, which=which), rows


def explore_values(rows: Sequence[Dict[str, Any]]) -> List[bool]:
    return sorted({str(r.get("explore")).lower() in ("true", "1") for r in rows})
