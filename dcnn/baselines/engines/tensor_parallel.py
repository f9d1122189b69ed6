"""Tensor parallel: :func:`torch.distributed.tensor.parallel.parallelize_module` over a 1-D
``DeviceMesh`` of all ``R`` ranks (CPU with gloo, or CUDA), with the plan of
:mod:`~dcnn.baselines.engines.tp_layouts`: the MLP's Linear layers in column-/row-parallel pairs,
the transformer's attention by heads and its MLP block (optionally with sequence parallelism).

Every rank sees the same batch (the pooled shards, or ``min(b, M)`` samples drawn by a
generator seeded by ``(seed, step)``) and back-propagates

    L(w) = (1/|B|) sum_{k in B} loss(t_k, f(w; x_k)),

so each rank's gradient shard is exactly its slice of the data part of ``grad U`` (full batch).
A replicated tensor whose gradient comes out as a partial sum (the LayerNorms under sequence
parallelism, each rank's tokens giving a part) is all-reduced after the backward pass.

Bytes per worker and step (computed): the layout's collectives per step as ring collectives
(an all-reduce of ``n`` entries sends ``2 (R-1)/R n itemsize`` per rank, an all-gather or
reduce-scatter half that).
"""
from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.tensor import DTensor
from torch.distributed.tensor.parallel import parallelize_module

from ..runtime.bootstrap import World
from ..runtime.objective import as_tensors, batch_rows, pool, weighted_loss
from .engine import Engine
from .tp_layouts import full_tensor, tp_layout

__all__ = ["TensorParallelEngine"]


class TensorParallelEngine(Engine):
    """The model sharded over all ranks by ``parallelize_module`` (see the module docstring)."""

    method = "tensor-parallel"

    def __init__(self, *, world: World, module: nn.Module, shards: Sequence[tuple], loss: str,
                 batch_size: int | None = None, seed: int = 0,
                 sequence_parallel: bool = False):
        self.world, self.loss, self.batch_size, self.seed = world, loss, batch_size, int(seed)
        self.layout = tp_layout(module, world.size, sequence_parallel=sequence_parallel)
        dtype = next(module.parameters()).dtype
        self.X, self.T = as_tensors(*pool(shards), dtype, world.device)
        self.batch = len(self.X) if batch_size is None else min(batch_size, len(self.X))
        self.mesh = init_device_mesh(world.device.type, (world.size,))
        self.model = parallelize_module(copy.deepcopy(module).to(world.device), self.mesh,
                                        self.layout.plan)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.bytes_per_step = self.layout.bytes_per_step(
            self.batch, itemsize=self.X.element_size(), ranks=world.size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``f(w; x)`` of the sharded model, replicated on every rank (collective)."""
        return self.layout.forward(self.model, x, self.mesh)

    def backward(self, step: int) -> None:
        self._zero_grads()
        rows = batch_rows(len(self.X), self.batch_size, seed=self.seed, step=step, stream=0)
        x, t = (self.X, self.T) if rows is None else (self.X[rows], self.T[rows])
        weighted_loss(self.loss, self.forward(x), t, weight=1.0 / len(x)).backward()
        for p in self.params:      # a partial sum (sequence-parallel LayerNorms) -> all-reduce
            if isinstance(p, DTensor) and p.grad is not None and \
                    p.grad.placements != p.placements:
                p.grad = p.grad.redistribute(p.device_mesh, p.placements)

    def flat_parameters(self) -> torch.Tensor:
        return torch.cat([full_tensor(p.detach()).reshape(-1)
                          for p in self.model.parameters()]).cpu()

    def flat_gradients(self) -> torch.Tensor:
        return torch.cat([full_tensor(p.grad.detach()).reshape(-1)
                          for p in self.model.parameters()]).cpu()

    def info(self) -> dict:
        return {**super().info(), "tp_degree": self.world.size, "batch": self.batch,
                **self.layout.info,
                "data": "pooled shards (every rank sees the same batch)"}
