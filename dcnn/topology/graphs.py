"""Seeded static graphs and digraphs on agents ``0..n-1``, and their link arrays.

Every generator is a pure function of ``(name, n, seed, params)``: the same call gives the
same :class:`networkx.Graph` (:data:`GRAPHS`) or :class:`networkx.DiGraph`
(:data:`DIRECTED_GRAPHS`) on every process, nodes ``0..n-1`` and no self loops, without
touching a global random state. Random generators are redrawn, with seeds derived from
``seed``, until the graph is connected (strongly connected, for a digraph).

Graphs are also handled as *link arrays*: ``int64`` arrays of shape ``(m, 2)``, rows unique
and sorted, no self loops. A row ``(i, j)`` of an undirected graph is the edge ``{i, j}``
with ``i < j``; a row ``(j, i)`` of a digraph is the arc ``j -> i`` (agent ``i`` receives
from agent ``j``). :func:`link_array` and :func:`from_links` convert both ways.
"""
from __future__ import annotations

import functools
import math
from typing import Any

import networkx as nx
import numpy as np

from ..errors import TopologyError
from ._checks import check_int, check_name, check_params, check_prob
from .connectivity import is_connected

__all__ = ["GRAPHS", "DIRECTED_GRAPHS", "GRAPH_PARAMS", "make_graph", "link_array",
           "from_links", "shift_links", "gnp_edges"]

#: Parameters each generator accepts (all optional), undirected ones first.
GRAPH_PARAMS: dict[str, tuple[str, ...]] = {
    "ring": (), "path": (), "star": (), "complete": (), "torus": ("rows",),
    "erdos_renyi": ("p",), "geometric": ("radius",), "small_world": ("k", "p_rewire"),
    "exponential": (),
    "directed_ring": (), "random_digraph": ("p",), "directed_exponential": (),
}
DIRECTED_GRAPHS: tuple[str, ...] = ("directed_ring", "random_digraph", "directed_exponential")
GRAPHS: tuple[str, ...] = tuple(g for g in GRAPH_PARAMS if g not in DIRECTED_GRAPHS)

_MAX_TRIES = 1000
_MIN_N = {"complete": 1, "small_world": 3}
# separate seed streams per random generator
_TAGS = {"erdos_renyi": 1, "geometric": 2, "small_world": 3, "random_digraph": 21}


def _derived_seed(seed: int, *stream: int) -> int:
    """A 32-bit seed for networkx, derived from ``seed`` and a stream of integers."""
    return int(np.random.default_rng([seed, *stream]).integers(2**32))


# ---------------------------------------------------------------- link arrays
def _canonical(links: np.ndarray, directed: bool) -> np.ndarray:
    links = links[links[:, 0] != links[:, 1]]
    if not directed:
        links = np.sort(links, axis=1)
    return np.unique(links, axis=0) if len(links) else links.reshape(0, 2)


def link_array(G: nx.Graph) -> np.ndarray:
    """The sorted ``(m, 2)`` link array of ``G`` (edges ``i < j``, or arcs ``(j, i)`` if
    ``G`` is a :class:`networkx.DiGraph`), self loops dropped."""
    n = G.number_of_nodes()
    if set(G.nodes) != set(range(n)):
        raise TopologyError("graph nodes must be the integers 0..n-1; relabel them with "
                            "networkx.convert_node_labels_to_integers")
    links = np.array(list(G.edges), dtype=np.int64).reshape(-1, 2)
    return _canonical(links, G.is_directed())


def from_links(n: int, links: np.ndarray, *, directed: bool = False) -> nx.Graph:
    """A graph (a :class:`networkx.DiGraph` if ``directed``) on nodes ``0..n-1``, isolated
    ones included, with ``links``."""
    G = nx.empty_graph(n, create_using=nx.DiGraph if directed else nx.Graph)
    G.add_edges_from(map(tuple, np.asarray(links).tolist()))
    return G


def shift_links(n: int, shifts, *, directed: bool) -> np.ndarray:
    """The links ``i -> (i + s) mod n`` for every agent ``i`` and shift ``s`` (edges
    ``{i, (i + s) mod n}`` if undirected), as a link array."""
    i = np.arange(n, dtype=np.int64)
    links = np.concatenate([np.stack([i, (i + s) % n], axis=1) for s in shifts])
    return _canonical(links, directed)


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


def _gnp_arcs(n: int, p: float, rng: np.random.Generator) -> np.ndarray:
    """Each of the ``n (n - 1)`` ordered pairs is an arc with probability ``p``, O(n + m)."""
    k = rng.binomial(n * (n - 1), p)
    L = np.sort(rng.choice(n * (n - 1), size=k, replace=False)).astype(np.int64)
    # L = j (n - 1) + r, with the receiver i = r, or r + 1 past the sender j (no loops)
    j, r = np.divmod(L, n - 1)
    return np.stack([j, r + (r >= j)], axis=1)


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


def _redraw(name: str, n: int, seed: int, draw, fix: str, what: str = "") -> nx.Graph:
    """``draw(s)`` with seeds ``s`` derived from ``seed`` until (strongly) connected."""
    for attempt in range(_MAX_TRIES):
        G = draw([seed, _TAGS[name], attempt])
        if is_connected(n, link_array(G), directed=G.is_directed()):
            return G
    broken = "not strongly connected" if name in DIRECTED_GRAPHS else "disconnected"
    raise TopologyError(f"graph '{name}' with n = {n}{what} was {broken} in {_MAX_TRIES} "
                        f"draws; {fix}")


def _default_p(n: int) -> float:
    return min(1.0, 2 * math.log(n) / n)


def _p(n: int, p) -> float:
    return _default_p(n) if p is None else check_prob("p", p, low_open=True, high_open=False)


def _digraph(name: str, n: int, seed: int, params: dict) -> nx.DiGraph:
    if name == "directed_ring":
        return from_links(n, shift_links(n, [1], directed=True), directed=True)
    if name == "directed_exponential":
        shifts = [2**k for k in range(math.ceil(math.log2(n)))]
        return from_links(n, shift_links(n, shifts, directed=True), directed=True)
    p = _p(n, params.get("p"))
    return _redraw(name, n, seed, lambda s: from_links(
        n, _gnp_arcs(n, p, np.random.default_rng(s)), directed=True),
        f"choose a larger p (about {_default_p(n):.3g} or more)", f" and p = {p:g}")


def make_graph(name: str, n: int, *, seed: int = 0, **params: Any) -> nx.Graph:
    """The static graph ``name`` on agents ``0..n-1`` (see :data:`GRAPHS`), or digraph (see
    :data:`DIRECTED_GRAPHS`, a :class:`networkx.DiGraph`).

    Parameters: ``torus``: ``rows`` (default: the most square ``rows * cols == n``);
    ``erdos_renyi``: ``p`` (default ``min(1, 2 ln n / n)``); ``geometric``: ``radius`` in the
    unit square (default ``min(sqrt 2, sqrt(2 ln n / (pi n)))``); ``small_world``: ``k`` (even
    ring degree, default 4, or 2 when ``n <= 4``) and ``p_rewire`` (default 0.1). Digraphs:
    ``directed_ring``: arcs ``i -> i + 1 (mod n)``; ``directed_exponential``: arcs
    ``i -> i + 2^k (mod n)`` for every ``2^k < n``; ``random_digraph``: each ordered pair is
    an arc with probability ``p`` (default ``min(1, 2 ln n / n)``). Random graphs are redrawn
    until connected (strongly connected).

    >>> sorted(make_graph("ring", 4).edges)
    [(0, 1), (0, 3), (1, 2), (2, 3)]
    >>> sorted(make_graph("directed_ring", 3).edges)
    [(0, 1), (1, 2), (2, 0)]
    """
    name = check_name("graph", name, GRAPHS + DIRECTED_GRAPHS)
    check_params(f"graph '{name}'", params, GRAPH_PARAMS[name])
    n = check_int(f"the number of agents for graph '{name}'", n,
                  minimum=_MIN_N.get(name, 2))
    seed = check_int("seed", seed, minimum=0)
    if name in DIRECTED_GRAPHS:
        return _digraph(name, n, seed, params)
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
        p = _p(n, params.get("p"))
        return _redraw(name, n, seed, lambda s: from_links(
            n, gnp_edges(n, p, np.random.default_rng(_derived_seed(*s)))),
            f"choose a larger p than {p:g}")
    if name == "geometric":
        r = params.get("radius")
        if r is None:
            r = min(math.sqrt(2), math.sqrt(2 * math.log(n) / (math.pi * n)))
        elif isinstance(r, bool) or not isinstance(r, (int, float)) or not r > 0:
            raise TopologyError(f"radius must be a number > 0, got {r!r}; e.g. radius = 0.5")
        return _redraw(name, n, seed,
                       lambda s: nx.random_geometric_graph(n, r, seed=_derived_seed(*s)),
                       f"choose a larger radius than {r:g}")
    # small_world
    k = params.get("k")
    k = (4 if n > 4 else 2) if k is None else check_int("k", k, minimum=2)
    if k % 2 or k >= n:
        raise TopologyError(f"graph 'small_world' needs an even k < n = {n}, got k = {k}; "
                            f"choose k = {max(2, min(4, (n - 1) // 2 * 2))}")
    pr = params.get("p_rewire")
    pr = 0.1 if pr is None else check_prob("p_rewire", pr, low_open=False, high_open=False)
    return _redraw(name, n, seed,
                   lambda s: nx.watts_strogatz_graph(n, k, pr, seed=_derived_seed(*s)),
                   f"choose a smaller p_rewire than {pr:g} or a larger k")
