"""Dataset generation: determinism under the seed, parallel Ray chunks, card contents,
composition per episode, caching (ensure_dataset) and per-agent decentralized datasets.

Runs on a tiny 2-agent env defined here (no simulator needed); its functions are pickled by value
so Ray workers can use them.
"""

import json
import sys
from pathlib import Path
from functools import partial

import numpy as np
import pytest
import ray
import ray.cloudpickle

from rllib_sit.data import read_dataset
from rllib_sit.data import schema as S
from rllib_sit.data.generation import (
    component_assignment,
    custom_quality_name,
    dataset_path,
    decentralize,
    ensure_dataset,
    generate_dataset,
)
from rllib_sit.data.composition import parse_composition
from rllib_sit.data.pools import Pool, PoolMember
from rllib_sit._version import __version__
from rllib_sit.envs.base import CoopEnv, EnvInfo

ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

GOOD = 2


class TinyEnv(CoopEnv):
    """2 agents, 3 actions, 6 steps; team reward = number of agents taking action 2 (GOOD).

    Action 1 is unavailable on odd steps; obs = (t, agent index, noise)."""

    def __init__(self):
        self.info = EnvInfo(env_id="toy:tiny", agents=["a1", "a2"], agent_types=["x", "x"], obs_dim=3,
                            state_dim=2, episode_limit=6, discrete=True, n_actions=3)
        super().__init__()
        self._rng = np.random.default_rng(0)
        self.t = 0
        self.good = np.zeros(2)

    def _reset(self, seed):
        self._rng = np.random.default_rng(seed)
        self.t = 0
        self.good = np.zeros(2)

    def _step(self, actions):
        self.t += 1
        self.good += actions == GOOD
        return float(np.sum(actions == GOOD)), False, self.t >= 6, {}

    def _obs(self):
        return np.stack([[self.t, i, self._rng.random()] for i in range(2)]).astype(np.float32)

    def state(self):
        return np.array([self.t, self.good.sum()], np.float32)

    def action_masks(self):
        m = np.ones((2, 3), np.float32)
        if self.t % 2:
            m[:, 1] = 0
        return m

    def agent_stats(self):
        return {"good_actions": self.good.copy()}


def heuristic(env, i, rng, obs=None, skill=1.0):
    if rng.random() < skill:
        return GOOD
    return int(rng.choice(np.flatnonzero(env.action_masks()[i])))


def tiny_pool():
    return Pool("toy:tiny", {
        "random": [PoolMember("uniform")],
        "medium": [PoolMember("callable", {"skill": 0.5}, fn=partial(heuristic, skill=0.5))],
        "expert": [PoolMember("callable", {"skill": 1.0}, fn=partial(heuristic, skill=1.0))],
    })


COMP = "50% [a1:r, a2:r] + 50% [a1:e, a2:m]"


def gen(tmp_path, name, **kw):
    args = dict(composition=COMP, n_episodes=12, seed=3, out=tmp_path / name, num_workers=0, progress=False,
                chunk_size=5, pool=tiny_pool(), env_fn=TinyEnv)
    args.update(kw)
    return generate_dataset("toy:tiny", **args)


@pytest.fixture(scope="module", autouse=True)
def ray_cluster():
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_same_seed_same_arrays_any_worker_count(tmp_path):
    a = read_dataset(gen(tmp_path, "a")).to_numpy()
    b = read_dataset(gen(tmp_path, "b", num_workers=2, chunk_size=4)).to_numpy()  # Ray tasks
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    c = read_dataset(gen(tmp_path, "c", seed=4)).to_numpy()
    assert not np.array_equal(a[S.ACTIONS], c[S.ACTIONS])
    np.testing.assert_array_equal(a[S.EPISODE_ID], np.arange(12))


def test_policy_levels_follow_the_composition(tmp_path):
    d = read_dataset(gen(tmp_path, "d", n_episodes=20)).to_numpy()
    levels = d[S.POLICY_LEVELS]
    assert levels.shape == (20, 2)
    rows = {tuple(r) for r in levels.tolist()}
    assert rows == {(0, 0), (2, 1)}
    assert (levels == [2, 1]).all(axis=1).sum() == 10  # exact 50/50 split
    # expert agent a1 in those episodes takes the good action every step; random agents rarely do
    stats = d[S.AGENT_STATS][:, :, 0]
    expert_rows = (levels[:, 0] == 2)
    assert (stats[expert_rows, 0] == 6).all()
    assert stats[~expert_rows].mean() < 4
    # returns reflect the components
    assert d[S.EPISODE_RETURN][expert_rows].mean() > d[S.EPISODE_RETURN][~expert_rows].mean()


def test_component_assignment_is_exact_and_seeded():
    comp = parse_composition("99.5% [a:r] + 0.5% [a:m]")
    x = component_assignment(comp, 1000, seed=0)
    assert np.bincount(x).tolist() == [995, 5]
    np.testing.assert_array_equal(x, component_assignment(comp, 1000, seed=0))
    assert not np.array_equal(x, component_assignment(comp, 1000, seed=1))


def test_card_contents(tmp_path):
    path = gen(tmp_path, "card", quality="mine")
    card = json.loads((tmp_path / "card" / "card.json").read_text())
    assert card["env"] == "toy:tiny" and card["quality"] == "mine" and card["seed"] == 3
    assert card["composition"] == COMP
    assert card["n_episodes"] == 12 and card["episodes_per_component"] == [6, 6]
    assert set(card["generating_policies"]) >= {"random", "medium", "expert"}
    assert card["generating_policies"]["medium"][0]["params"] == {"skill": 0.5}
    ret = read_dataset(path).to_numpy([S.EPISODE_RETURN])[S.EPISODE_RETURN]
    assert card["return_mean"] == pytest.approx(float(ret.mean()), rel=1e-6)
    assert card["package_version"] == __version__
    assert card["generating_policies"]["pool_card"] is None  # an in-memory pool has no card file


def test_custom_composition_name_and_validation(tmp_path):
    comp = parse_composition(COMP)
    assert custom_quality_name(comp).startswith("custom-")
    with pytest.raises(ValueError, match=r"unknown agent\(s\) \['b1'\]"):
        gen(tmp_path, "bad", composition="100% [a1:r, b1:r]")
    with pytest.raises(FileExistsError, match="already exists"):
        gen(tmp_path, "twice")
        gen(tmp_path, "twice")


def test_missing_pool_level_fails_before_work(tmp_path):
    pool = Pool("toy:tiny", {"random": [PoolMember("uniform")]})
    with pytest.raises(ValueError, match=r"has no 'medium' level; it has \['random'\]"):
        gen(tmp_path, "nolevel", pool=pool)
    assert not (tmp_path / "nolevel").exists()


def test_ensure_dataset_uses_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RLLIB_SIT_DATA_DIR", str(tmp_path / "cache"))
    from rllib_sit.data import generation

    monkeypatch.setattr(generation, "dataset_spec",
                        lambda env_id, q: type("Spec", (), {"composition": parse_composition(COMP), "note": "",
                                                            "paper_average_return": 1.0})())
    kw = dict(pool=tiny_pool(), env_fn=TinyEnv, num_workers=0, progress=False)
    p1 = ensure_dataset("toy:tiny", "low", n_episodes=4, seed=1, **kw)
    assert p1 == str(dataset_path("toy:tiny", "low", 4, 1))
    assert p1 == str(tmp_path / f"cache/datasets/toy_tiny/low_4_1_v{generation.DATA_VERSION}")
    mtime = (Path(p1) / "card.json").stat().st_mtime
    assert ensure_dataset("toy:tiny", "low", n_episodes=4, seed=1, **kw) == p1
    assert (Path(p1) / "card.json").stat().st_mtime == mtime
    assert json.loads((Path(p1) / "card.json").read_text())["data_version"] == generation.DATA_VERSION


def test_ensure_dataset_refuses_a_stale_dataset(tmp_path, monkeypatch):
    """Issue 20: a cached dataset made with other pool members than the current pool card (a pool
    rebuilt since) is an error naming the folder and both members, never reused silently."""
    monkeypatch.setenv("RLLIB_SIT_DATA_DIR", str(tmp_path / "cache"))
    from rllib_sit.data import generation

    monkeypatch.setattr(generation, "dataset_spec",
                        lambda env_id, q: type("Spec", (), {"composition": parse_composition(COMP), "note": "",
                                                            "paper_average_return": 1.0})())
    kw = dict(env_fn=TinyEnv, num_workers=0, progress=False)
    ensure_dataset("toy:tiny", "low", n_episodes=4, seed=1, pool=tiny_pool(), **kw)
    rebuilt = tiny_pool()
    rebuilt.levels["random"] = [PoolMember("uniform", {"attack_drop": 0.5})]
    with pytest.raises(ValueError, match=r"low_4_1_v\d+: stale dataset: its random members .*attack_drop"):
        ensure_dataset("toy:tiny", "low", n_episodes=4, seed=1, pool=rebuilt, **kw)


def test_cache_follows_the_data_dir(tmp_path, monkeypatch):
    """Regression (issue 10): the cache root was Path(__file__).parents[2] / "offline_data", i.e.
    <site-packages>/offline_data in a non-editable install. Now: $RLLIB_SIT_DATA_DIR, else
    ./offline_data of the working directory (the job's, inside a Tune trial); datasets and the
    column cache both follow it."""
    from rllib_sit.data.column_cache import cache_root
    from rllib_sit.data.paths import data_dir

    for var in ("RLLIB_SIT_DATA_DIR", "RLLIB_SIT_CACHE_DIR", "TUNE_ORIG_WORKING_DIR"):
        monkeypatch.delenv(var, raising=False)
    work = tmp_path.resolve() / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    assert data_dir() == work / "offline_data"
    assert dataset_path("smac:2s3z", "low", 10, 0) == work / "offline_data/datasets/smac_2s3z/low_10_0_v2"
    assert cache_root() == work / "offline_data/cache/columns"
    monkeypatch.setenv("RLLIB_SIT_DATA_DIR", "rel/data")  # relative: against the working directory
    assert dataset_path("smac:2s3z", "low", 10, 0) == work / "rel/data/datasets/smac_2s3z/low_10_0_v2"
    assert cache_root() == work / "rel/data/cache/columns"
    monkeypatch.setenv("RLLIB_SIT_DATA_DIR", str(tmp_path / "abs"))
    assert data_dir() == tmp_path / "abs"
    monkeypatch.setenv("RLLIB_SIT_CACHE_DIR", str(tmp_path / "cols"))  # the column cache alone
    assert cache_root() == tmp_path / "cols" and data_dir() == tmp_path / "abs"
    # a Tune trial runs in its trial folder; the cache stays where the job was started
    monkeypatch.delenv("RLLIB_SIT_DATA_DIR")
    monkeypatch.setenv("TUNE_ORIG_WORKING_DIR", str(tmp_path / "job"))
    assert dataset_path("smac:2s3z", "low", 10, 0) == tmp_path / "job/offline_data/datasets/smac_2s3z/low_10_0_v2"


def test_decentralize_per_agent_datasets(tmp_path):
    src = gen(tmp_path, "joint")
    joint = read_dataset(src).to_numpy()
    paths = decentralize(src, tmp_path / "dec")
    assert sorted(paths) == ["a1", "a2"]
    for i, a in enumerate(["a1", "a2"]):
        ds = read_dataset(paths[a])
        assert ds.meta.env.agents == [a] and ds.card["decentralized_agent"] == a
        d = ds.to_numpy()
        assert d[S.OBS].shape == (12, 7, 1, 3)
        np.testing.assert_array_equal(d[S.OBS][:, :, 0], joint[S.OBS][:, :, i])
        np.testing.assert_array_equal(d[S.ACTIONS][:, :, 0], joint[S.ACTIONS][:, :, i])
        np.testing.assert_array_equal(d[S.REWARD], joint[S.REWARD])
        np.testing.assert_array_equal(d[S.POLICY_LEVELS][:, 0], joint[S.POLICY_LEVELS][:, i])


def test_cli_list_and_errors(capsys):
    from rllib_sit.cli.sit_cmd import main

    assert main(["data", "generate", "--list"]) == 0
    out = capsys.readouterr().out
    assert "smac:2s3z" in out and "low-closer-look" in out and "(paper avg 3.24)" in out
    assert main(["data", "generate", "smac:2s3z"]) == 2
    assert "give --quality (e.g. low, medium) or --composition" in capsys.readouterr().err
    assert main(["data", "generate", "mpe:cn_3ls3l", "--composition", "100% [ls1:r, ls2:x, ls3:r]"]) == 2
    assert "agent 'ls2' has level 'x'" in capsys.readouterr().err
