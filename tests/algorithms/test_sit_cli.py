"""`rllib train file` / `rllib evaluate` end to end on a tiny random 2s3z dataset (a 2-trial sweep)."""

import glob
import itertools
import json
import os

import pytest
import yaml

from rllib_sit.cli.rllib_cmd import load_experiments, main


def test_yaml_errors_name_the_problem(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("exp:\n  env: smac:2s3z\n")
    with pytest.raises(ValueError, match="run:"):
        load_experiments(str(bad))
    assert main(["train", "file", str(tmp_path / "missing.yaml")]) == 2


def test_every_tuned_example_parses():
    files = sorted(glob.glob(os.path.join(os.path.dirname(__file__), "..", "..", "tuned_examples", "sit_*.yaml")))
    assert len(files) >= 12
    from rllib_sit.algorithms.sit import SITConfig

    grids = 0
    for f in files:
        for exp in load_experiments(f).values():
            assert exp["run"] == "SIT"
            config = exp["config"]
            axes = {k: v["grid_search"] for k, v in config.items() if isinstance(v, dict) and "grid_search" in v}
            grids += bool(axes)
            for point in itertools.product(*axes.values()):  # every grid point validates
                cfg = SITConfig().update_from_dict(dict(config, env=exp["env"], **dict(zip(axes, point))))
                cfg.validate()
    assert grids >= 1  # the alpha/beta/eta sweep


def test_train_file_sweep_then_evaluate(ray_session, tmp_path, capsys):
    """A 2-trial alpha grid on 2 CPUs (trials one at a time, no Ray Data deadlock), then evaluate."""
    from rllib_sit.data.synthetic import make_random_dataset

    data = make_random_dataset("smac:2s3z", 6, str(tmp_path / "ds"), seed=0)
    exp = {"sit-cli": {"run": "SIT", "env": "smac:2s3z", "stop": {"training_iteration": 5}, "checkpoint_freq": 1,
                       "config": {"input_": data, "alpha": {"grid_search": [0.2, 5.0]}, "ardnem_updates": 2, "ardnem_updates_per_iteration": 2,
                                  "agent_updates": 2, "agent_updates_per_iteration": 2, "batch_size_episodes": 4,
                                  "evaluation_interval": 1, "evaluation_duration": 1}}}
    f = tmp_path / "exp.yaml"
    f.write_text(yaml.safe_dump(exp))
    rc = main(["train", "file", str(f), "--storage-path", str(tmp_path / "results"),
               "--stop", '{"training_iteration": 2}'])
    assert rc == 0
    trials = sorted(glob.glob(str(tmp_path / "results" / "sit-cli" / "SIT_*")))
    assert len(trials) == 2 and {json.load(open(os.path.join(t, "params.json")))["alpha"] for t in trials} == {0.2, 5.0}
    trial = trials[0]
    assert glob.glob(os.path.join(trial, "events.out.tfevents*")), "TensorBoard log missing"
    last = [json.loads(line) for line in open(os.path.join(trial, "result.json"))][-1]
    assert last["training_iteration"] == 2  # --stop override won over the YAML's 5
    assert "episode_return_mean" in last["evaluation"]["env_runners"]
    ckpts = sorted(glob.glob(os.path.join(trial, "checkpoint_*")))
    assert ckpts
    capsys.readouterr()
    assert main(["evaluate", ckpts[-1], "--episodes", "2", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    ev = json.loads(out[out.index("{"):])
    assert ev["num_episodes"] == 2 and "win_rate" in ev and "episode_return_std" in ev
