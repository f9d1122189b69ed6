"""The centralized reference: the same model, loss and regulariser on the pooled data.

It is the oracle for "how close does the network get". Smooth objectives are minimised with
scipy's L-BFGS-B (torch gradients, float64); objectives with an l1 part with FISTA (proximal
gradient with backtracking and restarts). Both start from the network's common ``w0``, and
both stop at ``budget`` seconds if one is given (``Reference.stopped``: the figures are then
those of the last iterate, an upper bound on the optimum's objective).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import scipy.optimize
import torch
from threadpoolctl import threadpool_limits

from .problems import LocalProblems

__all__ = ["Reference", "centralized_reference"]


@dataclass(frozen=True)
class Reference:
    w: torch.Tensor
    objective: float
    grad_norm: float
    train_metric: float
    test_metric: float | None
    iterations: int
    stopped: bool = False          # stopped by the time budget, not by convergence


def _objective(pooled: LocalProblems, w: torch.Tensor, with_reg: bool = True):
    with torch.no_grad():
        v, g = pooled.value_and_grad(w[None])
    v, g = v[0], g[0]
    if with_reg:
        v = v + pooled.regularizer.value(w)
        g = g + pooled.regularizer.grad(w)
    return float(v), g


def _fista(pooled: LocalProblems, w0: torch.Tensor, max_iter: int, tol: float,
           deadline: float):
    reg = pooled.regularizer
    x = w0.clone()
    yk, tk, L = x.clone(), 1.0, 1.0
    f_y, g_y = _objective(pooled, yk, with_reg=False)
    for it in range(max_iter):
        while True:
            x_new = reg.prox(yk - g_y / L, 1.0 / L)
            d = x_new - yk
            f_new, _ = _objective(pooled, x_new, with_reg=False)
            if f_new <= f_y + float(g_y @ d) + 0.5 * L * float(d @ d) + 1e-15:
                break
            L *= 2.0
        t_new = 0.5 * (1.0 + (1.0 + 4.0 * tk * tk) ** 0.5)
        if float((yk - x_new) @ (x_new - x)) > 0:  # gradient restart (O'Donoghue-Candes)
            t_new, tk = 1.0, 1.0
        yk = x_new + ((tk - 1.0) / t_new) * (x_new - x)
        step = float(torch.linalg.vector_norm(x_new - x))
        x, tk = x_new, t_new
        f_y, g_y = _objective(pooled, yk, with_reg=False)
        L = max(L / 1.5, 1e-8)
        if step <= tol * max(1.0, float(torch.linalg.vector_norm(x))):
            break
        if time.perf_counter() > deadline:
            return x, it + 1, True
    return x, it + 1, False


def centralized_reference(pooled: LocalProblems, *, w0: torch.Tensor | None = None,
                          test: tuple[torch.Tensor, torch.Tensor] | None = None,
                          max_iter: int = 2000, tol: float = 1e-10,
                          budget: float | None = None) -> Reference:
    """Minimise ``U`` on a one-agent problem holding the pooled training data, for at most
    ``budget`` seconds (checked after every iteration; ``None``: no limit)."""
    if budget is not None and not (isinstance(budget, (int, float))
                                   and not isinstance(budget, bool) and budget > 0):
        raise ValueError(f"budget must be a number of seconds > 0 or None, got {budget!r}")
    deadline = float("inf") if budget is None else time.perf_counter() + budget
    w0 = pooled.model.w0 if w0 is None else w0
    # L-BFGS-B's BLAS calls act on length-P vectors; letting OpenBLAS spin up its threads
    # beside torch's OpenMP pool makes both crawl (measured 4x slower on 2 cores).
    with threadpool_limits(1, user_api="blas"):
        return _minimise(pooled, w0, test, max_iter, tol, deadline)


def _minimise(pooled, w0, test, max_iter, tol, deadline) -> Reference:
    if pooled.regularizer.smooth:
        def fun(x):
            v, g = _objective(pooled, torch.from_numpy(x).to(w0.dtype))
            return v, g.double().numpy()

        late = []

        def on_time(intermediate_result):         # scipy ends the solve on StopIteration
            if time.perf_counter() > deadline:
                late.append(True)
                raise StopIteration

        res = scipy.optimize.minimize(fun, w0.double().numpy(), jac=True, method="L-BFGS-B",
                                      options={"maxiter": max_iter, "gtol": tol, "ftol": 0.0,
                                               "maxcor": 30}, callback=on_time)
        w, its, stopped = torch.from_numpy(res.x).to(w0.dtype), int(res.nit), bool(late)
    else:
        w, its, stopped = _fista(pooled, w0, max_iter, tol, deadline)
    v, g = _objective(pooled, w)
    reg = pooled.regularizer
    if reg.smooth:
        gnorm = float(torch.linalg.vector_norm(g))
    else:
        _, gs = _objective(pooled, w, with_reg=False)
        gnorm = float(torch.linalg.vector_norm(w - reg.prox(w - gs, 1.0)))
    scale = 1.0 if pooled.task == "regression" else 100.0
    with torch.no_grad():
        train = scale * float(pooled.score_sums(w[None])[0]) / pooled.n_total
        test_metric = None
        if test is not None:
            test_metric = scale * float(pooled.scores_on(w[None], *test)[0])
    return Reference(w=w, objective=v, grad_norm=gnorm, train_metric=train,
                     test_metric=test_metric, iterations=its, stopped=stopped)
