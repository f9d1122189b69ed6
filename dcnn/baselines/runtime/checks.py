"""The checks every trainer of :mod:`dcnn.baselines` makes before its process group forms.

Each names the bad value and the fix in one line (:class:`dcnn.errors.ConfigError`), so a
misconfiguration fails identically on every rank instead of hanging in a collective.
"""
from __future__ import annotations

import math

import numpy as np
from torch import nn

from ...errors import ConfigError
from ...problems import Regularizer
from ...problems.losses import check_loss
from .update import OPTIMIZERS

__all__ = ["TASKS", "check_regularizer", "check_trainer_inputs", "as_int", "check_batch_size"]

TASKS = ("regression", "binary", "multiclass")


def check_regularizer(regularizer: Regularizer, optimizer: str) -> None:
    """Refuse what cannot be minimised exactly: an l1 part with an optimiser but SGD."""
    if not isinstance(regularizer, Regularizer):
        raise ConfigError(f"regularizer must be a dcnn Regularizer (make_regularizer), got "
                          f"{type(regularizer).__name__}")
    if not regularizer.smooth and optimizer != "sgd":
        raise ConfigError(f"regularizer {regularizer.name!r} has an l1 part, which the engine "
                          f"baselines handle only with optimizer='sgd' (a proximal step); use "
                          f"optimizer='sgd', or the methods next or dgd")


def check_trainer_inputs(*, module, shards, loss: str, task: str, regularizer, optimizer: str,
                         lr=None, who: str = "") -> None:
    """The checks every trainer of :mod:`dcnn.baselines` makes first: a module with floating
    parameters, non-empty shards, a known task, a loss that fits it, a known optimiser, a
    positive ``lr`` (unless ``None``) and a regulariser the optimiser can handle; the
    messages start with ``who: `` when given."""
    pre = f"{who}: " if who else ""
    if not isinstance(module, nn.Module) or not any(True for _ in module.parameters()):
        raise ConfigError(f"{pre}module must be a torch.nn.Module with parameters, got "
                          f"{type(module).__name__}")
    if not next(module.parameters()).is_floating_point():
        raise ConfigError(f"{pre}module parameters must be floating point; build it with "
                          "dcnn.problems.mlp(dtype=torch.float64)")
    if len(shards) == 0 or any(len(x) == 0 for x, _ in shards):
        raise ConfigError(f"{pre}shards must be a non-empty list of non-empty (X_i, T_i) "
                          f"pairs, got sizes {[len(x) for x, _ in shards]}")
    if task not in TASKS:
        raise ConfigError(f"task {task!r} is unknown; choose one of: {', '.join(TASKS)}")
    check_loss(loss, task)
    if optimizer not in OPTIMIZERS:
        raise ConfigError(f"optimizer {optimizer!r} is unknown; choose one of: "
                          f"{', '.join(OPTIMIZERS)}")
    if lr is not None and (isinstance(lr, bool) or not isinstance(lr, (int, float))
                           or not (math.isfinite(lr) and lr > 0)):
        raise ConfigError(f"lr must be a positive number, got {lr!r}")
    check_regularizer(regularizer, optimizer)


def as_int(name: str, value, *, low: int, high: int | None = None, fix: str = "",
           who: str = "") -> int:
    """``value`` as an ``int`` in ``low..high``; a one-line error naming ``name`` otherwise
    (``fix`` is appended to it, ``who: `` put before it)."""
    ok = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
    if not ok or value < low or (high is not None and value > high):
        bound = f">= {low}" if high is None else f"in {low}..{high}"
        pre = f"{who}: " if who else ""
        raise ConfigError(f"{pre}{name} must be an integer {bound}, got {value!r}{fix}")
    return int(value)


def check_batch_size(batch_size) -> int | None:
    """``None`` (or 0) for the full batch, else a positive ``int``."""
    if batch_size is None:
        return None
    return as_int("batch_size", batch_size, low=0) or None

