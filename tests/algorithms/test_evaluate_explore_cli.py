"""``rllib evaluate CHECKPOINT --explore`` through the real entry point (a subprocess, as a user
runs it): the headline metrics are the sampled pass's, both passes are printed (issue 26)."""

import json

import pytest
from cli_helpers import rllib, untrained_mabc_checkpoint

from rllib_sit.algorithms.common.evaluation import pass_key


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """An untrained MABC (a near-uniform policy) on a 3-episode 2s3z dataset."""
    from rllib_sit.data.synthetic import make_random_dataset

    root = tmp_path_factory.mktemp("cli")
    return untrained_mabc_checkpoint(make_random_dataset("smac:2s3z", 3, str(root / "ds"), seed=0), root / "ckpt")


def _rllib_evaluate(ckpt, *extra):
    proc, _ = rllib("evaluate", ckpt, *extra, timeout=300)
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
