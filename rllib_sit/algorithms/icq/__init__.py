"""ICQ: implicit constraint Q-learning (Yang et al. 2021; SIT paper Appendix B, Eq. 14)."""

from rllib_sit.algorithms.icq.icq import ICQ, ICQConfig

__all__ = ["ICQ", "ICQConfig"]
