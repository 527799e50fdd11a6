"""Selection metrics (rllib_sit.ope.selection) against values computed by hand."""

from __future__ import annotations

import math
import os

import pytest

from rllib_sit.ope import selection as SEL

EST = [0.1, 0.9, 0.5, 0.3]
TRUE = [1.0, 2.0, 4.0, 3.0]


def test_spearman_by_hand():
    # ranks 1,4,3,2 vs 1,2,4,3: sum d^2 = 6, rho = 1 - 6*6 / (4 * 15)
    assert SEL.spearman(EST, TRUE) == pytest.approx(0.4)
    assert SEL.spearman([1, 1, 2], [1, 2, 3]) == pytest.approx(1.5 / math.sqrt(3))  # average ranks for ties
    assert math.isnan(SEL.spearman([1.0], [2.0])) and math.isnan(SEL.spearman([1, 1], [1, 2]))


def test_regret_and_precision_by_hand():
    assert SEL.regret_at_k(EST, TRUE, 1) == pytest.approx((4 - 2) / 3)
    assert SEL.regret_at_k(EST, TRUE, 1, normalize=False) == pytest.approx(2.0)
    assert SEL.regret_at_k(EST, TRUE, 3) == 0.0
    assert SEL.precision_at_k(EST, TRUE, 1) == 0.0
    assert SEL.precision_at_k(EST, TRUE, 2) == pytest.approx(0.5)
    assert SEL.precision_at_k(EST, TRUE, 3) == pytest.approx(1.0)
    assert SEL.precision_at_k([3, 2, 1], [5, 5, 1], 1) == 1.0  # a tie for first: both are relevant
    assert SEL.regret_at_k([1, 2], [3, 3], 1) == 0.0  # equal returns: no regret


def test_rules():
    assert SEL.choose_last([3, 9, 4]) == 1
    assert SEL.choose_min([None, 0.5, float("nan"), 0.2]) == 3
    assert SEL.choose_min([None, None]) is None
    assert SEL.choice_regret([1.0, 3.0, 2.0], 2) == pytest.approx(0.5)


def _rows():
    def row(label, seed, it, ret, est, loss):
        return {"algorithm": label, "algorithm_name": "X", "map": "m:x", "quality": "low", "seed": seed,
                "iteration": it, "return_greedy": ret, "return_sampled": None, "fqe_estimate": est,
                "training_loss": loss, "explore": "False"}
    return [row("X[a=1]", 0, 1, 1.0, 0.5, 0.3), row("X[a=1]", 0, 2, 3.0, 0.4, 0.1), row("X[a=1]", 0, 3, 2.0, 0.9, 0.2),
            row("X[a=2]", 0, 1, 4.0, 2.0, 0.5), row("X[a=2]", 0, 2, 0.0, 1.0, 0.6)]


def test_dataset_report_by_hand():
    rep = SEL.dataset_report(_rows())
    assert rep["candidates"] == 5 and rep["runs"] == 2
    assert rep["spearman"] == pytest.approx(0.1)  # ranks 2,1,3,5,4 vs 2,4,3,5,1: 1 - 6*18/120
    assert rep["regret@1"] == 0.0 and rep["precision@1"] == 1.0
    # per run, regret / 4 (the dataset's return range): run a=1 best 3: FQE -> 2, last -> 2, min loss -> 3;
    # run a=2 best 4: FQE -> 4, last -> 0, min loss -> 4
    assert rep["run_regret_fqe"] == pytest.approx((0.25 + 0.0) / 2)
    assert rep["run_regret_last"] == pytest.approx((0.25 + 1.0) / 2)
    assert rep["run_regret_min_loss"] == pytest.approx(0.0)
    v = rep["variants"]["X"]  # at the last checkpoints: FQE 0.9 vs 1.0, true 2 vs 0
    assert v["fqe_pick"] == "X[a=2]" and v["true_pick"] == "X[a=1]" and not v["agree"]
    assert rep["variants"]["*"]["variants"] == 2


def test_report_judges_the_pass_the_policy_was_evaluated_as():
    rows = [dict(r, explore="True", return_sampled=-r["return_greedy"]) for r in _rows()]
    rep = SEL.dataset_report(rows)
    assert rep["spearman"] == pytest.approx(-0.1)


def test_table_and_figure(tmp_path):
    reports = SEL.score_rows(_rows())
    text = SEL.format_table(reports)
    lines = text.splitlines()
    assert lines[0].startswith("| dataset |") and lines[1].count("|") == lines[0].count("|")
    assert "| m:x low | 5 | 0.10 | 0.00 |" in text and "FQE picks X[a=2]" in text and "disagree" in text
    path = SEL.plot_estimates(_rows(), str(tmp_path / "fig.png"))
    assert os.path.getsize(path) > 1000 and not [p for p in os.listdir(tmp_path) if ".tmp-" in p]


def test_trusted_fits_by_hand():
    # median of the finite losses (0.1, 0.2, 0.3, 5.0) is 0.25: K=2 keeps <= 0.5
    mask = SEL.trusted_fits([0.1, 0.2, None, 0.3, 5.0], 2.0)
    assert mask.tolist() == [True, True, False, True, False]
    assert SEL.trusted_fits([0.1, None], None).tolist() == [True, True]  # no ratio: every fit
    assert SEL.trusted_fits([None, float("nan")], 10.0).tolist() == [False, False]


def test_report_chooses_among_trusted_fits_only():
    # the diverged fit (TD loss 9, 30x the median 0.3) carries the highest estimate but a poor return
    losses = [0.3, 0.2, 0.4, 9.0, 0.3]
    rows = [dict(r, td_loss_last=l) for r, l in zip(_rows(), losses)]
    plain = SEL.dataset_report(rows)
    assert plain["trusted"] == 5 and plain["fqe_pick"].startswith("X[a=2] s0 it1")
    rep = SEL.dataset_report(rows, max_td_ratio=10.0)
    assert rep["candidates"] == 5 and rep["trusted"] == 4
    # Spearman over the 4 trusted: estimates 0.5, 0.4, 0.9, 1.0 vs returns 1, 3, 2, 0
    # ranks 2,1,3,4 vs 2,4,3,1: sum d^2 = 0+9+0+9 = 18, rho = 1 - 6*18/60
    assert rep["spearman"] == pytest.approx(1 - 6 * 18 / 60)
    # top-1 among trusted is the a=2 it2 checkpoint (estimate 1.0, return 0): regret (4-0)/4 over ALL candidates
    assert rep["regret@1"] == pytest.approx(1.0)
    # top-3 trusted: returns 0, 2, 1 -> best 2 -> regret (4-2)/4
    assert rep["regret@3"] == pytest.approx(0.5)
    # run a=2: FQE now picks it2 (return 0): per-run regret 4/4; run a=1 unchanged 0.25
    assert rep["run_regret_fqe"] == pytest.approx((0.25 + 1.0) / 2)
    # every fit of a run untrusted: the FQE rule falls back to the run's last checkpoint
    rows2 = [dict(r, td_loss_last=l) for r, l in zip(_rows(), [0.1, 0.1, 0.1, 9.0, 9.0])]
    rep2 = SEL.dataset_report(rows2, max_td_ratio=10.0)
    assert rep2["trusted"] == 3 and rep2["run_regret_fqe"] == pytest.approx((0.25 + 1.0) / 2)
    # the variant pick: a=2's last checkpoint is untrusted, so its label has no estimate and a=1 is picked
    assert rep2["variants"]["X"]["fqe_pick"] == "X[a=1]" and rep2["variants"]["X"]["agree"]
    text = SEL.format_table({("m:x", "low"): rep2})
    assert "3 of 5 fits trusted" in text



def test_figure_with_untrusted_fits(tmp_path):
    rows = [dict(r, td_loss_last=l) for r, l in zip(_rows(), [0.1, 0.1, 0.1, 9.0, None])]
    path = SEL.plot_estimates(rows, str(tmp_path / "fig.png"), max_td_ratio=10.0)
    assert os.path.getsize(path) > 1000 and not [p for p in os.listdir(tmp_path) if ".tmp-" in p]
