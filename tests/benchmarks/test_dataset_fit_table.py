"""benchmarks/dataset_fit_table.py reads each pool card's dataset_fit: a card with a fit gives its fresh
average and verdict, a card without one is listed as not fitted, and the count line adds them up.
The cards are hand-made in a temporary folder; nothing is simulated."""

import importlib.util
import json
import os

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_table_from_hand_made_cards(tmp_path):
    spec = importlib.util.spec_from_file_location("dataset_fit_table", os.path.join(ROOT, "benchmarks",
                                                                                  "dataset_fit_table.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    levels = {"random": [{"kind": "uniform", "params": {}}]}
    fit = {"datasets": {"low": {"paper_average_return": 3.24, "measured_average_return": 3.5, "measured_episodes": 200,
                                "within": True},
                        "medium": {"paper_average_return": 7.04, "measured_average_return": 4.0,
                                   "measured_episodes": 200, "within": False}}}
    (tmp_path / "smac_2s3z.json").write_text(json.dumps({"env": "smac:2s3z", "levels": levels, "dataset_fit": fit}))
    (tmp_path / "smac_8m.json").write_text(json.dumps({"env": "smac:8m", "levels": levels}))
    rs = {(r["env"], r["quality"]): r for r in mod.rows(str(tmp_path))}
    assert rs[("smac:2s3z", "low")]["ours"] == 3.5 and rs[("smac:2s3z", "low")]["within"] is True
    assert rs[("smac:2s3z", "medium")]["within"] is False
    assert rs[("smac:8m", "low")]["ours"] is None  # a card without a fit
    assert rs[("smac:2s3z", "medium")]["tolerance"] == 7.04 * 0.15
    text = mod.markdown(list(rs.values()))
    assert "| smac:2s3z | low | `50% [s1:r, s2:r, z1:r, z2:r, z3:r] + 50% [s1:m, s2:m, z1:m, z2:m, z3:m]` | 3.24 | " \
           "3.50 (200) | 2.74 … 3.74 | yes |" in text
    assert "| 4.00 (200) | 5.98 … 8.10 | **no** |" in text
    n_missing = sum(1 for r in rs.values() if r["ours"] is None)
    assert f"1 of {len(rs)} datasets within the band; {n_missing} not fitted." in text
