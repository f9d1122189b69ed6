"""The decentralized baselines against closed forms and convex oracles: DGD's constant-step
fixed point, gradient tracking / EXTRA / Push-DIGing at the exact logistic-regression optimum
with a constant step, their invariants, prox steps for l1, and what each one refuses."""
import numpy as np
import pytest
import torch

from dcnn.algorithms import (Constant, Dgd, GradientTracking, PushDiging, Scaled,
                             run_loop)
from dcnn.comm import LocalNetwork
from dcnn.config import load_config
from dcnn.errors import ConfigError
from dcnn.runner import run_experiment
from dcnn.topology import make_topology

from conftest import error_of
from oracles import diabetes_problem

QUIET = ["run.progress=false"]


def _run(overrides, rounds):
    cfg = load_config(overrides=[*QUIET, f"run.iterations={rounds}",
                                 f"run.eval_every={rounds}", *overrides])
    return run_experiment(cfg, out=None, verbose=False)


def test_dgd_constant_step_stops_at_its_closed_form_fixed_point():
    """Prox-DGD with a constant step s on a static graph converges to the fixed point
    (1 + 2 s lam / N) x_i = sum_j W_ij x_j - s grad g_i(x_i), a linear system for ridge,
    which is O(s) away from the optimum (the known DGD neighbourhood), not at it."""
    lam, N = 1e-2, 6
    prob, ds = diabetes_problem(n_agents=N, hidden=(), lam=lam)
    net = LocalNetwork(N)
    topo = make_topology(graph="ring", n=N, dynamic="static", seed=0)
    W = topo.weights(0)
    M = prob.n_total
    # the linear model f(w; x) = a^T x + b as rows [x, 1]; w = [a, b]
    A = [torch.cat((prob.X[i, :int(prob.counts[i])],
                    torch.ones(int(prob.counts[i]), 1, dtype=torch.float64)), 1).numpy()
         for i in range(N)]
    y = [prob.T[i, :int(prob.counts[i]), 0].numpy() for i in range(N)]
    P = prob.n_params

    def fixed_point(s):
        K = np.zeros((N * P, N * P))
        rhs = np.zeros(N * P)
        for i in range(N):
            blk = slice(i * P, (i + 1) * P)
            K[blk, blk] += (1 + 2 * s * lam / N) * np.eye(P) + s * 2 / M * A[i].T @ A[i]
            rhs[blk] = s * 2 / M * A[i].T @ y[i]
            for j in range(N):
                K[blk, j * P:(j + 1) * P] -= W[i, j] * np.eye(P)
        return np.linalg.solve(K, rhs).reshape(N, P)

    Aall, yall = np.vstack(A), np.concatenate(y)
    w_opt = np.linalg.solve(Aall.T @ Aall / M + lam * np.eye(P), Aall.T @ yall / M)
    dist = {}
    # dcnn's parameter order for nn.Linear is (weight, bias): same as [a, b]
    for s in (0.4, 0.2):   # stable below (1 + lambda_min(W)) / L_i ~ 0.42 on this ring
        algo = Dgd(schedule=Constant(s))
        Xs = fixed_point(s)
        dist[s] = np.abs(Xs - w_opt).max()
        # s = 0.4: the loop converges to it from the start; s = 0.2 (twice as slow): it is
        # the fixed point of the loop's map (started there, it stays)
        X0 = (prob.model.w0.expand(N, -1).clone() if s == 0.4 else
              torch.as_tensor(Xs, dtype=torch.float64))
        n = 8000 if s == 0.4 else 100
        state, _ = run_loop(algo, problem=prob, network=net, topology=topo, X0=X0,
                            iterations=n, eval_every=n)
        assert np.abs(state.X.numpy() - Xs).max() < 1e-9, s
    # not the optimum: O(s) away from it (halving s about halves the distance)
    assert dist[0.2] > 1e-5 and 1.6 < dist[0.4] / dist[0.2] < 2.4, dist


@pytest.mark.parametrize("name,extra,rounds", [
    ("gt", ["topology.dynamic='link_failure'"], 2500),
    ("extra", ["topology.dynamic='static'"], 2500),
    ("push-diging", ["topology.graph='random_digraph'", "topology.dynamic='link_failure'"],
     2500),
])
def test_exact_logistic_optimum_with_a_constant_step(name, extra, rounds):
    """Logistic regression (linear model, cross-entropy + l2) on breast cancer over 6
    agents: the constant-step tracking methods reach the L-BFGS-B optimum of the pooled
    problem to a relative gap of 1e-8, with the agents in agreement."""
    res = _run([f"algorithm.name='{name}'", "algorithm.schedule='constant'",
                "algorithm.alpha0=1.0", "model.hidden=[]", "model.loss='cross_entropy'",
                "model.lam=1e-2", "run.agents=6", *extra], rounds)
    ref = res.summary["centralized"]["objective"]
    gap = (res.history.last["objective"] - ref) / ref
    assert -1e-12 < gap < 1e-8, gap
    assert res.history.last["consensus_error"] < 1e-14


def _ring_failures(n, rng):
    W = np.zeros((n, n))
    for i in range(n):
        if rng.random() < 0.6:
            j = (i + 1) % n
            W[i, j] = W[j, i] = 1 / 3
    W[np.diag_indices(n)] = 1 - W.sum(1)
    return W


def test_gradient_tracking_invariant_every_iteration():
    prob, _ = diabetes_problem(n_agents=6, hidden=(4,))
    net, rng = LocalNetwork(6), np.random.default_rng(1)
    algo = GradientTracking(schedule=Constant(0.3))
    state = algo.init(prob, net, prob.model.w0.expand(6, -1).clone())
    reg = 2 * prob.regularizer.l2 / 6
    for _ in range(25):
        state = algo.step(state, prob, net, _ring_failures(6, rng))
        torch.testing.assert_close(state.Y.sum(0), state.G.sum(0), atol=1e-13, rtol=0)
        torch.testing.assert_close(state.G, prob.gradients(state.X) + reg * state.X,
                                   atol=1e-14, rtol=0)


def test_push_diging_invariants_on_a_time_varying_digraph():
    prob, _ = diabetes_problem(n_agents=6, hidden=(4,))
    net = LocalNetwork(6)
    topo = make_topology(graph="random_digraph", n=6, dynamic="link_failure", seed=3)
    algo = PushDiging(schedule=Constant(0.3))
    state = algo.init(prob, net, prob.model.w0.expand(6, -1).clone())
    for t in range(25):
        state = algo.step(state, prob, net, topo.weights(t))
        assert abs(float(state.v.sum()) - 6) < 1e-12
        torch.testing.assert_close(state.Y.sum(0), state.G.sum(0), atol=1e-13, rtol=0)
        torch.testing.assert_close(state.X, state.U / state.v[:, None], atol=0, rtol=0)


def test_push_diging_keeps_unit_weights_on_doubly_stochastic_graphs():
    prob, _ = diabetes_problem(n_agents=6, hidden=())
    net = LocalNetwork(6)
    topo = make_topology(graph="ring", n=6, dynamic="link_failure", seed=0)
    algo = PushDiging(schedule=Constant(0.3))
    state = algo.init(prob, net, prob.model.w0.expand(6, -1).clone())
    for t in range(10):
        state = algo.step(state, prob, net, topo.weights(t))
    torch.testing.assert_close(state.v, torch.ones(6, dtype=torch.float64), atol=1e-14, rtol=0)


def test_centralized_gradient_descent_with_l1_reaches_the_lasso_optimum():
    """Proximal gradient descent on the pooled data against the reference's FISTA."""
    res = _run(["algorithm.name='centralized'", "algorithm.optimizer='gd'",
                "algorithm.schedule='constant'", "algorithm.alpha0=1.0", "model.hidden=[]",
                "model.regularizer='l1'", "model.lam=1e-2", "data.name='diabetes'",
                "run.agents=4"], 3000)
    ref = res.summary["centralized"]["objective"]
    assert abs(res.history.last["objective"] - ref) < 1e-9 * ref
    assert res.history.last["sparsity"] > 0          # the l1 prox zeroes weights


def test_centralized_lbfgs_reaches_the_softmax_regression_optimum():
    """Softmax regression (iris, cross-entropy + l2, strongly convex): the loop's L-BFGS
    reaches the scipy L-BFGS-B optimum of the pooled problem."""
    res = _run(["algorithm.name='centralized'", "data.name='iris'", "model.hidden=[]",
                "model.loss='cross_entropy'", "run.agents=3"], 100)
    ref = res.summary["centralized"]["objective"]
    assert abs(res.history.last["objective"] - ref) < 1e-10 * ref
    assert res.summary["bytes_sent_per_agent"] == 0


def test_dgd_prox_step_handles_l1():
    """Prox-DGD (diminishing step) on the lasso gets within 1e-3 of the FISTA optimum (its
    shrinking threshold s[n] lam / N does not give exact zeros at w_bar; NEXT's does)."""
    res = _run(["algorithm.name='dgd'", "model.hidden=[]", "model.regularizer='l1'",
                "model.lam=1e-2", "data.name='diabetes'", "run.agents=4",
                "topology.dynamic='static'"], 1000)
    ref = res.summary["centralized"]["objective"]
    assert 0 <= res.history.last["objective"] - ref < 1e-3 * ref


def test_dsgd_uses_mini_batches_of_16_by_default():
    res = _run(["algorithm.name='dsgd'", "run.agents=4"], 20)
    assert res.summary["batch_size"] == 16 and res.summary["schedule"] == "constant"


@pytest.mark.parametrize("overrides,fragments", [
    (["algorithm.name='gt'", "model.regularizer='l1'"], ("needs a smooth regularizer", "'dgd'")),
    (["algorithm.name='extra'", "topology.dynamic='link_failure'"],
     ("needs a static graph", "topology.dynamic = 'static'")),
    (["algorithm.name='gt'", "topology.graph='directed_ring'"],
     ("needs an undirected graph", "'push-diging'")),
    (["algorithm.name='centralized'", "algorithm.optimizer='adam'",
      "model.regularizer='elastic_net'"], ("optimizer 'adam' needs a smooth regularizer",
                                           "algorithm.optimizer = 'gd'")),
    (["algorithm.name='dgd'", "algorithm.lr=0"], ("algorithm.lr must be > 0",)),
    (["algorithm.name='centralized'", "algorithm.optimizer='sgd'"], ("algorithm.optimizer",
                                                                      "lbfgs")),
])
def test_refusals_name_the_fix(overrides, fragments):
    error_of(lambda: _run([*overrides, "run.reference=false"], 2), *fragments,
             kind=ConfigError)


def test_scaled_schedule_multiplies_every_step():
    from dcnn.algorithms import Diminishing
    sch = Scaled(Diminishing(0.5, 0.01), 4.0)
    a, s = 0.5, sch.init()
    for n in range(5):
        assert abs(s - 4.0 * a) < 1e-15
        a, s = Diminishing(0.5, 0.01).update(a, n), sch.update(s, n)
