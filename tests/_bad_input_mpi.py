"""Under ``mpiexec -n 2``: the ``dcnn run`` command with a different ``run.agents`` on each rank
(as when hosts read different config files). Every rank must stop with one error line, not
hang in a collective. Extra arguments go to ``dcnn run``."""
import sys

from mpi4py import MPI

from dcnn.cli import main

rank = MPI.COMM_WORLD.Get_rank()
sys.exit(main(["run", "--set", f"run.agents={4 + rank}", "--set", "run.iterations=2",
               "--set", "run.eval_every=1", "--set", "run.reference=false",
               "--set", "algorithm.tau=1.0", "--set", "run.comm_timeout=10.0", "--quiet",
               *sys.argv[1:]]))
