"""Weight rules: the contract over every generator, hand-computed oracles, checks, gap."""
import networkx as nx
import numpy as np
import pytest

from dcnn.errors import TopologyError
from dcnn.topology import (GRAPHS, WEIGHT_RULES, is_column_stochastic, is_doubly_stochastic,
                           is_row_stochastic, make_graph, mixing_matrix, spectral_gap)
from dcnn.topology.mixing import (check_doubly_stochastic, max_degree, metropolis_hastings,
                                  uniform)

REGULAR = ("ring", "complete", "torus", "exponential")


def _contract(G, W):
    n = G.number_of_nodes()
    assert W.dtype == np.float64 and W.shape == (n, n)
    assert (W >= 0).all()
    assert np.array_equal(W, W.T)
    assert is_doubly_stochastic(W) and check_doubly_stochastic(W) is not None
    A = nx.to_numpy_array(G, nodelist=range(n)) != 0
    off = ~np.eye(n, dtype=bool)
    assert np.array_equal((W != 0) & off, A & off)  # weights only on edges


CASES = [(g, r) for g in GRAPHS for r in WEIGHT_RULES if r != "uniform" or g in REGULAR]


@pytest.mark.parametrize("n", [4, 6, 9, 16])
@pytest.mark.parametrize("name,rule", CASES)
def test_every_rule_on_every_graph_is_doubly_stochastic_and_symmetric(name, rule, n):
    G = make_graph(name, n, seed=2)
    _contract(G, mixing_matrix(G, rule))


@pytest.mark.parametrize("n", [1, 2, 5, 8])
def test_uniform_on_complete_graph_is_exact_average(n):
    W = uniform(nx.complete_graph(n))
    assert np.array_equal(W, np.full((n, n), 1.0 / n))


def test_metropolis_hastings_hand_computed():
    # triangle 0-1-2 with a tail 2-3: degrees 2, 2, 3, 1
    G = nx.Graph([(0, 1), (1, 2), (2, 0), (2, 3)])
    expected = np.array([[5 / 12, 1 / 3, 1 / 4, 0],
                         [1 / 3, 5 / 12, 1 / 4, 0],
                         [1 / 4, 1 / 4, 1 / 4, 1 / 4],
                         [0, 0, 1 / 4, 3 / 4]])
    np.testing.assert_allclose(metropolis_hastings(G), expected, rtol=0, atol=1e-15)


def test_max_degree_hand_computed():
    W = max_degree(nx.star_graph(3))  # max degree 3 -> 1/4 on every edge
    expected = np.array([[1 / 4, 1 / 4, 1 / 4, 1 / 4],
                         [1 / 4, 3 / 4, 0, 0],
                         [1 / 4, 0, 3 / 4, 0],
                         [1 / 4, 0, 0, 3 / 4]])
    np.testing.assert_allclose(W, expected, rtol=0, atol=1e-15)


def test_isolated_node_keeps_its_value():
    G = nx.empty_graph(3)
    G.add_edge(0, 1)
    W = metropolis_hastings(G)
    assert W[2, 2] == 1.0 and is_doubly_stochastic(W)


def test_uniform_on_irregular_graph_points_to_metropolis_hastings():
    with pytest.raises(TopologyError, match="needs a regular graph.*'metropolis_hastings'"):
        uniform(nx.path_graph(4))


def test_unknown_rule_suggests_the_closest_name():
    with pytest.raises(TopologyError, match="did you mean 'metropolis_hastings'"):
        mixing_matrix(nx.cycle_graph(4), "metropolis")


def test_bad_graphs_are_refused():
    with pytest.raises(TopologyError, match="directed"):
        mixing_matrix(nx.DiGraph([(0, 1)]))
    with pytest.raises(TopologyError, match="0..n-1"):
        mixing_matrix(nx.Graph([("a", "b")]))


def test_stochasticity_predicates_and_check_messages():
    R = np.array([[0.5, 0.5], [0.25, 0.75]])  # rows sum to 1, columns do not
    assert is_row_stochastic(R) and not is_column_stochastic(R)
    assert is_column_stochastic(R.T) and not is_doubly_stochastic(R)
    with pytest.raises(TopologyError, match="column 0 sums to 0.75"):
        check_doubly_stochastic(R)
    with pytest.raises(TopologyError, match="row 1 sums to 1.25"):
        check_doubly_stochastic(np.array([[0.5, 0.5], [0.5, 0.75]]))
    N = np.array([[1.5, -0.5], [-0.5, 1.5]])
    assert not is_doubly_stochastic(N)
    with pytest.raises(TopologyError, match=r"negative entry W\[0, 1\]"):
        check_doubly_stochastic(N)
    with pytest.raises(TopologyError, match="must be square"):
        check_doubly_stochastic(np.ones((2, 3)))


def test_spectral_gap():
    assert spectral_gap(uniform(nx.complete_graph(6))) == pytest.approx(1.0, abs=1e-12)
    gaps = [spectral_gap(metropolis_hastings(nx.cycle_graph(n))) for n in range(4, 13)]
    assert all(0 < g < 1 for g in gaps)
    assert all(a > b for a, b in zip(gaps, gaps[1:]))
    # ring with MH: eigenvalues (1 + 2 cos(2 pi k / n)) / 3
    assert gaps[1] == pytest.approx(1 - (1 + 2 * np.cos(2 * np.pi / 5)) / 3)
    two = nx.disjoint_union(nx.complete_graph(3), nx.complete_graph(3))
    assert spectral_gap(metropolis_hastings(two)) == pytest.approx(0.0, abs=1e-12)
    # non-symmetric: eigenvalues 1 and 0.25
    assert spectral_gap(np.array([[0.5, 0.5], [0.25, 0.75]])) == pytest.approx(0.75)
    assert spectral_gap(np.ones((1, 1))) == 1.0
