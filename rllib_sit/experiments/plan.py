"""The cells of a benchmark: algorithm (variant) × dataset (map, quality) × seed, with their settings.

An algorithm is named as registered (``SIT``, ``MABC``, ...) or as a variant with config
overrides in brackets: ``SIT[prioritized=False]``, ``SIT[alpha=5,beta=0.1]``. ``|`` lists
alternatives, expanded to every combination: ``SIT[alpha=0.2|1|5,eta=1|2]`` is six variants.
Values are YAML scalars (``False``, ``0.2``, ``none`` stays the string "none").

A map is a registered ``family:scenario`` (its datasets are generated from the data specs on
first use, one per quality) or a dataset folder/URI (its card names the map and the quality).
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import os
import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

from rllib_sit.experiments import profiles as P

_VARIANT = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)(?:\[(.*)\])?$")


@dataclass(frozen=True)
class AlgoSpec:
    """A registered algorithm with config overrides; ``label`` is its name in tables and files."""

    label: str
    name: str
    overrides: Tuple[Tuple[str, Any], ...] = ()

    @property
    def config(self) -> Dict[str, Any]:
        return dict(self.overrides)


def _yaml_value(text: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def parse_algorithms(texts: Sequence[str], registered: Optional[Sequence[str]] = None) -> List[AlgoSpec]:
    """``["SIT", "SIT[alpha=0.2|5]"]`` -> AlgoSpecs (alternatives expanded), checked against the registry."""
    if registered is None:
        from rllib_sit.algorithms import ALGORITHMS

        registered = list(ALGORITHMS)
    out: List[AlgoSpec] = []
    for text in texts:
        m = _VARIANT.match(text.strip())
        if not m:
            raise ValueError(f"--algos: {text!r} is invalid; expected NAME or NAME[key=value,...], "
                             "e.g. SIT[prioritized=False]")
        name, body = m.group(1), m.group(2)
        if name not in registered:
            raise ValueError(f"--algos: {name!r} is not a registered algorithm; expected one of {sorted(registered)} "
                             "(rllib_sit.algorithms.ALGORITHMS)")
        if body is None or not body.strip():
            out.append(AlgoSpec(label=name, name=name))
            continue
        keys, choices = [], []
        for item in body.split(","):
            if "=" not in item:
                raise ValueError(f"--algos: {text!r}: {item!r} is not key=value")
            k, v = item.split("=", 1)
            keys.append(k.strip())
            choices.append([a.strip() for a in v.split("|")])
        if len(set(keys)) != len(keys):
            raise ValueError(f"--algos: {text!r} sets a key twice")
        for combo in itertools.product(*choices):
            label = f"{name}[{','.join(f'{k}={v}' for k, v in zip(keys, combo))}]"
            out.append(AlgoSpec(label=label, name=name,
                                overrides=tuple((k, _yaml_value(v)) for k, v in zip(keys, combo))))
    labels = [a.label for a in out]
    dup = sorted({x for x in labels if labels.count(x) > 1})
    if dup:
        raise ValueError(f"--algos: {dup} given more than once")
    return out


def check_overrides(spec: AlgoSpec) -> None:
    """Every override names a setting of the algorithm's config (``SIT[alhpa=1]`` fails here)."""
    cfg = default_config(spec.name)
    for k, _ in spec.overrides:
        if not hasattr(cfg, k):
            raise ValueError(f"--algos {spec.label}: {spec.name} has no setting {k!r} "
                             f"(its own settings: {sorted(getattr(cfg, '_training_keys', ()))})")


@functools.lru_cache(maxsize=None)
def _default_config(name: str):
    import importlib

    from rllib_sit.algorithms import ALGORITHMS

    module, cls = ALGORITHMS[name]
    return getattr(importlib.import_module(module), cls).get_default_config()


def default_config(name: str):
    """A fresh default config of the registered algorithm ``name``."""
    return _default_config(name).copy(copy_frozen=False)


@dataclass(frozen=True)
class DatasetRef:
    """One dataset: a registered map's quality (``path`` None until generated) or a given folder/URI."""

    map: str
    quality: str
    episodes: Optional[int] = None
    seed: int = 0
    path: Optional[str] = None
    continuous: bool = False
    given: bool = False  # True: a dataset path the user gave (never generated)

    def resolve(self, progress: bool = True) -> str:
        """The dataset folder, generated (once, cached) for a registered map."""
        if self.given:
            return self.path
        from rllib_sit.data.generation import ensure_dataset

        return str(ensure_dataset(self.map, self.quality, n_episodes=int(self.episodes), seed=int(self.seed),
                                  progress=progress))

    def cache_path(self) -> str:
        if self.given:
            return self.path
        from rllib_sit.data.generation import dataset_path

        return str(dataset_path(self.map, self.quality, int(self.episodes), int(self.seed)))


def _is_dataset_ref(text: str) -> bool:
    return "://" in text or os.path.isdir(os.path.expanduser(text))


def parse_datasets(maps: Sequence[str], qualities: Sequence[str], episodes: int, seed: int = 0) -> List[DatasetRef]:
    """Maps × qualities -> datasets. A dataset folder/URI stands for itself (its card's map/quality)."""
    out: List[DatasetRef] = []
    for m in maps:
        if _is_dataset_ref(m):
            out.append(given_dataset(m))
            continue
        from rllib_sit.data.composition import env_spec
        from rllib_sit.envs.registry import parse_env_id

        parse_env_id(m)
        try:
            spec = env_spec(m)
        except (KeyError, ValueError):
            raise ValueError(f"--maps: {m!r} is neither a dataset folder nor a map with data specs "
                             f"(rllib_sit/resources/specs/*.yaml); the paper's maps: {list(P.PAPER_MAPS)}") from None
        for q in qualities:
            if q not in spec.datasets:
                raise ValueError(f"--qualities: {m} has no dataset quality {q!r}; expected some of "
                                 f"{sorted(spec.datasets)}")
            out.append(DatasetRef(map=m, quality=q, episodes=int(episodes), seed=int(seed),
                                  continuous=P.is_continuous_map(m)))
    keys = [(d.map, d.quality) for d in out]
    dup = sorted({k for k in keys if keys.count(k) > 1})
    if dup:
        raise ValueError(f"--maps: two datasets share map and quality {dup}; results could not be told apart")
    return out


def given_dataset(ref: str) -> DatasetRef:
    """A dataset folder/URI: map, quality, size and action space from its card and metadata."""
    from rllib_sit.data.card import read_card
    from rllib_sit.data.episode_store import dataset_env_info, has_scheme

    path = ref if has_scheme(ref) else os.path.abspath(os.path.expanduser(ref))
    info = dataset_env_info(path)
    card = read_card(path) if not has_scheme(path) else {}
    return DatasetRef(map=info.env_id, quality=str(card.get("quality") or os.path.basename(path.rstrip("/"))),
                      episodes=card.get("n_episodes"), seed=int(card.get("seed") or 0), path=path,
                      continuous=not info.discrete, given=True)


@dataclass(frozen=True)
class Cell:
    algo: AlgoSpec
    dataset: DatasetRef
    seed: int

    @property
    def key(self) -> Tuple[str, str, str, int]:
        return (self.algo.label, self.dataset.map, self.dataset.quality, int(self.seed))


@dataclass
class Plan:
    """Everything a benchmark run does, and the settings each cell's result depends on."""

    cells: List[Cell]
    lengths: Dict[str, Dict[str, int]]  # algorithm label -> config settings of its length
    eval_points: int
    eval_episodes: int
    config: Dict[str, Any] = field(default_factory=dict)  # --config: for every algorithm that has the setting
    profile: Optional[str] = None
    command: str = ""
    skipped: List[str] = field(default_factory=list)  # (algorithm, map) pairs that cannot run
    profile_settings: Dict[str, Dict[str, Any]] = field(default_factory=dict)  # label -> the profile's settings

    @property
    def algorithms(self) -> List[AlgoSpec]:
        return list({c.algo.label: c.algo for c in self.cells}.values())

    @property
    def datasets(self) -> List[DatasetRef]:
        return list({(d.map, d.quality): d for d in (c.dataset for c in self.cells)}.values())

    def cell_config(self, cell: Cell) -> Dict[str, Any]:
        """The config settings this benchmark sets for ``cell`` (on top of the algorithm's defaults):
        its lengths, the profile's settings, ``--config``, the variant's overrides (each over the
        ones before), and the policy phase's updates per iteration (one evaluation after each:
        ``eval_points`` of them)."""
        cfg: Dict[str, Any] = dict(self.lengths[cell.algo.label])
        cfg.update(self.profile_settings.get(cell.algo.label, {}))
        defaults = _default_config(cell.algo.name)
        cfg.update({k: v for k, v in self.config.items() if hasattr(defaults, k)})
        cfg.update(cell.algo.config)
        key, per_it = P.policy_keys(cell.algo.name)
        cfg[per_it] = P.policy_iteration_size(cfg[key], self.eval_points)
        return cfg

    def run_order(self, cells: Sequence[Cell]) -> List[Cell]:
        """``cells`` longest first (their estimated trial time; ties keep the plan's order): the
        order the runner queues one experiment in, so that short cells fill the CPUs at the end
        instead of one long cell running alone."""
        cost = {c.key: P.estimate_seconds([(c.algo.name, self.cell_config(c))], self.eval_points,
                                          self.eval_episodes)["trials_s"] for c in cells}
        return sorted(cells, key=lambda c: -cost[c.key])

    def settings(self, cell: Cell) -> Dict[str, Any]:
        """What a finished cell's numbers depend on beyond its key (compared when resuming)."""
        d = cell.dataset
        return {"config": {k: v for k, v in sorted(self.cell_config(cell).items())},
                "dataset": d.path if d.given else {"episodes": d.episodes, "seed": d.seed},
                "eval_points": self.eval_points, "eval_episodes": self.eval_episodes}

    def settings_hash(self, cell: Cell) -> str:
        return hashlib.sha1(json.dumps(self.settings(cell), sort_keys=True, default=str).encode()).hexdigest()[:12]

    def estimate(self, concurrent: int = 1, datasets_to_generate: Optional[int] = None) -> Dict[str, float]:
        gen = datasets_to_generate
        if gen is None:
            gen = sum(1 for d in self.datasets if not d.given and not os.path.exists(
                os.path.join(d.cache_path(), "card.json")))
        eps = max([d.episodes or 0 for d in self.datasets] or [0])
        return P.estimate_seconds([(c.algo.name, self.cell_config(c)) for c in self.cells], self.eval_points,
                                  self.eval_episodes, gen, eps, concurrent)

    def describe(self) -> str:
        """Human-readable summary: cells, lengths, evaluation schedule."""
        lines = [f"{len(self.cells)} cells = {len(self.algorithms)} algorithm(s) x {len(self.datasets)} dataset(s) "
                 f"x {len({c.seed for c in self.cells})} seed(s)"
                 + (f" (profile {self.profile})" if self.profile else "")]
        for d in self.datasets:
            src = d.path if d.given else f"{d.episodes} episodes, dataset seed {d.seed}"
            lines.append(f"  dataset {d.map} {d.quality}: {src}")
        for a in self.algorithms:
            cfg = self.cell_config(next(c for c in self.cells if c.algo.label == a.label))
            lines.append(f"  {a.label}: " + ", ".join(f"{k}={v}" for k, v in cfg.items()))
        lines.append(f"  seeds {sorted({c.seed for c in self.cells})}; evaluation: {self.eval_episodes} greedy "
                     f"episodes after each of {self.eval_points} equal parts of the policy updates")
        lines += [f"  skipped: {s}" for s in self.skipped]
        return "\n".join(lines)

    def to_json(self) -> Dict[str, Any]:
        return {"profile": self.profile, "command": self.command, "eval_points": self.eval_points,
                "eval_episodes": self.eval_episodes, "config": self.config, "lengths": self.lengths,
                "profile_settings": self.profile_settings,
                "algorithms": {a.label: {"name": a.name, "overrides": a.config} for a in self.algorithms},
                "datasets": [{"map": d.map, "quality": d.quality, "episodes": d.episodes, "seed": d.seed,
                              "path": d.path} for d in self.datasets],
                "seeds": sorted({c.seed for c in self.cells}), "cells": len(self.cells), "skipped": self.skipped}


def parse_updates(texts: Sequence[str]) -> Tuple[Optional[int], Dict[str, Dict[str, int]]]:
    """``--updates 500 SIT=300 SIT.ardnem_updates=200`` -> (500, {"SIT": {"agent_updates": 300, "ardnem_updates": 200}}).

    A bare number sets every algorithm's policy-phase length (``agent_updates``; OMAC's
    ``policy_updates``); ``NAME=N`` one algorithm's; ``NAME.setting=N`` any length setting (e.g.
    SIT's ``ardnem_updates``, OMAC's ``value_updates``). NAME is a registered name or a variant label.
    """
    default: Optional[int] = None
    per: Dict[str, Dict[str, int]] = {}
    for t in texts or ():
        try:
            if "=" not in t:
                default = int(t)
                continue
            lhs, v = t.split("=", 1)
            algo, _, key = lhs.partition(".")
            per.setdefault(algo, {})[key or "agent_updates"] = int(v)
        except ValueError:
            raise ValueError(f"--updates: {t!r} is invalid; expected N, ALGO=N or ALGO.setting=N "
                             "(e.g. 500, MABC=1000, SIT.ardnem_updates=300)") from None
    for algo, d in per.items():
        for k, v in d.items():
            if v < 0:
                raise ValueError(f"--updates: {algo}.{k}={v} is invalid; expected an int >= 0")
    if default is not None and default < 1:
        raise ValueError(f"--updates: {default} is invalid; expected an int >= 1")
    return default, per


def algorithm_lengths(spec: AlgoSpec, prof: P.Profile, default_updates: Optional[int] = None,
                      per_algo: Optional[Dict[str, Dict[str, int]]] = None) -> Dict[str, int]:
    """Effective length settings of ``spec``: its defaults, then the profile's, then ``--updates``."""
    cfg = default_config(spec.name)
    key, per_it = P.policy_keys(spec.name)
    for k in (key, per_it):
        if not hasattr(cfg, k):
            raise ValueError(f"{spec.name}: the benchmark expects a policy-phase length setting {k!r}; declare "
                             "its settings in rllib_sit.experiments.profiles.POLICY_PHASE")
    keys = (key,) + P.PRETRAIN_KEYS.get(spec.name, ())
    out = {k: int(getattr(cfg, k)) for k in keys if hasattr(cfg, k)}
    out.update(prof.lengths(spec.name))
    if default_updates is not None:
        out[key] = int(default_updates)
    per_algo = per_algo or {}
    for src in (per_algo.get(spec.name, {}), per_algo.get(spec.label, {})):
        for k, v in src.items():
            k = key if k == "agent_updates" else k
            if not hasattr(cfg, k):
                raise ValueError(f"--updates: {spec.name} has no setting {k!r}")
            out[k] = int(v)
    return out


def _setting_names(name: str) -> List[str]:
    """The settings of registered algorithm ``name``: its own and RLlib's (its config's attributes)."""
    cfg = _default_config(name)
    return sorted(set(getattr(cfg, "_settings", None) or ()) | {k for k in vars(cfg) if not k.startswith("_")})


def config_key_message(key: str, names: Sequence[str]) -> str:
    """``--config`` key that none of the plan's algorithms ``names`` has (one line): the closest
    setting they have, and which registered algorithms have the key."""
    from rllib_sit.algorithms import ALGORITHMS
    from rllib_sit.algorithms.common.settings import closest

    best = closest(key, [k for n in names for k in _setting_names(n)])
    owners = [n for n in ALGORITHMS if n not in names and hasattr(_default_config(n), key)]
    msg = f"--config: unknown setting {key!r} for the plan's algorithms {list(names)}"
    msg += f" (a setting of {', '.join(owners)}, not in --algos)" if owners else " (no registered algorithm has it)"
    if best:
        return f"{msg}; did you mean {best!r}?"
    return msg + (f"; drop it, or add {' or '.join(owners)} to --algos" if owners else "; drop it")


def build_plan(profile: Optional[str] = None, *, algos: Optional[Sequence[str]] = None,
               maps: Optional[Sequence[str]] = None, qualities: Optional[Sequence[str]] = None,
               seeds: Optional[Sequence[int]] = None, episodes: Optional[int] = None,
               updates: Optional[Sequence[str]] = None, eval_points: Optional[int] = None,
               eval_episodes: Optional[int] = None, config: Optional[Dict[str, Any]] = None,
               dataset_seed: Optional[int] = None, command: str = "") -> Plan:
    """The plan of a profile (default ``paper``) with explicit overrides."""
    from rllib_sit.algorithms import ALGORITHMS

    prof = P.get_profile(profile or "paper")
    algo_names = list(algos) if algos else list(prof.algorithms or [a for a in P.TABLE1_ALGORITHMS if a in ALGORITHMS])
    specs = parse_algorithms(algo_names)
    for s in specs:
        check_overrides(s)
    datasets = parse_datasets(list(maps or prof.maps), list(qualities or prof.qualities),
                              int(episodes if episodes is not None else prof.episodes),
                              int(dataset_seed if dataset_seed is not None else prof.dataset_seed))
    seeds = [int(s) for s in (seeds if seeds is not None else prof.seeds)]
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise ValueError(f"--seeds {seeds} is invalid; expected distinct ints >= 0")
    ev_points = int(eval_points if eval_points is not None else prof.eval_points)
    ev_episodes = int(eval_episodes if eval_episodes is not None else prof.eval_episodes)
    if ev_points < 1 or ev_episodes < 1:
        raise ValueError(f"--eval-points {ev_points} / --eval-episodes {ev_episodes}: expected ints >= 1")
    for k in config or {}:
        if not any(hasattr(_default_config(s.name), k) for s in specs):
            raise ValueError(config_key_message(k, sorted({s.name for s in specs})))
    default_updates, per_algo = parse_updates(updates or ())
    unknown = sorted(set(per_algo) - {s.label for s in specs} - {s.name for s in specs})
    if unknown:
        raise ValueError(f"--updates names {unknown}, which are not among the algorithms {[s.label for s in specs]}")
    lengths: Dict[str, Dict[str, int]] = {}
    for s in specs:
        lengths[s.label] = algorithm_lengths(s, prof, default_updates, per_algo)
    cells: List[Cell] = []
    unfit: Dict[str, List[str]] = {}
    for d in datasets:
        for s in specs:
            if not P.algorithm_fits_map(s.name, d.continuous):
                maps_ = unfit.setdefault(s.label, [])
                if d.map not in maps_:
                    maps_.append(d.map)
                continue
            cells += [Cell(s, d, seed) for seed in seeds]
    skipped = [f"{lab} on {', '.join(m)} (its config rejects {'discrete' if P.algorithm_fits_map(lab, True) else 'continuous'}"
               " actions)" for lab, m in unfit.items()]
    if not cells:
        raise ValueError(f"the benchmark has no cell to run: {'; '.join(skipped)}")
    return Plan(cells=cells, lengths=lengths, eval_points=ev_points, eval_episodes=ev_episodes,
                config=dict(config or {}), profile=prof.name, command=command, skipped=skipped,
                profile_settings={s.label: dict(prof.settings[s.name]) for s in specs if s.name in prof.settings})
