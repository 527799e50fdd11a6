"""FacMAC trained naively on offline data (the SIT paper's "online algorithm without offline
correction" row for continuous actions; Peng et al. 2021)."""

from rllib_sit.algorithms.facmac.facmac import FACMAC, FACMACConfig

__all__ = ["FACMAC", "FACMACConfig"]
