"""A store of immutable artifacts (a few files) under string keys, shared by processes and nodes.

The store lives in a local (or shared network) folder, or under a remote URI that ``pyarrow.fs``
opens (``s3://``, ``gs://``, ...); ``file://`` URIs are local folders. What one key holds::

    <root>/<key>/<version>/<file>...     the files, written first (``version`` is unique per writer)
    <root>/<key>/COMPLETE.json           the completion marker, written last: the version, every
                                         file's size and SHA-256, the writer's metadata
    <root>/<key>.lock                    held while one writer produces the entry (optional)

Guarantees:

* **Nothing half-written is read.** :meth:`ArtifactStore.get` reads only entries with a marker,
  and only the files the marker names, checking their sizes and hashes. Files of a writer that
  crashed before its marker are never looked at.
* **First writer wins.** In a folder the marker is published with ``os.link`` (atomic, fails if it
  exists). In an object store (no atomic rename, no conditional put through ``pyarrow.fs``) a
  writer that finds a marker does not write one; if two writers race past that check, the last
  marker wins and it names that writer's complete version folder, so a reader always sees one
  whole entry.
* **One producer at a time** (:meth:`ArtifactStore.claim`). A writer takes ``<key>.lock`` before
  producing the entry: in a folder with ``os.open(O_CREAT | O_EXCL)`` (atomic on local disks and
  NFS v3+); in an object store by writing the lock, waiting ``settle_s`` and reading it back (the
  last writer of a race owns it: S3 and GCS read-after-write are strongly consistent). The owner's
  :class:`Lease` rewrites the lock every ``heartbeat_s`` from a daemon thread. The others poll for
  the marker; a lock whose content has not changed for ``stale_after_s`` (measured on the waiter's
  own clock, so clocks of different nodes need not agree), or whose process is gone on this very
  host, is stale and is broken. After ``timeout_s`` a waiter gives up and produces the entry
  itself (the first marker still wins).

No algorithm code lives here: the caller names the key and the files.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Mapping, Optional, Union

logger = logging.getLogger(__name__)

MARKER = "COMPLETE.json"
LOCK_SUFFIX = ".lock"
_KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
_FILE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")

# Defaults of the locking protocol (seconds).
HEARTBEAT_S = 5.0
STALE_AFTER_S = 60.0
POLL_S = 2.0
SETTLE_S = 0.5


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


_HOST = (socket.gethostname(), _boot_id())


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def check_key(key: str) -> str:
    if not isinstance(key, str) or not _KEY_RE.match(key) or key.endswith(LOCK_SUFFIX):
        raise ValueError(f"artifact key {key!r} is invalid; expected 1-200 characters of [A-Za-z0-9._-], "
                         f"starting with a letter or digit, not ending in {LOCK_SUFFIX!r}")
    return key


# ---------------------------------------------------------------------------------------------
# Backends: a local folder (atomic rename/link, O_EXCL) or a pyarrow FileSystem (object stores)
# ---------------------------------------------------------------------------------------------
class _LocalBackend:
    """Paths are relative to ``root``; writes are temp file + ``os.replace``."""

    kind = "local"

    def __init__(self, root: Path):
        self.root = root

    def _p(self, rel: str) -> Path:
        return self.root / rel

    def read(self, rel: str) -> Optional[bytes]:
        try:
            return self._p(rel).read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return None

    def _tmp_write(self, rel: str, data: bytes) -> Path:
        path = self._p(rel)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex[:12]}"
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        return tmp

    def write(self, rel: str, data: bytes) -> None:
        os.replace(self._tmp_write(rel, data), self._p(rel))

    def create_exclusive(self, rel: str, data: bytes) -> bool:
        """Create ``rel`` holding ``data`` unless it exists (atomic: link of a complete temp file)."""
        tmp = self._tmp_write(rel, data)
        try:
            os.link(tmp, self._p(rel))
            return True
        except FileExistsError:
            return False
        finally:
            tmp.unlink(missing_ok=True)

    def delete(self, rel: str) -> None:
        self._p(rel).unlink(missing_ok=True)

    def delete_tree(self, rel: str) -> None:
        import shutil

        shutil.rmtree(self._p(rel), ignore_errors=True)

    def break_lock(self, rel: str, seen: bytes) -> bool:
        """Remove the lock if it still holds ``seen``: renamed aside atomically, checked, and put
        back (``os.link``) if it had been renewed in the meantime."""
        path = self._p(rel)
        tomb = path.parent / f".{path.name}.stale-{uuid.uuid4().hex[:12]}"
        try:
            os.rename(path, tomb)
        except FileNotFoundError:
            return True  # already gone
        try:
            if tomb.read_bytes() == seen:
                return True
            try:
                os.link(tomb, path)  # renewed by its owner meanwhile: restore it
            except FileExistsError:
                pass
            return False
        finally:
            tomb.unlink(missing_ok=True)

    def describe(self, rel: str = "") -> str:
        return str(self._p(rel)) if rel else str(self.root)


class _ArrowBackend:
    """An object store (or any ``pyarrow.fs.FileSystem``); paths are ``<root>/<rel>`` inside it."""

    kind = "remote"

    def __init__(self, fs, root: str, uri: str):
        self.fs, self.root, self.uri = fs, root.rstrip("/"), uri.rstrip("/")
        self._flat = getattr(fs, "type_name", "") in ("s3", "gcs")  # no directories to create

    def _p(self, rel: str) -> str:
        return f"{self.root}/{rel}" if self.root else rel

    def read(self, rel: str) -> Optional[bytes]:
        try:
            with self.fs.open_input_stream(self._p(rel)) as f:
                return f.read()
        except FileNotFoundError:
            return None
        except OSError as e:
            if "not exist" in str(e) or "NoSuchKey" in str(e) or "not found" in str(e).lower():
                return None
            raise

    def write(self, rel: str, data: bytes) -> None:
        path = self._p(rel)
        if not self._flat and "/" in path:
            self.fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
        with self.fs.open_output_stream(path) as f:
            f.write(data)

    def create_exclusive(self, rel: str, data: bytes) -> bool:
        """Best effort without conditional puts: write only if absent (see the module docstring)."""
        if self.read(rel) is not None:
            return False
        self.write(rel, data)
        return True

    def delete(self, rel: str) -> None:
        try:
            self.fs.delete_file(self._p(rel))
        except (FileNotFoundError, OSError):
            pass

    def delete_tree(self, rel: str) -> None:
        try:
            self.fs.delete_dir(self._p(rel))
        except (FileNotFoundError, OSError):
            pass

    def break_lock(self, rel: str, seen: bytes) -> bool:
        cur = self.read(rel)
        if cur is None:
            return True
        if cur != seen:
            return False
        self.delete(rel)
        return True

    def describe(self, rel: str = "") -> str:
        return f"{self.uri}/{rel}" if rel else self.uri


def _backend(location: Union[str, os.PathLike], filesystem=None):
    text = os.fspath(location)
    if not text:
        raise ValueError("artifact store location is empty; expected a folder path or a URI (s3://..., file://...)")
    from rllib_sit.data.io import is_remote, local_path

    if filesystem is not None:
        import pyarrow.fs as pafs

        if isinstance(filesystem, pafs.LocalFileSystem):
            return _LocalBackend(Path(local_path(text)))
        from urllib.parse import urlparse

        parsed = urlparse(text)
        inner = (parsed.netloc + parsed.path) if parsed.scheme else text
        return _ArrowBackend(filesystem, inner, text)
    if is_remote(text):
        import pyarrow as pa
        import pyarrow.fs as pafs

        try:
            fs, inner = pafs.FileSystem.from_uri(text)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError, ValueError) as e:
            raise ValueError(f"artifact store {text!r}: pyarrow.fs cannot open this URI ({e}); expected a local "
                             f"folder, file:///abs/path, s3://bucket/prefix or gs://bucket/prefix") from None
        return _ArrowBackend(fs, inner, text)
    return _LocalBackend(Path(local_path(os.path.expanduser(text))))


# ---------------------------------------------------------------------------------------------
# Entries, leases, claims
# ---------------------------------------------------------------------------------------------
@dataclass
class Entry:
    """A complete entry: ``files`` (name -> bytes) and the writer's ``meta``."""

    key: str
    files: Dict[str, bytes]
    meta: Dict[str, Any]
    version: str


class Lease:
    """Ownership of ``<key>.lock``; a daemon thread rewrites it every ``heartbeat_s`` (the beat
    counter changes, which is what waiters watch). ``release()`` deletes it (if still ours)."""

    def __init__(self, store: "ArtifactStore", key: str, token: str, record: Dict[str, Any], heartbeat_s: float):
        self.store, self.key, self.token, self._record = store, key, token, dict(record)
        self._stop = threading.Event()
        self.lost = False  # someone broke our lock (we were taken for dead)
        self._thread = None
        if heartbeat_s > 0:
            self._thread = threading.Thread(target=self._beat, args=(heartbeat_s,), daemon=True,
                                            name=f"artifact-lease-{key[:24]}")
            self._thread.start()

    @property
    def held(self) -> bool:
        return not self._stop.is_set() and not self.lost

    def refresh(self) -> bool:
        """Rewrite the lock with the next beat; False (and ``lost``) if it is no longer ours."""
        rel = self.store._lock_rel(self.key)
        cur = self.store._backend.read(rel)
        if cur is None or _token_of(cur) != self.token:
            self.lost = True
            return False
        self._record["beat"] = int(self._record.get("beat", 0)) + 1
        self._record["beat_time"] = time.time()
        self.store._backend.write(rel, _dump(self._record))
        return True

    def _beat(self, every: float) -> None:
        while not self._stop.wait(every):
            try:
                if not self.refresh():
                    logger.warning("artifact store: the lock of %s was taken over by another writer", self.key)
                    return
            except Exception as e:  # noqa: BLE001 - a transient store error must not kill the run
                logger.warning("artifact store: could not renew the lock of %s: %s", self.key, e)

    def release(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        try:
            rel = self.store._lock_rel(self.key)
            cur = self.store._backend.read(rel)
            if cur is not None and _token_of(cur) == self.token:
                self.store._backend.delete(rel)
        except Exception as e:  # noqa: BLE001
            logger.warning("artifact store: could not release the lock of %s: %s", self.key, e)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()


@dataclass
class Claim:
    """What :meth:`ArtifactStore.claim` found: the ``entry`` (someone produced it), or a ``lease``
    (produce it, then :meth:`ArtifactStore.put` and ``lease.release()``), or neither after
    ``timed_out`` (produce it without a lock)."""

    entry: Optional[Entry] = None
    lease: Optional[Lease] = None
    waited_s: float = 0.0
    timed_out: bool = False
    broke_stale_lock: bool = False
    holder: Optional[Dict[str, Any]] = field(default=None)


def _dump(obj: Mapping[str, Any]) -> bytes:
    return json.dumps(obj, sort_keys=True).encode()


def _token_of(raw: bytes) -> Optional[str]:
    try:
        return json.loads(raw).get("token")
    except (ValueError, AttributeError):
        return None


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class ArtifactStore:
    """Immutable entries under keys in a folder or URI; see the module docstring.

    Args:
        location: a folder (created on first write), ``file:///abs/path``, or a URI ``pyarrow.fs``
            opens (``s3://bucket/prefix``, ``gs://...``).
        filesystem: an explicit ``pyarrow.fs.FileSystem`` for ``location`` (e.g. an ``S3FileSystem``
            with an endpoint, or a mock in tests).
    """

    def __init__(self, location: Union[str, os.PathLike], filesystem=None, *, heartbeat_s: float = HEARTBEAT_S,
                 stale_after_s: float = STALE_AFTER_S, poll_s: float = POLL_S, settle_s: float = SETTLE_S):
        self.location = os.fspath(location)
        self._backend = _backend(location, filesystem)
        self.heartbeat_s, self.stale_after_s, self.poll_s, self.settle_s = heartbeat_s, stale_after_s, poll_s, settle_s
        if stale_after_s <= 2 * heartbeat_s:
            raise ValueError(f"ArtifactStore: stale_after_s={stale_after_s} must exceed 2 x heartbeat_s={heartbeat_s}")

    @property
    def remote(self) -> bool:
        return self._backend.kind == "remote"

    def __repr__(self) -> str:
        return f"ArtifactStore({self._backend.describe()!r})"

    def describe(self, key: str = "") -> str:
        return self._backend.describe(key)

    # -- paths -----------------------------------------------------------------------------------
    @staticmethod
    def _marker_rel(key: str) -> str:
        return f"{key}/{MARKER}"

    @staticmethod
    def _lock_rel(key: str) -> str:
        return f"{key}{LOCK_SUFFIX}"

    # -- reading ---------------------------------------------------------------------------------
    def get(self, key: str) -> Optional[Entry]:
        """The complete entry of ``key``, or None (absent, no marker yet, or files not matching
        their marker: such an entry is reported with a warning and treated as absent)."""
        check_key(key)
        raw = self._backend.read(self._marker_rel(key))
        if raw is None:
            return None
        where = self._backend.describe(self._marker_rel(key))
        try:
            marker = json.loads(raw)
            version, listing = marker["version"], marker["files"]
        except (ValueError, KeyError, TypeError) as e:
            logger.warning("artifact store: %s is not a valid marker (%s); ignoring the entry", where, e)
            return None
        files = {}
        for name, info in listing.items():
            data = self._backend.read(f"{key}/{version}/{name}")
            if data is None or len(data) != info.get("size") or _sha256(data) != info.get("sha256"):
                logger.warning("artifact store: %s: file %s is missing or does not match its marker (size %s, "
                               "sha256); ignoring the entry", where, name, info.get("size"))
                return None
            files[name] = data
        return Entry(key=key, files=files, meta=dict(marker.get("meta") or {}), version=version)

    def has(self, key: str) -> bool:
        check_key(key)
        return self._backend.read(self._marker_rel(key)) is not None

    # -- writing ---------------------------------------------------------------------------------
    def put(self, key: str, files: Mapping[str, bytes], meta: Optional[Mapping[str, Any]] = None) -> bool:
        """Write ``files`` as the entry of ``key``; True if this call published it, False if an
        entry was there first (then this call's files are removed again)."""
        check_key(key)
        if not files:
            raise ValueError(f"artifact store: put({key!r}) needs at least one file")
        for name, data in files.items():
            if not isinstance(name, str) or not _FILE_RE.match(name) or name == MARKER:
                raise ValueError(f"artifact store: file name {name!r} of {key!r} is invalid; expected "
                                 f"[A-Za-z0-9._-] characters and not {MARKER!r}")
            if not isinstance(data, (bytes, bytearray, memoryview)):
                raise TypeError(f"artifact store: file {name!r} of {key!r} must be bytes, got {type(data).__name__}")
        if self.has(key):
            return False
        version = f"v-{uuid.uuid4().hex[:16]}"
        listing = {}
        for name, data in files.items():
            data = bytes(data)
            self._backend.write(f"{key}/{version}/{name}", data)
            listing[name] = {"size": len(data), "sha256": _sha256(data)}
        marker = {"version": version, "files": listing, "meta": dict(meta or {}), "created": time.time(),
                  "host": _HOST[0], "pid": os.getpid()}
        if self._backend.create_exclusive(self._marker_rel(key), _dump(marker)):
            return True
        self._backend.delete_tree(f"{key}/{version}")
        return False

    def delete(self, key: str) -> None:
        """Remove the entry of ``key`` (marker first, so no reader sees it half-deleted)."""
        check_key(key)
        self._backend.delete(self._marker_rel(key))
        self._backend.delete_tree(key)

    # -- locking ---------------------------------------------------------------------------------
    def lock_record(self, key: str) -> Optional[Dict[str, Any]]:
        """The current holder's lock record (host, pid, token, beat), or None if unlocked."""
        raw = self._backend.read(self._lock_rel(check_key(key)))
        if raw is None:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            return {"raw": raw.decode(errors="replace")}

    def try_lock(self, key: str, info: Optional[Mapping[str, Any]] = None) -> Optional[Lease]:
        """Take ``<key>.lock`` if nobody holds it; a :class:`Lease` or None."""
        check_key(key)
        token = uuid.uuid4().hex
        record = {"token": token, "host": _HOST[0], "boot_id": _HOST[1], "pid": os.getpid(), "beat": 0,
                  "created": time.time(), "info": dict(info or {})}
        rel = self._lock_rel(key)
        if not self._backend.create_exclusive(rel, _dump(record)):
            return None
        if self.remote:  # no conditional put: the last writer of a race owns the lock
            time.sleep(self.settle_s)
            cur = self._backend.read(rel)
            if cur is None or _token_of(cur) != token:
                return None
        return Lease(self, key, token, record, self.heartbeat_s)

    def _holder_dead(self, rec: Optional[Dict[str, Any]]) -> bool:
        """The holder ran on this host (same hostname and boot) and its process is gone."""
        if not rec or rec.get("host") != _HOST[0] or rec.get("boot_id") != _HOST[1] or not _HOST[1]:
            return False
        pid = rec.get("pid")
        return isinstance(pid, int) and pid != os.getpid() and not _pid_alive(pid)

    def clear_dead_lock(self, key: str) -> bool:
        """Remove ``<key>.lock`` if its holder's process is gone on this host (a writer that was
        killed and restarted from a checkpoint publishes without the lock it held); True if removed."""
        raw = self._backend.read(self._lock_rel(check_key(key)))
        if raw is None:
            return False
        try:
            rec = json.loads(raw)
        except ValueError:
            return False
        return self._holder_dead(rec) and self._backend.break_lock(self._lock_rel(key), raw)

    def claim(self, key: str, timeout_s: float = 3600.0, info: Optional[Mapping[str, Any]] = None,
              on_wait: Optional[Callable[[float, Optional[Dict[str, Any]]], None]] = None) -> Claim:
        """The entry of ``key`` if it exists or appears within ``timeout_s``; otherwise the lock.

        Returns at once with the entry, or with a lease when nobody produces it; while a live
        holder produces it, polls every ``poll_s`` for its marker. A stale lock is broken and
        taken. After ``timeout_s`` returns ``Claim(timed_out=True)`` (produce it yourself;
        the first marker still wins). ``on_wait(waited_s, holder)`` is called about every 30 s.
        """
        check_key(key)
        t0 = time.monotonic()
        rel = self._lock_rel(key)
        seen, seen_since = None, t0
        last_report = t0
        broke = False
        holder = None
        while True:
            entry = self.get(key)
            if entry is not None:
                return Claim(entry=entry, waited_s=time.monotonic() - t0, broke_stale_lock=broke, holder=holder)
            lease = self.try_lock(key, info)
            if lease is not None:
                # The holder may have published and released between our get() and try_lock().
                entry = self.get(key)
                if entry is not None:
                    lease.release()
                    return Claim(entry=entry, waited_s=time.monotonic() - t0, broke_stale_lock=broke, holder=holder)
                return Claim(lease=lease, waited_s=time.monotonic() - t0, broke_stale_lock=broke, holder=holder)
            now = time.monotonic()
            raw = self._backend.read(rel)
            if raw is not None:
                if raw != seen:
                    seen, seen_since = raw, now
                    try:
                        holder = json.loads(raw)
                    except ValueError:
                        holder = None
                stale = now - seen_since > self.stale_after_s or self._holder_dead(holder)
                if stale:
                    logger.warning("artifact store: breaking the stale lock of %s (holder %s)",
                                   self._backend.describe(key), holder)
                    if self._backend.break_lock(rel, raw):
                        broke = True
                        seen = None
                    continue
            if now - t0 > timeout_s:
                return Claim(waited_s=now - t0, timed_out=True, broke_stale_lock=broke, holder=holder)
            if on_wait is not None and now - last_report >= 30.0:
                last_report = now
                on_wait(now - t0, holder)
            time.sleep(self.poll_s)
