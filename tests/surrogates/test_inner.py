"""Inner solvers against independent references: FISTA vs a long proximal-gradient run in
numpy, damped Newton vs scipy's L-BFGS-B, CG vs torch.linalg.solve, power iteration vs
eigvalsh; rows of a stack are solved independently of each other."""
import numpy as np
import pytest
import scipy.optimize
import torch

from dcnn.problems import soft_threshold
from dcnn.surrogates.inner import cg, fista, newton, power_iteration

A, K, P = 3, 8, 12


def _lasso_data(seed=0):
    g = torch.Generator().manual_seed(seed)
    J = torch.randn(A, K, P, generator=g, dtype=torch.float64)
    e = torch.randn(A, K, generator=g, dtype=torch.float64)
    q = 0.3 * torch.randn(A, P, generator=g, dtype=torch.float64)
    return J, e, q


def _fista_lasso(J, e, q, c, l1, l2, tol, max_iter=5000, L=None):
    """phi(x) = ||e - J x||^2 + (c/2)||x||^2 + q^T x,  psi(x) = l1 ||x||_1 + l2 ||x||^2."""
    fwd = lambda X: (J @ X[..., None])[..., 0]                    # noqa: E731
    adj = lambda E: (J.transpose(1, 2) @ E[..., None])[..., 0]    # noqa: E731

    def h(U):
        r = e - U
        return (r * r).sum(-1), -2.0 * r

    def prox(Z, step):
        return soft_threshold(Z, step * l1) / (1.0 + 2.0 * step * l2)

    L = torch.full((J.shape[0],), c + 1.0, dtype=J.dtype) if L is None else L
    return fista(torch.zeros(J.shape[0], J.shape[2], dtype=J.dtype), fwd=fwd, adj=adj, h=h,
                 c=c, q=q, prox=prox, L=L, tol=tol, max_iter=max_iter)


def _ista_numpy(J, e, q, c, l1, l2, iters=12000):
    """Plain proximal gradient with the exact Lipschitz constant (the reference)."""
    L = 2 * np.linalg.eigvalsh(J.T @ J)[-1] + c
    x = np.zeros(J.shape[1])
    for _ in range(iters):
        g = -2 * J.T @ (e - J @ x) + c * x + q
        z = x - g / L
        x = np.sign(z) * np.maximum(np.abs(z) - l1 / L, 0) / (1 + 2 * l2 / L)
    return x


def _lasso_obj(J, e, q, c, l1, l2, x):
    r = e - J @ x
    return r @ r + 0.5 * c * x @ x + q @ x + l1 * np.abs(x).sum() + l2 * x @ x


@pytest.mark.parametrize("l1,l2", [(0.5, 0.0), (0.3, 0.2)])
def test_fista_matches_long_proximal_gradient_run(l1, l2):
    J, e, q = _lasso_data()
    c = 0.5
    res = _fista_lasso(J, e, q, c, l1, l2, tol=1e-11)
    assert (res.residual <= 1e-11).all() and (res.iterations < 5000).all()
    for a in range(A):
        Ja, ea, qa = J[a].numpy(), e[a].numpy(), q[a].numpy()
        ref = _ista_numpy(Ja, ea, qa, c, l1, l2)
        x = res.x[a].numpy()
        assert abs(_lasso_obj(Ja, ea, qa, c, l1, l2, x)
                   - _lasso_obj(Ja, ea, qa, c, l1, l2, ref)) <= 1e-10
        np.testing.assert_allclose(x, ref, atol=1e-9)
        assert (x == 0).any()                       # the l1 term is active


def test_fista_backtracks_from_a_low_guess_and_rows_are_independent():
    J, e, q = _lasso_data(1)
    low = _fista_lasso(J, e, q, 0.5, 0.4, 0.0, tol=1e-10, L=torch.full((A,), 1e-3,
                                                                        dtype=torch.float64))
    for a in range(A):
        alone = _fista_lasso(J[a:a + 1], e[a:a + 1], q[a:a + 1], 0.5, 0.4, 0.0, tol=1e-10,
                             L=torch.full((1,), 1e-3, dtype=torch.float64))
        assert int(alone.iterations[0]) == int(low.iterations[a])
        torch.testing.assert_close(alone.x[0], low.x[a], atol=1e-13, rtol=0)
    ref = _ista_numpy(J[0].numpy(), e[0].numpy(), q[0].numpy(), 0.5, 0.4, 0.0)
    np.testing.assert_allclose(low.x[0].numpy(), ref, atol=1e-8)


def _ce_subproblem(O, seed=0, M=7, P=9, A=2):
    g = torch.Generator().manual_seed(seed)
    o = torch.randn(A, M, O, generator=g, dtype=torch.float64)
    if O == 1:
        T = (torch.rand(A, M, 1, generator=g) < 0.5).double()
    else:
        T = torch.eye(O, dtype=torch.float64)[torch.randint(0, O, (A, M), generator=g)]
    J = torch.randn(A, M * O, P, generator=g, dtype=torch.float64)
    q = 0.2 * torch.randn(A, P, generator=g, dtype=torch.float64)
    return o, T, J, q


def _ce_value(o, T, U):
    z = o + U.reshape(o.shape)
    if o.shape[-1] == 1:
        return (torch.nn.functional.softplus(z) - T * z).sum((-1, -2))
    return -(T * torch.log_softmax(z, -1)).sum((-1, -2))


def _scipy_ce(o, T, J, q, c):
    """One agent: min_x  CE(o + J x) + (c/2)||x||^2 + q^T x  with numpy and L-BFGS-B."""
    o, T, J, q = o.numpy(), T.numpy(), J.numpy(), q.numpy()

    def fun(x):
        z = o + (J @ x).reshape(o.shape)
        if o.shape[-1] == 1:
            val = np.sum(np.logaddexp(0, z) - T * z)
            gz = 1 / (1 + np.exp(-z)) - T
        else:
            lse = np.log(np.exp(z - z.max(-1, keepdims=True)).sum(-1, keepdims=True)) \
                + z.max(-1, keepdims=True)
            val = -np.sum(T * (z - lse))
            gz = np.exp(z - lse) - T
        return (val + 0.5 * c * x @ x + q @ x,
                J.T @ gz.reshape(-1) + c * x + q)

    res = scipy.optimize.minimize(fun, np.zeros(J.shape[1]), jac=True, method="L-BFGS-B",
                                  options={"gtol": 1e-13, "ftol": 0.0, "maxiter": 10000})
    return res.x


@pytest.mark.parametrize("O", [1, 3])
@pytest.mark.parametrize("direction", ["dense", "cg"])
def test_newton_matches_scipy_on_the_cross_entropy_subproblem(O, direction):
    o, T, J, q = _ce_subproblem(O)
    c = 0.3
    fwd = lambda X: (J @ X[..., None])[..., 0]                    # noqa: E731
    adj = lambda E: (J.transpose(1, 2) @ E[..., None])[..., 0]    # noqa: E731

    def h(U):
        U = U.detach().requires_grad_(True)
        with torch.enable_grad():
            v = _ce_value(o, T, U)
            (g,) = torch.autograd.grad(v.sum(), U)
        return v.detach(), g

    def hess(U):   # (A, K, K) by autograd, independent of the solver's own formulas
        return torch.stack([torch.func.hessian(lambda u, a=a: _ce_value(o[a], T[a], u))(U[a])
                            for a in range(U.shape[0])])

    def dense(U, g):
        H = J.transpose(1, 2) @ hess(U) @ J + c * torch.eye(J.shape[2], dtype=J.dtype)
        return torch.linalg.solve(H, -g)

    def by_cg(U, g):
        H = hess(U)
        return cg(lambda Z: adj((H @ fwd(Z)[..., None])[..., 0]) + c * Z, -g,
                  tol=1e-14, max_iter=100).x

    res = newton(torch.zeros_like(q), fwd=fwd, adj=adj, h=h, c=c, q=q,
                 direction=dense if direction == "dense" else by_cg, tol=1e-11, max_iter=50)
    assert (res.residual <= 1e-11).all() and (res.iterations <= 15).all()
    for a in range(q.shape[0]):
        ref = _scipy_ce(o[a], T[a], J[a], q[a], c)
        np.testing.assert_allclose(res.x[a].numpy(), ref, atol=1e-7)


def test_newton_line_search_converges_from_far_away():
    o, T, J, q = _ce_subproblem(3, seed=2)
    c = 1e-2
    fwd = lambda X: (J @ X[..., None])[..., 0]                    # noqa: E731
    adj = lambda E: (J.transpose(1, 2) @ E[..., None])[..., 0]    # noqa: E731

    def h(U):
        z = o + U.reshape(o.shape)
        return _ce_value(o, T, U), (torch.softmax(z, -1) - T).reshape(U.shape)

    def dense(U, g):
        H = torch.stack([torch.func.hessian(lambda u, a=a: _ce_value(o[a], T[a], u))(U[a])
                         for a in range(U.shape[0])])
        Hx = J.transpose(1, 2) @ H @ J + c * torch.eye(J.shape[2], dtype=J.dtype)
        return torch.linalg.solve(Hx, -g)

    x0 = 30.0 * torch.ones_like(q)
    res = newton(x0, fwd=fwd, adj=adj, h=h, c=c, q=q, direction=dense, tol=1e-10,
                 max_iter=100)
    assert (res.residual <= 1e-10).all()
    ref = _scipy_ce(o[0], T[0], J[0], q[0], c)
    np.testing.assert_allclose(res.x[0].numpy(), ref, atol=1e-6)


def test_cg_matches_linalg_solve_row_by_row():
    g = torch.Generator().manual_seed(0)
    B = torch.randn(4, 40, 30, generator=g, dtype=torch.float64)
    H = B.transpose(1, 2) @ B + torch.tensor([0.1, 1.0, 5.0, 20.0],
                                             dtype=torch.float64)[:, None, None] * torch.eye(30)
    b = torch.randn(4, 30, generator=g, dtype=torch.float64)
    mv = lambda X: (H @ X[..., None])[..., 0]                     # noqa: E731
    res = cg(mv, b, tol=1e-12, max_iter=200)
    torch.testing.assert_close(res.x, torch.linalg.solve(H, b), atol=1e-10, rtol=0)
    assert (res.residual <= 1e-12).all()
    # better conditioned rows stop earlier; a row started at its solution does not move
    assert res.iterations[3] < res.iterations[0]
    again = cg(mv, b, res.x, tol=1e-10, max_iter=200)
    assert (again.iterations == 0).all() and torch.equal(again.x, res.x)


def test_power_iteration_finds_the_largest_eigenvalue():
    g = torch.Generator().manual_seed(0)
    B = torch.randn(3, 20, 10, generator=g, dtype=torch.float64)
    H = B.transpose(1, 2) @ B
    lam = power_iteration(lambda X: (H @ X[..., None])[..., 0],
                          torch.rand(3, 10, generator=g, dtype=torch.float64), iters=300)
    torch.testing.assert_close(lam, torch.linalg.eigvalsh(H)[:, -1], rtol=1e-9, atol=0)
