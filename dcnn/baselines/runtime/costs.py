"""What the engine schemes cost, computed from the scheme (never measured on the wire).

- Ring all-reduce of ``n`` elements over ``R`` ranks: every rank sends ``2 (R-1)/R n``
  elements (``R-1`` reduce-scatter chunks of ``n/R``, then ``R-1`` all-gather chunks).
- Ring all-gather (or reduce-scatter) of ``n`` elements in all: every rank sends ``(R-1)/R n``.
- Pipeline bubble: with ``p`` stages and ``m`` micro-batches, GPipe and 1F1B idle a fraction
  ``(p-1)/(m+p-1)`` of a step; interleaved 1F1B with ``v`` virtual stages per rank and ``p``
  ranks, ``(p-1)/(v m + p-1)`` (Narayanan et al., SC 2021, arXiv 2104.04473, section 2.2).
"""
from __future__ import annotations

__all__ = ["ring_allreduce_bytes", "ring_gather_bytes", "bubble_fraction"]


def ring_allreduce_bytes(n_elements: int, *, itemsize: int, ranks: int) -> float:
    """Bytes each rank sends in one ring all-reduce: ``2 (R-1)/R * n * itemsize``."""
    if ranks < 1:
        raise ValueError(f"ranks must be >= 1, got {ranks}")
    return 2.0 * (ranks - 1) / ranks * n_elements * itemsize


def ring_gather_bytes(n_elements: int, *, itemsize: int, ranks: int) -> float:
    """Bytes each rank sends in one ring all-gather or reduce-scatter of ``n`` elements in
    all: ``(R-1)/R * n * itemsize`` (half an all-reduce)."""
    return ring_allreduce_bytes(n_elements, itemsize=itemsize, ranks=ranks) / 2


def bubble_fraction(*, ranks: int, microbatches: int, virtual_stages: int = 1) -> float:
    """Idle share of a pipeline step: ``(p-1)/(v m + p-1)`` with ``p`` ranks (pipeline
    depth), ``m`` micro-batches and ``v`` stages per rank (``v = 1``: GPipe, 1F1B).

    >>> bubble_fraction(ranks=4, microbatches=8)
    0.2727272727272727
    >>> bubble_fraction(ranks=4, microbatches=8, virtual_stages=2)
    0.15789473684210525
    """
    if ranks < 1 or microbatches < 1 or virtual_stages < 1:
        raise ValueError(f"ranks, microbatches and virtual_stages must be >= 1, got "
                         f"{ranks}, {microbatches}, {virtual_stages}")
    p, m, v = ranks, microbatches, virtual_stages
    return (p - 1) / (v * m + p - 1)
