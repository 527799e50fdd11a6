"""The artifact store (``rllib_sit.data.artifact_store``): complete entries only, first writer
wins, one producer at a time across processes, stale locks broken; in a folder, through
``file://``, on a pyarrow FileSystem, and on a real S3 API (moto on loopback)."""

import json
import multiprocessing as mp
import os
import socket
import time

import pytest
from pyarrow._fs import _MockFileSystem

from rllib_sit.data.artifact_store import MARKER, ArtifactStore, check_key

FILES = {"a.bin": b"\x00\x01" * 100, "meta.json": b'{"x": 1}'}


@pytest.fixture(params=["folder", "file_uri", "mock_fs"])
def store(request, tmp_path):
    kw = dict(heartbeat_s=0.05, stale_after_s=0.5, poll_s=0.02, settle_s=0.01)
    if request.param == "folder":
        return ArtifactStore(str(tmp_path / "store"), **kw)
    if request.param == "file_uri":
        return ArtifactStore(f"file://{tmp_path}/store", **kw)
    return ArtifactStore("mock://bucket/store", filesystem=_MockFileSystem(), **kw)


def test_put_get_roundtrip_and_first_writer_wins(store):
    assert store.get("k1") is None and not store.has("k1")
    assert store.put("k1", FILES, meta={"who": "first"}) is True
    entry = store.get("k1")
    assert entry.files == FILES and entry.meta == {"who": "first"}
    assert store.put("k1", {"a.bin": b"other"}, meta={"who": "second"}) is False
    assert store.get("k1").files == FILES and store.get("k1").meta == {"who": "first"}
    store.delete("k1")
    assert store.get("k1") is None


def test_half_written_or_damaged_entries_are_never_read(store):
    be = store._backend
    be.write("k2/v-dead/a.bin", b"partial")  # files of a writer that died before its marker
    assert store.get("k2") is None and not store.has("k2")
    assert store.put("k2", FILES) is True  # a later writer still publishes
    marker = json.loads(be.read(f"k2/{MARKER}"))
    be.write(f"k2/{marker['version']}/a.bin", b"\x00\x01" * 99)  # damaged after the fact
    assert store.get("k2") is None
    be.write(f"k2/{MARKER}", b"{not json")
    assert store.get("k2") is None


def test_lock_excludes_a_second_holder_and_claim_waits_for_the_entry(store):
    first = store.claim("k3", timeout_s=5)
    assert first.lease is not None and first.entry is None
    assert store.try_lock("k3") is None
    assert store.lock_record("k3")["pid"] == os.getpid()

    def publish_later():
        time.sleep(0.3)  # longer than the stale limit: the heartbeat keeps the lock alive
        store.put("k3", FILES)
        first.lease.release()

    import threading

    t = threading.Thread(target=publish_later)
    t.start()
    second = store.claim("k3", timeout_s=5)
    t.join()
    assert second.entry is not None and second.entry.files == FILES and second.lease is None
    assert not second.broke_stale_lock and second.waited_s > 0.2
    assert store.lock_record("k3") is None


def test_stale_lock_is_broken_and_claim_times_out(store):
    lease = store.try_lock("k4")
    lease._stop.set()  # the holder "hangs": no more heartbeats, lock left behind
    claim = store.claim("k4", timeout_s=10)
    assert claim.lease is not None and claim.broke_stale_lock
    claim.lease.release()
    lease2 = store.try_lock("k4")  # a live holder: the waiter gives up after its timeout
    try:
        timed = store.claim("k4", timeout_s=0.2)
        assert timed.timed_out and timed.entry is None and timed.lease is None
    finally:
        lease2.release()


def test_keys_and_file_names_are_checked(store):
    for bad in ("", "a/b", "../x", "x.lock", ".hidden"):
        with pytest.raises(ValueError, match="artifact key"):
            check_key(bad)
    with pytest.raises(ValueError, match="file name"):
        store.put("k5", {"sub/dir": b"x"})
    with pytest.raises(ValueError, match="needs at least one file"):
        store.put("k5", {})
    with pytest.raises(ValueError, match="pyarrow.fs cannot open"):
        ArtifactStore("nosuchscheme://x/y")


def _producer(root, out_dir, i):
    store = ArtifactStore(root, heartbeat_s=0.05, stale_after_s=1.0, poll_s=0.02)
    claim = store.claim("shared", timeout_s=30)
    if claim.entry is None:
        open(os.path.join(out_dir, f"trained-{i}"), "w").close()
        time.sleep(0.5)  # the expensive part
        store.put("shared", {"w.bin": f"from {i}".encode()})
        if claim.lease is not None:
            claim.lease.release()
        return
    open(os.path.join(out_dir, f"loaded-{i}-{claim.entry.files['w.bin'].decode()}"), "w").close()


def test_concurrent_processes_produce_an_entry_once(tmp_path):
    root, out = str(tmp_path / "store"), tmp_path / "out"
    out.mkdir()
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_producer, args=(root, str(out), i)) for i in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    names = sorted(os.listdir(out))
    trained = [n for n in names if n.startswith("trained-")]
    assert len(trained) == 1, names
    winner = trained[0].split("-")[1]
    assert sorted(n for n in names if n.startswith("loaded-")) == sorted(
        f"loaded-{i}-from {winner}" for i in range(3) if str(i) != winner)


def _die_holding_the_lock(root):
    ArtifactStore(root).try_lock("orphan")
    os._exit(0)  # no release: the lock file stays


def test_lock_of_a_dead_process_on_this_host_is_broken_at_once(tmp_path):
    root = str(tmp_path / "store")
    p = mp.get_context("spawn").Process(target=_die_holding_the_lock, args=(root,))
    p.start()
    p.join(60)
    store = ArtifactStore(root, stale_after_s=600, poll_s=0.02)
    assert store.lock_record("orphan")["pid"] == p.pid
    claim = store.claim("orphan", timeout_s=5)
    assert claim.lease is not None and claim.broke_stale_lock and claim.waited_s < 5
    assert not store.clear_dead_lock("orphan")  # ours, alive
    claim.lease.release()
    p = mp.get_context("spawn").Process(target=_die_holding_the_lock, args=(root,))
    p.start()
    p.join(60)
    assert store.lock_record("orphan")["pid"] == p.pid and store.clear_dead_lock("orphan")
    assert store.lock_record("orphan") is None


def test_s3_reads_through_moto(tmp_path, monkeypatch):
    """Entries and locks read through pyarrow's S3 client from a real S3 API (moto on loopback).
    The objects are uploaded with boto3: pyarrow 26's multipart writes fail against moto 5.2
    (CompleteMultipartUpload), so the object-store write path is covered with the mock FS above."""
    moto_server = pytest.importorskip("moto.server")
    boto3 = pytest.importorskip("boto3")
    import pyarrow.fs as pafs

    local = ArtifactStore(str(tmp_path / "store"))
    local.put("whole", FILES, meta={"n": 1})
    local._backend.write("half/v-dead/a.bin", b"partial")
    lease = local.try_lock("whole")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        endpoint = f"http://127.0.0.1:{port}"
        monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
        client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
                              aws_secret_access_key="testing")
        client.create_bucket(Bucket="stage1")
        for root, _, files in os.walk(tmp_path / "store"):
            for name in files:
                rel = os.path.relpath(os.path.join(root, name), tmp_path / "store")
                client.upload_file(os.path.join(root, name), "stage1", f"cache/ardnem/{rel}")
        fs = pafs.S3FileSystem(endpoint_override=endpoint, scheme="http", region="us-east-1",
                               access_key="testing", secret_key="testing")
        store = ArtifactStore("s3://stage1/cache/ardnem", filesystem=fs)
        assert store.remote
        entry = store.get("whole")
        assert entry.files == FILES and entry.meta == {"n": 1}
        assert store.get("half") is None and store.get("absent") is None
        assert store.lock_record("whole")["token"] == lease.token and store.lock_record("half") is None
        assert store.claim("whole", timeout_s=1).entry.files == FILES
    finally:
        lease.release()
        server.stop()
