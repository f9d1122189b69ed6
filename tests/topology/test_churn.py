"""Link churn: the ridge oracle is reached with half of the links failing at every iteration
and with an agent cut off for a window; a cut-off that breaks B-connectivity is refused up
front (API and ``dcnn run``) with the window where it breaks; user-given weights and
sequences are validated with one-line errors."""
import os
import subprocess
import sys
import time

import networkx as nx
import numpy as np
import pytest

from dcnn.config import load_config
from dcnn.data import load_dataset
from dcnn.errors import TopologyError
from dcnn.runner import run_experiment
from dcnn.topology import (DIRECTED_DYNAMICS, DYNAMICS, Topology, as_topology, check_weights,
                           cut_off, find_disconnection, is_column_stochastic,
                           is_doubly_stochastic, make_graph, make_topology)
from dcnn.topology.churn import CutOff
from dcnn.topology.connectivity import Disconnection
from dcnn.topology.dynamic import Static, Switching
from dcnn.topology.mixing import check_column_stochastic, check_doubly_stochastic
from dcnn.topology.topology import WeightTopology

from conftest import ROOT, error_of
from oracles import ridge_optimum

LAM = 1e-2
BASE = ["run.progress=false", "run.reference=false", "data.name='diabetes'",
        "model.hidden=[]", f"model.lam={LAM}"]
CHURN = ["topology.graph='erdos_renyi'", "topology.dynamic='link_failure'",
         "topology.p_fail=0.5", "topology.B=10"]
CUT = ["topology.cutoff_agent=3", "topology.cutoff_start=50", "topology.cutoff_length=8"]


def _gap(overrides, rounds):
    cfg = load_config(overrides=[*BASE, *overrides, f"run.iterations={rounds}",
                                 f"run.eval_every={rounds}"])
    res = run_experiment(cfg, out=None, verbose=False)
    opt = ridge_optimum(load_dataset("diabetes", seed=0), LAM)
    return (res.history.last["objective"] - opt) / opt, res


# ---------------------------------------------------------------- convergence under churn
# name: (config overrides, rounds); first reaching 1e-6 at about 2/3 of the rounds
METHODS = {
    "next-pl": (["algorithm.name='next'", "algorithm.surrogate='pl'",
                 "algorithm.schedule='constant'"], 900),
    "gt": (["algorithm.name='gt'", "algorithm.alpha0=0.8"], 1800),
}


@pytest.mark.parametrize("name", list(METHODS))
def test_ridge_optimum_is_reached_with_half_of_the_links_failing(name):
    overrides, rounds = METHODS[name]
    gap, res = _gap([*overrides, *CHURN, "run.agents=6"], rounds)
    assert -1e-12 <= gap <= 1e-6, (name, gap)
    assert res.history.last["consensus_error"] < 1e-8
    # the run's graphs really lost half of their links at every iteration
    seq = make_topology(graph="erdos_renyi", n=6, dynamic="link_failure", p_fail=0.5,
                        seed=0).sequence
    kept = [len(seq.edges(t)) / seq.base.number_of_edges() for t in range(rounds)]
    assert 0.45 < np.mean(kept) < 0.55


def test_ridge_optimum_is_reached_with_an_agent_cut_off():
    overrides, rounds = METHODS["next-pl"]
    gap, res = _gap([*overrides, *CHURN, *CUT, "run.agents=8"], rounds)
    assert -1e-12 <= gap <= 1e-6, gap
    # the topology of that run: agent 3 has only its self loop over 50..57, nowhere else
    kw = dict(graph="erdos_renyi", n=8, dynamic="link_failure", p_fail=0.5, seed=0)
    cut = make_topology(**kw, cutoff_agent=3, cutoff_start=50, cutoff_length=8)
    whole = make_topology(**kw)
    cut.check(iterations=rounds, B=10)
    e3 = np.eye(8)[3]
    for t in range(40, 70):
        W = cut.weights(t)
        assert is_doubly_stochastic(W)
        if 50 <= t < 58:
            assert np.array_equal(W[3], e3) and np.array_equal(W[:, 3], e3), t
        else:
            assert np.array_equal(W, whole.weights(t)), t
    assert any(W[3, 3] < 1 for W in map(whole.weights, range(50, 58)))


# ---------------------------------------------------------------- the cut-off window
CASES = [("erdos_renyi", d) for d in DYNAMICS] + [("random_digraph", d)
                                                  for d in DIRECTED_DYNAMICS]


@pytest.mark.parametrize("graph,dynamic", CASES)
def test_cut_off_isolates_the_agent_and_reweighs_the_rest(graph, dynamic):
    kw = dict(graph=graph, n=9, dynamic=dynamic, seed=4)
    topo = make_topology(**kw, cutoff_agent=5, cutoff_start=3, cutoff_length=4)
    again = make_topology(**kw, cutoff_agent=5, cutoff_start=3, cutoff_length=4)
    whole = make_topology(**kw)
    stochastic = is_column_stochastic if topo.directed else is_doubly_stochastic
    e5 = np.eye(9)[5]
    assert not topo.static and topo.directed == whole.directed
    for t in (9, 0, 2, 3, 6, 7, 3):                # any order: W is a function of (seed, t)
        W = topo.weights(t)
        assert stochastic(W) and np.array_equal(W, again.weights(t))
        G = topo.graph(t)
        if 3 <= t < 7:
            assert np.array_equal(W[5], e5) and np.array_equal(W[:, 5], e5)
            assert G.degree(5) == 0
            # the rest is the rule on the remaining graph
            rest = whole.graph(t)
            rest.remove_edges_from([e for e in rest.edges if 5 in e])
            assert set(G.edges) == set(rest.edges)
        else:
            assert np.array_equal(W, whole.weights(t))


def test_cut_off_sequence_is_a_plain_sequence():
    seq = cut_off(Static(nx.cycle_graph(5)), agent=0, start=2, length=2)
    assert isinstance(seq, CutOff) and seq.n == 5 and not seq.static and not seq.regular
    assert seq.edges(1).tolist() == [[0, 1], [0, 4], [1, 2], [2, 3], [3, 4]]
    assert seq.edges(3).tolist() == [[1, 2], [2, 3], [3, 4]]
    # a static graph with a cut-off is not regular any more: 'uniform' is refused
    error_of(lambda: make_topology(graph="ring", n=6, weights="uniform", cutoff_agent=0,
                                   cutoff_start=0, cutoff_length=1),
             "'uniform' needs a regular graph at every iteration", kind=TopologyError)


@pytest.mark.parametrize("keys,fragments", [
    ({"cutoff_agent": 3}, ["needs topology.cutoff_agent, cutoff_start and cutoff_length "
                           "together", "without topology.cutoff_start"]),
    ({"cutoff_agent": 3, "cutoff_start": 0}, ["without topology.cutoff_length"]),
    ({"cutoff_start": 0, "cutoff_length": 2}, ["without topology.cutoff_agent"]),
    ({"cutoff_agent": 8, "cutoff_start": 0, "cutoff_length": 2},
     ["topology.cutoff_agent must be an integer in 0..7, got 8"]),
    ({"cutoff_agent": -1, "cutoff_start": 0, "cutoff_length": 2},
     ["topology.cutoff_agent must be an integer in 0..7, got -1"]),
    ({"cutoff_agent": True, "cutoff_start": 0, "cutoff_length": 2},
     ["topology.cutoff_agent must be an integer"]),
    ({"cutoff_agent": 1, "cutoff_start": -5, "cutoff_length": 2},
     ["topology.cutoff_start must be an integer >= 0, got -5"]),
    ({"cutoff_agent": 1, "cutoff_start": 0, "cutoff_length": 0},
     ["topology.cutoff_length must be an integer >= 1, got 0"]),
    ({"cutoff_agent": 1, "cutoff_start": 0, "cutoff_length": 2.5},
     ["topology.cutoff_length must be an integer >= 1, got 2.5"]),
])
def test_cut_off_keys_are_validated_together(keys, fragments):
    error_of(lambda: make_topology(graph="ring", n=8, dynamic="link_failure", **keys),
             *fragments, kind=TopologyError)


# ---------------------------------------------------------------- B-connectivity refusals
class _Blinking:
    """A ring of 6 agents in which agent 3 is linked only at ``t mod 10 < 5``."""

    n, static = 6, False

    def edges(self, t):
        ring = np.array(sorted(tuple(sorted(e)) for e in nx.cycle_graph(6).edges))
        return ring if t % 10 < 5 else ring[(ring != 3).all(axis=1)]


def test_cut_off_covering_a_window_is_refused_with_the_window():
    def topo(start, length, dynamic="static"):
        return make_topology(graph="erdos_renyi", n=8, dynamic=dynamic, seed=1,
                             cutoff_agent=3, cutoff_start=start, cutoff_length=length)

    error_of(lambda: topo(40, 10).check(iterations=100, B=10),
             "graph sequence is not B-connected: the union of the graphs over iterations "
             "40..49 (B = 10) leaves agent 3 disconnected from the others",
             "make topology.cutoff_length < B (now 10 >= 10), or raise topology.B",
             kind=TopologyError)
    topo(40, 10).check(iterations=40, B=10)         # the run ends before the window
    topo(40, 10).check(iterations=100, B=20)        # [40, 60) keeps 10 linked iterations
    # the windows are the aligned [kB, (k+1)B) of the definition: 45..54 covers none of them
    topo(45, 10).check(iterations=100, B=10)
    # a cut-off of 2B - 1 iterations covers one wherever it starts
    for start in range(0, 12):
        d = find_disconnection(topo(start, 19).sequence, B=10, iterations=100)
        assert d.agents == (3,) and start <= d.start and d.stop <= start + 19
    # shorter than B, but the agent has no link in the rest of the window either
    blinking = Topology(cut_off(_Blinking(), agent=3, start=50, length=5))
    blinking.check(iterations=50, B=10)
    error_of(lambda: blinking.check(iterations=100, B=10),
             "iterations 50..59 (B = 10) leaves agent 3 disconnected from the others; agent 3 "
             "is cut off over iterations 50..54 and has no link in the rest of that window; "
             "shorten topology.cutoff_length", kind=TopologyError)
    directed = make_topology(graph="directed_exponential", n=5, cutoff_agent=1,
                             cutoff_start=20, cutoff_length=10)
    error_of(lambda: directed.check(iterations=50, B=10),
             "directed graph sequence is not B-strongly connected: the union of the arcs over "
             "iterations 20..29 (B = 10) leaves agent 1 with no directed path to or from the "
             "others; agent 1 is cut off", kind=TopologyError)


def test_cut_off_breaking_b_connectivity_is_refused_by_dcnn_run(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("earlier results")
    args = [sys.executable, "-m", "dcnn", "run", "--quiet", "--out", str(out),
            "--set", "run.agents=8", "--set", "run.iterations=100",
            *(a for kv in (*BASE, *CHURN[:2], "topology.cutoff_agent=3",
                           "topology.cutoff_start=40", "topology.cutoff_length=10")
              for a in ("--set", kv))]
    t0 = time.perf_counter()
    res = subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=ROOT,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert time.perf_counter() - t0 < 60
    assert res.returncode == 2, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("dcnn: error: graph sequence is not "
                                                   "B-connected"), res.stderr
    assert "iterations 40..49 (B = 10) leaves agent 3" in lines[0]
    assert "topology.cutoff_length < B" in lines[0]
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert (out / "keep.txt").read_text() == "earlier results"


def test_disconnection_names_the_agents():
    two = nx.disjoint_union(nx.cycle_graph(5), nx.cycle_graph(3))
    d = find_disconnection(Static(two), B=4, iterations=10)
    assert d == Disconnection(0, 4, 4, (5, 6, 7), (0, 1, 2, 3, 4), (5, 6, 7), (5, 6, 7),
                              strong=False, static=True)
    error_of(lambda: Topology(Static(two)).check(iterations=10, B=4),
             "its static graph is disconnected (agents 5, 6, 7 cut off from the others)",
             kind=TopologyError)
    many = Static(nx.disjoint_union(nx.complete_graph(3), nx.empty_graph(9)))
    error_of(lambda: Topology(many).check(iterations=1, B=1),
             "agents 3, 4, 5, 6, 7, 8, ... (9 agents)", kind=TopologyError)
    # the ring 0 -> 1 -> 2 -> 3 -> 0 without agent 1: 0 reaches nobody, 1 reaches nobody
    ring = Topology(cut_off(Static(nx.DiGraph([(0, 1), (1, 2), (2, 3), (3, 0)])),
                            agent=1, start=0, length=3))
    error_of(lambda: ring.check(iterations=3, B=3),
             "leaves agent 1 with no directed path to agent 0, and agents 1, 2, 3 with no "
             "directed path from agent 0", kind=TopologyError)
    # a digraph: 0 -> 1 -> 2 -> 0 and 2 -> 3: agent 3 is reached but reaches nobody
    dg = Topology(Static(nx.DiGraph([(0, 1), (1, 2), (2, 0), (2, 3)])))
    error_of(lambda: dg.check(iterations=5, B=5),
             "its static digraph leaves agent 3 with no directed path to the others",
             kind=TopologyError)
    # and 3 -> 0 only: agent 3 reaches the others, nobody reaches it
    up = Topology(Static(nx.DiGraph([(0, 1), (1, 2), (2, 0), (3, 0)])))
    error_of(lambda: up.check(iterations=5, B=5),
             "leaves agent 3 with no directed path from the others", kind=TopologyError)


class _Unkeyed:
    """``seq`` without ``graph_key``: every window checked from scratch."""

    def __init__(self, seq):
        self.seq, self.n, self.static = seq, seq.n, False

    def edges(self, t):
        return self.seq.edges(t)


@pytest.mark.parametrize("seed", range(6))
def test_skipping_repeated_windows_changes_no_answer(seed):
    rng = np.random.default_rng(seed)
    base = make_graph("erdos_renyi", 10, seed=seed, p=0.3)
    inner = [Static(base), Switching(base, parts=3, period=int(rng.integers(1, 4)), seed=seed)]
    for seq in inner:
        cut = cut_off(seq, agent=int(rng.integers(10)), start=int(rng.integers(60)),
                      length=int(rng.integers(1, 25)))
        for B in (1, 3, 7, 12):
            assert find_disconnection(cut, B=B, iterations=90) == \
                find_disconnection(_Unkeyed(cut), B=B, iterations=90)


# ---------------------------------------------------------------- user-given weights
GOOD = np.array([[0.5, 0.5, 0.0], [0.25, 0.5, 0.25], [0.25, 0.0, 0.75]])


@pytest.mark.parametrize("W,kw,fragments", [
    (GOOD[:2], {}, ["weight matrix must be square, got shape (2, 3)"]),
    (GOOD, {"n": 4}, ["weight matrix has shape (3, 3) for 4 agents; give a 4 x 4 array"]),
    ([["a", "b"], ["c", "d"]], {}, ["weight matrix must be a square array of numbers"]),
    (np.where(np.eye(3) > 0, np.nan, GOOD), {}, ["non-finite entry W[0, 0] = nan"]),
    (GOOD + np.array([[0, 0.1, -0.1], [0, 0, 0], [0, 0, 0]]), {},
     ["negative entry W[0, 2] = -0.1"]),
    (np.array([[0.0, 1.0], [1.0, 0.0]]), {},
     ["no self loop at agent 0 (W[0, 0] = 0)", "positive weight on its own value"]),
    (np.array([[0.5, 0.5], [0.3, 0.6]]), {}, ["not doubly stochastic: row 1 sums to 0.9"]),
    (np.array([[0.5, 0.5], [0.6, 0.4]]), {}, ["not doubly stochastic: column 0 sums to 1.1"]),
    (np.array([[0.5, 0.5], [0.4, 0.6]]), {"kind": "column"},
     ["not column stochastic: column 0 sums to 0.9", "'column_stochastic'"]),
    (GOOD, {"kind": "sideways"}, ["weight kind 'sideways' is unknown"]),
])
def test_check_weights_names_the_fault(W, kw, fragments):
    error_of(lambda: check_weights(W, **kw), *fragments, kind=TopologyError)


def test_check_weights_accepts_stochastic_matrices():
    W = make_topology(graph="erdos_renyi", n=7, seed=1).weights(0)
    assert check_weights(W, n=7).dtype == np.float64
    D = make_topology(graph="random_digraph", n=7, seed=1).weights(0)
    check_weights(D, n=7, kind="column")
    error_of(lambda: check_weights(D, n=7), "not doubly stochastic", kind=TopologyError)
    check_weights(np.array([[0.5, 0.5], [0.4, 0.6]]), kind="row")
    swap = np.array([[0.0, 1.0], [1.0, 0.0]])
    error_of(lambda: check_doubly_stochastic(swap), "no self loop at agent 0 (W[0, 0] = 0)",
             kind=TopologyError)
    # push-sum names missing self weights in its own words (dcnn.algorithms.sonata)
    assert np.array_equal(check_column_stochastic(swap), swap)
    assert np.array_equal(check_weights(swap, self_loops=False), swap)


class _Custom:
    """A user's topology object: ring weights, except a broken ``W`` at ``t == bad``."""

    def __init__(self, n, bad, W_bad):
        self.n, self.bad, self.W_bad = n, bad, W_bad
        self.ring = make_topology(graph="ring", n=n)

    def weights(self, t):
        return self.W_bad if t == self.bad else self.ring.weights(t)


def test_as_topology_checks_every_weight_matrix_it_hands_out():
    topo = make_topology(graph="ring", n=4)
    assert as_topology(topo, n_agents=4) is topo
    error_of(lambda: as_topology(topo, n_agents=6),
             "the topology has 4 agents and the network 6; build it for n = 6",
             kind=TopologyError)
    static = as_topology(GOOD, n_agents=3)
    assert isinstance(static, WeightTopology) and static.static and not static.directed
    assert np.array_equal(static.weights(7), GOOD)
    static.check(iterations=10, B=1)               # the path 1 - 0 - 2
    hollow = [[0, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5]]
    error_of(lambda: as_topology(hollow, n_agents=3), "no self loop at agent 0",
             kind=TopologyError)
    error_of(lambda: as_topology(np.eye(3) / 2 + 0.25, n_agents=3), "row 0 sums to 1.25",
             kind=TopologyError)
    error_of(lambda: as_topology(np.eye(2), n_agents=3),
             "weight matrix has shape (2, 2) for 3 agents", kind=TopologyError)
    error_of(lambda: as_topology("ring", n_agents=3),
             "topology must be a dcnn Topology (make_topology), a weight matrix or an object "
             "with weights(t), got str", kind=TopologyError)
    custom = as_topology(_Custom(4, 3, np.roll(np.eye(4), 1, axis=1)), n_agents=4)
    assert not custom.static
    for t in range(3):
        assert is_doubly_stochastic(custom.weights(t))
    error_of(lambda: custom.weights(3), "weight matrix W(3) has no self loop at agent 0",
             kind=TopologyError)
    # the nonzero pattern is the graph: an identity W(t) never mixes
    lonely = as_topology(_Custom(4, 0, np.eye(4)), n_agents=4)
    error_of(lambda: lonely.check(iterations=10, B=1),
             "over iterations 0..0 (B = 1) leaves agents 1, 2, 3 disconnected",
             kind=TopologyError)
    lonely.check(iterations=10, B=2)


class _BadSequence:
    n, static = 4, False

    def __init__(self, links):
        self.links = links

    def edges(self, t):
        return self.links


@pytest.mark.parametrize("links,fragment", [
    ([(0, 1), (1, 4)], "links agent 4, outside 0..3"),
    ([(0, 1), (2, 2)], "has a self loop (2, 2)"),
    ([(0, 1, 2)], "is not a list of agent pairs"),
])
def test_custom_sequences_are_validated(links, fragment):
    topo = Topology(_BadSequence(links))
    error_of(lambda: topo.weights(5), "_BadSequence at t = 5", fragment, kind=TopologyError)
    error_of(lambda: topo.check(iterations=10, B=2), fragment, kind=TopologyError)
