"""A topology: a graph sequence and a weight rule, giving ``W(t)`` at every iteration."""
from __future__ import annotations

from typing import Any

import networkx as nx
import numpy as np

from ..errors import TopologyError
from .dynamic import DYNAMIC_PARAMS, DYNAMICS, check_b_connected, make_sequence
from .graphs import GRAPH_PARAMS, GRAPHS, check_int, check_name, make_graph
from .mixing import WEIGHT_RULES, spectral_gap, weights_from_edges

__all__ = ["Topology", "make_topology"]

_NO_BASE = ("random", "one_peer_exponential")  # dynamics that ignore the base graph


class Topology:
    """``W(t)`` of a graph sequence under a weight rule (row ``i`` = what agent ``i`` receives).

    Static sequences compute ``W`` once; dynamic ones recompute it for the active edges at
    each ``t`` (the last ``t`` is cached). ``weights`` returns a fresh array each call.
    """

    def __init__(self, sequence, rule: str = "metropolis_hastings"):
        self.sequence = sequence
        self.rule = check_name("weight rule", rule, WEIGHT_RULES)
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

    def graph(self, t: int) -> nx.Graph:
        """The graph active at iteration ``t``."""
        return self.sequence.graph(t)

    def _compute(self, t: int) -> np.ndarray:
        return weights_from_edges(self.n, self.sequence.edges(t), self.rule)

    def weights(self, t: int) -> np.ndarray:
        """``W(t)``, float64 of shape ``(n, n)``, doubly stochastic and symmetric."""
        if self._static_W is not None:
            check_int("t", t, minimum=0)
            return self._static_W.copy()
        if self._last is None or self._last[0] != t:
            self._last = (t, self._compute(t))
        return self._last[1].copy()

    def check(self, iterations: int, B: int) -> None:
        """Raise :class:`TopologyError` unless every window of ``B`` iterations is connected."""
        check_b_connected(self.sequence, B=B, iterations=iterations)

    def spectral_gap(self) -> float:
        """``1 - |lambda_2(W)|`` of a static topology."""
        if self._static_W is None:
            raise TopologyError("the spectral gap is defined here for static topologies only; "
                                "use topology.dynamic = 'static' or spectral_gap(weights(t))")
        return spectral_gap(self._static_W)


def make_topology(*, graph: str, n: int, dynamic: str = "static",
                  weights: str = "metropolis_hastings", seed: int = 0,
                  **params: Any) -> Topology:
    """Build ``graph`` on ``n`` agents, run it through ``dynamic``, weight it by ``weights``.

    ``params`` (``None`` values are skipped) go to :func:`make_graph` (``p``, ``radius``,
    ``k``, ``p_rewire``, ``rows``) and :func:`make_sequence` (``p_fail``, ``parts``,
    ``period``; ``p`` for ``random``). The ``random`` and ``one_peer_exponential`` dynamics
    ignore the base graph (its name is still validated), so graph parameters are refused there.

    >>> topo = make_topology(graph="ring", n=4)
    >>> topo.weights(0)[0]
    array([0.33333333, 0.33333333, 0.        , 0.33333333])
    """
    graph = check_name("graph", graph, GRAPHS)
    dynamic = check_name("dynamic", dynamic, DYNAMICS)
    check_name("weight rule", weights, WEIGHT_RULES)
    params = {k: v for k, v in params.items() if v is not None}
    seq_keys = DYNAMIC_PARAMS[dynamic]
    graph_keys = () if dynamic in _NO_BASE else GRAPH_PARAMS[graph]
    for key in params:
        if key not in seq_keys and key not in graph_keys:
            valid = ", ".join(seq_keys + graph_keys) or "none"
            ignored = " (it ignores the base graph)" if dynamic in _NO_BASE else ""
            raise TopologyError(f"parameter '{key}' has no effect with graph '{graph}' and "
                                f"dynamic '{dynamic}'{ignored}; valid parameters: {valid}")
    if dynamic in _NO_BASE:
        base = nx.empty_graph(check_int("the number of agents", n, minimum=2))
    else:
        base = make_graph(graph, n, seed=seed,
                          **{k: v for k, v in params.items() if k in graph_keys})
    seq = make_sequence(dynamic, base, seed=seed,
                        **{k: v for k, v in params.items() if k in seq_keys})
    return Topology(seq, rule=weights)
