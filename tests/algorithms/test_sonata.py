"""SONATA: the push-sum tracking invariant, equality with NEXT on doubly stochastic weights,
the closed-form ridge optimum over a time-varying digraph, and the directed-graph guard."""
import networkx as nx
import pytest
import torch

from dcnn.algorithms import Constant, Diminishing, Next, Sonata, run_loop
from dcnn.comm import LocalNetwork
from dcnn.errors import ConfigError, TopologyError
from dcnn.surrogates import FL, PL
from dcnn.topology import (Topology, is_column_stochastic, is_row_stochastic, make_topology,
                           row_stochastic)

from oracles import diabetes_problem, ridge_optimum as _ridge_optimum


def _problem(n_agents=6, hidden=(5,), lam=1e-2):
    return diabetes_problem(n_agents=n_agents, hidden=hidden, lam=lam)


def _start(prob):
    return prob.model.w0.expand(prob.n_agents, -1).clone()


@pytest.mark.parametrize("surrogate", [FL(tau=5.0), PL(tau=2.0)])
def test_push_sum_tracking_invariant_holds_every_iteration(surrogate):
    prob, _ = _problem()
    net = LocalNetwork(prob.n_agents)
    topo = make_topology(graph="random_digraph", n=prob.n_agents, dynamic="link_failure",
                         seed=1, p_fail=0.4)
    algo = Sonata(surrogate=surrogate, schedule=Diminishing(0.5, 0.01))
    state = algo.init(prob, net, _start(prob))
    moved = 0.0
    for t in range(30):
        W = topo.weights(t)
        assert is_column_stochastic(W)
        state = algo.step(state, prob, net, W)
        # sum_i phi_i y_i = sum_i grad g_i(w_i) and sum_i phi_i = N
        torch.testing.assert_close((state.phi[:, None] * state.Y).sum(0), state.G.sum(0),
                                   atol=1e-12, rtol=0)
        assert abs(float(state.phi.sum()) - prob.n_agents) < 1e-12
        # the stored gradients are the gradients at the current (de-biased) iterates
        torch.testing.assert_close(state.G, prob.gradients(state.X), atol=1e-14, rtol=0)
        moved = max(moved, float((state.phi - 1).abs().max()))
    assert moved > 0.1  # the weights are not doubly stochastic: push-sum does real work


@pytest.mark.parametrize("surrogate", [FL(tau=5.0), PL(tau=1.0)])
def test_equals_next_on_doubly_stochastic_time_varying_weights(surrogate):
    prob, _ = _problem()
    N = prob.n_agents
    net = LocalNetwork(N)
    topo = make_topology(graph="erdos_renyi", n=N, dynamic="link_failure", seed=2, p_fail=0.4)
    sched = Diminishing(0.5, 0.01)
    nxt, son = Next(surrogate, sched), Sonata(surrogate, sched)
    a, b = nxt.init(prob, net, _start(prob)), son.init(prob, net, _start(prob))
    for t in range(25):
        W = topo.weights(t)
        a, b = nxt.step(a, prob, net, W), son.step(b, prob, net, W)
        torch.testing.assert_close(b.phi, torch.ones(N, dtype=b.phi.dtype), atol=1e-12, rtol=0)
        for name in ("X", "Y", "G"):
            torch.testing.assert_close(getattr(b, name), getattr(a, name), atol=1e-12, rtol=0)
        assert a.alpha == b.alpha and a.t == b.t


@pytest.mark.parametrize("kind,tau,alpha,iters", [("fl", 8.0, 1.0, 250), ("pl", 2.0, 0.5, 150)])
def test_ridge_oracle_over_time_varying_digraph(kind, tau, alpha, iters):
    """Linear model + squared loss + l2 reaches the closed-form ridge optimum (rel. gap
    <= 1e-6) over a random digraph with 30% arc failures per iteration (column-stochastic,
    not doubly stochastic), with a constant step."""
    lam = 0.1
    prob, ds = _problem(hidden=(), lam=lam, n_agents=8)
    topo = make_topology(graph="random_digraph", n=8, dynamic="link_failure", seed=3,
                         p_fail=0.3)
    topo.check(iterations=iters, B=10)
    assert not any(is_row_stochastic(topo.weights(t)) for t in range(5))
    surrogate = FL(tau=tau) if kind == "fl" else PL(tau=tau)
    algo = Sonata(surrogate=surrogate, schedule=Constant(alpha))
    state, hist = run_loop(algo, problem=prob, network=LocalNetwork(8), topology=topo,
                           X0=_start(prob), iterations=iters, eval_every=iters)
    opt = _ridge_optimum(ds, lam)
    gap = (hist.last["objective"] - opt) / abs(opt)
    assert 0 <= gap <= 1e-6 + 1e-12, gap
    assert hist.last["consensus_error"] < 1e-12
    assert float((state.phi - 1).abs().max()) > 0.1  # de-biasing mattered


def test_next_refuses_a_directed_topology_and_sonata_runs_on_it():
    prob, _ = _problem(n_agents=4)
    topo = make_topology(graph="directed_ring", n=4)
    kwargs = dict(problem=prob, network=LocalNetwork(4), topology=topo, X0=_start(prob),
                  iterations=3, eval_every=3)
    with pytest.raises(ConfigError, match="'next' needs an undirected graph.*'sonata'"):
        run_loop(Next(FL(tau=5.0), Constant(0.5)), **kwargs)
    state, _ = run_loop(Sonata(FL(tau=5.0), Constant(0.5)), **kwargs)
    assert state.t == 3


def test_sonata_refuses_weights_that_are_not_column_stochastic():
    prob, _ = _problem(n_agents=4)
    net = LocalNetwork(4)
    algo = Sonata(FL(tau=5.0), Constant(0.5))
    state = algo.init(prob, net, _start(prob))
    star_in = nx.DiGraph([(1, 0), (2, 0), (3, 0), (0, 1)])  # row-stochastic weights
    with pytest.raises(TopologyError, match="not column stochastic: column 0"):
        algo.step(state, prob, net, row_stochastic(star_in))
    W = Topology(make_topology(graph="directed_ring", n=4).sequence).weights(0)
    W[0, 0], W[1, 0] = 0.0, 1.0
    with pytest.raises(TopologyError, match=r"positive self weight, but W\[0, 0\]"):
        algo.step(state, prob, net, W)
