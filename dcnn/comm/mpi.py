"""Agents spread over MPI ranks in contiguous blocks.

``mix`` sends each neighbouring rank exactly the rows its agents need (the rows ``j`` of this
rank with ``W[i, j] != 0`` for some agent ``i`` of that rank) and receives the rows this rank's
agents need, with buffer-based non-blocking ``Isend``/``Irecv`` on contiguous arrays (no
pickling). Every rank computes the same ``W`` (topologies are pure functions of ``(seed, t)``),
so both ends derive the same send/receive lists without any coordination message. Several
quantities of one iteration travel in one message when the caller stacks them, e.g. ``X`` of
shape ``(A, 2, P)`` for NEXT's ``z`` and ``y``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .base import Network, agent_blocks

__all__ = ["MPINetwork"]

_TAG = 17


@dataclass(frozen=True)
class _Plan:
    remote: torch.Tensor                 # global ids of the remote rows received, sorted
    recvs: list                          # (source rank, first, end) slices of the receive buffer
    sends: list                          # (destination rank, own rows: slice or index array)
    messages: int                        # logical per-agent messages sent by this group
_OPS = ("sum", "min", "max")


class MPINetwork(Network):
    """The MPI backend over ``comm`` (default ``MPI.COMM_WORLD``)."""

    def __init__(self, n_agents: int, comm=None):
        from mpi4py import MPI

        self._MPI = MPI
        self.comm = MPI.COMM_WORLD if comm is None else comm
        super().__init__(n_agents, agent_blocks(n_agents, self.comm.Get_size()),
                         self.comm.Get_rank())
        self._owner = np.repeat(np.arange(self.size), [hi - lo for lo, hi in self.blocks])
        self._recv_cache: dict = {}
        self._plans: dict = {}

    def _recv_buffer(self, n: int, k: int, dtype: torch.dtype) -> torch.Tensor:
        key = (n, k, dtype)
        buf = self._recv_cache.get(key)
        if buf is None:
            self._recv_cache.clear()
            buf = self._recv_cache[key] = torch.empty(n, k, dtype=dtype)
        return buf

    def _plan(self, W: np.ndarray) -> _Plan:
        """Who sends which rows to whom under ``W``'s sparsity pattern (cached per pattern,
        so a static or periodically switching graph plans once)."""
        nz = W != 0
        key = nz.tobytes()
        plan = self._plans.get(key)
        if plan is not None:
            return plan
        lo, hi = self.blocks[self.rank]
        # remote rows my agents receive, sorted (hence grouped by owner rank)
        need = np.flatnonzero(nz[lo:hi].any(axis=0))
        remote = need[(need < lo) | (need >= hi)]
        owners = self._owner[remote]
        recvs = []
        for s in np.unique(owners):
            a, b = np.searchsorted(owners, [s, s + 1])
            recvs.append((int(s), int(a), int(b)))
        sends = []
        for s in range(self.size):
            if s == self.rank:
                continue
            slo, shi = self.blocks[s]
            rows = np.flatnonzero(nz[slo:shi, lo:hi].any(axis=0))
            if len(rows) == 0:
                continue
            contiguous = rows[-1] - rows[0] + 1 == len(rows)
            sends.append((s, slice(int(rows[0]), int(rows[-1]) + 1) if contiguous else rows))
        out_deg = nz[:, lo:hi].sum(axis=0) - nz.diagonal()[lo:hi]
        plan = _Plan(remote=torch.from_numpy(remote), recvs=recvs, sends=sends,
                     messages=int(out_deg.sum()))
        if len(self._plans) >= 64:
            self._plans.pop(next(iter(self._plans)))
        self._plans[key] = plan
        return plan

    def mix(self, X: torch.Tensor, W: np.ndarray) -> torch.Tensor:
        W = self.check_weights(W)
        plan = self._plan(W)
        row_bytes = X[0].numel() * X.element_size() if X.shape[0] else 0
        self.messages_sent += plan.messages
        self.bytes_sent += plan.messages * row_bytes
        lo, hi = self.blocks[self.rank]
        flat = X.reshape(X.shape[0], -1).contiguous()
        recv = self._recv_buffer(len(plan.remote), flat.shape[1], flat.dtype)
        recv_np, flat_np = recv.numpy(), flat.numpy()
        reqs = [self.comm.Irecv(recv_np[a:b], source=s, tag=_TAG) for s, a, b in plan.recvs]
        keep = []
        for s, rows in plan.sends:
            buf = flat_np[rows] if isinstance(rows, slice) else np.ascontiguousarray(
                flat_np[rows])
            keep.append(buf)
            reqs.append(self.comm.Isend(buf, dest=s, tag=_TAG))
            self.wire_bytes += buf.nbytes
        Wr = torch.from_numpy(W[lo:hi]).to(flat.dtype)
        # own rows combine while the messages travel; remote rows accumulate in place
        out = Wr[:, lo:hi] @ flat
        self._MPI.Request.Waitall(reqs)
        if len(plan.remote):
            out.addmm_(Wr[:, plan.remote], recv)
        return out.reshape(X.shape)

    def allreduce(self, x: torch.Tensor, op: str = "sum") -> torch.Tensor:
        if op not in _OPS:
            raise ValueError(f"allreduce op {op!r} is unknown; choose one of {_OPS}")
        mpi_op = {"sum": self._MPI.SUM, "min": self._MPI.MIN, "max": self._MPI.MAX}[op]
        src = np.ascontiguousarray(torch.as_tensor(x).detach().numpy())
        dst = np.empty_like(src)
        self.comm.Allreduce(src, dst, op=mpi_op)
        return torch.from_numpy(dst)

    def allgather_rows(self, X: torch.Tensor) -> torch.Tensor:
        flat = np.ascontiguousarray(X.detach().reshape(X.shape[0], -1).numpy())
        k = flat.shape[1]
        out = np.empty((self.n_agents, k), dtype=flat.dtype)
        counts = [(hi - lo) * k for lo, hi in self.blocks]
        displs = [lo * k for lo, _ in self.blocks]
        self.comm.Allgatherv(flat, [out, counts, displs, self._MPI._typedict[flat.dtype.char]])
        return torch.from_numpy(out).reshape(self.n_agents, *X.shape[1:])

    def broadcast(self, obj, root: int = 0):
        return self.comm.bcast(obj, root=root)

    def barrier(self) -> None:
        self.comm.Barrier()
