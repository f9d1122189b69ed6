"""Per-sample losses and metrics on model outputs.

Targets are always a float matrix ``(M, O)``: regression values, ``0/1`` for binary
classification (one output), one-hot rows for multiclass. Losses are **sums** over outputs
per sample; the local cost of an agent is ``g_i(w) = (1/M) sum_{k in shard i} loss_k(w)``
with ``M`` the size of the *pooled* training set, so that ``sum_i g_i`` is the usual mean loss.

- ``squared``: ``||t - f||^2`` (no factor 1/2).
- ``cross_entropy``: one output: logistic loss on the logit ``softplus(f) - t f``;
  ``O > 1`` outputs: softmax cross-entropy ``-sum_o t_o log softmax(f)_o``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import ConfigError

__all__ = ["LOSSES", "TASKS", "per_sample_loss", "per_sample_score", "check_loss"]

LOSSES = ("squared", "cross_entropy")
TASKS = ("regression", "binary", "multiclass")   # the same as dcnn.data.TASKS (a test checks)


def check_loss(loss: str, task: str) -> None:
    """Refuse a loss that does not fit the task, naming the fix."""
    if loss not in LOSSES:
        raise ConfigError(f"model.loss {loss!r} is unknown; choose one of: {', '.join(LOSSES)}")
    if loss == "cross_entropy" and task == "regression":
        raise ConfigError("model.loss 'cross_entropy' needs a classification dataset; "
                          "use model.loss = 'squared' for regression")


def per_sample_loss(loss: str, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Loss of each sample, shape ``out.shape[:-1]``."""
    if loss == "squared":
        return ((target - out) ** 2).sum(-1)
    if out.shape[-1] == 1:
        return (F.softplus(out) - target * out).sum(-1)
    return -(target * torch.log_softmax(out, dim=-1)).sum(-1)


def per_sample_score(loss: str, task: str, out: torch.Tensor, target: torch.Tensor
                     ) -> torch.Tensor:
    """Regression: squared error averaged over outputs. Classification: 1.0 if correct."""
    if task == "regression":
        return ((target - out) ** 2).mean(-1)
    if out.shape[-1] == 1:
        threshold = 0.5 if loss == "squared" else 0.0
        return ((out[..., 0] > threshold) == (target[..., 0] > 0.5)).to(out.dtype)
    return (out.argmax(-1) == target.argmax(-1)).to(out.dtype)
