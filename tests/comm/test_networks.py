"""The MPI backend against the in-process one; counters; agent blocks."""
import re

import numpy as np
import pytest
import torch

from dcnn.comm import LocalNetwork, agent_blocks
from dcnn.errors import CommError


def test_agent_blocks_are_balanced_and_contiguous():
    assert agent_blocks(7, 3) == [(0, 3), (3, 5), (5, 7)]
    assert agent_blocks(8, 8) == [(k, k + 1) for k in range(8)]
    with pytest.raises(CommError, match="at most 4 ranks"):
        agent_blocks(4, 5)


def test_local_mix_and_counters():
    net = LocalNetwork(3)
    W = np.array([[0.5, 0.5, 0], [0.5, 0.25, 0.25], [0, 0.25, 0.75]])
    X = torch.arange(6, dtype=torch.float64).reshape(3, 2)
    torch.testing.assert_close(net.mix(X, W), torch.from_numpy(W) @ X)
    # agent 0 sends to 1, agent 1 to 0 and 2, agent 2 to 1: 4 messages of 16 bytes
    assert net.messages_sent == 4 and net.bytes_sent == 64
    with pytest.raises(CommError, match="shape"):
        net.mix(X, np.eye(2))


@pytest.mark.mpi
@pytest.mark.parametrize("ranks,agents", [(2, 8), (3, 7), (4, 8), (4, 4), (2, 100)])
def test_mpi_mix_equals_dense_product(mpi, ranks, agents):
    res = mpi(ranks, ["tests/comm/_mix_script.py", str(agents)], timeout=90)
    assert res.returncode == 0, res.stderr[-3000:]
    m = re.search(r"MAXDIFF (\S+) BYTES (\S+) LOCALBYTES (\S+)", res.stdout)
    assert m, res.stdout
    assert float(m.group(1)) <= 1e-14
    # logical byte counts are the same on both backends
    assert float(m.group(2)) == float(m.group(3))


@pytest.mark.parametrize("graph,n,sparse,params", [
    ("ring", 64, True, {}), ("erdos_renyi", 40, True, {"p": 0.1}),
    ("erdos_renyi", 40, False, {"p": 0.5}), ("complete", 40, False, {}), ("ring", 8, False, {})])
def test_local_mix_on_a_large_sparse_graph_sums_its_nonzeros(graph, n, sparse, params):
    """From 32 agents a W with at most 8 N nonzeros is applied through its nonzeros: the same
    product as the dense one (to rounding), the same byte counts."""
    from dcnn.comm import LocalNetwork
    from dcnn.topology import make_topology
    W = make_topology(graph=graph, n=n, dynamic="static", seed=1, **params).weights(0)
    X = torch.randn(n, 2, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    net = LocalNetwork(n)
    out = net.mix(X, W)
    assert (net._sparse(W) is not None) == sparse
    dense = (torch.from_numpy(W) @ X.reshape(n, -1)).reshape(X.shape)
    torch.testing.assert_close(out, dense, rtol=1e-14, atol=1e-15)
    degree = (W != 0).sum() - n
    assert net.bytes_sent == degree * 2 * 5 * 8
    assert net.mix(X.float(), W).dtype == torch.float32


@pytest.mark.parametrize("env,size,rank", [
    ({}, 1, 0),
    ({"PMI_SIZE": "4", "PMI_RANK": "2"}, 4, 2),                          # Hydra, srun pmi2
    ({"OMPI_COMM_WORLD_SIZE": "3", "OMPI_COMM_WORLD_RANK": "1"}, 3, 1),  # Open MPI mpirun
    ({"PMIX_RANK": "5", "SLURM_STEP_NUM_TASKS": "8", "SLURM_NTASKS": "16"}, 8, 5),  # srun pmix
    ({"PMIX_RANK": "0", "SLURM_NTASKS": "2"}, 2, 0),
    ({"SLURM_NTASKS": "4"}, 1, 0),       # an sbatch script itself, not launched ranks
    ({"PMI_SIZE": "x"}, 1, 0),
    # one rank inside a larger allocation: the launcher's own size wins, even at 1
    ({"PMIX_RANK": "0", "SLURM_STEP_NUM_TASKS": "1", "SLURM_NTASKS": "8"}, 1, 0),
    ({"OMPI_COMM_WORLD_SIZE": "1", "OMPI_COMM_WORLD_RANK": "0", "PMIX_RANK": "0",
      "SLURM_NTASKS": "8"}, 1, 0),
    # a torchrun worker started under srun: torchrun's rank, not an MPI launch
    ({"TORCHELASTIC_RUN_ID": "x", "RANK": "3", "WORLD_SIZE": "8", "PMIX_RANK": "0",
      "SLURM_NTASKS": "2", "PMI_SIZE": "2", "PMI_RANK": "0"}, 1, 3)])
def test_the_launchers_environment_gives_the_ranks(monkeypatch, env, size, rank):
    from dcnn.comm import launched_by_mpi, launcher_rank, launcher_size
    for var in ("PMI_SIZE", "PMI_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK",
                "PMIX_RANK", "SLURM_STEP_NUM_TASKS", "SLURM_NTASKS", "RANK", "WORLD_SIZE",
                "TORCHELASTIC_RUN_ID"):
        monkeypatch.delenv(var, raising=False)
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    assert (launcher_size(), launcher_rank(), launched_by_mpi()) == (size, rank, size > 1)
