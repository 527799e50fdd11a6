"""Replay structures: a vectorised NumPy sum tree and SIT's DPER Ray actor (type-wise buffers)."""

from rllib_sit.replay.sum_tree import SumTree

__all__ = ["SumTree"]
