"""The cause of PL's blow-up with the earlier ``tau = "auto"``, and the rule that replaced it
(``dcnn/surrogates/tau.py``).

With every agent holding the same shard, NEXT's iterates stay equal and one PL step on a
linear least-squares problem multiplies the error along an eigenvector of the network's
Hessian (curvature ``h``) by ``1 - alpha h / (h / N + tau)`` exactly: it diverges iff
``tau < (alpha / 2 - 1 / N) h_max``. The tests check that edge on both sides, that the new
rule sits on the safe side of it at 8 and 32 agents while the old one (``max_i L_i``) does not
at 32, and the rule end to end on the configuration that blew up.
"""
import numpy as np
import pytest
import torch

from dcnn.algorithms import Constant, Next
from dcnn.comm import LocalNetwork
from dcnn.config import load_config
from dcnn.errors import DivergenceError
from dcnn.problems import FlatModel, LocalProblems, make_regularizer, mlp
from dcnn.runner import run_experiment
from dcnn.surrogates import PL
from dcnn.surrogates.tau import auto_tau, local_curvatures

ALPHA = 0.5


def _identical_shards(n_agents: int) -> LocalProblems:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 5)) * np.array([1.5, 1.2, 1.0, 1.0, 0.9])
    y = X @ rng.normal(size=(5, 1)) + 0.1 * rng.normal(size=(40, 1))
    model = FlatModel(mlp(n_inputs=5, hidden=[], n_outputs=1, seed=0))
    return LocalProblems(model=model, shards=[(X, y)] * n_agents, loss="squared",
                         task="regression", n_total=40 * n_agents,
                         regularizer=make_regularizer("none"))


def _hessian_max(prob: LocalProblems) -> float:
    """The largest eigenvalue of the network's Hessian ``sum_i hess g_i`` (dense)."""
    H = sum(torch.autograd.functional.hessian(
        lambda w: prob._agent_loss(w, prob.X[i], prob.T[i], prob.mask[i]), prob.model.w0)
        for i in range(prob.n_agents))
    return float(torch.linalg.eigvalsh(H).max())


def _error_after(prob: LocalProblems, tau: float, iterations: int) -> float:
    n = prob.n_agents
    net = LocalNetwork(n)
    algo = Next(surrogate=PL(tau=tau), schedule=Constant(ALPHA))
    state = algo.init(prob, net, prob.model.w0.expand(n, -1).clone())
    W = np.full((n, n), 1.0 / n)
    with torch.no_grad():
        for _ in range(iterations):
            state = algo.step(state, prob, net, W)
    X, T = prob.X[0], prob.T[0]
    w_star = torch.linalg.lstsq(torch.cat([X, torch.ones(len(X), 1, dtype=X.dtype)], 1),
                                T).solution.flatten()
    w_star = torch.cat([w_star[:-1], w_star[-1:]])   # (weights, bias) = the module's order
    return float((state.X - w_star).abs().max())


@pytest.mark.parametrize("n_agents", [8, 32])
def test_pl_diverges_exactly_below_the_predicted_edge(n_agents):
    prob = _identical_shards(n_agents)
    edge = (ALPHA / 2 - 1 / n_agents) * _hessian_max(prob)
    assert _error_after(prob, 1.05 * edge, 300) < 1e-6      # converges to least squares
    assert _error_after(prob, 0.95 * edge, 300) > 1e3       # diverges
    net = LocalNetwork(n_agents)
    X0 = prob.model.w0.expand(n_agents, -1).clone()
    new = auto_tau("pl", problem=prob, network=net, X0=X0, alpha0=ALPHA)
    old = float(local_curvatures(prob, X0).max())           # the earlier rule, max_i L_i
    assert new >= 2 * edge                                  # a margin of 2 at least
    assert _error_after(prob, new, 300) < 1e-6
    if n_agents == 32:
        assert old < edge and _error_after(prob, old, 300) > 1e3


def test_default_pl_with_32_agents_converges_where_the_old_rule_blew_up():
    # breast cancer, the one-hidden-layer MLP, 32 agents: objective 1.8e167 after 150 rounds
    # with tau = max_i L_i (0.49); the new rule (tau 2.0 here) converges
    cfg = load_config(None, ["run.agents=32", "run.iterations=150", "run.eval_every=50",
                             "run.reference=false", "run.progress=false"])
    res = run_experiment(cfg, out=None, verbose=False)
    objective = res.history.column("objective")
    assert objective[-1] < 0.1 * objective[0]
    assert res.history.last["consensus_error"] < 1e-2
    old = load_config(None, ["run.agents=32", "run.iterations=150", "run.eval_every=50",
                             "run.reference=false", "run.progress=false",
                             "algorithm.tau=0.49"])
    try:     # the guard stops only non-finite values; 1e167 is still finite
        blown = run_experiment(old, out=None, verbose=False).history.last["objective"]
    except DivergenceError:
        blown = float("inf")
    assert blown > 1e6 * objective[0]
