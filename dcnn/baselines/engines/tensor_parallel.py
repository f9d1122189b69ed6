"""Tensor parallel: :func:`torch.distributed.tensor.parallel.parallelize_module` over a 1-D
``DeviceMesh`` of all ``R`` ranks (CPU with gloo, or CUDA).

The Linear layers of the MLP are taken in consecutive pairs ``(A, B)`` (with the activation
between them): ``A`` is :class:`ColwiseParallel` (rank ``r`` holds rows ``r`` of ``W_A`` and
``b_A``, i.e. a slice of the hidden units), ``B`` is :class:`RowwiseParallel` (the matching
columns of ``W_B``; ``b_B`` replicated). With an odd number of Linear layers the last one stays
an ordinary replicated layer (every rank computes it identically on the replicated input).
Every rank sees the same batch (the pooled shards, or ``min(b, M)`` samples drawn by a
generator seeded by ``(seed, step)``) and back-propagates

    L(w) = (1/|B|) sum_{k in B} loss(t_k, f(w; x_k)),

so each rank's gradient shard is exactly its slice of the data part of ``grad U`` (full batch).

Bytes per worker and step (computed): per pair, one ring all-reduce of ``B``'s output
(``|B| x out_B`` entries) in the forward pass and, for every pair but the first (whose input is
the data, which needs no gradient), one of ``A``'s input gradient (``|B| x in_A``) in the
backward pass; a ring all-reduce of ``n`` entries sends ``2 (R-1)/R n itemsize`` per rank.
"""
from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.tensor.parallel import (ColwiseParallel, RowwiseParallel,
                                               parallelize_module)

from ...errors import LaunchError
from ...problems import FlatModel
from ..runtime.bootstrap import World
from ..runtime.costs import ring_allreduce_bytes
from .engine import Engine
from ..runtime.objective import as_tensors, batch_rows, pool, weighted_loss
from .pipeline import linear_positions

__all__ = ["tp_pairs", "TensorParallelEngine"]


def tp_pairs(module: nn.Module, degree: int) -> tuple[list[tuple[int, int]], list[int]]:
    """``(pairs, replicated)``: child indices of the (colwise, rowwise) Linear pairs and of
    the Linear layer left replicated (the last one when their number is odd)."""
    pos = linear_positions(module)
    pairs = [(pos[k], pos[k + 1]) for k in range(0, len(pos) - 1, 2)]
    replicated = [pos[-1]] if len(pos) % 2 else []
    for a, _ in pairs:
        width = module[a].out_features
        if width % degree:
            raise LaunchError(f"tensor-parallel: hidden width {width} (layer {a}) is not "
                               f"divisible by the tensor-parallel degree {degree}; use widths "
                               f"that are multiples of {degree} or fewer ranks")
    return pairs, replicated


def _full(t: torch.Tensor) -> torch.Tensor:
    return t.full_tensor() if hasattr(t, "full_tensor") else t


class TensorParallelEngine(Engine):
    """The MLP sharded over all ranks by ``parallelize_module`` (see the module docstring)."""

    method = "tensor-parallel"

    def __init__(self, *, world: World, module: nn.Module, shards: Sequence[tuple], loss: str,
                 batch_size: int | None = None, seed: int = 0):
        self.world, self.loss, self.batch_size, self.seed = world, loss, batch_size, int(seed)
        self.pairs, self.replicated = tp_pairs(module, world.size)
        dtype = next(module.parameters()).dtype
        self.flat = FlatModel(module, dtype=dtype)
        self.X, self.T = as_tensors(*pool(shards), dtype, world.device)
        self.batch = len(self.X) if batch_size is None else min(batch_size, len(self.X))
        self.mesh = init_device_mesh(world.device.type, (world.size,))
        plan = {}
        for a, b in self.pairs:
            plan[str(a)], plan[str(b)] = ColwiseParallel(), RowwiseParallel()
        self.model = parallelize_module(copy.deepcopy(module).to(world.device), self.mesh, plan)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        itemsize = self.X.element_size()
        entries = sum(self.batch * module[b].out_features for _, b in self.pairs) + \
            sum(self.batch * module[a].in_features for a, _ in self.pairs[1:])
        self.bytes_per_step = ring_allreduce_bytes(entries, itemsize=itemsize, ranks=world.size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``f(w; x)`` of the sharded model, replicated on every rank (collective)."""
        return _full(self.model(x)).reshape(len(x), -1)

    def backward(self, step: int) -> None:
        self._zero_grads()
        rows = batch_rows(len(self.X), self.batch_size, seed=self.seed, step=step, stream=0)
        x, t = (self.X, self.T) if rows is None else (self.X[rows], self.T[rows])
        weighted_loss(self.loss, self.forward(x), t, weight=1.0 / len(x)).backward()

    def flat_parameters(self) -> torch.Tensor:
        return torch.cat([_full(p.detach()).reshape(-1) for p in self.model.parameters()]).cpu()

    def flat_gradients(self) -> torch.Tensor:
        return torch.cat([_full(p.grad.detach()).reshape(-1)
                          for p in self.model.parameters()]).cpu()

    def info(self) -> dict:
        return {**super().info(), "tp_degree": self.world.size, "batch": self.batch,
                "colwise_rowwise_pairs": [list(p) for p in self.pairs],
                "replicated_layers": self.replicated,
                "data": "pooled shards (every rank sees the same batch)"}
