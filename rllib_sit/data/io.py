"""Write and read schema-v1 multi-agent offline datasets (sharded zstd Parquet + ``card.json``).

Writing is atomic: shards go to a temporary sibling folder that is renamed to the final name
only once every shard and the card are complete, so a half-written dataset never appears under
the final name. Reading is streaming through Ray Data (``ray.data.read_parquet``) or pyarrow,
after validating every file's schema (and, by default, its values) with one clear error.
"""

from __future__ import annotations

import glob
import os
import shutil
import uuid
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Union

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from rllib_sit.data import schema as S
from rllib_sit.data.card import make_card, read_card, write_card
from rllib_sit.data.validation import DatasetError, check_batch, check_schema, read_meta

Row = Dict[str, np.ndarray]
Batch = Dict[str, np.ndarray]

SHARD_PATTERN = "part-{:05d}.parquet"
DEFAULT_ROWS_PER_SHARD = 500
DEFAULT_ROW_GROUP = 32


# ---------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------
def _batch_to_table(batch: Batch, meta: S.DatasetMeta) -> pa.Table:
    dtypes = S.column_dtypes(meta.env)
    cols = {}
    for name, arr in batch.items():
        arr = np.ascontiguousarray(arr, dtype=dtypes.get(name, np.asarray(arr).dtype))
        if arr.ndim > 1:
            cols[name] = pa.FixedShapeTensorArray.from_numpy_ndarray(arr)
        else:
            cols[name] = pa.array(arr)
    return pa.table(cols).replace_schema_metadata({S.META_KEY: meta.to_json().encode()})


def _stack_rows(rows: List[Row], meta: S.DatasetMeta, first_index: int) -> Batch:
    shapes = S.column_shapes(meta.env, len(meta.agent_stat_names))
    keys = list(rows[0].keys())
    for i, row in enumerate(rows):
        if list(row.keys()) != keys:
            raise DatasetError(f"episode {first_index + i}: fields {sorted(row)} differ from the first "
                               f"episode's {sorted(keys)}")
        for k in keys:
            want = shapes.get(k)
            if want is not None and np.shape(row[k]) != want:
                raise DatasetError(f"episode {first_index + i}: field {k!r} has shape "
                                   f"{list(np.shape(row[k]))}, expected {list(want)} for {meta.env.env_id}")
    return {k: np.stack([np.asarray(r[k]) for r in rows]) for k in keys}


def _iter_batches_from(source, meta: S.DatasetMeta, row_group: int) -> Iterator[Batch]:
    """Batches of rows from an iterable of row dicts or from a ``ray.data.Dataset``."""
    try:
        import ray.data

        if isinstance(source, ray.data.Dataset):
            yield from source.iter_batches(batch_size=row_group, batch_format="numpy")
            return
    except ImportError:  # pragma: no cover - ray is a hard dependency
        pass
    buf: List[Row] = []
    n = 0
    for row in source:
        buf.append(row)
        if len(buf) == row_group:
            yield _stack_rows(buf, meta, n)
            n += len(buf)
            buf = []
    if buf:
        yield _stack_rows(buf, meta, n)


def write_dataset(source: Union[Iterable[Row], "ray.data.Dataset"], path: str, meta: S.DatasetMeta,  # noqa: F821
                  card: Optional[Dict[str, Any]] = None, *, rows_per_shard: int = DEFAULT_ROWS_PER_SHARD,
                  row_group_size: int = DEFAULT_ROW_GROUP, overwrite: bool = False, validate: bool = True) -> str:
    """Write episodes to ``path`` (a folder) atomically and return ``path``.

    Args:
        source: episode rows (dicts of numpy arrays, see :mod:`rllib_sit.data.schema`), e.g. from
            :func:`rllib_sit.data.episode.rollout_episode`, or a ``ray.data.Dataset`` of rows.
        path: final dataset folder; must not exist unless ``overwrite``.
        meta: dataset metadata (the env's :class:`~rllib_sit.envs.base.EnvInfo`), stored in every
            shard's Parquet schema.
        card: extra card fields (quality, composition, generating_policies, seed, ...); the
            episode count and return statistics are computed here.
        rows_per_shard: episodes per Parquet file (few large shards read fastest).
        row_group_size: episodes per Parquet row group (the unit of streaming reads).
        validate: check shapes and values of every episode before writing it.
    """
    if rows_per_shard < 1 or row_group_size < 1:
        raise ValueError(f"rows_per_shard and row_group_size must be >= 1, got {rows_per_shard}, {row_group_size}")
    path = os.path.abspath(path)
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(f"{path}: dataset already exists; pass overwrite=True to replace it")
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    tmp = os.path.join(parent, f".{os.path.basename(path)}.tmp-{uuid.uuid4().hex[:8]}")
    os.makedirs(tmp)
    returns: List[np.ndarray] = []
    try:
        shard, rows_in_shard, writer, n_rows = 0, 0, None, 0
        for batch in _iter_batches_from(source, meta, row_group_size):
            if validate:
                check_batch(batch, meta, where=f"episodes {n_rows}..{n_rows + len(batch[S.LENGTH]) - 1}",
                            first_row=n_rows)
            table = _batch_to_table(batch, meta)
            start = 0
            while start < table.num_rows:
                if writer is None:
                    writer = pq.ParquetWriter(os.path.join(tmp, SHARD_PATTERN.format(shard)), table.schema,
                                              compression="zstd")
                take = min(rows_per_shard - rows_in_shard, table.num_rows - start)
                writer.write_table(table.slice(start, take), row_group_size=row_group_size)
                start += take
                rows_in_shard += take
                if rows_in_shard == rows_per_shard:
                    writer.close()
                    writer, shard, rows_in_shard = None, shard + 1, 0
            returns.append(np.asarray(batch[S.EPISODE_RETURN], np.float64))
            n_rows += table.num_rows
        if writer is not None:
            writer.close()
        if n_rows == 0:
            raise DatasetError(f"{path}: no episodes to write; expected at least one")
        write_card(make_card(meta, np.concatenate(returns), card), tmp)
        if os.path.exists(path):
            trash = f"{tmp}.old"
            os.rename(path, trash)
            os.rename(tmp, path)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.rename(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


# ---------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------
class OfflineDataset:
    """A validated, read-only view of one dataset folder.

    Attributes:
        path: the dataset folder.
        files: its Parquet shards, sorted.
        meta: :class:`~rllib_sit.data.schema.DatasetMeta` (``meta.env`` is the ``EnvInfo``).
        card: the ``card.json`` contents (``{}`` if absent).
        num_episodes: total number of episodes.
    """

    def __init__(self, path: str, validate: str = "full"):
        if validate not in ("full", "schema", "none"):
            raise ValueError(f"validate must be 'full', 'schema' or 'none', got {validate!r}")
        self.path = os.path.abspath(path)
        if not os.path.exists(self.path):
            raise FileNotFoundError(f"{self.path}: no such dataset (generate it with "
                                    f"'rllib-sit data generate ENV --quality Q --out DIR')")
        if os.path.isfile(self.path):
            self.files = [self.path]
        else:
            self.files = sorted(glob.glob(os.path.join(self.path, "*.parquet")))
        if not self.files:
            raise DatasetError(f"{self.path}: no Parquet files (*.parquet); expected an rllib_sit dataset folder")
        self.card = read_card(self.path) if os.path.isdir(self.path) else {}
        self._rows: List[int] = []
        self.meta: S.DatasetMeta = None  # type: ignore[assignment]
        for f in self.files:
            try:
                pf = pq.ParquetFile(f)
            except (pa.ArrowInvalid, OSError) as e:
                raise DatasetError(f"{f}: not a readable Parquet file (truncated or corrupt?): {e}") from None
            file_meta = read_meta(pf.schema_arrow, f)
            if self.meta is None:
                self.meta = file_meta
            elif file_meta.to_json() != self.meta.to_json():
                raise DatasetError(f"{f}: rllib_sit metadata differs from {self.files[0]}'s; expected every "
                                   f"shard of one dataset to describe the same environment")
            if validate != "none":
                check_schema(pf.schema_arrow, self.meta, f)
            self._rows.append(pf.metadata.num_rows)
        self.num_episodes = int(sum(self._rows))
        if validate == "full":
            self.validate_values()

    @property
    def env(self):
        return self.meta.env

    def __repr__(self) -> str:
        return f"OfflineDataset({self.path!r}, env={self.env.env_id}, episodes={self.num_episodes})"

    def validate_values(self) -> None:
        """Stream every row group once and check values (NaN/inf, lengths, action ranges)."""
        cols = [c for c in S.required_columns(self.env) if c not in (S.EPISODE_ID,)]
        for f in self.files:
            first = 0
            try:
                for rb in pq.ParquetFile(f).iter_batches(batch_size=DEFAULT_ROW_GROUP, columns=cols):
                    batch = record_batch_to_numpy(rb)
                    check_batch(batch, self.meta, f, first_row=first)
                    first += rb.num_rows
            except (pa.ArrowInvalid, OSError) as e:
                raise DatasetError(f"{f}: could not read row data (truncated or corrupt?): {e}") from None

    # -- streaming reads ----------------------------------------------------------------------
    def ray_dataset(self, columns: Optional[Sequence[str]] = None, **read_kwargs) -> "ray.data.Dataset":  # noqa: F821
        """The episodes as a streaming ``ray.data.Dataset`` (one row per episode).

        By default one read block per shard: Ray Data's own split into many small blocks made
        reads 2-3x slower on 2 CPUs (benchmarks/data_io.py).
        """
        import ray.data

        self._check_columns(columns)
        read_kwargs.setdefault("override_num_blocks", len(self.files))
        return ray.data.read_parquet(self.files, columns=list(columns) if columns else None, **read_kwargs)

    def iter_batches(self, batch_size: int, columns: Optional[Sequence[str]] = None,
                     backend: str = "ray", drop_last: bool = False) -> Iterator[Batch]:
        """Stream numpy batches ``{column: [B, ...]}`` in file order.

        ``backend="ray"`` reads through Ray Data (parallel, for pipelines); ``"arrow"`` reads with
        pyarrow in this process (lowest overhead for a single consumer).
        """
        if backend == "ray":
            yield from self.ray_dataset(columns).iter_batches(batch_size=batch_size, batch_format="numpy",
                                                              drop_last=drop_last)
        elif backend == "arrow":
            self._check_columns(columns)
            pending: List[Batch] = []
            n_pending = 0
            for f in self.files:
                for rb in pq.ParquetFile(f).iter_batches(batch_size=batch_size, columns=columns):
                    pending.append(record_batch_to_numpy(rb))
                    n_pending += rb.num_rows
                    while n_pending >= batch_size:
                        merged = _concat(pending)
                        yield {k: v[:batch_size] for k, v in merged.items()}
                        rest = {k: v[batch_size:] for k, v in merged.items()}
                        n_pending -= batch_size
                        pending = [rest] if n_pending else []
            if pending and n_pending and not drop_last:
                yield _concat(pending)
        else:
            raise ValueError(f"backend must be 'ray' or 'arrow', got {backend!r}")

    def to_numpy(self, columns: Optional[Sequence[str]] = None) -> Batch:
        """Every episode in memory: ``{column: [num_episodes, ...]}`` (read-only arrays)."""
        self._check_columns(columns)
        table = pa.concat_tables([pq.read_table(f, columns=list(columns) if columns else None) for f in self.files])
        return table_to_numpy(table)

    def _check_columns(self, columns: Optional[Sequence[str]]) -> None:
        if columns is None:
            return
        names = set(pq.read_schema(self.files[0]).names)
        missing = [c for c in columns if c not in names]
        if missing:
            raise DatasetError(f"{self.path}: column(s) {missing} not in the dataset; it has {sorted(names)}")


def read_dataset(path: str, validate: str = "full") -> OfflineDataset:
    """Open (and validate) the dataset at ``path``; see :class:`OfflineDataset`."""
    return OfflineDataset(path, validate=validate)


def _column_to_numpy(col) -> np.ndarray:
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    if isinstance(col.type, pa.FixedShapeTensorType):
        return col.to_numpy_ndarray()
    return col.to_numpy(zero_copy_only=False)


def record_batch_to_numpy(rb: pa.RecordBatch) -> Batch:
    return {name: _column_to_numpy(rb.column(i)) for i, name in enumerate(rb.schema.names)}


def table_to_numpy(table: pa.Table) -> Batch:
    return {name: _column_to_numpy(table.column(name)) for name in table.column_names}


def _concat(batches: List[Batch]) -> Batch:
    if len(batches) == 1:
        return batches[0]
    return {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}
