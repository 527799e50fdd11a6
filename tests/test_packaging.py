"""A non-editable install works: the wheel carries the data specs and policy-pool cards, and a
dataset generated from the installed package lands in the working directory's cache.

Regression (issue 10): installed from a wheel, ``rllib-sit data generate smac:2s3z`` failed with
"no data specs (*.yaml) found in <site-packages>/offline_data/specs": the specs and pool cards were
not package data, and the cache root was ``Path(__file__).parents[2] / "offline_data"`` (inside
site-packages).

The wheel is built from a copy of the working tree (nothing is written into the checkout) with the
setuptools already installed (``--no-build-isolation``, no index), installed with ``--target`` into a
temporary folder, and run with ``PYTHONPATH`` pointing there; its dependencies come from this
environment.
"""

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from rllib_sit._version import __version__

REPO = Path(__file__).resolve().parents[1]
BUILD_FILES = ["setup.cfg", "pyproject.toml", "README.md"]
GENERATE = ["-m", "rllib_sit.cli.sit_cmd", "data", "generate", "smac:2s3z", "--quality", "low",
            "--episodes", "4", "--workers", "0", "--no-progress"]
PROBE = ("import json, rllib_sit, rllib_sit.cli.sit_cmd as cmd, rllib_sit.data.paths as p; "
         "print(json.dumps({'root': rllib_sit.__file__, 'cli': cmd.__file__, 'specs': str(p.specs_dir()), "
         "'pools': str(p.pools_dir()), 'data': str(p.data_dir())}))")


def _pip(*args, cwd=None):
    proc = subprocess.run([sys.executable, "-m", "pip", *args, "--no-deps", "--no-index", "-q",
                           "--disable-pip-version-check"], cwd=cwd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"pip {args[0]} failed:\n{proc.stdout}\n{proc.stderr}"


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """``(site, wheel)``: the package built as a wheel and installed into ``site`` (a --target dir)."""
    tmp = tmp_path_factory.mktemp("packaging")
    src = tmp / "src"
    src.mkdir()
    for name in BUILD_FILES:
        shutil.copy2(REPO / name, src / name)
    shutil.copytree(REPO / "rllib_sit", src / "rllib_sit", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    _pip("wheel", str(src), "--no-build-isolation", "-w", str(tmp / "wheel"))
    (wheel,) = (tmp / "wheel").glob("rllib_sit-*.whl")
    _pip("install", "--target", str(tmp / "site"), str(wheel))
    return tmp / "site", wheel


def _env(site: Path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("RLLIB_SIT_") and k not in ("PYTHONPATH", "TUNE_ORIG_WORKING_DIR")}
    env.update(PYTHONPATH=str(site), **extra)
    return env


def _run(args, site: Path, cwd: Path, **extra) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, *args], cwd=cwd, env=_env(site, **extra), capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, f"{' '.join(args)} failed (rc {proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc


def test_wheel_ships_specs_and_pool_cards_but_no_cache(installed):
    _, wheel = installed
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in ("rllib_sit/_version.py", "rllib_sit/resources/__init__.py",
                 "rllib_sit/resources/specs/smac.yaml", "rllib_sit/resources/specs/mpe.yaml",
                 "rllib_sit/resources/specs/mamujoco.yaml", "rllib_sit/resources/policy_pools/smac_2s3z.json",
                 "rllib_sit/resources/policy_pools/mamujoco_walker_2l.json"):
        assert name in names, f"{wheel.name} lacks {name}"
    shipped = {n for n in names if n.startswith("rllib_sit/resources/policy_pools/")}
    in_checkout = {f"rllib_sit/resources/policy_pools/{p.name}"
                   for p in (Path(__file__).parents[1] / "rllib_sit/resources/policy_pools").glob("*.json")}
    assert shipped == in_checkout and len(shipped) == 18  # 11 SIT maps + smac:3m/3s_vs_3z/3s_vs_4z, mpe:dg(50)(_partial) (VD+TN)
    assert not [n for n in names if n.startswith("offline_data/") or "/datasets/" in n or "/cache/" in n]
    assert f"rllib_sit-{__version__}-" in wheel.name


def test_installed_package_generates_into_the_working_directory(installed, tmp_path):
    site, _ = installed
    work = tmp_path / "work"
    work.mkdir()
    where = json.loads(_run(["-c", PROBE], site, work).stdout)
    # the installed copy is imported, not the checkout (which the editable install would give)
    for key in ("root", "cli", "specs", "pools"):
        assert Path(where[key]).resolve().is_relative_to(site.resolve()), (key, where)
    assert Path(where["data"]) == work.resolve() / "offline_data"

    proc = _run(GENERATE, site, work)
    out = work.resolve() / "offline_data" / "datasets" / "smac_2s3z" / "low_4_0_v2"
    assert proc.stdout.strip().splitlines()[-1] == str(out)
    card = json.loads((out / "card.json").read_text())
    assert card["env"] == "smac:2s3z" and card["quality"] == "low" and card["n_episodes"] == 4
    assert card["package_version"] == __version__
    assert card["generating_policies"]["pool_card"] == "rllib_sit/resources/policy_pools/smac_2s3z.json"
    assert list(out.glob("part-*.parquet"))
    # nothing was written into the installed package
    assert not list(site.rglob("offline_data")) and not list(site.rglob("*.parquet"))


def test_installed_package_honours_rllib_sit_data_dir(installed, tmp_path):
    site, _ = installed
    work, data = tmp_path / "work", tmp_path / "elsewhere"
    work.mkdir()
    _run(GENERATE, site, work, RLLIB_SIT_DATA_DIR=str(data))
    assert (data / "datasets" / "smac_2s3z" / "low_4_0_v2" / "card.json").exists()
    assert not (work / "offline_data").exists()
