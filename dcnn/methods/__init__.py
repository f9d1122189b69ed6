"""Methods, registered once and discovered: :mod:`~dcnn.methods.registry` (the registry and
its protocol), :mod:`~dcnn.methods.options` (typed options), and the built-in entries:
:mod:`~dcnn.methods.decentralized` (NEXT, SONATA, DGD, D-PSGD, GT, EXTRA, Push-DIGing),
:mod:`~dcnn.methods.centralized` and :mod:`~dcnn.methods.parallel` (engines and schemes).

Adding a method: write its module (an algorithm with ``init``/``step``, or a trainer) and
call :func:`register` with a :class:`MethodSpec`; ``dcnn run``, ``dcnn compare``, the config
validation and the contract tests then know it.
"""
from .options import (GradientOptions, NoOptions, StepOptions, SurrogateOptions,
                      TrainerOptions, option)
from .registry import (REGISTRY, Built, MethodSpec, Supports, default_method,
                       default_methods, get_method, load_plugin, method_names, option_fields,
                       parse_variant, register, unregister, variants)
from .runs import LoopMethod, TrainerMethod, TrainerState
from . import decentralized, centralized, parallel  # noqa: E402,F401  (the built-in entries)

__all__ = ["REGISTRY", "MethodSpec", "Supports", "Built", "register", "unregister",
           "get_method", "load_plugin", "method_names", "variants", "parse_variant",
           "option_fields", "default_method", "default_methods", "option",
           "StepOptions", "SurrogateOptions", "GradientOptions", "TrainerOptions",
           "NoOptions", "LoopMethod", "TrainerMethod", "TrainerState", "method_table"]


def method_table() -> str:
    """The method table of docs/methods.md (Markdown), from the registry."""
    rows = ["| name | what | variants | graphs | l1 | resumable |", "|---|---|---|---|---|---|"]
    for spec in REGISTRY.values():
        s = spec.supports
        graphs = "ignored (process group)" if not s.topology else ", ".join(
            x for x, ok in (("undirected", s.undirected), ("directed", s.directed)) if ok) + \
            ("" if s.time_varying else " (static only)")
        rows.append(f"| `{spec.name}` | {spec.summary} | "
                    f"{', '.join(f'`{v}`' for v in spec.variants) or '-'} | {graphs} | "
                    f"{'yes' if s.l1 else 'no'} | {'yes' if s.resumable else 'no'} |")
    return "\n".join(rows)
