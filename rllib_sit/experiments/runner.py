"""``rllib-sit benchmark``'s engine: run a :class:`~rllib_sit.experiments.plan.Plan` as Ray Tune trials.

The whole plan is ONE Tune experiment (``tune/plan``): one trial per cell (algorithm variant × map ×
quality × seed), every algorithm through one trainable
(:class:`~rllib_sit.experiments.trainable.PlanTrial`), queued longest first
(:meth:`Plan.run_order`), so no core idles while cells wait (one experiment per variant, as
before, left the last trial of each variant running alone), at most ``max_concurrent`` trials at
a time (default #CPUs − 1: Ray Data reads deadlock when trials
hold every CPU, DESIGN.md). When the runner starts Ray itself it gives it one CPU slot more than
the machine's cores, so every core runs a one-thread trial and one slot stays free for those reads
and the driver (which mostly waits): on 2 cores, two trials at a time. Datasets are generated
(once, cached) on the driver before any trial starts, so trials only read them. Each trial trains its algorithm to the end of its phases,
evaluates after each policy-training iteration (:mod:`rllib_sit.experiments.callbacks`) and
checkpoints at the end; the driver writes its row the moment it finishes
(:mod:`rllib_sit.experiments.results`), then the table and figures are redrawn.

Resuming: a cell whose row is in ``results.csv`` is skipped; a finished trial in ``tune/`` whose row
is missing (the driver died first) is read back from its ``result.json`` (in ``tune/plan`` or in
the per-variant experiment folders of earlier versions); unfinished trials are
run again from the start. A finished row made with other settings (lengths, evaluation, dataset
size) than the current plan's is an error: use another output folder.

Custom environments: ``setup=["my_envs.py:register"]`` (``--setup``) runs in the driver and, through
Ray's ``worker_process_setup_hook``, in every worker process before a trial builds its algorithm.
"""

from __future__ import annotations

import importlib
import importlib.util
import glob
import json
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

from rllib_sit.experiments import results as R
from rllib_sit.experiments.plan import Cell, Plan, default_config

SETUP_ENV = "RLLIB_SIT_BENCHMARK_SETUP"
TUNE_DIR = "tune"
PLAN_EXPERIMENT = "plan"  # the one Tune experiment of a plan, under TUNE_DIR
PLAN_FILE = "plan.json"
TABLE_FILE = "table.md"


# ------------------------------------------------------------------------------------------------
# --setup: user code that registers environments, in the driver and in every Ray worker
# ------------------------------------------------------------------------------------------------

def _absolute_setup(spec: str) -> str:
    target, _, fn = spec.partition(":")
    if target.endswith(".py"):
        target = os.path.abspath(os.path.expanduser(target))
        if not os.path.isfile(target):
            raise FileNotFoundError(f"--setup {spec!r}: {target} does not exist")
    return f"{target}:{fn}" if fn else target


def run_setup(spec: str) -> None:
    """``module``, ``module:function``, ``file.py`` or ``file.py:function``: import it, call the function."""
    target, _, fn = spec.partition(":")
    if target.endswith(".py"):
        name = "rllib_sit_setup_" + os.path.splitext(os.path.basename(target))[0]
        module = sys.modules.get(name)
        if module is None:
            loader_spec = importlib.util.spec_from_file_location(name, target)
            module = importlib.util.module_from_spec(loader_spec)
            sys.modules[name] = module
            loader_spec.loader.exec_module(module)
    else:
        module = importlib.import_module(target)
    if fn:
        getattr(module, fn)()


def worker_setup() -> None:
    """Ray ``worker_process_setup_hook``: the ``--setup`` entries in ``$RLLIB_SIT_BENCHMARK_SETUP`` (a JSON list)."""
    for spec in json.loads(os.environ.get(SETUP_ENV) or "[]"):
        run_setup(spec)


# ------------------------------------------------------------------------------------------------
# The run
# ------------------------------------------------------------------------------------------------

@dataclass
class BenchmarkReport:
    out: str
    cells: int
    already_done: int
    ran: int = 0
    recovered: int = 0
    errors: List[Tuple[Tuple, str]] = field(default_factory=list)  # (cell key, where to look)
    causes: Dict[Tuple, Any] = field(default_factory=dict)  # cell key -> the failed trial's exception
    table: Optional[str] = None
    figures: List[str] = field(default_factory=list)


def experiment_name(label: str) -> str:
    """Tune experiment folder of an algorithm label in runs before the one-experiment plan (read
    when resuming them): ``SIT[prioritized=False]`` -> ``SIT-prioritized=False``."""
    name = label.replace("[", "-").replace("]", "").replace(",", "-").replace("|", "_")
    return "".join(c if c.isalnum() or c in "-_.=" else "_" for c in name)


def _finished(trial_id: str, result: Dict[str, Any]) -> bool:
    """Tune stopper: the algorithm has run all its phases."""
    return (result.get("phases") or {}).get("current") == "done"


def _slim(result: Dict[str, Any]) -> Dict[str, Any]:
    """What the benchmark keeps of a result (a trial's result dicts are large)."""
    ev = ((result.get("evaluation") or {}).get("env_runners") or {})
    out = {k: result.get(k) for k in ("training_iteration", "time_total_s", "phases", R.BENCHMARK_RESULTS)}
    if ev:
        out["evaluation"] = {"env_runners": {k: ev[k] for k in R.EVALUATION_KEYS if k in ev}}
    if (result.get("algorithm") or {}).get("r_hat_mean_per_agent"):
        out["algorithm"] = {"r_hat_mean_per_agent": dict(result["algorithm"]["r_hat_mean_per_agent"])}
    return out


def _dataset_of(paths: Dict[Tuple[str, str], str]) -> Dict[str, Tuple[str, str]]:
    return {os.path.abspath(p) if "://" not in p else p: k for k, p in paths.items()}


def _write_text(path: str, text: str) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


class _Progress:
    """A tqdm bar over the cells to run, with the latest trial's status as its postfix."""

    def __init__(self, total: int, enabled: bool):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, desc="benchmark", unit="cell", dynamic_ncols=True, disable=not enabled)
        self.enabled = enabled

    def status(self, text: str) -> None:
        self.bar.set_postfix_str(text, refresh=True)

    def done(self, text: str) -> None:
        self.bar.update(1)
        self.write(text)

    def write(self, text: str) -> None:
        if self.enabled:
            self.bar.write(text)
        else:
            print(text, flush=True)

    def close(self) -> None:
        self.bar.close()


def _cell_details(cell: Cell, key, last_result: Dict[str, Any], dataset: str, checkpoint: Optional[str],
                  config: Dict[str, Any], progress: _Progress):
    """SIT's r̂ per agent and DPER histograms (empty for other algorithms; a failure only warns)."""
    rewards, dper = [], []
    try:
        rewards = R.reward_rows(key, last_result, dataset)
        if rewards or cell.algo.name == "SIT":
            dper = R.dper_histograms(key, checkpoint, dataset, config)
    except Exception as e:  # noqa: BLE001 - the cell's row matters more than its figure data
        progress.write(f"[benchmark] warning: {key}: could not read SIT's r̂/DPER details: {e}")
    return rewards, dper


def _point(label: str, env: str, inp: str, seed) -> Tuple[str, str, str, int]:
    return (label, env, os.path.abspath(inp) if "://" not in inp else inp, int(seed))


def trial_exception(trial) -> Optional[BaseException]:
    """The exception a failed trial raised, as Tune stored it in the trial's folder: the pickled
    error (Ray's wrapper of the trial's own exception), else the text of ``error.txt`` as a
    ``RuntimeError`` (None if Tune wrote neither)."""
    import ray.cloudpickle as cloudpickle

    pickled = getattr(trial, "pickled_error_file", None)
    if pickled and os.path.isfile(pickled):
        try:
            with open(pickled, "rb") as f:
                return cloudpickle.load(f)
        except Exception:  # noqa: BLE001 - an exception class that cannot be rebuilt here: read the text
            pass
    text = getattr(trial, "error_file", None)
    if text and os.path.isfile(text):
        with open(text) as f:
            return RuntimeError(f.read())
    return None


def _make_callback(plan: Plan, cells: Dict[Tuple[str, str, str, int], Cell], store: R.ResultStore,
                   progress: _Progress, errors: List, causes: Optional[Dict[Tuple, Any]] = None,
                   prior: Optional[Dict[Tuple, List[Dict[str, Any]]]] = None):
    from ray import tune

    from rllib_sit.experiments.trainable import cell_of_config

    class Recorder(tune.Callback):
        """Driver side: keeps each trial's results, writes its cell the moment it finishes."""

        def __init__(self):
            self.results: Dict[str, List[Dict[str, Any]]] = {}
            self.started: Dict[str, float] = {}
            self.ended = 0  # trials that completed or failed for good

        @classmethod
        def cell_of(cls, trial) -> Cell:
            return cells[cls.point_of(trial)]

        @staticmethod
        def point_of(trial) -> Tuple[str, str, str, int]:
            cell = cell_of_config(trial.config)
            c = cell["config"]
            return _point(cell["label"], c["env"], c["input"], c["seed"])

        def on_trial_start(self, iteration, trials, trial, **info):
            earlier = list((prior or {}).get(self.point_of(trial), []))
            # A trial resumed from an interrupted run's checkpoint: that run's time counts too.
            self.started.setdefault(trial.trial_id,
                                    time.time() - float(earlier[-1].get("time_total_s") or 0.0) if earlier else time.time())
            # Not reset on a restart after a crash (--max-failures): the results before the checkpoint it
            # continues from stay; on_trial_result drops those of the iterations it runs again. A trial
            # resumed from an interrupted run starts with that run's results up to its checkpoint.
            self.results.setdefault(trial.trial_id, earlier)

        def on_trial_result(self, iteration, trials, trial, result, **info):
            it = int(result.get("training_iteration", 0))
            kept = [r for r in self.results.setdefault(trial.trial_id, []) if r["training_iteration"] < it]
            self.results[trial.trial_id] = kept + [_slim(result)]
            cell = self.cell_of(trial)
            phase = (result.get("phases") or {}).get("current", "")
            bench = result.get(R.BENCHMARK_RESULTS) or {}
            ev = ((result.get("evaluation") or {}).get("env_runners") or {}).get("episode_return_mean")
            progress.status(f"{cell.algo.label} {cell.dataset.map} {cell.dataset.quality} seed {cell.seed}: "
                            f"iter {it} {phase} {bench.get(R.POLICY_UPDATES, 0)} updates"
                            + (f", eval {ev:.2f}" if ev is not None and bench.get(R.EVALUATED) else ""))

        def on_trial_complete(self, iteration, trials, trial, **info):
            self.ended += 1
            cell = self.cell_of(trial)
            results = self.results.get(trial.trial_id) or []
            if not R.trial_finished(results):
                errors.append((cell.key, f"{trial.path}: ended before the last phase finished"))
                return
            ckpt = trial.checkpoint.path if trial.checkpoint is not None else R.latest_checkpoint(trial.path)
            config = cell_of_config(trial.config)["config"]
            dataset = config["input"]
            wall = time.time() - self.started.get(trial.trial_id, time.time())
            row, curve = R.cell_row(cell.key, results, algorithm_name=cell.algo.name, dataset=dataset,
                                    behaviour=R.behaviour_stats(dataset), checkpoint=ckpt, trial=trial.path,
                                    settings=plan.settings(cell), settings_hash=plan.settings_hash(cell),
                                    wall_time_s=wall)
            rewards, dper = _cell_details(cell, cell.key, results[-1], dataset, ckpt, config, progress)
            store.add_cell(row, curve, rewards, dper)
            fin = row["final_return"]
            progress.done(f"[benchmark] done {cell.algo.label} {cell.dataset.map} {cell.dataset.quality} seed "
                          f"{cell.seed}: final return {'n/a' if fin is None else f'{fin:.3f}'}"
                          + (f", best {row['best_return']:.3f}" if row["best_return"] is not None else "")
                          + f" ({wall:.0f} s)")

        def on_trial_error(self, iteration, trials, trial, **info):
            self.ended += 1
            cell = self.cell_of(trial)
            # error.txt in the trial's folder under --out (trial.error_file is Ray's staging copy in /tmp/ray).
            error_file = os.path.join(trial.path, os.path.basename(trial.error_file)) if trial.error_file else None
            errors.append((cell.key, f"{trial.path}: {error_file or 'error'}"))
            if causes is not None:
                causes[cell.key] = trial_exception(trial)
            progress.write(f"[benchmark] FAILED {cell.algo.label} {cell.dataset.map} {cell.dataset.quality} "
                           f"seed {cell.seed}: see {error_file or trial.path}")

    return Recorder()


def _check_resumable(plan: Plan, done: Dict[Tuple, Dict[str, Any]]) -> None:
    clash = []
    for cell in plan.cells:
        row = done.get(cell.key)
        if row is not None and row.get("settings_hash") != plan.settings_hash(cell):
            clash.append((cell.key, row.get("settings"), json.dumps(plan.settings(cell), sort_keys=True, default=str)))
    if clash:
        key, old, new = clash[0]
        raise ValueError(f"the output folder already holds {len(clash)} finished cell(s) made with other settings, "
                         f"e.g. {key}: stored {old} vs now {new}; use another --out (or delete those rows)")


def _finished_trials(out: str, labels) -> List[Tuple[str, str, Dict[str, Any], List[Dict[str, Any]]]]:
    """``(label, trial folder, its algorithm config, results)`` of the finished trials in ``tune/``:
    the plan's one experiment (the label is in each trial's cell) and the per-variant experiments
    of earlier versions (the label is the folder's)."""
    from rllib_sit.experiments.trainable import CELL

    found = []
    folders = [(None, os.path.join(out, TUNE_DIR, PLAN_EXPERIMENT))]
    folders += [(label, os.path.join(out, TUNE_DIR, experiment_name(label))) for label in sorted(labels)]
    for label, exp in folders:
        if not os.path.isdir(exp):
            continue
        for name in sorted(os.listdir(exp)):
            trial = os.path.join(exp, name)
            params, results = R.read_trial(trial)
            if not params or not R.trial_finished(results):
                continue
            cell = params.get(CELL)
            if label is None and isinstance(cell, dict) and isinstance(cell.get("config"), dict):
                found.append((cell.get("label"), trial, cell["config"], results))
            elif label is not None and CELL not in params:
                found.append((label, trial, params, results))
    return found


def _cell_matches(plan: Plan, cell: Cell, cfg: Dict[str, Any], path: str) -> bool:
    """Whether a trial's algorithm config ``cfg`` ran ``cell`` (its dataset at ``path``) with this plan's settings."""
    inp = cfg.get("input") or ""
    same_input = (os.path.abspath(inp) if "://" not in inp else inp) == (os.path.abspath(path) if "://" not in path
                                                                          else path)
    return (same_input and cfg.get("env") == cell.dataset.map and int(cfg.get("seed", -1)) == cell.seed
            and all(cfg.get(k) == v for k, v in plan.cell_config(cell).items())
            and cfg.get("evaluation_duration") == plan.eval_episodes)


def _cell_history(plan: Plan, out: str, cell: Cell, path: str):
    """What the plan experiment's trials of ``cell`` left: ``(results by iteration, [(iteration,
    checkpoint), ...])``, stitched over the trials of interrupted runs that continued one another
    (a later trial's result of an iteration replaces an earlier one's)."""
    from rllib_sit.experiments.trainable import CELL

    exp = os.path.join(out, TUNE_DIR, PLAN_EXPERIMENT)
    trials = []
    for name in sorted(os.listdir(exp)) if os.path.isdir(exp) else []:
        trial = os.path.join(exp, name)
        params, results = R.read_trial(trial)
        c = params.get(CELL) if isinstance(params, dict) else None
        if (results and isinstance(c, dict) and c.get("label") == cell.algo.label
                and isinstance(c.get("config"), dict) and _cell_matches(plan, cell, c["config"], path)):
            trials.append((results[0].get("timestamp", 0), trial, results))
    history: Dict[int, Dict[str, Any]] = {}
    checkpoints: List[Tuple[int, str]] = []
    for _, trial, results in sorted(trials, key=lambda t: t[0]):
        for r in results:
            history[int(r.get("training_iteration", 0))] = r
        last = int(results[-1].get("training_iteration", 0))
        for ckpt in sorted(glob.glob(os.path.join(trial, "checkpoint_*"))):
            it = _checkpoint_iteration(ckpt)
            if it is not None and it <= last:  # a checkpoint whose iteration's result was recorded
                checkpoints.append((it, ckpt))
    return history, sorted(checkpoints)


def _checkpoint_iteration(ckpt: str) -> Optional[int]:
    """The training iteration a complete algorithm checkpoint was taken after (None: not readable)."""
    import pickle

    try:
        with open(os.path.join(ckpt, "algorithm_state.pkl"), "rb") as f:
            state = pickle.load(f)
        if not os.path.isdir(os.path.join(ckpt, "learner_group")):
            return None
        return int(state["training_iteration"])
    except Exception:  # missing, cut or foreign: not a resume point
        return None


def _resume_points(plan: Plan, out: str, cells: Sequence[Cell], paths) -> Dict[Tuple, Dict[str, Any]]:
    """Cells an interrupted run of this folder left part-way, by ``_point``: their newest complete
    checkpoint, its iteration, and the (slim) results up to it, so the new trial continues from there."""
    points = {}
    for c in cells:
        path = paths[(c.dataset.map, c.dataset.quality)]
        history, checkpoints = _cell_history(plan, out, c, path)
        if not checkpoints:
            continue
        it, ckpt = checkpoints[-1]
        prior = [_slim(history[i]) for i in sorted(history) if i <= it]
        points[_point(c.algo.label, c.dataset.map, path, c.seed)] = {
            "checkpoint": ckpt, "iteration": it, "time_total_s": float(history[it].get("time_total_s") or 0.0),
            "results": prior}
    return points


def _recover(plan: Plan, out: str, store: R.ResultStore, done: Dict, paths: Dict[Tuple[str, str], str],
             progress: _Progress) -> int:
    """Rows of trials that finished in ``tune/`` but are missing from results.csv."""
    by_path = _dataset_of(paths)
    cells = {(c.algo.label, c.dataset.map, c.dataset.quality, c.seed): c for c in plan.cells}
    n = 0
    for label, trial, params, results in _finished_trials(out, {c.algo.label for c in plan.cells}):
        inp = params.get("input") or ""
        mq = by_path.get(os.path.abspath(inp) if "://" not in inp else inp)
        cell = cells.get((label, mq[0], mq[1], int(params.get("seed", -1)))) if mq else None
        if cell is None or cell.key in done:
            continue
        want = plan.cell_config(cell)
        if any(params.get(k) != v for k, v in want.items()) or params.get("evaluation_duration") != plan.eval_episodes:
            continue  # made with other settings
        if int(results[0].get("training_iteration", 1)) > 1:  # it resumed an interrupted trial: stitch
            history, _ = _cell_history(plan, out, cell, inp)
            results = [history[i] for i in sorted(history)]
        ckpt = R.latest_checkpoint(trial)
        row, curve = R.cell_row(cell.key, results, algorithm_name=cell.algo.name, dataset=inp,
                                behaviour=R.behaviour_stats(inp), checkpoint=ckpt, trial=trial,
                                settings=plan.settings(cell), settings_hash=plan.settings_hash(cell),
                                wall_time_s=None)
        rewards, dper = _cell_details(cell, cell.key, results[-1], inp, ckpt, params, progress)
        store.add_cell(row, curve, rewards, dper)
        done[cell.key] = row
        n += 1
        progress.write(f"[benchmark] recovered {cell.key} from {trial}")
    return n


def run_benchmark(plan: Plan, out: str, *, max_concurrent: Optional[int] = None, num_cpus: Optional[int] = None,
                  threads: Optional[int] = None, max_failures: int = 1, checkpoint_freq: int = 0,
                  keep_checkpoints: bool = False, setup: Sequence[str] = (), progress: bool = True,
                  figures: bool = True, verbose: bool = False,
                  sensitivity_source: Optional[str] = None, callbacks: Sequence[Any] = ()) -> BenchmarkReport:
    """Run the cells of ``plan`` not finished in ``out`` yet; write results, table.md and figures.

    Args:
        out: output folder (created); see :mod:`rllib_sit.experiments.results` for its files.
        max_concurrent: trials at once (default: Ray's CPUs − 1, at least 1: one per core when this
            starts Ray).
        num_cpus: CPUs of the local Ray instance when this starts it (default: the cores + 1).
        threads: torch threads per trial (default: (Ray's CPUs − 1) // max_concurrent, at least 1),
            unless ``--config`` sets ``num_torch_threads``.
        max_failures: restarts of a crashed trial (from its last checkpoint, else from the start).
        checkpoint_freq: checkpoint every N iterations too (0: only at the end).
        keep_checkpoints: checkpoint after every iteration (so after every evaluation) and keep them
            all, not only the newest: what off-policy evaluation (``rllib-sit ope``) scores later.
        setup: ``--setup`` entries (see :func:`run_setup`).
        callbacks: more Tune callbacks of the plan's experiment. ``rllib-sit benchmark`` passes
            :class:`rllib_sit.cli.trial_guard.NoRetryBeforeFirstResult`, so that a trial failing in
            its setup (a ``DatasetError``) fails once instead of ``max_failures`` + 1 times.

    A failed cell does not stop the others: it is in ``report.errors`` (cell key, trial folder and
    error file) and ``report.causes`` (cell key -> the trial's exception), and has no row.
    """
    out = os.path.abspath(os.path.expanduser(out))
    store = R.ResultStore(out)
    for s in setup:
        run_setup(s)
    setup = [_absolute_setup(s) for s in setup]
    done = {k: r for k, r in store.results().items() if k in {c.key for c in plan.cells}}
    _check_resumable(plan, done)
    _write_text(os.path.join(out, PLAN_FILE), json.dumps(plan.to_json(), indent=2, default=str) + "\n")
    report = BenchmarkReport(out=out, cells=len(plan.cells), already_done=len(done))
    todo_datasets = {(d.map, d.quality): d for d in plan.datasets}
    paths = {k: d.cache_path() for k, d in todo_datasets.items()}
    bar = _Progress(0, False)
    report.recovered = _recover(plan, out, store, done, paths, bar)
    todo = [c for c in plan.cells if c.key not in done]
    if todo:
        print(f"[benchmark] {len(todo)} of {len(plan.cells)} cells to run ({len(done)} finished before) -> {out}",
              flush=True)
        try:
            _run_cells(plan, todo, out, store, report, max_concurrent=max_concurrent, num_cpus=num_cpus,
                       threads=threads, max_failures=max_failures, checkpoint_freq=checkpoint_freq,
                       keep_checkpoints=keep_checkpoints, setup=setup, progress=progress, verbose=verbose,
                       callbacks=callbacks)
        except KeyboardInterrupt:
            finish(plan, out, report, figures=False)  # the table of what finished; figures on the next run
            raise
    else:
        print(f"[benchmark] all {len(plan.cells)} cells finished before; nothing to run ({out})", flush=True)
    finish(plan, out, report, figures=figures, sensitivity_source=sensitivity_source)
    return report


def default_num_cpus() -> int:
    """CPU slots of a Ray instance the runner starts: the cores + 1 (one slot for Ray Data reads)."""
    return (os.cpu_count() or 1) + 1


def default_concurrency() -> int:
    """Trials at a time on a Ray instance the runner starts: one per core."""
    return default_num_cpus() - 1


def _run_cells(plan: Plan, todo: List[Cell], out: str, store: R.ResultStore, report: BenchmarkReport, *,
               max_concurrent, num_cpus, threads, max_failures, checkpoint_freq, setup, progress, verbose,
               keep_checkpoints: bool = False, callbacks: Sequence[Any] = ()) -> None:
    import ray
    from ray import tune
    from ray.tune.search.basic_variant import BasicVariantGenerator

    import rllib_sit

    started = False
    if not ray.is_initialized():
        runtime_env = None
        if setup:
            runtime_env = {"env_vars": {SETUP_ENV: json.dumps(list(setup))},
                           "worker_process_setup_hook": "rllib_sit.experiments.runner.worker_setup"}
        if num_cpus is None:
            num_cpus = default_num_cpus()
        ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=verbose, runtime_env=runtime_env)
        started = True
    elif setup:
        print("[benchmark] warning: Ray was already running; --setup ran in this process only", flush=True)
    try:
        rllib_sit.register_all()
        cpus = int(ray.cluster_resources().get("CPU", 1))
        conc = int(max_concurrent or max(1, cpus - 1))
        n_threads = int(threads or max(1, (cpus - 1) // conc))
        # Datasets first, on the driver, with progress: trials only read them.
        paths: Dict[Tuple[str, str], str] = {}
        for d in {(c.dataset.map, c.dataset.quality): c.dataset for c in todo}.values():
            print(f"[benchmark] dataset {d.map} {d.quality}: ", end="", flush=True)
            paths[(d.map, d.quality)] = d.resolve(progress=progress)
            print(paths[(d.map, d.quality)], flush=True)
        bar = _Progress(len(todo), progress)
        errors: List = []
        try:
            _run_plan(plan, plan.run_order(todo), paths, out, store, bar, errors, conc, n_threads, max_failures,
                      1 if keep_checkpoints else checkpoint_freq, verbose, tune, BasicVariantGenerator,
                      causes=report.causes, callbacks=callbacks, keep=None if keep_checkpoints else 1)
        finally:
            bar.close()
            finished = store.results()
            report.ran += sum(1 for c in todo if c.key in finished)
        report.errors = errors
    finally:
        if started:
            ray.shutdown()


def _label_config(plan: Plan, cell: Cell, n_threads: int):
    """The AlgorithmConfig every cell of ``cell``'s algorithm variant starts from."""
    from rllib_sit.experiments.callbacks import EvaluateAfterPolicyUpdates

    cfg = default_config(cell.algo.name)
    cfg.update_from_dict(plan.cell_config(cell))
    if "num_torch_threads" not in plan.config and hasattr(cfg, "num_torch_threads"):
        cfg.num_torch_threads = n_threads
    cfg.evaluation(evaluation_interval=None, evaluation_duration=plan.eval_episodes)
    cfg.callbacks(EvaluateAfterPolicyUpdates)
    return cfg


def _run_plan(plan, cells, paths, out, store, bar, errors, conc, n_threads, max_failures, checkpoint_freq, verbose,
              tune, BasicVariantGenerator, causes: Optional[Dict[Tuple, Any]] = None,
              callbacks: Sequence[Any] = (), keep: Optional[int] = 1) -> None:
    """Every cell as one trial of ONE Tune experiment (``tune/plan``), in ``cells``' order."""
    from rllib_sit.experiments.trainable import CELL, PlanTrial, trial_dirname

    configs: Dict[str, Any] = {}
    by_point: Dict[Tuple[str, str, str, int], Cell] = {}
    trials = []
    resume = _resume_points(plan, out, cells, paths)
    for c in cells:
        path = paths[(c.dataset.map, c.dataset.quality)]
        if c.algo.label not in configs:
            configs[c.algo.label] = _label_config(plan, c, n_threads)
            # Bad settings fail here, once per variant, rather than in every trial.
            probe = configs[c.algo.label].copy(copy_frozen=False).environment(c.dataset.map).offline_data(input_=path)
            probe.validate()
        cfg = configs[c.algo.label].copy(copy_frozen=False).environment(c.dataset.map).offline_data(input_=path)
        cfg.debugging(seed=int(c.seed))
        d = cfg.to_dict()
        d.update({"env": c.dataset.map, "input": path, "dataset": None, "seed": int(c.seed)})
        point = _point(c.algo.label, c.dataset.map, path, c.seed)
        by_point[point] = c
        trial = {"label": c.algo.label, "algorithm": c.algo.name, "config": d}
        if point in resume:
            r = resume[point]
            trial["restore"] = {k: r[k] for k in ("checkpoint", "iteration", "time_total_s")}
            bar.write(f"[benchmark] {c.key}: resumes from {r['checkpoint']} (iteration {r['iteration']})")
        trials.append(trial)
    prior = {p: r["results"] for p, r in resume.items()}
    callback = _make_callback(plan, by_point, store, bar, errors, causes, prior=prior)
    tuner = tune.Tuner(
        PlanTrial, param_space={CELL: tune.grid_search(trials)},
        tune_config=tune.TuneConfig(search_alg=BasicVariantGenerator(max_concurrent=conc), num_samples=1,
                                    trial_dirname_creator=trial_dirname),
        run_config=tune.RunConfig(
            name=PLAN_EXPERIMENT, storage_path=os.path.join(out, TUNE_DIR), stop=_finished,
            verbose=1 if verbose else 0, callbacks=[callback, *callbacks],
            failure_config=tune.FailureConfig(max_failures=int(max_failures)),
            checkpoint_config=tune.CheckpointConfig(checkpoint_frequency=int(checkpoint_freq), checkpoint_at_end=True,
                                                    num_to_keep=keep)))
    tuner.fit()
    if callback.ended < len(trials):  # Tune returns normally from Ctrl-C: say so
        raise KeyboardInterrupt(f"{len(trials) - callback.ended} trial(s) interrupted")


def finish(plan: Plan, out: str, report: BenchmarkReport, figures: bool = True,
           sensitivity_source: Optional[str] = None) -> None:
    """table.md and the figures from the CSVs (the rows of this plan's cells)."""
    from rllib_sit.experiments.tables import markdown_report

    keys = {c.key for c in plan.cells}
    rows = [r for k, r in R.ResultStore(out).results().items() if k in keys]
    report.table = os.path.join(out, TABLE_FILE)
    _write_text(report.table, markdown_report(rows, plan.command, plan.eval_episodes))
    if figures:
        from rllib_sit.experiments.figures import write_figures

        report.figures = write_figures(out, sensitivity_source=sensitivity_source, keys=keys)
