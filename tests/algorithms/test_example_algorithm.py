"""The worked example of docs/adding_an_algorithm.md is a real file: the suite trains it for two
iterations, and every Python block of the doc is a verbatim excerpt of it (they cannot drift)."""

import os
import re

import numpy as np
import pytest
from tiny_fixtures import TINY_ENV_ID

import rllib_sit.examples.bc_algorithm as example
from rllib_sit.algorithms.common.algorithm import PHASE_RESULTS

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
DOC = os.path.join(ROOT, "docs", "adding_an_algorithm.md")


def _python_blocks(text):
    return re.findall(r"```python\n(.*?)```", text, re.S)


def test_every_python_block_of_the_doc_is_an_excerpt_of_the_example():
    source = open(example.__file__).read()
    blocks = _python_blocks(open(DOC).read())
    assert len(blocks) >= 4  # config, algorithm, learner, module
    for block in blocks:
        assert block in source, f"docs/adding_an_algorithm.md quotes code that is not in {example.__file__}:\n{block}"


def test_the_doc_names_what_the_code_has():
    doc = open(DOC).read()
    from rllib_sit.algorithms.common import losses
    from rllib_sit.algorithms.common.algorithm import OfflineMARLAlgorithm

    for name in ("trajectory_sampler", "joint_sampler"):
        assert f"{name}()" in doc and hasattr(OfflineMARLAlgorithm, name)
    assert "behaviour_cloning_nll" in doc and hasattr(losses, "behaviour_cloning_nll")
    assert "behaviour_cloning_loss" not in doc
    assert "IndividualTrajectorySampler(" not in doc  # the base builds the samplers
    assert "_training_keys" not in doc  # settings are declared with Setting(...)
    for topic in ("own_obs_only", "OBS_ALL", "PREV_ACTIONS", "L+1", "test_every_algorithm_has_tuned_examples",
                  "rllib_sit/examples/bc_algorithm.py"):
        assert topic in doc, topic


@pytest.fixture(scope="module")
def trained(dataset):
    cfg = (example.ExampleBCConfig().environment(TINY_ENV_ID).offline_data(input_=dataset)
           .training(updates=9, updates_per_iteration=3, batch_size_episodes=4, rnn_hidden=16)
           .evaluation(evaluation_duration=2).debugging(seed=0))
    algo = cfg.build_algo()
    learner = algo.learner_group._learner
    before = {m: {k: v.detach().clone() for k, v in learner.module[m].state_dict().items()} for m in learner.module.keys()}
    results = [algo.train() for _ in range(2)]
    after = {m: learner.module[m].state_dict() for m in learner.module.keys()}
    yield algo, results, before, after
    algo.stop()


def test_the_example_trains_for_two_iterations(trained):
    algo, results, before, after = trained
    assert [r[PHASE_RESULTS]["bc_updates_done"] for r in results] == [3.0, 6.0]
    assert [r[PHASE_RESULTS]["current"] for r in results] == ["bc", "bc"]
    learners = results[-1]["learners"]
    modules = sorted(m for m in learners if example.BC_LOSS in learners[m])
    assert modules == sorted(before) and modules  # one BC loss per agent type
    for m in modules:
        assert np.isfinite(learners[m][example.BC_LOSS]) and learners[m][example.BC_LOSS] > 0
        changed = [not np.allclose(before[m][k].numpy(), after[m][k].numpy()) for k in before[m]]
        assert any(changed), f"{m}: no parameter moved in 6 updates"


def test_the_example_evaluates_and_its_settings_are_typed(trained):
    import inspect

    algo, *_ = trained
    assert "episode_return_mean" in str(algo.evaluate())
    params = inspect.signature(example.ExampleBCConfig.training).parameters
    assert {"updates", "updates_per_iteration", "rnn_hidden"} <= set(params)
    with pytest.raises(ValueError, match="did you mean 'updates'"):
        example.ExampleBCConfig().training(update=3)
