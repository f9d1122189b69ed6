"""Partitions among agents (iid, dirichlet label skew), target encoding and the summary."""
import importlib
import doctest

import numpy as np
import pytest

from dcnn.data import PARTITIONS, describe_partition, encode_targets, load_dataset, partition
from dcnn.errors import DataError

from functools import partial

from conftest import error_of as _error_of

error_of = partial(_error_of, kind=DataError)  # the data layer raises DataError

Y = np.repeat(np.arange(10), 100)          # 10 balanced classes, 1000 samples


def assert_cover(parts, n):
    for p in parts:
        assert p.dtype == np.int64 and len(p) > 0 and np.all(np.diff(p) > 0)
    np.testing.assert_array_equal(np.sort(np.concatenate(parts)), np.arange(n))


@pytest.mark.parametrize("kind", PARTITIONS)
@pytest.mark.parametrize("n_agents", [1, 7, 20])
def test_disjoint_cover_and_seeded(kind, n_agents):
    parts = partition(Y, n_agents, kind=kind, seed=4)
    assert len(parts) == n_agents
    assert_cover(parts, len(Y))
    again = partition(Y, n_agents, kind=kind, seed=4)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again))
    if n_agents > 1:
        other = partition(Y, n_agents, kind=kind, seed=5)
        assert not all(np.array_equal(a, b) for a, b in zip(parts, other))


@pytest.mark.parametrize("n, n_agents", [(1000, 7), (13, 13), (10, 3)])
def test_iid_sizes_differ_by_at_most_one(n, n_agents):
    sizes = [len(p) for p in partition(np.zeros(n), n_agents, task="regression")]
    assert max(sizes) - min(sizes) <= 1 and sum(sizes) == n


def test_iid_takes_two_dimensional_regression_targets():
    assert_cover(partition(np.zeros((9, 2)), 3, task="regression"), 9)


def test_dirichlet_small_beta_is_skewed():
    parts = partition(Y, 10, kind="dirichlet", beta=0.1, seed=0)
    shares = describe_partition(parts, Y)["majority_share"]
    assert max(shares) > 0.5
    iid = describe_partition(partition(Y, 10, seed=0), Y)["majority_share"]
    assert np.mean(shares) > 2 * np.mean(iid)


def test_dirichlet_huge_beta_is_close_to_iid():
    parts = partition(Y, 10, kind="dirichlet", beta=1e6, seed=0)
    info = describe_partition(parts, Y)
    assert max(info["sizes"]) - min(info["sizes"]) <= 10
    counts = np.array(info["class_counts"])
    assert np.abs(counts - 10).max() <= 1


def test_dirichlet_on_a_real_dataset():
    ds = load_dataset("digits")
    parts = partition(ds.y_train, 8, kind="dirichlet", beta=0.5, seed=1, task=ds.task)
    assert_cover(parts, ds.n_train)


def test_partition_errors():
    error_of(lambda: partition(np.zeros(5), 6), "6 agents", "5 training samples",
             "at most 5 agents")
    error_of(lambda: partition(np.zeros(50), 3, kind="dirichlet", task="regression"),
             "'iid'")
    error_of(lambda: partition(np.repeat([0, 1], 100), 50, kind="dirichlet", beta=1e-3),
             "beta 0.001", "larger beta or fewer agents")
    error_of(lambda: partition(Y, 3, kind="dirichelt"), "did you mean 'dirichlet'")
    error_of(lambda: partition(Y, 0), "n_agents", "0")
    error_of(lambda: partition(Y, 3, kind="dirichlet", beta=0), "beta", "0")
    error_of(lambda: partition(Y, 3, seed=-2), "seed", "-2")
    error_of(lambda: partition(Y, 3, task="classification"), "'classification'")
    error_of(lambda: partition(np.linspace(0, 1, 10), 2, kind="dirichlet"), "integer class")


def test_encode_targets():
    y = np.array([2, 0, 1, 2])
    onehot = encode_targets(y, task="multiclass", n_classes=3)
    assert onehot.shape == (4, 3) and onehot.dtype == np.float64
    np.testing.assert_array_equal(onehot.sum(1), 1)
    np.testing.assert_array_equal(onehot.argmax(1), y)
    binary = encode_targets(np.array([1, 0, 1]), task="binary", n_classes=2)
    np.testing.assert_array_equal(binary, [[1.0], [0.0], [1.0]])
    reg = encode_targets(np.array([0.5, -1.0]), task="regression", n_classes=0)
    np.testing.assert_array_equal(reg, [[0.5], [-1.0]])
    assert encode_targets(np.zeros((5, 2)), task="regression", n_classes=0).shape == (5, 2)
    ds = load_dataset("wine")
    assert encode_targets(ds.y_test, task=ds.task, n_classes=ds.n_classes).shape == \
        (ds.n_test, ds.n_outputs)


def test_encode_targets_errors():
    error_of(lambda: encode_targets(np.array([0, 3]), task="multiclass", n_classes=3), "0..2")
    error_of(lambda: encode_targets(np.array([0, 1]), task="binary", n_classes=3), "n_classes 3")
    error_of(lambda: encode_targets(np.array([0.5]), task="binary", n_classes=2), "0..1")
    error_of(lambda: encode_targets(np.array([0]), task="ranking", n_classes=2), "'ranking'")


def test_describe_partition():
    y = np.array([5, 5, 7, 7, 7])
    info = describe_partition([np.array([0, 1, 2]), np.array([3, 4])], y, "binary")
    assert info == {"n_agents": 2, "sizes": [3, 2], "classes": [5, 7],
                    "class_counts": [[2, 1], [0, 2]], "majority_share": [2 / 3, 1.0]}
    assert describe_partition([np.array([0])], np.zeros(1), "regression") == \
        {"n_agents": 1, "sizes": [1]}


@pytest.mark.parametrize("module", ["datasets", "files", "partitions"])
def test_docstring_examples(module):
    result = doctest.testmod(importlib.import_module(f"dcnn.data.{module}"))
    assert result.failed == 0
