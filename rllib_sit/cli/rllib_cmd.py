"""``rllib``: the classic RLlib command line (Ray 2.60 no longer ships one), for this package.

    rllib train file tuned_examples/sit_2s3z_quick.yaml [--stop JSON] [--config JSON]
                     [--storage-path DIR] [--max-concurrent-trials N] [--num-cpus N]
    rllib evaluate CHECKPOINT [--episodes N] [--seed S] [--explore]

The YAML is RLlib's classic tuned-example format::

    sit-2s3z:
      run: SIT                      # any algorithm registered by rllib_sit.register_all()
      env: smac:2s3z
      stop: {training_iteration: 50}
      checkpoint_freq: 10
      config:
        dataset: {quality: low, episodes: 10000}   # or input_: <dataset folder>
        alpha: {grid_search: [0.1, 0.2]}

Before Ray starts, every experiment is checked (:mod:`rllib_sit.cli.front_door`): its keys, its
``run:`` name, its config built and validated at every grid point, its ``input_`` (which must exist,
even beside a ``dataset:`` spec, and be a dataset of ``env:``); a problem is one line naming the
file, the experiment, the key and what was expected (exit status 2), and nothing is written.
Runs on Ray Tune: checkpoints and TensorBoard/CSV/JSON logs go to ``<storage-path>/<name>``. A trial
that fails in its setup is not retried, and the CLI's last line is its error; ``--resume`` continues
each trial from its newest complete checkpoint (:mod:`rllib_sit.cli.trial_guard`).
Datasets named by ``config.dataset`` are generated (once, with progress) on the driver before the
trials start, so trials only read them. On a 2-CPU machine at most ``#CPUs - 1`` trials run at once
by default: Ray Data reads inside trials deadlock when trials hold every CPU (DESIGN.md).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from typing import Any, Dict, List, Optional

from rllib_sit.cli.front_door import (check_checkpoint_config, check_experiment_keys, check_experiments,
                                      error_line, json_object_arg)

DEFAULT_STORAGE = os.path.join("~", "ray_results")
# What `rllib evaluate` prints from result["evaluation"]["env_runners"].
EVAL_KEYS = ("episode_return_mean", "episode_return_std", "episode_return_min", "episode_return_max",
             "episode_len_mean", "num_episodes", "win_rate")


def _deep_merge(base: Dict[str, Any], over: Dict[str, Any]) -> Dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict) and "grid_search" not in v:
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def load_experiments(path: str) -> Dict[str, Dict[str, Any]]:
    """Read and check a classic tuned-example YAML file -> {name: experiment dict}."""
    import yaml

    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such file")
    with open(path) as f:
        data = yaml.safe_load(f)
    if not isinstance(data, dict) or not data:
        raise ValueError(f"{path}: expected a mapping {{name: {{run: ..., env: ..., config: ...}}}}")
    for name, exp in data.items():
        check_experiment_keys(path, name, exp)
    return data


def experiment_config(exp: Dict[str, Any], config_over: Dict[str, Any]) -> Dict[str, Any]:
    """The experiment's algorithm config with ``--config`` merged in, ``env`` and ``input`` set."""
    config = _deep_merge(exp.get("config") or {}, config_over)
    if "env" in exp:
        config["env"] = exp["env"]
    if "input_" in config and "input" not in config:
        config["input"] = config.pop("input_")
    return config


def _prepare_datasets(config: Dict[str, Any], env: Any) -> None:
    """Generate (or find cached) datasets named by ``config['dataset']`` on the driver."""
    ds = config.get("dataset")
    if not ds or config.get("input_") or config.get("input"):
        return
    values = ds["grid_search"] if isinstance(ds, dict) and "grid_search" in ds else [ds]
    envs = env["grid_search"] if isinstance(env, dict) and "grid_search" in env else [env]
    from rllib_sit.data.generation import ensure_dataset

    for e in envs:
        for d in values:
            print(f"[rllib] dataset {e} {d}: ", end="", flush=True)
            path = ensure_dataset(e, d.get("quality", "low"), n_episodes=int(d.get("episodes", 10000)),
                                  seed=int(d.get("seed", 0)))
            print(path, flush=True)


def progress_metrics(trainable_name: str) -> tuple:
    """The learner metrics an algorithm's progress line shows (its class's ``progress_metrics``)."""
    from ray.tune.registry import get_trainable_cls

    try:
        return tuple(getattr(get_trainable_cls(trainable_name), "progress_metrics", ()))
    except Exception:  # noqa: BLE001 - an unregistered or foreign trainable: no learner metrics
        return ()


def _progress_callback():
    from ray.tune import Callback

    from rllib_sit.algorithms.common.algorithm import PHASE_RESULTS

    class PrintProgress(Callback):
        """One line per training iteration: phase, the algorithm's losses, evaluation return."""

        def on_trial_result(self, iteration, trials, trial, result, **info):
            phases = result.get(PHASE_RESULTS, {}) or {}
            learners = result.get("learners", {}) or {}
            parts = [f"{trial.trial_id} iter {result.get('training_iteration')}",
                     f"{result.get('time_total_s', 0):.0f}s"]
            if phases.get("current"):
                parts.append(f"phase {phases['current']}")
            keys = progress_metrics(trial.trainable_name)
            for mid, m in learners.items():
                if not isinstance(m, dict):
                    continue
                for key in keys:
                    v = m.get(key)
                    if isinstance(v, (int, float)) and v == v:
                        parts.append(f"{mid}/{key} {v:.4g}")
            ev = (result.get("evaluation", {}) or {}).get("env_runners", {}) or {}
            if "episode_return_mean" in ev:
                s = f"eval return {ev['episode_return_mean']:.3f} ± {ev.get('episode_return_std', 0):.3f}"
                if "win_rate" in ev:
                    s += f" win {ev['win_rate']:.2f}"
                parts.append(s)
            print("[rllib] " + " | ".join(parts), flush=True)

    return PrintProgress()


def train_file(args) -> int:
    import ray
    from ray import tune

    import rllib_sit
    from rllib_sit.cli.trial_guard import NoRetryBeforeFirstResult, ResumeFromNewestCheckpoint

    experiments = load_experiments(args.file)
    stop_over = json_object_arg("--stop", args.stop) if args.stop else {}
    config_over = json_object_arg("--config", args.config) if args.config else {}
    configs = {name: experiment_config(exp, config_over) for name, exp in experiments.items()}
    stops = {name: dict(exp.get("stop") or {}, **stop_over) for name, exp in experiments.items()}
    # Every experiment's config is built and validated here, before Ray, Tune or a dataset start.
    rllib_sit.register_all()
    check_experiments(args.file, experiments, configs, stops=stops)
    if not ray.is_initialized():
        ray.init(num_cpus=args.num_cpus, include_dashboard=False, log_to_driver=args.verbose)
    n_cpus = int(ray.cluster_resources().get("CPU", 1))
    status = 0
    failures: List[str] = []
    for name, exp in experiments.items():
        config = configs[name]
        _prepare_datasets(config, config.get("env"))
        stop = stops[name]
        storage = os.path.abspath(os.path.expanduser(args.storage_path or exp.get("storage_path")
                                                     or exp.get("local_dir") or DEFAULT_STORAGE))
        max_conc = args.max_concurrent_trials or exp.get("max_concurrent_trials") or max(1, n_cpus - 1)
        print(f"[rllib] experiment {name}: run={exp['run']} env={config.get('env')} stop={stop} "
              f"storage={storage}/{name} max_concurrent_trials={max_conc}", flush=True)
        t0 = time.time()
        max_failures = args.max_failures if args.max_failures is not None else int(exp.get("max_failures", 3))
        exp_path = os.path.join(storage, name)
        if args.resume and tune.Tuner.can_restore(exp_path):
            # Tune's experiment restore: finished trials stay, unfinished and errored ones continue
            # from their newest complete checkpoint (the algorithm's phases, sampler and RNG state
            # included), also one written after Tune last saved its experiment state.
            print(f"[rllib] experiment {name}: resuming {exp_path}", flush=True)
            tuner = tune.Tuner.restore(exp_path, trainable=exp["run"], resume_unfinished=True, resume_errored=True,
                                       param_space=config)
            _add_callbacks(tuner, [ResumeFromNewestCheckpoint(), NoRetryBeforeFirstResult(max_failures)])
        else:
            if args.resume:
                print(f"[rllib] experiment {name}: nothing to resume at {exp_path}; starting it", flush=True)
            tuner = tune.Tuner(
                exp["run"],
                param_space=config,
                tune_config=tune.TuneConfig(num_samples=int(exp.get("num_samples", 1)),
                                            max_concurrent_trials=int(max_conc)),
                run_config=tune.RunConfig(
                    name=name, storage_path=storage, stop=stop, verbose=1 if args.verbose else 0,
                    callbacks=[_progress_callback(), NoRetryBeforeFirstResult(max_failures)],
                    # A crashed trial restarts from its last checkpoint, up to max_failures times;
                    # one that fails before its first result (config, dataset) fails once.
                    failure_config=tune.FailureConfig(max_failures=int(max_failures)),
                    checkpoint_config=tune.CheckpointConfig(
                        checkpoint_frequency=int(exp.get("checkpoint_freq", 0) or 0),
                        checkpoint_at_end=bool(exp.get("checkpoint_at_end", True))),
                ),
            )
        results = tuner.fit()
        print(f"[rllib] experiment {name}: {len(results)} trial(s) in {time.time() - t0:.0f}s", flush=True)
        for res in results:
            ev = ((res.metrics or {}).get("evaluation", {}) or {}).get("env_runners", {}) or {}
            ck = res.checkpoint.path if res.checkpoint else None
            err = f" ERROR: {res.error}" if res.error else ""
            ret = f"{ev['episode_return_mean']:.3f}" if "episode_return_mean" in ev else "n/a"
            print(f"[rllib]   {res.path}: iterations {(res.metrics or {}).get('training_iteration')}, "
                  f"eval return {ret}, checkpoint {ck}{err}", flush=True)
            if res.error:
                status = 1
                failures.append(f"experiment {name!r}, trial {os.path.basename(res.path)}: {error_line(res.error)}")
        print_best_trial(name, results)
    if failures:  # the last line: what went wrong (e.g. the DatasetError), not a traceback
        more = f" (and {len(failures) - 1} more trial(s) above)" if len(failures) > 1 else ""
        print(f"rllib: error: {args.file}: {failures[0]}{more}", file=sys.stderr, flush=True)
    return status


def _add_callbacks(tuner, callbacks: List[Any]) -> None:
    """Add callbacks to a restored Tuner (``Tuner.restore`` takes the pickled RunConfig as it was)."""
    run_config = tuner._local_tuner.get_run_config()
    run_config.callbacks = list(run_config.callbacks or []) + [
        c for c in callbacks if not any(type(o) is type(c) for o in (run_config.callbacks or []))]


def print_best_trial(name: str, results) -> None:
    """The trial with the highest last evaluation return: the settings it was swept with (those that
    differ between the trials), its checkpoint and its full config (``params.json``)."""
    def ret(res):
        ev = ((res.metrics or {}).get("evaluation", {}) or {}).get("env_runners", {}) or {}
        v = ev.get("episode_return_mean")
        return float(v) if isinstance(v, (int, float)) and v == v else None

    def flat(d, prefix=""):
        out = {}
        for k, v in (d or {}).items():
            if isinstance(v, dict):
                out.update(flat(v, f"{prefix}{k}/"))
            else:
                out[f"{prefix}{k}"] = v
        return out

    scored = [r for r in results if not r.error and ret(r) is not None]
    if not scored:
        print(f"[rllib] experiment {name}: no trial reported an evaluation return (set evaluation_interval)", flush=True)
        return
    best = max(scored, key=ret)
    configs = [flat(r.config) for r in results]
    swept = {k: v for k, v in flat(best.config).items() if any(repr(c.get(k)) != repr(v) for c in configs)}
    ck = best.checkpoint.path if best.checkpoint else None
    print(f"[rllib] experiment {name}: best trial {best.path} (eval return {ret(best):.3f} of {len(scored)} "
          f"evaluated): config {json.dumps(swept, default=str)}, checkpoint {ck}, "
          f"full config {os.path.join(best.path, 'params.json')}", flush=True)


def evaluate_checkpoint(args) -> int:
    import pickle

    import ray
    from ray.rllib.algorithms.algorithm import Algorithm
    from ray.rllib.utils.checkpoints import Checkpointable

    import rllib_sit
    from rllib_sit.algorithms.common.evaluation import PASS_KEYS, pass_key

    path = os.path.abspath(os.path.expanduser(args.checkpoint))
    if not os.path.isdir(path):
        raise FileNotFoundError(f"{path}: no such checkpoint folder")
    rllib_sit.register_all()
    # Rebuild the algorithm with the checkpoint's config plus --episodes/--seed (the evaluation
    # EnvRunner takes its reset seed from the config when it is built), then restore its state.
    ctor_file = os.path.join(path, Checkpointable.CLASS_AND_CTOR_ARGS_FILE_NAME)
    if not os.path.isfile(ctor_file):
        raise FileNotFoundError(f"{path}: not an RLlib algorithm checkpoint (no {Checkpointable.CLASS_AND_CTOR_ARGS_FILE_NAME})")
    with open(ctor_file, "rb") as f:
        config = dict(pickle.load(f)["ctor_args_and_kwargs"][0][0])  # AlgorithmConfig.get_state()
    config["evaluation_duration"] = args.episodes
    if args.seed is not None:
        config["seed"] = int(args.seed)
    # Every evaluation runs a greedy and a sampled pass on the same env seeds; --explore makes the
    # headline keys the sampled pass's (default: the greedy pass's). Both are printed, suffixed.
    config["evaluation_config"] = dict(config.get("evaluation_config") or {}, explore=bool(args.explore))
    check_checkpoint_config(path, config, args.episodes)
    if not ray.is_initialized():
        ray.init(num_cpus=args.num_cpus, include_dashboard=False, log_to_driver=args.verbose)
    algo = Algorithm.from_checkpoint(path, config=config)
    try:
        t0 = time.time()
        ev = algo.evaluate().get("env_runners", {})
        stats = {k: float(ev[k]) for k in EVAL_KEYS if k in ev}
        if "num_episodes" in stats:
            stats["num_episodes"] = int(stats["num_episodes"])
        stats["explore"] = bool(args.explore)
        stats.update({pass_key(k, x): float(ev[pass_key(k, x)]) for x in (False, True) for k in PASS_KEYS
                      if pass_key(k, x) in ev})
        print(json.dumps({"checkpoint": path, "env": algo.config.env, "seconds": round(time.time() - t0, 2),
                          **stats}, indent=2))
    finally:
        algo.stop()
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rllib", description="RLlib command line for rllib_sit (train file / evaluate)")
    sub = p.add_subparsers(dest="command", required=True)
    tr = sub.add_parser("train", help="train from a tuned-example YAML file")
    trs = tr.add_subparsers(dest="train_command", required=True)
    f = trs.add_parser("file", help="run the experiments of a classic RLlib tuned-example YAML file on Ray Tune")
    f.add_argument("file")
    f.add_argument("--stop", help='JSON overrides of the stop criteria, e.g. \'{"training_iteration": 3}\'')
    f.add_argument("--config", help='JSON overrides of the algorithm config, e.g. \'{"alpha": 0.5}\'')
    f.add_argument("--storage-path", help=f"where results/checkpoints go (default {DEFAULT_STORAGE})")
    f.add_argument("--max-concurrent-trials", type=int, help="default: #CPUs - 1 (at least 1)")
    f.add_argument("--num-cpus", type=int, help="CPUs for the local Ray instance")
    f.add_argument("--resume", action="store_true",
                   help="continue an interrupted experiment, each trial from its newest complete checkpoint "
                        "(Tune's restore; also a checkpoint written after Tune last saved its state)")
    f.add_argument("--max-failures", type=int,
                   help="restarts of a crashed trial from its last checkpoint (default: the YAML's max_failures or 3); "
                        "a trial that fails before its first result (config, dataset) fails once")
    f.add_argument("-v", "--verbose", action="store_true")
    f.set_defaults(func=train_file)
    ev = sub.add_parser("evaluate", help="evaluation of a checkpoint on its environment (greedy and sampled passes)")
    ev.add_argument("checkpoint")
    ev.add_argument("--explore", action="store_true",
                    help="headline metrics from sampled actions (drawn from the policy) instead of greedy ones; "
                         "both passes are printed as *_greedy / *_sampled")
    ev.add_argument("--episodes", type=int, default=32)
    ev.add_argument("--seed", type=int)
    ev.add_argument("--num-cpus", type=int)
    ev.add_argument("-v", "--verbose", action="store_true")
    ev.set_defaults(func=evaluate_checkpoint)
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError) as e:  # FrontDoorError, DatasetError, bad JSON, missing files
        print(f"rllib: error: {e}", file=sys.stderr, flush=True)
        return 2


if __name__ == "__main__":
    sys.exit(main())
