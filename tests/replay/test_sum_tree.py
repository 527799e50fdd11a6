"""Sum tree: totals, batched updates, and sampling frequencies proportional to priorities."""

import numpy as np
import pytest
from scipy import stats

from rllib_sit.replay.sum_tree import SumTree


def test_total_and_prefix_sums_after_set_and_update():
    tree = SumTree(5)
    tree.set_all(np.array([1.0, 2.0, 3.0, 4.0, 5.0]))
    assert tree.total == pytest.approx(15.0)
    tree.update(np.array([0, 4]), np.array([10.0, 0.0]))
    assert tree.total == pytest.approx(10 + 2 + 3 + 4)
    np.testing.assert_allclose(tree.priorities(), [10, 2, 3, 4, 0])
    # find(): cumulative value -> leaf
    np.testing.assert_array_equal(tree.find(np.array([0.0, 9.99, 10.0, 12.5, 18.9])), [0, 0, 1, 2, 3])


def test_sampling_frequencies_match_priorities_chi_square():
    rng = np.random.default_rng(0)
    p = np.array([0.5, 1.0, 2.0, 4.0, 8.0, 0.0, 16.0])
    tree = SumTree(len(p))
    tree.set_all(p)
    n = 200_000
    idx = tree.sample(n, rng)
    counts = np.bincount(idx, minlength=len(p))
    assert counts[5] == 0, "a zero-priority leaf must never be sampled"
    nz = p > 0
    expected = n * p[nz] / p.sum()
    chi2, pval = stats.chisquare(counts[nz], expected)
    assert pval > 0.001, (counts, expected, chi2)


def test_invalid_input_is_rejected():
    tree = SumTree(3)
    with pytest.raises(ValueError, match="shape"):
        tree.set_all(np.ones(4))
    with pytest.raises(ValueError, match="finite"):
        tree.set_all(np.array([1.0, np.nan, 1.0]))
    with pytest.raises(IndexError):
        tree.update(np.array([3]), np.array([1.0]))


def test_state_round_trip():
    tree = SumTree(6)
    tree.set_all(np.arange(6.0))
    other = SumTree(6)
    other.set_state(tree.get_state())
    np.testing.assert_allclose(other.nodes, tree.nodes)
