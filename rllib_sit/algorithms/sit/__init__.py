from rllib_sit.algorithms.sit.sit import SIT, SITConfig

__all__ = ["SIT", "SITConfig"]
