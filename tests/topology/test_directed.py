"""Digraphs, directed sequences, column/row-stochastic weights, B-strong connectivity, and
directed topologies built by make_topology: the same functions and classes as the undirected
ones, given a networkx.DiGraph (or ``directed=True``)."""
import networkx as nx
import numpy as np
import pytest

from dcnn.errors import TopologyError
from dcnn.topology import (DIRECTED_DYNAMICS, DIRECTED_GRAPHS, DYNAMICS, GRAPHS, Topology,
                           check_b_connectivity, find_disconnection, is_column_stochastic,
                           is_row_stochastic, make_graph, make_sequence, make_topology,
                           mixing_matrix)
from dcnn.topology.connectivity import is_connected
from dcnn.topology.dynamic import LinkFailures, OnePeerExponential, Static
from dcnn.topology.graphs import link_array
from dcnn.topology.mixing import check_column_stochastic, column_stochastic, row_stochastic


def _arcs(G):
    return set(G.edges)


def _history(seq, T=40):
    return [_arcs(seq.graph(t)) for t in range(T)]


def _first_bad(seq, *, B, iterations):
    """Start of the first window that is not strongly connected, or None."""
    d = find_disconnection(seq, B=B, iterations=iterations)
    return None if d is None else d.start


def _strongly_connected(n, arcs):
    return is_connected(n, arcs, directed=True)


# ---------------------------------------------------------------- generators
@pytest.mark.parametrize("n", [2, 3, 5, 8, 16])
@pytest.mark.parametrize("name", DIRECTED_GRAPHS)
def test_generators_are_strongly_connected_digraphs(name, n):
    G = make_graph(name, n, seed=4)
    assert G.is_directed() and sorted(G.nodes) == list(range(n))
    assert nx.number_of_selfloops(G) == 0
    assert nx.is_strongly_connected(G) and _strongly_connected(n, link_array(G))


def test_directed_ring_and_exponential_arcs():
    assert _arcs(make_graph("directed_ring", 4)) == {(0, 1), (1, 2), (2, 3), (3, 0)}
    expo = make_graph("directed_exponential", 8)
    assert _arcs(expo) == {(i, (i + s) % 8) for i in range(8) for s in (1, 2, 4)}
    assert not expo.has_edge(1, 0)  # one way only


def test_random_digraph_is_seeded_and_asymmetric():
    a = make_graph("random_digraph", 20, seed=7)
    assert _arcs(a) == _arcs(make_graph("random_digraph", 20, seed=7))
    assert _arcs(a) != _arcs(make_graph("random_digraph", 20, seed=8))
    assert any(not a.has_edge(i, j) for j, i in a.edges)  # some arcs have no reverse
    full = make_graph("random_digraph", 6, p=1.0)
    assert full.number_of_edges() == 30


def test_random_digraph_arc_rate():
    n, p = 60, 0.2
    counts = [make_graph("random_digraph", n, seed=s, p=p).number_of_edges()
              for s in range(20)]
    assert abs(np.mean(counts) / (n * (n - 1)) - p) < 0.01


def test_hopeless_random_digraph_is_refused():
    with pytest.raises(TopologyError, match=r"not strongly connected in 1000 draws; choose a "
                                            r"larger p") as info:
        make_graph("random_digraph", 10, p=1e-3)
    assert "\n" not in str(info.value)


def test_strong_connectivity_is_not_weak_connectivity():
    path = np.array([[0, 1], [1, 2], [2, 3]])
    assert not _strongly_connected(4, path)
    assert _strongly_connected(4, np.vstack([path, [[3, 0]]]))
    assert not _strongly_connected(4, np.array([[0, 1], [1, 0], [2, 3], [3, 2]]))


# ---------------------------------------------------------------- sequences
@pytest.mark.parametrize("dynamic", DIRECTED_DYNAMICS)
@pytest.mark.parametrize("name", DIRECTED_GRAPHS)
def test_same_seed_same_sequence(name, dynamic):
    a = make_sequence(dynamic, make_graph(name, 10, seed=4), seed=9)
    b = make_sequence(dynamic, make_graph(name, 10, seed=4), seed=9)
    assert _history(a) == _history(b)
    G = a.graph(5)
    assert G.is_directed() and sorted(G.nodes) == list(range(10))


def test_arc_failures_are_seeded_independent_per_arc_and_at_the_rate():
    base = make_graph("random_digraph", 20, seed=0, p=0.5)
    seq = LinkFailures(base, p_fail=0.3, seed=0)
    assert _history(seq) != _history(LinkFailures(base, p_fail=0.3, seed=1))
    kept = [len(seq.edges(t)) / base.number_of_edges() for t in range(200)]
    assert abs(np.mean(kept) - 0.7) < 0.01
    assert all(_arcs(seq.graph(t)) <= _arcs(base) for t in range(20))
    both = nx.complete_graph(12).to_directed()  # arcs i -> j and j -> i fail apart
    h = LinkFailures(both, p_fail=0.5, seed=3).graph(0)
    assert any(h.has_edge(i, j) != h.has_edge(j, i) for i, j in both.edges)
    assert _history(LinkFailures(base, p_fail=0.0)) == [_arcs(base)] * 40


def test_directed_one_peer_exponential():
    seq = OnePeerExponential(8, directed=True)
    assert _arcs(seq.graph(0)) == {(i, (i + 1) % 8) for i in range(8)}
    assert _arcs(seq.graph(2)) == {(i, (i + 4) % 8) for i in range(8)}
    assert _arcs(seq.graph(3)) == _arcs(seq.graph(0))
    for t in range(3):
        W = Topology(seq).weights(t)  # one sender, one receiver each: (I + shift) / 2
        assert np.allclose(W.sum(0), 1) and np.allclose(W.sum(1), 1)
    assert _first_bad(seq, B=3, iterations=60) is None
    assert _first_bad(seq, B=1, iterations=60) == 1
    assert _first_bad(OnePeerExponential(6, directed=True), B=3, iterations=60) is None


def test_one_class_per_dynamic_for_both_kinds():
    # the directed flag comes from the base graph; the undirected and directed link failures
    # draw from separate seed streams
    ring, diring = make_graph("ring", 6), make_graph("directed_ring", 6)
    for dynamic in DIRECTED_DYNAMICS:
        u, d = make_sequence(dynamic, ring, seed=1), make_sequence(dynamic, diring, seed=1)
        assert type(u) is type(d) and not u.directed and d.directed
        assert d.graph(0).is_directed() and not u.graph(0).is_directed()
    assert Static(diring).edges(0).tolist() == [[0, 1], [1, 2], [2, 3], [3, 4], [4, 5], [5, 0]]
    with pytest.raises(TopologyError, match="directed dynamic 'switching' is unknown"):
        make_sequence("switching", diring)


class _LosesTheWayBack:
    """Hand-made sequence: a directed ring, except in [lo, hi) where the arc n-1 -> 0 is
    missing (a directed path: weakly but not strongly connected)."""

    static, directed = False, True

    def __init__(self, n, lo, hi):
        self.n, self.lo, self.hi = n, lo, hi

    def graph(self, t):
        G = make_graph("directed_ring", self.n)
        if self.lo <= t < self.hi:
            G.remove_edge(self.n - 1, 0)
        return G


def test_strong_connectivity_check_names_the_window():
    seq = _LosesTheWayBack(6, 40, 50)
    assert _first_bad(seq, B=10, iterations=100) == 40
    assert _first_bad(seq, B=11, iterations=100) is None
    assert _first_bad(seq, B=10, iterations=40) is None
    # the ring 0 -> 1 -> ... -> 5 -> 0 without 5 -> 0 over [40, 50): nobody gets back to 0
    with pytest.raises(TopologyError, match=r"not B-strongly connected: the union of the arcs "
                                            r"over iterations 40..49 \(B = 10\) leaves agents "
                                            r"1, 2, 3, 4, 5 with no directed path to agent 0; "
                                            r"raise topology.B") as info:
        check_b_connectivity(seq, B=10, iterations=100)
    assert "\n" not in str(info.value)
    path = nx.DiGraph([(0, 1), (1, 2)])
    assert _first_bad(Static(path), B=5, iterations=9) == 0
    with pytest.raises(TopologyError, match="static digraph"):
        check_b_connectivity(Static(path), B=5, iterations=9)


def test_topology_check_uses_strong_connectivity():
    dyn = make_topology(graph="directed_ring", n=8, dynamic="link_failure", p_fail=0.9)
    with pytest.raises(TopologyError, match="not B-strongly connected"):
        dyn.check(iterations=100, B=2)
    make_topology(graph="directed_ring", n=8, dynamic="link_failure", p_fail=0.3,
                  seed=1).check(iterations=200, B=20)


# ---------------------------------------------------------------- weights
def test_column_and_row_stochastic_hand_computed():
    # 0 -> 1, 0 -> 2, 1 -> 2, 2 -> 0: out-degrees 2, 1, 1; in-degrees 1, 1, 2
    G = nx.DiGraph([(0, 1), (0, 2), (1, 2), (2, 0)])
    C = np.array([[1 / 3, 0, 1 / 2],
                  [1 / 3, 1 / 2, 0],
                  [1 / 3, 1 / 2, 1 / 2]])
    R = np.array([[1 / 2, 0, 1 / 2],
                  [1 / 2, 1 / 2, 0],
                  [1 / 3, 1 / 3, 1 / 3]])
    np.testing.assert_allclose(column_stochastic(G), C, rtol=0, atol=1e-15)
    np.testing.assert_allclose(row_stochastic(G), R, rtol=0, atol=1e-15)
    assert is_column_stochastic(C) and not is_row_stochastic(C)
    assert is_row_stochastic(R) and not is_column_stochastic(R)


@pytest.mark.parametrize("dynamic", DIRECTED_DYNAMICS)
@pytest.mark.parametrize("name", DIRECTED_GRAPHS)
def test_topology_weights_are_column_stochastic_on_the_active_arcs(name, dynamic):
    topo = make_topology(graph=name, n=9, dynamic=dynamic, seed=2)
    assert topo.directed and topo.rule == "column_stochastic"
    for t in range(6):
        W, G = topo.weights(t), topo.graph(t)
        assert W.dtype == np.float64 and W.shape == (9, 9) and (W >= 0).all()
        np.testing.assert_allclose(W.sum(axis=0), 1.0, rtol=0, atol=1e-12)
        assert is_column_stochastic(W) and check_column_stochastic(W) is not None
        # an arc j -> i puts weight on W[i, j]: the transpose of networkx's adjacency
        A = nx.to_numpy_array(G, nodelist=range(9)).T != 0
        assert np.array_equal((W != 0) & ~np.eye(9, dtype=bool), A)
        assert (np.diagonal(W) > 0).all()


def test_random_digraph_weights_are_not_doubly_stochastic():
    topo = make_topology(graph="random_digraph", n=10, seed=0)
    W = topo.weights(0)
    assert is_column_stochastic(W) and not is_row_stochastic(W)
    rows = make_topology(graph="random_digraph", n=10, seed=0, weights="row_stochastic")
    assert is_row_stochastic(rows.weights(0)) and not is_column_stochastic(rows.weights(0))


def test_check_column_stochastic_messages():
    with pytest.raises(TopologyError, match="column 1 sums to 0.5"):
        check_column_stochastic(np.array([[1.0, 0.25], [0.0, 0.25]]))
    with pytest.raises(TopologyError, match=r"negative entry W\[0, 1\]"):
        check_column_stochastic(np.array([[1.0, -0.5], [0.0, 1.5]]))


# ---------------------------------------------------------------- make_topology
@pytest.mark.parametrize("graph", GRAPHS)
def test_undirected_topologies_are_not_directed(graph):
    assert make_topology(graph=graph, n=9 if graph != "torus" else 8, seed=1).directed is False


@pytest.mark.parametrize("dynamic", DYNAMICS)
def test_undirected_dynamics_are_not_directed(dynamic):
    topo = make_topology(graph="ring", n=8, dynamic=dynamic)
    assert topo.directed is False and topo.rule == "metropolis_hastings"


def test_make_topology_routes_directed_parameters():
    dense = make_topology(graph="random_digraph", n=10, p=0.9, seed=1)
    assert dense.graph(0).number_of_edges() > 60
    one = make_topology(graph="directed_ring", n=8, dynamic="one_peer_exponential")
    assert _arcs(one.graph(1)) == {(i, (i + 2) % 8) for i in range(8)}
    seq = make_topology(graph="directed_exponential", n=8, dynamic="link_failure",
                        p_fail=0.5, seed=4).sequence
    assert isinstance(seq, LinkFailures) and seq.directed and seq.p_fail == 0.5 and seq.seed == 4


@pytest.mark.parametrize("kwargs,needle", [
    ({"graph": "directed_rng"}, "did you mean 'directed_ring'"),
    ({"graph": "directed_ring", "dynamic": "switching"},
     "dynamic 'switching' is not available for the directed graph 'directed_ring'"),
    ({"graph": "directed_ring", "dynamic": "random"}, "choose one of: static, link_failure"),
    ({"graph": "directed_ring", "weights": "metropolis_hastings"},
     "needs an undirected graph and this graph is directed; use weights 'column_stochastic'"),
    ({"graph": "ring", "weights": "column_stochastic"}, "is for directed graphs"),
    ({"graph": "directed_ring", "weights": "colum_stochastic"},
     "did you mean 'column_stochastic'"),
    ({"graph": "directed_ring", "p": 0.3}, "parameter 'p' has no effect with graph "
                                           "'directed_ring'"),
    ({"graph": "random_digraph", "dynamic": "one_peer_exponential", "p": 0.3},
     "ignores the base graph"),
    ({"graph": "random_digraph", "p": 0.0}, r"p = 0.0 is outside \(0, 1\]"),
    ({"graph": "directed_ring", "dynamic": "link_failure", "p_fail": 1.0},
     r"p_fail = 1.0 is outside \[0, 1\)"),
])
def test_make_topology_directed_errors(kwargs, needle):
    with pytest.raises(TopologyError, match=needle):
        make_topology(n=8, **kwargs)


def test_mixing_matrix_on_digraphs_and_rule_mismatch():
    G = make_graph("directed_ring", 4)
    assert np.array_equal(mixing_matrix(G, "column_stochastic"), column_stochastic(G))
    with pytest.raises(TopologyError, match="use weights 'column_stochastic'"):
        mixing_matrix(G)
    # one link array for both kinds: arcs (j, i) as given, edges sorted i < j
    assert link_array(nx.DiGraph([(2, 0), (0, 1)])).tolist() == [[0, 1], [2, 0]]
    assert link_array(nx.Graph([(2, 0), (0, 1)])).tolist() == [[0, 1], [0, 2]]
    with pytest.raises(TopologyError, match="is for directed graphs"):
        mixing_matrix(nx.cycle_graph(4), "column_stochastic")
