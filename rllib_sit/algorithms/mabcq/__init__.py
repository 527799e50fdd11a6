"""MABCQ: multi-agent BCQ with ICQ's linear value decomposition (SIT paper, Appendix B, Eq. 12)."""

from rllib_sit.algorithms.mabcq.mabcq import MABCQ, MABCQConfig

__all__ = ["MABCQ", "MABCQConfig"]
