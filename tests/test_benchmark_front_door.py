"""Bad input at ``rllib-sit benchmark``'s front door (issue 21), through the real entry point in a
subprocess.

* A cell whose dataset fails inside its trial (a NaN reward, found while the trial builds its
  column cache) fails once — not ``--max-failures`` + 1 times — and alone: the plan's other cell
  trains to the end and keeps its row; the exit status is 1 and the last line is the
  ``DatasetError`` in ``rllib train file``'s one-line form. In the same run the other cell crashes
  once after its first result (a ``--setup`` hook): that crash IS retried, from its checkpoint, and
  its row keeps the evaluations made before the crash. One benchmark run on two 3-episode datasets
  (Ray runs in that subprocess only).
* ``--config`` keys that a registered algorithm has but none of the plan's, and an empty folder
  given as a map: one line before anything starts, nothing written.
"""

import csv
import json
import os
import shutil
import subprocess
import sys

import pytest

from test_front_door import _plant_nan_reward

pytestmark = pytest.mark.timeout(600)

SHARD_ERROR = "column 'reward' contains NaN or inf at row(s) [1]; expected finite values"

# --setup hook (run in the driver and every Ray worker): a trial's second step raises once.
CRASH_HOOK = """
import os

MARKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "crashed_once")


def crash_once_after_first_result():
    from rllib_sit.experiments.trainable import PlanTrial

    if getattr(PlanTrial, "_crash_once", False):
        return
    step = PlanTrial.step

    def crashing_step(self):
        if self.iteration >= 1 and not os.path.exists(MARKER):
            open(MARKER, "w").close()
            raise RuntimeError("injected crash after the first result")
        return step(self)

    PlanTrial.step = crashing_step
    PlanTrial._crash_once = True
"""


def benchmark(cwd, data_dir, *args, timeout=120):
    exe = shutil.which("rllib-sit")
    cmd = ([exe] if exe else [sys.executable, "-m", "rllib_sit.cli.sit_cmd"]) + ["benchmark", *args]
    env = dict(os.environ, RLLIB_SIT_DATA_DIR=str(data_dir), PYTHONUNBUFFERED="1")
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=str(cwd))
    return proc, [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip()]


def leftovers(*folders):
    """Half-written files: temp names (``*.tmp-*``, Tune's ``.tmp``) and locks."""
    found = []
    for folder in folders:
        for root, dirs, files in os.walk(folder):
            found += [os.path.join(root, n) for n in dirs + files if ".tmp" in n or n.endswith(".lock")]
    return found


@pytest.fixture(scope="module")
def nan_run(tmp_path_factory):
    """MABC on a good smac:3m dataset (its trial crashes once after its first result) and a
    smac:2s3z one with a NaN reward; --max-failures 2, a checkpoint every iteration."""
    from rllib_sit.data.synthetic import make_random_dataset

    root = tmp_path_factory.mktemp("bench_front_door")
    good, bad = str(root / "ds_3m"), str(root / "nan_2s3z")
    make_random_dataset("smac:3m", 3, good, seed=0)
    make_random_dataset("smac:2s3z", 3, bad, seed=0)
    shard = _plant_nan_reward(bad)
    hook = root / "crash_hook.py"
    hook.write_text(CRASH_HOOK)
    out, data = root / "out", root / "data"
    proc, lines = benchmark(root, data, "--profile", "quick", "--algos", "MABC", "--maps", good, bad, "--seeds", "0",
                            "--updates", "4", "--eval-points", "2", "--eval-episodes", "1",
                            "--config", '{"batch_size_episodes": 2, "num_torch_threads": 1}', "--max-failures", "2",
                            "--checkpoint-freq", "1", "--setup", f"{hook}:crash_once_after_first_result",
                            "--num-cpus", "2", "--out", str(out), "--no-progress", timeout=500)
    return dict(proc=proc, lines=lines, out=out, data=data, good=good, shard=shard, marker=root / "crashed_once")


def test_failed_cell_is_the_last_line_and_exit_1(nan_run):
    proc, lines = nan_run["proc"], nan_run["lines"]
    assert proc.returncode == 1, (proc.stdout + proc.stderr)[-4000:]
    last = lines[-1]
    assert last.startswith("rllib-sit: error: benchmark: cell MABC on smac:2s3z random seed 0, trial "
                           "MABC_smac_2s3z_s0_"), last
    assert last.endswith(f": DatasetError: {nan_run['shard']}: {SHARD_ERROR}"), last
    assert "more cell(s)" not in last  # the good cell did not fail


def test_failed_cell_ran_once_not_max_failures_plus_one_times(nan_run):
    trials = sorted((nan_run["out"] / "tune" / "plan").glob("MABC_smac_2s3z_s0_*"))
    assert len(trials) == 1
    text = (trials[0] / "error.txt").read_text()
    assert text.count("Failure # ") == 1 and "Failure # 1 " in text, text[:500]
    assert "DatasetError" in text
    # The listed error file is the one under --out (not Ray's staging copy in /tmp/ray).
    listed = [ln for ln in nan_run["lines"] if ln.startswith("[benchmark]   ('MABC', 'smac:2s3z'")]
    assert len(listed) == 1 and listed[0].endswith(f"{trials[0]}: {trials[0] / 'error.txt'}"), listed


def test_other_cell_ran_and_kept_its_row(nan_run):
    out = nan_run["out"]
    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["algorithm"], r["map"], r["seed"]) for r in rows] == [("MABC", "smac:3m", "0")]
    assert rows[0]["dataset"] == nan_run["good"] and rows[0]["policy_updates"] == "4"
    assert os.path.isdir(rows[0]["checkpoint"])
    with open(out / "curves.csv") as f:
        curve = list(csv.DictReader(f))
    assert {r["map"] for r in curve} == {"smac:3m"}
    assert "[benchmark] 1 cell(s) run now" in nan_run["proc"].stdout


def test_crash_after_the_first_result_is_retried_from_its_checkpoint(nan_run):
    """--max-failures still applies once a trial has reported: the good cell's injected crash at its
    second step was retried from checkpoint_000000, and its row has both evaluations."""
    assert nan_run["marker"].exists()  # the hook did crash the trial
    trial = next((nan_run["out"] / "tune" / "plan").glob("MABC_smac_3m_s0_*"))
    text = (trial / "error.txt").read_text()
    assert text.count("Failure # ") == 1 and "injected crash after the first result" in text
    results = [json.loads(ln) for ln in (trial / "result.json").read_text().splitlines() if ln.strip()]
    last = results[-1]
    assert last["training_iteration"] == 2 and last["iterations_since_restore"] == 1  # continued, not restarted
    with open(nan_run["out"] / "results.csv") as f:
        row = next(csv.DictReader(f))
    assert row["iterations"] == "2" and row["evaluations"] == "2"  # the evaluation before the crash is kept
    with open(nan_run["out"] / "curves.csv") as f:
        assert [(r["iteration"], r["policy_updates"]) for r in csv.DictReader(f)] == [("1", "2"), ("2", "4")]


def test_nothing_half_written(nan_run):
    assert leftovers(nan_run["out"], nan_run["data"]) == []
    # The NaN dataset's column cache was not kept (built under a temp name, removed on the error).
    caches = nan_run["data"] / "cache" / "columns"
    names = sorted(os.listdir(caches)) if caches.is_dir() else []
    assert not any("2s3z" in n for n in names), names


@pytest.mark.parametrize("extra, message", [
    (["--algos", "MABC", "--config", '{"ardnem_updates": 100}'],
     "rllib-sit: error: --config: unknown setting 'ardnem_updates' for the plan's algorithms ['MABC'] (a setting of "
     "SIT, not in --algos); did you mean 'agent_updates'?"),
    (["--algos", "MABC", "QMIX", "--config", '{"alpha": 5}'],
     "rllib-sit: error: --config: unknown setting 'alpha' for the plan's algorithms ['MABC', 'QMIX'] (a setting of "
     "SIT, not in --algos); drop it, or add SIT to --algos"),
])
def test_config_key_of_an_algorithm_not_in_the_plan(tmp_path, extra, message):
    proc, lines = benchmark(tmp_path, tmp_path / "data", "--profile", "quick", "--maps", "smac:2s3z", "--qualities",
                            "low", "--seeds", "0", "--episodes", "3", "--out", str(tmp_path / "out"), "--no-progress",
                            *extra)
    assert proc.returncode == 2 and lines[-1] == message, proc.stdout + proc.stderr
    assert len(lines) == 1
    assert not (tmp_path / "out").exists() and not (tmp_path / "data").exists()


def test_empty_folder_as_a_map_is_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    proc, lines = benchmark(tmp_path, tmp_path / "data", "--profile", "quick", "--algos", "MABC", "--maps",
                            str(tmp_path / "empty"), "--seeds", "0", "--out", str(tmp_path / "out"), "--no-progress")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert lines == [f"rllib-sit: error: {tmp_path / 'empty'}: no Parquet files (*.parquet); expected an rllib_sit "
                     "dataset folder"]
    assert not (tmp_path / "out").exists() and not (tmp_path / "data").exists()


def test_config_key_message_names_the_owners_and_the_closest():
    from rllib_sit.experiments.plan import build_plan, config_key_message

    with pytest.raises(ValueError) as e:
        build_plan("quick", algos=["MABC"], maps=["smac:2s3z"], qualities=["low"], seeds=[0], config={"eta": 1})
    assert str(e.value) == config_key_message("eta", ["MABC"])
    assert str(e.value) == ("--config: unknown setting 'eta' for the plan's algorithms ['MABC'] (a setting of SIT, "
                            "not in --algos); drop it, or add SIT to --algos")
    assert config_key_message("alpah", ["MABC"]) == ("--config: unknown setting 'alpah' for the plan's algorithms "
                                                     "['MABC'] (no registered algorithm has it); drop it")
    # A key of the plan's own algorithm is accepted.
    plan = build_plan("quick", algos=["SIT"], maps=["smac:2s3z"], qualities=["low"], seeds=[0], config={"eta": 1})
    assert plan.cell_config(plan.cells[0])["eta"] == 1
