"""Bad input at the front door (issue 21): the real ``rllib`` entry point in a subprocess, one row of
the issue's table per test. Each mistake ends in one line naming the YAML file, the experiment,
the key and what was expected, as the last line, with a non-zero exit; the ones that used to fall
back silently leave nothing generated or written.

Everything except the NaN-reward row is refused before Ray starts (a few seconds each); the
NaN-reward row trains for real on a 3-episode dataset and checks that the trial failed once, not
``max_failures + 1`` times.
"""

import os
import shutil
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from cli_helpers import rllib, untrained_mabc_checkpoint

from rllib_sit.cli.front_door import did_you_mean, error_line, grid_points

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    from rllib_sit.data.synthetic import make_random_dataset

    root = tmp_path_factory.mktemp("front_door")
    make_random_dataset("smac:3m", 3, str(root / "ds_3m"), seed=0)
    make_random_dataset("smac:2s3z", 3, str(root / "ds_2s3z"), seed=0)
    (root / "empty").mkdir()
    return root


def write_yaml(path, name="mabc-2s3z", run="MABC", config=None, **exp):
    body = {"run": run, "env": "smac:2s3z", "stop": {"training_iteration": 2},
            "config": config if config is not None else {"dataset": {"quality": "low", "episodes": 300, "seed": 0},
                                                         "batch_size_episodes": 4}}
    body.update(exp)
    path.write_text(yaml.safe_dump({name: body}))
    return str(path)


def run(root, yaml_path, *extra, timeout=120):
    """``rllib train file`` with results and data under the YAML's folder (one per test)."""
    here = os.path.dirname(yaml_path)
    storage = os.path.join(here, "results")
    env = dict(os.environ, RLLIB_SIT_DATA_DIR=os.path.join(here, "data"), PYTHONUNBUFFERED="1")
    return rllib("train", "file", yaml_path, "--storage-path", storage, "--num-cpus", "2", *extra, timeout=timeout,
                 env=env, cwd=str(root))


def refused(root, yaml_path, *extra):
    """Run, expect a refusal before anything starts; return the last line."""
    proc, lines = run(root, yaml_path, *extra)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    last = lines[-1]
    assert last.startswith(f"rllib: error: {yaml_path}: experiment "), last
    here = os.path.dirname(yaml_path)
    assert not os.path.exists(os.path.join(here, "results")), "nothing may be written (no tuner.pkl, no trial folder)"
    assert not os.path.exists(os.path.join(here, "data")), "nothing may be generated"
    return last


def test_dataset_of_another_env_is_refused_naming_both(root, tmp_path):
    """Row 1: a smac:3m dataset given to a 2s3z config trained a 'marine' module; now one line."""
    f = write_yaml(tmp_path / "mabc_2s3z.yaml")
    last = refused(root, f, "--config", f'{{"input_": "{root / "ds_3m"}"}}')
    assert f"the dataset {root / 'ds_3m'} was recorded in another env than the config's" in last
    for part in ("env id 'smac:3m' vs 'smac:2s3z'", "agent count 3 vs 5", "agent types ['marine', 'marine', 'marine'] "
                 "vs ['stalker', 'stalker', 'zealot', 'zealot', 'zealot']", "obs size 30 vs 80",
                 "action count 9 vs 11"):
        assert part in last


def test_missing_input_never_falls_back_to_the_dataset_spec(root, tmp_path):
    """Row 2: an input_ that does not exist used to generate the YAML's dataset: spec instead."""
    f = write_yaml(tmp_path / "mabc_2s3z.yaml")
    missing = str(root / "no_such_dataset")
    last = refused(root, f, "--config", f'{{"input_": "{missing}"}}')
    assert last == (f"rllib: error: {f}: experiment 'mabc-2s3z': input_={missing!r} does not exist; input_ wins over "
                    "dataset={'episodes': 300, 'quality': 'low', 'seed': 0}, so nothing is generated: fix the path, "
                    "or remove input_ to generate the dataset spec")
    assert not list(root.rglob("*.lock")) and not list(tmp_path.rglob("*.lock"))


def test_unknown_config_key_suggests_the_closest(root, tmp_path):
    """Row 3: a typo in a config key (``alpah``) used to run to the end with ``alpah: 5`` in params.json."""
    f = write_yaml(tmp_path / "sit_2s3z.yaml", name="sit-2s3z", run="SIT")
    last = refused(root, f, "--config", '{"alpah": 5}')
    assert last == f"rllib: error: {f}: experiment 'sit-2s3z': SITConfig: unknown setting 'alpah'; did you mean 'alpha'?"


def test_unknown_key_in_the_yaml_config_suggests_the_closest(root, tmp_path):
    f = write_yaml(tmp_path / "sit_2s3z.yaml", name="sit-2s3z", run="SIT",
                   config={"dataset": {"quality": "low", "episodes": 300}, "ardnem_updaets": 10})
    last = refused(root, f)
    assert last == (f"rllib: error: {f}: experiment 'sit-2s3z': SITConfig: unknown setting 'ardnem_updaets'; did you "
                    "mean 'ardnem_updates'?")


def test_unknown_experiment_key_suggests_the_closest(root, tmp_path):
    f = write_yaml(tmp_path / "typo.yaml", chekpoint_freq=2)
    last = refused(root, f)
    assert last.startswith(f"rllib: error: {f}: experiment 'mabc-2s3z': unknown key 'chekpoint_freq'; did you mean "
                           "'checkpoint_freq'?")
    (tmp_path / "b").mkdir()
    last = refused(root, write_yaml(tmp_path / "b" / "stop.yaml"), "--stop", '{"training_iteraton": 3}')
    assert last.endswith("experiment 'mabc-2s3z': stop key 'training_iteraton' is not a result key; did you mean "
                         "'training_iteration'?")


@pytest.mark.parametrize("flag, text, says", [("--config", "{bad", "not valid JSON"),
                                              ("--stop", "[1, 2]", "got list '[1, 2]'")])
def test_command_line_json_that_is_not_an_object_is_refused_naming_the_flag(root, tmp_path, flag, text, says):
    proc, lines = run(root, write_yaml(tmp_path / "flags.yaml"), flag, text)
    assert proc.returncode == 2 and "Traceback" not in proc.stdout + proc.stderr
    assert lines[-1].startswith(f"rllib: error: {flag}: {says}") and lines[-1].endswith("expected a JSON object")
    assert not os.path.exists(tmp_path / "results") and not os.path.exists(tmp_path / "data")


@pytest.mark.parametrize("setting, message", [
    ({"alpha": {"grid_search": [0.2, -1]}},
     "experiment 'sit-2s3z' (grid point alpha=-1): SITConfig: alpha=-1 is invalid; expected a number > 0"),
    ({"batch_size_episodes": 0},
     "experiment 'sit-2s3z': SITConfig: batch_size_episodes=0 is invalid; expected an int >= 1"),
])
def test_invalid_value_is_one_line_before_tune(root, tmp_path, setting, message):
    """Row 4: the right message used to come 12 times among 28 tracebacks (validated in every retry)."""
    config = {"dataset": {"quality": "low", "episodes": 300, "seed": 0}, **setting}
    f = write_yaml(tmp_path / "sit.yaml", name="sit-2s3z", run="SIT", config=config, max_failures=3)
    proc, lines = run(root, f)
    assert proc.returncode == 2 and lines[-1] == f"rllib: error: {f}: {message}"
    assert (proc.stdout + proc.stderr).count("is invalid") == 1 and len(lines) <= 3
    assert not (tmp_path / "results").exists() and not (tmp_path / "data").exists()


def test_unregistered_run_name_lists_the_registered_ones(root, tmp_path):
    """Row 5: ``run: NOPE`` was a raw TuneError after the dataset was resolved, with tuner.pkl left behind."""
    from rllib_sit.algorithms import ALGORITHMS

    f = write_yaml(tmp_path / "nope.yaml", name="nope", run="NOPE")
    last = refused(root, f)
    assert last == (f"rllib: error: {f}: experiment 'nope': run: 'NOPE' is not a registered algorithm; registered: "
                    + ", ".join(ALGORITHMS))
    (tmp_path / "b").mkdir()
    last = refused(root, write_yaml(tmp_path / "b" / "sitt.yaml", name="sitt", run="SITT"))
    assert "run: 'SITT' is not a registered algorithm; did you mean 'SIT'?" in last


def test_empty_dataset_folder_is_refused_before_tune(root, tmp_path):
    """Row 6 (empty folder): the DatasetError is met on the driver, one line, before any trial."""
    f = write_yaml(tmp_path / "empty.yaml")
    last = refused(root, f, "--config", f'{{"input_": "{root / "empty"}"}}')
    assert f"experiment 'mabc-2s3z': input_: {root / 'empty'}" in last


def _plant_nan_reward(path):
    f = sorted(p for p in os.listdir(path) if p.endswith(".parquet"))[0]
    full = os.path.join(path, f)
    table = pq.read_table(full)
    i = table.schema.get_field_index("reward")
    col = table.column(i).combine_chunks()
    reward = np.array(col.to_numpy_ndarray() if hasattr(col, "to_numpy_ndarray") else col.to_pylist(), np.float32)
    reward[1, 0] = np.nan
    arr = pa.FixedShapeTensorArray.from_numpy_ndarray(np.ascontiguousarray(reward)) if reward.ndim > 1 \
        else pa.array(reward)
    pq.write_table(table.set_column(i, "reward", arr).replace_schema_metadata(table.schema.metadata), full)
    return full


def test_nan_reward_in_a_trial_fails_it_once_and_is_the_last_line(root, tmp_path):
    """Row 6 (NaN reward): found while the trial builds its column cache; the trial is not retried
    (``max_failures: 3``) and the CLI's last line is the DatasetError, not a traceback."""
    ds = str(tmp_path / "nan_ds")
    shutil.copytree(root / "ds_2s3z", ds)
    shard = _plant_nan_reward(ds)
    f = write_yaml(tmp_path / "nan.yaml", name="nan", max_failures=3,
                   config={"input_": ds, "batch_size_episodes": 2, "num_torch_threads": 1})
    proc, lines = run(root, f, timeout=400)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out[-3000:]
    assert lines[-1].startswith(f"rllib: error: {f}: experiment 'nan', trial MABC_"), lines[-1]
    assert lines[-1].endswith(f"{shard}: column 'reward' contains NaN or inf at row(s) [1]; expected finite values") \
        or "column 'reward' contains NaN or inf at row(s) [1]" in lines[-1], lines[-1]
    errors = list((tmp_path / "results" / "nan").glob("MABC_*/error.txt"))
    assert len(errors) == 1
    text = errors[0].read_text()
    assert "Failure # 1" in text and "Failure # 2" not in text  # failed once: not retried


def test_helpers():
    assert did_you_mean("alpah", ["alpha", "beta"]) == "; did you mean 'alpha'?"
    assert did_you_mean("zzz", ["alpha", "beta"]) == ""
    points = grid_points({"a": {"grid_search": [1, 2]}, "d": {"q": {"grid_search": ["x", "y"]}}, "c": 3})
    assert [p for _, p in points] == [{"a": 1, "d": {"q": "x"}, "c": 3}, {"a": 1, "d": {"q": "y"}, "c": 3},
                                      {"a": 2, "d": {"q": "x"}, "c": 3}, {"a": 2, "d": {"q": "y"}, "c": 3}]
    assert points[1][0] == "a=1, d/q='y'"


def test_error_line_reads_the_cause_out_of_ray_tracebacks():
    from rllib_sit.data.validation import DatasetError

    assert error_line(DatasetError("/d: column 'reward' contains NaN")) == "DatasetError: /d: column 'reward' contains NaN"
    remote = ("ray::MABC.__init__()\nTraceback (most recent call last):\n  File \"x.py\", line 1\n"
              "rllib_sit.data.validation.DatasetError: /d: column 'reward' contains NaN\n")
    assert error_line(RuntimeError(remote)) == "DatasetError: /d: column 'reward' contains NaN"
    masked = ("Traceback:\nValueError: the real cause\n\nDuring handling of the above exception, another exception "
              "occurred:\n\nAttributeError: 'NoneType' object has no attribute 'enable_rl_module_and_learner'\n"
              "An unexpected internal error occurred while the worker was executing a task.")
    assert error_line(RuntimeError(masked)) == "ValueError: the real cause"


@pytest.mark.parametrize("extra, message", [
    (["--algos", "SIT", "--config", '{"alpah": 5}'],
     "rllib-sit: error: --config: unknown setting 'alpah' (no registered algorithm has it); did you mean 'alpha'?"),
    (["--algos", "SIT[alpha=-1]"],
     "rllib-sit: error: benchmark: algorithm SIT[alpha=-1] (on smac:2s3z): SITConfig: alpha=-1 is invalid; expected a "
     "number > 0"),
])
def test_benchmark_checks_its_configs_before_data_or_trials(tmp_path, extra, message):
    """`rllib-sit benchmark` (not a dry run): one line, nothing generated, no output folder."""
    exe = shutil.which("rllib-sit")
    cmd = [exe] if exe else [sys.executable, "-m", "rllib_sit.cli.sit_cmd"]
    env = dict(os.environ, RLLIB_SIT_DATA_DIR=str(tmp_path / "data"))
    proc = subprocess.run(cmd + ["benchmark", "--profile", "quick", "--maps", "smac:2s3z", "--qualities", "low",
                                 "--seeds", "0", "--episodes", "3", "--out", str(tmp_path / "out"), "--no-progress",
                                 *extra], env=env, capture_output=True, text=True, timeout=120, cwd=str(tmp_path))
    lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip()]
    assert proc.returncode == 2 and lines[-1] == message, proc.stdout + proc.stderr
    assert not (tmp_path / "out").exists() and not (tmp_path / "data").exists()


@pytest.fixture(scope="module")
def checkpoint(root):
    """A MABC checkpoint on the 3-episode 2s3z dataset (built and saved, not trained: evaluate's
    checks run before the algorithm is rebuilt)."""
    return untrained_mabc_checkpoint(root / "ds_2s3z", root / "ckpt")


def _evaluate(ckpt, *extra):
    return rllib("evaluate", ckpt, *extra)


def _with_input(ckpt, dest, new_input):
    """A copy of the checkpoint whose config reads ``new_input`` (as one made before issue 21 could)."""
    import pickle

    shutil.copytree(ckpt, dest)
    f = os.path.join(dest, "class_and_ctor_args.pkl")
    d = pickle.load(open(f, "rb"))
    d["ctor_args_and_kwargs"][0][0]["input_"] = new_input
    pickle.dump(d, open(f, "wb"))
    return str(dest)


def test_evaluate_checks_before_building(root, checkpoint, tmp_path):
    proc, lines = _evaluate(checkpoint, "--episodes", "0")
    assert proc.returncode == 2 and lines[-1] == "rllib: error: --episodes 0 is invalid; expected an int >= 1"
    moved = _with_input(checkpoint, tmp_path / "moved", str(root / "gone"))
    proc, lines = _evaluate(moved)
    assert proc.returncode == 2 and lines[-1].startswith(
        f"rllib: error: {moved}: the checkpoint's dataset: input_={str(root / 'gone')!r} does not exist"), lines[-1]
    other = _with_input(checkpoint, tmp_path / "other", str(root / "ds_3m"))
    proc, lines = _evaluate(other)
    assert proc.returncode == 2 and "was recorded in another env than the config's (env id 'smac:3m' vs " \
        "'smac:2s3z'; agent count 3 vs 5" in lines[-1], lines[-1]
    assert "Traceback" not in proc.stdout + proc.stderr


@pytest.mark.parametrize("text, says", [("{bad", "not valid JSON"), ("[1, 2]", "got list")])
def test_json_flags_name_the_flag_and_what_was_expected(text, says):
    """``rllib-sit benchmark --config``/``--ope-config`` and ``rllib-sit ope --config`` share one parser."""
    from rllib_sit.cli.front_door import json_object_arg

    with pytest.raises(ValueError, match=rf"^--ope-config: {says}.*expected a JSON object of FQEConfig fields$"):
        json_object_arg("--ope-config", text, "a JSON object of FQEConfig fields")
    assert json_object_arg("--config", '{"lr": 0.001}') == {"lr": 0.001}
