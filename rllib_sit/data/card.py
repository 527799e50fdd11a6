"""Dataset cards (``card.json``): what a dataset is, how it was made, its return statistics."""

from __future__ import annotations

import json
import os
from typing import Any, Dict

import numpy as np

from rllib_sit._version import __version__
from rllib_sit.data import schema as S

CARD_FILE = "card.json"


def make_card(meta: S.DatasetMeta, returns: np.ndarray, extra: Dict[str, Any] | None = None) -> Dict[str, Any]:
    """Card fields: env, scenario, quality, composition, generating policies, n_episodes,
    return mean/std/min/max, schema version, seed, package version (``extra`` overrides/adds)."""
    family, _, scenario = meta.env.env_id.partition(":")
    returns = np.asarray(returns, np.float64)
    card: Dict[str, Any] = {
        "env": meta.env.env_id,
        "family": family,
        "scenario": scenario,
        "quality": None,
        "composition": None,
        "generating_policies": None,
        "seed": None,
        "n_episodes": int(returns.size),
        "return_mean": float(returns.mean()) if returns.size else None,
        "return_std": float(returns.std()) if returns.size else None,
        "return_min": float(returns.min()) if returns.size else None,
        "return_max": float(returns.max()) if returns.size else None,
        "schema_version": meta.schema_version,
        "package_version": __version__,
        "agents": meta.env.agents,
        "agent_types": meta.env.agent_types,
    }
    for k, v in (extra or {}).items():
        if k in ("n_episodes", "return_mean", "return_std", "return_min", "return_max", "schema_version"):
            continue  # measured here, never taken from the caller
        card[k] = v
    return card


def write_card(card: Dict[str, Any], folder: str) -> None:
    with open(os.path.join(folder, CARD_FILE), "w") as f:
        json.dump(card, f, indent=2, sort_keys=False, default=_json_default)
        f.write("\n")


def read_card(folder: str) -> Dict[str, Any]:
    path = os.path.join(folder, CARD_FILE)
    if not os.path.exists(path):
        return {}
    try:
        with open(path) as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        from rllib_sit.data.validation import DatasetError

        raise DatasetError(f"{path}: not valid JSON ({e}); expected the dataset card") from None


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"card field of type {type(o).__name__} is not JSON serialisable")
