"""Graph sequences, B-connectivity and the Topology built from them."""

import networkx as nx
import numpy as np
import pytest

from dcnn.errors import TopologyError
from dcnn.topology import (DYNAMICS, Topology, check_b_connectivity, find_disconnection,
                           is_doubly_stochastic, make_graph, make_sequence, make_topology)
from dcnn.topology.dynamic import (LinkFailures, OnePeerExponential, RandomGraphs, Static,
                                   Switching)


def _edges(G):
    return {tuple(sorted(e)) for e in G.edges}


def _history(seq, T=50):
    return [_edges(seq.graph(t)) for t in range(T)]


def _first_bad(seq, *, B, iterations):
    """Start of the first window that is not connected, or None."""
    d = find_disconnection(seq, B=B, iterations=iterations)
    return None if d is None else d.start


@pytest.mark.parametrize("dynamic", DYNAMICS)
def test_same_seed_same_sequence(dynamic):
    base = make_graph("erdos_renyi", 12, seed=4)
    a = make_sequence(dynamic, base, seed=9)
    b = make_sequence(dynamic, make_graph("erdos_renyi", 12, seed=4), seed=9)
    assert _history(a) == _history(b)
    for t in (0, 7):
        G = a.graph(t)
        assert sorted(G.nodes) == list(range(12)) and nx.number_of_selfloops(G) == 0


@pytest.mark.parametrize("dynamic", ["link_failure", "switching", "random"])
def test_different_seeds_differ(dynamic):
    base = make_graph("erdos_renyi", 12, seed=4)
    assert _history(make_sequence(dynamic, base, seed=1)) != \
        _history(make_sequence(dynamic, base, seed=2))


def test_static_and_zero_failures_equal_the_base():
    base = make_graph("small_world", 10, seed=1)
    for seq in (Static(base), LinkFailures(base, p_fail=0.0, seed=3)):
        assert all(h == _edges(base) for h in _history(seq))
    assert Static(base).static and not LinkFailures(base, 0.0).static


def test_link_failures_drop_edges_at_the_given_rate():
    base = nx.complete_graph(20)
    seq = LinkFailures(base, p_fail=0.3, seed=0)
    kept = [len(seq.edges(t)) / base.number_of_edges() for t in range(200)]
    assert abs(np.mean(kept) - 0.7) < 0.01
    assert all(_edges(seq.graph(t)) <= _edges(base) for t in range(20))


@pytest.mark.parametrize("parts,period", [(3, 1), (4, 2), (1, 5)])
def test_switching_groups_partition_the_base(parts, period):
    base = make_graph("torus", 16)
    seq = Switching(base, parts=parts, period=period, seed=5)
    hist = _history(seq, parts * period * 2)
    assert set().union(*hist[:parts * period]) == _edges(base)
    for t in range(parts * period):
        assert hist[t] == hist[t + parts * period]  # periodic
        assert hist[t] == hist[(t // period) * period]  # constant within a period
    groups = hist[::period][:parts]
    assert sum(len(g) for g in groups) == base.number_of_edges()  # disjoint


def test_random_graphs_keep_isolated_nodes():
    seq = RandomGraphs(30, 0.01, seed=0)
    assert all(seq.graph(t).number_of_nodes() == 30 for t in range(10))


def test_one_peer_exponential():
    seq = OnePeerExponential(8)
    assert _edges(seq.graph(2)) == {(0, 4), (1, 5), (2, 6), (3, 7)}  # perfect matching
    assert _edges(seq.graph(3)) == _edges(seq.graph(0)) == _edges(nx.cycle_graph(8))
    assert _first_bad(seq, B=3, iterations=100) is None
    assert _first_bad(seq, B=1, iterations=100) == 1
    assert _first_bad(OnePeerExponential(6), B=3, iterations=50) is None


class _GoesDark:
    """Hand-made sequence: a ring, except for iterations in [lo, hi) where it has no edges."""

    static = False

    def __init__(self, n, lo, hi):
        self.n, self.lo, self.hi = n, lo, hi

    def graph(self, t):
        return nx.empty_graph(self.n) if self.lo <= t < self.hi else nx.cycle_graph(self.n)


def test_violation_names_the_window():
    seq = _GoesDark(6, 40, 50)
    assert _first_bad(seq, B=10, iterations=100) == 40
    assert _first_bad(seq, B=11, iterations=100) is None
    assert _first_bad(seq, B=10, iterations=40) is None
    with pytest.raises(TopologyError, match=r"over iterations 40..49 \(B = 10\) leaves agents "
                                            r"1, 2, 3, 4, 5 disconnected from the others; "
                                            r"raise topology.B") as info:
        check_b_connectivity(seq, B=10, iterations=100)
    assert "\n" not in str(info.value)


def test_last_window_is_checked_in_full():
    # iterations = 101 with B = 5: the last window [100, 105) reaches past the run
    assert _first_bad(_GoesDark(6, 100, 105), B=5, iterations=101) == 100


def test_sparse_random_graphs_and_disconnected_static_are_detected():
    with pytest.raises(TopologyError, match=r"iterations 0..1 \(B = 2\)"):
        check_b_connectivity(RandomGraphs(20, 1e-3, seed=0), B=2, iterations=10)
    two = nx.disjoint_union(nx.cycle_graph(3), nx.cycle_graph(3))
    assert _first_bad(Static(two), B=10, iterations=10) == 0
    with pytest.raises(TopologyError, match="static graph is disconnected"):
        check_b_connectivity(Static(two), B=10, iterations=10)


def test_check_of_large_sequences():
    # connected sequences pass: random ones window by window, deterministic ones over a long
    # run (their repeated windows are skipped; the cost is measured, not asserted here)
    for d in ("link_failure", "random"):
        seq = make_topology(graph="erdos_renyi", n=512, dynamic=d, seed=0).sequence
        assert _first_bad(seq, B=10, iterations=1000) is None, d
    for d in ("switching", "one_peer_exponential"):
        seq = make_topology(graph="erdos_renyi", n=512, dynamic=d, seed=0).sequence
        assert _first_bad(seq, B=10, iterations=100_000) is None, d


@pytest.mark.parametrize("dynamic,params,needle", [
    ("swiching", {}, "did you mean 'switching'"),
    ("link_failure", {"p_fial": 0.1}, "did you mean 'p_fail'"),
    ("static", {"p_fail": 0.1}, "dynamic 'static' takes no parameter 'p_fail'"),
    ("link_failure", {"p_fail": 1.0}, r"p_fail = 1.0 is outside \[0, 1\)"),
    ("switching", {"parts": 0}, "parts must be an integer >= 1"),
    ("switching", {"period": 0}, "period must be an integer >= 1"),
    ("switching", {"parts": 50}, "parts = 50 exceeds the 8 edges"),
    ("random", {"p": 0}, r"p = 0 is outside \(0, 1\]"),
])
def test_make_sequence_errors(dynamic, params, needle):
    with pytest.raises(TopologyError, match=needle):
        make_sequence(dynamic, nx.cycle_graph(8), **params)


def test_negative_t_is_refused():
    with pytest.raises(TopologyError, match="t must be an integer >= 0"):
        LinkFailures(nx.cycle_graph(4), 0.1).graph(-1)


# ---------------------------------------------------------------- Topology


@pytest.mark.parametrize("dynamic", DYNAMICS)
def test_topology_weights_follow_the_active_graph(dynamic):
    topo = make_topology(graph="erdos_renyi", n=10, dynamic=dynamic, seed=1)
    assert topo.n == 10 and topo.static == (dynamic == "static")
    for t in range(5):
        W, A = topo.weights(t), nx.to_numpy_array(topo.graph(t), nodelist=range(10)) != 0
        assert is_doubly_stochastic(W) and np.array_equal(W, W.T)
        assert np.array_equal((W != 0) & ~np.eye(10, dtype=bool), A)


def test_topology_weights_are_fresh_arrays():
    for dynamic in ("static", "link_failure"):
        topo = make_topology(graph="ring", n=6, dynamic=dynamic)
        W = topo.weights(3)
        W[:] = 0
        assert is_doubly_stochastic(topo.weights(3))


def test_topology_spectral_gap_and_check():
    topo = make_topology(graph="complete", n=5, weights="uniform")
    assert topo.spectral_gap() == pytest.approx(1.0)
    topo.check(iterations=100, B=1)
    dyn = make_topology(graph="ring", n=8, dynamic="link_failure", p_fail=0.97)
    with pytest.raises(TopologyError, match="static topologies only"):
        dyn.spectral_gap()
    with pytest.raises(TopologyError, match="not B-connected"):
        dyn.check(iterations=150, B=1)


def test_make_topology_routes_parameters():
    dense = make_topology(graph="erdos_renyi", n=12, p=0.9, p_fail=0.0, dynamic="link_failure")
    assert dense.graph(0).number_of_edges() > 40
    rnd = make_topology(graph="ring", n=12, dynamic="random", p=1.0, seed=3)
    assert rnd.graph(0).number_of_edges() == 66  # the base graph is ignored
    sw = make_topology(graph="small_world", n=12, k=2, p_rewire=0.0, dynamic="switching",
                       parts=2, period=3, radius=None)
    assert set().union(*(_edges(sw.graph(t)) for t in range(6))) == _edges(nx.cycle_graph(12))
    one = make_topology(graph="ring", n=8, dynamic="one_peer_exponential", weights="uniform")
    assert is_doubly_stochastic(one.weights(2)) and one.weights(2)[0, 4] == 0.5


@pytest.mark.parametrize("kwargs,needle", [
    ({"graph": "rng"}, "did you mean 'ring'"),
    ({"graph": "ring", "weights": "unifrom"}, "did you mean 'uniform'"),
    ({"graph": "ring", "dynamic": "statc"}, "did you mean 'static'"),
    ({"graph": "ring", "p": 0.3}, "parameter 'p' has no effect with graph 'ring'"),
    ({"graph": "erdos_renyi", "dynamic": "random", "radius": 0.2}, "ignores the base graph"),
    ({"graph": "ring", "p_fail": 0.2}, "dynamic 'static'; valid parameters: none"),
    ({"graph": "ring", "dynamic": "link_failure", "weights": "uniform"},
     "'uniform' needs a regular graph at every iteration"),
    ({"graph": "star", "weights": "uniform"}, "needs a regular graph"),
])
def test_make_topology_errors(kwargs, needle):
    with pytest.raises(TopologyError, match=needle):
        make_topology(n=8, **kwargs)


def test_topology_accepts_a_sequence_directly():
    topo = Topology(Switching(nx.cycle_graph(6), parts=2), rule="max_degree")
    assert is_doubly_stochastic(topo.weights(0)) and repr(topo).startswith("Topology(")
