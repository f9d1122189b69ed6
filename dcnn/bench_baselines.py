"""Gradient tracking against the ways other libraries run it: ``dcnn bench disropt`` and
``dcnn bench agent-loop``.

Both solve the same strongly convex problem: agent ``i`` holds ``m`` rows ``(X_i, t_i)`` of a
least-squares regression (``m = max(20, 2 d)`` rows per agent),
``f_i(w) = (1/M) ||X_i w - t_i||^2 + (lam / N) ||w||^2`` (``M`` all rows; dcnn's ``l2``
regulariser ``lam ||w||^2`` split over the agents), whose sum has the closed-form minimiser
``w* = (X^T X / M + lam I)^-1 X^T t / M``. Each
side runs DIGing with the same constant step and weights from the same ``w[0] = 0``; the
rows report each side's distance to ``w*`` and the largest difference between the sides'
iterates (the same steps: rounding).

- ``disropt``: under ``mpiexec -n R``, one agent per rank. dcnn runs its ``GradientTracking``
  through ``run_loop`` on the MPI backend (guard, counters, deadlines included) against (a)
  the same iteration hand-written in disropt's message pattern (Farina et al. 2019): every
  iteration each agent sends its ``x`` and then its ``y`` to each neighbour as pickled Python
  objects (mpi4py's lowercase ``isend``/``recv``), combines what it received and takes a
  numpy gradient -- the least a Python implementation does -- and (b) disropt's own
  ``GradientTracking`` on the same quadratic, when disropt is installed
  (``pip install disropt``; it is not a dependency). Ratio: time per iteration.
- ``agent-loop``: in one process, N agents as a per-agent Python loop over numpy arrays (the
  form of decent-bench and most research code: each agent mixes its neighbours' rows and takes
  its own gradient) against dcnn's stacked in-process backend.
"""
from __future__ import annotations

import statistics
import time

import numpy as np
import torch

__all__ = ["bench_disropt", "bench_agent_loop"]

LAM = 1e-2
STEP = 0.05


def _data(n_agents: int, d: int, m: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_agents, m, d))
    w = rng.normal(size=d)
    t = X @ w + 0.1 * rng.normal(size=(n_agents, m))
    return X, t


def _optimum(X: np.ndarray, t: np.ndarray, lam: float) -> np.ndarray:
    Xa, ta = X.reshape(-1, X.shape[-1]), t.reshape(-1)
    M = len(ta)
    return np.linalg.solve(Xa.T @ Xa / M + lam * np.eye(X.shape[-1]), Xa.T @ ta / M)


def _ring_weights(n: int) -> np.ndarray:
    """Metropolis-Hastings weights of a ring (a complete graph of 2 for n = 2)."""
    from .topology import make_topology
    return make_topology(graph="ring", n=n, dynamic="static").weights(0)


def _dcnn_gt(X, t, *, network, W, iterations: int):
    """dcnn's GT on this process's agents; returns (final iterates, loop seconds)."""
    from .algorithms import Constant, GradientTracking, Scaled, run_loop
    from .problems import FlatModel, LocalProblems, make_regularizer
    n, m, d = X.shape
    model = FlatModel(torch.nn.Sequential(torch.nn.Linear(d, 1, bias=False)))
    lo, hi = network.blocks[network.rank]
    prob = LocalProblems(model=model, shards=[(X[i], t[i][:, None]) for i in range(lo, hi)],
                         loss="squared", task="regression", n_total=n * m,
                         regularizer=make_regularizer("l2", lam=LAM),
                         agent_ids=range(lo, hi))
    alg = GradientTracking(schedule=Scaled(Constant(1.0), STEP))
    X0 = torch.zeros(hi - lo, d, dtype=torch.float64)
    state, history = run_loop(alg, problem=prob, network=network, topology=W, X0=X0,
                              iterations=iterations, eval_every=iterations)
    return state.X.numpy(), history.last["time_s"]


def bench_disropt(dims=(4, 100), *, iterations: int = 1000, reps: int = 3) -> list[dict]:
    """Collective under mpiexec (one agent per rank); rows on rank 0."""
    from mpi4py import MPI

    from .bench import mpi_world
    comm, R, rank, network = mpi_world("disropt")
    W = _ring_weights(R)
    nbrs = [j for j in range(R) if j != rank and W[rank, j] != 0]
    rows = []
    for d in dims:
        m = max(20, 2 * d)
        X, t = _data(R, d, m)
        w_star = _optimum(X, t, LAM)
        Xi, ti, M = X[rank], t[rank], R * m

        def grad(x):
            return 2.0 * Xi.T @ (Xi @ x - ti) / M + 2.0 * LAM / R * x

        def disropt_style():
            x = np.zeros(d)
            g = grad(x)
            y = g.copy()
            comm.Barrier()
            t0 = time.perf_counter()
            for _ in range(iterations):
                # x first, then y, each a pickled object per neighbour
                got = {}
                for what, val in (("x", x), ("y", y)):
                    reqs = [comm.isend(val, dest=j, tag=7) for j in nbrs]
                    got[what] = {j: comm.recv(source=j, tag=7) for j in nbrs}
                    for r in reqs:
                        r.wait()
                x_new = W[rank, rank] * x + sum(W[rank, j] * got["x"][j] for j in nbrs) \
                    - STEP * y
                g_new = grad(x_new)
                y = W[rank, rank] * y + sum(W[rank, j] * got["y"][j] for j in nbrs) \
                    + g_new - g
                x, g = x_new, g_new
            return x, time.perf_counter() - t0

        real = _disropt_runner(Xi, ti, M=M, R=R, rank=rank, W=W, nbrs=nbrs,
                               iterations=iterations, comm=comm)
        times = {"dcnn": [], "disropt": [], "real": []}
        errs = {}
        for _ in range(reps):        # interleaved
            comm.Barrier()
            xd, sec = _dcnn_gt(X, t, network=network, W=W, iterations=iterations)
            times["dcnn"].append(comm.allreduce(sec, op=MPI.MAX))
            errs["dcnn"] = comm.allreduce(float(np.abs(xd[0] - w_star).max()), op=MPI.MAX)
            xo, sec = disropt_style()
            times["disropt"].append(comm.allreduce(sec, op=MPI.MAX))
            errs["disropt"] = comm.allreduce(float(np.abs(xo - w_star).max()), op=MPI.MAX)
            # the same steps: the two implementations' iterates agree to rounding
            errs["between"] = comm.allreduce(float(np.abs(xd[0] - xo).max()), op=MPI.MAX)
            if real is not None:
                xr, sec = real()
                times["real"].append(comm.allreduce(sec, op=MPI.MAX))
                errs["real"] = comm.allreduce(float(np.abs(xr - xd[0]).max()), op=MPI.MAX)
        med = {k: statistics.median(v) / iterations for k, v in times.items() if v}
        extra = {} if real is None else {
            "disropt_ms_per_it": 1e3 * med["real"],
            "speed-up_vs_disropt": med["real"] / med["dcnn"],
            "disropt_difference": errs["real"]}
        rows.append({"ranks": R, "d": d, "iterations": iterations, **extra,
                     "dcnn_ms_per_it": 1e3 * med["dcnn"],
                     "disropt_style_ms_per_it": 1e3 * med["disropt"],
                     "speed-up": med["disropt"] / med["dcnn"],
                     "dcnn_error": errs["dcnn"], "disropt_style_error": errs["disropt"],
                     "max_iterate_difference": errs["between"]})
    return rows if rank == 0 else []


def _disropt_runner(Xi, ti, *, M: int, R: int, rank: int, W, nbrs, iterations: int, comm):
    """disropt's own ``GradientTracking`` on this rank's ``f_i`` as a quadratic form
    ``x^T P x + q^T x`` (a callable returning the final ``x`` and the seconds), or None when
    disropt is not installed."""
    import importlib.util
    if importlib.util.find_spec("disropt") is None:
        return None
    from disropt.agents import Agent
    from disropt.algorithms import GradientTracking
    from disropt.functions import QuadraticForm, Variable
    from disropt.problems import Problem
    d = Xi.shape[1]
    P = Xi.T @ Xi / M + LAM / R * np.eye(d)
    q = (-2.0 * Xi.T @ ti / M).reshape(d, 1)

    def run():
        agent = Agent(in_neighbors=nbrs, out_neighbors=nbrs,
                      in_weights={j: W[rank, j] for j in [rank, *nbrs]})
        x = Variable(d)
        agent.set_problem(Problem(QuadraticForm(x, P, q)))
        alg = GradientTracking(agent, initial_condition=np.zeros((d, 1)))
        comm.Barrier()
        t0 = time.perf_counter()
        alg.run(iterations=iterations, stepsize=STEP)
        return alg.get_result().reshape(-1), time.perf_counter() - t0
    return run


def bench_agent_loop(agents=(16, 256), *, d: int = 100, rows_per_agent=(20, 200),
                     iterations: int = 100, reps: int = 3) -> list[dict]:
    """dcnn's stacked in-process GT against a per-agent Python loop, one process, for each
    agent count and shard size (``m`` rows per agent: few, where fixed costs dominate, and
    ``2 d``, where reading the data does)."""
    rows = []
    for n in agents:
        for m in rows_per_agent:
            rows.append(_agent_loop_row(n, d, m, iterations=iterations, reps=reps))
    return rows


def _agent_loop_row(n: int, d: int, m: int, *, iterations: int, reps: int) -> dict:
    from .comm import LocalNetwork
    X, t = _data(n, d, m)
    W = _ring_weights(n)
    nbrs = [np.flatnonzero(W[i]) for i in range(n)]
    M = n * m

    def grad(i, x):
        return 2.0 * X[i].T @ (X[i] @ x - t[i]) / M + 2.0 * LAM / n * x

    def per_agent(its):
        x = [np.zeros(d) for _ in range(n)]
        g = [grad(i, x[i]) for i in range(n)]
        y = [gi.copy() for gi in g]
        t0 = time.perf_counter()
        for _ in range(its):
            x_new = [sum(W[i, j] * x[j] for j in nbrs[i]) - STEP * y[i] for i in range(n)]
            g_new = [grad(i, x_new[i]) for i in range(n)]
            y = [sum(W[i, j] * y[j] for j in nbrs[i]) + g_new[i] - g[i] for i in range(n)]
            x, g = x_new, g_new
        return np.array(x), time.perf_counter() - t0

    times = {"dcnn": [], "loop": []}
    for _ in range(reps):
        xd, sec = _dcnn_gt(X, t, network=LocalNetwork(n), W=W, iterations=iterations)
        times["dcnn"].append(sec)
        xl, sec = per_agent(iterations)
        times["loop"].append(sec)
    # both take the same steps: their iterates agree to rounding
    agree = float(np.abs(xd - xl).max())
    med = {k: statistics.median(v) / iterations for k, v in times.items()}
    return {"agents": n, "d": d, "rows_per_agent": m, "data_MB": X.nbytes / 1e6,
            "dcnn_ms_per_it": 1e3 * med["dcnn"],
            "per_agent_loop_ms_per_it": 1e3 * med["loop"],
            "speed-up": med["loop"] / med["dcnn"], "max_iterate_difference": agree}

