"""Agents spread over MPI ranks in contiguous blocks.

``mix`` sends each neighbouring rank exactly the rows its agents need (the rows ``j`` of this
rank with ``W[i, j] != 0`` for some agent ``i`` of that rank) and receives the rows this rank's
agents need, with buffer-based non-blocking ``Isend``/``Irecv`` on contiguous arrays (no
pickling). Every rank computes the same ``W`` (topologies are pure functions of ``(seed, t)``),
so both ends derive the same send/receive lists without any coordination message. Several
quantities of one iteration travel in one message when the caller stacks them, e.g. ``X`` of
shape ``(A, 2, P)`` for NEXT's ``z`` and ``y``.

No hangs (see :mod:`dcnn.comm.faults`): every wait of this backend (``mix``, ``allreduce``,
``allgather_rows``, ``broadcast``, ``barrier``) is non-blocking MPI polled until ``timeout``
seconds (``run.comm_timeout``) and then ends in :class:`~dcnn.errors.CommTimeoutError`
naming this rank, the operation and the rank(s) it waited for. Work on one rank that the
others wait for (:meth:`MPINetwork.on_root`) is announced by a heartbeat: a background thread
of the working rank sends a one-byte message to every other rank every ``min(1 s, timeout /
4)``; the others wait as long as heartbeats arrive and end ``timeout`` seconds after the last
one (a stopped, dead or swapped-out process), naming it. Creating the network with
more than one rank checks that every rank was given the same number of agents and installs a
``sys.excepthook`` that turns an uncaught exception on any rank into ``MPI_Abort`` of the
whole job, so a library user's script ends within seconds too (``abort_on_error=False``
leaves ``sys.excepthook`` alone). After a timeout the network withdraws its pending
receives and refuses further calls: the job is expected to end.
"""
from __future__ import annotations

import pickle
import threading
from collections import Counter
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import CommError, CommTimeoutError
from .base import Network, agent_blocks, busiest_degree
from .faults import (agent_count_mismatch, agents_label, check_timeout, install_abort_hook,
                     ranks_label, wait_until)

__all__ = ["MPINetwork"]

_TAG = 17
_BEAT_TAG = 18           # heartbeats of on_root: _WORKING ..., then _DONE or _FAILED
# (on the network's own communicator: a duplicate per network would run out of MPI's
# communicator ids, about 2000 per process, in a study that builds a network per run; the
# receiver takes every heartbeat up to the final status, so none is left behind)
_WORKING, _DONE, _FAILED = 0, 1, 2
_WEIGHT_KEY_BYTES = 1 << 16   # a W up to this size is cached by its bytes
START_TIMEOUT = 300.0   # seconds the start-up agent-count check waits for every rank


@dataclass(frozen=True)
class _Plan:
    remote: np.ndarray                   # global ids of the remote rows received, sorted
    recvs: list                          # (source rank, first, end) slices of the receive buffer
    sends: list                          # (destination rank, own rows: slice or index array)
    messages: int                        # logical per-agent messages sent by this group
    busiest: int                         # the most neighbours of any agent (busiest_degree)
    peers: list                          # the rank each request waits on: receives, then sends
    wire_rows: int                       # rows this rank puts on the wire per mix


@dataclass(frozen=True)
class _Route:
    plan: _Plan
    mine: torch.Tensor                   # W[group, group] in the dtype of X
    remote: torch.Tensor                 # W[group, plan.remote]


_OPS = ("sum", "min", "max")


class _Pending:
    """A started all-reduce (:meth:`MPINetwork.iallreduce`): ``wait()`` gives its result,
    within the network's deadline like every other wait."""

    def __init__(self, network: "MPINetwork", request, src: np.ndarray, dst: np.ndarray,
                 call: int):
        self._network, self._request, self._buffers = network, request, (src, dst)
        self._call, self._value = call, None

    def wait(self) -> torch.Tensor:
        if self._value is None:
            self._network._wait([self._request], f"allreduce at call {self._call}",
                                keep=self._buffers)
            self._value = torch.from_numpy(self._buffers[1])
        return self._value


def _seconds(t: float) -> str:
    return f"{t:.1f}" if t >= 1 else f"{t:.2g}"


def _pickled(obj) -> np.ndarray:
    return np.frombuffer(bytearray(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)),
                         dtype=np.uint8)


class MPINetwork(Network):
    """The MPI backend over ``comm`` (default ``MPI.COMM_WORLD``); collective to create.

    ``timeout`` (seconds, default 60, ``math.inf`` for none) bounds every wait; a wait that
    runs out raises :class:`~dcnn.errors.CommTimeoutError`. ``abort_on_error`` (with more
    than one rank) installs the hook that ends the whole job when any rank raises an
    uncaught exception (:func:`dcnn.comm.faults.install_abort_hook`). Every rank must pass
    the same ``n_agents``; a mismatch is a :class:`~dcnn.errors.CommError` on every rank.
    """

    def __init__(self, n_agents: int, comm=None, *, timeout: float = 60.0,
                 abort_on_error: bool = True):
        from mpi4py import MPI

        self._MPI = MPI
        self.comm = MPI.COMM_WORLD if comm is None else comm
        self.timeout = check_timeout(timeout)
        self._calls: Counter = Counter()
        self._failed: str | None = None
        self._abandoned: list = []
        size, rank = self.comm.Get_size(), self.comm.Get_rank()
        self.rank, self.size = rank, size
        if size > 1 and abort_on_error:
            install_abort_hook(rank=rank, size=size, grace=min(2.0, self.timeout / 2))
        counts = np.empty(size, dtype=np.int64)
        mine = np.array([int(n_agents)], dtype=np.int64)
        # ranks reach this point seconds apart (imports, a loaded machine, the user's own
        # preparation): the start-up check waits at least START_TIMEOUT
        self._wait([self.comm.Iallgather(mine, counts)], "the agent-count check at start",
                   keep=(mine, counts), timeout=max(self.timeout, START_TIMEOUT))
        mismatch = agent_count_mismatch(counts.tolist())
        if mismatch:
            raise CommError(mismatch)
        super().__init__(n_agents, agent_blocks(n_agents, size), rank)
        self._owner = np.repeat(np.arange(self.size), [hi - lo for lo, hi in self.blocks])
        self._recv_cache: dict = {}
        self._plans: dict = {}
        self._routes: dict = {}
        self._ops = {op: getattr(MPI, op.upper()) for op in _OPS}

    def _enter(self, op: str) -> int:
        """Count a call of ``op``; refuse it after an earlier timeout."""
        if self._failed is not None:
            raise CommError(f"this MPINetwork stopped after a communication timeout "
                            f"({self._failed}); end the job and start it again")
        self._calls[op] += 1
        return self._calls[op]

    def _wait(self, reqs: list, op: str, *, peers: list | None = None, n_recvs: int = 0,
              keep=(), timeout: float | None = None) -> None:
        """Wait for every request, at most ``timeout`` (default: the network's) seconds.

        ``peers[i]`` is the rank request ``i`` depends on (point-to-point; the first
        ``n_recvs`` requests are receives); for collectives (``peers=None``) the message names
        the operation and the other ranks. On expiry the pending receives are cancelled, the
        requests and ``keep`` (their buffers) stay referenced by the network, so MPI never
        writes into freed memory, and the network refuses further calls.
        """
        Request = self._MPI.Request
        t = self.timeout if timeout is None else check_timeout(timeout)
        done = reqs[0].Test if len(reqs) == 1 else (lambda: Request.Testall(reqs))
        if wait_until(done, timeout=t):
            return
        if peers is None:
            others = [r for r in range(self.size) if r != self.rank]
            msg = (f"rank {self.rank} waited {_seconds(t)} s in {op} for {ranks_label(others)} "
                   + ("(it failed or is stuck); raise run.comm_timeout if it is only slow"
                      if len(others) == 1 else "(at least one failed or is stuck); raise "
                      "run.comm_timeout if they are only slow"))
        else:
            late = sorted({p for r, p in zip(reqs, peers) if not r.Test()})
            if not late:      # completed between the last poll and now
                return
            who = ", ".join(f"rank {s} ({agents_label(*self.blocks[s])})" for s in late)
            that = "that rank" if len(late) == 1 else "those ranks"
            msg = (f"rank {self.rank} waited {_seconds(t)} s for {who} in {op}; {that} failed or "
                   f"{'is' if len(late) == 1 else 'are'} stuck; raise run.comm_timeout if "
                   f"{'it is' if len(late) == 1 else 'they are'} only slow")
        self._failed = msg
        self._abandoned.append((reqs, keep))
        if peers is not None:      # withdraw the receives still posted (sends cannot be)
            for r in reqs[:n_recvs]:
                if not r.Test():
                    r.Cancel()
                    wait_until(r.Test, timeout=0.1)
        raise CommTimeoutError(msg)

    def _recv_buffer(self, n: int, k: int, dtype: torch.dtype):
        """The receive buffer ``(n, k)`` as a tensor and its numpy view (kept between calls
        of one size)."""
        key = (n, k, dtype)
        buf = self._recv_cache.get(key)
        if buf is None:
            self._recv_cache.clear()
            tensor = torch.empty(n, k, dtype=dtype)
            buf = self._recv_cache[key] = (tensor, tensor.numpy())
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
        plan = _Plan(remote=remote, recvs=recvs, sends=sends,
                     messages=int(out_deg.sum()), busiest=busiest_degree(W),
                     peers=[s for s, _, _ in recvs] + [s for s, _ in sends],
                     wire_rows=sum(r.stop - r.start if isinstance(r, slice) else len(r)
                                   for _, r in sends))
        if len(self._plans) >= 64:
            self._plans.pop(next(iter(self._plans)))
        self._plans[key] = plan
        return plan

    def _route(self, W, dtype: torch.dtype) -> _Route:
        """The plan and this group's weights for ``W`` (checked), as tensors of ``dtype``.

        A ``W`` of up to 64 KB is cached by its bytes (a static graph, or a schedule that
        repeats its matrices, checks, plans and converts once: the hit is one ``tobytes`` and
        one dictionary lookup); larger ones are checked and converted each call, their plan
        still cached per sparsity pattern."""
        small = type(W) is np.ndarray and W.dtype == np.float64 and \
            W.nbytes <= _WEIGHT_KEY_BYTES
        if small:
            key = (W.shape, W.tobytes(), dtype)
            route = self._routes.get(key)
            if route is not None:
                return route
        W = self.check_weights(W)
        plan = self._plan(W)
        lo, hi = self.blocks[self.rank]
        rows = W[lo:hi]
        # copies: the caller's W may change after the call
        route = _Route(plan=plan, mine=torch.from_numpy(rows[:, lo:hi].copy()).to(dtype),
                       remote=torch.from_numpy(rows[:, plan.remote].copy()).to(dtype))
        if small:
            if len(self._routes) >= 64:
                self._routes.pop(next(iter(self._routes)))
            self._routes[key] = route
        return route

    def mix(self, X: torch.Tensor, W: np.ndarray) -> torch.Tensor:
        call = self._enter("mix")
        route = self._route(W, X.dtype)
        plan = route.plan
        flat = X if X.dim() == 2 and X.is_contiguous() else \
            X.reshape(X.shape[0], -1).contiguous()
        K = flat.shape[1]
        recv, recv_np = self._recv_buffer(len(plan.remote), K, flat.dtype)
        flat_np = flat.numpy()
        # the messages first: the peers wait for them, the bookkeeping below can wait
        Irecv, Isend = self.comm.Irecv, self.comm.Isend
        reqs = [Irecv(recv_np[a:b], source=s, tag=_TAG) for s, a, b in plan.recvs]
        keep = [recv_np, flat_np]
        for s, rows in plan.sends:
            buf = flat_np[rows] if isinstance(rows, slice) else np.ascontiguousarray(
                flat_np[rows])
            keep.append(buf)
            reqs.append(Isend(buf, dest=s, tag=_TAG))
        row_bytes = K * flat.element_size()
        self.wire_bytes += plan.wire_rows * row_bytes
        self._tally(plan.messages, plan.busiest, row_bytes)
        # own rows combine while the messages travel; remote rows accumulate in place
        out = torch.mm(route.mine, flat)
        self._wait(reqs, f"mix at call {call}", peers=plan.peers, n_recvs=len(plan.recvs),
                   keep=keep)
        if len(plan.remote):
            out.addmm_(route.remote, recv)
        return out if out.shape == X.shape else out.reshape(X.shape)

    def allreduce(self, x: torch.Tensor, op: str = "sum", *,
                  timeout: float | None = None) -> torch.Tensor:
        mpi_op = self._ops.get(op)
        if mpi_op is None:
            raise ValueError(f"allreduce op {op!r} is unknown; choose one of {_OPS}")
        call = self._enter("allreduce")
        src = x.detach().numpy() if isinstance(x, torch.Tensor) and x.is_cpu else \
            torch.as_tensor(x).detach().cpu().numpy()
        src = np.ascontiguousarray(src)
        dst = np.empty_like(src)
        self._wait([self.comm.Iallreduce(src, dst, op=mpi_op)], f"allreduce at call {call}",
                   keep=(src, dst), timeout=timeout)
        return torch.from_numpy(dst)

    def iallreduce(self, x: torch.Tensor, op: str = "sum"):
        mpi_op = self._ops.get(op)
        if mpi_op is None:
            raise ValueError(f"allreduce op {op!r} is unknown; choose one of {_OPS}")
        call = self._enter("allreduce")
        src = np.ascontiguousarray(x.detach().cpu().numpy())
        dst = np.empty_like(src)
        return _Pending(self, self.comm.Iallreduce(src, dst, op=mpi_op), src, dst, call)

    def allgather_rows(self, X: torch.Tensor, *, timeout: float | None = None) -> torch.Tensor:
        call = self._enter("allgather_rows")
        flat = np.ascontiguousarray(X.detach().reshape(X.shape[0], -1).numpy())
        k = flat.shape[1]
        out = np.empty((self.n_agents, k), dtype=flat.dtype)
        counts = [(hi - lo) * k for lo, hi in self.blocks]
        displs = [lo * k for lo, _ in self.blocks]
        req = self.comm.Iallgatherv(
            flat, [out, counts, displs, self._MPI._typedict[flat.dtype.char]])
        self._wait([req], f"allgather_rows at call {call}", keep=(flat, out), timeout=timeout)
        return torch.from_numpy(out).reshape(self.n_agents, *X.shape[1:])

    def broadcast(self, obj, root: int = 0, *, timeout: float | None = None):
        """Pickled ``obj`` from ``root``: its length, then its bytes, each a polled Ibcast."""
        call = self._enter("broadcast")
        data = _pickled(obj) if self.rank == root else None
        data = self._bcast_bytes(data, root, f"broadcast from rank {root} at call {call}",
                                 timeout=timeout)
        return obj if self.rank == root else pickle.loads(data.tobytes())

    def _bcast_bytes(self, data, root: int, what: str, *, timeout: float | None = None):
        """``data`` (a uint8 array on ``root``) on every rank: its length, then its bytes."""
        if self.rank == root:
            n = np.array([data.size], dtype=np.int64)
        else:
            n = np.empty(1, dtype=np.int64)
        self._wait([self.comm.Ibcast(n, root=root)], what, keep=(n,), timeout=timeout)
        if self.rank != root:
            data = np.empty(int(n[0]), dtype=np.uint8)
        self._wait([self.comm.Ibcast(data, root=root)], what, keep=(data,), timeout=timeout)
        return data

    def barrier(self, *, timeout: float | None = None) -> None:
        call = self._enter("barrier")
        self._wait([self.comm.Ibarrier()], f"barrier at call {call}", timeout=timeout)

    def on_root(self, work, *, what: str, root: int = 0):
        """``work()`` on ``root`` while it sends heartbeats; then its result to every rank.

        The other ranks wait while heartbeats arrive and raise :class:`CommTimeoutError`
        ``timeout`` seconds after the last one. If ``work`` raises on ``root``, the others
        raise a :class:`CommError` saying so (the root's own error ends the job). ``work``
        must not communicate (the heartbeat thread is the only MPI caller meanwhile). Needs MPI
        with at least ``MPI_THREAD_SERIALIZED`` (mpi4py asks for ``MULTIPLE``): with less,
        the others wait without a deadline, as a plain broadcast would have to.
        """
        call = self._enter("on_root")
        others = [r for r in range(self.size) if r != root]
        beats = self._MPI.Query_thread() >= self._MPI.THREAD_SERIALIZED
        if self.rank == root:
            # the result is pickled while the heartbeats still run (it can be a whole
            # checkpoint); only the copy to the others is left to the broadcast's deadline
            data = self._work_with_heartbeats(lambda: _pickled(work()), others, what,
                                              beats=beats)
        else:
            data = None
            if self._await_heartbeats(root, what, beats=beats) == _FAILED:
                raise CommError(f"rank {root} failed while {what}; its own error ends the job")
        data = self._bcast_bytes(data, root, f"the result of {what} (on_root call {call})")
        return pickle.loads(data.tobytes())

    def _work_with_heartbeats(self, work, others: list, label: str, *, beats: bool):
        pending: list = []
        one = np.full(1, _WORKING, dtype=np.int8)     # read-only: shared by every send
        stop = threading.Event()
        period = min(1.0, self.timeout / 4)

        def beat():
            # the main thread makes no MPI call while this runs (SERIALIZED is enough)
            while True:
                pending[:] = [r for r in pending if not r.Test()]
                pending.extend(self.comm.Isend(one, dest=r, tag=_BEAT_TAG) for r in others)
                if stop.wait(period):
                    return

        thread = threading.Thread(target=beat, name="dcnn-heartbeat", daemon=True)
        if beats:
            thread.start()
        status = np.full(1, _FAILED, dtype=np.int8)
        try:
            result = work()
            status[0] = _DONE
        finally:
            stop.set()
            if beats:
                thread.join()
            pending.extend(self.comm.Isend(status, dest=r, tag=_BEAT_TAG) for r in others)
            self._wait(pending, f"the end of {label}", keep=(one, status))
        return result

    def _await_heartbeats(self, root: int, label: str, *, beats: bool) -> int:
        t = self.timeout if beats else float("inf")
        buf = np.empty(1, dtype=np.int8)
        while True:
            req = self.comm.Irecv(buf, source=root, tag=_BEAT_TAG)
            # heartbeats come every ~second: poll gently, leaving the CPU to the work
            if not wait_until(req.Test, timeout=t, spin=0, max_sleep=0.02):
                break
            if buf[0] != _WORKING:
                return int(buf[0])
        req.Cancel()
        wait_until(req.Test, timeout=0.1)
        msg = (f"rank {self.rank} heard nothing for {_seconds(t)} s from rank {root} "
               f"({agents_label(*self.blocks[root])}) while it was {label}; that rank failed "
               f"or is stuck (stopped, dead or out of memory)")
        self._failed = msg
        self._abandoned.append(([req], (buf,)))
        raise CommTimeoutError(msg)
