"""Weight matrices of undirected graphs, their stochasticity checks and spectral gap.

Convention (the one used everywhere in dcnn): ``W`` is a float64 ``(n, n)`` array whose row
``i`` holds the weights agent ``i`` gives to what it receives, ``x_i <- sum_j W[i, j] x_j``,
self weight ``W[i, i]`` included. ``W[i, j] != 0`` only if ``i == j`` or ``{i, j}`` is an edge.
All rules here give symmetric matrices, hence doubly stochastic ones where the rows sum to 1.
"""
from __future__ import annotations

import networkx as nx
import numpy as np

from ..errors import TopologyError
from .graphs import check_name, edge_array

__all__ = ["WEIGHT_RULES", "mixing_matrix", "weights_from_edges", "metropolis_hastings",
           "max_degree", "uniform", "is_row_stochastic", "is_column_stochastic",
           "is_doubly_stochastic", "check_doubly_stochastic", "spectral_gap"]

WEIGHT_RULES: tuple[str, ...] = ("metropolis_hastings", "max_degree", "uniform")


def weights_from_edges(n: int, edges: np.ndarray, rule: str = "metropolis_hastings"
                       ) -> np.ndarray:
    """``W`` of the graph on ``0..n-1`` with the ``(m, 2)`` edge array ``edges`` (no loops).

    ``metropolis_hastings``: ``W_ij = 1 / (1 + max(deg_i, deg_j))`` on edges;
    ``max_degree``: ``W_ij = 1 / (1 + max_k deg_k)`` on edges; in both the diagonal fills the
    row to 1. ``uniform``: ``W_ij = 1 / (deg_i + 1)`` on the closed neighbourhood of ``i``,
    only for regular graphs (where it is doubly stochastic).
    """
    rule = check_name("weight rule", rule, WEIGHT_RULES)
    edges = np.asarray(edges, dtype=np.int64).reshape(-1, 2)
    i, j = edges[:, 0], edges[:, 1]
    deg = np.bincount(edges.ravel(), minlength=n)
    W = np.zeros((n, n))
    if rule == "uniform":
        if n and deg.min() != deg.max():
            raise TopologyError(f"weight rule 'uniform' needs a regular graph, got degrees "
                                f"{deg.min()}..{deg.max()}; use weights 'metropolis_hastings'")
        d = int(deg[0]) if n else 0
        W[i, j] = W[j, i] = 1.0 / (d + 1)
        np.fill_diagonal(W, 1.0 / (d + 1))
        return W
    if rule == "metropolis_hastings":
        w = 1.0 / (1.0 + np.maximum(deg[i], deg[j]))
    else:
        w = np.full(len(edges), 1.0 / (1.0 + (deg.max() if n else 0)))
    W[i, j] = W[j, i] = w
    # W_ii = 1 - sum_{j != i} W_ij
    np.fill_diagonal(W, 1.0 - W.sum(axis=1))
    return W


def mixing_matrix(G: nx.Graph, rule: str = "metropolis_hastings") -> np.ndarray:
    """``W`` of the undirected graph ``G`` (nodes ``0..n-1``) under ``rule``.

    >>> mixing_matrix(nx.path_graph(3))
    array([[0.66666667, 0.33333333, 0.        ],
           [0.33333333, 0.33333333, 0.33333333],
           [0.        , 0.33333333, 0.66666667]])
    """
    rule = check_name("weight rule", rule, WEIGHT_RULES)
    return weights_from_edges(G.number_of_nodes(), edge_array(G), rule)


def metropolis_hastings(G: nx.Graph) -> np.ndarray:
    """``W_ij = 1 / (1 + max(deg_i, deg_j))`` on edges, ``W_ii = 1 - sum_{j != i} W_ij``."""
    return mixing_matrix(G, "metropolis_hastings")


def max_degree(G: nx.Graph) -> np.ndarray:
    """``W_ij = 1 / (1 + max degree of G)`` on edges, the diagonal fills each row to 1."""
    return mixing_matrix(G, "max_degree")


def uniform(G: nx.Graph) -> np.ndarray:
    """``W_ij = 1 / (deg + 1)`` on closed neighbourhoods of a regular ``G`` (else an error)."""
    return mixing_matrix(G, "uniform")


def _square(W) -> np.ndarray:
    W = np.asarray(W, dtype=np.float64)
    if W.ndim != 2 or W.shape[0] != W.shape[1]:
        raise TopologyError(f"a weight matrix must be square, got shape {W.shape}")
    return W


def is_row_stochastic(W, tol: float = 1e-12) -> bool:
    """Nonnegative entries and every row summing to 1 (within ``tol``)."""
    W = _square(W)
    return bool((W >= -tol).all() and np.allclose(W.sum(axis=1), 1.0, rtol=0, atol=tol))


def is_column_stochastic(W, tol: float = 1e-12) -> bool:
    """Nonnegative entries and every column summing to 1 (within ``tol``)."""
    return is_row_stochastic(_square(W).T, tol)


def is_doubly_stochastic(W, tol: float = 1e-12) -> bool:
    """Row and column stochastic."""
    return is_row_stochastic(W, tol) and is_column_stochastic(W, tol)


def check_doubly_stochastic(W, tol: float = 1e-10) -> np.ndarray:
    """Return ``W`` as float64 if doubly stochastic; else name the first offending entry."""
    W = _square(W)
    bad = np.argwhere(W < -tol)
    if len(bad):
        i, j = bad[0]
        raise TopologyError(f"weight matrix has a negative entry W[{i}, {j}] = {W[i, j]:.3g}; "
                            f"use a rule such as 'metropolis_hastings'")
    for axis, what in ((1, "row"), (0, "column")):
        sums = W.sum(axis=axis)
        off = np.flatnonzero(np.abs(sums - 1.0) > tol)
        if len(off):
            k = off[0]
            raise TopologyError(f"weight matrix is not doubly stochastic: {what} {k} sums to "
                                f"{sums[k]:.12g}, not 1; use a rule such as "
                                f"'metropolis_hastings'")
    return W


def spectral_gap(W) -> float:
    """``1 - |lambda_2(W)|``, with ``|lambda_2|`` the second largest eigenvalue modulus.

    Close to 1: fast mixing; 0: a disconnected graph. One agent has gap 1 by convention.
    """
    W = _square(W)
    if W.shape[0] < 2:
        return 1.0
    ev = np.linalg.eigvalsh(W) if np.array_equal(W, W.T) else np.linalg.eigvals(W)
    moduli = np.sort(np.abs(ev))[::-1]
    return float(1.0 - moduli[1])
