"""SIT's Stage I cache (``stage1_cache``) and the û options (``ardnem_bootstrap``,
``uncertainty_floor_mode``, the clamped-fraction metric).

The runs use the tiny 3-agent dataset of ``conftest.py`` and a throw-away store per test; Ray is
started once for the module.
"""

import threading
import time
from pathlib import Path

import numpy as np
import pytest
import ray
import torch

from tiny_fixtures import tiny_config

from rllib_sit.algorithms.sit import SIT
from rllib_sit.algorithms.sit import sit_learner as K
from rllib_sit.algorithms.sit import stage1_cache as S1
from rllib_sit.algorithms.sit.torch.sit_torch_learner import ardnem_bootstrap_mse_loss, ardnem_mse_loss
from rllib_sit.data.artifact_store import ArtifactStore


def _run(cfg, iterations=None, stop=True):
    """Train ``cfg`` to the end of its schedule; (algo or None, results per iteration, final state)."""
    algo = cfg.build_algo()
    results = []
    try:
        while algo.schedule.current_name != "done" if iterations is None else len(results) < iterations:
            results.append(algo.train())
        module = algo.learner_group._learner.module
        params = {f"{mid}/{k}": v.detach().clone() for mid in module.keys() for k, v in module[mid].state_dict().items()}
        state = {"params": params, "rng": algo.rng.bit_generator.state,
                 "updates": dict(algo.learner_group._learner._module_updates),
                 "dper": ray.get(algo.dper.get_state.remote()) if algo.dper is not None else None}
    finally:
        if stop:
            algo.stop()
    return (None if stop else algo), results, state


def _assert_same_state(a, b):
    assert set(a["params"]) == set(b["params"])
    for k, v in a["params"].items():
        assert torch.equal(v, b["params"][k]), k
    assert a["rng"] == b["rng"] and a["updates"] == b["updates"]
    if a["dper"] is not None:
        assert a["dper"]["rng"] == b["dper"]["rng"]
        for t, leaves in a["dper"]["leaves"].items():
            np.testing.assert_array_equal(leaves, b["dper"]["leaves"][t])


def _key(cfg, dataset):
    from rllib_sit.data import schema as S
    from rllib_sit.data.column_cache import cache_dir_for
    from rllib_sit.data.episode_store import TRAINING_COLUMNS

    cols = TRAINING_COLUMNS + [S.AVAIL_ACTIONS]
    fp = Path(cache_dir_for(dataset, cols)).name
    return S1.make_key(S1.key_fields(cfg, fp))


# -- the cache ------------------------------------------------------------------------------------
def test_second_run_loads_stage1_and_ends_bit_identical(dataset, tmp_path):
    store = str(tmp_path / "ardnem")
    cfg = tiny_config(dataset, stage1_cache=store)
    _, first, s_first = _run(cfg)
    assert first[0]["stage1_cache"]["status"] == S1.TRAINED and first[-1]["stage1_cache"]["published"] is True
    assert first[0]["algorithm"]["stage1_cache_hit"] == 0.0
    _, second, s_second = _run(cfg)
    assert [r["stage1_cache"]["status"] for r in second] == [S1.HIT] * len(second)
    assert second[0]["algorithm"]["stage1_cache_hit"] == 1.0
    assert second[0]["stage1_cache"]["key"] == first[0]["stage1_cache"]["key"]
    # Same iterations, same phases, the trained run's Stage I losses reported again.
    assert [r["phases"]["current"] for r in second] == [r["phases"]["current"] for r in first]
    for r1, r2 in zip(first, second):
        l1 = r1.get("learners", {}).get(K.ARDNEM_MODULE_ID, {}).get(K.ARDNEM_LOSS)
        l2 = r2.get("learners", {}).get(K.ARDNEM_MODULE_ID, {}).get(K.ARDNEM_LOSS)
        np.testing.assert_equal(l1, l2)  # nan (RLlib's stale window) in both after Stage I
        if r1["phases"]["current"] == "ardnem":
            assert np.isfinite(l1)
    _assert_same_state(s_first, s_second)
    assert len(list(Path(store).glob("ardnem-*/COMPLETE.json"))) == 1


def test_restored_hit_run_needs_no_cache(dataset, tmp_path):
    """A run that loaded Stage I, checkpointed mid-Stage I and restored after the store is gone,
    finishes exactly as the run that trained Stage I."""
    import shutil

    store = str(tmp_path / "ardnem")
    cfg = tiny_config(dataset, stage1_cache=store)
    _, _, ref = _run(cfg)
    algo, results, _ = _run(cfg, iterations=1, stop=False)
    try:
        assert results[0]["stage1_cache"]["status"] == S1.HIT and algo.schedule.current_name == "ardnem"
        ckpt = algo.save_to_path(str(tmp_path / "ckpt"))
    finally:
        algo.stop()
    shutil.rmtree(store)
    restored = SIT.from_checkpoint(ckpt)
    try:
        while restored.schedule.current_name != "done":
            r = restored.train()
        assert r["stage1_cache"]["status"] == S1.HIT
        module = restored.learner_group._learner.module
        for mid in module.keys():
            for k, v in module[mid].state_dict().items():
                assert torch.equal(v, ref["params"][f"{mid}/{k}"]), (mid, k)
    finally:
        restored.stop()
    assert not Path(store).exists()


def test_run_that_stops_waiting_trains_and_the_lock_holder_adopts_its_entry(dataset, tmp_path):
    """B waits for A's lock, gives up after ``stage1_cache_timeout_s`` and trains Stage I itself;
    A, still training, finds B's entry at its next Stage I iteration, loads it and ends as B."""
    store = str(tmp_path / "ardnem")
    a = tiny_config(dataset, stage1_cache=store).build_algo()
    try:
        r = a.train()
        assert r["stage1_cache"]["status"] == S1.TRAINED and a._stage1.lease is not None
        _, b_results, b_state = _run(tiny_config(dataset, stage1_cache=store, stage1_cache_timeout_s=0.5))
        assert b_results[0]["stage1_cache"]["status"] == S1.TRAINED and b_results[0]["stage1_cache"]["wait_seconds"] >= 0.5
        assert b_results[-1]["stage1_cache"]["published"] is True
        r = a.train()
        assert r["stage1_cache"]["status"] == S1.HIT and r["stage1_cache"]["adopted"] is True
        assert not list(Path(store).glob("*.lock"))  # A released its lock
        while a.schedule.current_name != "done":
            a.train()
        module = a.learner_group._learner.module
        for mid in module.keys():
            for k, v in module[mid].state_dict().items():
                assert torch.equal(v, b_state["params"][f"{mid}/{k}"]), (mid, k)
    finally:
        a.stop()


def test_changed_stage1_setting_or_dataset_misses(dataset, tmp_path):
    from tiny_fixtures import make_tiny_dataset

    fields = S1.key_fields(tiny_config(dataset), "ds-0123")
    same = [dict(alpha=5.0), dict(beta=1.0), dict(eta=2.0), dict(agent_updates=9), dict(critic_lr=1e-3),
            dict(ardnem_updates_per_iteration=1), dict(uncertainty_floor_mode="relative"), dict(gamma=0.9)]
    for kw in same:
        assert S1.key_fields(tiny_config(dataset, **kw), "ds-0123") == fields, kw
    changed = [dict(ardnem_lr=1e-3), dict(ardnem_updates=5), dict(ensemble_size=3), dict(reward_hidden=8),
               dict(attention_hidden=8), dict(decomposition="monotonic"), dict(use_attention=False),
               dict(ensemble=False), dict(batch_size_episodes=4), dict(ardnem_batch_timesteps=16),
               dict(ardnem_bootstrap=True), dict(grad_clip=1.0), dict(optimizer="adam")]
    configs = [tiny_config(dataset, **kw) for kw in changed]
    configs += [tiny_config(dataset).debugging(seed=1), tiny_config(dataset).learners(num_learners=2)]
    keys = {S1.make_key(fields), S1.make_key(fields | {"dataset": "ds-4567"})}
    keys |= {S1.make_key(S1.key_fields(c, "ds-0123")) for c in configs}
    assert len(keys) == len(configs) + 2

    store = str(tmp_path / "ardnem")
    _run(tiny_config(dataset, stage1_cache=store))
    other = make_tiny_dataset(str(tmp_path / "other"), n_episodes=40, seed=1)
    for cfg in (tiny_config(dataset, stage1_cache=store, ardnem_lr=3e-4), tiny_config(other, stage1_cache=store)):
        algo = cfg.build_algo()
        try:
            r = algo.train()
            assert r["stage1_cache"]["status"] == S1.TRAINED, r["stage1_cache"]
        finally:
            algo.stop()
    # Only the first run's entry: the other two stopped before the end of their Stage I.
    assert len(list(Path(store).glob("ardnem-*/COMPLETE.json"))) == 1


def test_half_written_entry_is_never_read(dataset, tmp_path):
    store = tmp_path / "ardnem"
    cfg = tiny_config(dataset, stage1_cache=str(store))
    key = _key(cfg, dataset)
    half = store / key / "v-crashedwriter"
    half.mkdir(parents=True)
    (half / S1.ARRAYS_FILE).write_bytes(b"PK\x03\x04 truncated")  # a writer died before its marker
    algo = cfg.build_algo()
    try:
        r = algo.train()
        assert r["stage1_cache"]["status"] == S1.TRAINED and r["stage1_cache"]["key"] == key
        while algo.schedule.current_name == "ardnem":
            r = algo.train()
        assert r["stage1_cache"]["published"] is True
    finally:
        algo.stop()
    assert (store / key / "COMPLETE.json").exists() and ArtifactStore(str(store)).get(key) is not None


def test_two_concurrent_writers_train_once(tmp_path):
    """Two runs claim the same entry at once: one trains (holding the lock), the other waits for
    its marker and loads what it stored."""
    fields = {"format": S1.STAGE1_FORMAT, "dataset": "ds-x", "seed": 0}
    payload = {"module_state": {"ardnem.w": np.arange(6, dtype=np.float32).reshape(2, 3)},
               "optimizer_state": {"__ardnem___ardnem": {"module_id": "__ardnem__", "state": {
                   "state": {0: {"step": np.array(3.0, np.float32), "square_avg": np.ones(3, np.float32)}},
                   "param_groups": [{"lr": 1e-4, "alpha": 0.99, "params": [0], "foreach": None}]}}},
               "module_updates": 4, "rng_state": np.random.default_rng(0).bit_generator.state,
               "losses": [0.5, 0.25, 0.125, 0.0625]}
    trained, loaded, barrier = [], [], threading.Barrier(2)

    def run():
        cache = S1.Stage1Cache(str(tmp_path / "ardnem"), fields, poll_s=0.05)
        barrier.wait()
        got, _ = cache.claim(timeout_s=30)
        if got is None:
            trained.append(cache.lease is not None)
            time.sleep(0.5)  # "Stage I"
            cache.publish(payload)
        else:
            loaded.append(got)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert trained == [True] and len(loaded) == 1
    got = loaded[0]
    np.testing.assert_array_equal(got["module_state"]["ardnem.w"], payload["module_state"]["ardnem.w"])
    opt = got["optimizer_state"]["__ardnem___ardnem"]["state"]
    assert list(opt["state"]) == [0] and opt["param_groups"][0]["foreach"] is None
    np.testing.assert_array_equal(opt["state"][0]["square_avg"], np.ones(3, np.float32))
    assert got["rng_state"] == payload["rng_state"] and got["losses"] == payload["losses"]


def test_switch_off(dataset, tmp_path, monkeypatch):
    default = tmp_path / "default_store"
    monkeypatch.setenv(S1.STAGE1_CACHE_ENV, str(default))
    assert S1.resolve_location(None) == S1.resolve_location("default") == str(default)
    assert S1.resolve_location(False) is None
    monkeypatch.setenv(S1.STAGE1_CACHE_ENV, "off")
    assert S1.resolve_location(None) is None
    monkeypatch.delenv(S1.STAGE1_CACHE_ENV)
    from rllib_sit.data.paths import data_dir

    assert S1.resolve_location(None) == str(data_dir() / "cache" / "ardnem")
    assert S1.resolve_location("file:///tmp/x") == "file:///tmp/x"
    algo = tiny_config(dataset, stage1_cache=False).build_algo()
    try:
        r = algo.train()
        assert r["stage1_cache"]["status"] == S1.OFF and r["algorithm"]["stage1_cache_hit"] == 0.0
        while algo.schedule.current_name != "done":
            algo.train()
    finally:
        algo.stop()
    assert not default.exists()


@pytest.mark.parametrize("kw, match", [
    (dict(stage1_cache=3), "stage1_cache=3 is invalid; expected None/'default'/True"),
    (dict(stage1_cache=""), "stage1_cache='' is invalid"),
    (dict(stage1_cache_timeout_s=0), "stage1_cache_timeout_s=0 is invalid; expected a number > 0"),
    (dict(ardnem_bootstrap="yes"), "ardnem_bootstrap='yes' is invalid; expected True or False"),
    (dict(uncertainty_floor_mode="rel"), "uncertainty_floor_mode='rel' is invalid; expected one of"),
    (dict(ardnem_num_torch_threads=0), "ardnem_num_torch_threads=0 is invalid; expected an int >= 1"),
])
def test_validation_names_the_parameter(kw, match):
    from rllib_sit.algorithms.sit import SITConfig

    with pytest.raises(ValueError, match=match):
        (SITConfig().environment("tiny:coop").offline_data(input_="/nowhere")
         .training(**{"priority_scale": "minmax", **kw}).validate())


# -- û: bootstrap, floor, clamped fraction ----------------------------------------------------------
def test_bootstrap_weights_give_members_their_own_data_and_the_loss_matches_numpy():
    w = K.bootstrap_weights(200, 5, seed=3)
    assert w.shape == (200, 5) and w.dtype == np.float32
    np.testing.assert_array_equal(w, K.bootstrap_weights(200, 5, seed=3))
    assert not np.array_equal(w, K.bootstrap_weights(200, 5, seed=4))
    assert all(not np.array_equal(w[:, i], w[:, j]) for i in range(5) for j in range(i + 1, 5))
    assert (w == 0).any() and (w >= 2).any() and abs(w.mean() - 1.0) < 0.15  # Poisson(1)

    rng = np.random.default_rng(0)
    M, n, N = 3, 7, 2
    wr = rng.normal(size=(M, n, N)).astype(np.float32)
    r = rng.normal(size=n).astype(np.float32)
    bw = rng.poisson(1.0, size=(n, M)).astype(np.float32)
    bw[:, 2] = 0.0  # a member whose resample misses the whole batch contributes 0
    err2 = (wr.astype(np.float64).sum(-1) - r[None]) ** 2  # [M, n]
    per_member = [(bw[:, m] * err2[m]).sum() / max(bw[:, m].sum(), 1e-8) for m in range(M)]
    got = ardnem_bootstrap_mse_loss(torch.tensor(wr), torch.tensor(r), torch.tensor(bw))
    np.testing.assert_allclose(got.item(), np.mean(per_member), rtol=1e-5)
    ones = ardnem_bootstrap_mse_loss(torch.tensor(wr), torch.tensor(r), torch.ones(n, M))
    torch.testing.assert_close(ones, ardnem_mse_loss(torch.tensor(wr), torch.tensor(r)))


def test_bootstrap_batches_carry_each_members_episode_weights(dataset, tmp_path):
    algo = tiny_config(dataset, ardnem_bootstrap=True, stage1_cache=False).build_algo()
    try:
        state = algo.rng.bit_generator.state
        batch = algo._ardnem_batch()[K.ARDNEM_MODULE_ID]
        algo.rng.bit_generator.state = state
        idx = algo.rng.integers(0, algo.store.num_episodes, algo.config.batch_size_episodes)
        episodes = np.repeat(idx, algo.store["filled"][idx].sum(1))
        np.testing.assert_array_equal(batch[K.BOOTSTRAP_WEIGHTS], algo.bootstrap_weights()[episodes])
        assert batch[K.BOOTSTRAP_WEIGHTS].shape == (len(batch["reward"]), 5)
        r = algo.train()
        assert np.isfinite(r["learners"][K.ARDNEM_MODULE_ID][K.ARDNEM_LOSS])
    finally:
        algo.stop()


def test_floor_value_and_clamped_fractions_against_numpy():
    rng = np.random.default_rng(1)
    r_hat = rng.normal(size=(4, 5, 3)).astype(np.float32)
    u_hat = np.abs(rng.normal(scale=0.02, size=(4, 5, 3))).astype(np.float32)
    filled = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0], [1, 1, 0, 0, 0]], bool)
    assert K.uncertainty_floor_value(r_hat, filled, 0.01, "absolute") == 0.01
    real = [r_hat[k, t, i] for k in range(4) for t in range(5) for i in range(3) if filled[k, t]]
    np.testing.assert_allclose(K.uncertainty_floor_value(r_hat, filled, 0.1, "relative"),
                               0.1 * np.mean(np.abs(real)), rtol=1e-6)
    floor = 0.015
    u_real = [u_hat[k, t, i] for k in range(4) for t in range(5) for i in range(3) if filled[k, t]]
    assert K.clamped_fraction(u_hat, filled, floor) == pytest.approx(np.mean(np.array(u_real) < floor))
    probs = rng.dirichlet(np.ones(8))  # 4 episodes x agents [0, 2], episode-major
    expect = 0.0
    for k in range(4):
        for j, i in enumerate((0, 2)):
            steps = [t for t in range(5) if filled[k, t]]
            expect += probs[k * 2 + j] * np.mean([u_hat[k, t, i] < floor for t in steps])
    assert K.sampled_clamped_fraction(u_hat, filled, floor, probs, [0, 2]) == pytest.approx(expect)


@pytest.mark.parametrize("mode, c", [("absolute", 0.01), ("relative", 0.5)])
def test_algorithm_logs_the_floor_and_the_clamped_fraction(dataset, mode, c):
    cfg = tiny_config(dataset, uncertainty_floor_mode=mode, uncertainty_floor=c, stage1_cache=False)
    algo = cfg.build_algo()
    try:
        while algo.schedule.current_name == "ardnem":
            r = algo.train()
        state = ray.get(algo.dper.get_state.remote())
        r_hat = np.asarray(state["step_values"][K.REWARD_HAT])
        u_dper = np.asarray(state["step_values"][K.UNCERTAINTY])
        filled = np.asarray(algo.store["filled"], bool)
        got = r["algorithm"]
        if mode == "absolute":
            floor = c
            u_raw = u_dper  # the DPER holds the raw û; the learner clamps it
        else:
            floor = c * np.abs(r_hat[filled]).mean(dtype=np.float64)
            assert (u_dper[filled] >= np.float32(floor)).all()  # clamped in Stage II
            u_raw = None
        np.testing.assert_allclose(got[K.U_HAT_FLOOR], floor, rtol=1e-6)
        if u_raw is not None:
            assert got[K.U_HAT_CLAMPED_FRACTION] == pytest.approx(np.mean(u_raw[filled] < floor))
        else:
            frac = got[K.U_HAT_CLAMPED_FRACTION]
            assert 0.0 < frac <= 1.0
            assert np.mean(u_dper[filled] == np.float32(floor)) == pytest.approx(frac, abs=1e-9)
        assert 0.0 <= got["dper"]["scout"][K.U_HAT_CLAMPED_FRACTION] <= 1.0
        r = algo.train()  # Stage III trains on the clamped û
        assert np.isfinite(r["learners"]["scout"][K.CRITIC_LOSS])
    finally:
        algo.stop()


# -- a sweep through `rllib train file` -------------------------------------------------------------
SWEEP_YAML = """
sweep:
  run: SIT
  env: mpe:cn_3ls3l
  stop: {{training_iteration: 3}}
  config:
    input: {data}
    stage1_cache: {store}
    ardnem_updates: 4             # iterations 1-2 (Stage II at the end of 2)
    ardnem_updates_per_iteration: 2
    agent_updates: 2              # iteration 3 (+ evaluation)
    agent_updates_per_iteration: 2
    batch_size_episodes: 4
    rnn_hidden: 8
    critic_hidden: 8
    reward_hidden: 8
    attention_hidden: 8
    evaluation_interval: 3
    evaluation_duration: 1
    num_torch_threads: 1
    alpha: {{grid_search: [0.2, 5.0]}}
"""


@pytest.mark.timeout(300)
def test_rllib_train_file_sweep_trains_stage1_once_and_prints_the_best_trial(ray_session, tmp_path, capsys):
    import glob
    import json

    from rllib_sit.cli.rllib_cmd import main
    from rllib_sit.data.synthetic import make_random_dataset
    from rllib_sit.envs import make_env

    data = make_random_dataset(make_env("mpe:cn_3ls3l"), 12, str(tmp_path / "cn"), seed=0)
    yaml_path = tmp_path / "sweep.yaml"
    yaml_path.write_text(SWEEP_YAML.format(data=data, store=tmp_path / "ardnem"))
    assert main(["train", "file", str(yaml_path), "--storage-path", str(tmp_path / "results"),
                 "--max-concurrent-trials", "1"]) == 0
    statuses = []
    for f in glob.glob(str(tmp_path / "results" / "sweep" / "*" / "result.json")):
        last = json.loads(open(f).read().strip().splitlines()[-1])
        assert last["phases"]["agents_updates_done"] == 2
        statuses.append(last["stage1_cache"]["status"])
    assert sorted(statuses) == [S1.HIT, S1.TRAINED]
    out = capsys.readouterr().out
    best = [line for line in out.splitlines() if "best trial" in line]
    assert len(best) == 1 and '"alpha": ' in best[0] and "checkpoint /" in best[0] and "params.json" in best[0]
