"""The pymarl HDF5 importer refuses ambiguous layouts (issue 21): real HDF5 files written with h5py.

pymarl's ``filled`` covers t = 0..length (length + 1 slots) and ``terminated`` sits on step
length - 1. A file written with another convention (``filled`` = the steps only, ``terminated`` in
the slot after them) used to import one step short per episode with every terminal end turned into
a time-limit cut; now any flag off the last step, and any episode that ends before the limit
without a terminal flag, is one error naming the file, the key and the episode, and nothing is
written.
"""

import glob
import os

import h5py
import numpy as np
import pytest

from rllib_sit.data import read_dataset
from rllib_sit.data import schema as S
from rllib_sit.data.importers import import_dataset
from rllib_sit.data.validation import DatasetError
from rllib_sit.envs import make_env

ENV = "smac:3m"
LIMIT = 12  # the file's limit (limit + 1 slots), below smac:3m's own


@pytest.fixture(scope="module")
def info():
    return make_env(ENV).info


def write(path, info, lengths, seed=0, plus_one=True, term_at=None, truncated=None):
    """A pymarl-layout file; ``plus_one``: pymarl's ``filled`` (t = 0..length), else the steps only.
    ``term_at[e]``: the slot of episode e's ``terminated`` flag (None: no flag). ``truncated``:
    the slots of an optional ``truncated`` key."""
    rng = np.random.default_rng(seed)
    E, L1, N = len(lengths), LIMIT + 1, info.n_agents
    filled = np.zeros((E, L1, 1), np.uint8)
    term = np.zeros((E, L1, 1), np.uint8)
    for e, L in enumerate(lengths):
        filled[e, : L + (1 if plus_one else 0)] = 1
        if term_at is not None and term_at[e] is not None:
            term[e, term_at[e]] = 1
    avail = np.ones((E, L1, N, info.n_actions), np.int32)
    data = {"obs": rng.standard_normal((E, L1, N, info.obs_dim)).astype(np.float32),
            "state": rng.standard_normal((E, L1, info.state_dim)).astype(np.float32),
            "actions": rng.integers(0, info.n_actions, (E, L1, N, 1)).astype(np.int64),
            "avail_actions": avail,
            "reward": rng.standard_normal((E, L1, 1)).astype(np.float32), "terminated": term, "filled": filled}
    if truncated is not None:
        tr = np.zeros((E, L1, 1), np.uint8)
        for e, t in enumerate(truncated):
            if t is not None:
                tr[e, t] = 1
        data["truncated"] = tr
    with h5py.File(path, "w") as f:
        for k, v in data.items():
            f.create_dataset(k, data=v)
    return data


def _fails(tmp_path, f, match):
    out = tmp_path / "ds"
    with pytest.raises(DatasetError, match=match):
        import_dataset([f], ENV, str(out))
    assert not out.exists() and not glob.glob(os.path.join(str(tmp_path), ".*tmp*"))  # nothing written


def test_terminated_in_the_slot_after_the_last_filled_step_is_an_error(info, tmp_path):
    """The issue's file: ``filled`` marks the steps only, ``terminated`` sits in the slot after them."""
    f = str(tmp_path / "other_convention.h5")
    write(f, info, [5, 7], plus_one=False, term_at=[5, 7])
    # 'filled' marks 5 slots -> length 4 under pymarl's convention; the flag at slot 5 is off the episode
    _fails(tmp_path, f, r"other_convention\.h5: episode 0: field 'terminated' is set at step 5, outside the "
                        r"episode's steps 0\.\.3, but 'filled' gives length 4")


def test_terminated_on_the_extra_filled_slot_is_an_error(info, tmp_path):
    f = str(tmp_path / "extra_slot.h5")
    write(f, info, [5, 7], term_at=[4, 7])  # episode 1's flag on slot 7 = its length: the observation slot
    _fails(tmp_path, f, r"extra_slot\.h5: episode 1: field 'terminated' is set at step 7, outside the episode's "
                        r"steps 0\.\.6")


def test_no_terminal_flag_before_the_limit_is_an_error(info, tmp_path):
    f = str(tmp_path / "no_flag.h5")
    write(f, info, [5, 7], term_at=[4, None])
    _fails(tmp_path, f, rf"no_flag\.h5: episode 1: field 'terminated' is not set, but the episode ends at length 7, "
                        rf"before the limit {LIMIT}")


def test_truncated_key_is_checked_and_read(info, tmp_path):
    bad = str(tmp_path / "bad_trunc.h5")
    write(bad, info, [5, 7], term_at=[4, None], truncated=[None, 7])
    _fails(tmp_path, bad, r"bad_trunc\.h5: episode 1: field 'truncated' is set at step 7, outside")
    both = str(tmp_path / "both.h5")
    write(both, info, [5, 7], term_at=[4, 6], truncated=[None, 6])
    _fails(tmp_path, both, r"both\.h5: episode 1: fields 'terminated' and 'truncated' are both set at step 6")
    good = str(tmp_path / "good.h5")
    src = write(good, info, [5, 7, LIMIT], term_at=[4, None, None], truncated=[None, 6, None])
    d = read_dataset(import_dataset([good], ENV, str(tmp_path / "ok"))).to_numpy()
    np.testing.assert_array_equal(d[S.LENGTH], [5, 7, LIMIT])
    assert [int(d[S.TERMINATED][e].sum()) for e in range(3)] == [1, 0, 0]
    assert d[S.TRUNCATED][1, 6] == 1 and d[S.TRUNCATED][2, LIMIT - 1] == 1  # explicit cut; cut at the limit
    for e, L in enumerate([5, 7, LIMIT]):  # every step kept: the returns are the file's
        assert d[S.EPISODE_RETURN][e] == pytest.approx(float(src["reward"][e, :L, 0].astype(np.float64).sum()),
                                                       rel=1e-6)
