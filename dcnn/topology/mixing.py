"""Weight matrices of graphs and digraphs, their stochasticity checks and spectral gap.

Convention (the one used everywhere in dcnn): ``W`` is a float64 ``(n, n)`` array whose row
``i`` holds the weights agent ``i`` gives to what it receives, ``x_i <- sum_j W[i, j] x_j``,
self weight ``W[i, i]`` included. ``W[i, j] != 0`` only if ``i == j``, ``{i, j}`` is an edge
(undirected) or ``j -> i`` is an arc (directed).

The undirected rules (:data:`WEIGHT_RULES`) give symmetric, hence doubly stochastic, matrices.
The directed rules (:data:`DIRECTED_WEIGHT_RULES`) give column-stochastic matrices (each sender
splits its mass, what push-sum methods such as SONATA need) or row-stochastic ones (each
receiver averages); neither is doubly stochastic in general.
"""
from __future__ import annotations

import networkx as nx
import numpy as np

from ..errors import TopologyError
from ._checks import check_name
from .graphs import link_array

__all__ = ["WEIGHT_RULES", "DIRECTED_WEIGHT_RULES", "check_rule", "mixing_matrix",
           "weight_matrix", "metropolis_hastings", "max_degree",
           "uniform", "column_stochastic", "row_stochastic", "is_row_stochastic",
           "is_column_stochastic", "is_doubly_stochastic", "check_doubly_stochastic",
           "check_column_stochastic", "WEIGHT_KINDS", "check_weights", "spectral_gap"]

WEIGHT_RULES: tuple[str, ...] = ("metropolis_hastings", "max_degree", "uniform")
DIRECTED_WEIGHT_RULES: tuple[str, ...] = ("column_stochastic", "row_stochastic")


def check_rule(rule, *, directed: bool) -> str:
    """``rule`` if it is a weight rule for this kind of graph; else a one-line error."""
    rule = check_name("weight rule", rule, WEIGHT_RULES + DIRECTED_WEIGHT_RULES)
    if directed and rule in WEIGHT_RULES:
        raise TopologyError(f"weight rule {rule!r} needs an undirected graph and this graph "
                            f"is directed; use weights 'column_stochastic' (or "
                            f"'row_stochastic')")
    if not directed and rule in DIRECTED_WEIGHT_RULES:
        raise TopologyError(f"weight rule {rule!r} is for directed graphs; use weights "
                            f"'metropolis_hastings' here, or a directed graph such as "
                            f"'directed_ring'")
    return rule


def weight_matrix(n: int, edges: np.ndarray, rule: str) -> np.ndarray:
    """``W`` of the graph on ``0..n-1`` with the ``(m, 2)`` link array ``edges`` (no loops, no
    duplicates; see :func:`~dcnn.topology.graphs.link_array`) under ``rule``.

    The rules of :data:`WEIGHT_RULES` read ``edges`` as undirected edges:
    ``metropolis_hastings``: ``W_ij = 1 / (1 + max(deg_i, deg_j))`` on edges;
    ``max_degree``: ``W_ij = 1 / (1 + max_k deg_k)`` on edges; in both the diagonal fills the
    row to 1. ``uniform``: ``W_ij = 1 / (deg_i + 1)`` on the closed neighbourhood of ``i``,
    only for regular graphs (where it is doubly stochastic).

    The rules of :data:`DIRECTED_WEIGHT_RULES` read a row ``(j, i)`` as the arc ``j -> i``
    (``i`` receives from ``j``). ``column_stochastic``: ``W_ij = 1 / (outdeg_j + 1)`` for
    ``i == j`` and every arc ``j -> i``: each sender splits its mass uniformly among its
    out-neighbours and itself. ``row_stochastic``: ``W_ij = 1 / (indeg_i + 1)`` for ``i == j``
    and every arc ``j -> i``: each receiver averages its in-neighbours and itself.
    """
    rule = check_name("weight rule", rule, WEIGHT_RULES + DIRECTED_WEIGHT_RULES)
    edges = np.asarray(edges, dtype=np.int64).reshape(-1, 2)
    if rule in DIRECTED_WEIGHT_RULES:
        return _directed_weights(n, edges, rule)
    return _undirected_weights(n, edges, rule)


def _undirected_weights(n: int, edges: np.ndarray, rule: str) -> np.ndarray:
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


def _directed_weights(n: int, arcs: np.ndarray, rule: str) -> np.ndarray:
    j, i = arcs[:, 0], arcs[:, 1]
    W = np.zeros((n, n))
    if rule == "column_stochastic":
        # W_ij = 1 / (outdeg_j + 1)
        share = 1.0 / (np.bincount(j, minlength=n) + 1.0)
        W[i, j] = share[j]
    else:
        # W_ij = 1 / (indeg_i + 1)
        share = 1.0 / (np.bincount(i, minlength=n) + 1.0)
        W[i, j] = share[i]
    np.fill_diagonal(W, share)
    return W


def mixing_matrix(G: nx.Graph, rule: str = "metropolis_hastings") -> np.ndarray:
    """``W`` of the graph ``G`` (nodes ``0..n-1``) under ``rule``.

    An undirected ``G`` takes a rule of :data:`WEIGHT_RULES`, a :class:`networkx.DiGraph` one
    of :data:`DIRECTED_WEIGHT_RULES` (its arc ``j -> i`` puts weight on ``W[i, j]``).

    >>> mixing_matrix(nx.path_graph(3))
    array([[0.66666667, 0.33333333, 0.        ],
           [0.33333333, 0.33333333, 0.33333333],
           [0.        , 0.33333333, 0.66666667]])
    >>> mixing_matrix(nx.DiGraph([(0, 1), (0, 2), (1, 0), (2, 0)]), "column_stochastic")
    array([[0.33333333, 0.5       , 0.5       ],
           [0.33333333, 0.5       , 0.        ],
           [0.33333333, 0.        , 0.5       ]])
    """
    rule = check_rule(rule, directed=G.is_directed())
    return weight_matrix(G.number_of_nodes(), link_array(G), rule)


def metropolis_hastings(G: nx.Graph) -> np.ndarray:
    """``W_ij = 1 / (1 + max(deg_i, deg_j))`` on edges, ``W_ii = 1 - sum_{j != i} W_ij``."""
    return mixing_matrix(G, "metropolis_hastings")


def max_degree(G: nx.Graph) -> np.ndarray:
    """``W_ij = 1 / (1 + max degree of G)`` on edges, the diagonal fills each row to 1."""
    return mixing_matrix(G, "max_degree")


def uniform(G: nx.Graph) -> np.ndarray:
    """``W_ij = 1 / (deg + 1)`` on closed neighbourhoods of a regular ``G`` (else an error)."""
    return mixing_matrix(G, "uniform")


def column_stochastic(G: nx.DiGraph) -> np.ndarray:
    """``W_ij = 1 / (outdeg_j + 1)`` on the arcs ``j -> i`` of ``G`` and on the diagonal."""
    return mixing_matrix(G, "column_stochastic")


def row_stochastic(G: nx.DiGraph) -> np.ndarray:
    """``W_ij = 1 / (indeg_i + 1)`` on the arcs ``j -> i`` of ``G`` and on the diagonal."""
    return mixing_matrix(G, "row_stochastic")


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


def _check_sums(W: np.ndarray, tol: float, axes: tuple, kind: str, fix: str,
                name: str) -> np.ndarray:
    """``W`` if its sums along ``axes`` (1: rows, 0: columns) are 1 within ``tol``; else a
    one-line error naming the first offending row or column, ``kind`` and the ``fix``."""
    for axis in axes:
        sums = W.sum(axis=axis)
        off = np.flatnonzero(np.abs(sums - 1.0) > tol)
        if len(off):
            k = off[0]
            raise TopologyError(f"{name} is not {kind}: {'row' if axis else 'column'} {k} "
                                f"sums to {sums[k]:.12g}, not 1; use {fix}")
    return W


def check_doubly_stochastic(W, tol: float = 1e-10) -> np.ndarray:
    """Return ``W`` as float64 if doubly stochastic with positive self weights (see
    :func:`check_weights`); else name the first offending entry."""
    return check_weights(W, kind="doubly", tol=tol)


def check_column_stochastic(W, tol: float = 1e-10) -> np.ndarray:
    """Return ``W`` as float64 if column stochastic (see :func:`check_weights`; self weights
    are left to the caller: push-sum names them in its own words); else name the first
    offending entry."""
    return check_weights(W, kind="column", tol=tol, self_loops=False)


#: What :func:`check_weights` can demand: the sums that must be 1.
WEIGHT_KINDS: tuple[str, ...] = ("doubly", "column", "row")
_KIND_AXES = {"doubly": ((1, 0), "doubly stochastic"), "column": ((0,), "column stochastic"),
              "row": ((1,), "row stochastic")}


def check_weights(W, *, n: int | None = None, kind: str = "doubly", tol: float = 1e-10,
                  self_loops: bool = True, name: str = "weight matrix") -> np.ndarray:
    """``W`` as a float64 array if it is a usable weight matrix; else a one-line
    :class:`TopologyError` naming the first fault and the fix.

    Checked in order: numbers in a square 2-D array, of shape ``(n, n)`` if ``n`` is given
    (the number of agents), all finite, none negative, a positive self weight ``W[i, i]`` for
    every agent if ``self_loops`` (NEXT and push-sum need it: an agent never drops its own
    value; ``name`` names the matrix in the message), and unit row
    and/or column sums as ``kind`` (:data:`WEIGHT_KINDS`) demands: ``"doubly"`` for the
    undirected methods, ``"column"`` for push-sum, ``"row"`` for averaging receivers.

    >>> check_weights([[0.5, 0.5], [0.5, 0.5]], n=2).shape
    (2, 2)
    """
    kind = check_name("weight kind", kind, WEIGHT_KINDS)
    try:
        W = np.asarray(W, dtype=np.float64)
    except (TypeError, ValueError):
        raise TopologyError(f"{name} must be a square array of numbers, got "
                            f"{type(W).__name__}; give an (n, n) float array") from None
    if W.ndim != 2 or W.shape[0] != W.shape[1]:
        raise TopologyError(f"{name} must be square, got shape {W.shape}; give an (n, n) array "
                            f"(row i = what agent i receives)")
    if n is not None and W.shape[0] != n:
        raise TopologyError(f"{name} has shape {W.shape} for {n} agents; give a {n} x {n} "
                            f"array, one row and column per agent")
    bad = np.argwhere(~np.isfinite(W))
    if len(bad):
        i, j = bad[0]
        raise TopologyError(f"{name} has a non-finite entry W[{i}, {j}] = {W[i, j]}; give "
                            f"finite weights")
    fix = {"doubly": "a rule such as 'metropolis_hastings'",
           "column": "weights 'column_stochastic' (or a doubly stochastic rule on an "
                     "undirected graph)",
           "row": "weights 'row_stochastic'"}[kind]
    bad = np.argwhere(W < -tol)
    if len(bad):
        i, j = bad[0]
        raise TopologyError(f"{name} has a negative entry W[{i}, {j}] = {W[i, j]:.3g}; "
                            f"weights must be >= 0: use {fix}")
    zero = np.flatnonzero(np.diagonal(W) <= tol) if self_loops else ()
    if len(zero):
        i = zero[0]
        raise TopologyError(f"{name} has no self loop at agent {i} (W[{i}, {i}] = "
                            f"{W[i, i]:.3g}); every agent needs a positive weight on its own "
                            f"value: use {fix}")
    axes, what = _KIND_AXES[kind]
    return _check_sums(W, tol, axes, what, fix, name)


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
