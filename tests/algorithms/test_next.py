"""NEXT: the tracking invariant, equality with its centralized counterpart on a complete
graph, and the closed-form ridge optimum over a time-varying graph."""
import numpy as np
import pytest
import torch

from dcnn.algorithms import Constant, Diminishing, Next, run_loop
from dcnn.comm import LocalNetwork
from dcnn.data import encode_targets, load_dataset, partition
from dcnn.problems import FlatModel, LocalProblems, make_regularizer, mlp
from dcnn.surrogates import FL, PL
from dcnn.topology import make_topology

from oracles import ridge_optimum as _ridge_optimum


class Weights:
    """A fixed weight matrix as a topology."""

    def __init__(self, W):
        self.W = np.asarray(W)

    def weights(self, t):
        return self.W


def _problem(name="diabetes", n_agents=6, hidden=(5,), lam=1e-2, loss="squared", seed=0):
    ds = load_dataset(name, seed=seed)
    T = encode_targets(ds.y_train, task=ds.task, n_classes=ds.n_classes)
    parts = partition(ds.y_train, n_agents, kind="iid", seed=seed, task=ds.task)
    model = FlatModel(mlp(n_inputs=ds.n_features, hidden=hidden, n_outputs=T.shape[1],
                          seed=seed))
    shards = [(ds.X_train[p], T[p]) for p in parts]
    reg = make_regularizer("l2", lam=lam)
    prob = LocalProblems(model=model, shards=shards, loss=loss, task=ds.task,
                         n_total=len(T), regularizer=reg)
    pooled = LocalProblems(model=model, shards=[(ds.X_train, T)], loss=loss, task=ds.task,
                           n_total=len(T), regularizer=reg)
    return prob, pooled, ds, T


def _ring_mh(n):
    W = np.zeros((n, n))
    for i in range(n):
        W[i, (i + 1) % n] = W[i, (i - 1) % n] = 1 / 3
        W[i, i] = 1 / 3
    return W


@pytest.mark.parametrize("surrogate", [FL(tau=5.0), PL(tau=1.0)])
def test_tracking_invariant_holds_every_iteration(surrogate):
    prob, _, _, _ = _problem()
    net = LocalNetwork(prob.n_agents)
    rng = np.random.default_rng(0)
    algo = Next(surrogate=surrogate, schedule=Diminishing(0.5, 0.01))
    state = algo.init(prob, net, prob.model.w0.expand(prob.n_agents, -1).clone())
    for t in range(30):
        # a fresh doubly stochastic matrix each iteration (random link failures on a ring)
        W = _ring_mh(prob.n_agents)
        for i in range(prob.n_agents):
            j = (i + 1) % prob.n_agents
            if rng.random() < 0.5:
                W[i, i] += W[i, j]
                W[j, j] += W[j, i]
                W[i, j] = W[j, i] = 0.0
        state = algo.step(state, prob, net, W)
        torch.testing.assert_close(state.Y.sum(0), state.G.sum(0), atol=1e-13, rtol=0)
        # the stored gradients are the gradients at the current iterates
        torch.testing.assert_close(state.G, prob.gradients(state.X), atol=1e-14, rtol=0)


def _centralized_fl(pooled, w, tau, lam, alpha):
    """Centralized FL-SCA step: w + alpha * ((tau w - grad G(w)) / (tau + 2 lam) - w)."""
    g = pooled.gradients(w[None])[0]
    return w + alpha * ((tau * w - g) / (tau + 2 * lam) - w)


def _centralized_pl(prob, w, carry, tau, lam, alpha):
    """NEXT-PL with W = 11^T / N written for one shared iterate, with dense numpy solves.

    On a complete graph with uniform weights every agent holds the same ``w`` after the first
    mix, and the tracker is ``y_i[n] = gbar[n-1] + grad g_i(w[n]) - grad g_i(w[n-1])``
    (``y_i[0] = grad g_i(w[0])``): the average it tracks is one step stale, so the PL step is
    not the pooled Gauss-Newton step (FL's is, because FL is linear in pi~). ``carry`` holds
    ``gbar[n-1] - grad g_i(w[n-1])`` per agent (zero at n = 0)."""
    N = prob.n_agents
    W = w.expand(N, -1).clone()
    grads = prob.gradients(W).numpy()
    J = prob.jacobians(W).numpy()
    wn = w.numpy()
    P = len(wn)
    Y = grads + carry
    tilde = []
    for i in range(N):
        pi = N * Y[i] - grads[i]
        H = 2 * prob.scale * J[i].T @ J[i] + (tau + 2 * lam) * np.eye(P)
        d = np.linalg.solve(H, -grads[i] - pi - 2 * lam * wn)
        tilde.append(wn + d)
    new_carry = Y.mean(0) - grads
    return torch.from_numpy(wn + alpha * (np.mean(tilde, axis=0) - wn)), new_carry


@pytest.mark.parametrize("kind", ["fl", "pl"])
def test_complete_graph_equals_centralized_counterpart(kind):
    prob, pooled, _, _ = _problem(lam=1e-2)
    N = prob.n_agents
    net = LocalNetwork(N)
    tau, lam = (4.0, 1e-2) if kind == "fl" else (1.0, 1e-2)
    surrogate = FL(tau=tau) if kind == "fl" else PL(tau=tau)
    sched = Diminishing(0.8, 0.05)
    algo = Next(surrogate=surrogate, schedule=sched)
    state = algo.init(prob, net, prob.model.w0.expand(N, -1).clone())
    w, alpha = prob.model.w0.clone(), sched.init()
    W = np.full((N, N), 1.0 / N)
    carry = np.zeros((N, w.numel()))
    for t in range(15):
        state = algo.step(state, prob, net, W)
        if kind == "fl":
            w = _centralized_fl(pooled, w, tau, lam, alpha)
        else:
            w, carry = _centralized_pl(prob, w, carry, tau, lam, alpha)
        alpha = sched.update(alpha, t)
        # every agent holds the centralized iterate, step by step
        torch.testing.assert_close(state.X, w.expand(N, -1), atol=1e-11, rtol=0)


@pytest.mark.parametrize("kind,tau,alpha,iters", [("fl", 8.0, 1.0, 1500), ("pl", 1.0, 0.5, 400)])
def test_ridge_oracle_over_time_varying_graph(kind, tau, alpha, iters):
    """Linear model + squared loss + l2 reaches the closed-form ridge optimum (rel. gap
    <= 1e-6) over Erdos-Renyi with 30% random link failures per iteration, with a constant
    step (exact for tracking methods on strongly convex problems)."""
    lam = 0.1
    prob, _, ds, _ = _problem(hidden=(), lam=lam, n_agents=8)
    net = LocalNetwork(8)
    topo = make_topology(graph="erdos_renyi", n=8, dynamic="link_failure", seed=3, p_fail=0.3)
    topo.check(iterations=iters, B=10)
    surrogate = FL(tau=tau) if kind == "fl" else PL(tau=tau)
    algo = Next(surrogate=surrogate, schedule=Constant(alpha))
    state, hist = run_loop(algo, problem=prob, network=net, topology=topo,
                           X0=prob.model.w0.expand(8, -1).clone(), iterations=iters,
                           eval_every=iters)
    opt = _ridge_optimum(ds, lam)
    gap = (hist.last["objective"] - opt) / abs(opt)
    assert 0 <= gap <= 1e-6 + 1e-12, gap
    assert hist.last["consensus_error"] < 1e-12


def test_same_seed_same_trajectory():
    def once():
        prob, _, _, _ = _problem(hidden=(4,))
        topo = make_topology(graph="ring", n=6, dynamic="link_failure", seed=5, p_fail=0.4)
        algo = Next(surrogate=PL(tau=1.0), schedule=Diminishing(0.5, 0.01))
        state, _ = run_loop(algo, problem=prob, network=LocalNetwork(6), topology=topo,
                            X0=prob.model.w0.expand(6, -1).clone(), iterations=20,
                            eval_every=20)
        return state.X
    assert torch.equal(once(), once())
