"""rllib_sit: offline cooperative multi-agent RL (SIT and baselines) on Ray RLlib.

Importing the package registers its environments (``"smac:2s3z"``, ``"mpe:cn_3ls3l"``, ...) and
algorithms (``SIT``, ...) with Ray Tune so that ``config.environment("smac:2s3z")`` and
``run: SIT`` in tuned-example YAML files resolve.
"""

from rllib_sit._version import __version__

__all__ = ["__version__", "register_all"]


def register_all() -> None:
    """Register envs and algorithms with Ray Tune (idempotent; called by the CLIs and configs)."""
    from rllib_sit.envs.registry import register_rllib_envs

    register_rllib_envs()
    try:
        from rllib_sit.algorithms import register_algorithms
    except ImportError:  # algorithms not built yet in this checkout
        return
    register_algorithms()
