"""What a surrogate remembers between NEXT iterations, as explicit state.

A surrogate is configuration only; its memory is a :class:`Memory` that the algorithm keeps
in its state and hands back at every local step (state in, state out):

    memory = surrogate.init_memory(problem, X0, network=network)
    W, memory = surrogate.update(problem, V, G, Pi, alpha=alpha, memory=memory)

- ``warm`` ``(A, P)``: the last answer ``w~_i`` of each agent, the start of its next
  iterative inner solve (``(A, 0)`` for a surrogate that never warm-starts, e.g. FL or PL's
  direct solves); ``has_warm`` ``(A,)`` marks the rows that hold one.
- ``calls``: local steps taken since ``init_memory`` (the block-Jacobi surrogate's random
  block choice is a pure function of it).
- ``tau``: the proximal weight, ``"auto"`` resolved at ``init_memory`` (equal on every rank).
- ``inner``: the last iterative inner solve (iterations, residuals), a diagnostic only:
  nothing reads it to continue, so a checkpoint need not keep it.

The per-agent fields are rows of the group, so a checkpoint stores them by global agent id and
:meth:`rows` / :meth:`put` split and join them over the parts of a group (mini-batch views).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch

from ..errors import ConfigError
from .inner import InnerResult

__all__ = ["Memory", "check_tau"]


@dataclass(frozen=True)
class Memory:
    """A surrogate's memory for a group of ``A`` agents (see the module docstring)."""

    warm: torch.Tensor          # (A, P) or (A, 0): last w~_i, the next warm start
    has_warm: torch.Tensor      # (A,) bool: row i of warm is a warm start
    calls: int                  # local steps since init_memory
    tau: float                  # the proximal weight (resolved)
    inner: InnerResult | None = None   # diagnostic: the last iterative inner solve

    @staticmethod
    def empty(X0: torch.Tensor, *, tau: float, warm: bool) -> Memory:
        """No warm start yet, for the rows of ``X0`` (``warm``: keep warm starts at all)."""
        A, P = X0.shape
        return Memory(warm=X0.new_zeros(A, P if warm else 0),
                      has_warm=torch.zeros(A, dtype=torch.bool), calls=0, tau=float(tau))

    def start(self, V: torch.Tensor) -> torch.Tensor:
        """``D0 = w~_prev - v`` where a warm start is held, else 0 (a cold start)."""
        if self.warm.shape[1] != V.shape[1]:
            return torch.zeros_like(V)
        return torch.where(self.has_warm[:, None], self.warm - V, torch.zeros_like(V))

    def remember(self, W: torch.Tensor, inner: InnerResult | None) -> Memory:
        """After an iterative solve with answer ``W``: ``W`` is every row's next warm start."""
        if self.warm.shape[1] != W.shape[1]:
            return replace(self, calls=self.calls + 1, inner=inner)
        return replace(self, warm=W, has_warm=torch.ones_like(self.has_warm),
                       calls=self.calls + 1, inner=inner)

    def counted(self) -> Memory:
        """After a step that keeps no warm start (a direct solve, FL)."""
        return replace(self, calls=self.calls + 1, inner=None)

    def rows(self, pos: torch.Tensor | None) -> Memory:
        """The memory of the group positions ``pos`` (``None``: all of them)."""
        if pos is None:
            return self
        return replace(self, warm=self.warm[pos], has_warm=self.has_warm[pos], inner=None)

    def put(self, pos: torch.Tensor | None, part: Memory) -> Memory:
        """This memory with the rows ``pos`` taken from ``part`` (the memory :meth:`rows`
        gave, after a step); the count and ``tau`` are ``part``'s."""
        if pos is None:
            return part
        warm, has = self.warm.clone(), self.has_warm.clone()
        warm[pos], has[pos] = part.warm, part.has_warm
        return replace(self, warm=warm, has_warm=has, calls=part.calls, tau=part.tau,
                       inner=None)


def check_tau(tau) -> float | str:
    """``tau`` itself if it is a finite number > 0 or ``"auto"``, else a :class:`ConfigError`."""
    if tau == "auto":
        return tau
    if isinstance(tau, bool) or not isinstance(tau, (int, float)) or not math.isfinite(tau) \
            or not tau > 0:
        raise ConfigError(f"tau must be a finite number > 0 or \"auto\", got {tau!r}")
    return float(tau)
