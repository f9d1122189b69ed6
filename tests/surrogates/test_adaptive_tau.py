"""``tau`` raised during the run (``adapt_tau``, on with ``tau = "auto"``;
``dcnn/surrogates/tau.py``).

Oracles: on a linear model the curvature along the network's mean move equals the dense
Hessian's ``||H d|| / ||d||``; on identical shards of a least-squares
problem a ``tau`` below the exact stability edge diverges when fixed and converges to the
least-squares solution when adapted, ending between the edge and the rule's value; where the
start estimate is enough nothing is raised and the trajectory is bit for bit the fixed-``tau``
one; a ReLU CNN on wine that blew up with the fixed ``tau`` (NaN at iteration 35) trains.
"""
import math

import numpy as np
import pytest
import torch

from dcnn.algorithms import Constant, Next, Sonata
from dcnn.comm import LocalNetwork
from dcnn.config import load_config
from dcnn.errors import ConfigError
from dcnn.runner import run_experiment
from dcnn.surrogates import FL, PL
from dcnn.surrogates.tau import (RAISE_AT, local_objective, move_curvature, outgrown,
                                 raised_tau, tau_coefficient)

from oracles import tiny_problem
from test_safe_tau import ALPHA, _hessian_max, _identical_shards

QUIET = ["run.progress=false", "run.reference=false"]


def test_the_rule_raises_only_past_the_edge_and_at_least_doubles():
    c = 0.375                                       # PL, alpha0 0.5, 8 agents
    tau = c * 4.0                                   # covers curvature 4
    assert raised_tau(tau, 4.0 * RAISE_AT, coefficient=c) == tau          # on the edge: kept
    assert raised_tau(tau, 1.0, coefficient=c) == tau
    up = raised_tau(tau, 4.0 * RAISE_AT * 1.01, coefficient=c)
    assert up == pytest.approx(c * 4.0 * RAISE_AT * 1.01) and up >= 2 * tau
    assert not outgrown(tau, math.inf, coefficient=c) and not outgrown(tau, math.nan,
                                                                       coefficient=c)
    assert tau_coefficient("fl", alpha0=0.5, n_agents=8) == 0.5
    assert tau_coefficient("pl", alpha0=0.5, n_agents=8) == 0.375
    assert tau_coefficient("pl", alpha0=0.1, n_agents=8) == 0.125      # floor 1/N


def test_the_curvature_along_the_mean_move_equals_the_dense_hessian_on_a_linear_model():
    prob = tiny_problem(hidden=(), sizes=(6, 9, 7, 8), O=1)       # squared loss: H_i constant
    n = prob.n_agents
    g = torch.Generator().manual_seed(1)
    X = prob.model.w0 + torch.randn(n, prob.n_params, generator=g, dtype=torch.float64)
    X_new = X + 0.3 * torch.randn(n, prob.n_params, generator=g, dtype=torch.float64)
    H = sum(torch.autograd.functional.hessian(
        lambda w, i=i: prob._agent_loss(w, prob.X[i], prob.T[i], prob.mask[i]), X[i])
        for i in range(n))
    d = (X_new - X).mean(0)
    want = float(torch.linalg.vector_norm(H @ d) / torch.linalg.vector_norm(d))
    net = LocalNetwork(n)
    assert move_curvature(prob, X, X_new, network=net) == pytest.approx(want, rel=1e-10)
    assert move_curvature(prob, X, X, network=net) == 0.0
    assert local_objective(prob.loss_values(X), network=net) == pytest.approx(
        float(prob.loss_values(X).sum()), rel=1e-15)
    # a NaN iterate: NaN everywhere, which raises nothing (every rank takes the same branch)
    X_nan = X_new.clone()
    X_nan[1, 0] = math.nan
    assert math.isnan(local_objective(prob.loss_values(X_nan), network=net))
    assert math.isnan(move_curvature(prob, X, X_nan, network=net))
    assert raised_tau(1.0, math.nan, coefficient=0.5) == 1.0


def _run(algo, prob, iterations):
    n = prob.n_agents
    net = LocalNetwork(n)
    state = algo.init(prob, net, prob.model.w0.expand(n, -1).clone())
    W = np.full((n, n), 1.0 / n)
    taus = [state.tau]
    with torch.no_grad():
        for _ in range(iterations):
            state = algo.step(state, prob, net, W)
            taus.append(state.tau)
    return state, taus


def _error(state, prob) -> float:
    X, T = prob.X[0], prob.T[0]
    w_star = torch.linalg.lstsq(torch.cat([X, torch.ones(len(X), 1, dtype=X.dtype)], 1),
                                T).solution.flatten()
    return float((state.X - w_star).abs().max())


@pytest.mark.parametrize("cls", [Next, Sonata])
def test_a_tau_below_the_edge_diverges_fixed_and_converges_adapted(cls):
    n = 8
    prob = _identical_shards(n)
    h = _hessian_max(prob)
    edge = (ALPHA / 2 - 1 / n) * h                   # the exact edge (test_safe_tau.py)
    tau0 = 0.5 * edge
    fixed, _ = _run(cls(surrogate=PL(tau=tau0), schedule=Constant(ALPHA)), prob, 300)
    assert _error(fixed, prob) > 1e3
    adapted, taus = _run(cls(surrogate=PL(tau=tau0), schedule=Constant(ALPHA),
                             adapt_tau=True), prob, 300)
    assert _error(adapted, prob) < 1e-6
    raises = [b / a for a, b in zip(taus, taus[1:]) if b != a]
    assert 1 <= len(raises) <= 3 and min(raises) >= RAISE_AT
    # raised past the edge, and never beyond the rule's value for the true curvature
    assert edge < taus[-1] <= tau_coefficient("pl", alpha0=ALPHA, n_agents=n) * h * (1 + 1e-9)


def test_fl_below_the_edge_is_rescued_too():
    n = 8
    prob = _identical_shards(n)
    h = _hessian_max(prob)
    tau0 = 0.25 * ALPHA * h                          # FL's edge: tau = alpha h / 2
    fixed, _ = _run(Next(surrogate=FL(tau=tau0), schedule=Constant(ALPHA)), prob, 300)
    assert _error(fixed, prob) > 1e3
    adapted, taus = _run(Next(surrogate=FL(tau=tau0), schedule=Constant(ALPHA),
                              adapt_tau=True), prob, 1500)
    assert _error(adapted, prob) < 1e-6
    assert ALPHA * h / 2 < taus[-1] <= ALPHA * h * (1 + 1e-9)


def test_adaptation_defaults_to_the_surrogates_auto_and_never_with_batches():
    from dcnn.algorithms.surrogate_step import adapts_tau
    assert adapts_tau(Next(surrogate=PL(tau="auto"), schedule=Constant(0.5)))
    assert not adapts_tau(Next(surrogate=PL(tau=1.0), schedule=Constant(0.5)))
    assert adapts_tau(Next(surrogate=PL(tau=1.0), schedule=Constant(0.5), adapt_tau=True))
    assert not adapts_tau(Sonata(surrogate=FL(tau="auto"), schedule=Constant(0.5),
                                 adapt_tau=False))
    assert not adapts_tau(Next(surrogate=PL(tau="auto"), schedule=Constant(0.5),
                               batch_size=4))
    with pytest.raises(ConfigError, match="adapt_tau must be True, False or None"):
        Next(surrogate=PL(tau=1.0), schedule=Constant(0.5), adapt_tau="yes")
    with pytest.raises(ConfigError, match="adapt_tau=True needs the whole shard"):
        Next(surrogate=PL(tau=1.0), schedule=Constant(0.5), adapt_tau=True, batch_size=4)
    with pytest.raises(ConfigError, match="adapt_tau"):
        load_config(None, ["algorithm.adapt_tau='yes'"])

    class Custom:                     # a surrogate of the interface with no tau rule
        name = "mine"

        def init_memory(self, *a, **k): ...

        def update(self, *a, **k): ...

    assert not adapts_tau(Next(surrogate=Custom(), schedule=Constant(0.5)))
    with pytest.raises(ConfigError, match="needs an FL or PL surrogate"):
        Next(surrogate=Custom(), schedule=Constant(0.5), adapt_tau=True)


@pytest.mark.parametrize("partition", ["iid", "dirichlet"])
def test_where_the_start_estimate_suffices_nothing_changes(partition):
    # the default experiment (one-hidden-layer MLP, breast cancer, 8 agents), iid and
    # Dirichlet(0.5) shards: adapted and fixed tau give the same trajectory, bit for bit
    base = [*QUIET, "run.iterations=60", "run.eval_every=30", f"data.partition='{partition}'",
            "data.beta=0.5"]
    runs = {a: run_experiment(load_config(None, [*base, f"algorithm.adapt_tau={a}"]),
                              out=None, verbose=False) for a in ("true", "false")}
    on, off = runs["true"], runs["false"]
    assert on.summary["tau_final"] == on.summary["tau"] == off.summary["tau"]
    assert torch.equal(on.state.X, off.state.X)


def test_a_relu_cnn_on_wine_that_blew_up_trains():
    # NEXT-PL, the CNN, wine, 8 agents on a ring: with the start tau fixed (0.249) the
    # iterates were NaN at iteration 35 (objective 4e4 at 30); adapted, tau is raised at
    # iteration 6 (8.7x) and the run trains
    cfg = load_config(None, [*QUIET, "data.name='wine'", "model.name='cnn'",
                             "model.activation='relu'", "model.loss='cross_entropy'",
                             "topology.graph='ring'", "topology.dynamic='static'",
                             "run.iterations=12", "run.eval_every=4"])
    res = run_experiment(cfg, out=None, verbose=False)
    objective = res.history.column("objective")
    assert res.summary["tau_final"] >= 4 * res.summary["tau"]
    assert objective[-1] < 0.3 * objective[0]


def test_a_resumed_run_keeps_adapting():
    # a resume replaces the "auto" options by the values the interrupted run resolved (its
    # checkpoint's info); adapt_tau is one of them, so the numeric tau does not switch it off
    from dcnn.prepare import prepare
    from dcnn.runner import build
    exp = prepare(load_config(None, [*QUIET, "run.iterations=1"]))
    fresh, _ = build(exp)
    assert fresh.algorithm.adapt_tau is True and fresh.info["adapt_tau"] is True
    resumed, _ = build(exp, resumed_info={"tau": 0.5, "adapt_tau": True})
    assert resumed.algorithm.adapt_tau is True and resumed.algorithm.surrogate.tau == 0.5
    off, _ = build(prepare(load_config(None, [*QUIET, "algorithm.tau=0.5"])))
    assert off.algorithm.adapt_tau is False
