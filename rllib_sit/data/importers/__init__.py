"""Import public offline MARL datasets into schema v1 (``rllib-sit data import``).

Formats (one module each, listed in :data:`IMPORTERS`):

* ``og-marl-vault`` — OG-MARL's flashbax vaults ``<scenario>.vlt/<uid>/`` (tensorstore
  zarr-over-OCDBT), :mod:`.ogmarl_vault`;
* ``pymarl-hdf5`` — pymarl/ICQ/CFCQL/OffPyMARL ``EpisodeBatch`` HDF5 files, :mod:`.pymarl_hdf5`.

Usage::

    from rllib_sit.data.importers import import_dataset
    path = import_dataset(["vaults/smac_v1/3m.vlt/Good"], "smac:3m", out="offline_data/datasets/smac_3m/og-marl_Good")

The episodes go through :func:`rllib_sit.data.write_dataset` with full validation (atomic: nothing
is left under ``out`` if anything fails); the card records the source format, its paths and what
the source claims to be (vault name/uid/version, HDF5 attributes).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable, Dict, Optional, Sequence

from rllib_sit.data.importers import ogmarl_vault, pymarl_hdf5
from rllib_sit.data.importers.common import TEAM_REWARDS, Source, check_team_reward
from rllib_sit.data.validation import DatasetError


@dataclasses.dataclass(frozen=True)
class Importer:
    """One format: ``detect(path) -> bool`` and ``open_source(paths, env, **options) -> Source``."""

    name: str
    description: str
    detect: Callable[[str], bool]
    open_source: Callable[..., Source]


IMPORTERS: Dict[str, Importer] = {
    ogmarl_vault.FORMAT: Importer(ogmarl_vault.FORMAT, "OG-MARL flashbax vault <scenario>.vlt/<uid> (tensorstore)",
                                  ogmarl_vault.detect, ogmarl_vault.open_source),
    pymarl_hdf5.FORMAT: Importer(pymarl_hdf5.FORMAT, "pymarl/ICQ/CFCQL/OffPyMARL EpisodeBatch HDF5 (h5py)",
                                 pymarl_hdf5.detect, pymarl_hdf5.open_source),
}


def detect_format(path: str) -> str:
    """The registry name of the format of ``path`` (one clear error if none or several match)."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such file or folder; expected a dataset in one of {sorted(IMPORTERS)}")
    found = [name for name, imp in IMPORTERS.items() if imp.detect(path)]
    if len(found) != 1:
        raise DatasetError(f"{path}: {'no' if not found else 'more than one'} known dataset format recognised "
                           f"({found or 'none'}); expected one of {sorted(IMPORTERS)} (pass format=...)")
    return found[0]


def default_output(env_id: str, source: Source) -> str:
    """``<data dir>/datasets/<family>_<scenario>/<format>_<quality>``."""
    from rllib_sit.data.paths import datasets_dir

    family, _, scenario = env_id.partition(":")
    return str(datasets_dir() / f"{family}_{scenario}" / f"{source.format}_{source.quality or 'imported'}")


def import_dataset(paths: Sequence[str], env: str, out: Optional[str] = None, *, format: Optional[str] = None,
                   quality: Optional[str] = None, team_reward: str = "mean", overwrite: bool = False,
                   rows_per_shard: Optional[int] = None, progress: bool = False) -> str:
    """Convert a foreign dataset into a schema-v1 dataset of ``env`` and return its folder.

    Args:
        paths: the source (one vault folder; one or more HDF5 files).
        env: our environment id (``"smac:3m"``); every size of the source is checked against it.
        out: output folder (default :func:`default_output`).
        format: a key of :data:`IMPORTERS`; detected from the first path when omitted.
        quality: the card's quality (default: the vault uid or the HDF5 file name).
        team_reward: per-agent rewards -> team reward: one of :data:`~.common.TEAM_REWARDS`.
        overwrite: replace an existing dataset at ``out``.
        rows_per_shard: episodes per Parquet shard (the writer's default when omitted).
        progress: show a progress bar (episodes written).
    """
    from rllib_sit.data import schema as S
    from rllib_sit.data.io import write_dataset
    from rllib_sit.envs.registry import make_env

    paths = [os.fspath(p) for p in paths]
    if not paths:
        raise ValueError("give the dataset to import (a vault folder or HDF5 file(s))")
    check_team_reward(team_reward)
    fmt = format or detect_format(paths[0])
    if fmt not in IMPORTERS:
        raise ValueError(f"format={fmt!r} is unknown; expected one of {sorted(IMPORTERS)}")
    env_obj = make_env(env)
    info = env_obj.info
    env_obj.close()
    source = IMPORTERS[fmt].open_source(paths, info, team_reward_how=team_reward)
    out = os.path.abspath(out or default_output(env, source))
    if os.path.exists(out) and not overwrite:
        raise FileExistsError(f"{out}: dataset already exists; pass overwrite=True (--overwrite) to replace it")
    rows = source.rows
    if progress:
        from tqdm import tqdm

        rows = tqdm(rows, desc=f"import {os.path.basename(out)}", unit="ep")
    card: Dict[str, Any] = {
        "quality": quality or source.quality,
        "composition": None,
        "generating_policies": f"unknown (imported from {fmt})",
        "source": {"format": fmt, "paths": source.paths, "claims": source.claims},
        "import": source.notes,  # filled while the rows are read, before the card is written
    }
    kwargs = {} if rows_per_shard is None else {"rows_per_shard": rows_per_shard}
    try:
        return write_dataset(rows, out, S.DatasetMeta(env=info), card, overwrite=overwrite, validate=True, **kwargs)
    except DatasetError as e:  # the writer's validation names episodes and columns, not the source
        msg = str(e)
        if not any(msg.startswith(p) for p in source.paths):
            msg = f"{', '.join(source.paths)}: {msg}"
        raise DatasetError(msg) from None


__all__ = ["IMPORTERS", "Importer", "Source", "TEAM_REWARDS", "detect_format", "default_output", "import_dataset"]
