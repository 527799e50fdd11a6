"""Vectorised NumPy sum tree (Schaul et al. 2016) for proportional sampling.

The tree is an implicit complete binary tree stored level by level in one float64 array of size
``2 * capacity`` (capacity rounded up to a power of two; node 1 is the root, leaves start at
``capacity``). Batched ``update`` and ``sample`` touch every level with one NumPy operation, so a
batch of B samples costs O(B log n) in a handful of vector ops instead of a Python loop.
"""

from __future__ import annotations

from typing import Dict

import numpy as np


class SumTree:
    def __init__(self, size: int):
        if size <= 0:
            raise ValueError(f"SumTree: size must be > 0, got {size}")
        self.size = int(size)
        self.capacity = 1 << max(0, (self.size - 1).bit_length())
        self.depth = self.capacity.bit_length() - 1
        self.nodes = np.zeros(2 * self.capacity, np.float64)

    @property
    def total(self) -> float:
        return float(self.nodes[1])

    def priorities(self) -> np.ndarray:
        return self.nodes[self.capacity:self.capacity + self.size].copy()

    def set_all(self, priorities: np.ndarray) -> None:
        """Set every leaf at once and rebuild all sums (O(n))."""
        p = np.asarray(priorities, np.float64)
        if p.shape != (self.size,):
            raise ValueError(f"SumTree.set_all: expected shape ({self.size},), got {p.shape}")
        if not np.all(np.isfinite(p)) or np.any(p < 0):
            raise ValueError("SumTree.set_all: priorities must be finite and >= 0")
        self.nodes[:] = 0.0
        self.nodes[self.capacity:self.capacity + self.size] = p
        lo = self.capacity
        while lo > 1:
            level = self.nodes[lo:2 * lo]
            self.nodes[lo // 2:lo] = level[0::2] + level[1::2]
            lo //= 2

    def update(self, indices: np.ndarray, priorities: np.ndarray) -> None:
        """Set leaves ``indices`` to ``priorities`` and refresh their ancestors (batched)."""
        idx = np.asarray(indices, np.int64)
        p = np.asarray(priorities, np.float64)
        if np.any(idx < 0) or np.any(idx >= self.size):
            raise IndexError(f"SumTree.update: indices out of range [0, {self.size})")
        if not np.all(np.isfinite(p)) or np.any(p < 0):
            raise ValueError("SumTree.update: priorities must be finite and >= 0")
        nodes = idx + self.capacity
        self.nodes[nodes] = p
        nodes = np.unique(nodes // 2)
        while nodes.size and nodes[0] >= 1:
            self.nodes[nodes] = self.nodes[2 * nodes] + self.nodes[2 * nodes + 1]
            if nodes[0] == 1:
                break
            nodes = np.unique(nodes // 2)

    def find(self, values: np.ndarray) -> np.ndarray:
        """Leaf index for each cumulative value in ``[0, total)`` (vectorised descent)."""
        v = np.asarray(values, np.float64).copy()
        node = np.ones(v.shape, np.int64)
        for _ in range(self.depth):
            left = 2 * node
            left_sum = self.nodes[left]
            go_right = v >= left_sum
            v = np.where(go_right, v - left_sum, v)
            node = np.where(go_right, left + 1, left)
        leaf = node - self.capacity
        # Float round-off can land on a zero-priority padding leaf; clamp into the real range.
        return np.minimum(leaf, self.size - 1)

    def sample(self, batch_size: int, rng: np.random.Generator) -> np.ndarray:
        """``batch_size`` leaf indices drawn i.i.d. with probability priority / total."""
        if self.total <= 0:
            raise ValueError("SumTree.sample: all priorities are zero")
        return self.find(rng.random(batch_size) * self.total)

    def sample_uniforms(self, u: np.ndarray) -> np.ndarray:
        """The leaves :meth:`sample` draws from the uniforms ``u`` in [0, 1) (any shape): ``sample(n, rng)``
        is ``sample_uniforms(rng.random(n))``, so several draws can share one vectorised descent."""
        if self.total <= 0:
            raise ValueError("SumTree.sample: all priorities are zero")
        u = np.asarray(u, np.float64)
        return self.find((u * self.total).reshape(-1)).reshape(u.shape)

    def get_state(self) -> Dict[str, np.ndarray]:
        return {"size": self.size, "leaves": self.priorities()}

    def set_state(self, state: Dict[str, np.ndarray]) -> None:
        if int(state["size"]) != self.size:
            raise ValueError(f"SumTree.set_state: size {state['size']} != {self.size}")
        self.set_all(state["leaves"])
