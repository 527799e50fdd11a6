"""MACQL: multi-agent conservative Q-learning on ICQ's value decomposition (SIT paper, Appendix B, Eq. 13)."""

from rllib_sit.algorithms.macql.macql import MACQL, MACQLConfig

__all__ = ["MACQL", "MACQLConfig"]
