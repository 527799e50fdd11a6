"""benchmarks/speed.py at tiny sizes: every cheap section runs, its table has the expected rows and
finite positive numbers, and the output files are written. No timing threshold is checked (the
numbers of a tiny run on a shared machine mean nothing); the learner rows also check that the
plain PyTorch loop computes the same gradients as the RLlib update ("grad check")."""

import csv
import importlib.util
import json
import math
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def load_speed():
    spec = importlib.util.spec_from_file_location("speed_benchmark", os.path.join(ROOT, "benchmarks", "speed.py"))
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    speed = load_speed()
    tmp = tmp_path_factory.mktemp("speed")
    out = str(tmp / "out")
    argv = ["--tiny", "--data-dir", str(tmp / "data"), "--out", out,
            "--sections", "learner", "stage2", "sumtree", "read", "envs", "memory"]
    assert speed.main(argv) == 0
    with open(os.path.join(out, "speed.json")) as f:
        doc = json.load(f)
    return speed, out, doc, argv


def numbers(row, columns):
    return {c: row[c] for c in columns[1:] if isinstance(row.get(c), (int, float)) and not isinstance(row[c], bool)}


def test_sections_rows_and_numbers(tiny_run):
    speed, _, doc, _ = tiny_run
    from rllib_sit.algorithms import ALGORITHMS

    secs = {s["name"]: s for s in doc["sections"]}
    assert list(secs) == ["learner", "stage2", "sumtree", "read", "envs", "memory"]
    for s in secs.values():
        assert s["rows"], s["name"]
        for row in s["rows"]:
            for c, v in numbers(row, s["columns"]).items():
                if c == "grad check":
                    continue
                assert math.isfinite(v) and v > 0, (s["name"], row[s["columns"][0]], c, v)

    learner = secs["learner"]
    labels = [r["algorithm (phase)"] for r in learner["rows"]]
    assert "SIT Stage I (ardnem)" in labels and "SIT Stage III (agents)" in labels
    assert {"OMAC (value)", "OMAC (policy)"} <= set(labels)
    for name in ALGORITHMS:
        assert any(label.startswith(name + " ") for label in labels), (name, labels)
    for row in learner["rows"]:
        for c in ("training_step() ms", "learner_group.update ms", "plain PyTorch ms", "training_step/plain",
                  "update/plain"):
            assert isinstance(row[c], float), (row, c)
        # the plain loop is the same math as the RLlib update (same gradients from the same weights)
        assert row["grad check"] < 1e-4, row
        # continuous-only algorithms (FACMAC, VDTN_TD3BC) on halfcheetah_2l, the others on 2s3z
        continuous_only = row["algorithm (phase)"].split(" ")[0] in ("FACMAC", "VDTN_TD3BC")
        assert row["map"] == ("halfcheetah_2l" if continuous_only else "2s3z")

    assert [r["measurement"].split(" (")[0] for r in secs["stage2"]["rows"]] == ["Stage II pass"]
    assert [r["leaves"] for r in secs["sumtree"]["rows"]] == speed.TINY["sumtree_leaves"]
    assert [r["read"].split(":")[0] for r in secs["read"]["rows"]] == [
        "stream batches of 4 episodes (NumPy)", "column cache", "column cache"]
    assert [r["env"] for r in secs["envs"]["rows"]] == speed.ENVS
    mem = [r["measurement"] for r in secs["memory"]["rows"]]
    assert any(m.startswith("peak PSS") for m in mem) and any(m.startswith("dataset on disk") for m in mem)


def test_outputs_command_and_machine(tiny_run):
    _, out, doc, argv = tiny_run
    assert doc["command"].startswith("python benchmarks/speed.py --tiny")
    for key in ("cpu", "cpu_count", "torch_threads", "torch", "ray", "python"):
        assert doc["machine"][key] is not None, key
    with open(os.path.join(out, "speed.csv")) as f:
        rows = list(csv.DictReader(f))
    assert {r["section"] for r in rows} == {s["name"] for s in doc["sections"]}
    with open(os.path.join(out, "speed.md")) as f:
        md = f.read()
    assert doc["command"] in md and "| algorithm (phase) |" in md
    assert not [f for f in os.listdir(out) if ".tmp-" in f]  # atomic writes left no temporary file


def test_bad_arguments():
    speed = load_speed()
    with pytest.raises(SystemExit):
        speed.parse_args(["--updates", "0"])
    with pytest.raises(SystemExit):
        speed.parse_args(["--sections", "nope"])
    args = speed.parse_args(["--sections", "all", "--tiny", "--updates", "3", "--data-dir", "/tmp/x"])
    assert args.sections == speed.ALL_SECTIONS and args.updates == 3 and args.repeats == speed.TINY["repeats"]
