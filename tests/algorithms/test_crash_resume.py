"""Crash-safe training: `rllib train file` is killed with SIGKILL mid-Stage I and again mid-Stage III,
`--resume` continues each time, and the end equals an uninterrupted run with the same seed: phase
counters, the DPER's sampling stream (its RNG state and probabilities) and every parameter of
every module, bit for bit (the updates use no randomness beyond the checkpointed RNGs)."""

import glob
import os
import pickle
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

YAML = """
crash:
  run: SIT
  env: mpe:cn_3ls3l
  stop: {{training_iteration: 6}}
  checkpoint_freq: 1
  config:
    input: {data}
    ardnem_updates: 6             # iterations 1-3 (Stage II at the end of 3)
    ardnem_updates_per_iteration: 2
    agent_updates: 6              # iterations 4-6
    agent_updates_per_iteration: 2
    batch_size_episodes: 4
    rnn_hidden: 16
    critic_hidden: 8
    reward_hidden: 16
    attention_hidden: 16
    target_update_interval: 3
    evaluation_duration: 1
    num_torch_threads: 1
    stage1_cache: false           # the killed run must really be training Stage I, not load it
    seed: 7
"""


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from rllib_sit.data.synthetic import make_random_dataset
    from rllib_sit.envs import make_env

    root = tmp_path_factory.mktemp("crash")
    data = make_random_dataset(make_env("mpe:cn_3ls3l"), 16, str(root / "cn_random"), seed=0)
    yaml_path = root / "crash.yaml"
    yaml_path.write_text(YAML.format(data=data))
    return root, str(yaml_path)


def _cmd(yaml_path, storage, *extra):
    return [sys.executable, "-m", "rllib_sit.cli.rllib_cmd", "train", "file", yaml_path, "--storage-path", storage,
            "--num-cpus", "2", *extra]


def _env(root):
    return dict(os.environ, RLLIB_SIT_DATA_DIR=str(root / "data"), PYTHONUNBUFFERED="1")


def _checkpoints(storage):
    return sorted(glob.glob(os.path.join(storage, "crash", "SIT_*", "checkpoint_*")))


def _run_and_kill_after(yaml_path, storage, root, n_checkpoints, *extra):
    """Start training, SIGKILL its whole process group once ``n_checkpoints`` checkpoints exist."""
    proc = subprocess.Popen(_cmd(yaml_path, storage, *extra), env=_env(root), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0 = time.time()
    try:
        while len(_checkpoints(storage)) < n_checkpoints:
            assert proc.poll() is None, "training ended before it could be killed"
            assert time.time() - t0 < 240, "no checkpoint after 240 s"
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _final_state(storage):
    ckpt = _checkpoints(storage)[-1]
    algo = pickle.load(open(os.path.join(ckpt, "algorithm_state.pkl"), "rb"))
    learner = pickle.load(open(os.path.join(ckpt, "learner_group", "learner", "state.pkl"), "rb"))
    modules = {}
    for f in glob.glob(os.path.join(ckpt, "learner_group", "learner", "rl_module", "*", "module_state.pkl")):
        modules[os.path.basename(os.path.dirname(f))] = pickle.load(open(f, "rb"))
    return algo, learner, modules


@pytest.mark.timeout(600)
def test_sigkill_mid_stage1_and_mid_stage3_then_resume_equals_an_uninterrupted_run(setup):
    root, yaml_path = setup
    ref_storage, crash_storage = str(root / "ref"), str(root / "crashed")
    subprocess.run(_cmd(yaml_path, ref_storage), env=_env(root), check=True, timeout=300,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    _run_and_kill_after(yaml_path, crash_storage, root, 1)            # killed in iteration 2: Stage I
    n = len(_checkpoints(crash_storage))
    assert 1 <= n <= 2
    _run_and_kill_after(yaml_path, crash_storage, root, 5, "--resume")  # killed in iteration 6: Stage III
    subprocess.run(_cmd(yaml_path, crash_storage, "--resume"), env=_env(root), check=True, timeout=300,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    ref_algo, ref_learner, ref_modules = _final_state(ref_storage)
    algo, learner, modules = _final_state(crash_storage)
    assert algo["training_iteration"] == ref_algo["training_iteration"] == 6
    assert algo["offline_marl"]["schedule"] == ref_algo["offline_marl"]["schedule"]
    assert algo["offline_marl"]["schedule"]["done"] == {"ardnem": 6, "dper": 1, "agents": 6}
    assert learner["module_updates"] == ref_learner["module_updates"]
    dper, ref_dper = algo["offline_marl"]["extra"]["dper"], ref_algo["offline_marl"]["extra"]["dper"]
    assert dper["rng"] == ref_dper["rng"]  # the same sampling stream, to the same point
    for t in ref_dper["leaves"]:
        np.testing.assert_array_equal(dper["leaves"][t], ref_dper["leaves"][t])
    assert set(modules) == set(ref_modules) and "__ardnem__" in modules and len(modules) >= 2
    for mid, sd in ref_modules.items():
        for k, v in sd.items():
            np.testing.assert_array_equal(np.asarray(modules[mid][k]), np.asarray(v), err_msg=f"{mid}/{k}")
