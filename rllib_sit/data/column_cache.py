"""Memory-mapped column cache of a dataset: random access to every episode without holding it in RAM.

Algorithms that sample episodes uniformly or by priority (SIT's Stage I and DPER) need random
access, which a streaming reader cannot give. :func:`open_columns` streams the Parquet shards once,
batch by batch (validating values on the way if asked), into one ``.npy`` file per column
``[num_episodes, ...]`` and opens them with ``mmap_mode="r"``. Every process that opens the same
cache (the algorithm, the DPER Ray actor) shares one copy of the pages through the OS page cache;
nothing is copied into the Ray object store, and a 10 GB dataset needs no 10 GB of RAM.

The cache folder is named after a fingerprint of the shards (path, size, mtime) and the columns,
so a rewritten dataset gets a new cache. It is written under a temporary name and renamed into
place when complete: a crash never leaves a half-written cache that looks valid.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Dict, Optional, Sequence

import numpy as np
import pyarrow.parquet as pq

from rllib_sit.data import schema as S
from rllib_sit.data.io import DEFAULT_ROW_GROUP, OfflineDataset, record_batch_to_numpy
from rllib_sit.data.validation import DatasetError, check_batch

MANIFEST = "manifest.json"
# Flag columns are stored as uint8 in Parquet (Arrow tensors have no bool); the cache holds bools.
BOOL_COLUMNS = (S.FILLED, S.TERMINATED)


def cache_root() -> Path:
    """``$RLLIB_SIT_CACHE_DIR`` or ``offline_data/cache/columns`` (ignored by git)."""
    from rllib_sit.data.composition import offline_data_root

    return Path(os.environ.get("RLLIB_SIT_CACHE_DIR") or (offline_data_root() / "cache" / "columns"))


def fingerprint(ds: OfflineDataset, columns: Sequence[str]) -> str:
    h = hashlib.sha1()
    h.update(json.dumps([S.SCHEMA_VERSION, ds.path, sorted(columns)]).encode())
    for f in ds.files:
        st = os.stat(f)
        h.update(f"{os.path.basename(f)}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def cache_dir_for(ds: OfflineDataset, columns: Sequence[str], root: Optional[os.PathLike] = None) -> Path:
    return Path(root or cache_root()) / f"{Path(ds.path).name}-{fingerprint(ds, columns)}"


def load_cache(path: os.PathLike) -> Dict[str, np.ndarray]:
    """Open a complete column cache folder read-only: ``{column: np.memmap [K, ...]}``."""
    path = Path(path)
    manifest = path / MANIFEST
    if not manifest.exists():
        raise DatasetError(f"{path}: not a column cache (no {MANIFEST}); build it with open_columns(dataset)")
    info = json.loads(manifest.read_text())
    return {c: np.load(path / f"{c}.npy", mmap_mode="r") for c in info["columns"]}


def open_columns(ds: OfflineDataset, columns: Sequence[str], root: Optional[os.PathLike] = None,
                 validate: bool = True, progress: bool = False) -> Dict[str, np.ndarray]:
    """The ``columns`` of every episode of ``ds`` as read-only memory maps (built on first use).

    Args:
        ds: the dataset (see :func:`rllib_sit.data.read_dataset`).
        columns: column names to cache.
        root: cache root (default :func:`cache_root`).
        validate: check every batch's values (NaN/inf, lengths, action ranges) while building;
            an existing cache was validated when it was built.
        progress: show a progress bar while building.
    """
    columns = list(dict.fromkeys(columns))
    ds._check_columns(columns)
    target = cache_dir_for(ds, columns, root)
    if not (target / MANIFEST).exists():
        _build(ds, columns, target, validate, progress)
    return load_cache(target)


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
    try:
        arrays: Dict[str, np.memmap] = {}
        row = 0
        for f in ds.files:
            first = 0
            for rb in pq.ParquetFile(f).iter_batches(batch_size=DEFAULT_ROW_GROUP, columns=read_cols):
                batch = record_batch_to_numpy(rb)
                if validate:
                    check_batch(batch, ds.meta, f, first_row=first)
                for c in columns:
                    v = batch[c].astype(bool) if c in BOOL_COLUMNS else batch[c]
                    if c not in arrays:
                        arrays[c] = np.lib.format.open_memmap(tmp / f"{c}.npy", mode="w+", dtype=v.dtype,
                                                              shape=(ds.num_episodes,) + v.shape[1:])
                    arrays[c][row:row + len(v)] = v
                n = rb.num_rows
                row, first = row + n, first + n
                if bar is not None:
                    bar.update(n)
        if row != ds.num_episodes:
            raise DatasetError(f"{ds.path}: read {row} episodes, the Parquet metadata says {ds.num_episodes}")
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
