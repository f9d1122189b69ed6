"""Connectivity: of one graph, and B-connectivity of a sequence, with the window that breaks it.

A sequence is *B-connected* when, for every ``k >= 0``, the union of its graphs over the
iterations ``[kB, (k+1)B)`` is connected, strongly connected if the sequence is directed (one
check, :func:`find_disconnection`, for both). This is the assumption of the convergence
theorems of NEXT (Di Lorenzo and Scutari, IEEE TSIPN 2016) and SONATA, and of the
time-varying consensus literature (Nedic and Olshevsky, IEEE TAC 2015); it is checked over the
windows that meet ``[0, iterations)``. Sliding windows (every ``B`` consecutive iterations)
would demand more than the theory does; a sequence whose aligned windows pass has every
``2B - 1`` consecutive iterations connected too (they hold an aligned window). So a cut-off
agent breaks it when its window covers an aligned one, always if it lasts ``2B - 1``
iterations or more, never if it lasts less than ``B`` and the agent is linked in the rest of
the window.

A sequence has ``n``, ``static``, optionally ``directed`` (default False) and either
``edges(t)`` (an ``(m, 2)`` int link array; in a directed sequence the row ``(j, i)`` is the
arc ``j -> i``) or only ``graph(t)``. It may have ``graph_key(t)``: a hashable that is equal at
two iterations only if the graphs are equal, or ``None`` (no promise); windows with an already
checked set of keys are not checked again, so a static graph with a cut-off window costs a few
checks whatever the run length. It may have ``connectivity_fix(disconnection) -> str | None``:
the fix to suggest for a window it breaks.

Cost: one pass over the graphs (each ``edges(t)`` once), the windows checked in batches by one
:func:`scipy.sparse.csgraph.connected_components` call on the disjoint union of their graphs.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix, csr_matrix
from scipy.sparse.csgraph import breadth_first_order, connected_components

from ..errors import TopologyError
from ._checks import check_int

__all__ = ["Disconnection", "links_at", "is_connected", "find_disconnection",
           "disconnection_message", "check_b_connectivity"]

_BATCH_LINKS = 1 << 20  # links per connected_components call (memory stays ~50 MB)
_FIRST_BATCH = 64       # iterations in the first batch, so an early break is found at once
_LIST = 6               # agents named in a message before "... (k agents)"

DEFAULT_FIX = ("raise topology.B, lower topology.p_fail, or choose another topology.graph or "
               "topology.dynamic")


@dataclass(frozen=True)
class Disconnection:
    """The first window ``[start, stop)`` whose union is not (strongly) connected.

    ``main``: the largest (strongly) connected part of the union (ties: the one of the lowest
    agent); ``agents``: the others, sorted. For strong connectivity, ``cannot_reach`` and
    ``unreachable`` are the agents with no directed path to, and from, ``main`` (both equal
    ``agents`` if undirected). ``strong``: whether strong connectivity was checked;
    ``static``: the sequence is static (its one graph fails; the window is then ``[0, B)``).
    """

    start: int
    stop: int
    B: int
    agents: tuple[int, ...]
    main: tuple[int, ...] = ()
    cannot_reach: tuple[int, ...] = ()
    unreachable: tuple[int, ...] = ()
    strong: bool = False
    static: bool = False


def _raw_links(seq, t: int) -> np.ndarray:
    f = getattr(seq, "edges", None)
    raw = f(t) if f is not None else [(u, v) for u, v in seq.graph(t).edges if u != v]
    try:
        return np.asarray(raw, dtype=np.int64).reshape(-1, 2)
    except (TypeError, ValueError):
        raise TopologyError(f"the graph of {type(seq).__name__} at t = {t} is not a list of "
                            f"agent pairs (an (m, 2) integer array); agents are the integers "
                            f"0..n-1") from None


def _valid(n: int, e: np.ndarray) -> bool:
    return not e.size or (e.min() >= 0 and e.max() < n and not (e[:, 0] == e[:, 1]).any())


def links_at(seq, t: int) -> np.ndarray:
    """``edges(t)`` of ``seq``, else the edges (arcs) of ``graph(t)``, as an ``(m, 2)`` int64
    array of agents in ``0..n-1`` without self loops (a one-line error if a
    custom sequence gives anything else)."""
    e = _raw_links(seq, t)
    n = seq.n
    if _valid(n, e):
        return e
    out = (e < 0) | (e >= n)
    if out.any():
        raise TopologyError(f"the graph of {type(seq).__name__} at t = {t} links agent "
                            f"{int(e[out][0])}, outside 0..{n - 1}; agents are the integers "
                            f"0..n-1 (relabel with networkx.convert_node_labels_to_integers)")
    i = int(e[e[:, 0] == e[:, 1]][0, 0])
    raise TopologyError(f"the graph of {type(seq).__name__} at t = {t} has a self loop "
                        f"({i}, {i}); self weights come from the weight rule, leave loops "
                        f"out of the graph")


def _labels(n: int, blocks: list[np.ndarray], strong: bool) -> np.ndarray:
    """Component labels ``(K, n)`` of the ``K`` graphs whose link arrays are ``blocks``,
    computed at once on their disjoint union (node ``k n + i`` is agent ``i`` of graph ``k``).

    Where the links number at least half the ``K n^2`` possible ones (dense windows: many
    iterations of a dense graph), they are deduplicated through a ``K n^2`` mask first, which
    also gives the CSR rows already sorted."""
    K = len(blocks)
    sizes = np.array([len(b) for b in blocks])
    links = np.concatenate(blocks) if sizes.sum() else np.zeros((0, 2), np.int64)
    offset = np.repeat(np.arange(K, dtype=np.int64), sizes)
    if K * n * n <= 2 * len(links):
        mask = np.zeros(K * n * n, dtype=bool)
        mask[(offset * n + links[:, 0]) * n + links[:, 1]] = True
        code = np.flatnonzero(mask)
        indptr = np.zeros(K * n + 1, dtype=np.int64)
        np.cumsum(np.bincount(code // n, minlength=K * n), out=indptr[1:])
        A = csr_matrix((np.ones(len(code), dtype=np.int8), (code // (n * n)) * n + code % n,
                        indptr), shape=(K * n, K * n))
    else:
        links = links + (offset * n)[:, None]
        A = coo_matrix((np.ones(len(links), dtype=np.int8), (links[:, 0], links[:, 1])),
                       shape=(K * n, K * n))
    _, labels = connected_components(A, directed=strong, connection="strong")
    return labels.reshape(K, n)


def is_connected(n: int, links: np.ndarray, *, directed: bool = False) -> bool:
    """Whether the graph on ``0..n-1`` with the link array ``links`` is connected (strongly
    connected, if ``directed``: a directed path between any two agents, both ways)."""
    labels = _labels(n, [np.asarray(links, dtype=np.int64).reshape(-1, 2)], directed)[0]
    return bool((labels == labels[0]).all()) if n else True


def _describe(start: int, B: int, n: int, links: np.ndarray, labels: np.ndarray,
              strong: bool, static: bool = False) -> Disconnection | None:
    """The :class:`Disconnection` of the window at ``start`` whose union has ``links`` and
    component ``labels`` (one per agent), or None if it is one part."""
    _, first, counts = np.unique(labels, return_index=True, return_counts=True)
    if len(counts) == 1:
        return None
    main = labels[first[np.lexsort((first, -counts))[0]]]
    inside = labels == main
    agents = tuple(int(i) for i in np.flatnonzero(~inside))
    cannot_reach = unreachable = agents
    if strong:
        A = coo_matrix((np.ones(len(links), dtype=np.int8), (links[:, 0], links[:, 1])),
                       shape=(n, n)).tocsr()
        root = int(np.flatnonzero(inside)[0])
        down = set(breadth_first_order(A, root, return_predecessors=False).tolist())
        up = set(breadth_first_order(A.T.tocsr(), root, return_predecessors=False).tolist())
        unreachable = tuple(i for i in agents if i not in down)
        cannot_reach = tuple(i for i in agents if i not in up)
    return Disconnection(start, start + B, B, agents, tuple(int(i) for i in
                                                            np.flatnonzero(inside)),
                         cannot_reach, unreachable, strong, static)


def _windows(seq, B: int, iterations: int):
    """``(start, links)`` of each window not already known to be connected, in order: the
    links of one iteration per distinct ``graph_key`` (of all iterations where keys are None),
    checked once per window (per iteration only to name the culprit)."""
    key_of = getattr(seq, "graph_key", None)
    seen: set = set()
    for start in range(0, iterations, B):
        ts = range(start, start + B)
        keys = [key_of(t) for t in ts] if key_of is not None else [None]
        if None not in keys:
            sig = frozenset(keys)
            if sig in seen:
                continue
            seen.add(sig)
            firsts: dict = {}
            for t, k in zip(ts, keys):
                firsts.setdefault(k, t)
            ts = list(firsts.values())
        links = np.concatenate([_raw_links(seq, t) for t in ts])
        if not _valid(seq.n, links):
            for t in ts:
                links_at(seq, t)
        yield start, links


def find_disconnection(seq, *, B: int, iterations: int) -> Disconnection | None:
    """The first window ``[kB, (k+1)B)``, ``kB < iterations``, whose union is not connected
    (not strongly connected, if ``seq.directed``), or None.

    The last window is checked in full even where it reaches past ``iterations - 1``: a
    sequence is defined at every ``t``, and a partial window would flag B-connected sequences.
    A static sequence is checked once.
    """
    B = check_int("B", B, minimum=1)
    iterations = check_int("iterations", iterations, minimum=1)
    strong = bool(getattr(seq, "directed", False))
    n = seq.n
    if getattr(seq, "static", False):
        links = links_at(seq, 0)
        return _describe(0, B, n, links, _labels(n, [links], strong)[0], strong, static=True)
    batch: list[tuple[int, np.ndarray]] = []
    size, limit = 0, _FIRST_BATCH // B + 1

    def flush():
        labels = _labels(n, [links for _, links in batch], strong)
        bad = np.flatnonzero((labels != labels[:, :1]).any(axis=1))
        if len(bad):
            start, links = batch[bad[0]]
            return _describe(start, B, n, links, labels[bad[0]], strong)
        return None

    for start, links in _windows(seq, B, iterations):
        batch.append((start, links))
        size += len(links)
        if len(batch) >= limit or size >= _BATCH_LINKS:
            found = flush()
            if found is not None:
                return found
            batch, size, limit = [], 0, 1 << 30
    return flush() if batch else None


def _agents_text(agents: tuple[int, ...]) -> str:
    if len(agents) == 1:
        return f"agent {agents[0]}"
    shown = ", ".join(map(str, agents[:_LIST]))
    more = f", ... ({len(agents)} agents)" if len(agents) > _LIST else ""
    return f"agents {shown}{more}"


def _paths(d: Disconnection) -> str:
    """How the agents outside ``main`` fail strong connectivity, in words."""
    others = f"agent {d.main[0]}" if len(d.main) == 1 else "the others"
    if d.cannot_reach == d.unreachable:
        return f"{_agents_text(d.agents)} with no directed path to or from {others}"
    parts = []
    if d.cannot_reach:
        parts.append(f"{_agents_text(d.cannot_reach)} with no directed path to {others}")
    if d.unreachable:
        parts.append(f"{_agents_text(d.unreachable)} with no directed path from {others}")
    return ", and ".join(parts)


def disconnection_message(d: Disconnection, *, fix: str = DEFAULT_FIX) -> str:
    """The one-line message for ``d``, ending with ``fix``."""
    who = _agents_text(d.agents)
    if d.static and d.strong:
        return (f"directed graph sequence is not strongly connected: its static digraph "
                f"leaves {_paths(d)}; choose a strongly connected topology.graph")
    if d.static:
        return (f"graph sequence is not B-connected: its static graph is disconnected ({who} "
                f"cut off from the others); choose a connected topology.graph or dynamic")
    span = f"iterations {d.start}..{d.stop - 1} (B = {d.B})"
    if d.strong:
        return (f"directed graph sequence is not B-strongly connected: the union of the arcs "
                f"over {span} leaves {_paths(d)}; {fix}")
    return (f"graph sequence is not B-connected: the union of the graphs over {span} leaves "
            f"{who} disconnected from the others; {fix}")


def check_b_connectivity(seq, *, B: int, iterations: int) -> None:
    """Raise :class:`TopologyError` unless ``seq`` is B-connected (B-strongly connected, if
    directed) over ``[0, iterations)``: one line naming the first broken window, the agents it
    cuts off, and the fix (the sequence's ``connectivity_fix`` where it has one).

    >>> from dcnn.topology import make_graph, make_sequence
    >>> check_b_connectivity(make_sequence("static", make_graph("path", 3)), B=1, iterations=5)
    """
    d = find_disconnection(seq, B=B, iterations=iterations)
    if d is None:
        return
    fix = getattr(seq, "connectivity_fix", None)
    fix = (fix(d) if fix is not None else None) or DEFAULT_FIX
    raise TopologyError(disconnection_message(d, fix=fix))
