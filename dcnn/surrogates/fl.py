"""FL: the fully linearised surrogate (any loss, any regulariser with a prox).

    g~_i(w; v) = g_i(v) + grad g_i(v)^T (w - v) + (tau / 2) ||w - v||^2

With ``b_i = grad g_i(v_i) + pi~_i = N y_i`` the local step has a closed form,

    w~_i = argmin_w  b_i^T (w - v_i) + (tau / 2) ||w - v_i||^2 + r(w) = prox_{r / tau}(v_i - b_i / tau),

which for l2 is ``(tau v - b) / (tau + 2 lam)`` and for l1 ``soft(v - b / tau, lam / tau)``
(Scardapane & Di Lorenzo 2017, Sec. 3; with l2 and lam = 0 FL-NEXT is gradient tracking with
step ``alpha[n] / tau``). ``tau`` acts as an inverse step size on the *total* gradient.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..comm import Network
from ..problems import LocalProblems
from .memory import Memory, check_tau
from .tau import resolve_tau

__all__ = ["FL", "fl_solve"]


def fl_solve(V: torch.Tensor, B: torch.Tensor, regularizer, tau: float) -> torch.Tensor:
    """``prox_{r / tau}(V - B / tau)`` row-wise."""
    return regularizer.prox(V - B / tau, 1.0 / tau)


@dataclass(frozen=True)
class FL:
    """Fully linearised surrogate with proximal weight ``tau`` (``"auto"``: resolved by
    :meth:`init_memory`, see :mod:`dcnn.surrogates.tau`). It remembers nothing but ``tau``
    and the call count (no warm starts)."""

    tau: float | str = 1.0
    name: str = "fl"

    def __post_init__(self):
        object.__setattr__(self, "tau", check_tau(self.tau))

    def init_memory(self, problem: LocalProblems, X0: torch.Tensor, *,
                    network: Network | None = None, alpha0: float = 1.0) -> Memory:
        """Every loss and regulariser is supported; ``tau = "auto"`` is resolved here
        (collective)."""
        tau = resolve_tau(self.tau, self.name, problem=problem, network=network, X0=X0,
                          alpha0=alpha0)
        return Memory.empty(X0, tau=tau, warm=False)

    def update(self, problem: LocalProblems, V: torch.Tensor, G: torch.Tensor,
               Pi: torch.Tensor, *, alpha: float, memory: Memory) -> tuple[torch.Tensor, Memory]:
        """``w~ = prox_{r / tau}(v - (grad g(v) + pi~) / tau)`` and the memory after it."""
        return fl_solve(V, G + Pi, problem.regularizer, memory.tau), memory.counted()

    def solve(self, problem: LocalProblems, V: torch.Tensor, G: torch.Tensor,
              Pi: torch.Tensor, *, alpha: float = 1.0) -> torch.Tensor:
        """One local step from no memory (a pure function; ``tau`` must be a number)."""
        memory = self.init_memory(problem, V)
        return self.update(problem, V, G, Pi, alpha=alpha, memory=memory)[0]
