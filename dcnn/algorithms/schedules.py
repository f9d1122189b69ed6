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

__all__ = ["Diminishing", "Constant", "Polynomial", "make_schedule", "SCHEDULES"]

SCHEDULES = ("diminishing", "constant", "polynomial")


def _check_alpha0(alpha0: float) -> float:
    if not 0.0 < alpha0 <= 1.0:
        raise ConfigError(f"algorithm.alpha0 must lie in (0, 1], got {alpha0}")
    return float(alpha0)


@dataclass(frozen=True)
class Diminishing:
    alpha0: float = 0.5
    eps: float = 0.01

    def init(self) -> float:
        return self.alpha0

    def update(self, alpha: float, n: int) -> float:
        return alpha * (1.0 - self.eps * alpha)


@dataclass(frozen=True)
class Constant:
    alpha0: float = 0.5

    def init(self) -> float:
        return self.alpha0

    def update(self, alpha: float, n: int) -> float:
        return alpha


@dataclass(frozen=True)
class Polynomial:
    alpha0: float = 0.5
    power: float = 0.6

    def init(self) -> float:
        return self.alpha0

    def update(self, alpha: float, n: int) -> float:
        return self.alpha0 / (n + 2) ** self.power


def make_schedule(name: str = "diminishing", *, alpha0: float = 0.5, eps: float = 0.01,
                  power: float = 0.6):
    alpha0 = _check_alpha0(alpha0)
    if name == "diminishing":
        if not 0.0 < eps < 1.0:
            raise ConfigError(f"algorithm.eps must lie in (0, 1), got {eps}")
        return Diminishing(alpha0, float(eps))
    if name == "constant":
        return Constant(alpha0)
    if name == "polynomial":
        if not 0.5 < power <= 1.0:
            raise ConfigError(f"algorithm.power must lie in (0.5, 1], got {power}")
        return Polynomial(alpha0, float(power))
    raise ConfigError(f"algorithm.schedule {name!r} is unknown; choose one of: "
                      f"{', '.join(SCHEDULES)}")
