"""Under mpiexec: every contract case on the MPI backend for its first MPI_ROUNDS rounds;
rank 0 prints one JSON line {case: [rounds run, final objective, max |w|]}."""
import json
import sys
from pathlib import Path

sys.path[:0] = [str(Path(__file__).parent), str(Path(__file__).parents[1])]

from contract import CASES, MPI_ROUNDS, NOT_ON_TWO_RANKS, run_case  # noqa: E402

from dcnn.comm import MPINetwork  # noqa: E402

out = {}
for name in CASES:
    if name in NOT_ON_TWO_RANKS:
        continue
    net = MPINetwork(6)
    rounds = min(CASES[name][1], MPI_ROUNDS)
    _, res = run_case(name, network=net, rounds=rounds)
    X = net.allgather_rows(res.state.X)
    out[name] = [rounds, res.history.last["objective"], float(X.abs().max())]
if net.rank == 0:
    print("RESULT " + json.dumps(out))
