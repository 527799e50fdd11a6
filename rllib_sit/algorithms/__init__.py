"""Offline MARL algorithms of the package, registered with Ray Tune by name (``run: SIT``)."""

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


def register_algorithms() -> None:
    """``register_trainable`` every algorithm (idempotent) so Tune resolves ``run: SIT``."""
    import importlib

    from ray.tune.registry import register_trainable

    for name, (module, cls) in ALGORITHMS.items():
        register_trainable(name, getattr(importlib.import_module(module), cls))
