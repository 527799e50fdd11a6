"""One store of episodes per dataset: its metadata and its columns as read-only memory maps.

Every offline algorithm opens its dataset once through :meth:`EpisodeStore.open`; samplers running
as Ray actors open the same column-cache folder (:attr:`EpisodeStore.cache_dir`) themselves, so the
episodes exist once, in the OS page cache, whatever the number of processes.

:func:`resolve_dataset` turns an algorithm's dataset reference into a path or URI: an existing
local folder, a remote URI (``s3://``, ``gs://``, ``file://``; read through Ray Data into the same
local column cache), or a ``{"quality", "episodes", "seed"}`` spec generated on first use.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional

import numpy as np

from rllib_sit.data import schema as S
from rllib_sit.envs.base import EnvInfo

# The columns every algorithm trains from (+ avail_actions for discrete envs). One list, so that
# all algorithms on one dataset share one column cache.
TRAINING_COLUMNS = [S.OBS, S.STATE, S.ACTIONS, S.REWARD, S.TERMINATED, S.FILLED, S.LENGTH, S.EPISODE_ID]
DATASET_SPEC_KEYS = ("quality", "episodes", "seed")

_META_CACHE: Dict[str, EnvInfo] = {}


def has_scheme(ref: str) -> bool:
    """``s3://...``, ``gs://...``, ``file://...``: a URI rather than a local path."""
    return isinstance(ref, str) and "://" in ref


def check_dataset_spec(spec: Any, where: str = "dataset") -> None:
    """Raise ``ValueError`` naming ``where`` unless ``spec`` is ``None`` or a valid generation spec."""
    if spec is None:
        return
    if not isinstance(spec, Mapping):
        raise ValueError(f"{where}={spec!r} is invalid; expected a dict like "
                         "{'quality': 'low', 'episodes': 10000, 'seed': 0}")
    unknown = set(spec) - set(DATASET_SPEC_KEYS)
    if unknown:
        raise ValueError(f"{where} has unknown keys {sorted(unknown)}; expected some of {list(DATASET_SPEC_KEYS)}")
    if not isinstance(spec.get("quality", "low"), str):
        raise ValueError(f"{where}['quality']={spec.get('quality')!r} is invalid; expected a quality name, e.g. 'low'")
    for key, low in (("episodes", 1), ("seed", 0)):
        v = spec.get(key, low)
        if not isinstance(v, int) or isinstance(v, bool) or v < low:
            raise ValueError(f"{where}[{key!r}]={v!r} is invalid; expected an int >= {low}")


def resolve_dataset(input_: Any, dataset: Optional[Mapping[str, Any]], env_id: Any, who: str = "offline") -> str:
    """The dataset path or URI an algorithm reads.

    ``input_`` (``config.offline_data(input_=...)``), a URI or a folder, wins whenever it is given:
    a folder that does not exist is an error even when ``dataset`` is given too (no silent
    fallback to generating data), and a dataset of another env than ``env_id`` is an error
    (:func:`check_dataset_env`). Without ``input_``, ``dataset`` (``config.training(dataset={...})``)
    is generated for ``env_id`` on first use and cached (``rllib_sit.data.generation.ensure_dataset``).
    """
    path = input_
    if isinstance(path, (list, tuple)):
        path = path[0] if path else None
    if isinstance(path, str) and path and path != "sampler":
        if not has_scheme(path):
            path = os.path.expanduser(path)
            if not os.path.exists(path):
                raise FileNotFoundError(missing_input_message(path, dataset, who))
            path = os.path.abspath(path)
        check_dataset_env(path, env_id, who)
        return path
    if not dataset:
        raise ValueError(f"{who}: no dataset; set .offline_data(input_=<dataset folder or URI>) or "
                         ".training(dataset={'quality': 'low', 'episodes': 10000})")
    if not isinstance(env_id, str):
        raise ValueError(f"{who}: dataset generation needs a registered env id string, got env={env_id!r}")
    check_dataset_spec(dataset)
    from rllib_sit.data.generation import ensure_dataset

    d = dict(dataset)
    return str(ensure_dataset(env_id, d.get("quality", "low"), n_episodes=int(d.get("episodes", 10000)),
                              seed=int(d.get("seed", 0))))


def missing_input_message(path: str, dataset: Any, who: str) -> str:
    """The error of an ``input_`` folder that does not exist (naming the ``dataset`` spec it would hide)."""
    if dataset:
        return (f"{who}: input_={path!r} does not exist; input_ wins over dataset={dict(dataset)!r}, so nothing is "
                f"generated: fix the path, or remove input_ to generate the dataset spec")
    return (f"{who}: input_={path!r} does not exist; expected a dataset folder or URI (or remove input_ and "
            "give dataset={'quality': 'low', 'episodes': 10000} to generate one)")


def env_mismatches(dataset: EnvInfo, env: EnvInfo) -> List[str]:
    """What differs between a dataset's env and the config's: id, agent count/types, obs/state/action sizes."""
    out = []
    pairs = [("env id", dataset.env_id, env.env_id), ("agent count", dataset.n_agents, env.n_agents),
             ("agent types", dataset.agent_types, env.agent_types), ("obs size", dataset.obs_dim, env.obs_dim),
             ("state size", dataset.state_dim, env.state_dim), ("discrete actions", dataset.discrete, env.discrete),
             ("action count" if env.discrete else "action size",
              dataset.n_actions if env.discrete else dataset.act_dim, env.n_actions if env.discrete else env.act_dim)]
    for what, got, want in pairs:
        if got != want:
            out.append(f"{what} {got!r} vs {want!r}")
    return out


def check_dataset_env(path: str, env_id: Any, who: str = "offline") -> None:
    """Raise ``ValueError`` naming both when the dataset at ``path`` was recorded in another env
    than ``env_id`` (compared: id, agent count and types, obs/state/action sizes). Reads the
    dataset's metadata only; an env id the package's registry does not know is compared by name."""
    if not isinstance(env_id, str):
        return
    info = dataset_env_info(path)
    try:
        from rllib_sit.envs.registry import make_env

        env = make_env(env_id)
        env_info = env.info
        env.close()
    except (ValueError, KeyError, ImportError):
        if info.env_id == env_id:
            return
        raise ValueError(f"{who}: the dataset {path} was recorded in {info.env_id}, but the config's env is "
                         f"{env_id}; use a dataset of {env_id} or set env: {info.env_id}") from None
    diff = env_mismatches(info, env_info)
    if diff:
        raise ValueError(f"{who}: the dataset {path} was recorded in another env than the config's "
                         f"({'; '.join(diff)}; dataset vs config); use a dataset of {env_id} or set env: "
                         f"{info.env_id}")


def dataset_env_info(path: str) -> EnvInfo:
    """The dataset's :class:`EnvInfo` (schema metadata only; cached per process)."""
    if path not in _META_CACHE:
        from rllib_sit.data import read_dataset

        _META_CACHE[path] = read_dataset(path, validate="schema").meta.env
    return _META_CACHE[path]


def training_columns(info: EnvInfo) -> List[str]:
    return list(TRAINING_COLUMNS) + ([S.AVAIL_ACTIONS] if info.discrete else [])


@dataclass
class EpisodeStore:
    """A dataset's metadata and its training columns ``{column: memmap [K, ...]}`` (read-only)."""

    path: str
    info: EnvInfo
    columns: Dict[str, np.ndarray]
    cache_dir: str
    _filled_steps: Optional[tuple] = field(default=None, repr=False)

    @classmethod
    def open(cls, path: str, validate: str = "full", cache_root: Optional[str] = None,
             progress: bool = False) -> "EpisodeStore":
        """Open ``path`` (folder or URI), building its column cache on first use (values validated
        while streaming when ``validate="full"``); see :mod:`rllib_sit.data.column_cache`."""
        from rllib_sit.data import read_dataset
        from rllib_sit.data.column_cache import open_column_cache

        ds = read_dataset(path, validate="none" if validate == "none" else "schema")
        _META_CACHE[path] = ds.meta.env
        cols = training_columns(ds.meta.env)
        cache_dir, columns = open_column_cache(ds, cols, root=cache_root, validate=validate == "full",
                                               progress=progress)
        return cls(path=path, info=ds.meta.env, columns=columns, cache_dir=str(cache_dir))

    @property
    def num_episodes(self) -> int:
        return int(self.columns[S.FILLED].shape[0])

    def __getitem__(self, column: str) -> np.ndarray:
        return self.columns[column]

    def filled_steps(self):
        """``(episode, t)`` index arrays of every real step (computed once)."""
        if self._filled_steps is None:
            self._filled_steps = np.nonzero(self.columns[S.FILLED])
        return self._filled_steps

    def flat_steps(self, k: np.ndarray, t: np.ndarray) -> Dict[str, np.ndarray]:
        """Single timesteps ``(k, t)``: obs [n, N, od], actions [n, N(, A)], state [n, S], reward [n]."""
        c = self.columns
        return {S.OBS: c[S.OBS][k, t], S.ACTIONS: c[S.ACTIONS][k, t], S.STATE: c[S.STATE][k, t],
                S.REWARD: c[S.REWARD][k, t].astype(np.float32)}

    def flatten_filled(self, idx: np.ndarray) -> Dict[str, np.ndarray]:
        """Every real timestep of episodes ``idx`` (same keys as :meth:`flat_steps`)."""
        c = self.columns
        filled = c[S.FILLED][idx].astype(bool)
        T = filled.shape[1]
        return {S.OBS: c[S.OBS][idx, :T][filled], S.ACTIONS: c[S.ACTIONS][idx][filled],
                S.STATE: c[S.STATE][idx, :T][filled], S.REWARD: c[S.REWARD][idx][filled].astype(np.float32)}
