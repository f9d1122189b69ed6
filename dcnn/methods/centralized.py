"""Centralized training on the pooled data (L-BFGS, gradient descent or Adam): the method
every decentralized one is measured against (:mod:`dcnn.algorithms.centralized`)."""
from __future__ import annotations

from ..algorithms import Centralized, Scaled
from .decentralized import resolve_lr, step_schedule
from .options import TrainerOptions
from .registry import MethodSpec, Supports, get_method, register
from .runs import LoopMethod

__all__ = ["optimizer_of"]


def optimizer_of(o, default: str) -> str:
    """``o.optimizer``, or ``default`` when ``"auto"``."""
    return default if o.optimizer == "auto" else o.optimizer


def _build(exp, o: TrainerOptions) -> LoopMethod:
    schedule_name, schedule = step_schedule(get_method("centralized"), o)
    optimizer = optimizer_of(o, "lbfgs")
    lr = resolve_lr(exp, o.lr, optimizer)
    info = {"schedule": schedule_name, "optimizer": optimizer}
    if optimizer != "lbfgs":
        info["lr"] = lr
    return LoopMethod(Centralized(schedule=Scaled(schedule, lr), optimizer=optimizer), info)


register(MethodSpec(
    "centralized", "pooled data: L-BFGS, gradient descent or Adam", TrainerOptions, _build,
    Supports(directed=True),
    variants={f"centralized-{o}": {"optimizer": o} for o in ("lbfgs", "gd", "adam")},
    label=lambda o: f"centralized-{optimizer_of(o, 'lbfgs')}",
    compare_default={"undirected": ("centralized-lbfgs",),
                     "directed": ("centralized-lbfgs",)}, pooled=True))
