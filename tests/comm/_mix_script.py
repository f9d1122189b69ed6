"""Run under mpiexec: MPINetwork.mix equals W @ X for random sparse W and uneven blocks."""
import sys

import numpy as np
import torch

from dcnn.comm import LocalNetwork, MPINetwork


def random_w(rng, n):
    W = rng.random((n, n)) * (rng.random((n, n)) < 0.3)
    np.fill_diagonal(W, 1.0)
    return W


def cases(rng, n):
    """``(W, X_all)`` pairs: random ones; then one W used again (served from the cache, keyed
    by its bytes up to 64 KB: 90 agents; at 100 agents W is 80 KB, past the cache), changed
    in place after a call (a different W), and its values as a Fortran-order copy, a float32
    array and a list (the same result)."""
    for _ in range(20):
        yield random_w(rng, n), torch.from_numpy(rng.normal(size=(n, 2, 5)))
    W, X_all = random_w(rng, n), torch.from_numpy(rng.normal(size=(n, 3)))
    for change in (False, False, True, False):
        if change:
            W[:, :] = W[::-1, ::-1]
        yield W, X_all
    for same in (np.asfortranarray(W), W.astype(np.float32), W.astype(np.float32).tolist()):
        yield same, X_all


n_agents = int(sys.argv[1])
net = MPINetwork(n_agents)
local = LocalNetwork(n_agents)      # the reference, and the logical byte count to compare
lo, hi = net.blocks[net.rank]
worst = 0.0
for W, X_all in cases(np.random.default_rng(3), n_agents):
    out = net.mix(X_all[lo:hi].contiguous(), W)
    ref = local.mix(X_all, W)[lo:hi]
    worst = max(worst, float((out - ref).abs().max()))
gathered = net.allgather_rows(X_all[lo:hi].contiguous())
assert torch.equal(gathered, X_all)
worst = float(net.allreduce(torch.tensor([worst]), op="max")[0])
total = float(net.allreduce(torch.tensor([float(net.bytes_sent)]))[0])
if net.rank == 0:
    print(f"MAXDIFF {worst:.3e} BYTES {total:.0f} LOCALBYTES {local.bytes_sent}")
