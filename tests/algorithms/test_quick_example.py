"""tuned_examples/sit_2s3z_quick.yaml stops where the work ends (issue 21): its last iteration trains
(the last agent updates) and evaluates them; no iteration only evaluates.

SIT runs on the tiny env with the example's schedule — the same number of iterations per stage
(updates / updates-per-iteration), one update each — for the example's ``stop`` iterations.
"""

import math
import os

import pytest
import yaml

from tiny_fixtures import tiny_config

YAML = os.path.join(os.path.dirname(__file__), "..", "..", "tuned_examples", "sit_2s3z_quick.yaml")
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_the_quick_example_ends_with_a_training_iteration(dataset):
    exp = yaml.safe_load(open(YAML))["sit-2s3z-quick"]
    c, stop = exp["config"], exp["stop"]["training_iteration"]
    stage1 = math.ceil(c["ardnem_updates"] / c["ardnem_updates_per_iteration"])
    stage3 = math.ceil(c["agent_updates"] / c["agent_updates_per_iteration"])
    algo = tiny_config(dataset, ardnem_updates=stage1, ardnem_updates_per_iteration=1, agent_updates=stage3,
                       agent_updates_per_iteration=1, rnn_hidden=8, critic_hidden=8, reward_hidden=8,
                       attention_hidden=8).evaluation(evaluation_interval=c["evaluation_interval"],
                                                      evaluation_duration=1).build_algo()
    try:
        results = [algo.train() for _ in range(stop)]
    finally:
        algo.stop()
    done = [r["phases"]["agents_updates_done"] for r in results]
    current = [r["phases"]["current"] for r in results]
    assert current[-1] == "done" and "done" not in current[:-1]  # the work ends exactly at `stop`
    assert done[-1] == stage3 and done[-1] > done[-2]  # ... and the last iteration trained
    assert stop % c["evaluation_interval"] == 0  # ... and is evaluated
    assert results[-1]["evaluation"]["env_runners"]["num_episodes"] >= 1
