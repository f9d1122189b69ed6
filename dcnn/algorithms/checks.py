"""Argument checks of the algorithms' constructors: one-line :class:`ConfigError` messages that
name the Python argument, the bad value and the fix (the config layer names its own keys)."""
from __future__ import annotations

import math

import numpy as np

from ..errors import ConfigError

__all__ = ["check_schedule", "check_seed", "check_batch", "check_name", "check_positive",
           "check_alpha0"]


def check_schedule(schedule, name: str = "schedule") -> None:
    """``schedule`` has ``init()`` and ``update(alpha, n)`` (a schedule or ``Scaled``)."""
    if not (callable(getattr(schedule, "init", None))
            and callable(getattr(schedule, "update", None))):
        raise ConfigError(f"{name} must be a step-size schedule with init() and "
                          f"update(alpha, n), e.g. Diminishing(0.5), got {schedule!r}")


def check_seed(seed) -> None:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ConfigError(f"seed must be an integer, got {seed!r}")


def check_batch(batch_size) -> None:
    """``None`` or ``0`` (the whole shard) or a positive integer."""
    if batch_size is not None and (isinstance(batch_size, bool)
                                   or not isinstance(batch_size, (int, np.integer))
                                   or batch_size < 0):
        raise ConfigError(f"batch_size must be a positive integer, or 0 / None for the whole "
                          f"shard, got {batch_size!r}")


def check_name(name) -> None:
    if not isinstance(name, str) or not name:
        raise ConfigError(f"name must be a non-empty string, got {name!r}")


def _is_number(x) -> bool:
    return not isinstance(x, bool) and isinstance(x, (int, float, np.integer, np.floating)) \
        and math.isfinite(x)


def check_positive(name: str, value, *, auto: bool = False, example: str = "") -> None:
    """``value`` is a finite number > 0 (or ``"auto"`` where ``auto``)."""
    if auto and isinstance(value, str) and value == "auto":
        return
    if not _is_number(value) or not value > 0:
        what = "a finite number > 0" + (' or "auto"' if auto else "")
        raise ConfigError(f"{name} must be {what}{example}, got {value!r}")


def check_alpha0(alpha0) -> None:
    if not _is_number(alpha0) or not 0.0 < alpha0 <= 1.0:
        raise ConfigError(f"alpha0 must lie in (0, 1] (e.g. 0.5), got {alpha0!r}")
