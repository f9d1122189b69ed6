"""Networks: the in-process and MPI backends behind one interface, and how to pick one."""
from __future__ import annotations

import os

from .base import Network, agent_blocks
from .faults import check_timeout
from .local import LocalNetwork

__all__ = ["Network", "LocalNetwork", "MPINetwork", "agent_blocks", "make_network",
           "launched_by_mpi", "launcher_size", "launcher_rank", "torchrun_world"]


# Hydra (MPICH) and srun --mpi=pmi2 set PMI_*, Open MPI's mpirun OMPI_COMM_WORLD_*; PMIx
# (srun --mpi=pmix) sets PMIX_RANK only, and Slurm the step's size (the job's if no step's).
# A size the launcher set wins even at 1 (one rank inside a larger allocation); torchrun's
# workers inherit these from the srun or mpiexec that started torchrun: ignored there.
_SIZE_VARS = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE")
_PMIX_SIZE_VARS = ("SLURM_STEP_NUM_TASKS", "SLURM_NTASKS")
_RANK_VARS = ("PMI_RANK", "OMPI_COMM_WORLD_RANK")


def _torchrun() -> bool:
    return "TORCHELASTIC_RUN_ID" in os.environ


def _pmix() -> bool:
    return os.environ.get("PMIX_RANK", "").isdigit()


def launcher_size() -> int:
    """How many processes the MPI launcher started (1 without one), from its environment;
    1 in a torchrun worker (whatever MPI variables it inherited from the command that
    started torchrun)."""
    if _torchrun():
        return 1
    for var in _SIZE_VARS + (_PMIX_SIZE_VARS if _pmix() else ()):
        value = os.environ.get(var, "")
        if value.isdigit() and int(value) >= 1:
            return int(value)
    return 1


def launcher_rank() -> int:
    """This process's rank as the MPI launcher (or torchrun) numbered it (0 without one)."""
    for var in () if _torchrun() else _RANK_VARS + ("PMIX_RANK",):
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var])
    world = torchrun_world()
    return world[0] if world else 0


def torchrun_world() -> tuple[int, int] | None:
    """``(rank, size)`` when torchrun (not an MPI launcher) started more than one process:
    its ``RANK`` and ``WORLD_SIZE``; else ``None``."""
    rank, size = os.environ.get("RANK", ""), os.environ.get("WORLD_SIZE", "")
    if launched_by_mpi() or not (rank.isdigit() and size.isdigit()) or int(size) < 2:
        return None
    return int(rank), int(size)


def launched_by_mpi() -> bool:
    """True when this process was started by an MPI launcher with more than one rank."""
    return launcher_size() > 1


def make_network(n_agents: int, *, backend: str = "auto", comm=None,
                 timeout: float = 60.0) -> Network:
    """``"local"``, ``"mpi"``, or ``"auto"`` (MPI when launched by mpiexec with > 1 rank).

    ``timeout`` (seconds, ``run.comm_timeout``; ``math.inf`` for none) bounds every wait of
    the MPI backend, whose creation also installs the abort-on-error hook and checks that
    every rank has ``n_agents`` (:class:`~dcnn.comm.mpi.MPINetwork`); one process never
    waits, so the in-process backend only validates it.
    """
    if backend not in ("auto", "local", "mpi"):
        raise ValueError(f"backend {backend!r} is unknown; choose auto, local or mpi")
    timeout = check_timeout(timeout)
    if backend == "mpi" or comm is not None or (backend == "auto" and launched_by_mpi()):
        from .mpi import MPINetwork
        return MPINetwork(n_agents, comm=comm, timeout=timeout)
    return LocalNetwork(n_agents)


def __getattr__(name):
    if name == "MPINetwork":
        from .mpi import MPINetwork
        return MPINetwork
    raise AttributeError(name)
