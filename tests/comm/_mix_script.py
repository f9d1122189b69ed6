"""Run under mpiexec: MPINetwork.mix equals W @ X for random sparse W and uneven blocks."""
import sys

import numpy as np
import torch

from dcnn.comm import LocalNetwork, MPINetwork

n_agents = int(sys.argv[1])
net = MPINetwork(n_agents)
rng = np.random.default_rng(3)
worst = 0.0
for trial in range(20):
    W = rng.random((n_agents, n_agents)) * (rng.random((n_agents, n_agents)) < 0.3)
    np.fill_diagonal(W, 1.0)
    X_all = torch.from_numpy(rng.normal(size=(n_agents, 2, 5)))
    lo, hi = net.blocks[net.rank]
    out = net.mix(X_all[lo:hi].contiguous(), W)
    ref = LocalNetwork(n_agents).mix(X_all, W)[lo:hi]
    worst = max(worst, float((out - ref).abs().max()))
# a W used again is served from the cache (keyed by its bytes up to 64 KB: 90 agents); the
# same array changed in place after a call is a different W
W = rng.random((n_agents, n_agents)) * (rng.random((n_agents, n_agents)) < 0.3)
np.fill_diagonal(W, 1.0)
X_all = torch.from_numpy(rng.normal(size=(n_agents, 3)))
# (100 agents: W is 80 KB, past the cache, checked and converted every call)
for change in (False, False, True, False):
    if change:
        W[:, :] = W[::-1, ::-1]
    out = net.mix(X_all[lo:hi].contiguous(), W)
    worst = max(worst, float((out - LocalNetwork(n_agents).mix(X_all, W)[lo:hi]).abs().max()))
# the same values as a Fortran-order copy, a float32 array and a list: the same result
for same in (np.asfortranarray(W), W.astype(np.float32), W.astype(np.float32).tolist()):
    out = net.mix(X_all[lo:hi].contiguous(), same)
    ref = LocalNetwork(n_agents).mix(X_all, np.asarray(same, dtype=np.float64))[lo:hi]
    worst = max(worst, float((out - ref).abs().max()))
gathered = net.allgather_rows(X_all[lo:hi].contiguous())
assert torch.equal(gathered, X_all)
worst = float(net.allreduce(torch.tensor([worst]), op="max")[0])
total = float(net.allreduce(torch.tensor([float(net.bytes_sent)]))[0])
local = LocalNetwork(n_agents)
rng = np.random.default_rng(3)
for trial in range(20):
    W = rng.random((n_agents, n_agents)) * (rng.random((n_agents, n_agents)) < 0.3)
    np.fill_diagonal(W, 1.0)
    X_all = torch.from_numpy(rng.normal(size=(n_agents, 2, 5)))
    local.mix(X_all, W)
W = rng.random((n_agents, n_agents)) * (rng.random((n_agents, n_agents)) < 0.3)
np.fill_diagonal(W, 1.0)
X_all = torch.from_numpy(rng.normal(size=(n_agents, 3)))
for change in (False, False, True, False):
    if change:
        W[:, :] = W[::-1, ::-1]
    local.mix(X_all, W)
for same in (np.asfortranarray(W), W.astype(np.float32), W.astype(np.float32).tolist()):
    local.mix(X_all, same)
if net.rank == 0:
    print(f"MAXDIFF {worst:.3e} BYTES {total:.0f} LOCALBYTES {local.bytes_sent}")
