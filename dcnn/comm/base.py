"""The Network: how a group of agents exchanges rows with the rest of the graph.

A process hosts a contiguous block of agents (its *group*). Agent state is stacked: row ``a``
of a group array is agent ``agents[a]``. The one operation algorithms need is
:meth:`Network.mix`: given the group's rows of ``X`` and the weight matrix ``W`` (row ``i`` =
what agent ``i`` receives), return ``W[group, :] @ X_all``. Metrics need reductions over
processes. Both backends (:class:`~dcnn.comm.local.LocalNetwork`, all agents in one process,
and :class:`~dcnn.comm.mpi.MPINetwork`, agents over MPI ranks) implement this interface, so an
algorithm never knows where it runs.

Counters: ``bytes_sent`` / ``messages_sent`` are *logical*, per agent: agent ``j`` sends its
row to every ``i != j`` with ``W[i, j] != 0``, whichever process hosts ``i``; they are the same
on every backend and are what reports show. ``wire_bytes`` counts what this process really put
on the wire (0 in one process). For a modelled link (:mod:`dcnn.link`), ``exchanges`` counts
the neighbour exchanges (``mix`` calls: one latency each) and ``busiest_bytes`` what the
busiest agent of the whole network sends or receives in them (the most neighbours times the
row's bytes, summed over the exchanges): both from the global ``W``, the same on every rank.

Timeouts: on several processes every wait is bounded (``run.comm_timeout``, see
:mod:`dcnn.comm.faults`) and ends in :class:`~dcnn.errors.CommTimeoutError`. The collectives
take ``timeout=`` for one call whose bound should differ from the network's; ``None`` means
the network's own. Long work on one process that the others wait for (rank 0 solving the
centralized reference, writing or reading a checkpoint) goes through :meth:`Network.on_root`:
the working rank announces itself with a heartbeat, so the others wait as long as it works and
no longer than the bound after it stops (a stopped or dead process). One process never waits
and ignores timeouts.
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod

import numpy as np
import torch

from ..errors import CommError

__all__ = ["Network", "agent_blocks", "busiest_degree"]


def busiest_degree(W: np.ndarray) -> int:
    """The most neighbours any agent sends to or receives from under ``W`` (row ``i`` = what
    agent ``i`` receives): in a synchronous round that agent's link is the last to finish."""
    nz = np.asarray(W) != 0
    off = nz.diagonal()
    return int(max((nz.sum(axis=0) - off).max(initial=0), (nz.sum(axis=1) - off).max(initial=0)))


def agent_blocks(n_agents: int, size: int) -> list[tuple[int, int]]:
    """Balanced contiguous ``[lo, hi)`` agent blocks for ``size`` processes."""
    if n_agents < 1:
        raise CommError(f"run.agents must be >= 1, got {n_agents}")
    if size > n_agents:
        raise CommError(f"{size} ranks but only {n_agents} agents; run with at most "
                        f"{n_agents} ranks (mpiexec -n {n_agents}) or raise run.agents")
    q, r = divmod(n_agents, size)
    bounds = np.cumsum([0] + [q + (1 if k < r else 0) for k in range(size)])
    return [(int(bounds[k]), int(bounds[k + 1])) for k in range(size)]


class _Ready:
    """A reduction that is already done (:meth:`Network.iallreduce` in one process)."""

    def __init__(self, value: torch.Tensor):
        self._value = value

    def wait(self) -> torch.Tensor:
        return self._value


class Network(ABC):
    """Communication of one process's group of agents (see the module docstring)."""

    rank: int
    size: int

    def __init__(self, n_agents: int, blocks: list[tuple[int, int]], rank: int):
        self.n_agents = int(n_agents)
        self.blocks = blocks
        self.rank = rank
        self.size = len(blocks)
        lo, hi = blocks[rank]
        self.agents = range(lo, hi)
        self.bytes_sent = 0
        self.messages_sent = 0
        self.wire_bytes = 0
        self.exchanges = 0
        self.busiest_bytes = 0
        self._counts: dict = {}     # sparsity pattern -> (messages, busiest degree)

    def reset_counters(self) -> None:
        """Zero the bytes and messages counted so far (a new run on the same network)."""
        self.bytes_sent = self.messages_sent = self.wire_bytes = 0
        self.exchanges = self.busiest_bytes = 0

    @property
    def n_local(self) -> int:
        return len(self.agents)

    def _count(self, W: np.ndarray, X: torch.Tensor) -> None:
        nz = W != 0
        key = nz.tobytes()
        counts = self._counts.get(key)
        if counts is None:                   # per sparsity pattern, as the MPI plan
            lo, hi = self.blocks[self.rank]
            out_deg = np.count_nonzero(nz[:, lo:hi], axis=0) - nz.diagonal()[lo:hi]
            if len(self._counts) >= 64:
                self._counts.pop(next(iter(self._counts)))
            counts = self._counts[key] = (int(out_deg.sum()), busiest_degree(W))
        messages, busiest = counts
        self._tally(messages, busiest, math.prod(X.shape[1:]) * X.element_size())

    def _tally(self, messages: int, degree: int, row_bytes: int) -> None:
        """One exchange of ``messages`` logical rows of ``row_bytes`` each, in which the
        busiest agent has ``degree`` neighbours."""
        self.messages_sent += messages
        self.bytes_sent += messages * row_bytes
        self.exchanges += 1
        self.busiest_bytes += degree * row_bytes

    def check_weights(self, W: np.ndarray) -> np.ndarray:
        W = np.asarray(W, dtype=np.float64)
        if W.shape != (self.n_agents, self.n_agents):
            raise CommError(f"weight matrix has shape {W.shape}, expected "
                            f"({self.n_agents}, {self.n_agents}) for {self.n_agents} agents")
        return W

    @abstractmethod
    def mix(self, X: torch.Tensor, W: np.ndarray) -> torch.Tensor:
        """``W[group, :] @ X_all`` for the group's rows ``X`` of shape ``(A, ...)``."""

    @abstractmethod
    def allreduce(self, x: torch.Tensor, op: str = "sum", *,
                  timeout: float | None = None) -> torch.Tensor:
        """Elementwise ``sum``/``min``/``max`` of ``x`` over processes."""

    def iallreduce(self, x: torch.Tensor, op: str = "sum"):
        """:meth:`allreduce` started now, finished by ``.wait()`` on what it returns (which
        gives the result; in one process it is ready at once). For a reduction whose result
        is needed only later (the divergence guard's verdict, read one step later): the
        processes do not wait for each other here."""
        return _Ready(self.allreduce(x, op))

    @abstractmethod
    def allgather_rows(self, X: torch.Tensor, *, timeout: float | None = None) -> torch.Tensor:
        """All agents' rows ``(N, ...)`` on every process (monitoring and checkpoints only)."""

    @abstractmethod
    def broadcast(self, obj, root: int = 0, *, timeout: float | None = None):
        """A small Python object from ``root`` to every process (never on the hot path)."""

    def barrier(self, *, timeout: float | None = None) -> None:
        """Wait for every process (no-op in one process)."""

    def on_root(self, work, *, what: str, root: int = 0):
        """``work()`` run on process ``root`` only, its result on every process (collective).

        For work of any length on one process that the others must wait for: ``what`` names
        it in messages ("solving the centralized reference"); ``work`` must not communicate.
        Here: ``work()`` on ``root`` and a broadcast of its result (in one process, just
        ``work()``); the MPI backend bounds the others' wait with heartbeats."""
        return self.broadcast(work() if self.rank == root else None, root=root)

    def agent_sum(self, x: torch.Tensor) -> torch.Tensor:
        """Sum over all agents of per-agent rows ``x`` of shape ``(A, ...)``."""
        if not isinstance(x, torch.Tensor) or x.dim() == 0 or x.shape[0] != self.n_local:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise CommError(f"agent rows must be a tensor with one row per agent of this "
                            f"process ({self.n_local}), got {shape}; give e.g. state.X")
        return self.allreduce(x.sum(0))

    def agent_mean(self, x: torch.Tensor) -> torch.Tensor:
        """The network's average of per-agent rows ``x (A, ...)``: this process's rows and
        every other process's (collective; e.g. the average model ``agent_mean(state.X)``)."""
        return self.agent_sum(x) / self.n_agents
