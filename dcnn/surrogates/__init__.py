"""Convex surrogates of the local costs: each solves NEXT's local step for a whole group.

A surrogate is configuration; what it remembers between iterations is an explicit
:class:`Memory` (``init_memory(problem, X0, network=...)``, then
``update(problem, V, G, Pi, alpha=..., memory=...) -> (W, memory)``), kept in the algorithm's
state."""
from __future__ import annotations

from ..errors import ConfigError
from .costs import choose_solver, resolve_solver
from .blocks import BLOCK_KINDS, Blocked, make_blocked, make_blocks
from .fl import FL, fl_solve
from .memory import Memory
from .pl import PL, SOLVERS, pl_solve

__all__ = ["FL", "PL", "Blocked", "Memory", "fl_solve", "pl_solve", "SURROGATES", "SOLVERS",
           "BLOCK_KINDS", "make_surrogate", "make_blocks", "make_blocked", "choose_solver",
           "resolve_solver"]

SURROGATES = ("fl", "pl")


def make_surrogate(name: str, *, tau: float | str = 1.0, solver: str = "auto",
                   inner_tol: float = 1e-6, inner_iters: int = 500):
    """``"fl"`` or ``"pl"`` with proximal weight ``tau > 0`` (or ``"auto"``, resolved when the
    algorithm starts).

    PL only: ``solver`` (one of :data:`SOLVERS`), and its inexact inner solves' residual
    tolerance ``inner_tol > 0`` (times ``alpha[n]``) and iteration cap ``inner_iters >= 1``.
    Split it over parameter blocks and threads with :func:`make_blocked`.
    """
    if name == "fl":
        return FL(tau=tau)
    if name == "pl":
        return PL(tau=tau, solver=solver, inner_tol=inner_tol, inner_iters=inner_iters)
    raise ConfigError(f"surrogate {name!r} is unknown; choose one of: {', '.join(SURROGATES)}")
