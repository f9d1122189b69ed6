"""Time-varying graph sequences, undirected or directed: pure functions of ``(seed, t)``.

A sequence has ``n``, ``directed``, ``static`` (the same graph at every ``t``), ``regular``
(every graph of the sequence is regular), ``edges(t)`` (the sorted ``(m, 2)`` link array of
the graph active at iteration ``t >= 0``: edges ``i < j``, or, if ``directed``, arcs ``(j, i)``
for ``j -> i``) and ``graph(t)`` (the same as a :class:`networkx.Graph` or
:class:`networkx.DiGraph` with all nodes ``0..n-1``, isolated ones included). Each class works
on both kinds of graph: a sequence is directed when its base graph is a
:class:`networkx.DiGraph` (``OnePeerExponential`` takes the flag itself). Randomness at ``t``
comes from ``np.random.default_rng([seed, stream, t])``, so every process sees the same
graphs. Deterministic sequences also have ``graph_key(t)`` (equal keys: equal graphs), which
lets the B-connectivity check (:mod:`~dcnn.topology.connectivity`) skip repeats.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import networkx as nx
import numpy as np

from ..errors import TopologyError
from ._checks import check_int, check_name, check_params, check_prob
from .graphs import from_links, gnp_edges, link_array, shift_links

__all__ = ["DYNAMICS", "DIRECTED_DYNAMICS", "DYNAMIC_PARAMS", "GraphSequence", "Static",
           "LinkFailures", "Switching", "RandomGraphs", "OnePeerExponential", "make_sequence"]

#: Parameters each dynamic accepts (all optional).
DYNAMIC_PARAMS: dict[str, tuple[str, ...]] = {
    "static": (), "link_failure": ("p_fail",), "switching": ("parts", "period"),
    "random": ("p",), "one_peer_exponential": (),
}
DYNAMICS: tuple[str, ...] = tuple(DYNAMIC_PARAMS)
#: The dynamics offered on directed graphs (an arc fails on its own in ``link_failure``).
DIRECTED_DYNAMICS: tuple[str, ...] = ("static", "link_failure", "one_peer_exponential")

# separate seed streams; arcs fail on a stream apart from edges
_LINK_FAILURE, _SWITCHING, _RANDOM, _ARC_FAILURE = 11, 12, 13, 22


class GraphSequence:
    """Base of the sequences: ``graph(t)`` built from ``edges(t)``."""

    n: int
    directed: bool = False
    static: bool = False
    regular: bool = False

    def edges(self, t: int) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def graph(self, t: int) -> nx.Graph:
        """The graph (a :class:`networkx.DiGraph` if directed) active at iteration ``t``,
        nodes ``0..n-1``, isolated ones included."""
        return from_links(self.n, self.edges(t), directed=self.directed)


def _set_base(obj, base: nx.Graph) -> None:
    object.__setattr__(obj, "n", base.number_of_nodes())
    object.__setattr__(obj, "directed", base.is_directed())
    object.__setattr__(obj, "_edges", link_array(base))


@dataclass(frozen=True)
class Static(GraphSequence):
    """The graph or digraph ``base`` at every iteration."""

    base: nx.Graph
    n: int = field(init=False)
    directed: bool = field(init=False)
    _edges: np.ndarray = field(init=False, repr=False, compare=False)
    static = True

    def __post_init__(self):
        _set_base(self, self.base)
        deg = np.bincount(self._edges.ravel(), minlength=self.n)
        object.__setattr__(self, "regular", bool(deg.min() == deg.max()))

    def edges(self, t: int) -> np.ndarray:
        check_int("t", t, minimum=0)
        return self._edges

    def graph_key(self, t: int) -> int:
        return 0


@dataclass(frozen=True)
class LinkFailures(GraphSequence):
    """Each edge (each arc, if ``base`` is directed: the two arcs between a pair fail apart)
    of ``base`` is independently absent at ``t`` with probability ``p_fail``."""

    base: nx.Graph
    p_fail: float = 0.3
    seed: int = 0
    n: int = field(init=False)
    directed: bool = field(init=False)
    _edges: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        if not (isinstance(self.p_fail, (int, float)) and 0 <= self.p_fail < 1):
            raise TopologyError(f"p_fail = {self.p_fail!r} is outside [0, 1); choose p_fail "
                                f"in [0, 1), e.g. 0.3")
        check_int("seed", self.seed, minimum=0)
        _set_base(self, self.base)

    def edges(self, t: int) -> np.ndarray:
        stream = _ARC_FAILURE if self.directed else _LINK_FAILURE
        rng = np.random.default_rng([self.seed, stream, check_int("t", t, minimum=0)])
        return self._edges[rng.random(len(self._edges)) >= self.p_fail]


@dataclass(frozen=True)
class Switching(GraphSequence):
    """The links of ``base``, split at random (fixed by ``seed``) into ``parts`` groups of
    near-equal size; group ``(t // period) % parts`` is active at ``t``."""

    base: nx.Graph
    parts: int = 3
    period: int = 1
    seed: int = 0
    n: int = field(init=False)
    directed: bool = field(init=False)
    _edges: np.ndarray = field(init=False, repr=False, compare=False)
    _groups: tuple = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        check_int("parts", self.parts, minimum=1)
        check_int("period", self.period, minimum=1)
        check_int("seed", self.seed, minimum=0)
        _set_base(self, self.base)
        m = len(self._edges)
        if self.parts > max(m, 1):
            raise TopologyError(f"parts = {self.parts} exceeds the {m} edges of the base "
                                f"graph; choose parts <= {max(m, 1)}")
        order = np.random.default_rng([self.seed, _SWITCHING]).permutation(m)
        groups = tuple(self._edges[np.sort(g)] for g in np.array_split(order, self.parts))
        object.__setattr__(self, "_groups", groups)

    def edges(self, t: int) -> np.ndarray:
        return self._groups[self.graph_key(t)]

    def graph_key(self, t: int) -> int:
        return (check_int("t", t, minimum=0) // self.period) % self.parts


@dataclass(frozen=True)
class RandomGraphs(GraphSequence):
    """A fresh Erdos-Renyi ``G(n, p)`` at every ``t`` (undirected, not necessarily
    connected)."""

    n: int
    p: float
    seed: int = 0

    def __post_init__(self):
        check_int("n", self.n, minimum=2)
        check_prob("p", self.p, low_open=True, high_open=False)
        check_int("seed", self.seed, minimum=0)

    def edges(self, t: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, _RANDOM, check_int("t", t, minimum=0)])
        return gnp_edges(self.n, self.p, rng)


@dataclass(frozen=True)
class OnePeerExponential(GraphSequence):
    """At ``t``, with ``k = t mod ceil(log2 n)``: the edges ``{i, (i + 2^k) mod n}``, or, if
    ``directed``, the arcs ``i -> (i + 2^k) mod n``.

    Undirected, every graph is 2-regular, or a perfect matching when ``2^k == n / 2``;
    directed, each agent sends to one peer and receives from one (a union of directed cycles).
    """

    n: int
    directed: bool = False
    _graphs: tuple = field(init=False, repr=False, compare=False)
    regular = True

    def __post_init__(self):
        check_int("n", self.n, minimum=2)
        object.__setattr__(self, "_graphs", tuple(
            shift_links(self.n, [2**k], directed=self.directed)
            for k in range(math.ceil(math.log2(self.n)))))

    def edges(self, t: int) -> np.ndarray:
        return self._graphs[self.graph_key(t)]

    def graph_key(self, t: int) -> int:
        return check_int("t", t, minimum=0) % len(self._graphs)


def make_sequence(dynamic: str, base: nx.Graph, *, seed: int = 0,
                  **params: Any) -> GraphSequence:
    """The sequence ``dynamic`` over the static graph or digraph ``base`` (see
    :data:`DYNAMICS`; :data:`DIRECTED_DYNAMICS` for a :class:`networkx.DiGraph`).

    Parameters: ``link_failure``: ``p_fail`` (default 0.3); ``switching``: ``parts`` (default
    3) and ``period`` (default 1); ``random``: ``p`` (default ``min(1, 2 ln n / n)``). For
    ``random`` and ``one_peer_exponential`` only the node count of ``base`` is used (and,
    for ``one_peer_exponential``, whether it is directed).

    >>> from dcnn.topology import make_graph
    >>> make_sequence("one_peer_exponential", make_graph("directed_ring", 4)).edges(1).tolist()
    [[0, 2], [1, 3], [2, 0], [3, 1]]
    """
    directed = base.is_directed()
    dynamic = check_name("directed dynamic" if directed else "dynamic", dynamic,
                         DIRECTED_DYNAMICS if directed else DYNAMICS)
    check_params(f"dynamic '{dynamic}'", params, DYNAMIC_PARAMS[dynamic])
    seed = check_int("seed", seed, minimum=0)
    given = {k: v for k, v in params.items() if v is not None}
    if dynamic == "static":
        return Static(base)
    if dynamic == "link_failure":
        return LinkFailures(base, p_fail=given.get("p_fail", 0.3), seed=seed)
    if dynamic == "switching":
        return Switching(base, parts=given.get("parts", 3), period=given.get("period", 1),
                         seed=seed)
    n = base.number_of_nodes()
    if dynamic == "random":
        p = given.get("p", min(1.0, 2 * math.log(max(n, 2)) / max(n, 2)))
        return RandomGraphs(n, p, seed=seed)
    return OnePeerExponential(n, directed=directed)
