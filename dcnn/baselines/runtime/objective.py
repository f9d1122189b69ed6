"""dcnn's objective in the terms a PyTorch engine needs: weighted sums of losses and seeded
batches of the pooled shards.

The objective is the one every decentralized method minimises,

    U(w) = (1/M) sum_{k=1..M} loss(t_k, f(w; x_k)) + r(w),

``M`` the number of training samples over all shards, ``loss`` a per-sample sum over outputs
(squared loss without a factor 1/2; see :mod:`dcnn.problems.losses`). A trainer computes the
data part of the gradient with autograd on a weighted loss sum (:func:`weighted_loss`); the
regulariser ``r`` enters in the update (:mod:`~dcnn.baselines.runtime.update`).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ...problems import per_sample_loss, sample_batches

__all__ = ["weighted_loss", "batch_rows", "pool", "as_tensors"]


def weighted_loss(loss: str, out: torch.Tensor, target: torch.Tensor, *,
                  weight: float) -> torch.Tensor:
    """``weight * sum_k loss(t_k, f_k)`` over the rows of ``out`` / ``target``."""
    return weight * per_sample_loss(loss, out, target).sum()



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
