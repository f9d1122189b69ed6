"""Local problems: gradients, residuals and Jacobians against finite differences; padding of
uneven shards is exact; the flat view of a user module equals the module."""
import numpy as np
import pytest
import torch

from dcnn.errors import DataError
from dcnn.problems import FlatModel, LocalProblems, make_regularizer, mlp

from oracles import random_shards

torch.manual_seed(0)


def _problem(loss="squared", outputs=2, sizes=(3, 5, 4), hidden=(4,), activation="tanh"):
    shards, task = random_shards(np.random.default_rng(0), sizes, loss=loss, O=outputs)
    model = FlatModel(mlp(n_inputs=3, hidden=hidden, n_outputs=outputs, activation=activation,
                          seed=1))
    return LocalProblems(model=model, shards=shards, loss=loss, task=task,
                         n_total=sum(sizes), regularizer=make_regularizer("l2", lam=0.1))


def _fd_grad(f, w, h=1e-6):
    g = torch.zeros_like(w)
    for k in range(w.numel()):
        e = torch.zeros_like(w)
        e[k] = h
        g[k] = (f(w + e) - f(w - e)) / (2 * h)
    return g


@pytest.mark.parametrize("loss,outputs", [("squared", 2), ("cross_entropy", 1),
                                          ("cross_entropy", 3)])
@pytest.mark.parametrize("activation", ["tanh", "sigmoid"])
def test_gradients_match_finite_differences(loss, outputs, activation):
    p = _problem(loss, outputs, activation=activation)
    W = p.model.w0 + 0.3 * torch.randn(p.n_agents, p.n_params, dtype=torch.float64)
    G = p.gradients(W)
    for a in range(p.n_agents):
        def f(w, a=a):
            Wa = W.clone()
            Wa[a] = w
            return p.loss_values(Wa)[a]
        torch.testing.assert_close(G[a], _fd_grad(f, W[a].clone()), atol=1e-8, rtol=1e-6)


def test_jacobian_and_residuals_match_finite_differences():
    p = _problem()
    W = p.model.w0 + 0.3 * torch.randn(p.n_agents, p.n_params, dtype=torch.float64)
    J = p.jacobians(W)
    E = p.residuals(W)
    h = 1e-6
    for k in range(p.n_params):
        e = torch.zeros(p.n_params, dtype=torch.float64)
        e[k] = h
        # residual e = T - f, so d e / d w = -J
        fd = -(p.residuals(W + e) - p.residuals(W - e)) / (2 * h)
        torch.testing.assert_close(J[:, :, k], fd, atol=1e-8, rtol=1e-6)
    # padded rows of the shorter shards are exactly zero
    m_max = int(p.counts.max())
    for a, m in enumerate(p.counts.tolist()):
        assert torch.all(E[a].reshape(m_max, -1)[m:] == 0)
        assert torch.all(J[a].reshape(m_max, -1, p.n_params)[m:] == 0)


def test_gauss_newton_identity_for_squared_loss():
    """grad g_i = -(2/M) J_i^T e_i: the relation the PL surrogate relies on."""
    p = _problem()
    W = p.model.w0.expand(p.n_agents, -1).clone()
    G = p.gradients(W)
    J, E = p.jacobians(W), p.residuals(W)
    torch.testing.assert_close(G, -2 * p.scale * (J.transpose(1, 2) @ E[..., None])[..., 0])


def test_uneven_shards_equal_separate_problems():
    p = _problem(sizes=(2, 7))
    W = p.model.w0 + 0.1 * torch.randn(2, p.n_params, dtype=torch.float64)
    for a in range(2):
        X = p.X[a, : p.counts[a]].numpy()
        T = p.T[a, : p.counts[a]].numpy()
        single = LocalProblems(model=p.model, shards=[(X, T)], loss="squared",
                               task="regression", n_total=p.n_total,
                               regularizer=p.regularizer)
        torch.testing.assert_close(single.loss_values(W[a: a + 1])[0], p.loss_values(W)[a])
        torch.testing.assert_close(single.gradients(W[a: a + 1])[0], p.gradients(W)[a])


def test_flat_model_of_user_module_equals_module():
    module = torch.nn.Sequential(torch.nn.Linear(3, 6), torch.nn.Sigmoid(),
                                 torch.nn.Linear(6, 2)).double()
    fm = FlatModel(module)
    x = torch.randn(5, 3, dtype=torch.float64)
    torch.testing.assert_close(fm.apply(fm.w0, x), module(x))
    w = torch.randn(fm.n_params, dtype=torch.float64)
    fm.load_into(w, module)
    torch.testing.assert_close(fm.apply(w, x), module(x))
    torch.testing.assert_close(fm.flatten(module), w)


def test_bad_shards_are_refused():
    model = FlatModel(mlp(n_inputs=3, hidden=(), n_outputs=1))
    reg = make_regularizer("none")
    X = np.ones((4, 3))
    with pytest.raises(DataError, match="NaN or inf"):
        bad = X.copy()
        bad[1, 1] = np.nan
        LocalProblems(model=model, shards=[(bad, np.ones((4, 1)))], loss="squared",
                      task="regression", n_total=4, regularizer=reg)
    with pytest.raises(DataError, match="outputs"):
        LocalProblems(model=model, shards=[(X, np.ones((4, 2)))], loss="squared",
                      task="regression", n_total=4, regularizer=reg)
    with pytest.raises(DataError, match="empty"):
        LocalProblems(model=model, shards=[(X[:0], np.ones((0, 1)))], loss="squared",
                      task="regression", n_total=4, regularizer=reg)
