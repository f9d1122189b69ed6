"""Seeded static graphs on agents ``0..n-1``.

Every generator is a pure function of ``(name, n, seed, params)``: the same call gives the
same undirected :class:`networkx.Graph` (nodes ``0..n-1``, no self loops) on every process,
without touching a global random state. Random generators are redrawn, with seeds derived
from ``seed``, until the graph is connected.

Graphs are also handled as *edge arrays*: ``int64`` arrays of shape ``(m, 2)`` with
``i < j`` in each row, rows sorted; :func:`edge_array` converts a graph to one.
"""
from __future__ import annotations

import difflib
import functools
import math
import operator
from typing import Any

import networkx as nx
import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from ..errors import TopologyError

__all__ = ["GRAPHS", "GRAPH_PARAMS", "make_graph", "edge_array", "from_edges", "is_connected"]

#: Parameters each generator accepts (all optional).
GRAPH_PARAMS: dict[str, tuple[str, ...]] = {
    "ring": (), "path": (), "star": (), "complete": (), "torus": ("rows",),
    "erdos_renyi": ("p",), "geometric": ("radius",), "small_world": ("k", "p_rewire"),
    "exponential": (),
}
GRAPHS: tuple[str, ...] = tuple(GRAPH_PARAMS)

_MAX_TRIES = 1000
_MIN_N = {"complete": 1, "small_world": 3}
_TAGS = {"erdos_renyi": 1, "geometric": 2, "small_world": 3}  # separate seed streams


# ---------------------------------------------------------------- validation helpers
def check_name(kind: str, name: Any, valid: tuple[str, ...]) -> str:
    """Return ``name`` if it is in ``valid``; else a one-line error with the closest name."""
    if isinstance(name, str) and name in valid:
        return name
    close = difflib.get_close_matches(str(name), valid, n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    raise TopologyError(f"{kind} {name!r} is unknown; {hint}choose one of: {', '.join(valid)}")


def check_params(what: str, params: dict, valid: tuple[str, ...]) -> None:
    """Refuse parameters not in ``valid``, naming the closest valid one."""
    for key in params:
        if key not in valid:
            close = difflib.get_close_matches(key, valid, n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            allowed = ", ".join(valid) if valid else "none"
            raise TopologyError(f"{what} takes no parameter '{key}'; {hint}"
                                f"valid parameters: {allowed}")


def check_int(name: str, value: Any, *, minimum: int) -> int:
    """``value`` as an int ``>= minimum``, or a one-line error."""
    try:
        if isinstance(value, bool):
            raise TypeError
        out = operator.index(value)
    except TypeError:
        raise TopologyError(f"{name} must be an integer >= {minimum}, got {value!r}") from None
    if out < minimum:
        raise TopologyError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return out


def check_prob(name: str, value: Any, *, low_open: bool, high_open: bool) -> float:
    """``value`` as a float in the interval the flags describe, or a one-line error."""
    lo, hi = ("(" if low_open else "["), (")" if high_open else "]")
    try:
        if isinstance(value, bool):
            raise TypeError
        v = float(value)
    except (TypeError, ValueError):
        raise TopologyError(f"{name} must be a number in {lo}0, 1{hi}, got {value!r}") from None
    ok = (v > 0 if low_open else v >= 0) and (v < 1 if high_open else v <= 1)
    if not ok:
        raise TopologyError(f"{name} = {value!r} is outside {lo}0, 1{hi}; "
                            f"choose {name} in {lo}0, 1{hi}")
    return v


def derived_seed(seed: int, *stream: int) -> int:
    """A 32-bit seed for networkx, derived from ``seed`` and a stream of integers."""
    return int(np.random.default_rng([seed, *stream]).integers(2**32))


# ---------------------------------------------------------------- edge arrays
def edge_array(G: nx.Graph) -> np.ndarray:
    """The sorted ``(m, 2)`` edge array of an undirected graph on nodes ``0..n-1``."""
    if G.is_directed():
        raise TopologyError("the graph is directed; pass an undirected networkx.Graph")
    n = G.number_of_nodes()
    if set(G.nodes) != set(range(n)):
        raise TopologyError("graph nodes must be the integers 0..n-1; relabel them with "
                            "networkx.convert_node_labels_to_integers")
    e = np.array([(u, v) for u, v in G.edges if u != v], dtype=np.int64).reshape(-1, 2)
    return _canonical(e)


def _canonical(e: np.ndarray) -> np.ndarray:
    e = np.sort(e, axis=1)
    return np.unique(e, axis=0) if len(e) else e.reshape(0, 2)


def from_edges(n: int, edges: np.ndarray) -> nx.Graph:
    """An undirected graph on nodes ``0..n-1`` (isolated ones included) with ``edges``."""
    G = nx.empty_graph(n)
    G.add_edges_from(map(tuple, np.asarray(edges).tolist()))
    return G


def is_connected(n: int, edges: np.ndarray) -> bool:
    """Whether the undirected graph on ``0..n-1`` with these edges is connected."""
    if n <= 1:
        return True
    if len(edges) < n - 1:
        return False
    A = coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(n, n))
    return connected_components(A, directed=False, return_labels=False) == 1


@functools.lru_cache(maxsize=8)
def _pairs(n: int) -> np.ndarray:
    """All ``(i, j)``, ``i < j < n``, row-major: row ``L`` is the pair numbered ``L``."""
    return np.stack(np.triu_indices(n, 1), axis=1).astype(np.int64)


def gnp_edges(n: int, p: float, rng: np.random.Generator) -> np.ndarray:
    """Edges of an Erdos-Renyi G(n, p) draw, in O(n + m) memory and time (a table of the
    pairs for ``n <= 1024``, where it is at most 8 MB)."""
    N = n * (n - 1) // 2
    k = rng.binomial(N, p)
    L = np.sort(rng.choice(N, size=k, replace=False)).astype(np.int64)
    if n <= 1024:
        return _pairs(n)[L]
    # invert L = i*n - i*(i+1)/2 + (j - i - 1) (row-major upper triangle), then fix rounding
    i = (n - 2 - np.floor(np.sqrt(4.0 * n * (n - 1) - 8.0 * L - 7) / 2 - 0.5)).astype(np.int64)

    def start(r):  # index of the first pair (r, r + 1) of row r
        return r * n - r * (r + 1) // 2

    i = np.where(start(i) > L, i - 1, i)
    i = np.where(start(i + 1) <= L, i + 1, i)
    j = L - start(i) + i + 1
    return np.stack([i, j], axis=1)


# ---------------------------------------------------------------- generators
def _torus(n: int, rows: int | None) -> nx.Graph:
    if rows is None:
        rows = max((r for r in range(2, math.isqrt(n) + 1) if n % r == 0), default=None)
        if rows is None:
            raise TopologyError(f"graph 'torus' needs n = rows * cols with rows, cols >= 2, "
                                f"got n = {n}; choose n like 4, 6, 8, 9 or another graph")
    rows = check_int("rows", rows, minimum=2)
    if n % rows or n // rows < 2:
        raise TopologyError(f"graph 'torus' with rows = {rows} does not fit n = {n}; choose "
                            f"rows >= 2 dividing n with n / rows >= 2")
    cols = n // rows
    G = nx.grid_2d_graph(rows, cols, periodic=True)
    return nx.relabel_nodes(G, {(r, c): r * cols + c for r, c in G.nodes})


def _exponential(n: int) -> nx.Graph:
    G = nx.empty_graph(n)
    s = 1
    while s < n:
        G.add_edges_from((i, (i + s) % n) for i in range(n) if (i + s) % n != i)
        s *= 2
    return G


def _redraw(name: str, n: int, seed: int, draw, fix: str) -> nx.Graph:
    for attempt in range(_MAX_TRIES):
        G = draw(derived_seed(seed, _TAGS[name], attempt))
        if nx.is_connected(G):
            return G
    raise TopologyError(f"graph '{name}' with n = {n} was disconnected in {_MAX_TRIES} "
                        f"draws; {fix}")


def make_graph(name: str, n: int, *, seed: int = 0, **params: Any) -> nx.Graph:
    """The static graph ``name`` on agents ``0..n-1`` (see :data:`GRAPHS`).

    Parameters: ``torus``: ``rows`` (default: the most square ``rows * cols == n``);
    ``erdos_renyi``: ``p`` (default ``min(1, 2 ln n / n)``); ``geometric``: ``radius`` in the
    unit square (default ``min(sqrt 2, sqrt(2 ln n / (pi n)))``); ``small_world``: ``k`` (even
    ring degree, default 4, or 2 when ``n <= 4``) and ``p_rewire`` (default 0.1). Random graphs
    are redrawn until connected.

    >>> sorted(make_graph("ring", 4).edges)
    [(0, 1), (0, 3), (1, 2), (2, 3)]
    """
    name = check_name("graph", name, GRAPHS)
    check_params(f"graph '{name}'", params, GRAPH_PARAMS[name])
    n = check_int(f"the number of agents for graph '{name}'", n,
                  minimum=_MIN_N.get(name, 2))
    seed = check_int("seed", seed, minimum=0)
    if name == "ring":
        return nx.cycle_graph(n)
    if name == "path":
        return nx.path_graph(n)
    if name == "star":
        return nx.star_graph(n - 1)
    if name == "complete":
        return nx.complete_graph(n)
    if name == "torus":
        return _torus(n, params.get("rows"))
    if name == "exponential":
        return _exponential(n)
    if name == "erdos_renyi":
        p = params.get("p")
        p = min(1.0, 2 * math.log(n) / n) if p is None else check_prob("p", p, low_open=True,
                                                                        high_open=False)
        return _redraw(name, n, seed,
                       lambda s: from_edges(n, gnp_edges(n, p, np.random.default_rng(s))),
                       f"choose a larger p than {p:g}")
    if name == "geometric":
        r = params.get("radius")
        if r is None:
            r = min(math.sqrt(2), math.sqrt(2 * math.log(n) / (math.pi * n)))
        elif isinstance(r, bool) or not isinstance(r, (int, float)) or not r > 0:
            raise TopologyError(f"radius must be a number > 0, got {r!r}; e.g. radius = 0.5")
        return _redraw(name, n, seed, lambda s: nx.random_geometric_graph(n, r, seed=s),
                       f"choose a larger radius than {r:g}")
    # small_world
    k = params.get("k")
    k = (4 if n > 4 else 2) if k is None else check_int("k", k, minimum=2)
    if k % 2 or k >= n:
        raise TopologyError(f"graph 'small_world' needs an even k < n = {n}, got k = {k}; "
                            f"choose k = {max(2, min(4, (n - 1) // 2 * 2))}")
    pr = params.get("p_rewire")
    pr = 0.1 if pr is None else check_prob("p_rewire", pr, low_open=False, high_open=False)
    return _redraw(name, n, seed, lambda s: nx.watts_strogatz_graph(n, k, pr, seed=s),
                   f"choose a smaller p_rewire than {pr:g} or a larger k")
