"""Under ``mpiexec -n R`` (tests/algorithms/test_guard.py): ``AT AGENT OUT``.

Gradient tracking on 4 agents of a tiny problem, where agent AGENT's iterate becomes NaN at
iteration AT, on one rank only. The step refuses to start from a non-finite iterate, as a
local solve on NaN would raise: no process may step from a non-finite state while the others
wait for it. Every rank writes its DivergenceError message to ``OUT/msg-<rank>.txt``; the
checkpoint of the last finite state goes to ``OUT/mpi``. Rank 0 then runs the same in one
process (``OUT/msg-local.txt``, ``OUT/local``).
"""
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from dcnn.algorithms import Constant, GradientTracking, Scaled, run_loop
from dcnn.checkpoint import Checkpointer
from dcnn.comm import LocalNetwork, MPINetwork
from dcnn.errors import DivergenceError
from dcnn.problems import FlatModel, LocalProblems, make_regularizer

from oracles import mlp, random_shards


@dataclass(frozen=True)
class Poisoned(GradientTracking):
    at: int = 5
    agent: int = 2

    def step(self, state, problem, network, W):
        if not bool(torch.isfinite(state.X).all()):
            raise RuntimeError(f"stepped from a non-finite state at iteration {state.t}")
        new = super().step(state, problem, network, W)
        ids = list(problem.agent_ids)
        if new.t == self.at and self.agent in ids:
            X = new.X.clone()
            X[ids.index(self.agent)] = float("nan")
            new = replace(new, X=X)
        return new


def run(network, at: int, agent: int, folder: Path) -> str:
    shards, task = random_shards(np.random.default_rng(0), (6, 9, 7, 8), d=3)
    lo, hi = network.blocks[network.rank]
    prob = LocalProblems(model=FlatModel(mlp(n_inputs=3, hidden=(4,), n_outputs=2, seed=0)),
                         shards=shards[lo:hi], loss="squared", task=task, n_total=30,
                         regularizer=make_regularizer("l2", lam=0.1), agent_ids=range(lo, hi))
    W = np.full((4, 4), 0.25)
    try:
        run_loop(Poisoned(Scaled(Constant(1.0), 0.1), at=at, agent=agent), problem=prob,
                 network=network, topology=W, X0=prob.model.w0.expand(hi - lo, -1).clone(),
                 iterations=9, eval_every=3,
                 checkpoints=Checkpointer(folder, every=0, config={}, info={}))
    except DivergenceError as exc:
        return str(exc).replace(str(folder), "FOLDER")
    return "no divergence"


if __name__ == "__main__":
    at, agent, out = int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
    net = MPINetwork(4)
    (out / f"msg-{net.rank}.txt").write_text(run(net, at, agent, out / "mpi"))
    net.barrier()
    if net.rank == 0:
        (out / "msg-local.txt").write_text(run(LocalNetwork(4), at, agent, out / "local"))
