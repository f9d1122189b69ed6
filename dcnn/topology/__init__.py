"""Graphs, time-varying sequences and weight matrices, as pure seeded functions.

Agents are nodes ``0..n-1``. ``W`` is a float64 ``(n, n)`` array, row ``i`` = the weights agent
``i`` gives to what it receives (``x_i <- sum_j W[i, j] x_j``). Building a topology never
touches MPI or a global random state: the same ``(seed, t)`` gives the same graph everywhere.
Undirected graphs get doubly stochastic weights; directed ones (an arc ``j -> i``: ``i``
receives from ``j``) get column-stochastic weights, for push-sum methods such as SONATA.
Link churn: per-iteration link failures (the ``link_failure`` dynamic) and one agent cut off
for a window (:func:`cut_off`, ``make_topology(cutoff_agent=...)``); a sequence that is not
B-connected is refused up front by :meth:`Topology.check`, naming the window that breaks.
User-given weights go through :func:`as_topology` / :func:`check_weights`.
"""
from .churn import CUTOFF_KEYS, CutOff, DirectedCutOff, check_cutoff, cut_off
from .connectivity import Disconnection, check_b_connectivity, find_disconnection
from .directed import (DIRECTED_DYNAMICS, DIRECTED_GRAPHS, ArcFailures, DiGraphSequence,
                       DirectedOnePeerExponential, DirectedStatic, arc_array,
                       b_strong_connectivity_violation, check_b_strongly_connected,
                       is_strongly_connected, make_digraph, make_directed_sequence)
from .dynamic import (DYNAMICS, GraphSequence, LinkFailures, OnePeerExponential, RandomGraphs,
                      Static, Switching, b_connectivity_violation, check_b_connected,
                      make_sequence)
from .graphs import GRAPHS, make_graph
from .mixing import (DIRECTED_WEIGHT_RULES, WEIGHT_KINDS, WEIGHT_RULES,
                     check_column_stochastic, check_doubly_stochastic, check_weights,
                     column_stochastic, is_column_stochastic, is_doubly_stochastic,
                     is_row_stochastic, max_degree, metropolis_hastings, mixing_matrix,
                     row_stochastic, spectral_gap, uniform)
from .topology import Topology, WeightTopology, as_topology, make_topology

__all__ = [
    "GRAPHS", "make_graph",
    "DYNAMICS", "GraphSequence", "Static", "LinkFailures", "Switching", "RandomGraphs",
    "OnePeerExponential", "make_sequence", "b_connectivity_violation", "check_b_connected",
    "DIRECTED_GRAPHS", "make_digraph", "arc_array", "is_strongly_connected",
    "DIRECTED_DYNAMICS", "DiGraphSequence", "DirectedStatic", "ArcFailures",
    "DirectedOnePeerExponential", "make_directed_sequence", "b_strong_connectivity_violation",
    "check_b_strongly_connected",
    "WEIGHT_RULES", "DIRECTED_WEIGHT_RULES", "mixing_matrix", "metropolis_hastings",
    "max_degree", "uniform", "column_stochastic", "row_stochastic",
    "is_row_stochastic", "is_column_stochastic", "is_doubly_stochastic",
    "check_doubly_stochastic", "check_column_stochastic", "WEIGHT_KINDS", "check_weights",
    "spectral_gap",
    "Disconnection", "find_disconnection", "check_b_connectivity",
    "CUTOFF_KEYS", "CutOff", "DirectedCutOff", "cut_off", "check_cutoff",
    "Topology", "make_topology", "WeightTopology", "as_topology",
]
