"""The ``torch.distributed`` process group the engine baselines run in.

One function decides how the world is formed, in this order:

1. a group is already initialised: reuse it (and leave it alone on exit);
2. ``torchrun`` (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT`` set): ``env://``;
3. ``mpiexec`` with more than one rank (:func:`dcnn.comm.launched_by_mpi`): rank and size from
   ``mpi4py``'s ``COMM_WORLD``; rank 0 starts the rendezvous ``TCPStore`` on a port the OS
   assigns as it binds (``127.0.0.1`` when every rank runs on its host, else its host name)
   and broadcasts ``"host:port"`` over MPI (waits bounded by ``timeout``); the other ranks
   connect to it. No port is chosen first and bound later, so no other process can take it in
   between (a port picked free and released was once taken by another socket before the
   store bound it: ``EADDRINUSE``);
4. otherwise a world of size 1: a real group on its own local store, so a single process runs
   exactly the code path of a multi-rank launch.

Every launch passes a ``timeout`` to ``init_process_group`` (and so to every collective of
gloo), so a missing peer fails with an error instead of hanging. The backend is gloo on CPU;
``backend="nccl"`` (or ``"auto"`` with ``device="cuda"``) uses NCCL and needs CUDA (one GPU
per rank, picked by the local rank on its host).

Under mpiexec on one host the ranks meet on ``127.0.0.1`` and gloo needs no
``GLOO_SOCKET_IFNAME`` (checked with MPICH's Hydra on 2 and 4 ranks); where gloo picks an
interface the peers cannot reach, set ``GLOO_SOCKET_IFNAME`` (``lo`` on a single host).
"""
from __future__ import annotations

import contextlib
import datetime
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ...comm import launched_by_mpi
from ...errors import ConfigError

__all__ = ["World", "init_world", "close_world", "process_group", "free_port"]

_TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
_BACKENDS = ("auto", "gloo", "nccl")
_LOCAL_RANK_VARS = ("LOCAL_RANK", "MPI_LOCALRANKID", "OMPI_COMM_WORLD_LOCAL_RANK")
DEFAULT_TIMEOUT = datetime.timedelta(seconds=60)


@dataclass(frozen=True)
class World:
    """The process group the engines use: this process's ``rank`` of ``size``.

    ``launcher`` is ``"existing"``, ``"torchrun"``, ``"mpiexec"`` or ``"single"``; ``owned``
    says whether :func:`close_world` destroys the group (not when it was found initialised).
    """

    rank: int
    size: int
    backend: str
    device: torch.device
    launcher: str
    owned: bool


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free on ``host`` a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _backend(backend: str, device: str) -> str:
    if backend not in _BACKENDS:
        raise ConfigError(f"backend {backend!r} is unknown; choose one of: {', '.join(_BACKENDS)}")
    if device not in ("cpu", "cuda"):
        raise ConfigError(f"device {device!r} is unknown; choose 'cpu' or 'cuda'")
    if backend == "auto":
        backend = "nccl" if device == "cuda" else "gloo"
    if (backend == "nccl" or device == "cuda") and not torch.cuda.is_available():
        raise ConfigError(f"backend {backend!r} on device {device!r} needs CUDA, which is not "
                          f"available; use backend='gloo' and device='cpu'")
    return backend


def _device(device: str, rank: int) -> torch.device:
    """CPU, or the GPU of this rank's local index on its host (one GPU per rank)."""
    if device == "cpu":
        return torch.device("cpu")
    local = next((int(os.environ[v]) for v in _LOCAL_RANK_VARS if v in os.environ), rank)
    torch.cuda.set_device(local % torch.cuda.device_count())
    return torch.device("cuda", torch.cuda.current_device())


def _store(host: str, *, size: int, timeout: datetime.timedelta) -> dist.TCPStore:
    """The rendezvous store's server, on a port the OS gives it as it binds (port 0): no
    window in which another process can take a port chosen beforehand."""
    return dist.TCPStore(host, 0, size, True, timeout=timeout, wait_for_workers=False)


def _mpi_store(comm, *, timeout: datetime.timedelta) -> dist.TCPStore:
    """The store of an MPI launch: rank 0 serves it and broadcasts ``"host:port"``, the other
    ranks connect; every wait is bounded by ``timeout`` (a dcnn MPI network over ``comm``,
    one agent per rank)."""
    from ...comm.agree import digest
    from ...comm.mpi import MPINetwork
    seconds = timeout.total_seconds()
    net = MPINetwork(comm.Get_size(), comm=comm, timeout=seconds, abort_on_error=False)
    # one host when every rank's host name hashes alike (48 bits: exact in a float64)
    mine = torch.tensor([float(digest(socket.gethostname()))], dtype=torch.float64)
    one_host = bool(net.allreduce(mine.clone(), op="min") == net.allreduce(mine, op="max"))
    size, store, address = comm.Get_size(), None, None
    if comm.Get_rank() == 0:
        host = "127.0.0.1" if one_host else socket.getfqdn()
        store = _store(host, size=size, timeout=timeout)
        address = f"{host}:{store.port}"
    address = net.broadcast(address, root=0)
    if store is None:
        host, port = address.rsplit(":", 1)
        store = dist.TCPStore(host, int(port), size, False, timeout=timeout)
    return store


def init_world(*, backend: str = "auto", device: str = "cpu",
               timeout: datetime.timedelta = DEFAULT_TIMEOUT) -> World:
    """Initialise (or reuse) the default process group; see the module docstring."""
    backend = _backend(backend, device)
    if not isinstance(timeout, datetime.timedelta) or timeout.total_seconds() <= 0:
        raise ConfigError(f"timeout must be a positive datetime.timedelta, got {timeout!r}")
    if dist.is_initialized():
        rank = dist.get_rank()
        return World(rank, dist.get_world_size(), dist.get_backend(), _device(device, rank),
                     "existing", owned=False)
    if all(v in os.environ for v in _TORCHRUN_VARS):
        rank, size, method, launcher = (int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]),
                                        "env://", "torchrun")
    elif launched_by_mpi():
        from mpi4py import MPI
        comm = MPI.COMM_WORLD
        rank, size, launcher = comm.Get_rank(), comm.Get_size(), "mpiexec"
        store = _mpi_store(comm, timeout=timeout)
    else:
        rank, size, launcher = 0, 1, "single"
        store = _store("127.0.0.1", size=1, timeout=timeout)
    dev = _device(device, rank)
    if launcher == "torchrun":
        dist.init_process_group(backend=backend, init_method=method, rank=rank,
                                world_size=size, timeout=timeout)
    else:
        dist.init_process_group(backend=backend, store=store, rank=rank, world_size=size,
                                timeout=timeout)
    return World(rank, size, backend, dev, launcher, owned=True)


def close_world(world: World) -> None:
    """Destroy the default group if :func:`init_world` created it (a no-op otherwise).
    Free the engines built on the group first (``del engine; gc.collect()``): a DDP reducer
    or pipeline stage that outlives its group can hang or abort the process at exit."""
    if world.owned and dist.is_initialized():
        dist.barrier()     # every rank's last collective is done before the group goes
        dist.destroy_process_group()


@contextlib.contextmanager
def process_group(*, backend: str = "auto", device: str = "cpu",
                  timeout: datetime.timedelta = DEFAULT_TIMEOUT) -> Iterator[World]:
    """``with process_group() as world:`` -- :func:`init_world`, then :func:`close_world`.

    >>> with process_group() as world:
    ...     (world.rank, world.size, world.backend)
    (0, 1, 'gloo')
    """
    world = init_world(backend=backend, device=device, timeout=timeout)
    try:
        yield world
    finally:
        close_world(world)
