"""Seeded digraphs, time-varying directed sequences and B-strong connectivity.

An arc ``j -> i`` means agent ``i`` receives from agent ``j`` (it weighs ``x_j`` with
``W[i, j]``). Digraphs are :class:`networkx.DiGraph` objects on nodes ``0..n-1`` without self
loops, or *arc arrays*: ``int64`` arrays of shape ``(m, 2)`` whose row ``(j, i)`` is the arc
``j -> i``, rows unique and sorted (:func:`arc_array`).

Generators (:data:`DIRECTED_GRAPHS`) and sequences (:data:`DIRECTED_DYNAMICS`) are pure
functions of ``(seed, t)``: randomness at ``t`` comes from
``np.random.default_rng([seed, stream, t])``, so every process sees the same digraphs. A
sequence has ``n``, ``static``, ``directed = True``, ``arcs(t)`` and ``graph(t)`` (a
:class:`networkx.DiGraph` with all nodes ``0..n-1``); deterministic ones also ``graph_key(t)``.
B-strong connectivity is checked by :mod:`~dcnn.topology.connectivity` (re-exported here).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import networkx as nx
import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from ..errors import TopologyError
from .connectivity import b_strong_connectivity_violation, check_b_strongly_connected
from .graphs import check_int, check_name, check_params, check_prob

__all__ = ["DIRECTED_GRAPHS", "DIRECTED_GRAPH_PARAMS", "DIRECTED_DYNAMICS",
           "DIRECTED_DYNAMIC_PARAMS", "make_digraph", "arc_array", "from_arcs",
           "is_strongly_connected", "DiGraphSequence", "DirectedStatic", "ArcFailures",
           "DirectedOnePeerExponential", "make_directed_sequence",
           "b_strong_connectivity_violation", "check_b_strongly_connected"]

#: Parameters each directed generator accepts (all optional).
DIRECTED_GRAPH_PARAMS: dict[str, tuple[str, ...]] = {
    "directed_ring": (), "random_digraph": ("p",), "directed_exponential": (),
}
DIRECTED_GRAPHS: tuple[str, ...] = tuple(DIRECTED_GRAPH_PARAMS)
#: Parameters each directed dynamic accepts (all optional).
DIRECTED_DYNAMIC_PARAMS: dict[str, tuple[str, ...]] = {
    "static": (), "link_failure": ("p_fail",), "one_peer_exponential": (),
}
DIRECTED_DYNAMICS: tuple[str, ...] = tuple(DIRECTED_DYNAMIC_PARAMS)

_MAX_TRIES = 1000
_RANDOM_DIGRAPH, _ARC_FAILURE = 21, 22  # seed streams apart from the undirected ones


# ---------------------------------------------------------------- arc arrays
def _canonical(arcs: np.ndarray) -> np.ndarray:
    arcs = arcs[arcs[:, 0] != arcs[:, 1]]
    return np.unique(arcs, axis=0) if len(arcs) else arcs.reshape(0, 2)


def arc_array(G: nx.DiGraph) -> np.ndarray:
    """The sorted ``(m, 2)`` arc array (row ``(j, i)`` = arc ``j -> i``) of a digraph."""
    if not G.is_directed():
        raise TopologyError("the graph is undirected; pass a networkx.DiGraph (e.g. "
                            "G.to_directed()) or use an undirected weight rule")
    n = G.number_of_nodes()
    if set(G.nodes) != set(range(n)):
        raise TopologyError("graph nodes must be the integers 0..n-1; relabel them with "
                            "networkx.convert_node_labels_to_integers")
    return _canonical(np.array(list(G.edges), dtype=np.int64).reshape(-1, 2))


def from_arcs(n: int, arcs: np.ndarray) -> nx.DiGraph:
    """A digraph on nodes ``0..n-1`` (isolated ones included) with ``arcs``."""
    G = nx.empty_graph(n, create_using=nx.DiGraph)
    G.add_edges_from(map(tuple, np.asarray(arcs).tolist()))
    return G


def is_strongly_connected(n: int, arcs: np.ndarray) -> bool:
    """Whether the digraph on ``0..n-1`` with these arcs has a directed path between any two
    agents, both ways."""
    if n <= 1:
        return True
    arcs = np.asarray(arcs, dtype=np.int64).reshape(-1, 2)
    if len(arcs) < n:  # every agent needs an incoming arc
        return False
    A = coo_matrix((np.ones(len(arcs)), (arcs[:, 0], arcs[:, 1])), shape=(n, n))
    return connected_components(A, directed=True, connection="strong",
                                return_labels=False) == 1


# ---------------------------------------------------------------- generators
def _shift_arcs(n: int, shifts) -> np.ndarray:
    i = np.arange(n, dtype=np.int64)
    return _canonical(np.concatenate([np.stack([i, (i + s) % n], axis=1) for s in shifts]))


def _random_arcs(n: int, p: float, rng: np.random.Generator) -> np.ndarray:
    """Each of the ``n (n - 1)`` ordered pairs is an arc with probability ``p``, O(n + m)."""
    k = rng.binomial(n * (n - 1), p)
    L = np.sort(rng.choice(n * (n - 1), size=k, replace=False)).astype(np.int64)
    # L = j (n - 1) + r, with the receiver i = r, or r + 1 past the sender j (no loops)
    j, r = np.divmod(L, n - 1)
    return np.stack([j, r + (r >= j)], axis=1)


def make_digraph(name: str, n: int, *, seed: int = 0, **params: Any) -> nx.DiGraph:
    """The static digraph ``name`` on agents ``0..n-1`` (see :data:`DIRECTED_GRAPHS`).

    ``directed_ring``: arcs ``i -> i + 1 (mod n)``. ``directed_exponential``: arcs
    ``i -> i + 2^k (mod n)`` for every ``2^k < n``. ``random_digraph``: each ordered pair is an
    arc with probability ``p`` (default ``min(1, 2 ln n / n)``), redrawn with seeds derived
    from ``seed`` until strongly connected.

    >>> sorted(make_digraph("directed_ring", 3).edges)
    [(0, 1), (1, 2), (2, 0)]
    """
    name = check_name("directed graph", name, DIRECTED_GRAPHS)
    check_params(f"graph '{name}'", params, DIRECTED_GRAPH_PARAMS[name])
    n = check_int(f"the number of agents for graph '{name}'", n, minimum=2)
    seed = check_int("seed", seed, minimum=0)
    if name == "directed_ring":
        return from_arcs(n, _shift_arcs(n, [1]))
    if name == "directed_exponential":
        return from_arcs(n, _shift_arcs(n, [2**k for k in range(math.ceil(math.log2(n)))]))
    p = params.get("p")
    p = min(1.0, 2 * math.log(n) / n) if p is None else check_prob("p", p, low_open=True,
                                                                    high_open=False)
    for attempt in range(_MAX_TRIES):
        arcs = _random_arcs(n, p, np.random.default_rng([seed, _RANDOM_DIGRAPH, attempt]))
        if is_strongly_connected(n, arcs):
            return from_arcs(n, arcs)
    raise TopologyError(f"graph 'random_digraph' with n = {n} and p = {p:g} was not strongly "
                        f"connected in {_MAX_TRIES} draws; choose a larger p (about "
                        f"{min(1.0, 2 * math.log(n) / n):.3g} or more)")


# ---------------------------------------------------------------- sequences
class DiGraphSequence:
    """Base of the directed sequences: ``graph(t)`` built from ``arcs(t)``."""

    n: int
    static: bool = False
    directed = True

    def arcs(self, t: int) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def graph(self, t: int) -> nx.DiGraph:
        """The digraph active at iteration ``t`` (nodes ``0..n-1``, isolated ones included)."""
        return from_arcs(self.n, self.arcs(t))


def _base_arcs(obj, base: nx.DiGraph) -> None:
    object.__setattr__(obj, "n", base.number_of_nodes())
    object.__setattr__(obj, "_arcs", arc_array(base))


@dataclass(frozen=True)
class DirectedStatic(DiGraphSequence):
    """The digraph ``base`` at every iteration."""

    base: nx.DiGraph
    n: int = field(init=False)
    _arcs: np.ndarray = field(init=False, repr=False, compare=False)
    static = True

    def __post_init__(self):
        _base_arcs(self, self.base)

    def arcs(self, t: int) -> np.ndarray:
        check_int("t", t, minimum=0)
        return self._arcs

    def graph_key(self, t: int) -> int:
        return 0


@dataclass(frozen=True)
class ArcFailures(DiGraphSequence):
    """Each arc of ``base`` is independently absent at ``t`` with probability ``p_fail``
    (the two arcs between a pair fail independently)."""

    base: nx.DiGraph
    p_fail: float = 0.3
    seed: int = 0
    n: int = field(init=False)
    _arcs: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        if not (isinstance(self.p_fail, (int, float)) and 0 <= self.p_fail < 1):
            raise TopologyError(f"p_fail = {self.p_fail!r} is outside [0, 1); choose p_fail "
                                f"in [0, 1), e.g. 0.3")
        check_int("seed", self.seed, minimum=0)
        _base_arcs(self, self.base)

    def arcs(self, t: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, _ARC_FAILURE, check_int("t", t, minimum=0)])
        return self._arcs[rng.random(len(self._arcs)) >= self.p_fail]


@dataclass(frozen=True)
class DirectedOnePeerExponential(DiGraphSequence):
    """Arcs ``i -> (i + 2^k) mod n`` at ``t``, ``k = t mod ceil(log2 n)``: each agent sends to
    one peer and receives from one, so every snapshot is a union of directed cycles."""

    n: int
    _graphs: tuple = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        check_int("n", self.n, minimum=2)
        object.__setattr__(self, "_graphs", tuple(
            _shift_arcs(self.n, [2**k]) for k in range(math.ceil(math.log2(self.n)))))

    def arcs(self, t: int) -> np.ndarray:
        return self._graphs[self.graph_key(t)]

    def graph_key(self, t: int) -> int:
        return check_int("t", t, minimum=0) % len(self._graphs)


def make_directed_sequence(dynamic: str, base: nx.DiGraph, *, seed: int = 0,
                           **params: Any) -> DiGraphSequence:
    """The directed sequence ``dynamic`` (see :data:`DIRECTED_DYNAMICS`) over ``base``.

    ``link_failure``: each arc fails independently with probability ``p_fail`` (default 0.3);
    for ``one_peer_exponential`` only the node count of ``base`` is used.
    """
    dynamic = check_name("directed dynamic", dynamic, DIRECTED_DYNAMICS)
    check_params(f"dynamic '{dynamic}'", params, DIRECTED_DYNAMIC_PARAMS[dynamic])
    seed = check_int("seed", seed, minimum=0)
    given = {k: v for k, v in params.items() if v is not None}
    if dynamic == "static":
        return DirectedStatic(base)
    if dynamic == "link_failure":
        return ArcFailures(base, p_fail=given.get("p_fail", 0.3), seed=seed)
    return DirectedOnePeerExponential(base.number_of_nodes())
