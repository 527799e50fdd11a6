"""Every registered algorithm, one parametrized check: ``run: NAME`` resolves to this package's
class after ``import rllib_sit`` (and never to one of RLlib 2.60's built-ins), and every tuned
example that runs it loads and validates. An algorithm added to ``ALGORITHMS`` is covered here
without a new test."""

import glob
import importlib
import os

import pytest

from rllib_sit.algorithms import ALGORITHMS

TUNED = os.path.join(os.path.dirname(__file__), "..", "..", "tuned_examples")
RLLIB_BUILTINS = {"APPO", "BC", "CQL", "DQN", "DreamerV3", "IMPALA", "IQL", "MARWIL", "PPO", "SAC"}


def _cls(name):
    module, cls = ALGORITHMS[name]
    return getattr(importlib.import_module(module), cls)


def _tuned_experiments():
    from rllib_sit.cli.rllib_cmd import load_experiments

    out = []
    for f in sorted(glob.glob(os.path.join(TUNED, "**", "*.yaml"), recursive=True)):
        for exp_name, exp in load_experiments(f).items():
            out.append(pytest.param(exp, id=f"{os.path.basename(f)}:{exp_name}"))
    return out


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
def test_run_name_resolves_to_this_package(ray_session, name):
    from ray.tune.registry import get_trainable_cls

    import rllib_sit

    rllib_sit.register_all()
    assert name not in RLLIB_BUILTINS
    assert get_trainable_cls(name) is _cls(name)
    assert _cls(name).__module__.startswith("rllib_sit.algorithms.")
    for builtin in ("BC", "CQL", "IQL"):  # RLlib's own algorithms stay RLlib's
        assert get_trainable_cls(builtin).__module__.startswith("ray.rllib.")


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
def test_every_algorithm_has_tuned_examples(name):
    runs = {exp["run"] for exp in (p.values[0] for p in _tuned_experiments())}
    assert name in runs, f"no tuned_examples/*.yaml runs {name}"


@pytest.mark.parametrize("exp", _tuned_experiments())
def test_tuned_example_runs_a_registered_algorithm_and_validates(exp):
    """The ``run:`` is registered here, and its config (sweep axes replaced by their first value)
    passes that algorithm's own ``validate()``."""
    assert exp["run"] in ALGORITHMS, f"run: {exp['run']} is not one of {sorted(ALGORITHMS)}"
    config = {}
    for key, value in exp.get("config", {}).items():
        if isinstance(value, dict) and "grid_search" in value:
            value = value["grid_search"][0]
        config[key] = value
    cfg = type(_cls(exp["run"]).get_default_config())()
    cfg.update_from_dict(dict(config, env=exp["env"])).validate()
