from rllib_sit.algorithms.omac.omac import OMAC, OMACConfig

__all__ = ["OMAC", "OMACConfig"]
