"""Ring attention against full attention, timed: :func:`bench_ring`.

One forward and backward of :func:`~dcnn.baselines.schemes.ring_attention.ring_attention` over
the world's ``R`` ranks against full attention of the whole sequence on one rank, for several
sequence lengths; the rows report the time (slowest rank), the score memory per rank
(computed) and the ring's bytes (measured by :class:`~dcnn.baselines.runtime.traffic.Traffic`).
"""
from __future__ import annotations

import datetime
import statistics
import time
from collections.abc import Sequence

import torch
import torch.distributed as dist

from ...problems.transformer import attention
from ..runtime import DEFAULT_TIMEOUT, Traffic, World, process_group
from .ring_attention import Ring, attention_memory, check_tokens, ring_attention

__all__ = ["bench_ring"]


def bench_ring(*, lengths: Sequence[int] = (256, 512, 1024, 2048), batch: int = 1,
               heads: int = 4, d_head: int = 32, repeats: int = 3, seed: int = 0,
               dtype: torch.dtype = torch.float32, backend: str = "auto", device: str = "cpu",
               timeout: datetime.timedelta = DEFAULT_TIMEOUT) -> list[dict]:
    """Time one forward + backward of ring attention over the world's ``R`` ranks against full
    attention of the whole sequence on one rank, for each length ``L`` (a multiple of ``R``);
    rows identical on every rank (collective; forms or reuses the process group).

    Per row: ``ring_time_s`` (median over ``repeats`` of the slowest rank), ``full_time_s``
    (median, full attention with autograd on rank 0 while the others wait, so it runs alone),
    ``attention_memory_per_rank`` / ``attention_memory_full`` (bytes of the score blocks held
    at once, computed), ``bytes_per_rank`` (measured ring traffic of one forward + backward)
    and, on CUDA, the measured peak memory of each (``None`` on CPU).
    """
    rows = []
    with process_group(backend=backend, device=device, timeout=timeout) as world:
        R = world.size
        for L in lengths:
            check_tokens(int(L), R)
            rows.append(_bench_one(world, length=int(L), batch=batch, heads=heads,
                                   d_head=d_head, repeats=repeats, seed=seed, dtype=dtype))
    return rows


def _peak(dev: torch.device) -> int | None:
    return int(torch.cuda.max_memory_allocated(dev)) if dev.type == "cuda" else None


def _reset_peak(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        torch.cuda.reset_peak_memory_stats(dev)


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _bench_one(world: World, *, length, batch, heads, d_head, repeats, seed, dtype) -> dict:
    dev, R = world.device, world.size
    n = length // R
    g = torch.Generator().manual_seed(seed)
    q, k, v, do = (torch.randn(batch, heads, length, d_head, generator=g, dtype=dtype)
                   for _ in range(4))
    sl = slice(world.rank * n, (world.rank + 1) * n)
    mine = [t[..., sl, :].contiguous().to(dev) for t in (q, k, v, do)]
    traffic = Traffic(world)
    ring = Ring(traffic)
    ring_times = []
    _reset_peak(dev)
    for _ in range(repeats):
        qi, ki, vi = (t.clone().requires_grad_(True) for t in mine[:3])
        dist.barrier()
        t0 = time.perf_counter()
        ring_attention(qi, ki, vi, ring=ring).backward(mine[3])
        _sync(dev)
        ring_times.append(time.perf_counter() - t0)
    ring_peak = _peak(dev)
    sent = traffic.bytes_sent // max(repeats, 1)
    full_times, full_peak = [], None
    dist.barrier()
    if world.rank == 0:
        full = [t.to(dev) for t in (q, k, v, do)]
        _reset_peak(dev)
        for _ in range(repeats):
            qf, kf, vf = (t.clone().requires_grad_(True) for t in full[:3])
            t0 = time.perf_counter()
            attention(qf, kf, vf).backward(full[3])
            _sync(dev)
            full_times.append(time.perf_counter() - t0)
        full_peak = _peak(dev)
    dist.barrier()
    # the slowest rank's median; rank 0's full-attention time shared with every rank
    stats = torch.tensor([statistics.median(ring_times),
                          statistics.median(full_times) if full_times else 0.0,
                          float(sent), float(ring_peak or 0), float(full_peak or 0)],
                         dtype=torch.float64, device=dev)
    dist.all_reduce(stats, op=dist.ReduceOp.MAX)
    ring_s, full_s, sent, rpeak, fpeak = stats.tolist()
    itemsize = torch.finfo(dtype).bits // 8
    cuda = dev.type == "cuda"
    return {"length": length, "ranks": R, "tokens_per_rank": n, "batch": batch, "heads": heads,
            "d_head": d_head, "dtype": str(dtype).replace("torch.", ""),
            "ring_time_s": ring_s, "full_time_s": full_s,
            "attention_memory_per_rank": attention_memory(batch=batch, heads=heads,
                                                          length=length, ranks=R,
                                                          itemsize=itemsize),
            "attention_memory_full": attention_memory(batch=batch, heads=heads, length=length,
                                                      ranks=1, itemsize=itemsize),
            "bytes_per_rank": int(sent),
            "peak_memory_ring": int(rpeak) if cuda else None,
            "peak_memory_full": int(fpeak) if cuda else None}
