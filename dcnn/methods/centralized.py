"""Centralized training on the pooled data (L-BFGS, gradient descent or Adam): the method
every decentralized one is measured against (:mod:`dcnn.algorithms.centralized`)."""
from __future__ import annotations

import torch

from ..algorithms import Centralized, Scaled, auto_lr
from ..algorithms.steps import ADAM_LR
from .decentralized import step_schedule
from .options import TrainerOptions
from .registry import MethodSpec, Supports, get_method, register
from .runs import LoopMethod

__all__ = ["resolve_lr", "optimizer_of"]


def optimizer_of(o, default: str) -> str:
    """``o.optimizer``, or ``default`` when ``"auto"``."""
    return default if o.optimizer == "auto" else o.optimizer


def resolve_lr(exp, lr, optimizer: str) -> float:
    """``lr``, or for ``"auto"``: Adam's default, 1 for L-BFGS (unused: it takes line-search
    steps), else ``1 / L`` from the local curvatures at ``w[0]`` (collective)."""
    if lr != "auto":
        return float(lr)
    if optimizer == "adam":
        return ADAM_LR
    if optimizer == "lbfgs":
        return 1.0
    with torch.no_grad():
        return float(auto_lr(problem=exp.problem, network=exp.network, X0=exp.X0))


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
                     "directed": ("centralized-lbfgs",)}))
