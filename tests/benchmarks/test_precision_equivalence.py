"""``benchmarks/precision_equivalence.py``: fp32 and bf16 cells matched from several folders, a later
folder's cell winning, other variants left out, and the verdict (bf16 mean within the fp32 seeds'
range) recomputed here with NumPy."""

import csv
import os
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIELDS = ["algorithm", "map", "quality", "seed", "final_return", "final_return_sampled", "best_return"]


def _folder(path, rows):
    os.makedirs(path)
    with open(os.path.join(path, "results.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, FIELDS)
        w.writeheader()
        for algo, seed, g, s in rows:
            w.writerow({"algorithm": algo, "map": "smac:2s3z", "quality": "low", "seed": seed, "final_return": g,
                        "final_return_sampled": s, "best_return": g + 1})


def _run(*args):
    return subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "precision_equivalence.py"), *args],
                          capture_output=True, text=True, timeout=120)


def test_verdicts_and_matched_rows(tmp_path):
    old = [("MABC", 0, 12.0, 3.5), ("MABC", 1, 11.9, 2.8), ("MABC", 2, 12.8, 3.0), ("SIT", 0, 1.0, 1.0),
           ("SIT[alpha=5]", 0, 7.0, 7.0)]
    new = [("MABC[precision=bf16]", 0, 12.5, 4.0), ("MABC[precision=bf16]", 1, 12.1, 4.4),
           ("MABC[precision=bf16]", 2, 12.4, 4.2), ("SIT[precision=fp32]", 0, 19.7, 8.5),
           ("SIT[precision=fp32]", 1, 20.0, 7.4), ("SIT[precision=bf16]", 0, 20.0, 6.9),
           ("SIT[precision=bf16]", 1, 11.5, 7.4)]
    _folder(tmp_path / "a", old)
    _folder(tmp_path / "b", new)
    out_csv = tmp_path / "eq.csv"
    proc = _run("--results", str(tmp_path / "a"), str(tmp_path / "b"), "--csv", str(out_csv))
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader(open(out_csv)))
    assert [(r["algorithm"], r["precision"], r["seed"]) for r in rows] == [
        ("MABC", "bf16", "0"), ("MABC", "bf16", "1"), ("MABC", "bf16", "2"), ("MABC", "fp32", "0"),
        ("MABC", "fp32", "1"), ("MABC", "fp32", "2"), ("SIT", "bf16", "0"), ("SIT", "bf16", "1"),
        ("SIT", "fp32", "0"), ("SIT", "fp32", "1")]  # b's SIT fp32 seed 0 replaced a's; no SIT[alpha=5]
    assert float(rows[8]["final_return"]) == 19.7
    md = {ln.split(" | ")[2] + " " + ln.split(" | ")[3]: ln for ln in proc.stdout.splitlines() if ln.startswith("| smac")}
    # MABC greedy: bf16 mean 12.33 in [11.9, 12.8] -> yes; sampled: 4.2 > 3.5 -> no
    g32, g16 = np.array([12.0, 11.9, 12.8]), np.array([12.5, 12.1, 12.4])
    assert g32.min() <= g16.mean() <= g32.max()
    assert f"{g16.mean():.2f} ± {g16.std():.2f}" in md["MABC final, greedy"] and md["MABC final, greedy"].endswith("| yes |")
    assert md["MABC final, sampled"].endswith("| **no** |")
    # SIT greedy: bf16 mean 15.75 outside [19.7, 20.0] -> no
    assert md["SIT final, greedy"].endswith("| **no** |")


def test_no_pair_is_one_error_line(tmp_path):
    _folder(tmp_path / "a", [("MABC", 0, 12.0, 3.5)])
    proc = _run("--results", str(tmp_path / "a"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].endswith(
        "--results: no (algorithm, dataset) has cells in both fp32 and bf16; expected 'ALGO[precision=bf16]' cells "
        "beside fp32 ones")
