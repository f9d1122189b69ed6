"""Networks: the in-process and MPI backends behind one interface, and how to pick one."""
from __future__ import annotations

import os

from .base import Network, agent_blocks
from .local import LocalNetwork

__all__ = ["Network", "LocalNetwork", "MPINetwork", "agent_blocks", "make_network",
           "launched_by_mpi"]



def launched_by_mpi() -> bool:
    """True when this process was started by an MPI launcher with more than one rank."""
    for var in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE"):
        if int(os.environ.get(var, "1") or 1) > 1:
            return True
    return False


def make_network(n_agents: int, *, backend: str = "auto", comm=None) -> Network:
    """``"local"``, ``"mpi"``, or ``"auto"`` (MPI when launched by mpiexec with > 1 rank)."""
    if backend not in ("auto", "local", "mpi"):
        raise ValueError(f"backend {backend!r} is unknown; choose auto, local or mpi")
    if backend == "mpi" or comm is not None or (backend == "auto" and launched_by_mpi()):
        from .mpi import MPINetwork
        return MPINetwork(n_agents, comm=comm)
    return LocalNetwork(n_agents)


def __getattr__(name):
    if name == "MPINetwork":
        from .mpi import MPINetwork
        return MPINetwork
    raise AttributeError(name)
