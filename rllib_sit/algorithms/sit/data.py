"""Dataset access for SIT: resolve the dataset path (generating it on first use) and open the
columns SIT needs as memory maps (one copy in the OS page cache, shared by every process)."""

from __future__ import annotations

import os
from typing import Dict, List, Optional, Tuple

import numpy as np

from rllib_sit.data import schema as S
from rllib_sit.envs.base import EnvInfo

# Columns SIT reads (Stage I needs state + reward; DPER needs obs/actions/masks/flags).
SIT_COLUMNS = [S.OBS, S.STATE, S.ACTIONS, S.REWARD, S.TERMINATED, S.FILLED, S.LENGTH, S.EPISODE_ID]

_META_CACHE: Dict[str, EnvInfo] = {}


def resolve_dataset_path(config) -> str:
    """``config.input_`` if it exists; else the cached/generated dataset named by ``config.dataset``.

    ``config.dataset = {"quality": "low", "episodes": 10000, "seed": 0}`` goes through
    ``rllib_sit.data.generation.ensure_dataset(config.env, ...)`` (generated with progress on first
    use, cached under ``offline_data/datasets/``).
    """
    path = config.input_
    if isinstance(path, (list, tuple)):
        path = path[0] if path else None
    if isinstance(path, str) and path and path != "sampler":
        path = os.path.expanduser(path)
        if os.path.exists(path):
            return os.path.abspath(path)
        if not config.dataset:
            raise FileNotFoundError(f"SIT: offline_data(input_={path!r}) does not exist and no "
                                    f"training(dataset={{'quality': ...}}) is given to generate it")
    if not config.dataset:
        raise ValueError("SIT: no dataset; set .offline_data(input_=<dataset folder>) or "
                         ".training(dataset={'quality': 'low', 'episodes': 10000})")
    if not isinstance(config.env, str):
        raise ValueError(f"SIT: dataset generation needs a registered env id string, got env={config.env!r}")
    try:
        from rllib_sit.data.generation import ensure_dataset
    except ImportError as e:  # generator not available in this checkout
        raise FileNotFoundError(f"SIT: cannot generate dataset {config.dataset} for {config.env}: {e}") from None
    d = dict(config.dataset)
    return ensure_dataset(config.env, d.get("quality", "low"), n_episodes=int(d.get("episodes", 10000)),
                          seed=int(d.get("seed", 0)))


def dataset_env_info(path: str) -> EnvInfo:
    if path not in _META_CACHE:
        from rllib_sit.data import read_dataset

        _META_CACHE[path] = read_dataset(path, validate="schema").meta.env
    return _META_CACHE[path]


def sit_columns(info: EnvInfo) -> List[str]:
    return list(SIT_COLUMNS) + ([S.AVAIL_ACTIONS] if info.discrete else [])


def open_episode_columns(path: str, validate: str = "full", cache_root: Optional[str] = None,
                         progress: bool = False) -> Tuple[EnvInfo, Dict[str, np.ndarray], str]:
    """The SIT columns of every episode as read-only memory maps, and the cache folder holding them.

    Built on first use from the Parquet shards (values validated while streaming when
    ``validate="full"``), then shared by every process that opens the folder (see
    :mod:`rllib_sit.data.column_cache`): the dataset is never copied into RAM or the object store.
    """
    from rllib_sit.data import read_dataset
    from rllib_sit.data.column_cache import cache_dir_for, open_columns

    ds = read_dataset(path, validate="none" if validate == "none" else "schema")
    _META_CACHE[path] = ds.meta.env
    cols = sit_columns(ds.meta.env)
    episodes = open_columns(ds, cols, root=cache_root, validate=validate == "full", progress=progress)
    return ds.meta.env, episodes, str(cache_dir_for(ds, cols, cache_root))


def load_episodes(path: str, validate: str = "full") -> Tuple[EnvInfo, Dict[str, np.ndarray]]:
    """All episodes of the dataset, columns SIT needs, ``{col: [K, ...]}`` (memory-mapped, read-only)."""
    info, episodes, _ = open_episode_columns(path, validate)
    return info, episodes


def flatten_filled(episodes: Dict[str, np.ndarray], idx: np.ndarray) -> Dict[str, np.ndarray]:
    """Timesteps (only real ones) of episodes ``idx``: obs [n, N, od], actions, state [n, S], reward [n]."""
    filled = episodes[S.FILLED][idx].astype(bool)
    T = filled.shape[1]
    return {
        S.OBS: episodes[S.OBS][idx, :T][filled],
        S.ACTIONS: episodes[S.ACTIONS][idx][filled],
        S.STATE: episodes[S.STATE][idx, :T][filled],
        S.REWARD: episodes[S.REWARD][idx][filled].astype(np.float32),
    }
