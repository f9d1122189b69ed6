"""dcnn's objective in the terms a PyTorch engine needs: weighted sums of losses, the
regulariser applied to local parameter tensors, seeded batches, and the optimiser.

The objective is the one every decentralized method minimises,

    U(w) = (1/M) sum_{k=1..M} loss(t_k, f(w; x_k)) + r(w),

``M`` the number of training samples over all shards, ``loss`` a per-sample sum over outputs
(squared loss without a factor 1/2; see :mod:`dcnn.problems.losses`). An engine computes the
data part of the gradient with autograd on a weighted loss sum (:func:`weighted_loss`); the
smooth part of ``r`` is added to the gradients afterwards, tensor by tensor
(:func:`add_regularizer_grad_`: ``g += 2 l2 w``), which is exact whether a tensor is a full
replica, a pipeline stage's own tensor or a tensor-parallel shard. An l1 part is handled by a
proximal step after plain SGD (:func:`prox_`: ``w <- prox_{lr r}(w)``, elementwise, so again
exact on any shard); Adam with an l1 part is refused.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError
from ..problems import Regularizer, per_sample_loss, sample_batches
from ..problems.losses import check_loss

__all__ = ["OPTIMIZERS", "TASKS", "weighted_loss", "check_regularizer", "check_trainer_inputs",
           "as_int", "check_batch_size", "add_regularizer_grad_", "prox_", "smooth_part",
           "make_optimizer", "batch_rows", "pool", "as_tensors", "local_tensor"]

OPTIMIZERS = ("sgd", "adam")
TASKS = ("regression", "binary", "multiclass")


def weighted_loss(loss: str, out: torch.Tensor, target: torch.Tensor, *,
                  weight: float) -> torch.Tensor:
    """``weight * sum_k loss(t_k, f_k)`` over the rows of ``out`` / ``target``."""
    return weight * per_sample_loss(loss, out, target).sum()


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


def batch_rows(n: int, batch_size: int | None, *, seed: int, step: int, stream: int
               ) -> torch.Tensor | None:
    """Rows of a mini-batch of ``min(b, n)`` distinct samples out of ``n``, drawn by a
    generator seeded by ``(seed, step, stream)`` (``stream`` = the rank for data parallel);
    ``None`` for the full batch. Same sampler as stochastic NEXT
    (:func:`dcnn.problems.sample_batches`)."""
    if batch_size is None or batch_size >= n:
        return None
    rows = sample_batches(torch.tensor([n]), batch_size, seed=seed, t=step, agent_ids=[stream])
    return rows[0]


def pool(shards: Sequence[tuple]) -> tuple[np.ndarray, np.ndarray]:
    """All shards stacked in agent order: ``(X, T)`` with ``T`` of shape ``(M, O)``."""
    X = np.concatenate([np.asarray(x) for x, _ in shards], axis=0)
    T = np.concatenate([np.asarray(t).reshape(len(t), -1) for _, t in shards], axis=0)
    return X, T


def as_tensors(X, T, dtype: torch.dtype, device: torch.device | str = "cpu"
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(X, T)`` as tensors of ``dtype`` on ``device``, ``T`` reshaped to ``(M, O)``."""
    x = torch.as_tensor(np.asarray(X), dtype=dtype, device=device)
    t = torch.as_tensor(np.asarray(T), dtype=dtype, device=device)
    return x, t.reshape(len(t), -1)
