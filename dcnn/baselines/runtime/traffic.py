"""``torch.distributed`` operations that count the bytes this rank sends.

The schemes of :data:`dcnn.baselines.SCHEMES` do all their training-time tensor traffic
through one :class:`Traffic` object, so ``bytes_sent`` is measured per rank, not computed
from a formula. Point-to-point operations count the tensor's bytes at the sender; collectives
count what a ring implementation sends per rank (all-reduce ``2 (R-1)/R n``, all-gather
``(R-1) n``, broadcast ``n`` at the root), ``n`` the tensor's bytes. Evaluations (the
History) do not go through it: they are measurement, not training.
"""
from __future__ import annotations

import torch
import torch.distributed as dist

from .bootstrap import World

__all__ = ["Traffic"]


def _nbytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


class Traffic:
    """Counting wrappers around ``torch.distributed``; ``bytes_sent`` grows as this rank
    sends, ``messages`` counts point-to-point sends and collective calls."""

    def __init__(self, world: World):
        self.world = world
        self.bytes_sent = 0
        self.messages = 0

    def _count(self, n: float) -> None:
        self.bytes_sent += int(round(n))
        self.messages += 1

    def isend(self, t: torch.Tensor, dst: int) -> dist.Work:
        self._count(_nbytes(t))
        return dist.isend(t.contiguous(), dst)

    def irecv(self, t: torch.Tensor, src: int) -> dist.Work:
        return dist.irecv(t, src)

    def send(self, t: torch.Tensor, dst: int) -> None:
        self._count(_nbytes(t))
        dist.send(t.contiguous(), dst)

    def recv(self, t: torch.Tensor, src: int) -> None:
        dist.recv(t, src)

    def all_reduce(self, t: torch.Tensor, op=dist.ReduceOp.SUM, group=None) -> None:
        r = dist.get_world_size(group)
        if r > 1:
            self._count(2 * (r - 1) / r * _nbytes(t))
            dist.all_reduce(t, op=op, group=group)

    def all_gather(self, out: list[torch.Tensor], t: torch.Tensor, group=None) -> None:
        r = dist.get_world_size(group)
        if r > 1:
            self._count((r - 1) * _nbytes(t))
        dist.all_gather(out, t.contiguous(), group=group)

    def broadcast(self, t: torch.Tensor, src: int, group=None) -> None:
        if dist.get_world_size(group) > 1:
            if dist.get_rank() == src:
                self._count(_nbytes(t))
            dist.broadcast(t, src, group=group)
