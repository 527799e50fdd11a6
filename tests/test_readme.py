"""The README's opening commands and CI must stay in sync."""

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]


def readme_commands():
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```bash\n(.*?)```", text, re.S).group(1)
    return [line for line in block.splitlines() if line and not line.startswith("#")]


def test_readme_opens_with_install_and_run_then_install_and_test():
    main, tests = readme_commands()[:2]
    assert main.startswith("pip install torch==2.13.0 && pip install -e .") and "rllib train file" in main
    assert tests.startswith("pip install torch==2.13.0 && pip install -e \".[test]\"")


def test_ci_runs_exactly_the_readme_test_command():
    test_cmd = readme_commands()[1].split("&&")[-1].strip()
    ci = (ROOT / ".ci" / "run").read_text()
    assert test_cmd in ci
    assert "torch==2.13.0" in ci and '-e ".[test]"' in ci
    assert re.search(r"rc -eq 5", ci), "pytest's exit code 5 (no tests) must fail CI"


def test_tuned_example_of_main_command_exists():
    main = readme_commands()[0]
    yaml_path = re.search(r"rllib train file (\S+)", main).group(1)
    assert (ROOT / yaml_path).exists(), yaml_path
