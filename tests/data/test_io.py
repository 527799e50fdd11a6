"""Data layer: write -> read round trip, validation errors, atomic writes, Ray Data streaming."""

import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import ray

from rllib_sit.cli import sit_cmd
from rllib_sit.data import DatasetError, DatasetMeta, read_dataset, write_dataset
from rllib_sit.data import schema as S
from rllib_sit.data.batching import flatten_timesteps, to_torch, trim_to_max_length
from rllib_sit.data.io import table_to_numpy
from rllib_sit.data.synthetic import synthetic_rows
from rllib_sit.envs.base import EnvInfo

TINY = EnvInfo(env_id="test:tiny", agents=["a1", "a2", "b1"], agent_types=["a", "a", "b"], obs_dim=4,
               state_dim=6, episode_limit=7, discrete=True, n_actions=5)
TINY_CONT = EnvInfo(env_id="test:tinycont", agents=["l1", "l2"], agent_types=["l", "l"], obs_dim=3,
                    state_dim=5, episode_limit=6, discrete=False, act_dim=2)
META = DatasetMeta(env=TINY)


@pytest.fixture(scope="module")
def ray_ctx():
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    yield
    ray.shutdown()


def rows(n=10, seed=0, env=TINY):
    return list(synthetic_rows(env, n, seed, min_length=2))


@pytest.fixture
def dataset(tmp_path):
    return write_dataset(rows(10), str(tmp_path / "ds"), META, {"quality": "test"}, rows_per_shard=4,
                         row_group_size=2)


def rewrite_shard(path, fn):
    """Apply ``fn(table) -> table`` to the first shard of a dataset (to plant bad data)."""
    f = sorted(p for p in os.listdir(path) if p.endswith(".parquet"))[0]
    full = os.path.join(path, f)
    table = pq.read_table(full)
    pq.write_table(fn(table), full)
    return full


def replace_column(table, name, arr):
    arr = pa.FixedShapeTensorArray.from_numpy_ndarray(np.ascontiguousarray(arr)) if arr.ndim > 1 else pa.array(arr)
    i = table.schema.get_field_index(name)
    return table.set_column(i, name, arr).replace_schema_metadata(table.schema.metadata)


# ------------------------------------------------------------------------------------------ round trip
def test_round_trip_equals_input(dataset):
    src = rows(10)
    ds = read_dataset(dataset)
    assert ds.num_episodes == 10 and len(ds.files) == 3
    assert ds.env == TINY
    got = ds.to_numpy()
    for k in src[0]:
        np.testing.assert_array_equal(got[k], np.stack([r[k] for r in src]), err_msg=k)
    assert ds.card["n_episodes"] == 10 and ds.card["quality"] == "test"
    assert ds.card["return_mean"] == pytest.approx(np.mean([r[S.EPISODE_RETURN] for r in src]), rel=1e-6)
    assert ds.card["schema_version"] == S.SCHEMA_VERSION


def test_round_trip_continuous(tmp_path):
    src = rows(5, env=TINY_CONT)
    path = write_dataset(src, str(tmp_path / "c"), DatasetMeta(env=TINY_CONT))
    got = read_dataset(path).to_numpy()
    np.testing.assert_array_equal(got[S.ACTIONS], np.stack([r[S.ACTIONS] for r in src]))
    assert S.AVAIL_ACTIONS not in got


def test_metadata_in_parquet_schema(dataset):
    f = read_dataset(dataset).files[0]
    md = json.loads(pq.read_schema(f).metadata[S.META_KEY])
    assert md["env"]["agents"] == ["a1", "a2", "b1"] and md["env"]["agent_types"] == ["a", "a", "b"]
    assert md["schema_version"] == 1


def test_arrow_backend_batches_cover_everything_in_order(dataset):
    ds = read_dataset(dataset)
    ids = np.concatenate([b[S.EPISODE_ID] for b in ds.iter_batches(3, backend="arrow")])
    np.testing.assert_array_equal(ids, np.arange(10))
    sizes = [len(b[S.LENGTH]) for b in ds.iter_batches(3, backend="arrow", drop_last=True)]
    assert sizes == [3, 3, 3]


def test_ray_data_streaming_read_of_multi_file_dataset(ray_ctx, dataset):
    ds = read_dataset(dataset)
    rd = ds.ray_dataset(columns=[S.OBS, S.EPISODE_ID])
    batches = list(rd.iter_batches(batch_size=4, batch_format="numpy"))
    ids = np.sort(np.concatenate([b[S.EPISODE_ID] for b in batches]))
    np.testing.assert_array_equal(ids, np.arange(10))
    assert batches[0][S.OBS].shape[1:] == (8, 3, 4) and batches[0][S.OBS].dtype == np.float32
    total = sum(len(b[S.LENGTH]) for b in ds.iter_batches(5, columns=[S.LENGTH], backend="ray"))
    assert total == 10


def test_write_from_ray_data_pipeline(ray_ctx, tmp_path, dataset):
    rd = read_dataset(dataset).ray_dataset()
    out = write_dataset(rd, str(tmp_path / "copy"), META, rows_per_shard=100)
    a, b = read_dataset(dataset).to_numpy(), read_dataset(out).to_numpy()
    order = np.argsort(b[S.EPISODE_ID])
    np.testing.assert_array_equal(a[S.OBS], b[S.OBS][order])


# ------------------------------------------------------------------------------------------ atomicity
def test_half_written_dataset_never_appears(tmp_path):
    def exploding():
        yield from rows(5)
        raise RuntimeError("generator died")

    target = tmp_path / "ds"
    with pytest.raises(RuntimeError, match="generator died"):
        write_dataset(exploding(), str(target), META, rows_per_shard=2, row_group_size=1)
    assert not target.exists()
    assert os.listdir(tmp_path) == []  # no temp folder left behind either


def test_existing_dataset_is_not_overwritten_by_default(dataset):
    with pytest.raises(FileExistsError, match="already exists"):
        write_dataset(rows(2), dataset, META)
    write_dataset(rows(2), dataset, META, overwrite=True)
    assert read_dataset(dataset).num_episodes == 2


# ------------------------------------------------------------------------------------------ bad input
def test_missing_path_is_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such dataset"):
        read_dataset(str(tmp_path / "nope"))


def test_missing_column(dataset):
    f = rewrite_shard(dataset, lambda t: t.drop_columns([S.REWARD]).replace_schema_metadata(t.schema.metadata))
    with pytest.raises(DatasetError, match=rf"{f}: missing column 'reward'"):
        read_dataset(dataset)


def test_wrong_shape(dataset):
    def fn(t):
        obs = table_to_numpy(t)[S.OBS]
        return replace_column(t, S.OBS, np.concatenate([obs, obs[..., :1]], axis=-1))

    f = rewrite_shard(dataset, fn)
    with pytest.raises(DatasetError, match=rf"{f}: column 'obs' has per-episode shape \[8, 3, 5\], expected \[8, 3, 4\]"):
        read_dataset(dataset)


def test_wrong_dtype(dataset):
    f = rewrite_shard(dataset, lambda t: replace_column(t, S.REWARD, table_to_numpy(t)[S.REWARD].astype(np.float64)))
    with pytest.raises(DatasetError, match=rf"{f}: column 'reward' has dtype float64, expected float32"):
        read_dataset(dataset)


def test_agent_count_mismatch(dataset):
    def fn(t):
        return replace_column(t, S.ACTIONS, table_to_numpy(t)[S.ACTIONS][:, :, :2])

    rewrite_shard(dataset, fn)
    with pytest.raises(DatasetError, match=r"column 'actions'.*agent count mismatch: the metadata lists 3 agents"):
        read_dataset(dataset)


def test_nan_in_observations(dataset):
    def fn(t):
        obs = table_to_numpy(t)[S.OBS].copy()
        obs[1, 0, 0, 0] = np.nan
        return replace_column(t, S.OBS, obs)

    f = rewrite_shard(dataset, fn)
    with pytest.raises(DatasetError, match=rf"{f}: column 'obs' contains NaN or inf at row\(s\) \[1\]"):
        read_dataset(dataset)
    assert read_dataset(dataset, validate="schema").num_episodes == 10  # schema-only skips values


def test_action_out_of_range(dataset):
    def fn(t):
        acts = table_to_numpy(t)[S.ACTIONS].copy()
        acts[0, 0, 0] = 9
        return replace_column(t, S.ACTIONS, acts)

    rewrite_shard(dataset, fn)
    with pytest.raises(DatasetError, match=r"column 'actions' out of range at row\(s\) \[0\]; expected integers in \[0, 5\)"):
        read_dataset(dataset)


def test_unavailable_action(dataset):
    def fn(t):
        cols = table_to_numpy(t)
        avail = cols[S.AVAIL_ACTIONS].copy()
        avail[2, 0, 1, cols[S.ACTIONS][2, 0, 1]] = 0
        return replace_column(t, S.AVAIL_ACTIONS, avail)

    rewrite_shard(dataset, fn)
    with pytest.raises(DatasetError, match=r"'avail_actions' marks unavailable at row\(s\) \[2\]"):
        read_dataset(dataset)


def test_filled_disagrees_with_length(dataset):
    def fn(t):
        return replace_column(t, S.LENGTH, (table_to_numpy(t)[S.LENGTH] - 1).astype(np.int32))

    rewrite_shard(dataset, fn)
    with pytest.raises(DatasetError, match=r"column 'filled' disagrees with 'length'"):
        read_dataset(dataset)


def test_truncated_file(dataset):
    f = read_dataset(dataset).files[1]
    data = open(f, "rb").read()
    with open(f, "wb") as fh:
        fh.write(data[: len(data) // 2])
    with pytest.raises(DatasetError, match=rf"{f}: not a readable Parquet file \(truncated or corrupt\?\)"):
        read_dataset(dataset)


def test_foreign_parquet_without_metadata(tmp_path):
    pq.write_table(pa.table({"x": [1, 2]}), tmp_path / "a.parquet")
    with pytest.raises(DatasetError, match="no rllib_sit metadata"):
        read_dataset(str(tmp_path))


def test_shards_of_different_envs(tmp_path, dataset):
    other = write_dataset(rows(2, env=TINY_CONT), str(tmp_path / "o"), DatasetMeta(env=TINY_CONT))
    os.rename(os.path.join(other, "part-00000.parquet"), os.path.join(dataset, "part-00009.parquet"))
    with pytest.raises(DatasetError, match="metadata differs"):
        read_dataset(dataset)


def test_writer_rejects_bad_rows(tmp_path):
    bad = rows(3)
    bad[1][S.STATE] = bad[1][S.STATE][:, :5]
    with pytest.raises(DatasetError, match=r"episode 1: field 'state' has shape \[8, 5\], expected \[8, 6\]"):
        write_dataset(bad, str(tmp_path / "ds"), META)
    bad = rows(3)
    bad[2][S.REWARD][0] = np.inf
    with pytest.raises(DatasetError, match=r"column 'reward' contains NaN or inf at row\(s\) \[2\]"):
        write_dataset(bad, str(tmp_path / "ds"), META)
    assert not (tmp_path / "ds").exists()


def test_continuous_action_out_of_bounds(tmp_path):
    bad = rows(2, env=TINY_CONT)
    bad[0][S.ACTIONS][0, 0, 0] = 3.0
    with pytest.raises(DatasetError, match=r"column 'actions' outside \[-1.0, 1.0\]"):
        write_dataset(bad, str(tmp_path / "ds"), DatasetMeta(env=TINY_CONT))


# ------------------------------------------------------------------------------------------ batching
def test_episode_batch_shapes_and_masks(dataset):
    batch = read_dataset(dataset).to_numpy()
    tb = to_torch(batch)
    t_max = int(batch[S.LENGTH].max())
    assert tb[S.OBS].shape == (10, t_max + 1, 3, 4)
    assert tb[S.ACTIONS].shape == (10, t_max, 3)
    assert tb[S.FILLED].dtype.is_floating_point is False and tb[S.FILLED].shape == (10, t_max)
    assert tb[S.FILLED].sum().item() == int(batch[S.LENGTH].sum())
    full = to_torch(batch, trim=False)
    assert full[S.REWARD].shape == (10, TINY.episode_limit)


def test_trim_shares_memory():
    b = {S.OBS: np.zeros((2, 8, 3, 4), np.float32), S.FILLED: np.zeros((2, 7), np.uint8),
         S.LENGTH: np.array([2, 3], np.int32)}
    out = trim_to_max_length(b)
    assert out[S.OBS].shape == (2, 4, 3, 4) and np.shares_memory(out[S.OBS], b[S.OBS])
    t = to_torch(b)
    t[S.OBS][0, 0, 0, 0] = 5.0
    assert b[S.OBS][0, 0, 0, 0] == 5.0  # writable arrays are not copied


def test_flat_timestep_batch(dataset):
    batch = read_dataset(dataset).to_numpy()
    flat = flatten_timesteps(batch)
    n = int(batch[S.LENGTH].sum())
    assert flat[S.OBS].shape == (n, 3, 4) and flat["next_obs"].shape == (n, 3, 4)
    assert flat[S.REWARD].shape == (n,)
    e, t = flat["episode_index"][3], flat["t"][3]
    np.testing.assert_array_equal(flat["next_obs"][3], batch[S.OBS][e, t + 1])
    assert flat[S.REWARD].sum() == pytest.approx(batch[S.EPISODE_RETURN].sum(), rel=1e-5)


# ------------------------------------------------------------------------------------------ CLI
def test_inspect_cli_prints_card_and_agents(dataset, capsys):
    assert sit_cmd.main(["data", "inspect", dataset]) == 0
    out = capsys.readouterr().out
    assert "n_episodes" in out and "a1" in out and "b1" in out and "action_entropy" in out
    assert sit_cmd.main(["data", "inspect", dataset, "--json"]) == 0
    js = json.loads(capsys.readouterr().out)
    assert js["episodes"] == 10 and set(js["agents"]) == {"a1", "a2", "b1"}


def test_inspect_cli_bad_path_is_one_clear_error(tmp_path, capsys):
    assert sit_cmd.main(["data", "inspect", str(tmp_path / "missing")]) == 2
    assert "no such dataset" in capsys.readouterr().err


def test_inspect_cli_keeps_square_brackets_of_compositions(tmp_path, capsys):
    """Regression: rich markup swallowed '[s1:r, ...]' in the card's composition."""
    path = write_dataset(rows(2), str(tmp_path / "ds"), META, {"composition": "100% [a1:r, a2:m, b1:e]"})
    assert sit_cmd.main(["data", "inspect", path]) == 0
    assert "[a1:r, a2:m, b1:e]" in capsys.readouterr().out
