"""Driver-side checks before Ray or Tune start: one clear line per problem.

Every experiment of a tuned-example YAML (with the ``--config``/``--stop`` overrides merged in)
is checked before anything runs or is written:

* its keys (``run``, ``env``, ``stop``, ...), with the closest known key suggested;
* its ``run:`` name against the registered algorithms;
* its algorithm config, built through ``update_from_dict`` and ``validate()``-d for every point of
  its ``grid_search`` axes (no dataset is read: an unknown setting or an invalid value is a
  :class:`FrontDoorError` naming the YAML file, the experiment, the key and what was expected);
* its dataset reference: an ``input_`` folder that does not exist is an error even when a
  ``dataset:`` spec is present (nothing is generated), and a dataset recorded in another env
  than the config's is an error naming both (its metadata only is read).

Config errors are therefore never retried by Tune's ``max_failures``. ``rllib evaluate``
(:func:`check_checkpoint_config`) and ``rllib-sit benchmark`` (:func:`check_config_keys`,
:func:`check_plan`) check their input the same way before they build anything. The errors and what
to do about each: docs/operations.md, "The front door".
"""

from __future__ import annotations

import copy
import difflib
import itertools
import os
import re
from typing import Any, Dict, Iterable, List, Optional, Tuple

EXPERIMENT_KEYS = ("run", "env", "stop", "config", "checkpoint_freq", "checkpoint_at_end", "num_samples",
                   "storage_path", "local_dir", "max_concurrent_trials", "max_failures")


class FrontDoorError(ValueError):
    """A problem with what the user asked for, found before anything ran (one line)."""


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """``"; did you mean 'alpha'?"`` for the closest of ``choices`` (empty if none is close)."""
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def json_object_arg(flag: str, text: str, what: str = "a JSON object") -> Dict[str, Any]:
    """A CLI flag's JSON object (``--config '{"lr": 1e-4}'``), or one error line naming the flag."""
    import json

    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{flag}: not valid JSON ({e}): {text!r}; expected {what}") from None
    if not isinstance(value, dict):
        raise ValueError(f"{flag}: got {type(value).__name__} {text!r}; expected {what}")
    return value


def check_experiment_keys(path: str, name: str, exp: Any) -> None:
    if not isinstance(exp, dict) or "run" not in exp:
        raise FrontDoorError(f"{path}: experiment {name!r} needs a 'run:' key (e.g. run: SIT)")
    for key in exp:
        if key not in EXPERIMENT_KEYS:
            raise FrontDoorError(f"{path}: experiment {name!r}: unknown key {key!r}{did_you_mean(key, EXPERIMENT_KEYS)} "
                                 f"(expected some of {list(EXPERIMENT_KEYS)})")
    if exp.get("stop") is not None and not isinstance(exp["stop"], dict):
        raise FrontDoorError(f"{path}: experiment {name!r}: 'stop:' is {exp['stop']!r}; expected a mapping like "
                             "{training_iteration: 10}")
    if exp.get("config") is not None and not isinstance(exp["config"], dict):
        raise FrontDoorError(f"{path}: experiment {name!r}: 'config:' is {exp['config']!r}; expected a mapping of "
                             "algorithm settings")


def registered_algorithms() -> List[str]:
    from rllib_sit.algorithms import ALGORITHMS

    return list(ALGORITHMS)


def trainable_class(path: str, name: str, run: Any):
    """The algorithm class of ``run:`` (registered by ``rllib_sit.register_all()`` or RLlib's own)."""
    from ray.tune.registry import get_trainable_cls

    try:
        cls = get_trainable_cls(run) if isinstance(run, str) else None
    except Exception:  # noqa: BLE001 - Tune raises TuneError / ValueError for unknown names
        cls = None
    if cls is None:
        names = registered_algorithms()
        raise FrontDoorError(f"{path}: experiment {name!r}: run: {run!r} is not a registered algorithm"
                             f"{did_you_mean(run, names)}; registered: {', '.join(names)}")
    return cls


def _grid_axes(value: Any, prefix: Tuple = ()) -> List[Tuple[Tuple, List[Any]]]:
    """``[(key path, values)]`` of every ``{"grid_search": [...]}`` in a nested config."""
    if isinstance(value, dict):
        if "grid_search" in value:
            return [(prefix, list(value["grid_search"]))]
        out = []
        for k, v in value.items():
            out += _grid_axes(v, prefix + (k,))
        return out
    return []


def _set(d: Dict[str, Any], keys: Tuple, value: Any) -> None:
    for k in keys[:-1]:
        d = d[k]
    d[keys[-1]] = value


def grid_points(config: Dict[str, Any]) -> List[Tuple[str, Dict[str, Any]]]:
    """Every point of the config's ``grid_search`` axes: ``[(label, config)]`` (one point without axes)."""
    axes = _grid_axes(config)
    points = []
    for values in itertools.product(*(v for _, v in axes)):
        point = copy.deepcopy(config)
        for (keys, _), v in zip(axes, values):
            _set(point, keys, v)
        label = ", ".join(f"{'/'.join(map(str, keys))}={v!r}" for (keys, _), v in zip(axes, values))
        points.append((label, point))
    return points


def build_config(path: str, name: str, cls, config: Dict[str, Any]):
    """The algorithm config of every grid point, built with ``update_from_dict`` and validated."""
    import logging

    configs = []
    # RLlib's one-time "running on the new API stack" warning is not news at the front door.
    rllib_log = logging.getLogger("ray.rllib.algorithms.algorithm_config")
    level = rllib_log.level
    rllib_log.setLevel(logging.ERROR)
    try:
        for label, point in grid_points(config):
            configs.append(_build_point(path, name, cls, label, point))
    finally:
        rllib_log.setLevel(level)
    return configs


def _build_point(path: str, name: str, cls, label: str, point: Dict[str, Any]):
    where = f"{path}: experiment {name!r}" + (f" (grid point {label})" if label else "")
    try:
        cfg = cls.get_default_config()
        cfg.update_from_dict(point)
        cfg.validate()
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        msg = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        raise FrontDoorError(f"{where}: {msg}") from None
    return cfg


def check_dataset(path: str, name: str, config: Dict[str, Any]) -> None:
    """``input_`` must exist (even beside a ``dataset:`` spec) and be a dataset of the config's env."""
    for label, point in grid_points(config):
        where = f"{path}: experiment {name!r}" + (f" (grid point {label})" if label else "")
        check_input(where, point.get("input", point.get("input_")), point.get("env"), point.get("dataset"))


def check_input(where: str, inp: Any, env: Any, dataset: Any = None) -> None:
    """One ``input_``: a local folder must exist; a dataset's env must be ``env`` (metadata only)."""
    from rllib_sit.data.episode_store import check_dataset_env, has_scheme, missing_input_message
    from rllib_sit.data.validation import DatasetError

    if isinstance(inp, (list, tuple)):
        inp = inp[0] if inp else None
    if not isinstance(inp, str) or not inp or inp == "sampler":
        return
    local = os.path.expanduser(inp)
    if not has_scheme(inp) and not os.path.exists(local):
        raise FrontDoorError(missing_input_message(inp, dataset, where))
    try:
        check_dataset_env(inp if has_scheme(inp) else os.path.abspath(local), env, where)
    except DatasetError as e:
        raise FrontDoorError(f"{where}: input_: {e}") from None
    except ValueError as e:
        raise FrontDoorError(str(e)) from None


# Result keys a stop criterion usually names (Tune's and RLlib's); a criterion Tune never finds in a
# result is ignored with a warning, so a misspelt one would train forever.
STOP_KEYS = ("training_iteration", "time_total_s", "time_since_restore", "iterations_since_restore",
             "timesteps_total", "episodes_total", "num_env_steps_sampled_lifetime",
             "evaluation/env_runners/episode_return_mean", "evaluation/env_runners/win_rate") + tuple(
    # Both evaluation passes (rllib_sit.algorithms.common.evaluation.pass_key; not imported: no Ray here).
    f"evaluation/env_runners/{k}_{p}" for p in ("greedy", "sampled") for k in ("episode_return_mean", "win_rate"))


def check_stop(path: str, name: str, stop: Any) -> None:
    """``stop:`` (with ``--stop`` merged in): a mapping of result keys to numbers; a key close to a
    common one but not it is an error naming the closest."""
    if not isinstance(stop, dict):
        raise FrontDoorError(f"{path}: experiment {name!r}: stop: {stop!r}; expected a mapping like "
                             "{training_iteration: 10}")
    for key, value in stop.items():
        if key not in STOP_KEYS and did_you_mean(key, STOP_KEYS):
            raise FrontDoorError(f"{path}: experiment {name!r}: stop key {key!r} is not a result key"
                                 f"{did_you_mean(key, STOP_KEYS)}")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise FrontDoorError(f"{path}: experiment {name!r}: stop {key}={value!r} is invalid; expected a number")


def check_experiments(path: str, experiments: Dict[str, Dict[str, Any]],
                      configs: Dict[str, Dict[str, Any]], check_datasets: bool = True,
                      stops: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Check every experiment (keys were checked when the YAML was read); ``configs``: each one's
    merged config (``env`` included); ``stops``: each one's merged stop criteria. Returns
    ``{name: algorithm class}``."""
    classes = {}
    for name, exp in experiments.items():
        classes[name] = cls = trainable_class(path, name, exp["run"])
        if stops is not None:
            check_stop(path, name, stops[name])
        config = configs[name]
        if hasattr(cls, "get_default_config"):
            build_config(path, name, cls, config)
        if check_datasets:
            check_dataset(path, name, config)
    return classes


_EXCEPTION_LINE = re.compile(r"^(?:\w+\.)*(\w*(?:Error|Exception|Interrupt)): (.+)$")
_DURING = "During handling of the above exception, another exception occurred"


def error_line(error: Optional[BaseException]) -> str:
    """One line of a trial's error: the root cause's ``<Type>: <message>`` (e.g. the ``DatasetError``),
    not Ray's traceback. Ray wraps a trial's exception with the remote traceback as text (and, when
    it fails while reporting an error raised in a constructor, adds its own error after it), so the
    line is read from that text: a ``DatasetError`` if there is one, else the first exception of
    the chain's last line."""
    if error is None:
        return ""
    for exc in (getattr(error, "cause", None), error):  # the exception itself when its message is one line
        msg = str(exc).strip() if isinstance(exc, BaseException) else ""
        if msg and "\n" not in msg and not _EXCEPTION_LINE.match(msg):
            return f"{type(exc).__name__}: {msg}"
    text = str(error)
    found = [m for m in (_EXCEPTION_LINE.match(ln.strip()) for ln in text.splitlines()) if m]
    for m in reversed(found):
        if m.group(1) == "DatasetError":
            return f"{m.group(1)}: {m.group(2)}"
    first_cause = [m for m in (_EXCEPTION_LINE.match(ln.strip()) for ln in text.split(_DURING)[0].splitlines()) if m]
    if first_cause:
        return f"{first_cause[-1].group(1)}: {first_cause[-1].group(2)}"
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else type(error).__name__


# ------------------------------------------------------------------------------------------------
# rllib-sit benchmark: the plan's configs, before Ray starts or a dataset is generated
# ------------------------------------------------------------------------------------------------

def _known_settings(cfg) -> List[str]:
    return sorted(set(getattr(cfg, "_settings", None) or ()) | {k for k in vars(cfg) if not k.startswith("_")})


def check_config_keys(config: Dict[str, Any], where: str = "--config") -> None:
    """Every key must be a setting of at least one registered algorithm (or RLlib's): a misspelt
    key is one error naming the closest known one (the benchmark gives each algorithm the keys it has)."""
    from rllib_sit.experiments.plan import default_config

    defaults = [default_config(name) for name in registered_algorithms()]
    known = sorted({k for cfg in defaults for k in _known_settings(cfg)})
    for key in config:
        if not any(hasattr(cfg, key) for cfg in defaults):
            raise FrontDoorError(f"{where}: unknown setting {key!r} (no registered algorithm has it)"
                                 f"{did_you_mean(key, known)}")


def check_plan(plan) -> None:
    """``rllib-sit benchmark``: every algorithm variant's config is built (``update_from_dict``) and
    ``validate()``-d on its first map, before Ray starts or a dataset is generated (none is read)."""
    import logging

    from rllib_sit.experiments.plan import default_config

    firsts = {}
    for cell in plan.cells:
        firsts.setdefault(cell.algo.label, cell)
    rllib_log = logging.getLogger("ray.rllib.algorithms.algorithm_config")
    level = rllib_log.level
    rllib_log.setLevel(logging.ERROR)
    try:
        for label, cell in firsts.items():
            try:
                cfg = default_config(cell.algo.name)
                cfg.update_from_dict(plan.cell_config(cell))
                cfg.environment(cell.dataset.map)
                cfg.validate()
            except (ValueError, TypeError, KeyError, AttributeError) as e:
                msg = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
                raise FrontDoorError(f"benchmark: algorithm {label} (on {cell.dataset.map}): {msg}") from None
    finally:
        rllib_log.setLevel(level)


# ------------------------------------------------------------------------------------------------
# rllib evaluate: the checkpoint's config, before the algorithm is built
# ------------------------------------------------------------------------------------------------

def check_checkpoint_config(path: str, state: Dict[str, Any], episodes: Any) -> None:
    """``rllib evaluate``: ``--episodes`` >= 1, the checkpoint's config rebuilt and ``validate()``-d,
    and its dataset (its env's metadata and sizes come from it) still there and of its env."""
    from ray.rllib.algorithms.algorithm_config import AlgorithmConfig

    if not isinstance(episodes, int) or isinstance(episodes, bool) or episodes < 1:
        raise FrontDoorError(f"--episodes {episodes!r} is invalid; expected an int >= 1")
    try:
        cfg = AlgorithmConfig.from_state(dict(state))
        cfg.validate()
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        msg = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        raise FrontDoorError(f"{path}: the checkpoint's config: {msg}") from None
    check_input(f"{path}: the checkpoint's dataset", getattr(cfg, "input_", None), cfg.env,
                getattr(cfg, "dataset", None))
