"""Step-size schedules ``alpha[n]``, as ``init() -> alpha[0]`` and ``update(alpha, n) -> alpha[n+1]``.

- ``diminishing`` (NEXT's rule): ``alpha[n+1] = alpha[n] (1 - eps alpha[n])``, ``alpha[0] in (0, 1]``,
  ``eps in (0, 1)``. Non-summable and square-summable: this is the schedule that carries
  NEXT's convergence guarantee on nonconvex problems.
- ``polynomial``: ``alpha[n] = alpha0 / (n + 1)^power`` with ``power in (0.5, 1]``, also
  non-summable and square-summable.
- ``constant``: ``alpha[n] = alpha0``. No guarantee on nonconvex problems; on convex ones the
  tracking methods converge exactly with a small enough constant step.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError
from .checks import check_alpha0

__all__ = ["Diminishing", "Constant", "Polynomial", "make_schedule", "SCHEDULES"]

SCHEDULES = ("diminishing", "constant", "polynomial")


def _in(name: str, value, lo: float, hi: float, *, closed_hi: bool, example: str) -> None:
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and (
        lo < value <= hi if closed_hi else lo < value < hi)
    if not ok:
        raise ConfigError(f"{name} must lie in ({lo}, {hi}{']' if closed_hi else ')'} "
                          f"(e.g. {example}), got {value!r}")


def _number(x):
    """``x`` as a float if it is a number (the checks name anything else)."""
    return float(x) if not isinstance(x, bool) and isinstance(x, (int, float)) else x


@dataclass(frozen=True)
class Diminishing:
    """``alpha[n+1] = alpha[n] (1 - eps alpha[n])`` from ``alpha[0] = alpha0``."""

    alpha0: float = 0.5
    eps: float = 0.01

    def __post_init__(self):
        check_alpha0(self.alpha0)
        _in("eps", self.eps, 0, 1, closed_hi=False, example="0.01")

    def init(self) -> float:
        return self.alpha0

    def update(self, alpha: float, n: int) -> float:
        return alpha * (1.0 - self.eps * alpha)


@dataclass(frozen=True)
class Constant:
    """``alpha[n] = alpha0``."""

    alpha0: float = 0.5

    def __post_init__(self):
        check_alpha0(self.alpha0)

    def init(self) -> float:
        return self.alpha0

    def update(self, alpha: float, n: int) -> float:
        return alpha


@dataclass(frozen=True)
class Polynomial:
    """``alpha[n] = alpha0 / (n + 1)^power``."""

    alpha0: float = 0.5
    power: float = 0.6

    def __post_init__(self):
        check_alpha0(self.alpha0)
        _in("power", self.power, 0.5, 1, closed_hi=True, example="0.6")

    def init(self) -> float:
        return self.alpha0

    def update(self, alpha: float, n: int) -> float:
        return self.alpha0 / (n + 2) ** self.power


def make_schedule(name: str = "diminishing", *, alpha0: float = 0.5, eps: float = 0.01,
                  power: float = 0.6):
    """The schedule ``name`` (one of :data:`SCHEDULES`) with its options (the others unused)."""
    check_alpha0(alpha0)
    if name == "diminishing":
        return Diminishing(float(alpha0), _number(eps))
    if name == "constant":
        return Constant(float(alpha0))
    if name == "polynomial":
        return Polynomial(float(alpha0), _number(power))
    raise ConfigError(f"schedule {name!r} is unknown; choose one of: {', '.join(SCHEDULES)}")
