"""Memory-mapped column cache of a dataset: random access to every episode without holding it in RAM.

Algorithms that sample episodes uniformly or by priority (SIT's Stage I and DPER) need random
access, which a streaming reader cannot give. :func:`open_columns` streams the Parquet shards once,
batch by batch (validating values on the way if asked), into one ``.npy`` file per column
``[num_episodes, ...]`` and opens them with ``mmap_mode="r"``. Every process that opens the same
cache (the algorithm, the DPER Ray actor) shares one copy of the pages through the OS page cache;
nothing is copied into the Ray object store, and a 10 GB dataset needs no 10 GB of RAM.

The cache folder is named after a fingerprint of the shards (path or URI, shard names, sizes,
mtimes) and the columns, so a rewritten dataset gets a new cache. It is written under a temporary
name and renamed into place when complete: a crash never leaves a half-written cache that looks
valid.

A local dataset (a folder or a ``file://`` URI) is read with pyarrow in this process, the fastest
path on few cores. A remote dataset (``s3://``, ``gs://``, ...) is read through Ray Data
(``ray.data.read_parquet(..., filesystem=...)`` -> ``iter_batches``), with the same validation,
into the same local cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Dict, Iterator, Optional, Sequence, Tuple, Union

import numpy as np

from rllib_sit.data import schema as S
from rllib_sit.data.io import DEFAULT_ROW_GROUP, OfflineDataset, read_dataset, record_batch_to_numpy
from rllib_sit.data.validation import DatasetError, check_batch

MANIFEST = "manifest.json"
# Flag columns are stored as uint8 in Parquet (Arrow tensors have no bool); the cache holds bools.
BOOL_COLUMNS = (S.FILLED, S.TERMINATED)


def cache_root() -> Path:
    """``$RLLIB_SIT_CACHE_DIR`` or ``offline_data/cache/columns`` (ignored by git)."""
    from rllib_sit.data.composition import offline_data_root

    return Path(os.environ.get("RLLIB_SIT_CACHE_DIR") or (offline_data_root() / "cache" / "columns"))


DatasetLike = Union[OfflineDataset, str, os.PathLike]


def _as_dataset(ds: DatasetLike) -> OfflineDataset:
    """An :class:`OfflineDataset`, opening a path or URI with schema validation if given one."""
    return ds if isinstance(ds, OfflineDataset) else read_dataset(ds, validate="schema")


def fingerprint(ds: DatasetLike, columns: Sequence[str]) -> str:
    """Hash of the dataset's path/URI, its shards' names, sizes and mtimes, and the columns."""
    ds = _as_dataset(ds)
    h = hashlib.sha1()
    h.update(json.dumps([S.SCHEMA_VERSION, ds.path, sorted(columns)]).encode())
    for name, size, mtime_ns in ds.shard_stats():
        h.update(f"{name}:{size}:{mtime_ns}".encode())
    return h.hexdigest()[:16]


def cache_dir_for(ds: DatasetLike, columns: Sequence[str], root: Optional[os.PathLike] = None) -> Path:
    """The cache folder of ``columns`` of ``ds`` (an :class:`OfflineDataset`, a path or a URI)."""
    ds = _as_dataset(ds)
    return Path(root or cache_root()) / f"{Path(ds.path).name}-{fingerprint(ds, columns)}"


def load_cache(path: os.PathLike) -> Dict[str, np.ndarray]:
    """Open a complete column cache folder read-only: ``{column: np.memmap [K, ...]}``."""
    path = Path(path)
    manifest = path / MANIFEST
    if not manifest.exists():
        raise DatasetError(f"{path}: not a column cache (no {MANIFEST}); build it with open_columns(dataset)")
    info = json.loads(manifest.read_text())
    return {c: np.load(path / f"{c}.npy", mmap_mode="r") for c in info["columns"]}


def open_columns(ds: DatasetLike, columns: Sequence[str], root: Optional[os.PathLike] = None,
                 validate: bool = True, progress: bool = False) -> Dict[str, np.ndarray]:
    """The ``columns`` of every episode of ``ds`` as read-only memory maps (built on first use).

    A local dataset is streamed with pyarrow; a remote one (``s3://``, ``gs://``...) through Ray
    Data, into the same local cache.

    Args:
        ds: the dataset (see :func:`rllib_sit.data.read_dataset`), or its path or URI.
        columns: column names to cache.
        root: cache root (default :func:`cache_root`).
        validate: check every batch's values (NaN/inf, lengths, action ranges) while building;
            an existing cache was validated when it was built.
        progress: show a progress bar while building.
    """
    return open_column_cache(ds, columns, root, validate, progress)[1]


def open_column_cache(ds: DatasetLike, columns: Sequence[str], root: Optional[os.PathLike] = None,
                      validate: bool = True, progress: bool = False) -> Tuple[Path, Dict[str, np.ndarray]]:
    """:func:`open_columns` and the cache folder it opened (``cache_dir_for``, fingerprinted once)."""
    ds = _as_dataset(ds)
    columns = list(dict.fromkeys(columns))
    ds._check_columns(columns)
    target = cache_dir_for(ds, columns, root)
    if not (target / MANIFEST).exists():
        _build(ds, columns, target, validate, progress)
    return target, load_cache(target)


def _local_batches(ds: OfflineDataset, read_cols: Sequence[str]) -> Iterator[Tuple[int, Dict[str, np.ndarray]]]:
    """``(shard index, batch)`` in file order, read with pyarrow in this process."""
    for i in range(len(ds.files)):
        for rb in ds.parquet_file(i).iter_batches(batch_size=DEFAULT_ROW_GROUP, columns=list(read_cols)):
            yield i, record_batch_to_numpy(rb)


def _ray_data_batches(ds: OfflineDataset, read_cols: Sequence[str]) -> Iterator[Tuple[int, Dict[str, np.ndarray]]]:
    """``(shard index, batch)`` read through Ray Data; every batch is cut at shard boundaries.

    Ray Data reads each shard in one task, in order (``preserve_order``), and tags rows with their
    file (``include_paths``), so rows land at their shard's offset whatever order blocks arrive in.
    """
    index = {_strip_scheme(src): i for i, src in enumerate(ds._sources)}
    rd = ds.ray_dataset(list(read_cols), include_paths=True)
    rd.context.execution_options.preserve_order = True
    for batch in rd.iter_batches(batch_size=DEFAULT_ROW_GROUP, batch_format="numpy"):
        paths = np.asarray(batch.pop("path")).astype(str)
        cuts = np.flatnonzero(paths[1:] != paths[:-1]) + 1
        for lo, hi in zip(np.r_[0, cuts], np.r_[cuts, len(paths)]):
            i = index.get(_strip_scheme(paths[lo]))
            if i is None:
                raise DatasetError(f"{ds.path}: Ray Data returned rows of {paths[lo]!r}, which is not one of the "
                                   f"dataset's shards {ds.files}")
            yield i, {k: v[lo:hi] for k, v in batch.items()}


def _strip_scheme(path: str) -> str:
    path = str(path)
    return path.split("://", 1)[1] if "://" in path else path


def _build(ds: OfflineDataset, columns: Sequence[str], target: Path, validate: bool, progress: bool) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    read_cols = list(dict.fromkeys(list(columns) + (
        [c for c in S.required_columns(ds.env) if c != S.EPISODE_ID] if validate else [])))
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=ds.num_episodes, desc=f"caching {Path(ds.path).name}", unit="ep")
    offsets = np.concatenate([[0], np.cumsum(ds._rows)]).astype(int)
    seen = [0] * len(ds.files)  # rows of each shard written so far
    try:
        arrays: Dict[str, np.memmap] = {}
        batches = _ray_data_batches(ds, read_cols) if ds.remote else _local_batches(ds, read_cols)
        for i, batch in batches:
            n = len(batch[read_cols[0]])
            f, first = ds.files[i], seen[i]
            if first + n > ds._rows[i]:
                raise DatasetError(f"{f}: read more than the {ds._rows[i]} episodes its Parquet metadata lists")
            if validate:
                check_batch(batch, ds.meta, f, first_row=first)
            row = offsets[i] + first
            for c in columns:
                v = batch[c].astype(bool) if c in BOOL_COLUMNS else batch[c]
                if c not in arrays:
                    arrays[c] = np.lib.format.open_memmap(tmp / f"{c}.npy", mode="w+", dtype=v.dtype,
                                                          shape=(ds.num_episodes,) + v.shape[1:])
                arrays[c][row:row + n] = v
            seen[i] += n
            if bar is not None:
                bar.update(n)
        for f, got, want in zip(ds.files, seen, ds._rows):
            if got != want:
                raise DatasetError(f"{f}: read {got} episodes, the Parquet metadata says {want}")
        for a in arrays.values():
            a.flush()
        del arrays
        (tmp / MANIFEST).write_text(json.dumps({"dataset": ds.path, "columns": list(columns),
                                                "num_episodes": ds.num_episodes}))
        try:
            os.rename(tmp, target)
        except OSError:
            if not (target / MANIFEST).exists():  # not a concurrent builder that finished first
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        if bar is not None:
            bar.close()
