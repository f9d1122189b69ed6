"""Under mpiexec: stochastic NEXT / SONATA (``batch_size`` set) on the MPI backend and (on
rank 0) in one process give the same iterates: batches are drawn from (seed, t, global agent
id), never from the rank. Prints one ``CASE name MAXDIFF d NORM n`` line per case."""
import torch

from dcnn.algorithms import Diminishing, Next, Sonata, run_loop
from dcnn.comm import LocalNetwork, MPINetwork
from dcnn.data import encode_targets, load_dataset, partition
from dcnn.problems import FlatModel, make_regularizer, mlp
from dcnn.runner import local_problems
from dcnn.surrogates import FL, PL
from dcnn.topology import make_topology

N = 8
CASES = {   # name: (algorithm class, surrogate, hidden, batch size, graph)
    "next-pl-mlp": (Next, PL(tau=1.0), (4,), 16, "ring"),
    "sonata-fl-linear": (Sonata, FL(tau=5.0), (), 10, "random_digraph"),
}

torch.set_num_threads(1)
ds = load_dataset("diabetes", seed=0)
T = encode_targets(ds.y_train, task=ds.task, n_classes=ds.n_classes)
parts = partition(ds.y_train, N, kind="iid", seed=0, task=ds.task)   # 45 and 44 rows
mpi_net = MPINetwork(N)


def run(name, network):
    cls, surrogate, hidden, b, graph = CASES[name]
    model = FlatModel(mlp(n_inputs=ds.n_features, hidden=hidden, n_outputs=T.shape[1],
                          seed=0))
    prob = local_problems(model=model, X=ds.X_train, T=T, parts=parts, network=network,
                          loss="squared", task=ds.task,
                          regularizer=make_regularizer("l2", lam=1e-2))
    topo = make_topology(graph=graph, n=N, dynamic="link_failure", seed=2, p_fail=0.3)
    algo = cls(surrogate=surrogate, schedule=Diminishing(0.5, 0.01), batch_size=b, seed=4)
    state, _ = run_loop(algo, problem=prob, network=network, topology=topo,
                        X0=model.w0.expand(network.n_local, -1).clone(), iterations=20,
                        eval_every=20)
    return state.X


for name in CASES:
    X_mpi = mpi_net.allgather_rows(run(name, mpi_net))
    if mpi_net.rank == 0:
        X_local = run(name, LocalNetwork(N))
        diff = float((X_mpi - X_local).abs().max())
        print(f"CASE {name} MAXDIFF {diff:.3e} NORM {float(X_mpi.abs().max()):.3e}",
              flush=True)
