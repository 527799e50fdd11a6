"""benchmarks/sit_priority_scale.py's decision table from a hand-made results folder: the per-seed
cells, mean ± std (population std, as NumPy's default) and the mean DPER ESS per type over seeds, all
checked against numbers written here by hand. Nothing is trained."""

import csv
import importlib.util
import os

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _load():
    spec = importlib.util.spec_from_file_location("sit_priority_scale", os.path.join(ROOT, "benchmarks",
                                                                                     "sit_priority_scale.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _write(path, fields, rows):
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)


def test_table_cells_mean_std_and_ess(tmp_path):
    mod = _load()
    algo = "SIT[alpha=5,priority_scale=return_range]"
    res = [{"algorithm": algo, "map": "smac:2s3z", "quality": "low", "seed": s, "final_return": v,
            "behaviour_return": 3.3} for s, v in ((0, 10.0), (1, 12.0), (2, 14.0))]
    _write(tmp_path / "results.csv", list(res[0]), res)
    dper = [{"algorithm": algo, "map": "smac:2s3z", "quality": "low", "seed": s, "agent": a, "agent_type": t,
             "type_ess": e} for s, e in ((0, 100.0), (1, 200.0)) for a, t in (("s1", "stalker"), ("z1", "zealot"))]
    _write(tmp_path / "dper_priorities.csv", list(dper[0]), dper)
    text = mod.tables(str(tmp_path), [0, 1, 2])
    assert "**smac:2s3z low** (behaviour 3.30)" in text
    # mean 12, population std sqrt(8/3) = 1.63; ESS mean over seeds 0 and 1 = 150 for each type
    assert "| 5 | return_range | 10.00 | 12.00 | 14.00 | 12.00 ± 1.63 | stalker 150.0, zealot 150.0 |" in text
    assert "| 0.2 | minmax | — | — | — | — | — |" in text  # a variant that has not run
