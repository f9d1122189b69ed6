"""Convex surrogates of the local costs: each solves NEXT's local step for a whole group."""
from __future__ import annotations

from ..errors import ConfigError
from .blocks import BLOCK_KINDS, Blocked, make_blocked, make_blocks
from .fl import FL, fl_solve
from .pl import PL, SOLVERS, pl_solve

__all__ = ["FL", "PL", "Blocked", "fl_solve", "pl_solve", "SURROGATES", "SOLVERS",
           "BLOCK_KINDS", "make_surrogate", "make_blocks", "make_blocked"]

SURROGATES = ("fl", "pl")


def make_surrogate(name: str, *, tau: float = 1.0, solver: str = "auto",
                   inner_tol: float = 1e-6, inner_iters: int = 500):
    """``"fl"`` or ``"pl"`` with proximal weight ``tau > 0``.

    PL only: ``solver`` (one of :data:`SOLVERS`), and its inexact inner solves' residual
    tolerance ``inner_tol > 0`` (times ``alpha[n]``) and iteration cap ``inner_iters >= 1``.
    Split it over parameter blocks and threads with :func:`make_blocked`.
    """
    if not tau > 0:
        raise ConfigError(f"algorithm.tau must be > 0, got {tau}")
    if name == "fl":
        return FL(tau=float(tau))
    if name == "pl":
        return PL(tau=float(tau), solver=solver, inner_tol=inner_tol, inner_iters=inner_iters)
    raise ConfigError(f"algorithm.surrogate {name!r} is unknown; choose one of: "
                      f"{', '.join(SURROGATES)}")
