"""The update of every trainer, written once: regulariser gradient, optimiser step, prox.

One step of a trainer's parameters ``w`` (all of them, a part, a shard or a replica; ``eta`` =
``lr``, ``g`` = the gradient of the step's data cost already in ``p.grad``, ``r = r_1 + r_2``
the l1 and l2 parts of the regulariser):

    SGD:   w <- prox_{eta r_1}(w - eta (g + grad r_2(w)))    (without l1 the prox is the identity)
    Adam:  torch.optim.Adam on g + grad r(w)                 (r smooth only)

the update of ``centralized-gd`` (:mod:`dcnn.algorithms.centralized`), so an engine that
computes the exact gradient reproduces it. ``grad r_2 = 2 l2 w`` (:func:`add_regularizer_grad_`)
and the soft threshold of the prox (:func:`prox_`) are elementwise, so they are exact whether a
tensor is a full replica, a pipeline stage's own tensor or a tensor-parallel shard (a DTensor's
local entries). Adam with an l1 part is refused (:func:`dcnn.baselines.runtime.checks.
check_regularizer`).
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch

from ...errors import ConfigError
from ...problems import Regularizer

__all__ = ["OPTIMIZERS", "local_tensor", "add_regularizer_grad_", "prox_", "smooth_part",
           "make_optimizer", "apply_update"]

OPTIMIZERS = ("sgd", "adam")


def local_tensor(t: torch.Tensor) -> torch.Tensor:
    """This rank's entries of ``t``: the local shard of a DTensor, else ``t`` itself."""
    return t.to_local() if hasattr(t, "to_local") else t


@torch.no_grad()
def add_regularizer_grad_(params: Iterable[torch.Tensor], regularizer: Regularizer) -> None:
    """``p.grad += 2 l2 p`` for every tensor (the smooth part of ``r``; l1 goes to the prox)."""
    if regularizer.l2 == 0.0:
        return
    for p in params:
        g = local_tensor(p.grad)
        g.add_(local_tensor(p), alpha=2.0 * regularizer.l2)


@torch.no_grad()
def prox_(params: Iterable[torch.Tensor], regularizer: Regularizer, step: float) -> None:
    """``p <- prox_{step r_1}(p)`` in place for the l1 part ``r_1`` of ``r`` (soft threshold
    at ``step l1``); the l2 part goes into the gradient (:func:`add_regularizer_grad_`)."""
    l1 = Regularizer("l1", l1=regularizer.l1)
    for p in params:
        w = local_tensor(p)
        w.copy_(l1.prox(w, step))


def smooth_part(regularizer: Regularizer) -> Regularizer:
    """The part of ``r`` added to gradients: its l2 part (the l1 part goes to the prox)."""
    return Regularizer("l2", l2=regularizer.l2)


def make_optimizer(params: Sequence[torch.Tensor], *, name: str, lr: float
                   ) -> torch.optim.Optimizer:
    """Plain ``torch.optim.SGD`` or ``torch.optim.Adam`` (default betas) at rate ``lr``."""
    if name not in OPTIMIZERS:
        raise ConfigError(f"optimizer {name!r} is unknown; choose one of: {', '.join(OPTIMIZERS)}")
    if not (isinstance(lr, (int, float)) and lr > 0):
        raise ConfigError(f"lr must be a positive number, got {lr!r}")
    cls = torch.optim.SGD if name == "sgd" else torch.optim.Adam
    return cls(list(params), lr=float(lr))



def apply_update(params: Sequence[torch.Tensor], opt: torch.optim.Optimizer,
                 regularizer: Regularizer, lr: float) -> None:
    """One step of the module docstring on ``params`` (the tensors ``r`` applies to; ``opt``
    may hold more, e.g. auxiliary heads, which then step on their data gradient alone). A
    tensor the data cost did not reach has gradient 0."""
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    # g + grad r_2(w), then the optimiser, then prox_{eta r_1}
    add_regularizer_grad_(params, smooth_part(regularizer))
    opt.step()
    if not regularizer.smooth:
        prox_(params, regularizer, lr)
