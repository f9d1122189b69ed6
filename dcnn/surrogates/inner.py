"""Inner solvers of the local subproblems, as pure functions on stacked rows ``(A, P)``.

Every agent ``a`` of a group solves its own problem; the rows iterate together (one batched
product per step) but each row has its own step, its own stopping test and freezes once it
has converged, so a row's result does not depend on the other rows of the group.

The smooth part the solvers see has the composite form

    phi(x) = h(J x) + (c / 2) ||x||^2 + q^T x,                 x in R^P, J x in R^K

where ``J`` is only reached through products ``fwd(X) = J X`` (``(A, P) -> (A, K)``) and
``adj(E) = J^T E`` (``(A, K) -> (A, P)``), formed or matrix-free, and ``h(U) -> (values (A,),
grads (A, K))`` is convex. Keeping ``u = J x`` alongside ``x`` makes function values along a
line or a momentum combination free of extra products, because ``J`` is linear.

- :func:`fista`: accelerated proximal gradient with backtracking and adaptive restart for
  ``phi + psi`` (``psi`` given by its prox), Beck & Teboulle 2009; O'Donoghue & Candes 2015.
- :func:`newton`: damped Newton with an Armijo line search for smooth ``phi``; the caller
  supplies the Newton system solve (Cholesky / Woodbury, or CG on Hessian-vector products).
- :func:`cg`: conjugate gradient for ``A x = b`` with ``A`` SPD given by its products.
- :func:`power_iteration`: largest eigenvalue of an SPD operator.

All stop on a residual in gradient units, ``<= tol`` per row (``tol`` a float or ``(A,)``).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch

__all__ = ["InnerResult", "fista", "newton", "cg", "power_iteration"]

Op = Callable[[torch.Tensor], torch.Tensor]
Outer = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


class InnerResult(NamedTuple):
    """Solution rows ``x (A, P)``, iterations per row ``(A,)`` and final residual ``(A,)``."""

    x: torch.Tensor
    iterations: torch.Tensor
    residual: torch.Tensor


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a * b).sum(-1)


def _phi(h: Outer, x, u, c, q):
    """``phi(x)``, ``grad h(u)`` and the size of phi's terms (their rounding scale)."""
    hv, hg = h(u)
    quad, lin = 0.5 * c * _dot(x, x), _dot(q, x)
    return hv + quad + lin, hg, hv.abs() + quad + lin.abs()


def _slack(*sizes: torch.Tensor) -> torch.Tensor:
    # rounding allowance in a sufficient-decrease test: near the optimum a step changes phi
    # by less than the rounding error of its terms and must not be taken for a failed test
    return 16.0 * torch.finfo(sizes[0].dtype).eps * sum(sizes)


def power_iteration(mv: Op, x0: torch.Tensor, *, iters: int = 20) -> torch.Tensor:
    """Rayleigh-quotient estimate of ``lambda_max`` of the SPD operator ``mv``, per row.

        x <- A x / ||A x||,   lambda = x^T A x  (a lower bound; exact as iters grows)
    """
    x = x0 / torch.linalg.vector_norm(x0, dim=-1, keepdim=True).clamp_min(1e-300)
    lam = torch.zeros(x.shape[0], dtype=x.dtype)
    for _ in range(iters):
        y = mv(x)
        lam = _dot(x, y)
        x = y / torch.linalg.vector_norm(y, dim=-1, keepdim=True).clamp_min(1e-300)
    return lam


def cg(mv: Op, b: torch.Tensor, x0: torch.Tensor | None = None, *,
       tol: float | torch.Tensor, max_iter: int, min_iter: int = 0) -> InnerResult:
    """Solve ``A x = b`` row-wise by conjugate gradient, ``A`` SPD given by ``mv``.

        r = b - A x,  p = r
        a = r^T r / p^T A p,  x <- x + a p,  r <- r - a A p
        p <- r + (r_new^T r_new / r^T r) p

    A row stops once ``||r|| <= tol`` after at least ``min_iter`` steps (Hestenes & Stiefel
    1952); ``||r||`` is the gradient norm of ``x^T A x / 2 - b^T x``.
    """
    x = torch.zeros_like(b) if x0 is None else x0.clone()
    r = b - mv(x) if x0 is not None else b.clone()
    tol = torch.as_tensor(tol, dtype=b.dtype).expand(b.shape[0])
    rr = _dot(r, r)
    its = torch.zeros(b.shape[0], dtype=torch.long)
    active = (rr.sqrt() > tol) | (its < min_iter)
    p = r.clone()
    for _ in range(max_iter):
        if not active.any():
            break
        Ap = mv(p)
        pAp = _dot(p, Ap)
        a = torch.where(active & (pAp > 0), rr / torch.where(pAp > 0, pAp, 1.0), 0.0)
        # x <- x + a p,  r <- r - a A p
        x = x + a[:, None] * p
        r = r - a[:, None] * Ap
        rr_new = _dot(r, r)
        beta = torch.where(active, rr_new / torch.where(rr > 0, rr, 1.0), 0.0)
        # p <- r + beta p
        p = r + beta[:, None] * p
        its += active
        rr = torch.where(active, rr_new, rr)
        active = active & ((rr.sqrt() > tol) | (its < min_iter))
    return InnerResult(x, its, rr.sqrt())


def fista(x0: torch.Tensor, *, fwd: Op, adj: Op, h: Outer, c: float, q: torch.Tensor,
          prox: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], L: torch.Tensor,
          tol: float | torch.Tensor, max_iter: int, min_iter: int = 1) -> InnerResult:
    """Minimise ``phi(x) + psi(x)`` row-wise by FISTA with backtracking and restart.

        y_k     = x_k + ((t_{k-1} - 1) / t_k) (x_k - x_{k-1})
        x_{k+1} = prox_{psi / L}(y_k - grad phi(y_k) / L)
                  with L doubled until phi(x_{k+1}) <= phi(y_k) + g^T D + (L / 2) ||D||^2,
                  D = x_{k+1} - y_k
        t_{k+1} = (1 + sqrt(1 + 4 t_k^2)) / 2,   t_{k+1} = 1 when D^T (x_{k+1} - x_k) < 0

    ``prox(z, step)`` is ``prox_{step psi}(z)`` with ``step (A, 1)``; ``L (A,)`` is a first guess
    of the Lipschitz constant of ``grad phi`` (it only grows). A row stops after at least
    ``min_iter`` steps once the gradient-mapping norm ``rho = L ||D|| <= tol``; then
    ``dist(0, d(phi + psi)(x_{k+1})) <= (1 + L_phi / L) rho`` (``<= 2 rho`` once ``L`` reaches
    the Lipschitz constant ``L_phi``) and, ``phi`` being ``c``-strongly convex,
    ``||x_{k+1} - x*|| <= dist(0, d(phi + psi)(x_{k+1})) / c``.
    """
    A = x0.shape[0]
    x = x_prev = x0.clone()
    u = u_prev = fwd(x)
    t = t_prev = torch.ones(A, dtype=x.dtype)
    L = L.clone().to(x.dtype)
    tol = torch.as_tensor(tol, dtype=x.dtype).expand(A)
    active = torch.ones(A, dtype=torch.bool)
    its = torch.zeros(A, dtype=torch.long)
    rho = torch.full((A,), float("inf"), dtype=x.dtype)
    for _ in range(max_iter):
        # y = x + beta (x - x_prev), and J y likewise
        beta = ((t_prev - 1.0) / t)[:, None]
        y, uy = x + beta * (x - x_prev), u + beta * (u - u_prev)
        fy, hg, my = _phi(h, y, uy, c, q)
        g = adj(hg) + c * y + q
        for _ in range(64):
            xn = prox(y - g / L[:, None], (1.0 / L)[:, None])
            un = fwd(xn)
            fn, _, mn = _phi(h, xn, un, c, q)
            D = xn - y
            excess = fn - fy - _dot(g, D) - 0.5 * L * _dot(D, D)
            bad = active & (excess > _slack(mn, my))
            if not bad.any():
                break
            L = torch.where(bad, 2.0 * L, L)
        rho_new = L * torch.linalg.vector_norm(D, dim=-1)
        restart = _dot(D, xn - x) < 0
        t_next = torch.where(restart, 1.0, 0.5 * (1.0 + torch.sqrt(1.0 + 4.0 * t * t)))
        t_prev_next = torch.where(restart, 1.0, t)
        keep = active[:, None]
        x_prev, u_prev = torch.where(keep, x, x_prev), torch.where(keep, u, u_prev)
        x, u = torch.where(keep, xn, x), torch.where(keep, un, u)
        t, t_prev = torch.where(active, t_next, t), torch.where(active, t_prev_next, t_prev)
        rho = torch.where(active, rho_new, rho)
        its += active
        active = active & ~((rho <= tol) & (its >= min_iter))
        if not active.any():
            break
    return InnerResult(x, its, rho)


def newton(x0: torch.Tensor, *, fwd: Op, adj: Op, h: Outer, c: float, q: torch.Tensor,
           direction: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
           tol: float | torch.Tensor, max_iter: int, min_iter: int = 1,
           armijo: float = 1e-4, max_halvings: int = 40) -> InnerResult:
    """Minimise the smooth, ``c``-strongly convex ``phi`` row-wise by damped Newton.

        g = J^T grad h(J x) + c x + q
        (J^T hess h(J x) J + c I) Delta = -g               (``direction(J x, g)``)
        x <- x + s Delta,  s = 2^-j, the first with phi(x + s Delta) <= phi(x) + armijo s g^T Delta

    A row stops after at least ``min_iter`` steps once ``||g|| <= tol``; then
    ``||x - x*|| <= ||g|| / c``. ``direction`` returns all rows (inactive ones are discarded).
    """
    A = x0.shape[0]
    x = x0.clone()
    u = fwd(x)
    tol = torch.as_tensor(tol, dtype=x.dtype).expand(A)
    active = torch.ones(A, dtype=torch.bool)
    its = torch.zeros(A, dtype=torch.long)
    for k in range(max_iter + 1):
        f, hg, m = _phi(h, x, u, c, q)
        # g = J^T grad h(J x) + c x + q
        g = adj(hg) + c * x + q
        gnorm = torch.linalg.vector_norm(g, dim=-1)
        active = active & ~((gnorm <= tol) & (its >= min_iter))
        if not active.any() or k == max_iter:
            break
        D = direction(u, g)
        uD = fwd(D)
        slope = _dot(g, D)
        s = torch.ones(A, dtype=x.dtype)
        for _ in range(max_halvings):
            ft, _, mt = _phi(h, x + s[:, None] * D, u + s[:, None] * uD, c, q)
            ok = ft <= f + armijo * s * slope + _slack(mt, m)
            if (ok | ~active).all():
                break
            s = torch.where(ok, s, 0.5 * s)
        # x <- x + s Delta (and J x likewise)
        step = torch.where(active, s, 0.0)[:, None]
        x, u = x + step * D, u + step * uD
        its += active
    return InnerResult(x, its, gnorm)
