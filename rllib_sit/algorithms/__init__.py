"""Offline MARL algorithms of the package, registered with Ray Tune by name (``run: SIT``,
``tune.Tuner("SIT", ...)``, ``get_trainable_cls("SIT")``).

``import rllib_sit`` (which importing any config class does first) calls
:func:`register_algorithms_lazily`: every name below is registered without importing its module
(no torch, no RLlib at import time); Tune imports the class the first time it resolves the name.
:func:`register_algorithms` registers the imported classes themselves (what the CLIs call).
"""

from __future__ import annotations

import importlib
from typing import Tuple

# name -> (module, class); a registry dict, not an if/elif chain.
ALGORITHMS = {
    "SIT": ("rllib_sit.algorithms.sit.sit", "SIT"),
    "MABC": ("rllib_sit.algorithms.mabc.mabc", "MABC"),
    "MABCQ": ("rllib_sit.algorithms.mabcq.mabcq", "MABCQ"),
    "QMIX": ("rllib_sit.algorithms.qmix.qmix", "QMIX"),
    "FACMAC": ("rllib_sit.algorithms.facmac.facmac", "FACMAC"),
    "ICQ": ("rllib_sit.algorithms.icq.icq", "ICQ"),
    "MACQL": ("rllib_sit.algorithms.macql.macql", "MACQL"),
    "OMAC": ("rllib_sit.algorithms.omac.omac", "OMAC"),
    "VDTN_BCQ": ("rllib_sit.algorithms.vdtn.vdtn", "VDTN_BCQ"),
    "VDTN_CQL": ("rllib_sit.algorithms.vdtn.vdtn", "VDTN_CQL"),
    "VDTN_TD3BC": ("rllib_sit.algorithms.vdtn.vdtn", "VDTN_TD3BC"),
}


def algorithm_class(name: str):
    """The algorithm class registered as ``name`` (imports its module)."""
    module, cls = ALGORITHMS[name]
    return getattr(importlib.import_module(module), cls)


class _ClassByName:
    """Stands in for an algorithm class in Tune's registry: it pickles to "import ``module``, take
    ``cls``", so Tune's registry (which stores pickled values and unpickles them on lookup, on the
    driver and on every worker) hands out the real class, imported on first lookup only."""

    def __init__(self, module: str, cls: str):
        self.module, self.cls = module, cls

    def __reduce__(self) -> Tuple:
        return _import_class, (self.module, self.cls)


def _import_class(module: str, cls: str):
    return getattr(importlib.import_module(module), cls)


def register_algorithms_lazily() -> None:
    """Register every name of :data:`ALGORITHMS` with Tune without importing the algorithms.

    Tune's registry keeps pickled values (flushed to the cluster's KV store at ``ray.init``); the
    value registered here unpickles to the class. Registered again after every later ``ray.init``
    (a new cluster's store is empty), as RLlib re-registers its own names when Tune misses one.
    """
    import ray
    from ray.tune.registry import TRAINABLE_CLASS, _global_registry

    for name, (module, cls) in ALGORITHMS.items():
        _global_registry.register(TRAINABLE_CLASS, name, _ClassByName(module, cls))
    hooks = ray._private.worker._post_init_hooks
    if register_algorithms_lazily not in hooks:
        hooks.append(register_algorithms_lazily)


def register_algorithms() -> None:
    """``register_trainable`` every algorithm class (idempotent) so Tune resolves ``run: SIT``."""
    from ray.tune.registry import register_trainable

    for name in ALGORITHMS:
        register_trainable(name, algorithm_class(name))
