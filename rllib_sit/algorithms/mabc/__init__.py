"""MABC: multi-agent behaviour cloning per agent type (SIT paper, Appendix B, Eq. 11)."""

from rllib_sit.algorithms.mabc.mabc import MABC, MABCConfig

__all__ = ["MABC", "MABCConfig"]
