"""Mini-batches of the local shards, for stochastic NEXT and SONATA (an extension of the papers).

With a batch size ``b``, agent ``i`` draws at iteration ``n`` a batch ``B_i[n]`` of
``min(b, M_i)`` distinct rows of its own shard (uniformly, without replacement) and uses the
unbiased estimate of its local cost

    g_i^n(w) = (M_i / |B_i[n]|) (1/M) sum_{k in B_i[n]} loss(t_k, f(w; x_k)),
    E[g_i^n(w)] = g_i(w).

The draw is a pure function of ``(seed, n, global agent id)``: it never depends on the rank,
on the group an agent sits in or on its position there, so every backend and every layout of
agents over processes sees the same batches. ``b = None`` or ``0`` means the full shard.

:class:`BatchProblems` holds the group's batch costs of one iteration as
:meth:`LocalProblems.batch` views; a view has one scalar ``scale``, so agents are grouped by
their weight ``M_i / |B_i|`` (a fixed partition of the group, since ``|B_i|`` does not change
with ``n``: with an iid partition two groups at most) and each group is solved as one stack.
"""
from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction

import numpy as np
import torch

from ..errors import ConfigError
from .local import LocalProblems

__all__ = ["check_batch_size", "batch_sizes", "sample_batches", "BatchProblems",
           "batch_problems"]


def check_batch_size(batch_size) -> int | None:
    """``None`` for the full shard (``None`` or ``0``), else the positive integer ``b``."""
    if batch_size is None:
        return None
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
            or batch_size < 0:
        raise ConfigError(f"algorithm.batch_size must be a positive integer, or 0 / None for "
                          f"the full shard, got {batch_size!r}")
    return int(batch_size) or None


def batch_sizes(counts: torch.Tensor, batch_size: int) -> torch.Tensor:
    """``|B_i| = min(b, M_i)`` for shard sizes ``counts`` ``(A,)``."""
    return torch.clamp(torch.as_tensor(counts, dtype=torch.long), max=int(batch_size))


def sample_batches(counts: torch.Tensor, batch_size: int, *, seed: int, t: int,
                   agent_ids: Sequence[int]) -> torch.Tensor:
    """The batches of iteration ``t``: ``(A, b_max)`` local row indices, ``b_max = max_i
    min(b, M_i)``.

    Row ``a`` holds ``min(b, M_a)`` distinct indices in ``0..M_a - 1``, sorted (a full batch is
    ``0..M_a - 1`` in order), drawn by a generator seeded by ``(seed, t, agent_ids[a])``;
    the entries past ``min(b, M_a)`` are padding (``0``).
    """
    counts = torch.as_tensor(counts, dtype=torch.long).reshape(-1)
    if len(agent_ids) != len(counts):
        raise ValueError(f"{len(agent_ids)} agent ids for {len(counts)} shards")
    sizes = batch_sizes(counts, batch_size)
    rows = torch.zeros(len(counts), int(sizes.max()), dtype=torch.long)
    for a, (m, k, i) in enumerate(zip(counts.tolist(), sizes.tolist(), agent_ids)):
        if k == m:
            pick = np.arange(m)
        else:
            rng = np.random.default_rng([int(seed), int(t), int(i)])
            pick = np.sort(rng.choice(m, size=k, replace=False, shuffle=False))
        rows[a, :k] = torch.from_numpy(pick)
    return rows


class BatchProblems:
    """The group's costs at one iteration: the full shards, or views on mini-batches.

    ``parts`` lists ``(positions, problem)``: the group positions a view covers (``None`` =
    the whole group) and the view. :meth:`gradients` and :meth:`solve` act on the stacked
    ``(A, P)`` arrays of the whole group and scatter the parts back.
    """

    def __init__(self, parts: list[tuple[torch.Tensor | None, LocalProblems]]):
        self.parts = parts

    def _each(self, fn, *arrays: torch.Tensor) -> torch.Tensor:
        if len(self.parts) == 1 and self.parts[0][0] is None:
            return fn(self.parts[0][1], *arrays)
        out = torch.empty_like(arrays[0])
        for pos, prob in self.parts:
            out[pos] = fn(prob, *(x[pos] for x in arrays))
        return out

    def gradients(self, W: torch.Tensor) -> torch.Tensor:
        """``grad g_i^n(w_i)``, shape ``(A, P)``."""
        return self._each(lambda p, w: p.gradients(w), W)

    def solve(self, surrogate, V: torch.Tensor, G: torch.Tensor, Pi: torch.Tensor, *,
              alpha: float = 1.0) -> torch.Tensor:
        """``surrogate.solve`` on the batch costs (``G`` must be their gradients at ``V``)."""
        return self._each(lambda p, v, g, pi: surrogate.solve(p, v, g, pi, alpha=alpha),
                          V, G, Pi)


def batch_problems(problem: LocalProblems, t: int, *, batch_size: int | None,
                   seed: int) -> BatchProblems:
    """The costs of iteration ``t``: ``problem`` itself if ``batch_size`` is ``None``/``0``,
    else its views on the batches :func:`sample_batches` draws for ``(seed, t)``."""
    b = check_batch_size(batch_size)
    if b is None:
        return BatchProblems([(None, problem)])
    rows = sample_batches(problem.counts, b, seed=seed, t=t, agent_ids=problem.agent_ids)
    sizes = batch_sizes(problem.counts, b)
    groups: dict[Fraction, list[int]] = {}
    for a, (m, k) in enumerate(zip(problem.counts.tolist(), sizes.tolist())):
        groups.setdefault(Fraction(m, k), []).append(a)
    if len(groups) == 1:
        return BatchProblems([(None, problem.batch(rows, sizes))])
    parts = []
    for members in groups.values():
        pos = torch.tensor(members)
        parts.append((pos, problem.batch(rows[pos], sizes[pos], agents=pos)))
    return BatchProblems(parts)
