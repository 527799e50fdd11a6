"""Datasets read from URIs: s3:// against a real S3-compatible server (moto) on loopback, file://.

The server, the uploaded dataset and Ray are started once for the module. The S3 endpoint and
credentials are set through the usual ``AWS_*`` environment variables **before** ``ray.init``,
so the Ray Data read tasks (worker processes) see them too.
"""

import os
import socket

import numpy as np
import pyarrow.fs as pafs
import pytest
import ray
import ray.data

from rllib_sit.data import DatasetError, DatasetMeta, read_dataset, write_dataset
from rllib_sit.data import schema as S
from rllib_sit.data.column_cache import cache_dir_for, open_columns
from rllib_sit.data.io import is_remote
from rllib_sit.data.synthetic import synthetic_rows
from rllib_sit.envs.base import EnvInfo

moto_server = pytest.importorskip("moto.server")
boto3 = pytest.importorskip("boto3")

TINY = EnvInfo(env_id="test:tiny", agents=["a1", "a2", "b1"], agent_types=["a", "a", "b"], obs_dim=4,
               state_dim=6, episode_limit=7, discrete=True, n_actions=5)
COLS = [S.OBS, S.ACTIONS, S.AVAIL_ACTIONS, S.FILLED, S.TERMINATED, S.REWARD, S.LENGTH]
BUCKET = "offline-marl"
PREFIX = "datasets/test/tiny/low"
URI = f"s3://{BUCKET}/{PREFIX}"
ENV_VARS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def local_dataset(tmp_path_factory):
    rows = list(synthetic_rows(TINY, 11, 0, min_length=2))
    return write_dataset(rows, str(tmp_path_factory.mktemp("local") / "low"), DatasetMeta(env=TINY),
                         {"quality": "low"}, rows_per_shard=4, row_group_size=3)


@pytest.fixture(scope="module")
def s3(local_dataset):
    """moto's S3 server on 127.0.0.1 with the local dataset uploaded under ``URI``."""
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=_free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    saved = {k: os.environ.get(k) for k in list(ENV_VARS) + ["AWS_ENDPOINT_URL"]}
    os.environ.update(ENV_VARS, AWS_ENDPOINT_URL=endpoint)
    client = boto3.client("s3", endpoint_url=endpoint)
    client.create_bucket(Bucket=BUCKET)
    for name in sorted(os.listdir(local_dataset)):
        client.upload_file(os.path.join(local_dataset, name), BUCKET, f"{PREFIX}/{name}")
    yield endpoint
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    server.stop()


@pytest.fixture(scope="module")
def ray_ctx(s3):
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    yield
    ray.shutdown()


def test_is_remote():
    assert is_remote("s3://b/p") and is_remote("gs://b/p") and is_remote("hdfs://nn/p")
    assert not is_remote("/tmp/ds") and not is_remote("offline_data/ds") and not is_remote("file:///tmp/ds")
    assert not is_remote(r"C:\data\ds")


def test_s3_metadata_equals_the_local_one(s3, local_dataset):
    remote, local = read_dataset(URI + "/"), read_dataset(local_dataset)
    assert remote.remote and remote.path == URI and not local.remote
    assert remote.meta.to_json() == local.meta.to_json() and remote.env == TINY
    assert remote.card == local.card and remote.card["quality"] == "low"
    assert remote.num_episodes == local.num_episodes == 11
    assert [f.rsplit("/", 1)[1] for f in remote.files] == [os.path.basename(f) for f in local.files]
    assert remote.files[0] == f"{URI}/part-00000.parquet"
    np.testing.assert_array_equal(remote.to_numpy([S.OBS])[S.OBS], local.to_numpy([S.OBS])[S.OBS])


def test_s3_columns_through_ray_data_equal_local_and_cache_is_reused(ray_ctx, local_dataset, tmp_path, monkeypatch):
    reads = []
    real_read = ray.data.read_parquet

    def counting_read(*args, **kwargs):
        reads.append(args)
        return real_read(*args, **kwargs)

    monkeypatch.setattr(ray.data, "read_parquet", counting_read)
    root = tmp_path / "cache"
    ref = read_dataset(local_dataset).to_numpy(COLS)
    cols = open_columns(read_dataset(URI), COLS, root=root)
    assert len(reads) == 1  # the cache was filled through Ray Data
    for c in COLS:
        want = ref[c].astype(bool) if c in (S.FILLED, S.TERMINATED) else ref[c]
        assert isinstance(cols[c], np.memmap) and cols[c].dtype == want.dtype, c
        np.testing.assert_array_equal(cols[c], want, err_msg=c)
    target = cache_dir_for(URI, COLS, root)  # a URI is accepted unchanged
    assert target == cache_dir_for(read_dataset(URI, validate="none"), COLS, root)
    assert target.name.startswith("low-") and target != cache_dir_for(local_dataset, COLS, root)
    stamp = os.stat(target / "obs.npy").st_mtime_ns
    again = open_columns(URI, COLS, root=root)
    assert len(reads) == 1  # second open: no Ray Data read
    assert os.stat(target / "obs.npy").st_mtime_ns == stamp
    np.testing.assert_array_equal(again[S.OBS], cols[S.OBS])
    assert [p.name for p in root.iterdir()] == [target.name]  # no temporary folder left


def test_bad_values_in_a_remote_shard_fail_with_its_uri_and_leave_no_cache(ray_ctx, s3, local_dataset, tmp_path):
    """The Ray Data path validates while streaming, like the local one, and names the shard's URI."""
    import pyarrow.parquet as pq
    from test_io import replace_column

    from rllib_sit.data.io import table_to_numpy

    bad_dir = tmp_path / "bad"
    bad_dir.mkdir()
    t = pq.read_table(os.path.join(local_dataset, "part-00001.parquet"))
    obs = table_to_numpy(t)[S.OBS].copy()
    obs[2, 0, 0, 0] = np.nan
    pq.write_table(replace_column(t, S.OBS, obs), bad_dir / "part-00001.parquet")
    client = boto3.client("s3", endpoint_url=s3)
    for name in sorted(os.listdir(local_dataset)):
        src = bad_dir / name if (bad_dir / name).exists() else os.path.join(local_dataset, name)
        client.upload_file(str(src), BUCKET, f"bad/{name}")
    uri = f"s3://{BUCKET}/bad"
    root = tmp_path / "cache"
    with pytest.raises(DatasetError, match=rf"^{uri}/part-00001.parquet: column 'obs' contains NaN or inf at "
                                           r"row\(s\) \[2\]"):
        open_columns(read_dataset(uri, validate="schema"), COLS, root=root)
    assert os.listdir(root) == []


def test_changed_remote_dataset_gets_a_new_cache(s3, local_dataset, tmp_path):
    client = boto3.client("s3", endpoint_url=s3)
    other = f"{PREFIX}-copy"
    for name in sorted(os.listdir(local_dataset)):
        client.upload_file(os.path.join(local_dataset, name), BUCKET, f"{other}/{name}")
    uri = f"s3://{BUCKET}/{other}"
    before = cache_dir_for(uri, COLS, tmp_path)
    client.put_object(Bucket=BUCKET, Key=f"{other}/part-00000.parquet",
                      Body=open(os.path.join(local_dataset, "part-00002.parquet"), "rb").read())  # 3 rows, not 4
    assert cache_dir_for(uri, COLS, tmp_path) != before


def test_explicit_filesystem_argument(s3):
    host, port = s3.split("://")[1].split(":")
    fs = pafs.S3FileSystem(endpoint_override=f"{host}:{port}", scheme="http", access_key="testing",
                           secret_key="testing", region="us-east-1")
    ds = read_dataset(f"{BUCKET}/{PREFIX}", validate="schema", filesystem=fs)
    assert ds.remote and ds.num_episodes == 11 and ds.card["quality"] == "low"


def test_missing_prefix_and_bucket_are_one_clear_error(s3):
    with pytest.raises(FileNotFoundError, match=rf"^s3://{BUCKET}/datasets/nope: no such dataset: nothing is "
                                                 r"stored under this prefix"):
        read_dataset(f"s3://{BUCKET}/datasets/nope")
    with pytest.raises(FileNotFoundError, match=r"^s3://no-such-bucket/x: no such dataset: bucket 'no-such-bucket' "
                                                 r"does not exist"):
        read_dataset("s3://no-such-bucket/x")


def test_prefix_without_shards_and_bad_schema_name_the_uri(s3):
    client = boto3.client("s3", endpoint_url=s3)
    client.put_object(Bucket=BUCKET, Key="empty/card.json", Body=b"{}")
    with pytest.raises(DatasetError, match=rf"^s3://{BUCKET}/empty: no Parquet files"):
        read_dataset(f"s3://{BUCKET}/empty")
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(pa.table({"x": [1, 2]}), buf)
    client.put_object(Bucket=BUCKET, Key="foreign/a.parquet", Body=buf.getvalue())
    with pytest.raises(DatasetError, match=rf"^s3://{BUCKET}/foreign/a.parquet: no rllib_sit metadata"):
        read_dataset(f"s3://{BUCKET}/foreign")


def test_file_uri_is_the_local_path(local_dataset, tmp_path, monkeypatch):
    def no_ray_data(*args, **kwargs):
        raise AssertionError("a file:// dataset must take the local pyarrow path")

    monkeypatch.setattr(ray.data, "read_parquet", no_ray_data)
    ds = read_dataset(f"file://{local_dataset}")
    assert not ds.remote and ds.path == local_dataset and ds.num_episodes == 11
    cols = open_columns(ds, [S.OBS], root=tmp_path)
    np.testing.assert_array_equal(cols[S.OBS], read_dataset(local_dataset).to_numpy([S.OBS])[S.OBS])
    assert cache_dir_for(f"file://{local_dataset}", [S.OBS], tmp_path) == cache_dir_for(local_dataset, [S.OBS],
                                                                                        tmp_path)


def test_an_algorithm_trains_from_an_s3_uri(ray_ctx, local_dataset, tmp_path):
    """`offline_data(input_="s3://...")`: the base resolves the URI unchanged, opens the episode
    store through Ray Data into the local column cache, and SIT trains from it (no env: evaluation
    needs a registered env id, training does not)."""
    from rllib_sit.algorithms.sit import SITConfig

    algo = (SITConfig().offline_data(input_=URI)
            .training(ardnem_updates=1, ardnem_updates_per_iteration=1, agent_updates=2, agent_updates_per_iteration=2,
                      batch_size_episodes=4, column_cache_dir=str(tmp_path / "cache"),
                      priority_scale="minmax")  # the tiny env has no data spec (no return range)
            .debugging(seed=0)).build_algo()
    try:
        assert algo.dataset_path == URI and algo.store.num_episodes == 11
        assert algo.store.cache_dir.startswith(str(tmp_path / "cache"))
        np.testing.assert_array_equal(algo.store[S.OBS], read_dataset(local_dataset).to_numpy([S.OBS])[S.OBS])
        algo.train()
        r = algo.train()
        assert r["phases"]["agents_updates_done"] == 2 and np.isfinite(r["learners"]["a"]["critic_loss"])
    finally:
        algo.stop()
