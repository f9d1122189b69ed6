"""Under ``mpiexec -n 2``: the ``dcnn run`` command with ranks that were given different
input (as when hosts read different config files). Every rank must stop with one error line,
not hang in a collective. ``MODE`` is ``agents`` (a different ``run.agents`` on each rank) or
``tau`` (``algorithm.tau = 0`` on rank 1 only: it fails alone, before any collective); the
other arguments go to ``dcnn run``."""
import sys

from mpi4py import MPI

from dcnn.cli import main

rank = MPI.COMM_WORLD.Get_rank()
mode, rest = sys.argv[1], sys.argv[2:]
own = f"run.agents={4 + rank}" if mode == "agents" else f"algorithm.tau={1.0 - rank}"
sys.exit(main(["run", "--set", own, "--set", "run.iterations=2",
               "--set", "run.eval_every=1", "--set", "run.reference=false",
               "--set", "run.comm_timeout=10.0", "--quiet", *rest]))
