"""Where the data layer reads its package data and writes its cache.

Read-only, shipped inside the package (so a wheel install, or Ray installing the package on a
cluster's nodes, has them too), loaded with :mod:`importlib.resources`:

* data specs ``rllib_sit/resources/specs/<family>.yaml`` — :func:`specs_dir`, overridable with
  ``$RLLIB_SIT_SPECS_DIR``;
* behaviour policy pool cards ``rllib_sit/resources/policy_pools/<family>_<scenario>.json`` —
  :func:`pools_dir`, overridable with ``$RLLIB_SIT_POOLS_DIR``.

Written, never inside the package: the **data dir** (:func:`data_dir`) is ``$RLLIB_SIT_DATA_DIR``
or else ``./offline_data`` of the working directory. It holds

* generated datasets: ``<data dir>/datasets/<family>_<scenario>/<quality>_<n>_<seed>/``
  (:func:`datasets_dir`);
* the memory-mapped column cache: ``<data dir>/cache/columns/`` (``$RLLIB_SIT_CACHE_DIR``
  overrides that one folder; :mod:`rllib_sit.data.column_cache`).

Ray Tune changes a trial's working directory to its trial folder; it records the folder the job
was started from in ``TUNE_ORIG_WORKING_DIR``, and :func:`data_dir` resolves ``./offline_data``
against that one, so that a driver and its trials share one cache.
"""

from __future__ import annotations

import importlib.resources
import os
from pathlib import Path

RESOURCES_PACKAGE = "rllib_sit.resources"
DATA_DIR_ENV = "RLLIB_SIT_DATA_DIR"
SPECS_DIR_ENV = "RLLIB_SIT_SPECS_DIR"
POOLS_DIR_ENV = "RLLIB_SIT_POOLS_DIR"
DEFAULT_DATA_DIR_NAME = "offline_data"
# Set by Ray Tune in a trial before it changes into the trial folder (ray.tune.trainable).
TUNE_ORIG_WORKING_DIR = "TUNE_ORIG_WORKING_DIR"


def working_dir() -> Path:
    """The directory relative paths of the cache are resolved against (see the module docstring)."""
    return Path(os.environ.get(TUNE_ORIG_WORKING_DIR) or os.getcwd())


def resources_dir() -> Path:
    """The package's ``resources/`` folder (read-only package data)."""
    res = importlib.resources.files(RESOURCES_PACKAGE)
    if not isinstance(res, Path) or not res.is_dir():
        raise RuntimeError(f"rllib_sit's package data ({RESOURCES_PACKAGE}) is not a folder on disk ({res!r}); "
                           "install the package unpacked (pip install), not as a zip")
    return res


def _env_path(var: str) -> Path | None:
    value = os.environ.get(var)
    if not value:
        return None
    path = Path(value).expanduser()
    return path if path.is_absolute() else working_dir() / path


def specs_dir() -> Path:
    """``$RLLIB_SIT_SPECS_DIR`` or the package's ``resources/specs``."""
    return _env_path(SPECS_DIR_ENV) or resources_dir() / "specs"


def pools_dir() -> Path:
    """``$RLLIB_SIT_POOLS_DIR`` or the package's ``resources/policy_pools``."""
    return _env_path(POOLS_DIR_ENV) or resources_dir() / "policy_pools"


def data_dir() -> Path:
    """``$RLLIB_SIT_DATA_DIR`` or ``./offline_data`` of the working directory (absolute)."""
    return _env_path(DATA_DIR_ENV) or working_dir() / DEFAULT_DATA_DIR_NAME


def datasets_dir() -> Path:
    """Root of the generated-dataset cache: ``<data dir>/datasets``."""
    return data_dir() / "datasets"


def display_path(path: os.PathLike) -> str:
    """``path`` as written into cards: ``rllib_sit/resources/...`` for package data (the same in a
    checkout and in any install), else the absolute path."""
    path = Path(path).resolve()
    try:
        return (Path("rllib_sit") / "resources" / path.relative_to(resources_dir().resolve())).as_posix()
    except ValueError:
        return str(path)
