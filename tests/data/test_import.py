"""``rllib-sit data import``: OG-MARL vaults and pymarl/ICQ/CFCQL HDF5 files into schema v1.

The source files are written here with each format's own library, laid out as the real ones:
vaults as flashbax writes them (``metadata.json`` with the buffer structure as strings, one
tensorstore zarr array per leaf in a zarr-over-OCDBT store, gzip level 5, the time axis allocated
to 10^13 steps, ``vault_index``), HDF5 as pymarl's ``EpisodeBatch`` (``[episodes, limit+1, ...]``,
``filled`` covering the step after the end). Sizes are those of SMAC 3m (OG-MARL's 3m vaults:
obs 30, state 48, 9 actions) and MAMuJoCo HalfCheetah 2x3 for the continuous case.
"""

import glob
import json
import os

import h5py
import numpy as np
import pytest
import tensorstore as ts

from rllib_sit.cli.sit_cmd import main as sit_main
from rllib_sit.data import DatasetError, read_dataset
from rllib_sit.data import schema as S
from rllib_sit.data.importers import IMPORTERS, detect_format, import_dataset, ogmarl_vault, pymarl_hdf5
from rllib_sit.envs.registry import make_env

from import_writers import write_pymarl  # noqa: E402 - shared with tests/ope

SMAC_3M = "smac:3m"
CHEETAH = "mamujoco:halfcheetah_2l"
TIME_AXIS_MAX_LENGTH = int(10e12)  # flashbax's allocation of the time axis


# -- writing sources in their own formats ----------------------------------------------------------

def write_vault(uid_dir, leaves, n_steps, buffer_len=256, extra_metadata=None):
    """A flashbax Vault v1.2 at ``uid_dir`` (``.../<scenario>.vlt/<uid>``) holding ``leaves``
    (``{"observations": [1, T, ...], "infos": {"legals": ...}}``), written with tensorstore."""
    os.makedirs(uid_dir)

    def flat(tree, prefix=""):
        for k, v in tree.items():
            if isinstance(v, dict):
                yield from flat(v, f"{prefix}{k}.")
            else:
                yield f"{prefix}{k}.", v

    def structure(tree, fn):
        return {k: structure(v, fn) if isinstance(v, dict) else fn(v) for k, v in tree.items()}

    meta = {"version": 1.2,
            "structure_shape": structure(leaves, lambda a: str((1, buffer_len) + a.shape[2:])),
            "structure_dtype": structure(leaves, lambda a: a.dtype.name), **(extra_metadata or {})}
    with open(os.path.join(uid_dir, "metadata.json"), "w") as f:
        json.dump(meta, f)

    def spec(name):
        return {"driver": "zarr", "kvstore": {"driver": "ocdbt", "base": f"file://{uid_dir}", "path": name},
                "metadata": {}}

    for name, arr in flat(leaves):
        s = spec(name)
        s["metadata"]["compressor"] = {"id": "gzip", "level": 5}
        store = ts.open(s, shape=(arr.shape[0], TIME_AXIS_MAX_LENGTH) + arr.shape[2:], dtype=arr.dtype.name,
                        create=True).result()
        store[:, 0:arr.shape[1], ...].write(arr).result()
    index = ts.open(spec("vault_index"), dtype=ts.int32, shape=(1,), create=True).result()
    index.write(n_steps).result()
    return uid_dir


def vault_episodes(info, lengths, ends, tail=0, seed=0):
    """Flat vault leaves for episodes of ``lengths`` ending by ``ends`` ("term"/"trunc"), plus an
    unfinished ``tail``. Discrete actions are legal; per-agent rewards repeat the team reward."""
    rng = np.random.default_rng(seed)
    T, N = sum(lengths) + tail, info.n_agents
    obs = rng.standard_normal((1, T, N, info.obs_dim)).astype(np.float32)
    state = rng.standard_normal((1, T, info.state_dim)).astype(np.float32)
    team = rng.standard_normal(T).astype(np.float32)
    rewards = np.repeat(team[None, :, None], N, axis=2)
    terminals, truncations = np.zeros((1, T, N), np.float32), np.zeros((1, T, N), np.float32)
    stop = 0
    for L, how in zip(lengths, ends):
        stop += L
        (terminals if how == "term" else truncations)[0, stop - 1, :] = 1.0
    leaves = {"observations": obs, "rewards": rewards, "terminals": terminals, "truncations": truncations,
              "infos": {"state": state}}
    if info.discrete:
        legals = (rng.random((1, T, N, info.n_actions)) < 0.6).astype(np.float32)
        legals[..., 1] = 1.0
        leaves["actions"] = (rng.random((1, T, N, info.n_actions)) * legals).argmax(-1).astype(np.int32)
        leaves["infos"]["legals"] = legals
    else:
        leaves["actions"] = rng.uniform(-1, 1, (1, T, N, info.act_dim)).astype(np.float32)
    return leaves


@pytest.fixture(scope="module")
def smac3m():
    return make_env(SMAC_3M).info


@pytest.fixture(scope="module")
def cheetah():
    return make_env(CHEETAH).info


def leftovers(parent):
    """Hidden temporary folders the writer would leave behind after a failure."""
    return glob.glob(os.path.join(parent, ".*tmp*"))


# -- OG-MARL vaults ----------------------------------------------------------------------------------

def test_vault_round_trip_discrete(smac3m, tmp_path):
    lengths, ends = [5, 7, 60, 4], ["term", "trunc", "term", "term"]
    leaves = vault_episodes(smac3m, lengths, ends, tail=3)
    n_steps = sum(lengths) + 3
    vault = write_vault(str(tmp_path / "vaults" / "3m.vlt" / "Good"), leaves, n_steps,
                        extra_metadata={"env_name": "smac_v1", "scenario": "3m"})
    assert detect_format(vault) == "og-marl-vault"
    out = import_dataset([vault], SMAC_3M, str(tmp_path / "ds"))
    ds = read_dataset(out)  # full validation again on read
    d = ds.to_numpy()
    np.testing.assert_array_equal(d[S.LENGTH], lengths)
    np.testing.assert_array_equal(d[S.EPISODE_ID], np.arange(4))
    start = 0
    for e, L in enumerate(lengths):
        sl = slice(start, start + L)
        np.testing.assert_array_equal(d[S.OBS][e, :L], leaves["observations"][0, sl])
        np.testing.assert_array_equal(d[S.OBS][e, L], leaves["observations"][0, start + L - 1])  # not stored: repeated
        assert not d[S.OBS][e, L + 1:].any()
        np.testing.assert_array_equal(d[S.STATE][e, :L], leaves["infos"]["state"][0, sl])
        np.testing.assert_array_equal(d[S.AVAIL_ACTIONS][e, :L], leaves["infos"]["legals"][0, sl])
        np.testing.assert_array_equal(d[S.ACTIONS][e, :L], leaves["actions"][0, sl])
        np.testing.assert_array_equal(d[S.REWARD][e, :L], leaves["rewards"][0, sl, 0])
        np.testing.assert_array_equal(d[S.FILLED][e], np.arange(smac3m.episode_limit) < L)
        assert d[S.EPISODE_RETURN][e] == pytest.approx(leaves["rewards"][0, sl, 0].sum(), rel=1e-5)
        start += L
    # term -> terminated; trunc -> truncated; a terminal flag at the episode limit (60) -> truncated
    assert [int(d[S.TERMINATED][e].sum()) for e in range(4)] == [1, 0, 0, 1]
    assert [int(d[S.TRUNCATED][e].sum()) for e in range(4)] == [0, 1, 1, 0]
    assert d[S.TERMINATED][0, 4] == 1 and d[S.TRUNCATED][2, 59] == 1
    card = ds.card
    assert card["env"] == SMAC_3M and card["quality"] == "Good" and card["n_episodes"] == 4
    src = card["source"]
    assert src["format"] == "og-marl-vault" and src["paths"] == [vault]
    assert src["claims"]["vault_name"] == "3m.vlt" and src["claims"]["vault_uid"] == "Good"
    assert src["claims"]["vault_version"] == 1.2 and src["claims"]["metadata"]["env_name"] == "smac_v1"
    assert card["import"]["dropped_unfinished_steps"] == 3 and card["import"]["team_reward"] == "mean"
    assert card["import"]["agent_rewards_differ"] is False


def test_vault_round_trip_continuous_and_scenario_folder(cheetah, tmp_path, monkeypatch):
    monkeypatch.setattr(ogmarl_vault, "BLOCK_STEPS", 4)  # every episode its own read block
    lengths = [6, 9]
    leaves = vault_episodes(cheetah, lengths, ["trunc", "term"], seed=1)
    leaves["rewards"][0, :, 1] += 1.0  # per-agent rewards that differ: mean of the two
    write_vault(str(tmp_path / "halfcheetah.vlt" / "Medium"), leaves, sum(lengths))
    # The .vlt folder with a single uid resolves to it.
    out = import_dataset([str(tmp_path / "halfcheetah.vlt")], CHEETAH, str(tmp_path / "ds"), team_reward="mean")
    ds = read_dataset(out)
    d = ds.to_numpy()
    np.testing.assert_array_equal(d[S.LENGTH], lengths)
    np.testing.assert_allclose(d[S.ACTIONS][1, :9], leaves["actions"][0, 6:15])
    np.testing.assert_allclose(d[S.REWARD][0, :6], leaves["rewards"][0, :6].mean(-1), rtol=1e-6)
    assert ds.card["quality"] == "Medium" and ds.card["import"]["agent_rewards_differ"] is True
    assert S.AVAIL_ACTIONS not in d


def test_vault_cli(smac3m, tmp_path, capsys):
    vault = write_vault(str(tmp_path / "3m.vlt" / "Poor"), vault_episodes(smac3m, [4, 4], ["term", "term"]), 8)
    out = str(tmp_path / "ds")
    assert sit_main(["data", "import", vault, "--env", SMAC_3M, "--out", out, "--no-progress"]) == 0
    assert out in capsys.readouterr().out and read_dataset(out).num_episodes == 2
    # existing output: one clean error, exit code 2
    assert sit_main(["data", "import", vault, "--env", SMAC_3M, "--out", out, "--no-progress"]) == 2
    assert "already exists" in capsys.readouterr().err


def test_vault_of_another_map_is_one_clear_error(smac3m, tmp_path):
    vault = write_vault(str(tmp_path / "3m.vlt" / "Good"), vault_episodes(smac3m, [4], ["term"]), 4)
    with pytest.raises(DatasetError) as e:
        import_dataset([vault], "smac:2s3z", str(tmp_path / "ds"))
    msg = str(e.value)
    assert msg.startswith(os.path.join(vault, "observations.")) and "agent count" in msg
    assert "expected 5 for smac:2s3z" in msg
    assert not os.path.exists(tmp_path / "ds") and not leftovers(str(tmp_path))
    # same agent count, other observation size: 3m's obs (30) into 3s_vs_3z
    other = make_env("smac:3s_vs_3z").info
    assert other.n_agents == 3 and other.obs_dim != 30
    with pytest.raises(DatasetError, match=rf"observations\.'.*observation size \(axis 3\) 30, expected "
                                           rf"{other.obs_dim} for smac:3s_vs_3z"):
        import_dataset([vault], "smac:3s_vs_3z", str(tmp_path / "ds"))


def test_vault_corrupt_inputs(smac3m, tmp_path):
    leaves = vault_episodes(smac3m, [4, 5], ["term", "term"])
    # a leaf missing from the store
    no_legals = dict(leaves, infos={"state": leaves["infos"]["state"]})
    v1 = write_vault(str(tmp_path / "a" / "3m.vlt" / "Good"), no_legals, 9)
    with pytest.raises(DatasetError, match=r"infos\.legals\.: no such array in the vault's OCDBT store"):
        import_dataset([v1], SMAC_3M, str(tmp_path / "ds"))
    # truncated OCDBT manifest
    v2 = write_vault(str(tmp_path / "b" / "3m.vlt" / "Good"), leaves, 9)
    manifest = os.path.join(v2, "manifest.ocdbt")
    with open(manifest, "rb") as f:
        data = f.read()
    with open(manifest, "wb") as f:
        f.write(data[: len(data) // 2])
    with pytest.raises(DatasetError, match=r"Good/observations\.: could not open the zarr array \(truncated or "
                                           r"corrupt vault\?\)"):
        import_dataset([v2], SMAC_3M, str(tmp_path / "ds"))
    # metadata.json that is not JSON, and one of another flashbax major version
    v3 = write_vault(str(tmp_path / "c" / "3m.vlt" / "Good"), leaves, 9)
    with open(os.path.join(v3, "metadata.json"), "w") as f:
        f.write("{not json")
    with pytest.raises(DatasetError, match=r"metadata\.json: not valid JSON"):
        import_dataset([v3], SMAC_3M, str(tmp_path / "ds"))
    with open(os.path.join(v3, "metadata.json"), "w") as f:
        json.dump({"version": 2.0, "structure_shape": {}}, f)
    with pytest.raises(DatasetError, match=r"field 'version' is 2.0; expected a flashbax vault 1.x"):
        import_dataset([v3], SMAC_3M, str(tmp_path / "ds"))
    # NaN in the observations: the writer's validation names the source and the column
    bad = dict(leaves, observations=leaves["observations"].copy())
    bad["observations"][0, 6, 1, 3] = np.nan
    v4 = write_vault(str(tmp_path / "d" / "3m.vlt" / "Good"), bad, 9)
    with pytest.raises(DatasetError) as e:
        import_dataset([v4], SMAC_3M, str(tmp_path / "ds"))
    assert str(e.value).startswith(v4) and "column 'obs' contains NaN" in str(e.value) and "row(s) [1]" in str(e.value)
    # an action the legals mark unavailable
    illegal = dict(leaves, actions=leaves["actions"].copy(), infos=dict(leaves["infos"]))
    illegal["infos"]["legals"] = leaves["infos"]["legals"].copy()
    illegal["infos"]["legals"][0, 2, 0, :] = 0.0
    illegal["infos"]["legals"][0, 2, 0, 1] = 1.0
    illegal["actions"][0, 2, 0] = 3
    v5 = write_vault(str(tmp_path / "e" / "3m.vlt" / "Good"), illegal, 9)
    with pytest.raises(DatasetError, match="'avail_actions' marks unavailable"):
        import_dataset([v5], SMAC_3M, str(tmp_path / "ds"))
    # no episode ends in the valid steps
    v6 = write_vault(str(tmp_path / "f" / "3m.vlt" / "Good"), leaves, 3)
    with pytest.raises(DatasetError, match=r"no complete episode in 3 steps"):
        import_dataset([v6], SMAC_3M, str(tmp_path / "ds"))
    assert not os.path.exists(tmp_path / "ds") and not leftovers(str(tmp_path))


# -- pymarl / ICQ / CFCQL HDF5 ------------------------------------------------------------------------

def test_pymarl_hdf5_round_trip_over_two_files(smac3m, tmp_path, monkeypatch):
    monkeypatch.setattr(pymarl_hdf5, "BLOCK_EPISODES", 1)  # one read block per episode
    limit = smac3m.episode_limit
    f1, f2 = str(tmp_path / "icq_3m_part1.h5"), str(tmp_path / "icq_3m_part2.h5")
    d1 = write_pymarl(f1, smac3m, [5, limit], [True, False], limit, seed=0, attrs={"map_name": "3m"})
    d2 = write_pymarl(f2, smac3m, [8], [True], limit, seed=1)
    assert detect_format(f1) == "pymarl-hdf5"
    out = import_dataset([f1, f2], SMAC_3M, str(tmp_path / "ds"), quality="medium")
    ds = read_dataset(out)
    d = ds.to_numpy()
    np.testing.assert_array_equal(d[S.LENGTH], [5, limit, 8])
    np.testing.assert_array_equal(d[S.EPISODE_ID], [0, 1, 2])
    for e, (src, k, L) in enumerate([(d1, 0, 5), (d1, 1, limit), (d2, 0, 8)]):
        np.testing.assert_array_equal(d[S.OBS][e, : L + 1], src["obs"][k, : L + 1])  # incl. the step after the end
        np.testing.assert_array_equal(d[S.STATE][e, : L + 1], src["state"][k, : L + 1])
        np.testing.assert_array_equal(d[S.AVAIL_ACTIONS][e, : L + 1], src["avail_actions"][k, : L + 1])
        np.testing.assert_array_equal(d[S.ACTIONS][e, :L], src["actions"][k, :L, :, 0])
        np.testing.assert_array_equal(d[S.REWARD][e, :L], src["reward"][k, :L, 0])
        assert not d[S.ACTIONS][e, L:].any() and not d[S.OBS][e, L + 1:].any()
    assert [int(d[S.TERMINATED][e].sum()) for e in range(3)] == [1, 0, 1]
    assert [int(d[S.TRUNCATED][e].sum()) for e in range(3)] == [0, 1, 0]
    card = ds.card
    assert card["quality"] == "medium" and card["source"]["format"] == "pymarl-hdf5"
    assert card["source"]["paths"] == [f1, f2]
    files = card["source"]["claims"]["files"]
    assert files["icq_3m_part1.h5"]["attrs"] == {"map_name": "3m"} and files["icq_3m_part1.h5"]["episodes"] == 2
    assert files["icq_3m_part1.h5"]["unused_keys"] == ["actions_onehot"]


def test_pymarl_hdf5_continuous(cheetah, tmp_path):
    f = str(tmp_path / "cheetah.hdf5")
    # episode 0 runs to the file's limit (10) without 'terminated': cut by the time limit
    src = write_pymarl(f, cheetah, [10, 3], [False, True], limit=10)
    out = import_dataset([f], CHEETAH, str(tmp_path / "ds"))
    d = read_dataset(out).to_numpy()
    np.testing.assert_array_equal(d[S.LENGTH], [10, 3])
    np.testing.assert_allclose(d[S.ACTIONS][0, :10], src["actions"][0, :10])
    assert d[S.TRUNCATED][0, 9] == 1 and d[S.TERMINATED][1, 2] == 1


def test_pymarl_hdf5_errors(smac3m, tmp_path):
    limit = smac3m.episode_limit
    good = str(tmp_path / "good.h5")
    write_pymarl(good, smac3m, [5, 6], [True, True], limit)
    # another map's sizes: 3m data into 3s_vs_3z (same agents, other obs size)
    other = make_env("smac:3s_vs_3z").info
    with pytest.raises(DatasetError, match=rf"good\.h5:obs: field 'obs' has observation size \(axis 3\) 30, "
                                           rf"expected {other.obs_dim} for smac:3s_vs_3z"):
        import_dataset([good], "smac:3s_vs_3z", str(tmp_path / "ds"))
    # episodes longer than our episode limit
    long_limit = str(tmp_path / "long.h5")
    write_pymarl(long_limit, smac3m, [limit + 2], [True], limit + 5)
    with pytest.raises(DatasetError, match=rf"long\.h5: episode 0: an episode of {limit + 2} steps, more than the "
                                           rf"episode limit {limit} of smac:3m"):
        import_dataset([long_limit], SMAC_3M, str(tmp_path / "ds"))
    # truncated file
    with open(good, "rb") as f:
        data = f.read()
    trunc = str(tmp_path / "truncated.h5")
    with open(trunc, "wb") as f:
        f.write(data[: len(data) // 2])
    with pytest.raises(DatasetError, match=r"truncated\.h5: not a readable HDF5 file \(truncated or corrupt\?\)"):
        import_dataset([trunc], SMAC_3M, str(tmp_path / "ds"), format="pymarl-hdf5")
    # a missing key
    missing = str(tmp_path / "missing.h5")
    with h5py.File(good, "r") as src, h5py.File(missing, "w") as dst:
        for k in src:
            if k != "avail_actions":
                dst.create_dataset(k, data=src[k][()])
    with pytest.raises(DatasetError, match=r"missing\.h5: missing dataset 'avail_actions'"):
        import_dataset([missing], SMAC_3M, str(tmp_path / "ds"))
    # 'terminated' before the end that 'filled' gives
    inconsistent = str(tmp_path / "inconsistent.h5")
    write_pymarl(inconsistent, smac3m, [5, 6], [True, True], limit)
    with h5py.File(inconsistent, "r+") as f:
        f["terminated"][1, 2, 0] = 1
    with pytest.raises(DatasetError, match=r"inconsistent\.h5: episode 1: field 'terminated' is set at step 2, but "
                                           r"'filled' gives length 6"):
        import_dataset([inconsistent], SMAC_3M, str(tmp_path / "ds"))
    assert not os.path.exists(tmp_path / "ds") and not leftovers(str(tmp_path))


def test_format_detection_and_options(smac3m, tmp_path, monkeypatch):
    assert set(IMPORTERS) == {"og-marl-vault", "pymarl-hdf5"}
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(DatasetError, match=r"notes\.txt: no known dataset format recognised"):
        import_dataset([str(text)], SMAC_3M)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        import_dataset([str(tmp_path / "nowhere")], SMAC_3M)
    f = str(tmp_path / "x.h5")
    write_pymarl(f, smac3m, [3], [True], smac3m.episode_limit)
    with pytest.raises(ValueError, match=r"team_reward='max' is invalid; expected one of \['first', 'mean', 'sum'\]"):
        import_dataset([f], SMAC_3M, team_reward="max")
    # several uids under one .vlt: ask for one
    leaves = vault_episodes(smac3m, [3], ["term"])
    for uid in ("Good", "Poor"):
        write_vault(str(tmp_path / "3m.vlt" / uid), leaves, 3)
    with pytest.raises(DatasetError, match=r"3m\.vlt: holds several vaults \['Good', 'Poor'\]"):
        import_dataset([str(tmp_path / "3m.vlt")], SMAC_3M, str(tmp_path / "ds"))
    # the default output folder lives in the data dir
    monkeypatch.setenv("RLLIB_SIT_DATA_DIR", str(tmp_path / "data"))
    out = import_dataset([str(tmp_path / "3m.vlt" / "Poor")], SMAC_3M)
    assert out == str(tmp_path / "data" / "datasets" / "smac_3m" / "og-marl-vault_Poor")
