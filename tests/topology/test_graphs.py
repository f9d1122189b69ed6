"""Static generators: shape of every graph, seeding, parameters and their errors."""
import networkx as nx
import numpy as np
import pytest

from dcnn.errors import TopologyError
from dcnn.topology import GRAPHS, make_graph
from dcnn.topology.connectivity import is_connected
from dcnn.topology.graphs import gnp_edges, link_array

RANDOM = ("erdos_renyi", "geometric", "small_world")


def _edges(G):
    return {tuple(sorted(e)) for e in G.edges}


@pytest.mark.parametrize("n", [4, 8, 9, 16])
@pytest.mark.parametrize("name", GRAPHS)
def test_every_graph_is_simple_undirected_connected_on_0_to_n(name, n):
    G = make_graph(name, n, seed=3)
    assert type(G) is nx.Graph
    assert sorted(G.nodes) == list(range(n))
    assert nx.number_of_selfloops(G) == 0
    assert nx.is_connected(G)
    assert is_connected(n, link_array(G))


@pytest.mark.parametrize("name", RANDOM)
def test_random_graphs_are_seeded(name):
    a, b = make_graph(name, 16, seed=7), make_graph(name, 16, seed=7)
    assert _edges(a) == _edges(b)
    assert _edges(make_graph(name, 16, seed=8)) != _edges(a)


def test_known_shapes():
    assert _edges(make_graph("ring", 4)) == {(0, 1), (1, 2), (2, 3), (0, 3)}
    assert _edges(make_graph("star", 4)) == {(0, 1), (0, 2), (0, 3)}
    assert make_graph("complete", 1).number_of_nodes() == 1
    # exponential on 8 nodes: offsets 1, 2, 4 -> every node has degree 2 + 2 + 1
    assert set(dict(make_graph("exponential", 8).degree).values()) == {5}
    assert _edges(make_graph("exponential", 8)) >= {(0, 1), (0, 2), (0, 4), (1, 5), (0, 7)}


def test_torus_default_and_explicit_rows():
    G = make_graph("torus", 12)  # 3 x 4
    assert set(dict(G.degree).values()) == {4}
    assert G.number_of_edges() == 24
    H = make_graph("torus", 12, rows=2)  # 2 x 6: the two rows' wrap edges coincide
    assert set(dict(H.degree).values()) == {3}


def test_erdos_renyi_parameter_changes_density():
    sparse = make_graph("erdos_renyi", 30, p=0.2, seed=0).number_of_edges()
    dense = make_graph("erdos_renyi", 30, p=0.9, seed=0).number_of_edges()
    assert sparse < dense
    assert make_graph("erdos_renyi", 6, p=1.0).number_of_edges() == 15


def test_small_world_parameters():
    G = make_graph("small_world", 10, k=2, p_rewire=0.0)
    assert _edges(G) == _edges(nx.cycle_graph(10))
    assert make_graph("small_world", 10, k=6, p_rewire=0.0).number_of_edges() == 30


def test_gnp_edges_is_exact_at_p_1_and_unbiased():
    for n in (2, 3, 7, 40):
        full = gnp_edges(n, 1.0, np.random.default_rng(0))
        assert (full == np.stack(np.triu_indices(n, 1), axis=1)).all()
    e = gnp_edges(200, 0.1, np.random.default_rng(1))
    assert (e[:, 0] < e[:, 1]).all() and len(np.unique(e, axis=0)) == len(e)
    assert abs(len(e) / (200 * 199 / 2) - 0.1) < 0.01


def test_unknown_graph_suggests_the_closest_name():
    with pytest.raises(TopologyError, match="graph 'rng' is unknown; did you mean 'ring'"):
        make_graph("rng", 8)


@pytest.mark.parametrize("name,n,params,needle", [
    ("ring", 8, {"p": 0.3}, "graph 'ring' takes no parameter 'p'"),
    ("erdos_renyi", 8, {"pp": 0.3}, "did you mean 'p'"),
    ("small_world", 8, {"p_rewrite": 0.3}, "did you mean 'p_rewire'"),
    ("erdos_renyi", 8, {"p": 0.0}, r"p = 0.0 is outside \(0, 1\]"),
    ("erdos_renyi", 8, {"p": 1.5}, r"choose p in \(0, 1\]"),
    ("erdos_renyi", 8, {"p": "x"}, "p must be a number"),
    ("geometric", 8, {"radius": -1}, "radius must be a number > 0"),
    ("small_world", 8, {"k": 3}, "even k < n = 8, got k = 3"),
    ("small_world", 8, {"k": 8}, "choose k = 4"),
    ("small_world", 8, {"p_rewire": 2}, "p_rewire = 2 is outside"),
    ("torus", 7, {}, "got n = 7"),
    ("torus", 12, {"rows": 5}, "rows = 5 does not fit n = 12"),
    ("ring", 1, {}, "integer >= 2, got 1"),
    ("ring", "8", {}, "integer >= 2, got '8'"),
    ("complete", 0, {}, "integer >= 1, got 0"),
])
def test_bad_parameters_name_the_value_and_the_fix(name, n, params, needle):
    with pytest.raises(TopologyError, match=needle) as info:
        make_graph(name, n, **params)
    assert "\n" not in str(info.value)


def test_negative_seed_is_refused():
    with pytest.raises(TopologyError, match="seed must be an integer >= 0"):
        make_graph("erdos_renyi", 8, seed=-1)


def test_hopeless_connectivity_suggests_larger_p():
    with pytest.raises(TopologyError, match="disconnected in 1000 draws; choose a larger p"):
        make_graph("erdos_renyi", 20, p=1e-4)
