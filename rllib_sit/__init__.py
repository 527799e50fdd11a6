"""rllib_sit: offline cooperative multi-agent RL (SIT and baselines) on Ray RLlib.

Importing the package (or anything in it, e.g. ``from rllib_sit.algorithms.sit import SITConfig``)
registers its algorithms with Ray Tune by name, so that ``tune.Tuner("SIT", param_space=config)``,
``ray.tune.registry.get_trainable_cls("SIT")`` and ``run: SIT`` in tuned-example YAML files
resolve; the names are registered without importing the algorithms (no torch at import time), Tune
imports a class the first time it resolves its name. The environments (``"smac:2s3z"``,
``"mpe:cn_3ls3l"``, ...) are registered by every algorithm's setup and by :func:`register_all`.
"""

from rllib_sit._version import __version__

__all__ = ["__version__", "register_all"]


def _register_algorithm_names() -> None:
    from rllib_sit.algorithms import register_algorithms_lazily

    try:
        register_algorithms_lazily()
    except ImportError:  # no Ray in this process (e.g. an exported policy's inference): no Tune to register with
        pass


def register_all() -> None:
    """Register envs and algorithms with Ray Tune (idempotent; called by the CLIs and configs)."""
    from rllib_sit.envs.registry import register_rllib_envs

    register_rllib_envs()
    try:
        from rllib_sit.algorithms import register_algorithms
    except ImportError:  # algorithms not built yet in this checkout
        return
    register_algorithms()


_register_algorithm_names()
