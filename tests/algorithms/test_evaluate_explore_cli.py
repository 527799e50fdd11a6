"""``rllib evaluate CHECKPOINT --explore`` through the real entry point (a subprocess, as a user
runs it): the headline metrics are the sampled pass's, both passes are printed (issue 26)."""

import json
import shutil
import subprocess
import sys

import pytest

from rllib_sit.algorithms.common.evaluation import pass_key


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """An untrained MABC (a near-uniform policy) on a 3-episode 2s3z dataset (a package env, so the
    CLI's fresh process finds it). Ray runs in this process for this fixture only, so that the CLI
    starts its own."""
    import ray

    from rllib_sit.algorithms.mabc import MABCConfig
    from rllib_sit.data.synthetic import make_random_dataset

    root = tmp_path_factory.mktemp("cli")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    try:
        data = make_random_dataset("smac:2s3z", 3, str(root / "ds"), seed=0)
        algo = (MABCConfig().environment("smac:2s3z").offline_data(input_=data).training(batch_size_episodes=2)
                .debugging(seed=0)).build_algo()
        path = algo.save(str(root / "ckpt")).checkpoint.path
        algo.stop()
    finally:
        ray.shutdown()
    return path


def _rllib_evaluate(ckpt, *extra):
    exe = shutil.which("rllib")
    cmd = ([exe] if exe else [sys.executable, "-m", "rllib_sit.cli.rllib_cmd"]) + ["evaluate", ckpt, *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    return json.loads(proc.stdout[proc.stdout.index("{"):])


def test_rllib_evaluate_explore_prints_the_sampled_metrics(checkpoint):
    args = ("--episodes", "3", "--seed", "1", "--num-cpus", "1")
    sampled = _rllib_evaluate(checkpoint, *args, "--explore")
    greedy = _rllib_evaluate(checkpoint, *args)
    assert sampled["explore"] is True and greedy["explore"] is False
    assert sampled["num_episodes"] == greedy["num_episodes"] == 3
    for out, explore in ((sampled, True), (greedy, False)):
        for key in ("episode_return_mean", "episode_return_std", "win_rate"):
            assert out[key] == out[pass_key(key, explore)], (explore, key)
    # Same seed, same checkpoint: the greedy pass of both runs is the same, whichever is the headline.
    assert sampled["episode_return_mean_greedy"] == greedy["episode_return_mean_greedy"]
    assert sampled["episode_return_mean_sampled"] != sampled["episode_return_mean_greedy"]


def test_stop_criteria_may_name_either_pass():
    from rllib_sit.algorithms.common.evaluation import PASS_KEYS
    from rllib_sit.cli.front_door import STOP_KEYS, FrontDoorError, check_stop

    for explore in (False, True):
        for key in ("episode_return_mean", "win_rate"):
            assert key in PASS_KEYS and f"evaluation/env_runners/{pass_key(key, explore)}" in STOP_KEYS
    check_stop("exp.yaml", "e", {"evaluation/env_runners/episode_return_mean_sampled": 10.0})
    with pytest.raises(FrontDoorError, match="did you mean 'evaluation/env_runners/episode_return_mean_sampled'"):
        check_stop("exp.yaml", "e", {"evaluation/env_runners/episode_return_mean_sampeld": 10.0})
