"""Data parallel: :class:`torch.nn.parallel.DistributedDataParallel` over the agents' shards.

The caller gives all ``N`` agents' shards; the ``R`` ranks take contiguous blocks of agents
exactly as the decentralized methods place them (:func:`dcnn.comm.agent_blocks`), and rank
``r`` trains on the union ``S_r`` of its agents' shards (``M_r`` samples). DDP averages the
ranks' gradients (``(1/R) sum_r``), so rank ``r`` back-propagates

    L_r(w) = R (1/M) sum_{k in S_r} loss(t_k, f(w; x_k))                 (full batch)
    L_r(w) = R (M_r / |B_r|) (1/M) sum_{k in B_r} loss(t_k, f(w; x_k))   (mini-batch B_r)

and the averaged gradient is ``(1/R) sum_r grad L_r = grad (1/M) sum_k loss_k`` exactly (full
batch) or an unbiased estimate of it (``B_r``: ``min(b, M_r)`` distinct rows of ``S_r`` drawn
by a generator seeded by ``(seed, step, rank)``). The regulariser is added after the
all-reduce (:func:`dcnn.baselines.runtime.update.apply_update`), identically on every replica.

Bytes per worker and step (computed): one ring all-reduce of the ``P`` gradient entries,
``2 (R-1)/R * P * itemsize`` (DDP's buckets change the message count, not the volume).
"""
from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch.nn.parallel import DistributedDataParallel

from ...comm import agent_blocks
from ...errors import LaunchError
from ..runtime.bootstrap import World
from ..runtime.costs import ring_allreduce_bytes
from .engine import Engine
from ..runtime.objective import as_tensors, batch_rows, pool, weighted_loss

__all__ = ["DDPEngine", "rank_agents"]


def rank_agents(n_agents: int, ranks: int) -> list[list[int]]:
    """The agents each rank trains on: :func:`dcnn.comm.agent_blocks` as lists."""
    if ranks > n_agents:
        raise LaunchError(f"ddp: {ranks} ranks but only {n_agents} shards; run with at most "
                           f"{n_agents} ranks (mpiexec -n {n_agents}) or give more shards")
    return [list(range(lo, hi)) for lo, hi in agent_blocks(n_agents, ranks)]


class DDPEngine(Engine):
    """One DDP replica of ``module`` on this rank, trained on its agents' shards."""

    method = "ddp"

    def __init__(self, *, world: World, module: torch.nn.Module,
                 shards: Sequence[tuple], loss: str, batch_size: int | None = None,
                 seed: int = 0):
        self.world = world
        self.mapping = rank_agents(len(shards), world.size)
        self.samples_per_rank = [sum(len(shards[a][0]) for a in agents)
                                 for agents in self.mapping]
        self.loss, self.batch_size, self.seed = loss, batch_size, int(seed)
        self.n_total = sum(len(x) for x, _ in shards)
        dtype = self.dtype = next(module.parameters()).dtype
        replica = copy.deepcopy(module).to(world.device)
        self.X, self.T = as_tensors(*pool([shards[a] for a in self.mapping[world.rank]]),
                                    dtype, world.device)
        # device_ids stay None on CPU; DDP broadcasts rank 0's parameters here
        self.ddp = DistributedDataParallel(
            replica, device_ids=[world.device.index] if world.device.type == "cuda" else None)
        self.params = [p for p in self.ddp.parameters() if p.requires_grad]
        self.bytes_per_step = ring_allreduce_bytes(
            sum(p.numel() for p in self.params), itemsize=self.params[0].element_size(),
            ranks=world.size)

    def backward(self, step: int) -> None:
        self._zero_grads()
        m_r = len(self.X)
        rows = batch_rows(m_r, self.batch_size, seed=self.seed, step=step, stream=self.world.rank)
        x, t = (self.X, self.T) if rows is None else (self.X[rows], self.T[rows])
        # R (M_r/|B_r|) / M: DDP's average over R ranks then gives the (unbiased) grad of U
        weight = self.world.size * (m_r / len(x)) / self.n_total
        weighted_loss(self.loss, self.ddp(x).reshape(len(x), -1), t, weight=weight).backward()

    def flat_parameters(self) -> torch.Tensor:
        return torch.cat([p.detach().reshape(-1).to(self.dtype)
                          for p in self.ddp.module.parameters()]).cpu()

    def flat_gradients(self) -> torch.Tensor:
        return torch.cat([p.grad.detach().reshape(-1).to(self.dtype)
                          for p in self.ddp.module.parameters()]).cpu()

    def info(self) -> dict:
        return {**super().info(), "batch_size_per_rank": self.batch_size,
                "agents_per_rank": self.mapping, "samples_per_rank": self.samples_per_rank}
