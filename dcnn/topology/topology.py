"""A topology: a graph sequence and a weight rule, giving ``W(t)`` at every iteration.

Undirected sequences take a doubly stochastic rule (default ``metropolis_hastings``); directed
ones (``sequence.directed``) a column- or row-stochastic one (default ``column_stochastic``).
"""
from __future__ import annotations

from typing import Any

import networkx as nx
import numpy as np

from ..errors import TopologyError
from .directed import (DIRECTED_DYNAMIC_PARAMS, DIRECTED_DYNAMICS, DIRECTED_GRAPH_PARAMS,
                       DIRECTED_GRAPHS, check_b_strongly_connected, make_digraph,
                       make_directed_sequence)
from .dynamic import DYNAMIC_PARAMS, DYNAMICS, check_b_connected, make_sequence
from .graphs import GRAPH_PARAMS, GRAPHS, check_int, check_name, make_graph
from .mixing import check_rule, spectral_gap, weights_from_arcs, weights_from_edges

__all__ = ["Topology", "make_topology"]

_NO_BASE = ("random", "one_peer_exponential")  # dynamics that ignore the base graph


def _default_rule(directed: bool) -> str:
    return "column_stochastic" if directed else "metropolis_hastings"


class Topology:
    """``W(t)`` of a graph sequence under a weight rule (row ``i`` = what agent ``i`` receives).

    Static sequences compute ``W`` once; dynamic ones recompute it for the active edges (or
    arcs) at each ``t`` (the last ``t`` is cached). ``weights`` returns a fresh array each
    call. ``rule`` defaults to ``metropolis_hastings``, or ``column_stochastic`` for a directed
    sequence.
    """

    def __init__(self, sequence, rule: str | None = None):
        self.sequence = sequence
        directed = bool(getattr(sequence, "directed", False))
        self.rule = check_rule(_default_rule(directed) if rule is None else rule,
                               directed=directed)
        if rule == "uniform" and not sequence.static and not getattr(sequence, "regular", False):
            raise TopologyError(f"weight rule 'uniform' needs a regular graph at every "
                                f"iteration, which {type(sequence).__name__} does not "
                                f"guarantee; use weights 'metropolis_hastings'")
        self._static_W = self._compute(0) if sequence.static else None
        self._last: tuple[int, np.ndarray] | None = None

    def __repr__(self) -> str:
        return f"Topology({self.sequence!r}, rule={self.rule!r})"

    @property
    def n(self) -> int:
        return self.sequence.n

    @property
    def static(self) -> bool:
        return self.sequence.static

    @property
    def directed(self) -> bool:
        """Whether the graphs are directed (then ``W`` is column or row stochastic only)."""
        return bool(getattr(self.sequence, "directed", False))

    def graph(self, t: int) -> nx.Graph:
        """The graph (a :class:`networkx.DiGraph` if directed) active at iteration ``t``."""
        return self.sequence.graph(t)

    def _compute(self, t: int) -> np.ndarray:
        if self.directed:
            return weights_from_arcs(self.n, self.sequence.arcs(t), self.rule)
        return weights_from_edges(self.n, self.sequence.edges(t), self.rule)

    def weights(self, t: int) -> np.ndarray:
        """``W(t)``, float64 of shape ``(n, n)``: doubly stochastic and symmetric for an
        undirected topology, column (or row, by ``rule``) stochastic for a directed one."""
        if self._static_W is not None:
            check_int("t", t, minimum=0)
            return self._static_W.copy()
        if self._last is None or self._last[0] != t:
            self._last = (t, self._compute(t))
        return self._last[1].copy()

    def check(self, iterations: int, B: int) -> None:
        """Raise :class:`TopologyError` unless every window of ``B`` iterations is connected
        (strongly connected, for a directed topology)."""
        if self.directed:
            check_b_strongly_connected(self.sequence, B=B, iterations=iterations)
        else:
            check_b_connected(self.sequence, B=B, iterations=iterations)

    def spectral_gap(self) -> float:
        """``1 - |lambda_2(W)|`` of a static topology."""
        if self._static_W is None:
            raise TopologyError("the spectral gap is defined here for static topologies only; "
                                "use topology.dynamic = 'static' or spectral_gap(weights(t))")
        return spectral_gap(self._static_W)


def make_topology(*, graph: str, n: int, dynamic: str = "static", weights: str | None = None,
                  seed: int = 0, **params: Any) -> Topology:
    """Build ``graph`` on ``n`` agents, run it through ``dynamic``, weight it by ``weights``.

    Undirected graphs (:data:`GRAPHS`) take the dynamics :data:`DYNAMICS` and the rules
    :data:`WEIGHT_RULES` (default ``metropolis_hastings``); directed ones
    (:data:`DIRECTED_GRAPHS`) the dynamics :data:`DIRECTED_DYNAMICS` and the rules
    :data:`DIRECTED_WEIGHT_RULES` (default ``column_stochastic``).

    ``params`` (``None`` values are skipped) go to the graph generator (``p``, ``radius``,
    ``k``, ``p_rewire``, ``rows``) and the sequence (``p_fail``, ``parts``, ``period``; ``p``
    for ``random``). The ``random`` and ``one_peer_exponential`` dynamics ignore the base
    graph (its name is still validated), so graph parameters are refused there.

    >>> topo = make_topology(graph="ring", n=4)
    >>> topo.weights(0)[0]
    array([0.33333333, 0.33333333, 0.        , 0.33333333])
    >>> topo = make_topology(graph="directed_ring", n=3)
    >>> topo.directed, topo.weights(0)[0]
    (True, array([0.5, 0. , 0.5]))
    """
    graph = check_name("graph", graph, GRAPHS + DIRECTED_GRAPHS)
    directed = graph in DIRECTED_GRAPHS
    graph_params, dyn_params = ((DIRECTED_GRAPH_PARAMS, DIRECTED_DYNAMIC_PARAMS) if directed
                                else (GRAPH_PARAMS, DYNAMIC_PARAMS))
    if directed and dynamic in DYNAMICS and dynamic not in DIRECTED_DYNAMICS:
        raise TopologyError(f"dynamic {dynamic!r} is not available for the directed graph "
                            f"{graph!r}; choose one of: {', '.join(DIRECTED_DYNAMICS)}")
    dynamic = check_name("dynamic", dynamic, tuple(dyn_params))
    weights = check_rule(_default_rule(directed) if weights is None else weights,
                         directed=directed)
    params = {k: v for k, v in params.items() if v is not None}
    seq_keys = dyn_params[dynamic]
    graph_keys = () if dynamic in _NO_BASE else graph_params[graph]
    for key in params:
        if key not in seq_keys and key not in graph_keys:
            valid = ", ".join(seq_keys + graph_keys) or "none"
            ignored = " (it ignores the base graph)" if dynamic in _NO_BASE else ""
            raise TopologyError(f"parameter '{key}' has no effect with graph '{graph}' and "
                                f"dynamic '{dynamic}'{ignored}; valid parameters: {valid}")
    graph_kw = {k: v for k, v in params.items() if k in graph_keys}
    seq_kw = {k: v for k, v in params.items() if k in seq_keys}
    if dynamic in _NO_BASE:
        n = check_int("the number of agents", n, minimum=2)
        base = nx.empty_graph(n, create_using=nx.DiGraph if directed else nx.Graph)
    else:
        base = (make_digraph if directed else make_graph)(graph, n, seed=seed, **graph_kw)
    seq = (make_directed_sequence if directed else make_sequence)(dynamic, base, seed=seed,
                                                                  **seq_kw)
    return Topology(seq, rule=weights)
