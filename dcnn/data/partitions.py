"""Splitting the training samples among agents, and encoding targets as model outputs.

Two partitions, both pure functions of ``(y, n_agents, seed)``:

* ``"iid"``: a seeded shuffle cut into ``n_agents`` nearly equal shards (sizes differ by at
  most one).
* ``"dirichlet"``: label skew (Hsu, Qi and Brown 2019, "Measuring the effects of
  non-identical data distribution for federated visual classification"). For every class
  ``c``, ``p_c ~ Dirichlet(beta * 1_n)`` and the shuffled samples of ``c`` are cut among the
  agents in the proportions ``p_c``. Small ``beta`` puts each class on few agents; as
  ``beta -> inf`` every agent gets its fair share of every class, as in ``"iid"``.
"""
from __future__ import annotations

import numbers

import numpy as np

from ..errors import DataError
from .datasets import TASKS, _did_you_mean

__all__ = ["PARTITIONS", "partition", "encode_targets", "describe_partition"]

PARTITIONS = ("iid", "dirichlet")
_MAX_DRAWS = 100  # seeded Dirichlet redraws before giving up on an agent left empty


def partition(y: np.ndarray, n_agents: int, *, kind: str = "iid", seed: int = 0,
              beta: float = 0.5, task: str = "multiclass") -> list[np.ndarray]:
    """Split the samples of ``y`` among ``n_agents``: one sorted int64 index array each.

    Every index is used exactly once and every agent gets at least one sample.

    >>> y = np.array([0, 0, 0, 1, 1, 1, 2, 2])
    >>> [len(p) for p in partition(y, 3, seed=0)]
    [3, 3, 2]
    >>> sorted(np.concatenate(partition(y, 3, kind="dirichlet", beta=1.0)).tolist())
    [0, 1, 2, 3, 4, 5, 6, 7]
    """
    y = np.asarray(y)
    _check_partition(y, n_agents, kind, seed, beta, task)
    rng = np.random.default_rng(seed)
    if kind == "iid":
        parts = np.array_split(rng.permutation(len(y)), n_agents)
    else:
        parts = _dirichlet(y, n_agents, beta, rng)
    return [np.sort(p).astype(np.int64) for p in parts]


def _dirichlet(y: np.ndarray, n: int, beta: float, rng: np.random.Generator):
    by_class = [np.flatnonzero(y == c) for c in np.unique(y)]
    for _ in range(_MAX_DRAWS):
        parts = _dirichlet_draw(by_class, n, beta, rng)
        if parts is not None and min(len(p) for p in parts) > 0:
            return parts
    raise DataError(f"dirichlet partition with beta {beta} left an agent without samples in "
                    f"{_MAX_DRAWS} seeded draws ({n} agents, {len(by_class)} classes, "
                    f"{sum(map(len, by_class))} samples); use a larger beta or fewer agents")


def _dirichlet_draw(by_class: list[np.ndarray], n: int, beta: float,
                    rng: np.random.Generator) -> list[np.ndarray] | None:
    shards: list[list[np.ndarray]] = [[] for _ in range(n)]
    for members in by_class:
        members = rng.permutation(members)
        # p_c ~ Dir(beta 1_n); agent i takes the i-th of the cuts at M_c * cumsum(p_c)
        p = rng.dirichlet(np.full(n, float(beta)))
        if not np.all(np.isfinite(p)):
            return None
        cuts = np.clip(np.round(np.cumsum(p)[:-1] * len(members)), 0, len(members))
        for shard, piece in zip(shards, np.split(members, cuts.astype(int))):
            shard.append(piece)
    return [np.concatenate(s) for s in shards]


def encode_targets(y: np.ndarray, *, task: str, n_classes: int) -> np.ndarray:
    """Targets as ``(M, O)`` float64 model outputs.

    Regression: ``y`` as ``(M, k)``; binary: ``(M, 1)`` of 0./1.; multiclass: one-hot
    ``(M, C)``.

    >>> encode_targets(np.array([2, 0]), task="multiclass", n_classes=3)
    array([[0., 0., 1.],
           [1., 0., 0.]])
    """
    y = np.asarray(y)
    if task not in TASKS:
        raise DataError(f"unknown task {task!r}{_did_you_mean(str(task), TASKS)}; use one of "
                        f"{', '.join(TASKS)}")
    if task == "regression":
        if y.ndim not in (1, 2):
            raise DataError(f"regression targets of shape {y.shape} are neither (M,) nor "
                            "(M, k); reshape them")
        return y.astype(np.float64).reshape(len(y), -1)
    want = "2" if task == "binary" else ">= 2"
    if not isinstance(n_classes, numbers.Integral) or n_classes < 2 \
            or (task == "binary" and n_classes != 2):
        raise DataError(f"n_classes {n_classes!r} does not fit task '{task}'; use {want}")
    labels = y.reshape(-1) if y.ndim == 2 and y.shape[1] == 1 else y
    if labels.ndim != 1 or len(labels) and (
            not np.all(labels == np.round(labels)) or labels.min() < 0
            or labels.max() >= n_classes):
        raise DataError(f"task '{task}' needs labels 0..{n_classes - 1} in one column, got "
                        f"shape {y.shape} with values {np.unique(labels)[:5].tolist()}; give "
                        "the labels of a classification Dataset")
    labels = labels.astype(np.int64)
    if task == "binary":
        return labels.astype(np.float64).reshape(-1, 1)
    return np.eye(n_classes)[labels]


def describe_partition(parts: list[np.ndarray], y: np.ndarray,
                       task: str = "multiclass") -> dict:
    """Shard sizes and, for classification, per-agent class counts and majority shares.

    >>> info = describe_partition([np.array([0, 1]), np.array([2])], np.array([0, 0, 1]))
    >>> info["sizes"], info["class_counts"], info["majority_share"]
    ([2, 1], [[2, 0], [0, 1]], [1.0, 1.0])
    """
    info: dict = {"n_agents": len(parts), "sizes": [int(len(p)) for p in parts]}
    if task == "regression":
        return info
    classes, labels = np.unique(np.asarray(y), return_inverse=True)
    counts = [np.bincount(labels[p], minlength=len(classes)) for p in parts]
    info["classes"] = classes.tolist()
    info["class_counts"] = [c.tolist() for c in counts]
    info["majority_share"] = [float(c.max() / max(c.sum(), 1)) for c in counts]
    return info


def _check_partition(y, n_agents, kind, seed, beta, task) -> None:
    if kind not in PARTITIONS:
        raise DataError(f"unknown partition {kind!r}{_did_you_mean(str(kind), PARTITIONS)}; "
                        f"use one of {', '.join(PARTITIONS)}")
    if task not in TASKS:
        raise DataError(f"unknown task {task!r}{_did_you_mean(str(task), TASKS)}; use one of "
                        f"{', '.join(TASKS)}")
    if not isinstance(n_agents, numbers.Integral) or isinstance(n_agents, bool) \
            or n_agents < 1:
        raise DataError(f"n_agents must be a positive integer, got {n_agents!r}")
    if not isinstance(seed, numbers.Integral) or isinstance(seed, bool) or seed < 0:
        raise DataError(f"seed must be a non-negative integer, got {seed!r}; use e.g. 0")
    if not isinstance(beta, numbers.Real) or isinstance(beta, bool) \
            or not 0 < beta < float("inf"):
        raise DataError(f"beta must be a positive finite number, got {beta!r}; use e.g. 0.5")
    if y.ndim == 0 or len(y) == 0:
        raise DataError(f"cannot partition {y.size} samples; give a non-empty target array")
    if n_agents > len(y):
        raise DataError(f"cannot give each of {n_agents} agents a sample from {len(y)} "
                        f"training samples; use at most {len(y)} agents or more data")
    if kind == "dirichlet":
        if task == "regression":
            raise DataError("partition 'dirichlet' skews class labels and needs a "
                            "classification task, not 'regression'; use partition 'iid'")
        if y.ndim != 1 or not np.all(y == np.round(y)):
            raise DataError(f"partition 'dirichlet' needs integer class labels in one column, "
                            f"got shape {y.shape}; give a classification Dataset's y_train")
