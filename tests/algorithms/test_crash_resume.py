"""Crash-safe training: `rllib train file` is killed with SIGKILL mid-Stage I and again mid-Stage III,
`--resume` continues each time, and the end equals an uninterrupted run with the same seed: phase
counters, the DPER's sampling stream (its RNG state and probabilities) and every parameter of
every module, bit for bit (the updates use no randomness beyond the checkpointed RNGs).

Each kill comes within a second of a checkpoint being written completely (issue 21), before Tune
has recorded it in its experiment state (which it saves every 10 s or more): each resume must
continue from the newest complete checkpoint, not restart at iteration 1 (iterations since restore
< total). An iteration of this tiny run takes well under a second, so one or two more checkpoints
may be complete by the time the kill lands (on a loaded machine), and a Ray worker may finish the
checkpoint it was writing just after it: the test waits for the checkpoints to settle, reads which
one is the newest and keeps two iterations of slack inside each stage (kills at checkpoints 2 and 7
of 10)."""

import glob
import json
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from rllib_sit.cli.trial_guard import checkpoint_is_complete

YAML = """
crash:
  run: SIT
  env: mpe:cn_3ls3l
  stop: {{training_iteration: 10}}
  checkpoint_freq: 1
  config:
    input: {data}
    ardnem_updates: 10            # iterations 1-5 (Stage II at the end of 5)
    ardnem_updates_per_iteration: 2
    agent_updates: 10             # iterations 6-10
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
    """Start training, SIGKILL its whole process group within a second of its ``n_checkpoints``-th
    checkpoint being complete on disk; returns (that checkpoint, seconds from seeing it to the kill,
    the run's output)."""
    log = open(f"{storage}.log{n_checkpoints}", "w+")
    proc = subprocess.Popen(_cmd(yaml_path, storage, *extra), env=_env(root), start_new_session=True,
                            stdout=log, stderr=subprocess.STDOUT)
    t0 = time.time()
    try:
        while True:
            ckpts = _checkpoints(storage)
            if len(ckpts) >= n_checkpoints and checkpoint_is_complete(ckpts[n_checkpoints - 1]):
                seen = time.time()
                break
            assert proc.poll() is None, "training ended before it could be killed"
            assert time.time() - t0 < 240, "no checkpoint after 240 s"
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    killed_after = time.time() - seen
    _settle(storage)
    log.seek(0)
    return ckpts[n_checkpoints - 1], killed_after, log.read()


def _results(storage):
    rows = []
    for f in glob.glob(os.path.join(storage, "crash", "SIT_*", "result.json")):
        for line in open(f):
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                pass  # a line cut by the kill
    return rows


def _first_iteration_after_resume(out):
    """The iteration of the first progress line ("[rllib] <trial> iter N | ...") after "resuming"."""
    tail = out[out.index(": resuming "):]
    return int(re.search(r"^\[rllib\] \S+ iter (\d+) \|", tail, re.M).group(1))


def _settle(storage, quiet=3.0, limit=60.0):
    """Wait until no checkpoint has completed for ``quiet`` seconds: a Ray worker outside the killed
    process group can finish writing the checkpoint it was in the middle of before it notices."""
    t0 = last_change = time.time()
    done = None
    while time.time() - last_change < quiet and time.time() - t0 < limit:
        now = [c for c in _checkpoints(storage) if checkpoint_is_complete(c)]
        if now != done:
            done, last_change = now, time.time()
        time.sleep(0.2)


def _newest_complete(storage):
    """The iteration of the newest complete checkpoint (what a resume must continue from)."""
    return max(_iteration(c) for c in _checkpoints(storage) if checkpoint_is_complete(c))


def _iteration(ckpt):
    return pickle.load(open(os.path.join(ckpt, "algorithm_state.pkl"), "rb"))["training_iteration"]


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

    ckpt1, killed_after, _ = _run_and_kill_after(yaml_path, crash_storage, root, 2)  # Stage I: iterations 1-5
    n1 = _newest_complete(crash_storage)
    assert killed_after < 1.0 and _iteration(ckpt1) == 2 and 2 <= n1 <= 4, (killed_after, n1)
    # A checkpoint cut short is not complete (the resume then goes back to the one before).
    cut = str(root / "cut_checkpoint")
    shutil.copytree(ckpt1, cut)
    os.remove(os.path.join(cut, "learner_group", "learner", "state.pkl"))
    assert checkpoint_is_complete(ckpt1) and not checkpoint_is_complete(cut)
    ckpt7, killed_after, out = _run_and_kill_after(yaml_path, crash_storage, root, 7, "--resume")  # Stage III: 6-10
    n2 = _newest_complete(crash_storage)
    assert killed_after < 1.0 and _iteration(ckpt7) == 7 and 7 <= n2 <= 9, (killed_after, n2)
    assert f"resumes from checkpoint_{n1 - 1:06d} (iteration {n1})" in out, out[-3000:]
    assert _first_iteration_after_resume(out) == n1 + 1, out[-3000:]  # not a restart at iteration 1
    # A restart would have written checkpoint_00000k at iteration 1: each index k holds iteration k + 1.
    assert [_iteration(c) for c in _checkpoints(crash_storage) if checkpoint_is_complete(c)] == list(range(1, n2 + 1))
    final = subprocess.run(_cmd(yaml_path, crash_storage, "--resume"), env=_env(root), check=True, timeout=300,
                           capture_output=True, text=True)
    assert f"resumes from checkpoint_{n2 - 1:06d} (iteration {n2})" in final.stdout, final.stdout[-3000:]
    assert _first_iteration_after_resume(final.stdout) == n2 + 1
    last = max(_results(crash_storage), key=lambda r: (r["training_iteration"], -r["iterations_since_restore"]))
    assert last["training_iteration"] == 10 and last["iterations_since_restore"] == 10 - n2 < 10  # continued

    ref_algo, ref_learner, ref_modules = _final_state(ref_storage)
    algo, learner, modules = _final_state(crash_storage)
    assert algo["training_iteration"] == ref_algo["training_iteration"] == 10
    assert algo["offline_marl"]["schedule"] == ref_algo["offline_marl"]["schedule"]
    assert algo["offline_marl"]["schedule"]["done"] == {"ardnem": 10, "dper": 1, "agents": 10}
    assert learner["module_updates"] == ref_learner["module_updates"]
    dper, ref_dper = algo["offline_marl"]["extra"]["dper"], ref_algo["offline_marl"]["extra"]["dper"]
    assert dper["rng"] == ref_dper["rng"]  # the same sampling stream, to the same point
    for t in ref_dper["leaves"]:
        np.testing.assert_array_equal(dper["leaves"][t], ref_dper["leaves"][t])
    assert set(modules) == set(ref_modules) and "__ardnem__" in modules and len(modules) >= 2
    for mid, sd in ref_modules.items():
        for k, v in sd.items():
            np.testing.assert_array_equal(np.asarray(modules[mid][k]), np.asarray(v), err_msg=f"{mid}/{k}")
