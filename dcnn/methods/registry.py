"""The method registry: every method's name, options, capabilities and builder, in one place.

A method (decentralized algorithm, engine or parallel scheme) is one module plus one
:func:`register` call with a :class:`MethodSpec`. The runner, ``dcnn compare``, the config
validation and the method table (docs/methods.md) read this registry and never name a method:

- ``options``: the method's typed options dataclass (:mod:`dcnn.methods.options`); its fields
  are the ``algorithm.*`` keys the method reads;
- ``supports``: what it can run on (:class:`Supports`), checked before anything runs;
- ``build(exp, options) -> Built``: the method made ready to run on a prepared experiment
  (:class:`dcnn.prepare.Prepared`), with the values it resolved (``tau``, ``lr``, ...);
- ``variants``: the extra names ``dcnn compare`` accepts (``next-fl`` = ``next`` with
  ``surrogate = "fl"``), and ``label(options)`` the name a run reports (``next-pl``);
- ``tune``: the step grid of ``dcnn compare --tune`` (:meth:`MethodSpec.step_grid`), and
  ``pooled``: the method trains on the pooled data (the reference, not a contender in a
  comparison's verdict).

>>> from dcnn.methods import get_method
>>> spec = get_method("gt")
>>> spec.supports.directed, spec.options.__name__
(False, 'GradientOptions')
"""
from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..errors import ConfigError
from .options import fields_of

__all__ = ["Supports", "MethodSpec", "Built", "REGISTRY", "register", "unregister",
           "get_method", "method_names", "load_plugin", "default_method", "variants",
           "parse_variant", "option_fields", "default_methods", "TUNE_FACTORS"]


@dataclass(frozen=True)
class Supports:
    """What a method can run on. ``topology = False``: it ignores the graph (engines and
    schemes train one model on a process group); ``resumable``: checkpoints and
    ``--resume`` work; ``l1``: it handles a non-smooth regulariser."""

    undirected: bool = True
    directed: bool = False
    time_varying: bool = True
    topology: bool = True
    resumable: bool = True
    l1: bool = True

    def refusal(self, *, directed: bool, time_varying: bool) -> str | None:
        """Why a graph of this kind does not fit, or ``None``."""
        if not self.topology:
            return None
        if directed and not self.directed:
            return "needs an undirected graph"
        if not directed and not self.undirected:
            return "needs a directed graph"
        if time_varying and not self.time_varying:
            return "needs a static graph"
        return None


class Built(Protocol):
    """A method ready to run: ``info`` (resolved values for the log and the summary) and
    ``execute(exp, *, progress, checkpoints, resume) -> (state, History)``."""

    info: dict

    def execute(self, exp, *, progress: bool, checkpoints=None, resume=None): ...


@dataclass(frozen=True)
class MethodSpec:
    """One registered method (see the module docstring)."""

    name: str
    summary: str
    options: type
    build: Callable[[Any, Any], Built]
    supports: Supports = Supports()
    variants: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    label: Callable[[Any], str] | None = None
    schedule: str = "constant"     # what schedule = "auto" means
    batch_size: int = 0            # what batch_size = 0 means (0: the whole shard)
    # the variants ``dcnn compare`` runs by default, per graph kind ("undirected"/"directed")
    compare_default: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # (key, factors of the number it resolves from "auto"); None: tau if the method has it,
    # else lr, else no grid
    tune: tuple[str, tuple[float, ...]] | None = None
    pooled: bool = False

    def step_grid(self) -> tuple[str, tuple[float, ...]] | None:
        """The default grid of ``dcnn compare --tune``: a key and factors of its automatic
        value (NEXT and SONATA: ``tau``; the gradient methods and trainers: ``lr``)."""
        if self.tune is not None:
            return self.tune
        keys = fields_of(self.options)
        return next(((k, TUNE_FACTORS) for k in ("tau", "lr") if k in keys), None)

    def label_of(self, options) -> str:
        return self.name if self.label is None else self.label(options)


# the default step grid: factors of the automatic value, two octaves each way
TUNE_FACTORS = (0.25, 0.5, 1.0, 2.0, 4.0)
REGISTRY: dict[str, MethodSpec] = {}
_DEFAULT: list[str] = []     # the method of an empty config (set by register(default=True))


def default_method() -> str:
    """What ``algorithm.name`` is when a config does not set it."""
    return _DEFAULT[-1] if _DEFAULT else next(iter(REGISTRY))


def register(spec: MethodSpec, *, replace: bool = False, default: bool = False) -> MethodSpec:
    """Add ``spec`` to the registry (``default``: it becomes what an empty config runs). Its
    variant names must be new, and a key it shares with other methods must have the same
    type and default there (one meaning per key)."""
    if not isinstance(spec, MethodSpec):
        raise TypeError(f"register needs a MethodSpec, got {type(spec).__name__}")
    if spec.name in REGISTRY and not replace:
        raise ConfigError(f"method {spec.name!r} is registered already; pass replace=True")
    others = {k: v for k, v in REGISTRY.items() if k != spec.name}
    taken = {v for s in others.values() for v in (s.name, *s.variants)}
    clash = [v for v in (spec.name, *spec.variants) if v in taken]
    if clash:
        raise ConfigError(f"method name {clash[0]!r} of {spec.name!r} is taken by another "
                          "method; choose another name")
    mine = fields_of(spec.options)
    if "name" in mine:
        raise ConfigError(f"method {spec.name!r} declares an option 'name', which is "
                          "algorithm.name itself; choose another key")
    from .options import options_from
    options_from(spec.options, {}, method=spec.name)     # its defaults pass its own checks
    for key, (f, hint) in mine.items():
        for other in others.values():
            theirs = fields_of(other.options).get(key)
            if theirs is not None and (str(theirs[1]) != str(hint)
                                       or theirs[0].default != f.default):
                raise ConfigError(f"option {key!r} of {spec.name!r} ({hint} = {f.default!r}) "
                                  f"differs from {other.name!r}'s ({theirs[1]} = "
                                  f"{theirs[0].default!r}); use another key name")
    for variant, keys in spec.variants.items():
        unknown = [k for k in keys if k not in mine]
        if unknown:
            raise ConfigError(f"variant {variant!r} sets {unknown[0]!r}, which is not an "
                              f"option of {spec.name!r}")
    REGISTRY[spec.name] = spec
    if default:
        _DEFAULT.append(spec.name)
    return spec


def load_plugin(ref: str) -> list[str]:
    """Import ``ref`` (a ``.py`` path or a module name) so that its :func:`register` calls
    run (``dcnn --plugin``); returns the names it added."""
    from ..imports import import_source
    before = set(REGISTRY)
    try:
        import_source(ref, where=f"--plugin {ref}")
    except Exception:
        for name in [n for n in REGISTRY if n not in before]:   # nothing half-registered
            unregister(name)
        raise
    return [n for n in REGISTRY if n not in before]


def unregister(name: str) -> None:
    """Remove method ``name`` (tests that register a toy method clean up with it)."""
    REGISTRY.pop(name, None)
    while name in _DEFAULT:
        _DEFAULT.remove(name)


def method_names() -> tuple[str, ...]:
    return tuple(REGISTRY)


def get_method(name: str) -> MethodSpec:
    """The spec of method ``name``, or a ConfigError with the closest name."""
    if name not in REGISTRY:
        close = difflib.get_close_matches(str(name), list(REGISTRY), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ConfigError(f"algorithm.name = {name!r} is not allowed; {hint}choose one of: "
                          f"{', '.join(REGISTRY)} (your own method: load its module with "
                          "--plugin FILE.py)")
    return REGISTRY[name]


def variants() -> dict[str, tuple[str, dict]]:
    """Every name ``dcnn compare`` accepts: ``{variant: (method, option overrides)}``."""
    out = {name: (name, {}) for name in REGISTRY}
    for spec in REGISTRY.values():
        out.update({v: (spec.name, dict(keys)) for v, keys in spec.variants.items()})
    return out


def parse_variant(variant: str) -> dict:
    """The ``algorithm`` keys a compare variant sets, e.g. ``next-fl`` ->
    ``{"name": "next", "surrogate": "fl"}``."""
    every = variants()
    if variant not in every:
        close = difflib.get_close_matches(variant, list(every), n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"valid: {', '.join(every)}"
        raise ConfigError(f"method {variant!r} is unknown; {hint}")
    name, keys = every[variant]
    return {"name": name, **keys}


def option_fields() -> dict[str, list[tuple[str, Any, Any]]]:
    """``{key: [(method, field, hint), ...]}``: every ``algorithm.*`` key some method reads."""
    out: dict[str, list] = {}
    for spec in REGISTRY.values():
        for key, (f, hint) in fields_of(spec.options).items():
            out.setdefault(key, []).append((spec.name, f, hint))
    return out


def default_methods(*, directed: bool) -> tuple[str, ...]:
    """The variants ``dcnn compare`` runs when no ``--methods`` is given, in registry order."""
    kind = "directed" if directed else "undirected"
    return tuple(v for spec in REGISTRY.values() for v in spec.compare_default.get(kind, ()))
