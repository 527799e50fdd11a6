"""Memory-mapped column cache: same data as the Parquet reader, built once, atomic, validated."""

import os

import numpy as np
import pyarrow.parquet as pq
import pytest

from test_io import replace_column

from rllib_sit.data import DatasetError, DatasetMeta, read_dataset, write_dataset
from rllib_sit.data import schema as S
from rllib_sit.data.column_cache import cache_dir_for, load_cache, open_columns
from rllib_sit.data.io import table_to_numpy
from rllib_sit.data.synthetic import synthetic_rows
from rllib_sit.envs.base import EnvInfo

TINY = EnvInfo(env_id="test:tiny", agents=["a1", "a2", "b1"], agent_types=["a", "a", "b"], obs_dim=4,
               state_dim=6, episode_limit=7, discrete=True, n_actions=5)
COLS = [S.OBS, S.ACTIONS, S.FILLED, S.TERMINATED, S.REWARD]


@pytest.fixture
def dataset(tmp_path):
    rows = list(synthetic_rows(TINY, 11, 0, min_length=2))
    return write_dataset(rows, str(tmp_path / "ds"), DatasetMeta(env=TINY), {"quality": "test"},
                         rows_per_shard=4, row_group_size=3)


def test_columns_match_the_parquet_reader_and_are_read_only_memmaps(dataset, tmp_path):
    ds = read_dataset(dataset)
    cols = open_columns(ds, COLS, root=tmp_path / "cache")
    ref = ds.to_numpy(COLS)
    for c in COLS:
        assert isinstance(cols[c], np.memmap) and not cols[c].flags.writeable
        np.testing.assert_array_equal(cols[c], ref[c].astype(bool) if c in (S.FILLED, S.TERMINATED) else ref[c])
    assert cols[S.FILLED].dtype == bool and cols[S.OBS].shape == (11, 8, 3, 4)


def test_built_once_then_reused_and_rebuilt_when_the_dataset_changes(dataset, tmp_path):
    root = tmp_path / "cache"
    ds = read_dataset(dataset)
    open_columns(ds, COLS, root=root)
    target = cache_dir_for(ds, COLS, root)
    stamp = os.stat(target / "obs.npy").st_mtime_ns
    open_columns(read_dataset(dataset), COLS, root=root)
    assert os.stat(target / "obs.npy").st_mtime_ns == stamp  # reused, not rewritten
    assert load_cache(target).keys() == set(COLS)
    # rewriting a shard changes the fingerprint -> a new cache folder
    f = ds.files[0]
    pq.write_table(pq.read_table(f), f)
    os.utime(f, ns=(stamp + 10**9, stamp + 10**9))
    assert cache_dir_for(read_dataset(dataset), COLS, root) != target


def test_bad_values_fail_with_the_file_and_leave_no_cache_behind(dataset, tmp_path):
    ds = read_dataset(dataset)
    f = ds.files[1]
    t = pq.read_table(f)
    obs = table_to_numpy(t)[S.OBS].copy()
    obs[2, 0, 0, 0] = np.inf
    pq.write_table(replace_column(t, S.OBS, obs), f)
    root = tmp_path / "cache"
    with pytest.raises(DatasetError, match=rf"{f}: column 'obs' contains NaN or inf at row\(s\) \[2\]"):
        open_columns(read_dataset(dataset, validate="schema"), COLS, root=root)
    assert os.listdir(root) == []  # the temporary folder was removed, nothing looks like a cache


def test_missing_column_and_non_cache_folder_are_clear_errors(dataset, tmp_path):
    with pytest.raises(DatasetError, match=r"column\(s\) \['nope'\] not in the dataset"):
        open_columns(read_dataset(dataset), ["nope"], root=tmp_path / "cache")
    with pytest.raises(DatasetError, match="not a column cache"):
        load_cache(tmp_path)
