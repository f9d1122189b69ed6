"""Argument checks shared by the topology modules: one-line :class:`TopologyError` messages
that name the bad value and the fix."""
from __future__ import annotations

import difflib
import operator
from typing import Any

from ..errors import TopologyError

__all__ = ["check_name", "check_params", "check_int", "check_prob"]


def check_name(kind: str, name: Any, valid: tuple[str, ...]) -> str:
    """Return ``name`` if it is in ``valid``; else a one-line error with the closest name."""
    if isinstance(name, str) and name in valid:
        return name
    close = difflib.get_close_matches(str(name), valid, n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    raise TopologyError(f"{kind} {name!r} is unknown; {hint}choose one of: {', '.join(valid)}")


def check_params(what: str, params: dict, valid: tuple[str, ...]) -> None:
    """Refuse parameters not in ``valid``, naming the closest valid one."""
    for key in params:
        if key not in valid:
            close = difflib.get_close_matches(key, valid, n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            allowed = ", ".join(valid) if valid else "none"
            raise TopologyError(f"{what} takes no parameter '{key}'; {hint}"
                                f"valid parameters: {allowed}")


def check_int(name: str, value: Any, *, minimum: int) -> int:
    """``value`` as an int ``>= minimum``, or a one-line error."""
    try:
        if isinstance(value, bool):
            raise TypeError
        out = operator.index(value)
    except TypeError:
        raise TopologyError(f"{name} must be an integer >= {minimum}, got {value!r}") from None
    if out < minimum:
        raise TopologyError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return out


def check_prob(name: str, value: Any, *, low_open: bool, high_open: bool) -> float:
    """``value`` as a float in the interval the flags describe, or a one-line error."""
    lo, hi = ("(" if low_open else "["), (")" if high_open else "]")
    try:
        if isinstance(value, bool):
            raise TypeError
        v = float(value)
    except (TypeError, ValueError):
        raise TopologyError(f"{name} must be a number in {lo}0, 1{hi}, got {value!r}") from None
    ok = (v > 0 if low_open else v >= 0) and (v < 1 if high_open else v <= 1)
    if not ok:
        raise TopologyError(f"{name} = {value!r} is outside {lo}0, 1{hi}; "
                            f"choose {name} in {lo}0, 1{hi}")
    return v
