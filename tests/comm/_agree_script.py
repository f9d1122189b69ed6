"""Under mpiexec: the same config on the MPI backend and (on rank 0) in one process gives the
same iterates. Prints MAXDIFF (largest entry-wise difference of the final iterates)."""
import sys


from dcnn.comm import LocalNetwork, MPINetwork
from dcnn.config import load_config
from dcnn.runner import run_experiment

overrides = sys.argv[1:]
cfg = load_config(overrides=["run.progress=false", "run.reference=false", *overrides])
net = MPINetwork(cfg.run.agents)
res = run_experiment(cfg, out=None, network=net, verbose=False)
X_mpi = net.allgather_rows(res.state.X)
if net.rank == 0:
    local = run_experiment(cfg, out=None, network=LocalNetwork(cfg.run.agents), verbose=False)
    diff = float((X_mpi - local.state.X).abs().max())
    obj = abs(res.history.last["objective"] - local.history.last["objective"])
    same_bytes = res.summary["bytes_sent_per_agent"] == local.summary["bytes_sent_per_agent"]
    print(f"MAXDIFF {diff:.3e} OBJDIFF {obj:.3e} SAMEBYTES {same_bytes} "
          f"NORM {float(X_mpi.abs().max()):.3e}")
    print(f"TAU {res.summary['tau']!r} {res.summary['tau_final']!r} "
          f"{local.summary['tau_final']!r}")
