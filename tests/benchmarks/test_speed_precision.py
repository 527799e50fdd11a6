"""benchmarks/speed.py's learner options of issue 22: ``--precision both`` times each algorithm in
fp32 then bf16 in one run (one row per variant, labelled, with the learner's own precision and the
plain loop in the same autocast: grad check ~0), ``--learner-threads`` multiplies the variants,
``--device cuda`` is refused where torch sees no GPU. No timing is checked."""

import json
import os

import pytest
import torch

from test_speed_script import load_speed


def test_precision_both_and_two_thread_counts(tmp_path):
    speed = load_speed()
    out = str(tmp_path / "out")
    argv = ["--tiny", "--data-dir", str(tmp_path / "data"), "--out", out, "--sections", "learner",
            "--algos", "QMIX", "--precision", "both", "--learner-threads", "1", "2", "--num-cpus", "2"]
    assert speed.main(argv) == 0
    with open(os.path.join(out, "speed.json")) as f:
        rows = json.load(f)["sections"][0]["rows"]
    assert [(r["precision"], r["threads"]) for r in rows] == [("fp32", 1), ("bf16", 1), ("fp32", 2), ("bf16", 2)]
    assert [r["algorithm (phase)"] for r in rows] == [
        "QMIX (td) [fp32, 1 thr]", "QMIX (td) [bf16, 1 thr]", "QMIX (td) [fp32, 2 thr]", "QMIX (td) [bf16, 2 thr]"]
    for r in rows:
        assert r["device"] == "cpu" and r["grad check"] < 1e-4, r
        assert all(isinstance(r[c], float) and r[c] > 0 for c in ("learner_group.update ms", "plain PyTorch ms"))
    assert torch.get_num_threads() == speed.parse_args([]).threads  # --threads again for later sections


def test_learner_option_defaults_and_errors():
    speed = load_speed()
    args = speed.parse_args(["--threads", "3"])
    assert (args.device, args.precision, args.learner_threads) == ("cpu", "fp32", [3])
    with pytest.raises(SystemExit):
        speed.parse_args(["--precision", "fp16"])
    with pytest.raises(SystemExit):
        speed.parse_args(["--learner-threads", "0"])
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit):
            speed.parse_args(["--device", "cuda"])
