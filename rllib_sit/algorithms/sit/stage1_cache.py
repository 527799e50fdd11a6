"""Stage I (ARDNEM) shared across runs: trained once per (dataset, Stage I settings, seed).

Stage I and everything Stage II computes from it are a pure function of the dataset and the
Stage I settings (:func:`key_fields`); α, β, η and the other Stage II/III settings do not enter.
The trained ARDNEM of one run is stored under that key in an
:class:`~rllib_sit.data.artifact_store.ArtifactStore` (a folder or a URI); a later run with the
same key, e.g. every other trial of an α × β × η sweep, loads it instead of training.

An entry holds what a run has after Stage I, so that a run that loads it continues exactly as
the run that trained it: the ARDNEM weights, its optimizer state and update count, the
algorithm's RNG state after Stage I, and the loss of every Stage I update (reported again by
the loading run, iteration by iteration). Stage II is recomputed (a forward pass; it depends on γ).

Where: ``SITConfig.stage1_cache`` — ``None`` / ``"default"`` / ``True``: ``$RLLIB_SIT_STAGE1_CACHE``
if set, else ``<data dir>/cache/ardnem`` (:func:`rllib_sit.data.paths.data_dir`); a folder or a URI
(``s3://``, ``gs://``, ``file://``); ``False`` (or ``RLLIB_SIT_STAGE1_CACHE=off``): off.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

logger = logging.getLogger(__name__)

STAGE1_CACHE_ENV = "RLLIB_SIT_STAGE1_CACHE"
OFF_VALUES = ("off", "false", "0", "no", "none")
DEFAULT_SUBDIR = ("cache", "ardnem")
# Bump when Stage I's math, its batches or the entry's files change: old entries then miss.
STAGE1_FORMAT = 1

ARRAYS_FILE = "arrays.npz"
META_FILE = "meta.json"

# Run statuses (results["stage1_cache"]["status"]).
HIT = "hit"                  # Stage I loaded from the store
TRAINED = "trained"          # trained here (and published to the store when it was first)
OFF = "off"                  # no store (stage1_cache=False, RLLIB_SIT_STAGE1_CACHE=off, or seed=None)
UNAVAILABLE = "unavailable"  # the store could not be used (error logged); trained here


# -- the setting ----------------------------------------------------------------------------------
def check_setting(value: Any) -> Optional[str]:
    """None if ``value`` is a valid ``stage1_cache`` setting, else what is expected."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (str, os.PathLike)) and os.fspath(value).strip():
        return None
    return ("None/'default'/True (the default store), False (off), or a folder path or URI "
            "(s3://..., gs://..., file:///...) string")


def resolve_location(setting: Any) -> Optional[str]:
    """The store location of a ``stage1_cache`` setting, or None when the cache is off."""
    from rllib_sit.data.io import is_remote
    from rllib_sit.data.paths import data_dir, working_dir

    if setting is False:
        return None
    if setting is None or setting is True or (isinstance(setting, str) and setting.strip().lower() == "default"):
        env = os.environ.get(STAGE1_CACHE_ENV, "").strip()
        if env.lower() in OFF_VALUES:
            return None
        setting = env or str(data_dir().joinpath(*DEFAULT_SUBDIR))
    text = os.fspath(setting).strip()
    if is_remote(text) or text.startswith("file://"):
        return text
    path = Path(text).expanduser()
    return str(path if path.is_absolute() else working_dir() / path)


# -- the key --------------------------------------------------------------------------------------
def key_fields(config, dataset_fingerprint: str) -> Dict[str, Any]:
    """Everything Stage I's result depends on (``config``: a ``SITConfig``).

    ``dataset_fingerprint``: the dataset's column-cache fingerprint (path or URI, shard names,
    sizes and modification times). Schedule settings (``ardnem_updates_per_iteration``, threads)
    do not change the update stream and are left out.
    """
    clip = config.grad_clip
    fields = {
        "format": STAGE1_FORMAT,
        "dataset": str(dataset_fingerprint),
        "ardnem_lr": float(config.ardnem_lr),
        "ardnem_updates": int(config.ardnem_updates),
        "ensemble_size": int(config.effective_ensemble_size),
        "reward_hidden": int(config.reward_hidden),
        "attention_hidden": int(config.attention_hidden),
        "weight_mode": str(config.weight_mode),
        "batch_size_episodes": int(config.batch_size_episodes),
        "ardnem_batch_timesteps": None if config.ardnem_batch_timesteps is None else int(config.ardnem_batch_timesteps),
        "ardnem_bootstrap": bool(config.ardnem_bootstrap),
        "optimizer": str(config.optimizer),
        "grad_clip": None if clip is None else float(clip),
        "grad_clip_by": str(config.grad_clip_by),
        "seed": int(config.seed),
        "num_learners": int(config.num_learners or 0),
        "num_gpus_per_learner": float(config.num_gpus_per_learner or 0),
    }
    precision = getattr(config, "precision", "fp32")
    if precision != "fp32":  # bf16 Stage I is another ARDNEM (fp32 entries keep their keys)
        fields["precision"] = str(precision)
    return fields


def make_key(fields: Dict[str, Any]) -> str:
    """``ardnem-<dataset folder>-<hash of the fields>`` (readable, safe as a folder/object name)."""
    digest = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:24]
    name = re.sub(r"[^A-Za-z0-9._-]", "_", str(fields.get("dataset", "")).rsplit("-", 1)[0])[:80]
    return f"ardnem-{name}-{digest}" if name else f"ardnem-{digest}"


# -- the entry's files ----------------------------------------------------------------------------
def _to_tree(obj: Any, arrays: Dict[str, np.ndarray]) -> Any:
    """JSON-able skeleton of a nested state (arrays moved to ``arrays``; int dict keys kept)."""
    if isinstance(obj, dict):
        return {"__dict__": [[_to_tree(k, arrays), _to_tree(v, arrays)] for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        return {"__list__" if isinstance(obj, list) else "__tuple__": [_to_tree(v, arrays) for v in obj]}
    if hasattr(obj, "detach") and hasattr(obj, "cpu"):  # a torch tensor
        obj = obj.detach().cpu().numpy()
    if isinstance(obj, np.ndarray) or isinstance(obj, np.generic):
        name = f"t{len(arrays)}"
        arrays[name] = np.asarray(obj)
        return {"__nd__": name}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"stage1 cache: cannot store a {type(obj).__name__} in an entry")


def _from_tree(node: Any, arrays) -> Any:
    if isinstance(node, dict):
        if "__dict__" in node:
            return {_from_tree(k, arrays): _from_tree(v, arrays) for k, v in node["__dict__"]}
        if "__list__" in node:
            return [_from_tree(v, arrays) for v in node["__list__"]]
        if "__tuple__" in node:
            return tuple(_from_tree(v, arrays) for v in node["__tuple__"])
        if "__nd__" in node:
            return np.array(arrays[node["__nd__"]])
    return node


def pack(payload: Dict[str, Any], fields: Dict[str, Any]) -> Dict[str, bytes]:
    """The entry's files: ``arrays.npz`` (weights, optimizer buffers, losses; no pickles) and
    ``meta.json`` (the key's fields, the optimizer state's structure, the RNG state)."""
    arrays: Dict[str, np.ndarray] = {}
    module_state = {k: np.asarray(v) for k, v in payload["module_state"].items()}
    meta = {
        "fields": fields,
        "module_keys": sorted(module_state),
        "optimizer_state": _to_tree(payload["optimizer_state"], arrays),
        "module_updates": int(payload["module_updates"]),
        "rng_state": payload["rng_state"],
    }
    for k, v in module_state.items():
        arrays[f"m.{k}"] = v
    arrays["losses"] = np.asarray(payload["losses"], np.float64)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return {ARRAYS_FILE: buf.getvalue(), META_FILE: json.dumps(meta, sort_keys=True).encode()}


def unpack(files: Dict[str, bytes]) -> Dict[str, Any]:
    meta = json.loads(files[META_FILE])
    with np.load(io.BytesIO(files[ARRAYS_FILE]), allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    return {"fields": meta["fields"],
            "module_state": {k: arrays[f"m.{k}"] for k in meta["module_keys"]},
            "optimizer_state": _from_tree(meta["optimizer_state"], arrays),
            "module_updates": int(meta["module_updates"]),
            "rng_state": meta["rng_state"],
            "losses": arrays["losses"].tolist()}


# -- one run's use of the store -------------------------------------------------------------------
class Stage1Cache:
    """The entry of one run's Stage I: :meth:`claim` at its first Stage I iteration (loads it, or
    takes the lock, or waits for the run that holds it), :meth:`publish` at its end."""

    def __init__(self, location: str, fields: Dict[str, Any], **store_kwargs):
        from rllib_sit.data.artifact_store import ArtifactStore

        self.location = location
        self.fields = fields
        self.key = make_key(fields)
        self.store = ArtifactStore(location, **store_kwargs)
        self.lease = None

    def claim(self, timeout_s: float, info: Optional[Dict[str, Any]] = None) -> Tuple[Optional[Dict[str, Any]], float]:
        """``(payload or None, seconds waited)``; None: train Stage I (holding the lock unless the
        wait timed out) and :meth:`publish`."""
        def report(waited, holder):
            logger.info("SIT Stage I cache: waiting %.0fs for %s (being trained by %s)", waited,
                        self.store.describe(self.key), {k: (holder or {}).get(k) for k in ("host", "pid", "info")})

        claim = self.store.claim(self.key, timeout_s=timeout_s, info=info, on_wait=report)
        if claim.timed_out:
            logger.warning("SIT Stage I cache: no entry %s after waiting %.0fs (stage1_cache_timeout_s); "
                           "training Stage I here", self.store.describe(self.key), claim.waited_s)
        self.lease = claim.lease
        return self._payload(claim.entry), claim.waited_s

    def lookup(self) -> Optional[Dict[str, Any]]:
        """The stored payload if an entry exists now (no lock, no waiting), else None."""
        return self._payload(self.store.get(self.key))

    def _payload(self, entry) -> Optional[Dict[str, Any]]:
        if entry is None:
            return None
        try:
            payload = unpack(entry.files)
        except (KeyError, ValueError, OSError) as e:
            logger.warning("SIT Stage I cache: entry %s is unreadable (%s); training Stage I here",
                           self.store.describe(self.key), e)
            return None
        if payload["fields"] != self.fields:
            logger.warning("SIT Stage I cache: entry %s was stored for other settings; training Stage I here",
                           self.store.describe(self.key))
            return None
        return payload

    def publish(self, payload: Dict[str, Any]) -> bool:
        """Store this run's Stage I (first writer wins) and release the lock; True if stored."""
        try:
            return self.store.put(self.key, pack(payload, self.fields),
                                  meta={"format": STAGE1_FORMAT, "fields": self.fields})
        finally:
            if self.lease is None:  # e.g. restored after a crash: the lock of our dead process may remain
                self.store.clear_dead_lock(self.key)
            self.release()

    def release(self) -> None:
        if self.lease is not None:
            self.lease.release()
            self.lease = None


def learner_value(results: Any, module_id: str, key: str) -> Optional[float]:
    """A learner metric out of ``learner_group.update``'s results (list of per-learner dicts of
    numbers or RLlib ``Stats``), or None."""
    items: List[Any] = results if isinstance(results, list) else [results]
    for r in items:
        try:
            v = r[module_id][key]
        except (KeyError, TypeError, IndexError):
            continue
        try:
            return float(v)  # a number, or RLlib's Stats (which converts to its reduced value)
        except (TypeError, ValueError):
            pass
        try:
            v = v.peek()
            return float(v[-1] if isinstance(v, (list, tuple)) else v)
        except (AttributeError, TypeError, ValueError, IndexError):
            continue
    return None
