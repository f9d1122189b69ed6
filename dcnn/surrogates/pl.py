"""PL: the partially linearised surrogate for the squared loss (Gauss-Newton-like).

Only the network output is linearised, ``f(w) ~ f(v) + J (w - v)``; the squared loss is kept:

    g~_i(w; v) = (1/M) ||e_i - J_i d||^2 + (tau / 2) ||d||^2,   d = w - v,  e_i = T_i - f(v; X_i)

(Scardapane & Di Lorenzo 2017, Sec. 3.2). With ``r = lam ||w||^2`` the local step solves the
SPD system (``s = 1/M``, ``grad g_i(v) = -2 s J^T e``)

    (2 s J^T J + (tau + 2 lam) I) d = -grad g_i(v) - pi~_i - 2 lam v

either by a batched Cholesky factorisation of the ``P x P`` matrix, or, when the agent has
fewer residuals than parameters (``K = M_i O < P``), by the Woodbury identity with a
``K x K`` factorisation:

    (c I + a J^T J)^{-1} q = (q - J^T (c/a I + J J^T)^{-1} J q) / c,   a = 2 s, c = tau + 2 lam.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import ConfigError
from ..problems import LocalProblems

__all__ = ["PL", "pl_solve"]

SOLVERS = ("auto", "cholesky", "woodbury")


def pl_solve(J: torch.Tensor, q: torch.Tensor, *, a: float, c: float,
             method: str = "auto") -> torch.Tensor:
    """Solve ``(a J^T J + c I) d = q`` for stacked ``J (A, K, P)`` and ``q (A, P)``."""
    K, P = J.shape[-2], J.shape[-1]
    if method == "auto":
        method = "woodbury" if K < P else "cholesky"
    if method == "cholesky":
        H = a * J.transpose(-1, -2) @ J
        H.diagonal(dim1=-2, dim2=-1).add_(c)
        L = torch.linalg.cholesky(H)
        return torch.cholesky_solve(q.unsqueeze(-1), L).squeeze(-1)
    S = J @ J.transpose(-1, -2)
    S.diagonal(dim1=-2, dim2=-1).add_(c / a)
    L = torch.linalg.cholesky(S)
    u = torch.cholesky_solve((J @ q.unsqueeze(-1)), L)
    return (q - (J.transpose(-1, -2) @ u).squeeze(-1)) / c


@dataclass(frozen=True)
class PL:
    """Partially linearised surrogate for squared loss with l2 (or no) regularisation."""

    tau: float = 1.0
    solver: str = "auto"
    name: str = "pl"

    def check(self, problem: LocalProblems) -> None:
        if self.solver not in SOLVERS:
            raise ConfigError(f"algorithm.solver {self.solver!r} is unknown; choose one of: "
                              f"{', '.join(SOLVERS)}")
        if problem.loss != "squared":
            raise ConfigError("the PL surrogate here needs model.loss = 'squared'; use "
                              "algorithm.surrogate = 'fl' for cross-entropy")
        if problem.regularizer.l1 != 0.0:
            raise ConfigError("the PL surrogate here supports l2 or no regularisation; use "
                              "algorithm.surrogate = 'fl' for l1 / elastic net")

    def solve(self, problem: LocalProblems, V: torch.Tensor, G: torch.Tensor,
              Pi: torch.Tensor, *, alpha: float = 1.0) -> torch.Tensor:
        lam = problem.regularizer.l2
        J = problem.jacobians(V)
        # (2 s J^T J + (tau + 2 lam) I) d = -grad g(v) - pi - 2 lam v
        q = -G - Pi - 2.0 * lam * V
        d = pl_solve(J, q, a=2.0 * problem.scale, c=self.tau + 2.0 * lam, method=self.solver)
        return V + d
