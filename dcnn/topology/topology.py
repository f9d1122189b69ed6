"""A topology: a graph sequence and a weight rule, giving ``W(t)`` at every iteration.

Undirected sequences take a doubly stochastic rule (default ``metropolis_hastings``); directed
ones (``sequence.directed``) a column- or row-stochastic one (default ``column_stochastic``).
Weights given by the user instead (a matrix, a function of ``t``, or any object with
``weights(t)``) go through :func:`as_topology`, which checks every ``W(t)`` it hands out.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import networkx as nx
import numpy as np

from ..errors import TopologyError
from ._checks import check_int, check_name
from .churn import CUTOFF_KEYS, check_cutoff, cut_off
from .connectivity import check_b_connectivity, links_at
from .dynamic import DIRECTED_DYNAMICS, DYNAMIC_PARAMS, DYNAMICS, make_sequence
from .graphs import DIRECTED_GRAPHS, GRAPH_PARAMS, GRAPHS, from_links, make_graph
from .mixing import check_rule, check_weights, spectral_gap, weight_matrix

__all__ = ["Topology", "make_topology", "WeightTopology", "as_topology"]

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
        return weight_matrix(self.n, links_at(self.sequence, t), self.rule)

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
        """Raise :class:`TopologyError` unless the union over every window ``[kB, (k+1)B)``
        that meets the run is connected (strongly connected, for a directed topology); the
        message names the first broken window and the agents it cuts off (see
        :mod:`~dcnn.topology.connectivity`)."""
        check_b_connectivity(self.sequence, B=B, iterations=iterations)

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
    :data:`DIRECTED_WEIGHT_RULES` (default ``column_stochastic``). The graph comes from
    :func:`~dcnn.topology.graphs.make_graph` and the sequence from
    :func:`~dcnn.topology.dynamic.make_sequence`.

    ``params`` (``None`` values are skipped) go to the graph generator (``p``, ``radius``,
    ``k``, ``p_rewire``, ``rows``) and the sequence (``p_fail``, ``parts``, ``period``; ``p``
    for ``random``). The ``random`` and ``one_peer_exponential`` dynamics ignore the base
    graph (its name is still validated), so graph parameters are refused there.
    ``cutoff_agent``, ``cutoff_start`` and ``cutoff_length`` (all three or none) cut that
    agent off over ``[cutoff_start, cutoff_start + cutoff_length)`` on top of any dynamic
    (:func:`~dcnn.topology.churn.cut_off`).

    >>> topo = make_topology(graph="ring", n=4)
    >>> topo.weights(0)[0]
    array([0.33333333, 0.33333333, 0.        , 0.33333333])
    >>> topo = make_topology(graph="directed_ring", n=3)
    >>> topo.directed, topo.weights(0)[0]
    (True, array([0.5, 0. , 0.5]))
    """
    graph = check_name("graph", graph, GRAPHS + DIRECTED_GRAPHS)
    directed = graph in DIRECTED_GRAPHS
    if directed and dynamic in DYNAMICS and dynamic not in DIRECTED_DYNAMICS:
        raise TopologyError(f"dynamic {dynamic!r} is not available for the directed graph "
                            f"{graph!r}; choose one of: {', '.join(DIRECTED_DYNAMICS)}")
    dynamic = check_name("dynamic", dynamic, DIRECTED_DYNAMICS if directed else DYNAMICS)
    weights = check_rule(_default_rule(directed) if weights is None else weights,
                         directed=directed)
    params = {k: v for k, v in params.items() if v is not None}
    window = {k: params.pop(k) for k in CUTOFF_KEYS if k in params}
    seq_keys = DYNAMIC_PARAMS[dynamic]
    graph_keys = () if dynamic in _NO_BASE else GRAPH_PARAMS[graph]
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
        base = make_graph(graph, n, seed=seed, **graph_kw)
    window = check_cutoff(n=base.number_of_nodes(), **window)
    seq = make_sequence(dynamic, base, seed=seed, **seq_kw)
    if window is not None:
        agent, start, length = window
        seq = cut_off(seq, agent=agent, start=start, length=length)
    return Topology(seq, rule=weights)


class WeightTopology:
    """A topology given by its weights: one matrix (static) or a function ``t -> W(t)``.

    Every ``W(t)`` is checked by :func:`~dcnn.topology.mixing.check_weights` before it is
    handed out: ``(n, n)``, finite, nonnegative, positive self weights, doubly stochastic
    (``directed``: column stochastic, what push-sum needs). The graph at ``t`` is the nonzero
    pattern of ``W(t)`` (an arc ``j -> i`` where ``W[i, j] != 0``), so :meth:`check` tests
    B-connectivity like :class:`Topology` does. A function is called once at construction
    (``t = 0``) to learn ``n`` (or check it against ``n``) and fail early.
    """

    def __init__(self, weights: np.ndarray | Callable[[int], np.ndarray], *,
                 n: int | None = None, directed: bool = False, static: bool | None = None):
        self.directed = bool(directed)
        self._kind = "column" if self.directed else "doubly"
        self._fn = weights if callable(weights) else None
        W0 = self._checked(weights(0) if self._fn is not None else weights, 0, n)
        self.n = W0.shape[0]
        self.static = self._fn is None if static is None else bool(static)
        self._last: tuple[int, np.ndarray] = (0, W0)

    def __repr__(self) -> str:
        kind = "function" if self._fn is not None else "matrix"
        return f"WeightTopology({kind}, n={self.n}, directed={self.directed})"

    def _checked(self, W, t: int, n: int | None) -> np.ndarray:
        where = "weight matrix" if self._fn is None else f"weight matrix W({t})"
        return check_weights(W, n=n, kind=self._kind, name=where)

    def weights(self, t: int) -> np.ndarray:
        """``W(t)``, checked, as a fresh float64 ``(n, n)`` array."""
        t = check_int("t", t, minimum=0)
        if self._fn is not None and self._last[0] != t:
            self._last = (t, self._checked(self._fn(t), t, self.n))
        return self._last[1].copy()

    def edges(self, t: int) -> np.ndarray:
        """The arcs ``(j, i)`` with ``W[i, j] != 0``, ``i != j`` (edges ``i < j`` where either
        direction is nonzero, if undirected)."""
        A = self.weights(0 if self.static else t) != 0
        np.fill_diagonal(A, False)
        if not self.directed:
            A = np.triu(A | A.T)
            return np.argwhere(A)
        i, j = np.nonzero(A)
        return np.stack([j, i], axis=1)

    def graph_key(self, t: int):
        return 0 if self.static else None

    def graph(self, t: int) -> nx.Graph:
        """The graph (a :class:`networkx.DiGraph` if directed) of the nonzeros of ``W(t)``."""
        return from_links(self.n, self.edges(t), directed=self.directed)

    def check(self, iterations: int, B: int) -> None:
        """As :meth:`Topology.check`, on the nonzero patterns of the ``W(t)``."""
        check_b_connectivity(self, B=B, iterations=iterations)


def as_topology(topology, *, n_agents: int):
    """``topology`` as something whose ``weights(t)`` can be trusted, for ``n_agents`` agents.

    A :class:`Topology` or :class:`WeightTopology` is returned as is (after checking its
    number of agents); a weight matrix becomes a static :class:`WeightTopology`; any other
    object with ``weights(t)`` (and optionally ``directed``, ``static``) is wrapped in one, so
    each ``W(t)`` it gives is checked. Anything else, or a wrong number of agents, is a
    one-line :class:`TopologyError`.
    """
    if not isinstance(topology, (Topology, WeightTopology)):
        if isinstance(topology, (np.ndarray, list, tuple)):
            topology = WeightTopology(topology, n=n_agents)
        elif callable(getattr(topology, "weights", None)):
            topology = WeightTopology(topology.weights, n=n_agents,
                                      directed=bool(getattr(topology, "directed", False)),
                                      static=bool(getattr(topology, "static", False)))
        else:
            raise TopologyError(f"topology must be a dcnn Topology (make_topology), a weight "
                                f"matrix or an object with weights(t), got "
                                f"{type(topology).__name__}")
    if topology.n != n_agents:
        raise TopologyError(f"the topology has {topology.n} agents and the network "
                            f"{n_agents}; build it for n = {n_agents} (run.agents)")
    return topology
