"""The regulariser r(w), known to every agent and never split among them.

- ``l2``: ``lam ||w||^2``
- ``l1``: ``lam ||w||_1``
- ``elastic_net``: ``lam (l1_ratio ||w||_1 + (1 - l1_ratio) ||w||^2)``
- ``none``: 0

Each is a frozen dataclass whose methods are pure functions on stacked rows ``(..., P)``:
``value`` (one number per row), ``grad`` (a subgradient for the l1 part: ``lam sign(w)``) and
``prox(u, step) = argmin_w r(w) + ||w - u||^2 / (2 step)``.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import torch

from ..errors import ConfigError

__all__ = ["REGULARIZERS", "Regularizer", "make_regularizer", "soft_threshold"]

REGULARIZERS = ("l2", "l1", "elastic_net", "none")


def soft_threshold(u: torch.Tensor, kappa: float | torch.Tensor) -> torch.Tensor:
    """``sign(u) max(|u| - kappa, 0)``, elementwise."""
    return torch.sign(u) * torch.clamp(u.abs() - kappa, min=0.0)


@dataclass(frozen=True)
class Regularizer:
    """``r(w) = l1 ||w||_1 + l2 ||w||^2`` (coefficients already include lam)."""

    name: str
    l1: float = 0.0
    l2: float = 0.0

    def value(self, w: torch.Tensor) -> torch.Tensor:
        return self.l1 * w.abs().sum(-1) + self.l2 * (w * w).sum(-1)

    def grad(self, w: torch.Tensor) -> torch.Tensor:
        return self.l1 * torch.sign(w) + 2.0 * self.l2 * w

    def prox(self, u: torch.Tensor, step: float | torch.Tensor) -> torch.Tensor:
        # argmin l1|w| + l2 w^2 + (w - u)^2 / (2 step): soft-threshold, then shrink.
        return soft_threshold(u, step * self.l1) / (1.0 + 2.0 * step * self.l2)

    @property
    def smooth(self) -> bool:
        return self.l1 == 0.0


def make_regularizer(name: str = "l2", *, lam: float = 0.0, l1_ratio: float = 0.5
                     ) -> Regularizer:
    """Build ``r`` from a name and its strength ``lam >= 0``."""
    if name not in REGULARIZERS:
        raise ConfigError(f"model.regularizer {name!r} is unknown; choose one of: "
                          f"{', '.join(REGULARIZERS)}")
    for key, value in (("lam", lam), ("l1_ratio", l1_ratio)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real) \
                or not math.isfinite(value):
            raise ConfigError(f"model.{key} must be a finite number, got {value!r}; e.g. "
                              f"{'lam=1e-3' if key == 'lam' else 'l1_ratio=0.5'}")
    lam = float(lam)
    if not lam >= 0.0:
        raise ConfigError(f"model.lam must be >= 0, got {lam}")
    if not 0.0 <= l1_ratio <= 1.0:
        raise ConfigError(f"model.l1_ratio must lie in [0, 1], got {l1_ratio}")
    if name == "l2":
        return Regularizer("l2", l2=lam)
    if name == "l1":
        return Regularizer("l1", l1=lam)
    if name == "elastic_net":
        return Regularizer("elastic_net", l1=lam * l1_ratio, l2=lam * (1.0 - l1_ratio))
    return Regularizer("none")
