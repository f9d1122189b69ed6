"""The Python API of the algorithms: ``tau = "auto"`` and ``lr = "auto"`` resolved by ``init``
into the state (and equal to the run with that number), ``X0`` checked by the loop, and
one-line ``ConfigError`` messages that name the Python argument."""
import pytest
import torch

from dcnn.algorithms import (Centralized, Constant, Dgd, Diminishing, Extra, GradientTracking,
                             Next, Polynomial, PushDiging, Scaled, Sonata, auto_lr,
                             make_schedule, run_loop)
from dcnn.comm import LocalNetwork
from dcnn.errors import ConfigError
from dcnn.surrogates import FL, PL, Blocked, make_blocks, make_surrogate
from dcnn.surrogates.tau import auto_tau
from dcnn.topology import make_topology

from conftest import error_of
from oracles import tiny_problem


def _run(algo, prob, *, iterations=4, X0=None, graph="ring"):
    n = prob.n_agents
    topo = make_topology(graph=graph, n=n, dynamic="static", seed=0)
    X0 = prob.model.w0.expand(n, -1).clone() if X0 is None else X0
    return run_loop(algo, problem=prob, network=LocalNetwork(n), topology=topo, X0=X0,
                    iterations=iterations, eval_every=iterations)


def _same(a, b):
    for key, x in vars(a).items():
        y = getattr(b, key)
        assert (x.equal(y) if isinstance(x, torch.Tensor) else x == y), key


@pytest.mark.parametrize("cls,surrogate", [(Next, "pl"), (Next, "fl"), (Sonata, "fl")])
def test_tau_auto_is_resolved_at_init_and_kept_in_the_state(cls, surrogate):
    prob = tiny_problem("cross_entropy", 3, sizes=(6, 9, 7, 8))
    X0 = prob.model.w0.expand(4, -1).clone()
    tau = auto_tau(surrogate, problem=prob, network=LocalNetwork(4), X0=X0, alpha0=0.5)
    graph = "directed_ring" if cls is Sonata else "ring"
    auto, _ = _run(cls(make_surrogate(surrogate, tau="auto"), Diminishing(0.5)), prob,
                   graph=graph)
    # the same number given, adapted like "auto" is (adapt_tau): the same run, bit for bit
    fixed, _ = _run(cls(make_surrogate(surrogate, tau=tau), Diminishing(0.5), adapt_tau=True),
                    prob, graph=graph)
    assert auto.tau == tau > 0 and fixed.tau == tau
    _same(auto, fixed)


def test_blocked_pl_with_tau_auto_resolves_it_too():
    prob = tiny_problem("cross_entropy", 3)
    sur = Blocked(PL(tau="auto"), make_blocks(prob.model, "neuron"), threads=1, fraction=0.5)
    state, _ = _run(Next(sur, Constant(0.5)), prob, iterations=3)
    X0 = prob.model.w0.expand(3, -1).clone()
    assert state.tau == auto_tau("pl", problem=prob, network=LocalNetwork(3), X0=X0,
                                 alpha0=0.5)
    assert state.calls == 3 and state.has_warm.all()


def test_a_surrogate_with_tau_auto_needs_the_network_for_a_single_solve():
    prob = tiny_problem()
    V = prob.model.w0.expand(prob.n_agents, -1).clone()
    G = prob.gradients(V)
    error_of(lambda: PL(tau="auto").solve(prob, V, G, torch.zeros_like(V)), 'tau = "auto"',
             "network", kind=ConfigError)


@pytest.mark.parametrize("make", [
    lambda lr: Dgd(Scaled(Constant(0.5), lr)),
    lambda lr: GradientTracking(Scaled(Polynomial(0.5), lr)),
    lambda lr: Extra(Scaled(Constant(0.5), lr)),
    lambda lr: PushDiging(Scaled(Diminishing(0.5), lr)),
    lambda lr: Centralized(Scaled(Constant(0.5), lr), optimizer="gd")])
def test_lr_auto_is_resolved_at_init_and_kept_in_the_state(make):
    prob = tiny_problem(sizes=(6, 9, 7, 8))
    X0 = prob.model.w0.expand(4, -1).clone()
    lr = auto_lr(problem=prob, network=LocalNetwork(4), X0=X0)
    auto, _ = _run(make("auto"), prob)
    fixed, _ = _run(make(lr), prob)
    assert auto.lr == lr > 0
    _same(auto, fixed)


def test_lr_auto_for_adam_and_lbfgs_and_a_number_kept_as_given():
    prob = tiny_problem()
    adam, _ = _run(Centralized(Scaled(Constant(1.0), "auto"), optimizer="adam"), prob)
    lbfgs, _ = _run(Centralized(Scaled(Constant(1.0), "auto"), optimizer="lbfgs"), prob)
    gt, _ = _run(GradientTracking(Scaled(Constant(1.0), 0.25)), prob)
    assert (adam.lr, lbfgs.lr, gt.lr) == (0.02, 1.0, 0.25)
    error_of(lambda: Scaled(Constant(1.0), "auto").init(), "resolve_lr", kind=ConfigError)


def test_x0_is_checked_with_its_value_and_the_fix():
    prob = tiny_problem()
    P = prob.n_params
    algo = GradientTracking(Scaled(Constant(0.5), 0.1))
    good = prob.model.w0.expand(3, -1).clone()
    for X0, fragments in [(good.numpy(), ("X0 must be a torch tensor", "ndarray")),
                          (good.float(), ("X0 must have the model's dtype torch.float64",
                                          "torch.float32")),
                          (good.long(), ("X0 must have the model's dtype", "torch.int64")),
                          (good[:2], (f"X0 must have shape (3, {P})", f"got (2, {P})")),
                          (good[:, :-1], (f"got (3, {P - 1})",))]:
        error_of(lambda: _run(algo, prob, X0=X0), *fragments, "problem.model.w0",
                 kind=ConfigError)


@pytest.mark.parametrize("make,fragments", [
    (lambda: PL(tau=-1), ('tau must be a finite number > 0 or "auto"', "got -1")),
    (lambda: FL(tau=0), ("tau must be", "got 0")),
    (lambda: FL(tau="fast"), ("tau must be", "'fast'")),
    (lambda: PL(solver="qr"), ("solver 'qr' is unknown",)),
    (lambda: make_surrogate("ql"), ("surrogate 'ql' is unknown", "fl, pl")),
    (lambda: Scaled(Constant(0.5), -2), ('lr must be a finite number > 0 or "auto"',
                                         "got -2")),
    (lambda: Scaled("constant", 0.1), ("schedule must be a step-size schedule",
                                       "'constant'")),
    (lambda: Constant(1.5), ("alpha0 must lie in (0, 1]", "got 1.5")),
    (lambda: Diminishing(0.5, eps=1.0), ("eps must lie in (0, 1)", "got 1.0")),
    (lambda: Polynomial(0.5, power=0.4), ("power must lie in (0.5, 1]", "got 0.4")),
    (lambda: make_schedule("cosine"), ("schedule 'cosine' is unknown",)),
    (lambda: make_schedule("constant", alpha0=0), ("alpha0 must lie in (0, 1]", "got 0")),
    (lambda: Next("pl", Constant(0.5)), ("surrogate must be a surrogate", "'pl'")),
    (lambda: Sonata(PL(), 0.5), ("schedule must be a step-size schedule", "0.5")),
    (lambda: Next(PL(), Constant(0.5), batch_size=-1), ("batch_size must be", "got -1")),
    (lambda: Next(PL(), Constant(0.5), seed=1.5), ("seed must be an integer", "1.5")),
    (lambda: Dgd(Constant(0.5), batch_size=2.5), ("batch_size must be", "2.5")),
    (lambda: GradientTracking(None), ("schedule must be a step-size schedule", "None")),
    (lambda: Extra(Constant(0.5), name=""), ("name must be a non-empty string",)),
    (lambda: PushDiging(Constant(0.5), seed="0"), ("seed must be an integer", "'0'")),
    (lambda: Centralized(Constant(0.5), optimizer="sgd"), ("optimizer 'sgd' is unknown",
                                                          "lbfgs, gd, adam")),
    (lambda: Blocked(PL(), [torch.arange(3)], threads=0), ("threads must be an integer",
                                                          "got 0"))])
def test_constructors_name_the_python_argument(make, fragments):
    msg = error_of(make, *fragments, kind=ConfigError)
    assert "algorithm." not in msg
