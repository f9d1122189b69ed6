"""Graphs, time-varying sequences and weight matrices, as pure seeded functions.

Agents are nodes ``0..n-1``. ``W`` is a float64 ``(n, n)`` array, row ``i`` = the weights agent
``i`` gives to what it receives (``x_i <- sum_j W[i, j] x_j``). Building a topology never
touches MPI or a global random state: the same ``(seed, t)`` gives the same graph everywhere.

One vocabulary for undirected and directed graphs: :func:`make_graph` builds either kind
(:data:`GRAPHS`, :data:`DIRECTED_GRAPHS`; an arc ``j -> i`` means ``i`` receives from ``j``),
:func:`make_sequence` runs it through a dynamic (:data:`DYNAMICS`, :data:`DIRECTED_DYNAMICS`),
every sequence has ``directed`` and ``edges(t)``, and :func:`check_b_connectivity` checks
B-connectivity (strong connectivity for a directed sequence), naming the first window that
breaks and the agents it cuts off. Undirected graphs get doubly stochastic weights
(:data:`WEIGHT_RULES`); directed ones column- or row-stochastic weights
(:data:`DIRECTED_WEIGHT_RULES`), for push-sum methods such as SONATA. :func:`cut_off` cuts one
agent off for a window (``make_topology(cutoff_agent=...)``). User-given weights go through
:func:`as_topology` / :func:`check_weights`.

The building blocks (sequence classes, link arrays, the cut-off class, per-rule shortcuts)
stay importable from the submodules ``graphs``, ``dynamic``, ``churn``, ``connectivity``,
``mixing`` and ``topology``.
"""
from .churn import cut_off
from .connectivity import check_b_connectivity, find_disconnection
from .dynamic import DIRECTED_DYNAMICS, DYNAMICS, make_sequence
from .graphs import DIRECTED_GRAPHS, GRAPHS, make_graph
from .mixing import (DIRECTED_WEIGHT_RULES, WEIGHT_RULES, check_weights, is_column_stochastic,
                     is_doubly_stochastic, is_row_stochastic, mixing_matrix, spectral_gap)
# kept importable here for existing callers (dcnn.algorithms.sonata, tests), not in __all__
from .mixing import check_column_stochastic, check_doubly_stochastic, row_stochastic  # noqa: F401
from .topology import Topology, as_topology, make_topology

__all__ = [
    "make_topology", "Topology", "as_topology",
    "GRAPHS", "DIRECTED_GRAPHS", "make_graph",
    "DYNAMICS", "DIRECTED_DYNAMICS", "make_sequence", "cut_off",
    "check_b_connectivity", "find_disconnection",
    "WEIGHT_RULES", "DIRECTED_WEIGHT_RULES", "mixing_matrix", "check_weights", "spectral_gap",
    "is_doubly_stochastic", "is_column_stochastic", "is_row_stochastic",
]
