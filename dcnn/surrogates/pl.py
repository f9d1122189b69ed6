"""PL: the partially linearised surrogate, for every loss and regulariser (Gauss-Newton-like).

Only the network output is linearised, ``f(w) ~ f(v) + J (w - v)``, and the loss is kept
(Scardapane & Di Lorenzo 2017, Sec. 3.2). With ``d = w - v``, ``s = 1/M``, outputs
``o_k = f(v; x_k)`` and ``J_k`` their Jacobian at ``v`` (pre-softmax outputs for
cross-entropy; linearising after the softmax would not give a convex surrogate):

    g~_i(w; v) = s sum_k loss(t_k, o_k + J_k d) + (tau / 2) ||d||^2

and the local step minimises ``g~_i(w; v_i) + pi~_i^T d + r(v_i + d)`` over ``d``. Writing
``h(J d) = s sum_k loss(t_k, o_k + J_k d)``, it is a convex problem of the composite form

    phi(d) = h(J d) + (c / 2) ||d||^2 + q^T d  [+ psi(d)]

solved per case (inner solvers in :mod:`dcnn.surrogates.inner`):

- squared + l2 (``r = lam ||w||^2``): ``c = tau + 2 lam`` and phi is quadratic; with
  ``grad g_i(v) = -2 s J^T e`` (``e = T - f(v)``) the step solves the SPD system

      (2 s J^T J + (tau + 2 lam) I) d = -grad g_i(v) - pi~_i - 2 lam v

  by a batched Cholesky factorisation of the ``P x P`` matrix, or, when ``K = M_i O < P``,
  by the Woodbury identity with a ``K x K`` factorisation,

      (c I + a J^T J)^{-1} q = (q - J^T (c/a I + J J^T)^{-1} J q) / c,   a = 2 s,

  or matrix-free by conjugate gradient on Jacobian-vector products.
- cross-entropy + l2 / none: ``c = tau + 2 lam``, ``q = pi~ + 2 lam v``; damped Newton, whose
  Hessian ``J^T H J + c I`` has ``H`` block-diagonal over samples (``s sigma (1 - sigma)`` for
  the logistic loss, ``s (diag p - p p^T)`` for softmax). With ``H_k = R_k R_k^T``,
  ``R_k = (I - p 1^T) diag(sqrt p)``, ``J^T H J = B^T B`` for ``B_k = R_k^T J_k``, so the Newton
  system is the squared-loss system above with ``J -> B`` (Cholesky or Woodbury), or CG.
- any loss + l1 / elastic net: ``c = tau``, ``q = pi~`` and ``psi(d) = r(v + d)``; FISTA on
  the smooth part with ``prox_{step psi}(z) = prox_{step r}(v + z) - v``, first step
  ``1 / L`` with ``L = ell_h lambda_max(J^T J) + tau`` (``ell_h = 2 s, s/4, s/2`` for the
  squared, logistic and softmax losses; ``lambda_max`` by power iteration) and backtracking.

The iterative solves are inexact: they stop when the subproblem's (prox-)gradient residual is
at most ``inner_tol * alpha[n]`` (at most ``inner_iters`` iterations, and at least one), so
the error of ``w~_i`` is ``O(alpha[n])`` and ``sum_n alpha[n] * error_n`` is finite under a
square-summable schedule, as NEXT's inexact-solve condition asks (Di Lorenzo & Scutari 2016).
(The tolerance is floored at the rounding level of ``grad g_i(v) + pi~_i``, which matters in
float32 only.) With a constant step the tolerance does not decay, but since every solve
starts from the last ``w~_i`` and takes at least one step, a fixed point of NEXT solves its
subproblem exactly: inexactness slows convergence, it does not bias the limit.

Warm starts: ``d_0 = w~_prev - v``, the agent's previous answer. That memory is explicit
state (:class:`~dcnn.surrogates.memory.Memory`): ``init_memory`` starts every agent cold,
``update(..., memory=m)`` returns the answer and the memory after it, and NEXT and SONATA keep
it in their state, so a run is reproducible and a checkpoint saves it like any other field.
``memory.inner`` holds the last solve's iterations and residuals (a diagnostic). ``solve`` is
one step from a fresh memory, a pure function.

``J`` is formed (``problem.jacobians``) unless the solver is ``"cg"``; then every product with
``J`` is a Jacobian-vector or vector-Jacobian product (``problem.jvp`` / ``problem.vjp``) and no
``P x P`` or ``K x P`` matrix is built. ``solver = "auto"`` resolves to ``"cholesky"``,
``"woodbury"`` or ``"cg"`` by the cost model of :mod:`dcnn.surrogates.costs` (predicted time of
one step from ``A, K, P, O``, the loss and the regulariser, within a memory budget for the
formed matrices); :meth:`PL.resolved_solver` names the path taken.

The case dispatch is the pure function :func:`local_step` on :class:`Ops` (``J`` or its
products), so it runs unchanged on a subset of the columns of ``J``: the block-Jacobi
surrogate of :mod:`dcnn.surrogates.blocks` calls it once per block.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import torch

from ..comm import Network
from ..errors import ConfigError
from ..problems import LocalProblems, per_sample_loss
from .costs import JACOBIAN_BUDGET_BYTES, choose_solver, problem_shapes, warn_if_slow
from .inner import InnerResult, cg, fista, newton, power_iteration
from .memory import Memory, check_tau
from .tau import resolve_tau

__all__ = ["PL", "pl_solve", "jacobian_bytes", "JACOBIAN_BUDGET_BYTES", "SOLVERS",
           "choose_solver"]

SOLVERS = ("auto", "cholesky", "woodbury", "cg")


def pl_solve(J: torch.Tensor, q: torch.Tensor, *, a: float, c: float,
             method: str = "auto") -> torch.Tensor:
    """Solve ``(a J^T J + c I) d = q`` for stacked ``J (A, K, P)`` and ``q (A, P)``.

    The matrix is positive definite for ``c > 0``; when rounding says otherwise (``J`` so large
    against ``c`` that the iterates have blown up), that agent's ``d`` is NaN, so the loop's
    divergence guard stops the run on every rank alike instead of one rank raising alone."""
    K, P = J.shape[-2], J.shape[-1]
    if method == "auto":
        method = "woodbury" if K < P else "cholesky"
    if method == "cholesky":
        H = a * J.transpose(-1, -2) @ J
        H.diagonal(dim1=-2, dim2=-1).add_(c)
        L, info = torch.linalg.cholesky_ex(H)
        d = torch.cholesky_solve(q.unsqueeze(-1), L).squeeze(-1)
    else:
        S = J @ J.transpose(-1, -2)
        S.diagonal(dim1=-2, dim2=-1).add_(c / a)
        L, info = torch.linalg.cholesky_ex(S)
        u = torch.cholesky_solve((J @ q.unsqueeze(-1)), L)
        d = (q - (J.transpose(-1, -2) @ u).squeeze(-1)) / c
    return d.masked_fill((info != 0).unsqueeze(-1), float("nan")) if bool(info.any()) else d


def jacobian_bytes(problem: LocalProblems) -> int:
    """Size of the stacked Jacobian ``(A, M_max O, P)`` of ``problem`` in bytes."""
    A, m_max, o = problem.T.shape
    return A * m_max * o * problem.n_params * problem.T.element_size()


@dataclass(frozen=True)
class _Linearised:
    """``h(U) = s sum_k m_k loss(t_k, o_k + U_k)`` for ``U (A, M_max O)``, one loss, stacked."""

    loss: str
    out: torch.Tensor     # (A, M, O) outputs o_k at v
    T: torch.Tensor       # (A, M, O)
    w: torch.Tensor       # (A, M, 1) s * mask

    @property
    def curvature(self) -> torch.Tensor:
        """``ell_h``, an upper bound on ``||hess h||`` (up to the sample weights)."""
        if self.loss == "squared":
            return 2.0 * self.w.amax((1, 2))
        return (0.25 if self.out.shape[-1] == 1 else 0.5) * self.w.amax((1, 2))

    def _z(self, U):
        return self.out + U.reshape(self.out.shape)

    def __call__(self, U: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self._z(U)
        value = (self.w[..., 0] * per_sample_loss(self.loss, z, self.T)).sum(-1)
        if self.loss == "squared":
            g = 2.0 * (z - self.T)
        elif z.shape[-1] == 1:
            g = torch.sigmoid(z) - self.T
        else:
            g = torch.softmax(z, -1) * self.T.sum(-1, keepdim=True) - self.T
        return value, (self.w * g).reshape(U.shape)

    def hess_mv(self, U: torch.Tensor, Z: torch.Tensor) -> torch.Tensor:
        """``hess h(U) Z`` (cross-entropy), ``(A, K)``."""
        z, Zr = self._z(U), Z.reshape(self.out.shape)
        if z.shape[-1] == 1:
            s = torch.sigmoid(z)
            return (self.w * s * (1.0 - s) * Zr).reshape(Z.shape)
        p = torch.softmax(z, -1)
        # (diag p - p p^T) z, times sum_o t_o (1 for one-hot targets)
        hz = p * Zr - p * (p * Zr).sum(-1, keepdim=True)
        return (self.w * self.T.sum(-1, keepdim=True) * hz).reshape(Z.shape)

    def hess_root(self, U: torch.Tensor, J: torch.Tensor) -> torch.Tensor:
        """``B (A, K, P)`` with ``B^T B = J^T hess h(U) J`` (cross-entropy)."""
        z = self._z(U)
        Jr = J.reshape(*z.shape, J.shape[-1])
        if z.shape[-1] == 1:
            s = torch.sigmoid(z)
            B = torch.sqrt(self.w * s * (1.0 - s))[..., None] * Jr
        else:
            p = torch.softmax(z, -1)
            # B_k = diag(sqrt p) (J_k - 1 p^T J_k)
            mean = (p[..., None] * Jr).sum(-2, keepdim=True)
            scale = torch.sqrt(self.w * self.T.sum(-1, keepdim=True) * p)
            B = scale[..., None] * (Jr - mean)
        return B.reshape(J.shape)


@dataclass(frozen=True)
class PL:
    """Partially linearised surrogate with proximal weight ``tau``, any loss and regulariser.

    ``tau``: a number > 0, or ``"auto"`` (resolved by :meth:`init_memory`, see
    :mod:`dcnn.surrogates.tau`). ``solver``: ``"cholesky"``, ``"woodbury"`` (direct linear
    solves on a formed Jacobian), ``"cg"`` (matrix-free) or ``"auto"`` (the cheapest of the
    three by :func:`~dcnn.surrogates.costs.choose_solver`; :meth:`resolved_solver`).
    ``inner_tol``, ``inner_iters``: the inexact inner solves stop at a residual
    ``<= inner_tol * alpha`` or after ``inner_iters`` iterations. A forced ``"cholesky"`` or
    ``"woodbury"`` predicted to be slow warns (one line, at :meth:`init_memory`)."""

    tau: float | str = 1.0
    solver: str = "auto"
    inner_tol: float = 1e-6
    inner_iters: int = 500
    name: str = "pl"

    def __post_init__(self):
        object.__setattr__(self, "tau", check_tau(self.tau))
        if self.solver not in SOLVERS:
            raise ConfigError(f"solver {self.solver!r} is unknown; choose one of: "
                              f"{', '.join(SOLVERS)}")
        if isinstance(self.inner_tol, bool) or not isinstance(self.inner_tol, (int, float)) \
                or not self.inner_tol > 0:
            raise ConfigError(f"inner_tol must be a number > 0 (e.g. 1e-6), "
                              f"got {self.inner_tol!r}")
        if isinstance(self.inner_iters, bool) or not isinstance(self.inner_iters, int) \
                or self.inner_iters < 1:
            raise ConfigError(f"inner_iters must be an integer >= 1 (e.g. 500), "
                              f"got {self.inner_iters!r}")

    def init_memory(self, problem: LocalProblems, X0: torch.Tensor, *,
                    network: Network | None = None, alpha0: float = 1.0) -> Memory:
        """Every agent cold (every loss and regulariser is supported); ``tau = "auto"`` is
        resolved here (collective). Warm starts are kept unless every step is one direct
        solve (squared loss, smooth ``r``, formed ``J``)."""
        tau = resolve_tau(self.tau, self.name, problem=problem, network=network, X0=X0,
                          alpha0=alpha0)
        if network is None or network.rank == 0:
            warn_if_slow(self.solver, problem_shapes(problem))
        return Memory.empty(X0, tau=tau,
                            warm=not is_direct(problem, self.matrix_free(problem)))

    def resolved_solver(self, problem: LocalProblems) -> str:
        """The path a step on ``problem`` takes: ``solver``, or for ``"auto"``
        :func:`~dcnn.surrogates.costs.choose_solver` on the group's shapes (a pure function
        of them; the runner builds NEXT and SONATA with the solver that
        :func:`~dcnn.surrogates.costs.resolve_solver` picks from the global shapes)."""
        if self.solver != "auto":
            return self.solver
        return choose_solver(**problem_shapes(problem))

    def matrix_free(self, problem: LocalProblems) -> bool:
        """Whether products with ``J`` go through ``jvp``/``vjp`` instead of a formed ``J``."""
        return self.resolved_solver(problem) == "cg"

    def update(self, problem: LocalProblems, V: torch.Tensor, G: torch.Tensor,
               Pi: torch.Tensor, *, alpha: float, memory: Memory) -> tuple[torch.Tensor, Memory]:
        """``w~`` of the module docstring for every agent of ``problem``, each iterative solve
        warm-started from ``memory``; returns ``w~`` and the memory after the step."""
        opts = self.options(problem, tau=memory.tau, tol=None)
        free = opts["solver"] == "cg"
        if is_direct(problem, free):
            d, _ = local_step(problem, products(problem, V, free=False), None, V, G, Pi, None,
                              **opts)
            return V + d, memory.counted()
        ops = products(problem, V, free=free)
        h = None if is_least_squares(problem) else linearised(problem, V)
        opts["tol"] = inner_tolerance(V, G, Pi, self.inner_tol, alpha)
        d, res = local_step(problem, ops, h, V, G, Pi, memory.start(V), **opts)
        W = V + d
        return W, memory.remember(W, res)

    def solve(self, problem: LocalProblems, V: torch.Tensor, G: torch.Tensor,
              Pi: torch.Tensor, *, alpha: float = 1.0) -> torch.Tensor:
        """One local step from a cold start (a pure function; ``tau`` must be a number)."""
        memory = self.init_memory(problem, V)
        return self.update(problem, V, G, Pi, alpha=alpha, memory=memory)[0]

    def options(self, problem: LocalProblems, *, tau: float, tol) -> dict:
        """The keyword options of :func:`local_step` for this surrogate, ``problem`` and
        ``tau`` (the solver resolved)."""
        return {"tau": tau, "solver": self.resolved_solver(problem), "tol": tol,
                "iters": self.inner_iters}


# ---- the local step as pure functions (shared with the block-Jacobi surrogate) -------------

class Ops(NamedTuple):
    """Products with the Jacobian at ``v``: the formed ``J (A, K, P')`` (``None`` when
    matrix-free), ``fwd(D) = J D`` and ``adj(E) = J^T E``; ``P'`` may be a column subset."""

    J: torch.Tensor | None
    fwd: Callable[[torch.Tensor], torch.Tensor]
    adj: Callable[[torch.Tensor], torch.Tensor]


def is_least_squares(problem: LocalProblems) -> bool:
    """Squared loss and a smooth regulariser: the subproblem is a linear system."""
    return problem.loss == "squared" and problem.regularizer.smooth


def is_direct(problem: LocalProblems, free: bool) -> bool:
    """Whether the local step is one direct linear solve (no iterations, no warm start)."""
    return is_least_squares(problem) and not free


def inner_tolerance(V: torch.Tensor, G: torch.Tensor, Pi: torch.Tensor, inner_tol: float,
                    alpha: float) -> torch.Tensor:
    """Per row, ``inner_tol * alpha`` floored at the rounding level of the gradient (float32)."""
    floor = 64.0 * torch.finfo(V.dtype).eps * torch.linalg.vector_norm(G + Pi, dim=-1)
    return torch.clamp(floor, min=inner_tol * alpha)


def linearised(problem: LocalProblems, V: torch.Tensor,
               outputs: torch.Tensor | None = None) -> _Linearised:
    """``h`` of the module docstring at ``V`` (``outputs = f(V)`` if already computed)."""
    out = problem.outputs(V) if outputs is None else outputs
    return _Linearised(problem.loss, out, problem.T, problem.scale * problem.mask[..., None])


def local_step(problem: LocalProblems, ops: Ops, h: _Linearised | None, V: torch.Tensor,
               G: torch.Tensor, Pi: torch.Tensor, D0: torch.Tensor | None, *, tau: float,
               solver: str, tol, iters: int) -> tuple[torch.Tensor, InnerResult | None]:
    """``d = argmin_d phi(d) [+ psi(d)]`` over the coordinates that ``ops`` spans.

    ``V, G, Pi, D0`` are restricted to those coordinates (the others stay at ``v``, their
    ``d`` is 0); ``h`` is the linearised loss (``None`` for squared loss + smooth ``r``).
    Returns ``d`` and the inner solver's result (``None`` after a direct solve).
    """
    lam = problem.regularizer.l2
    if is_direct(problem, ops.J is None):
        # (2 s J^T J + (tau + 2 lam) I) d = -grad g(v) - pi - 2 lam v
        d = pl_solve(ops.J, -G - Pi - 2.0 * lam * V, a=2.0 * problem.scale,
                     c=tau + 2.0 * lam, method=solver)
        return d, None
    res = _iterative(problem, ops, h, V, G, Pi, D0, tau=tau, solver=solver, tol=tol,
                     iters=iters)
    return res.x, res


def _iterative(problem, ops: Ops, h, V, G, Pi, D0, *, tau, solver, tol, iters) -> InnerResult:
    reg, lam = problem.regularizer, problem.regularizer.l2
    J, fwd, adj = ops
    if is_least_squares(problem):
        c = tau + 2.0 * lam
        # (2 s J^T J + c I) d = -grad g(v) - pi - 2 lam v, by CG on J-products
        return cg(lambda D: 2.0 * problem.scale * adj(fwd(D)) + c * D,
                  -G - Pi - 2.0 * lam * V, D0, tol=tol, max_iter=iters, min_iter=1)
    if reg.smooth:
        c = tau + 2.0 * lam
        return newton(D0, fwd=fwd, adj=adj, h=h, c=c, q=Pi + 2.0 * lam * V,
                      direction=_newton_direction(h, ops, c, solver=solver, iters=iters),
                      tol=tol, max_iter=iters)
    lmax = power_iteration(lambda D: adj(fwd(D)), _start(V), iters=15)
    return fista(D0, fwd=fwd, adj=adj, h=h, c=tau, q=Pi,
                 prox=lambda Z, step: reg.prox(V + Z, step) - V,
                 L=h.curvature * lmax + tau, tol=tol, max_iter=iters)


def _newton_direction(h: _Linearised, ops: Ops, c: float, *, solver: str, iters: int):
    J, fwd, adj = ops
    if J is not None:
        def direct(U, g):
            # (B^T B + c I) Delta = -g,  B = R^T J
            return pl_solve(h.hess_root(U, J), -g, a=1.0, c=c, method=solver)
        return direct

    def newton_cg(U, g):
        # (J^T H J + c I) Delta = -g by CG, forcing term min(0.1, sqrt ||g||)
        gn = torch.linalg.vector_norm(g, dim=-1)
        res = cg(lambda Z: adj(h.hess_mv(U, fwd(Z))) + c * Z, -g,
                 tol=torch.clamp(gn.sqrt(), max=0.1) * gn, max_iter=iters)
        return res.x
    return newton_cg


def formed(J: torch.Tensor) -> Ops:
    """:class:`Ops` through a formed ``J (A, K, P')``."""
    def fwd(D):
        return (J @ D.unsqueeze(-1)).squeeze(-1)

    def adj(E):
        return (J.transpose(-1, -2) @ E.unsqueeze(-1)).squeeze(-1)
    return Ops(J, fwd, adj)


def products(problem: LocalProblems, V: torch.Tensor, *, free: bool) -> Ops:
    """:class:`Ops` at ``V``, through a formed ``J`` or through ``jvp``/``vjp``."""
    if free:
        return Ops(None, lambda D: problem.jvp(V, D), lambda E: problem.vjp(V, E))
    return formed(problem.jacobians(V))


def _start(V: torch.Tensor) -> torch.Tensor:
    """A fixed, generic start for power iteration (seeded; the global RNG is untouched)."""
    gen = torch.Generator().manual_seed(0)
    return torch.rand(V.shape, generator=gen, dtype=torch.float64).to(V.dtype) + 0.5
