"""``benchmarks/runner_layout.py``: the trials' wall times are read from every results.csv of the
layout's folders (one per variant, or one), never from Tune's own folders, and a folder that
already holds a run is refused in one line before Ray starts (a resumed run's wall time would not
be the layout's)."""

import csv
import importlib.util
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "benchmarks", "runner_layout.py")


def _load():
    spec = importlib.util.spec_from_file_location("runner_layout", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _results(folder, walls):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "results.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, ["algorithm", "seed", "wall_time_s"])
        w.writeheader()
        for i, s in enumerate(walls):
            w.writerow({"algorithm": "MABC", "seed": i, "wall_time_s": "" if s is None else s})


def test_trial_seconds_sums_every_variant_folder_and_skips_tune(tmp_path):
    _results(tmp_path / "MABC", [60.5, 61.0, 59.5])
    _results(tmp_path / "SIT", [120.0, None])  # a row without a wall time (read back from tune/) is left out
    _results(tmp_path / "tune" / "plan", [999.0])  # not a runner table
    secs = sorted(_load().trial_seconds(str(tmp_path)))
    assert secs == [59.5, 60.5, 61.0, 120.0]


def test_a_folder_holding_a_run_is_refused_in_one_line(tmp_path):
    (tmp_path / "results.csv").write_text("algorithm\n")
    proc = subprocess.run([sys.executable, SCRIPT, "--layout", "one", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("runner_layout.py: error: --out ") and "not empty" in last, proc.stderr
    assert sorted(os.listdir(tmp_path)) == ["results.csv"]
