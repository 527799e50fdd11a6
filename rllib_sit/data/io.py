"""Write and read schema-v1 multi-agent offline datasets (sharded zstd Parquet + ``card.json``).

Writing is atomic: shards go to a temporary sibling folder that is renamed to the final name
only once every shard and the card are complete, so a half-written dataset never appears under
the final name. Reading is streaming through Ray Data (``ray.data.read_parquet``) or pyarrow,
after validating every file's schema (and, by default, its values) with one clear error.

Datasets are read from local folders or from URIs (``s3://``, ``gs://``, any scheme that
``pyarrow.fs.FileSystem.from_uri`` knows; ``file://`` is a local path): remote metadata, the card
and the shard listing go through ``pyarrow.fs``. Writing is local only.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import uuid
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union
from urllib.parse import unquote, urlparse

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from rllib_sit.data import schema as S
from rllib_sit.data.card import CARD_FILE, make_card, read_card, write_card
from rllib_sit.data.validation import DatasetError, check_batch, check_schema, read_meta

Row = Dict[str, np.ndarray]
Batch = Dict[str, np.ndarray]

SHARD_PATTERN = "part-{:05d}.parquet"
DEFAULT_ROWS_PER_SHARD = 500
DEFAULT_ROW_GROUP = 32


# ---------------------------------------------------------------------------------------------
# Locations: local paths and URIs
# ---------------------------------------------------------------------------------------------
def is_remote(uri: Union[str, os.PathLike]) -> bool:
    """True if ``uri`` names a remote dataset (``s3://``, ``gs://``, ``hdfs://``, ...).

    Local paths and ``file://`` URIs are not remote (``C:\\...`` drive letters neither). The
    algorithm layer passes a remote ``input_`` unchanged to :func:`read_dataset`.
    """
    scheme = urlparse(os.fspath(uri)).scheme
    return len(scheme) > 1 and scheme != "file"


def local_path(uri: Union[str, os.PathLike]) -> str:
    """The absolute local path of a local path or ``file://`` URI."""
    text = os.fspath(uri)
    parsed = urlparse(text)
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise ValueError(f"{text}: file:// URI names host {parsed.netloc!r}; expected file:///absolute/path")
        text = unquote(parsed.path)
    return os.path.abspath(text)


def _remote_location(uri: str, filesystem: Optional[pafs.FileSystem]) -> Tuple[pafs.FileSystem, str]:
    """(filesystem, path inside it) of a remote URI; an explicit ``filesystem`` wins over the URI's."""
    if filesystem is not None:
        parsed = urlparse(uri)
        inner = (parsed.netloc + parsed.path) if parsed.scheme else uri
        return filesystem, inner.rstrip("/")
    try:
        fs, inner = pafs.FileSystem.from_uri(uri)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError, ValueError) as e:
        raise DatasetError(f"{uri}: pyarrow.fs cannot open this URI ({e}); expected s3://bucket/prefix, gs://... "
                           f"or a local path, or pass filesystem=pyarrow.fs.<FileSystem>(...)") from None
    return fs, inner.rstrip("/")


def _missing_remote(uri: str, fs: pafs.FileSystem, inner: str) -> FileNotFoundError:
    """The error for a remote dataset location that does not exist, naming bucket or prefix."""
    bucket = inner.split("/", 1)[0]
    if fs.type_name in ("s3", "gcs") and bucket != inner:
        try:
            bucket_missing = fs.get_file_info(bucket).type == pafs.FileType.NotFound
        except OSError:
            bucket_missing = False
        if bucket_missing:
            return FileNotFoundError(f"{uri}: no such dataset: bucket {bucket!r} does not exist "
                                     f"(or is not visible with these credentials/endpoint)")
    return FileNotFoundError(f"{uri}: no such dataset: nothing is stored under this prefix; expected a folder "
                             f"of rllib_sit Parquet shards (upload a folder written by write_dataset)")


def _remote_card(fs: pafs.FileSystem, inner: str, uri: str) -> Dict[str, Any]:
    card_path = f"{inner}/{CARD_FILE}"
    try:
        if fs.get_file_info(card_path).type != pafs.FileType.File:
            return {}
        with fs.open_input_stream(card_path) as f:
            data = f.read()
        return json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DatasetError(f"{uri}/{CARD_FILE}: not valid JSON ({e}); expected the dataset card") from None
    except OSError as e:
        raise OSError(f"{uri}/{CARD_FILE}: could not read the dataset card ({e})") from None


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


def publish_folder(tmp: str, dest: str) -> None:
    """Move the complete folder ``tmp`` to ``dest`` by renames (replacing an existing ``dest``): a
    reader sees the old folder or the new one, never a half-written one."""
    if os.path.exists(dest):
        trash = f"{tmp}.old"
        os.rename(dest, trash)
        os.rename(tmp, dest)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.rename(tmp, dest)


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
        publish_folder(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


# ---------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------
class OfflineDataset:
    """A validated, read-only view of one dataset folder (local, ``file://`` or remote URI).

    Attributes:
        path: the dataset: absolute local path, or the URI as given (without a trailing ``/``)
            for a remote dataset.
        files: its Parquet shards, sorted (local paths, or URIs ``<path>/part-00000.parquet``).
        filesystem: the ``pyarrow.fs.FileSystem`` of a remote dataset; ``None`` for a local one.
        remote: ``True`` for a remote dataset.
        meta: :class:`~rllib_sit.data.schema.DatasetMeta` (``meta.env`` is the ``EnvInfo``).
        card: the ``card.json`` contents (``{}`` if absent).
        num_episodes: total number of episodes.
        schema: the Arrow schema of the first shard.
    """

    def __init__(self, path: Union[str, os.PathLike], validate: str = "full",
                 filesystem: Optional[pafs.FileSystem] = None):
        if validate not in ("full", "schema", "none"):
            raise ValueError(f"validate must be 'full', 'schema' or 'none', got {validate!r}")
        text = os.fspath(path)
        self.remote = is_remote(text) or (filesystem is not None and not isinstance(filesystem, pafs.LocalFileSystem))
        self.filesystem: Optional[pafs.FileSystem] = None
        # Shard sources as pyarrow reads them (local paths, or paths inside ``filesystem``) and
        # (name, size, mtime_ns) of each shard at listing time, for cache fingerprints.
        self._sources: List[str] = []
        self._file_stats: List[Tuple[str, int, int]] = []
        if self.remote:
            self._list_remote(text.rstrip("/"), filesystem)
        else:
            self._list_local(local_path(text))
        self._rows: List[int] = []
        self.meta: S.DatasetMeta = None  # type: ignore[assignment]
        self.schema: pa.Schema = None  # type: ignore[assignment]
        for f, src in zip(self.files, self._sources):
            try:
                pf = pq.ParquetFile(src, filesystem=self.filesystem)
            except (pa.ArrowInvalid, OSError) as e:
                raise DatasetError(f"{f}: not a readable Parquet file (truncated or corrupt?): {e}") from None
            file_meta = read_meta(pf.schema_arrow, f)
            if self.meta is None:
                self.meta, self.schema = file_meta, pf.schema_arrow
            elif file_meta.to_json() != self.meta.to_json():
                raise DatasetError(f"{f}: rllib_sit metadata differs from {self.files[0]}'s; expected every "
                                   f"shard of one dataset to describe the same environment")
            if validate != "none":
                check_schema(pf.schema_arrow, self.meta, f)
            self._rows.append(pf.metadata.num_rows)
        self.num_episodes = int(sum(self._rows))
        if validate == "full":
            self.validate_values()

    def _list_local(self, path: str) -> None:
        self.path = path
        if not os.path.exists(self.path):
            raise FileNotFoundError(f"{self.path}: no such dataset (generate it with "
                                    f"'rllib-sit data generate ENV --quality Q --out DIR')")
        if os.path.isfile(self.path):
            self.files = [self.path]
        else:
            self.files = sorted(glob.glob(os.path.join(self.path, "*.parquet")))
        if not self.files:
            raise DatasetError(f"{self.path}: no Parquet files (*.parquet); expected an rllib_sit dataset folder")
        self._sources = list(self.files)
        self.card = read_card(self.path) if os.path.isdir(self.path) else {}

    def _list_remote(self, uri: str, filesystem: Optional[pafs.FileSystem]) -> None:
        self.path = uri
        fs, inner = _remote_location(uri, filesystem)
        self.filesystem = fs
        try:
            info = fs.get_file_info(inner)
            if info.type == pafs.FileType.NotFound:
                raise _missing_remote(uri, fs, inner)
            if info.type == pafs.FileType.File:
                listing, base = [info], None
            else:
                listing = fs.get_file_info(pafs.FileSelector(inner, recursive=False))
                base = uri
        except FileNotFoundError:
            raise
        except OSError as e:
            raise OSError(f"{uri}: could not list the dataset ({e}); check the bucket, the credentials "
                          f"(AWS_ACCESS_KEY_ID/...) and the endpoint (AWS_ENDPOINT_URL)") from None
        shards = sorted((i for i in listing if i.type == pafs.FileType.File and i.base_name.endswith(".parquet")),
                        key=lambda i: i.path)
        if not shards:
            raise DatasetError(f"{uri}: no Parquet files (*.parquet) under this prefix; expected an rllib_sit "
                               f"dataset folder")
        self.files = [uri if base is None else f"{base}/{i.base_name}" for i in shards]
        self._sources = [i.path for i in shards]
        self._file_stats = [(i.base_name, int(i.size or 0), int(i.mtime_ns or 0)) for i in shards]
        self.card = {} if base is None else _remote_card(fs, inner, uri)

    @property
    def env(self):
        return self.meta.env

    def __repr__(self) -> str:
        return f"OfflineDataset({self.path!r}, env={self.env.env_id}, episodes={self.num_episodes})"

    def shard_stats(self) -> List[Tuple[str, int, int]]:
        """``(name, size, mtime_ns)`` of every shard: stat'ed now for a local dataset, as listed by
        :func:`read_dataset` for a remote one (what cache fingerprints are made of)."""
        if self.remote:
            return list(self._file_stats)
        out = []
        for f in self.files:
            st = os.stat(f)
            out.append((os.path.basename(f), int(st.st_size), int(st.st_mtime_ns)))
        return out

    def parquet_file(self, i: int) -> pq.ParquetFile:
        """Shard ``i`` opened with pyarrow (through ``filesystem`` for a remote dataset)."""
        return pq.ParquetFile(self._sources[i], filesystem=self.filesystem)

    def validate_values(self) -> None:
        """Stream every row group once and check values (NaN/inf, lengths, action ranges)."""
        cols = [c for c in S.required_columns(self.env) if c not in (S.EPISODE_ID,)]
        for i, f in enumerate(self.files):
            first = 0
            try:
                for rb in self.parquet_file(i).iter_batches(batch_size=DEFAULT_ROW_GROUP, columns=cols):
                    batch = record_batch_to_numpy(rb)
                    check_batch(batch, self.meta, f, first_row=first)
                    first += rb.num_rows
            except (pa.ArrowInvalid, OSError) as e:
                raise DatasetError(f"{f}: could not read row data (truncated or corrupt?): {e}") from None

    # -- streaming reads ----------------------------------------------------------------------
    def ray_dataset(self, columns: Optional[Sequence[str]] = None, **read_kwargs) -> "ray.data.Dataset":  # noqa: F821
        """The episodes as a streaming ``ray.data.Dataset`` (one row per episode).

        By default one read block per shard: Ray Data's own split into many small blocks made
        reads 2-3x slower on 2 CPUs (benchmarks/data_io.py). A remote dataset is read through its
        ``filesystem`` (pickled into the read tasks, endpoint included).
        """
        import ray.data

        self._check_columns(columns)
        read_kwargs.setdefault("override_num_blocks", len(self.files))
        if self.filesystem is not None:
            read_kwargs.setdefault("filesystem", self.filesystem)
            read_kwargs.setdefault("partitioning", None)  # no hive "key=value" columns from bucket paths
        return ray.data.read_parquet(list(self._sources), columns=list(columns) if columns else None, **read_kwargs)

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
            for i in range(len(self.files)):
                for rb in self.parquet_file(i).iter_batches(batch_size=batch_size, columns=columns):
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
        table = pa.concat_tables([pq.read_table(src, columns=list(columns) if columns else None,
                                                filesystem=self.filesystem) for src in self._sources])
        return table_to_numpy(table)

    def _check_columns(self, columns: Optional[Sequence[str]]) -> None:
        if columns is None:
            return
        names = set(self.schema.names)
        missing = [c for c in columns if c not in names]
        if missing:
            raise DatasetError(f"{self.path}: column(s) {missing} not in the dataset; it has {sorted(names)}")


def read_dataset(path: Union[str, os.PathLike], validate: str = "full",
                 filesystem: Optional[pafs.FileSystem] = None) -> OfflineDataset:
    """Open (and validate) the dataset at ``path``; see :class:`OfflineDataset`.

    Args:
        path: a local folder (or single shard), a ``file://`` URI, or a remote URI such as
            ``s3://bucket/prefix/dataset`` (anything ``pyarrow.fs.FileSystem.from_uri`` opens;
            S3 endpoint and credentials from the usual ``AWS_*`` environment variables).
        validate: ``"full"`` (schema and every value), ``"schema"`` (Parquet footers only) or
            ``"none"``.
        filesystem: an explicit ``pyarrow.fs.FileSystem`` for a remote ``path`` (e.g.
            ``S3FileSystem(endpoint_override=..., access_key=..., secret_key=...)``); the URI's
            scheme is then ignored and ``path`` is read inside this filesystem.
    """
    return OfflineDataset(path, validate=validate, filesystem=filesystem)


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
