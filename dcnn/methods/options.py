"""Typed, validated method options: one frozen dataclass per method, fields declared once.

A method's options are the ``algorithm.*`` keys it reads (beside ``algorithm.name``). Each
field is declared with :func:`option`: its default, and either the allowed ``choices`` or a
``check`` with a description of the valid range. Constructing an options object validates every
field and names the Python argument in the message (``alpha0 must be in (0, 1], got 2``);
the config layer adds the ``algorithm.`` prefix for TOML keys.

Shared groups (:class:`StepOptions` for every method, :class:`SurrogateOptions`,
:class:`GradientOptions`, :class:`TrainerOptions`) are inherited, so a key has one meaning
everywhere it appears. A method may narrow a key's ``choices`` (an engine refuses
``optimizer = "lbfgs"``) but not change its type or default: the registry checks that.
"""
from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError

__all__ = ["option", "check_value", "validate_options", "options_from", "StepOptions",
           "SurrogateOptions", "GradientOptions", "TrainerOptions", "NoOptions"]


def option(default: Any, *, choices: tuple | None = None,
           check: tuple[Callable[[Any], bool], str] | None = None, doc: str = ""):
    """A dataclass field of an options class (see the module docstring)."""
    return dataclasses.field(default=default,
                             metadata={"choices": choices, "check": check, "doc": doc})


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    return repr(value)


def check_value(where: str, value: Any, hint, default: Any = None) -> Any:
    """``value`` converted to the type ``hint`` (a type or its text), or a ConfigError naming
    ``where``, the bad value and an example. ``float | str`` accepts a number or a string
    (``"auto"``); NaN and inf are refused."""
    text = str(hint)
    example = "" if default is None else f"; e.g. {where} = {_toml(default)}"
    if "list" in text:
        if isinstance(value, (list, tuple)) and all(isinstance(v, int) and not isinstance(v, bool)
                                                     for v in value):
            return list(value)
        one = "int |" in text or "| int" in text      # ``int | list``: one for all, or a list
        if one and isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{where} must be {'an integer or ' if one else ''}a list of "
                          f"integers, got {value!r}{example}")
    if value is None and "None" in text:
        return None
    if isinstance(value, str) and "str" in text:
        return value
    if "bool" in text:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where} must be true or false, got {value!r}{example}")
    if "int" in text and "float" not in text:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{where} must be an integer, got {value!r}{example}")
    if "float" in text:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise ConfigError(f"{where} must be a finite number, got {value!r}{example}")
            return float(value)
        raise ConfigError(f"{where} must be a number, got {value!r}{example}")
    if isinstance(value, str):
        return value
    raise ConfigError(f"{where} must be a string, got {value!r}{example}")


def closest(value: str, valid) -> str:
    """A "did you mean ...? " hint for the valid name closest to ``value``, or ""."""
    import difflib
    close = difflib.get_close_matches(value, list(valid), n=1)
    return f"did you mean {close[0]!r}? " if close else ""


def check_field(where: str, value: Any, f: dataclasses.Field, hint) -> Any:
    """``value`` typed and checked against the field ``f`` (choices or range)."""
    value = check_value(where, value, hint, f.default)
    choices, rule = f.metadata.get("choices"), f.metadata.get("check")
    if choices is not None and value not in choices:
        raise ConfigError(f"{where} = {value!r} is not allowed; "
                          f"{closest(str(value), map(str, choices))}choose one of: "
                          f"{', '.join(map(str, choices))}")
    if rule is not None and value is not None and not rule[0](value):
        raise ConfigError(f"{where} must be {rule[1]}, got {value!r}")
    return value


def fields_of(cls) -> dict[str, tuple[dataclasses.Field, Any]]:
    """``{name: (field, type hint)}`` of an options class."""
    hints = typing.get_type_hints(cls)
    return {f.name: (f, hints[f.name]) for f in dataclasses.fields(cls)}


def validate_options(obj, prefix: str = "") -> None:
    """Check (and normalise, e.g. ``1`` -> ``1.0``) every field of ``obj`` in place."""
    for name, (f, hint) in fields_of(type(obj)).items():
        value = check_field(prefix + name, getattr(obj, name), f, hint)
        object.__setattr__(obj, name, value)


def options_from(cls, values: dict, *, prefix: str = "algorithm.", method: str = ""):
    """An options object of ``cls`` from ``values`` (keys it does not declare are ignored:
    they belong to other methods); errors name ``prefix + key``."""
    known = fields_of(cls)
    kwargs = {}
    for key, value in values.items():
        if key in known:
            kwargs[key] = check_field(prefix + key, value, *known[key])
    obj = cls.__new__(cls)
    for name, (f, _) in known.items():
        object.__setattr__(obj, name, kwargs.get(name, f.default))
    try:
        validate_options(obj, prefix)
        post = getattr(obj, "check", None)
        if post is not None:
            post()
    except ConfigError as exc:
        if method and prefix and not str(exc).startswith(prefix):
            raise ConfigError(f"{prefix}name = {method!r}: {exc}") from None
        raise
    return obj


@dataclass(frozen=True)
class _Validated:
    def __post_init__(self):
        validate_options(self)
        check = getattr(self, "check", None)
        if check is not None:
            check()


@dataclass(frozen=True)
class NoOptions(_Validated):
    """A method without options of its own."""


@dataclass(frozen=True)
class StepOptions(_Validated):
    """The step-size schedule and mini-batches: every method has them."""

    schedule: str = option("auto", choices=("auto", "diminishing", "constant", "polynomial"),
                           doc="auto: the method's own (diminishing for next, sonata, dgd; "
                               "constant for the others and the parallel trainers)")
    alpha0: float = option(0.5, check=(lambda v: 0 < v <= 1, "in (0, 1]"),
                           doc="first step of the schedule (the step is alpha[n], times lr for "
                               "the gradient methods)")
    eps: float = option(0.01, check=(lambda v: 0 < v < 1, "in (0, 1)"),
                        doc="diminishing: alpha[n+1] = alpha[n] (1 - eps alpha[n])")
    power: float = option(0.6, check=(lambda v: 0.5 < v <= 1, "in (0.5, 1]"),
                          doc="polynomial: alpha[n] = alpha0 / (n + 1)^power")
    batch_size: int = option(0, check=(lambda v: v >= 0, ">= 0 (0 = the whole shard)"),
                             doc="b > 0: mini-batches of b rows per agent (16 for dsgd; "
                                 "stochastic NEXT/SONATA go beyond the paper)")


@dataclass(frozen=True)
class SurrogateOptions(StepOptions):
    """NEXT and SONATA: the surrogate, its proximal weight and its inner solver."""

    surrogate: str = option("pl", choices=("fl", "pl"),
                            doc="pl: partial linearisation (the network's own curvature kept), "
                                "fl: full linearisation (a proximal-gradient step)")
    tau: float | str = option("auto", check=(
        lambda v: v == "auto" or (not isinstance(v, str) and v > 0), "> 0 or \"auto\""),
        doc="proximal weight of the surrogate; auto: from a curvature estimate at the start "
            "(dcnn/surrogates/tau.py)")
    adapt_tau: bool | str = option("auto", check=(
        lambda v: v == "auto" or isinstance(v, bool), 'true, false or "auto"'),
        doc='raise tau during the run when the measured curvature outgrows it ("auto": '
            'when tau = "auto")')
    solver: str = option("auto", choices=("auto", "cholesky", "woodbury", "cg"),
                         doc="inner solver of the PL step (auto: by a cost model of the sizes)")
    inner_tol: float = option(1e-6, check=(lambda v: v > 0, "> 0"),
                              doc="relative tolerance of the iterative inner solvers")
    inner_iters: int = option(500, check=(lambda v: v >= 1, ">= 1"),
                              doc="iteration cap of the iterative inner solvers")
    threads: int = option(1, check=(lambda v: v >= 1, ">= 1"),
                          doc="C > 1: the local step as block-Jacobi on C threads")
    blocks: str = option("layer", choices=("layer", "neuron", "random"),
                         doc="how the parameters are cut into blocks for threads > 1")
    n_blocks: int | None = option(None, check=(lambda v: v >= 1, ">= 1"),
                                  doc="number of random blocks (unset: = threads)")
    block_fraction: float = option(1.0, check=(lambda v: 0 < v <= 1, "in (0, 1]"),
                                   doc="< 1: a random subset of the blocks is updated each "
                                       "iteration")


_LR = (lambda v: v == "auto" or (not isinstance(v, str) and v > 0), "> 0 or \"auto\"")


@dataclass(frozen=True)
class GradientOptions(StepOptions):
    """The gradient methods: the step ``lr * alpha[n]``."""

    lr: float | str = option("auto", check=_LR,
                             doc="the step is lr * alpha[n]; auto: 1 / (largest local curvature "
                                 "at the start), 0.02 for Adam")


@dataclass(frozen=True)
class TrainerOptions(GradientOptions):
    """Methods with an optimiser (centralized, the engines and schemes)."""

    optimizer: str = option("auto", choices=("auto", "lbfgs", "gd", "adam"),
                            doc="auto: lbfgs for centralized, gd for the parallel trainers")
