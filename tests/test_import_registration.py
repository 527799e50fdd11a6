"""``import rllib_sit`` (or importing any config class) makes every algorithm name resolvable by
Tune, checked in fresh interpreters: nothing registered by an earlier test can help."""

import json
import subprocess
import sys

import pytest

from rllib_sit.algorithms import ALGORITHMS

RESOLVE = """
import json, sys
{first_import}
assert 'torch' not in sys.modules or {torch_allowed}, 'torch imported by: {first_import}'
torch_before = 'torch' in sys.modules
from ray.tune.registry import get_trainable_cls
out = {{}}
for name in {names!r}:
    cls = get_trainable_cls(name)
    out[name] = [cls.__module__, cls.__name__]
print(json.dumps({{"resolved": out, "torch_at_import": torch_before}}))
"""


def _run(first_import: str, torch_allowed: bool) -> dict:
    code = RESOLVE.format(first_import=first_import, torch_allowed=torch_allowed, names=sorted(ALGORITHMS))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("first_import, torch_allowed", [
    ("import rllib_sit", False),  # the package alone: registered, and no torch imported for it
    ("from rllib_sit.algorithms.sit import SITConfig", True),  # a config class (imports RLlib and torch)
])
def test_every_registered_name_resolves_in_a_fresh_interpreter(first_import, torch_allowed):
    got = _run(first_import, torch_allowed)
    assert got["resolved"] == {name: list(ALGORITHMS[name]) for name in ALGORITHMS}
    if not torch_allowed:
        assert got["torch_at_import"] is False


def test_names_survive_a_new_ray_cluster():
    """A second ``ray.init`` starts with an empty registry store: the names are registered again."""
    code = ("import rllib_sit, ray\n"
            "from ray.tune.registry import get_trainable_cls\n"
            "for _ in range(2):\n"
            "    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)\n"
            "    print(get_trainable_cls('MABC').__module__)\n"
            "    ray.shutdown()\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split() == ["rllib_sit.algorithms.mabc.mabc"] * 2


def test_the_package_imports_without_ray():
    """Exported policies run where Ray is absent: importing the package must not need it."""
    code = "import sys\nsys.modules['ray'] = None\nimport rllib_sit\nprint('ok', 'torch' in sys.modules)\n"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split() == ["ok", "False"]


def test_without_the_package_the_names_are_unknown():
    """The check above can fail: a fresh interpreter that does not import rllib_sit cannot resolve SIT."""
    code = ("from ray.tune.registry import get_trainable_cls\n"
            "try:\n    get_trainable_cls('SIT')\nexcept Exception as e:\n    print(type(e).__name__)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert proc.stdout.split()[-1:] == ["TuneError"], proc.stderr[-2000:]
