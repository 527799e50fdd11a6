"""QMIX trained naively on offline data (the SIT paper's "online algorithm without offline
correction" row for discrete actions; Rashid et al. 2018)."""

from rllib_sit.algorithms.qmix.qmix import QMIX, QMIXConfig

__all__ = ["QMIX", "QMIXConfig"]
