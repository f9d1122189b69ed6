"""``dcnn bench``: performance measured as ratios within one run.

- ``dcnn bench mix`` (under ``mpiexec -n R``, one agent per rank on a ring): the time of
  ``MPINetwork.mix`` against a raw mpi4py exchange of the same bytes with the same neighbours
  (preallocated buffers, ``Isend``/``Irecv``/``Waitall``), and against the raw exchange plus
  the same weighted sum done by hand, for P = 1e4 .. 1e6.
- ``dcnn bench stacked`` (one process): NEXT-FL iterations per second of the stacked
  in-process backend against a plain per-agent Python loop over the same maths (per-agent
  autograd gradient, FL step, neighbour sums), for 8, 64 and 512 agents (``--agents``), on
  an MLP 10-16-1 or (``--model cnn``) the MNIST-1D CNN with cross-entropy.
- ``dcnn bench threads`` (one process): wall time of one local PL solve (``surrogate.solve``
  for a group of 2 agents, Jacobian or linearisation included) for P ~ 1e3 .. 1e5, unblocked
  on 2 intra-op threads against the block-Jacobi surrogate with 2 random blocks on 1 thread
  and on 2 threads (see :mod:`dcnn.surrogates.blocks`).
- ``dcnn bench solver`` (one process): wall time of one local PL step for 2 agents on each
  path (Cholesky, Woodbury, CG / Newton-CG; Jacobian included) for P ~ 1e2 .. 1e5, K/P ~ 0.1
  .. 10, squared loss and 10-class cross-entropy, against the path ``solver = "auto"`` picks
  by the cost model of :mod:`dcnn.surrogates.costs`; ``dcnn bench costs`` measures that model's
  constants on this machine.
- ``dcnn bench memory`` (one process): the peak-memory growth of one matrix-free PL step on
  a ~1e5-parameter MLP, next to the sizes of the formed Jacobian and of a ``P x P`` matrix.
- ``dcnn bench bubbles`` (under ``mpiexec -n R``, one pipeline stage per rank, two with the
  interleaved schedule): the measured bubble of GPipe, 1F1B and interleaved 1F1B
  (:class:`~dcnn.baselines.engines.pipeline.PipelineEngine`) at equal micro-batch counts
  ``m = 1, 2, 4, 8, 16`` on the same MLP and batch, next to ``(p-1)/(m+p-1)`` and
  ``(p-1)/(2m+p-1)``, with the time per step.
- ``dcnn bench local-window`` (under ``mpiexec -n R``): local parallelism with one unit (or
  chunk) per rank, ms per tick with receives posted ``window`` ticks ahead (a rank may start
  tick ``s`` once the next has finished ``s - window``) against ``window = 1`` (neighbouring
  ranks in step); the result is the same.
- ``dcnn bench scaling`` (one process): seconds per NEXT-PL iteration of the stacked backend
  and the PL solver that ran, against P (MLPs, P ~ 1e3 .. 1e5, 8 agents) and against the
  number of agents (the MNIST-1D CNN, 8 .. 128 agents); and the time of ``tau = "auto"``.
"""
from __future__ import annotations

import copy
import csv
import itertools
import json
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

__all__ = ["bench_mix", "bench_stacked", "bench_threads", "bench_solver", "bench_costs",
           "bench_scaling", "main"]


def _ring(n: int) -> np.ndarray:
    W = np.eye(n)
    if n > 1:
        W = np.zeros((n, n))
        for i in range(n):
            for j in {(i - 1) % n, (i + 1) % n} - {i}:
                W[i, j] = 1.0 / 3.0
            W[i, i] = 1.0 - W[i].sum()
    return W


def mpi_world(what: str):
    """``(COMM_WORLD, size, rank, MPINetwork with one agent per rank)`` for the benchmark
    ``what``, which needs at least two MPI ranks (a one-line exit otherwise)."""
    from mpi4py import MPI

    from .comm.mpi import MPINetwork
    comm = MPI.COMM_WORLD
    R, rank = comm.Get_size(), comm.Get_rank()
    if R < 2:
        raise SystemExit(f"dcnn bench {what} needs MPI ranks: mpiexec -n 2 dcnn bench {what}")
    return comm, R, rank, MPINetwork(R)


def bench_mix(sizes=(1_000, 10_000, 100_000, 1_000_000), reps: int = 30) -> list[dict]:
    """Collective: run on every rank; returns rows on rank 0 (others get [])."""
    from mpi4py import MPI
    comm, R, rank, net = mpi_world("mix")
    W = _ring(R)
    nbrs = sorted({(rank - 1) % R, (rank + 1) % R} - {rank})
    rows = []
    for P in sizes:
        x = torch.randn(1, P, dtype=torch.float64)
        xn = x.numpy()
        bufs = {j: np.empty(P) for j in nbrs}
        w_self, w_nb = W[rank, rank], {j: W[rank, j] for j in nbrs}

        def raw(combine: bool):
            reqs = [comm.Irecv(bufs[j], source=j, tag=5) for j in nbrs]
            reqs += [comm.Isend(xn, dest=j, tag=5) for j in nbrs]
            # blocking on purpose: the baseline is hand-written mpi4py. A polled wait with a
            # deadline measured 4-8 ms instead of 0.2-0.3 ms at 4 ranks on 2 cores (MPICH's
            # Waitall yields the core better): a stuck rank hangs this benchmark until Ctrl-C
            MPI.Request.Waitall(reqs)
            if combine:
                out = w_self * xn
                for j in nbrs:
                    out += w_nb[j] * bufs[j]
                return out

        fns = {"mix": lambda: net.mix(x, W), "raw": lambda: raw(False),
               "raw+sum": lambda: raw(True)}
        times = {k: [] for k in fns}
        for _ in range(3):  # warm-up
            for f in fns.values():
                f()
        for _ in range(reps):
            for k, f in fns.items():  # interleaved, so drifts hit all three alike
                comm.Barrier()
                t0 = time.perf_counter()
                f()
                dt = time.perf_counter() - t0
                times[k].append(comm.allreduce(dt, op=MPI.MAX))
        med = {k: statistics.median(v) for k, v in times.items()}
        diff = float(np.abs(net.mix(x, W).numpy()[0] - raw(True)).max())
        rows.append({"ranks": R, "P": P, "mix_ms": 1e3 * med["mix"],
                     "raw_ms": 1e3 * med["raw"], "raw_sum_ms": 1e3 * med["raw+sum"],
                     "mix/raw": med["mix"] / med["raw"],
                     "mix/raw+sum": med["mix"] / med["raw+sum"],
                     "max_difference": comm.allreduce(diff, op=MPI.MAX)})
    return rows if rank == 0 else []


def _synthetic(n_agents: int, m: int, d: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n_agents * m, d, generator=g, dtype=torch.float64)
    y = torch.tanh(X @ torch.randn(d, 1, generator=g, dtype=torch.float64))
    return X, y


def _synthetic_classes(n_agents: int, m: int, d: int, classes: int, seed: int = 0):
    """Inputs ``(n m, d)`` and one-hot targets of the class a random linear map ranks first."""
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n_agents * m, d, generator=g, dtype=torch.float64)
    labels = (X @ torch.randn(d, classes, generator=g, dtype=torch.float64)).argmax(1)
    return X, torch.nn.functional.one_hot(labels, classes).to(torch.float64)


STACKED_MODELS = ("mlp", "cnn")


def _stacked_case(model: str, n: int, m: int, *, d: int, hidden: int):
    """The module, data and loss of ``dcnn bench stacked`` for ``n`` agents of ``m`` samples:
    ``"mlp"`` d -> hidden -> 1 with squared loss on a tanh regression, ``"cnn"`` the MNIST-1D
    CNN (40 features, 10 classes, 5,210 parameters) with cross-entropy on synthetic classes."""
    from .errors import ConfigError
    from .problems import cnn, mlp
    if model == "mlp":
        X, T = _synthetic(n, m, d)
        return mlp(n_inputs=d, hidden=[hidden], n_outputs=1, seed=0), X, T, "squared", \
            "regression"
    if model == "cnn":
        X, T = _synthetic_classes(n, m, 40, 10)
        return cnn(n_inputs=40, n_outputs=10, seed=0), X, T, "cross_entropy", "multiclass"
    raise ConfigError(f"model {model!r} is unknown; choose one of: {', '.join(STACKED_MODELS)}")


def bench_stacked(agents=(8, 64, 512), *, model: str = "mlp", m: int = 16, d: int = 10,
                  hidden: int = 16, seconds: float = 2.0) -> list[dict]:
    """NEXT-FL iterations per second, stacked backend against a per-agent loop (same
    iterates, checked to 1e-10 after 3 iterations), on ``model`` (see :func:`_stacked_case`;
    ``d`` and ``hidden`` size the MLP)."""
    from .algorithms import Constant, Next
    from .comm import LocalNetwork
    from .problems import FlatModel, LocalProblems, make_regularizer
    from .surrogates import FL
    from .topology import make_topology

    rows = []
    for n in agents:
        module, X, y, loss, task = _stacked_case(model, n, m, d=d, hidden=hidden)
        fm = FlatModel(module)
        reg = make_regularizer("l2", lam=1e-3)
        shards = [(X[i * m:(i + 1) * m], y[i * m:(i + 1) * m]) for i in range(n)]
        prob = LocalProblems(model=fm, shards=shards, loss=loss, task=task,
                             n_total=n * m, regularizer=reg)
        net = LocalNetwork(n)
        topo = make_topology(graph="erdos_renyi", n=n, dynamic="static", seed=0)
        W = topo.weights(0)
        tau, alpha = 10.0, 0.5
        algo = Next(surrogate=FL(tau=tau), schedule=Constant(alpha))

        def stacked_run(seconds, min_iters):
            state = algo.init(prob, net, fm.w0.expand(n, -1).clone())
            k, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < seconds or k < min_iters:
                with torch.no_grad():
                    state = algo.step(state, prob, net, W)
                k += 1
            return k / (time.perf_counter() - t0), state.X

        def loop_run(seconds, min_iters):
            # the same NEXT-FL maths, one agent at a time, with plain autograd
            nbrs = [np.flatnonzero(W[i]) for i in range(n)]

            def grad(i, w):
                w = w.clone().requires_grad_(True)
                out, t = fm.apply(w, shards[i][0]), shards[i][1]
                # g_i = (1/M) sum_k loss_k, M = n m the pooled size (dcnn.problems.losses)
                if loss == "squared":
                    value = ((t - out) ** 2).sum() / (n * m)
                else:
                    value = -(t * torch.log_softmax(out, dim=-1)).sum() / (n * m)
                (g,) = torch.autograd.grad(value, w)
                return g

            xs = [fm.w0.clone() for _ in range(n)]
            gs = [grad(i, xs[i]) for i in range(n)]
            ys = [g.clone() for g in gs]
            k, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < seconds or k < min_iters:
                zs = []
                for i in range(n):
                    b = n * ys[i]
                    xt = (tau * xs[i] - b) / (tau + 2 * reg.l2)
                    zs.append(xs[i] + alpha * (xt - xs[i]))
                new_x = [sum(W[i, j] * zs[j] for j in nbrs[i]) for i in range(n)]
                new_y = [sum(W[i, j] * ys[j] for j in nbrs[i]) for i in range(n)]
                new_g = [grad(i, new_x[i]) for i in range(n)]
                ys = [new_y[i] + new_g[i] - gs[i] for i in range(n)]
                xs, gs = new_x, new_g
                k += 1
            return k / (time.perf_counter() - t0), torch.stack(xs)

        # both paths compute the same iterates (else the comparison would be meaningless)
        diff = float((stacked_run(0.0, 3)[1] - loop_run(0.0, 3)[1]).abs().max())
        if not diff <= 1e-10:
            raise RuntimeError(f"stacked and per-agent NEXT-FL disagree by {diff:.3g}")
        s_rate, _ = stacked_run(seconds, 3)
        l_rate, _ = loop_run(seconds, 2)
        rows.append({"model": model, "agents": n, "params": fm.n_params,
                     "stacked_it_per_s": s_rate, "loop_it_per_s": l_rate,
                     "speedup": s_rate / l_rate, "max_abs_diff_3_its": diff})
    return rows


# (label, hidden layers, samples per agent, loss, PL solver); inputs d = 20, one output
THREAD_CASES = (
    ("P~1e3 K>P", (40,), 2000, "squared", "auto"),
    ("P~1e3", (40,), 200, "squared", "auto"),
    ("P~1e4", (100, 80), 200, "squared", "auto"),
    ("P~1e4 CE", (100, 80), 200, "cross_entropy", "auto"),
    ("P~1e4 free", (100, 80), 200, "squared", "cg"),
    ("P~3e4", (150, 150), 200, "squared", "auto"),
    ("P~1e5 free", (310, 310), 200, "squared", "cg"),
)
QUICK_THREAD_CASES = ("P~1e3 K>P", "P~1e4", "P~1e4 free")


def bench_threads(cases=THREAD_CASES, *, agents: int = 2, threads: int = 2, reps: int = 5,
                  d: int = 20) -> list[dict]:
    """Median wall time of one ``solve`` (cold start, the Jacobian formed inside) of

    (a) ``PL`` with ``threads`` intra-op threads (and, for reference, with one; and as one
        block through the block machinery, which matrix-free means products through one
        shared autograd linearisation instead of ``jvp``/``vjp``),
    (b) ``Blocked(PL)`` with ``threads`` random blocks, run one after the other on 1 thread,
    (c) the same blocks on ``threads`` threads (1 intra-op thread each),

    interleaved ``reps`` times. (b) and (c) are first checked to agree to 1e-12.
    """
    from .problems import FlatModel, LocalProblems, make_regularizer, mlp
    from .surrogates import PL, Blocked, make_blocks

    n_threads = torch.get_num_threads()
    rows = []
    try:
        for label, hidden, m, loss, solver in cases:
            X, y = _synthetic(agents, m, d, seed=1)
            T = y if loss == "squared" else (y > 0).to(y.dtype)
            model = FlatModel(mlp(n_inputs=d, hidden=hidden, n_outputs=1, seed=0))
            shards = [(X[i * m:(i + 1) * m], T[i * m:(i + 1) * m]) for i in range(agents)]
            prob = LocalProblems(model=model, shards=shards, loss=loss,
                                 task="regression" if loss == "squared" else "binary",
                                 n_total=agents * m,
                                 regularizer=make_regularizer("l2", lam=1e-3))
            g = torch.Generator().manual_seed(2)
            V = model.w0 + 0.1 * torch.randn(agents, model.n_params, generator=g,
                                             dtype=torch.float64)
            G = prob.gradients(V)
            Pi = 0.01 * torch.randn(V.shape, generator=g, dtype=torch.float64)
            base = PL(tau=1.0, solver=solver, inner_tol=1e-8)
            blocks = make_blocks(model, "random", n_blocks=threads, seed=0)
            variants = {   # name: (surrogate, intra-op threads)
                "pl": (base, threads), "pl_1thr": (base, 1),
                "one_blk": (Blocked(base, [torch.arange(model.n_params)], threads=1), threads),
                "blk_serial": (Blocked(base, blocks, threads=1), 1),
                "blk_par": (Blocked(base, blocks, threads=threads), threads)}

            def once(name):
                sur, n = variants[name]
                torch.set_num_threads(n)
                memory = sur.init_memory(prob, V)    # cold start: no warm start
                t0 = time.perf_counter()
                with torch.no_grad():
                    W, memory = sur.update(prob, V, G, Pi, alpha=1.0, memory=memory)
                return time.perf_counter() - t0, W, memory.inner

            out = {k: once(k) for k in variants}          # warm-up, and the results
            diff = float((out["blk_serial"][1] - out["blk_par"][1]).abs().max())
            scale = max(1.0, float(out["blk_par"][1].abs().max()))
            if not diff <= 1e-12 * scale:
                raise RuntimeError(f"{label}: blocks on 1 and {threads} threads disagree by "
                                   f"{diff:.3g}")
            times = {k: [] for k in variants}
            for _ in range(reps):
                for k in variants:             # interleaved, so drifts hit all alike
                    times[k].append(once(k)[0])
            med = {k: statistics.median(v) for k, v in times.items()}
            its = {k: "-" if out[k][2] is None else int(out[k][2].iterations.max())
                   for k in ("pl", "blk_par")}
            rows.append({
                "case": label, "P": model.n_params, "K": m, "loss": loss,
                "path": "matrix-free" if base.matrix_free(prob) else "formed J",
                "inner_its_pl/blk": f"{its['pl']}/{its['blk_par']}",
                "pl_2thr_ms": 1e3 * med["pl"], "pl_1thr_ms": 1e3 * med["pl_1thr"],
                "1blk_2thr_ms": 1e3 * med["one_blk"],
                "blk_serial_ms": 1e3 * med["blk_serial"], "blk_2thr_ms": 1e3 * med["blk_par"],
                "serial/2thr": med["blk_serial"] / med["blk_par"],
                "pl/blk_2thr": med["pl"] / med["blk_par"],
                "max_abs_diff_1_vs_2": diff, "load_1min": os.getloadavg()[0]})
    finally:
        torch.set_num_threads(n_threads)
    return rows


def _mlp_problem(hidden, m: int, O: int, *, agents: int = 2, d: int = 20, reg: str = "l2"):
    """``agents`` shards of ``m`` samples for an MLP ``d -> hidden -> O``: squared loss on a
    tanh teacher (``O = 1``), else cross-entropy on the argmax classes of a linear teacher."""
    from .problems import FlatModel, LocalProblems, make_regularizer, mlp
    g = torch.Generator().manual_seed(1)
    X = torch.randn(agents * m, d, generator=g, dtype=torch.float64)
    teacher = X @ torch.randn(d, O, generator=g, dtype=torch.float64)
    if O == 1:
        T, loss, task = torch.tanh(teacher), "squared", "regression"
    else:
        T = torch.nn.functional.one_hot(teacher.argmax(1), O).to(torch.float64)
        loss, task = "cross_entropy", "multiclass"
    model = FlatModel(mlp(n_inputs=d, hidden=hidden, n_outputs=O, seed=0))
    return LocalProblems(model=model, shards=[(X[i * m:(i + 1) * m], T[i * m:(i + 1) * m])
                                              for i in range(agents)],
                         loss=loss, task=task, n_total=agents * m,
                         regularizer=make_regularizer(reg, lam=1e-3))


def _median_time(fn, reps: int, *, long: float = 2.0) -> float:
    """Median wall time of ``fn()`` over ``reps`` calls after one warm-up call; a warm-up
    that takes over ``long`` seconds is the time itself (one call)."""
    t0 = time.perf_counter()
    fn()
    first = time.perf_counter() - t0
    if first > long:
        return first
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


# (label, hidden layers, samples per agent, outputs); inputs d = 20, 2 agents. O = 1: squared
# loss, O = 10: cross-entropy. Samples give K/P = 0.1, 1, 10 (K = samples x outputs); at P ~ 1e4
# and 1e5 the larger K/P are left out (one CG step alone takes minutes at K/P = 1, P ~ 1e5).
SOLVER_CASES = (
    ("P~1e2", (4,), 9, 1), ("P~1e2", (4,), 89, 1), ("P~1e2", (4,), 890, 1),
    ("P~1e3", (40,), 88, 1), ("P~1e3", (40,), 881, 1), ("P~1e3", (40,), 8810, 1),
    ("P~1e4", (100, 80), 1026, 1), ("P~1e4", (100, 80), 10261, 1),
    ("P~1e5", (310, 310), 1000, 1),
    ("P~1e2", (4,), 2, 10), ("P~1e2", (4,), 13, 10), ("P~1e2", (4,), 134, 10),
    ("P~1e3", (40,), 12, 10), ("P~1e3", (40,), 125, 10), ("P~1e3", (40,), 1250, 10),
    ("P~1e4", (100, 80), 110, 10), ("P~1e4", (100, 80), 1100, 10),
    ("P~1e5", (310, 310), 100, 10), ("P~1e5", (310, 310), 1060, 10),
)
QUICK_SOLVER_CASES = (("tiny", (4,), 9, 1), ("tiny", (4,), 3, 10))
SOLVER_CAP_S = 40.0          # a path predicted slower than this is not timed
SOLVER_CAP_BYTES = 2 * 2**30   # nor one whose formed J would exceed this


def bench_solver(cases=SOLVER_CASES, *, agents: int = 2, reps: int = 3, tau: float = 1.0,
                 cap_s: float = SOLVER_CAP_S, cap_bytes: int = SOLVER_CAP_BYTES) -> list[dict]:
    """Wall time of one local PL step (``PL(tau, solver).update`` from a cold memory, the
    Jacobian formed inside where the path forms it; median of ``reps`` after a warm-up, or the
    warm-up alone past 2 s) on each path, Cholesky, Woodbury and CG (Newton-CG for
    cross-entropy), next to the path ``solver = "auto"`` picks: ``auto/best`` is its time over
    the fastest path's. A path is skipped when the cost model predicts over ``cap_s`` or its
    ``J`` would exceed ``cap_bytes`` (the table gives the prediction then); ``pred_*_ms`` are
    the model's predictions for every path, ``cg_its`` the CG (Newton, for cross-entropy)
    iterations."""
    from .surrogates import PL
    from .surrogates.costs import choose_solver, problem_shapes, step_costs

    rows = []
    for label, hidden, m, O in cases:
        prob = _mlp_problem(hidden, m, O, agents=agents)
        P, K = prob.n_params, m * O
        g = torch.Generator().manual_seed(2)
        V = prob.model.w0 + 0.1 * torch.randn(agents, P, generator=g, dtype=torch.float64)
        with torch.no_grad():
            G = prob.gradients(V)
        Pi = 0.01 * torch.randn(V.shape, generator=g, dtype=torch.float64)
        shapes = problem_shapes(prob)
        predicted = step_costs(**{k: v for k, v in shapes.items() if k != "itemsize"})
        auto = choose_solver(**shapes)
        row = {"case": label, "loss": prob.loss, "P": P, "M": m, "K": K, "K/P": K / P}
        times, answers, its = {}, {}, "-"
        for solver in ("cholesky", "woodbury", "cg"):
            if predicted[solver] > cap_s or (
                    solver != "cg" and agents * K * P * 8 > cap_bytes):
                row[f"{solver}_ms"] = f"skipped ({1e3 * predicted[solver]:.3g} predicted)"
                continue
            pl = PL(tau=tau, solver=solver)

            def step():
                with torch.no_grad():
                    out = pl.update(prob, V, G, Pi, alpha=1.0,
                                    memory=pl.init_memory(prob, V))
                answers[solver] = out
            with warnings.catch_warnings():   # a forced slow path warns: expected here
                warnings.simplefilter("ignore", UserWarning)
                times[solver] = _median_time(step, reps)
            row[f"{solver}_ms"] = 1e3 * times[solver]
            inner = answers[solver][1].inner
            if solver == "cg" and inner is not None:
                its = int(inner.iterations.max())
        best = min(times, key=times.get)
        W = [a[0] for a in answers.values()]
        ratio = times[auto] / times[best] if auto in times else float("nan")
        row.update({"cg_its": its, "auto": auto, "best": best, "auto/best": ratio,
                    # the paths' steps against the first one's (CG: to the inner tolerance)
                    "max_abs_diff": max(float((w - W[0]).abs().max()) for w in W),
                    **{f"pred_{k}_ms": 1e3 * v for k, v in predicted.items()}})
        rows.append(row)
    return rows


def bench_costs(*, agents: int = 2, reps: int = 5) -> list[dict]:
    """The constants of the cost model (:data:`dcnn.surrogates.costs.COSTS`, with
    :data:`~dcnn.surrogates.costs.CLOSED_FORM` for the MLPs timed) measured on this machine
    with the current threads: fixed costs on a 89-parameter MLP with 8 samples per
    agent, per-entry costs on a 10,261-parameter one with 1000, next to the model's values."""
    from .surrogates.costs import CLOSED_FORM, COSTS

    def timed(fn):
        with torch.no_grad():
            return _median_time(fn, reps)
    out = {}
    for name, hidden, m in (("small", (4,), 8), ("large", (100, 80), 1000)):
        prob = _mlp_problem(hidden, m, 1, agents=agents)
        P = prob.n_params
        V = prob.model.w0.expand(agents, -1).clone()
        D, E = torch.randn(agents, P, dtype=torch.float64), torch.randn(agents, m,
                                                                         dtype=torch.float64)
        J = prob.jacobians(V)
        out[name] = {"J": timed(lambda: prob.jacobians(V)),
                     "pair": timed(lambda: (prob.jvp(V, D), prob.vjp(V, E))),
                     "mv": timed(lambda: (J @ D[..., None], J.transpose(1, 2) @ E[..., None]))
                     / 2, "entries": agents * m * P}
    small, large = out["small"], out["large"]
    A = torch.randn(agents, 1000, 2000, dtype=torch.float64)
    gram = timed(lambda: A.transpose(1, 2) @ A)
    H = A.transpose(1, 2) @ A + 2000 * torch.eye(2000, dtype=torch.float64)
    chol = timed(lambda: torch.linalg.cholesky(H))
    F = agents * 2 * 1000 * 2000 ** 2 / gram
    measured = {
        "F": F, "c_J": small["J"], "e_J": (large["J"] - small["J"]) / large["entries"],
        "c_p": small["pair"], "e_p": (large["pair"] - small["pair"]) / large["entries"],
        "e_mv": large["mv"] / large["entries"],
        "F_cholesky/F": agents * 2000 ** 3 / 3 / chol / F}
    # MLPs: their Jacobians and products come in closed form
    model = {**COSTS, **CLOSED_FORM, "F_cholesky/F": 0.5}
    return [{"constant": k, "measured": v, "model": model[k],
             "measured/model": v / model[k]} for k, v in measured.items()]


# (label, hidden layers) of the MLPs timed against P: 20 inputs, one output, squared loss
SCALING_MLPS = (("P~1e3", (40,)), ("P~1e4", (100, 80)), ("P~1e5", (310, 310)))
SCALING_AGENTS = (8, 16, 32, 64, 128)
QUICK_SCALING = (("P~1e3", "P~1e4"), (8, 16))


def pl_solver_label(surrogate, problem) -> str:
    """The linear solver a PL step runs on ``problem`` (:meth:`PL.resolved_solver`), with
    ``"newton/"`` in front where the loss is not squared (the solver then runs inside each
    Newton step)."""
    from .surrogates.pl import is_least_squares
    solver = surrogate.resolved_solver(problem)
    return solver if is_least_squares(problem) else f"newton/{solver}"


def _time_next_pl(prob, n: int, *, reps: int, tau: float = 1.0, alpha: float = 0.5) -> dict:
    """Seconds per NEXT-PL iteration (median of ``reps`` after one warm-up iteration) with a
    fixed ``tau``, and, apart, the seconds of the ``tau = "auto"`` curvature estimate."""
    from .algorithms import Constant, Next
    from .comm import LocalNetwork
    from .surrogates import PL
    from .topology import make_topology

    net = LocalNetwork(n)
    W = make_topology(graph="erdos_renyi", n=n, dynamic="static", seed=0).weights(0)
    X0 = prob.model.w0.expand(n, -1).clone()
    surrogate = PL(tau=tau)
    algo = Next(surrogate=surrogate, schedule=Constant(alpha))
    with torch.no_grad():
        state = algo.step(algo.init(prob, net, X0), prob, net, W)    # the warm-up iteration
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            state = algo.step(state, prob, net, W)
            times.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    PL(tau="auto").init_memory(prob, X0, network=net, alpha0=alpha)
    tau_s = time.perf_counter() - t0
    return {"solver": pl_solver_label(surrogate, prob), "s_per_it": statistics.median(times),
            "tau_auto_s": tau_s}


def bench_scaling(mlps=SCALING_MLPS, agents=SCALING_AGENTS, *, reps: int = 5,
                  mlp_agents: int = 8, mlp_samples: int = 32, cnn_samples: int = 32
                  ) -> list[dict]:
    """Seconds per NEXT-PL iteration of the stacked in-process backend (``tau = 1``,
    ``alpha = 0.5``, static Erdos-Renyi graph, l2 ``1e-3``) and the PL solver that ran,

    (a) against ``P``: the MLPs 20 -> hidden -> 1 of ``mlps`` (squared loss, synthetic tanh
        regression) with ``mlp_agents`` agents of ``mlp_samples`` samples;
    (b) against the number of agents: the MNIST-1D CNN (5,210 parameters, cross-entropy,
        40 synthetic features, 10 classes) with ``cnn_samples`` samples per agent.

    Each row also times the ``tau = "auto"`` estimate (30 Hessian-vector products), apart.
    """
    from .problems import FlatModel, LocalProblems, cnn, make_regularizer, mlp

    reg = make_regularizer("l2", lam=1e-3)
    cases = []    # (sweep, model label, agents, samples per agent, module, X, T, loss, task)
    for label, hidden in mlps:
        n, m = mlp_agents, mlp_samples
        X, y = _synthetic(n, m, 20, seed=1)
        cases.append(("P", f"mlp {label}", n, m, mlp(n_inputs=20, hidden=hidden, n_outputs=1,
                                                    seed=0), X, y, "squared", "regression"))
    for n in agents:
        m = cnn_samples
        X, T = _synthetic_classes(n, m, 40, 10, seed=1)
        cases.append(("agents", "cnn", n, m, cnn(n_inputs=40, n_outputs=10, seed=0), X, T,
                      "cross_entropy", "multiclass"))
    rows = []
    for sweep, label, n, m, module, X, T, loss, task in cases:
        model = FlatModel(module)
        prob = LocalProblems(model=model, shards=[(X[i * m:(i + 1) * m], T[i * m:(i + 1) * m])
                                                  for i in range(n)],
                             loss=loss, task=task, n_total=n * m, regularizer=reg)
        rows.append({"sweep": sweep, "model": label, "agents": n, "params": model.n_params,
                     "samples_per_agent": m, "loss": loss,
                     **_time_next_pl(prob, n, reps=reps), "threads": torch.get_num_threads(),
                     "load_1min": os.getloadavg()[0]})
    return rows


BUBBLE_SCHEDULES = ("gpipe", "1f1b", "interleaved")


def _square_mlp(*, width: int, layers: int, batch: int, steps: int):
    """``(X, T, module)`` of the engine benchmarks: ``batch`` random samples ``width`` wide
    (inputs and targets) and an MLP of ``layers`` Linear layers ``width`` wide, float32;
    ``steps`` must leave a timed step after the untimed first."""
    from .errors import ConfigError
    from .problems import mlp

    if steps < 2:
        raise ConfigError(f"steps = {steps}: the first step is not timed; give at least 2")
    g = torch.Generator().manual_seed(0)
    X = torch.randn(batch, width, generator=g)
    T = torch.randn(batch, width, generator=g)
    module = mlp(n_inputs=width, hidden=[width] * (layers - 1), n_outputs=width, seed=0,
                 dtype=torch.float32)
    return X, T, module


def bench_bubbles(microbatches=(1, 2, 4, 8, 16), *, width: int = 512, layers: int = 8,
                  batch: int = 4096, steps: int = 6) -> list[dict]:
    """Collective (every rank of the launch): for each schedule and micro-batch count, the
    pipeline engine on an MLP of ``layers`` Linear layers ``width`` wide (squared loss,
    float32, ``batch`` samples) takes ``steps`` steps (the first untimed); the row holds the
    measured bubble (mean over ranks of ``1 - stage compute / step time``), the formula and
    the milliseconds per step. A combination the schedule refuses is a row with its reason.
    Rows on rank 0 (others get [])."""
    from .baselines.engines.pipeline import PipelineEngine
    from .baselines.runtime.bootstrap import process_group
    from .errors import ConfigError, LaunchError

    X, T, module = _square_mlp(width=width, layers=layers, batch=batch, steps=steps)
    rows = []
    with process_group() as world:
        for schedule in BUBBLE_SCHEDULES:
            for m in microbatches:
                row = {"schedule": schedule, "ranks": world.size, "m": m}
                try:
                    engine = PipelineEngine(world=world, module=module, shards=[(X, T)],
                                            loss="squared", schedule=schedule,
                                            microbatches=m)
                except (ConfigError, LaunchError) as exc:
                    rows.append({**row, "stages": "-", "bubble_theory": "-",
                                 "bubble_measured": "-", "ms_per_step": "-",
                                 "note": str(exc).split(";")[0]})
                    continue
                for step in range(steps):
                    engine.backward(step)
                info = engine.info()
                per = info["bubble_per_rank"]
                rows.append({**row, "stages": info["stages"],
                             "bubble_theory": info["bubble_fraction"],
                             "bubble_measured": info["bubble_measured"],
                             "ms_per_step": 1e3 * max(info["step_s_per_rank"])
                             / info["timed_steps"],
                             "note": "per rank " + ", ".join(f"{b:.3f}" for b in per)})
                del engine
    return rows if world.rank == 0 else []


def bench_local_window(windows=(1, 4), *, width: int = 512, layers: int = 8,
                       batch: int = 1024, ticks: int = 30, reps: int = 3) -> list[dict]:
    """Collective (every rank of the launch): local parallelism with one unit per rank
    (greedy, overlapping) or one chunk of two blocks per rank (chunked) on an MLP of
    ``layers`` Linear layers ``width`` wide (squared loss, float32, ``batch`` samples, Adam),
    ``ticks`` ticks between barriers per run, each ``window`` in turn, ``reps`` rounds (one
    untimed round first); the row holds the median milliseconds per tick and the speed-up of
    each window over ``window = 1`` (neighbouring ranks in step). Rows on rank 0."""
    import torch.distributed as dist

    from .baselines.runtime.bootstrap import process_group
    from .baselines.runtime.traffic import Traffic
    from .baselines.schemes.local_parallel import LocalPipeline, plan_units

    X, T, module = _square_mlp(width=width, layers=layers, batch=batch, steps=2)
    rows = []
    with process_group() as world:
        R = world.size
        for mode, stages, chunk in (("greedy", R, 1), ("overlapping", R, 1),
                                    ("chunked", 2 * R, 2)):
            if stages > layers:
                continue
            specs = plan_units(module, stages=stages, local_mode=mode, chunk=chunk)
            times = {w: [] for w in windows}
            for rep in range(reps + 1):
                for w in windows:
                    pipe = LocalPipeline(world=world, traffic=Traffic(world), module=module,
                                         shards=[(X, T)], specs=specs, local_mode=mode,
                                         iterations=ticks, optimizer="adam", lr=1e-4,
                                         window=w)
                    dist.barrier()
                    t0 = time.perf_counter()
                    for t in range(ticks):
                        pipe.step(t)
                    pipe.settle()
                    dist.barrier()
                    if rep:
                        times[w].append((time.perf_counter() - t0) / ticks)
                    del pipe
            base = float(np.median(times[windows[0]]))
            for w in windows:
                ms = float(np.median(times[w]))
                rows.append({"mode": mode, "ranks": R, "units": len(specs), "window": w,
                             "ms_per_tick": 1e3 * ms, "speedup": base / ms})
    return rows if world.rank == 0 else []


def grids(ranks: int) -> list[tuple[int, int, int]]:
    """Every ``(dp, tp, pp)`` with ``dp tp pp = ranks``, pipeline-heavy first.

    >>> grids(4)
    [(1, 1, 4), (1, 2, 2), (2, 1, 2), (1, 4, 1), (2, 2, 1), (4, 1, 1)]
    """
    out = [(dp, tp, ranks // (dp * tp)) for dp in range(1, ranks + 1)
           for tp in range(1, ranks + 1) if ranks % (dp * tp) == 0]
    return sorted(out, key=lambda g: (-g[2], g[0]))


def _token_transformer(*, width: int, batch: int, steps: int):
    """``(X, T, module)``: ``batch`` random samples of 16 tokens of 16 features, 10 targets,
    and a one-block transformer ``width`` wide (heads of width 16, feed-forward 4 x width),
    float32."""
    from .problems import transformer

    X, _, _ = _square_mlp(width=256, layers=1, batch=batch, steps=steps)
    T = torch.randn(batch, 10, generator=torch.Generator().manual_seed(1))
    module = transformer(n_inputs=256, n_outputs=10, tokens=16, d_model=width,
                         heads=max(1, width // 16), ffn=4 * width, seed=0, dtype=torch.float32)
    return X, T, module


def bench_ptdp(*, width: int = 256, layers: int = 8, batch: int = 512, microbatches: int = 4,
               schedule: str | None = None, steps: int = 4,
               shapes: int | None = None, model: str = "mlp") -> list[dict]:
    """Collective (every rank of the launch): PTD-P at every ``(dp, tp, pp)`` of the launch's
    ranks on an MLP of ``layers`` Linear layers ``width`` wide (``model = "transformer"``: the
    one-block transformer of :func:`_token_transformer`, ``layers`` unused; squared loss,
    float32, ``batch`` samples, ``microbatches`` per replica, ``schedule``: by default
    interleaved for the MLP, 1F1B for the transformer, whose four parts make at most four
    stages), ``steps`` steps
    each (the first untimed; ``shapes``: only the first so many grids): bytes per worker and
    step by mesh axis (computed from the scheme), the
    milliseconds per step (measured between barriers: the schedule and the data-parallel
    all-reduce) and the measured bubble. A grid the
    engine refuses is a row with its reason. Rows on rank 0 (others get [])."""
    import torch.distributed as dist

    from .baselines.engines.pipeline import PTDPEngine
    from .baselines.runtime.bootstrap import process_group
    from .errors import ConfigError, LaunchError

    if model == "transformer":
        X, T, module = _token_transformer(width=width, batch=batch, steps=steps)
        schedule = schedule or "1f1b"
    else:
        schedule = schedule or "interleaved"
        X, T, module = _square_mlp(width=width, layers=layers, batch=batch, steps=steps)
    rows = []
    with process_group() as world:
        for dp, tp, pp in grids(world.size)[:shapes]:
            row = {"dp": dp, "tp": tp, "pp": pp}
            try:
                engine = PTDPEngine(world=world, module=module, shards=[(X, T)],
                                    loss="squared", schedule=schedule,
                                    microbatches=microbatches, dp=dp, tp=tp, pp=pp)
            except (ConfigError, LaunchError) as exc:
                rows.append({**row, "stages": "-", "MB_pp": "-", "MB_tp": "-", "MB_dp": "-",
                             "MB_total": "-", "ms_per_step": "-", "bubble_measured": "-",
                             "note": str(exc).split(";")[0]})
                continue
            engine.backward(0)                  # allocates: not timed
            dist.barrier()
            t0 = time.perf_counter()
            for step in range(1, steps):
                engine.backward(step)
            dist.barrier()
            ms = 1e3 * (time.perf_counter() - t0) / (steps - 1)
            info = engine.info()
            axes = {k: info["bytes_by_axis"].get(k, 0.0) / 1e6 for k in ("pp", "tp", "dp")}
            rows.append({**row, "stages": info["stages"], **{f"MB_{k}": v for k, v in
                                                            axes.items()},
                         "MB_total": info["bytes_per_step"] / 1e6, "ms_per_step": ms,
                         "bubble_measured": info["bubble_measured"], "note": ""})
            del engine
    return rows if world.rank == 0 else []


def _world_size() -> int:
    from .comm import launched_by_mpi
    if not launched_by_mpi():
        return 1
    from mpi4py import MPI
    return MPI.COMM_WORLD.Get_size()


def _print(rows: list[dict], out: str | None) -> None:
    """The rows as a markdown table; with ``out``, as JSON (``*.json``) or CSV there."""
    if not rows:
        return
    keys = list(rows[0])
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for r in rows:
        print("| " + " | ".join(f"{r[k]:.3g}" if isinstance(r[k], float) else str(r[k])
                                for k in keys) + " |")
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        with open(out, "w", newline="") as fh:
            if out.endswith(".json"):
                json.dump(rows, fh, indent=1)
                fh.write("\n")
            else:
                w = csv.DictWriter(fh, fieldnames=keys)
                w.writeheader()
                w.writerows(rows)
    sys.stdout.flush()


def _rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _release_heap(*, fixed_mmap: bool = False) -> None:
    """Return freed heap to the system (glibc ``malloc_trim``); ``fixed_mmap``: serve every
    allocation of 64 KiB or more from its own mapping, returned when freed (a fixed
    ``M_MMAP_THRESHOLD`` instead of glibc's growing one), so runs measured one after another
    in one process do not reuse each other's freed memory unseen."""
    import ctypes
    import gc
    gc.collect()
    try:
        libc = ctypes.CDLL("libc.so.6")
        if fixed_mmap:
            libc.mallopt(-3, 64 * 1024)              # M_MMAP_THRESHOLD
        libc.malloc_trim(0)
    except OSError:
        pass


def _peak_growth(work) -> tuple[float, object]:
    """``(peak RSS growth in bytes, work())``: a thread samples ``/proc/self/statm`` every
    millisecond while ``work`` runs, from the RSS after :func:`_release_heap`."""
    import threading

    _release_heap()
    base, peak, done = _rss_bytes(), [0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], _rss_bytes())
            time.sleep(0.001)

    watcher = threading.Thread(target=sample)
    watcher.start()
    try:
        out = work()
    finally:
        done.set()
        watcher.join()
    return max(peak[0] - base, 0), out


SPLIT_MEMORY_METHODS = ("unsplit", "sil", "pipeline-gpipe")


def bench_split_memory(*, width: int = 1024, layers: int = 6, batches=(256, 4096),
                       n_inputs: int = 784, classes: int = 10, steps: int = 3,
                       microbatches: int = 4, rounds: int = 2) -> list[dict]:
    """Collective (every rank of the launch): the peak resident-memory growth of each worker
    while it builds and trains (``steps`` Adam steps, float32, softmax cross-entropy on
    ``batch`` random samples of ``n_inputs`` features and ``classes`` classes, for each
    ``batch`` of ``batches``) the MLP of ``layers`` Linear layers ``width`` wide:
    ``"unsplit"`` (every rank trains the whole model alone, plain backpropagation),
    ``"sil"`` (the model in one part per rank, each trained against its codes, no
    communication) and ``"pipeline-gpipe"`` (one stage per rank, ``microbatches``
    micro-batches). Each run is measured from the RSS after freed memory is returned to the
    system (allocations of 64 KiB or more have their own mappings, so the runs do not reuse
    each other's memory); beside it the count of
    :func:`~dcnn.baselines.schemes.sil_codes.memory_bytes` (SIL's parts and the unsplit model)
    and the bytes the worker sent. The three run ``rounds`` times in turn (the first round
    also pays PyTorch's one-time allocations). Rows on rank 0 (others get []): one per
    batch, round, method and rank."""
    import torch.distributed as dist

    from .baselines.engines.engine import EngineTrainer
    from .baselines.engines.pipeline import PipelineEngine
    from .baselines.runtime.bootstrap import process_group
    from .baselines.runtime.update import make_optimizer
    from .baselines.schemes.sil import SIL
    from .baselines.schemes.sil_codes import memory_bytes, part_specs
    from .problems import make_regularizer, mlp

    _release_heap(fixed_mmap=True)
    module = mlp(n_inputs=n_inputs, hidden=[width] * (layers - 1), n_outputs=classes, seed=0,
                 dtype=torch.float32)
    reg, lr = make_regularizer("none"), 1e-3
    rows = []
    with process_group() as world:
        for batch in batches:
            g = torch.Generator().manual_seed(0)
            X = torch.randn(batch, n_inputs, generator=g)
            T = torch.nn.functional.one_hot(torch.randint(classes, (batch,), generator=g),
                                            classes).float()
            whole = memory_bytes(part_specs(module, 1), batch=batch, optimizer="adam",
                                 itemsize=4)["total"]

            def unsplit():
                model = copy.deepcopy(module)
                opt = make_optimizer(list(model.parameters()), name="adam", lr=lr)
                for _ in range(steps):
                    opt.zero_grad()
                    torch.nn.functional.cross_entropy(model(X), T.argmax(1)).backward()
                    opt.step()
                return {"sent": 0, "computed": whole}

            def sil():
                trainer = SIL(world=world, module=module, shards=[(X, T)],
                              stages=max(world.size, 2), loss="cross_entropy",
                              task="multiclass", regularizer=reg, optimizer="adam", lr=lr,
                              batch_size=None, noise=0.1, seed=0, iterations=steps,
                              recovery=0)
                for t in range(steps):
                    trainer.step(t)
                mem = [m["total"] for m in trainer.info()["memory_breakdown_per_rank"]]
                return {"sent": trainer.bytes_sent, "computed": mem[world.rank]}

            def pipeline():
                engine = PipelineEngine(world=world, module=module, shards=[(X, T)],
                                        loss="cross_entropy", schedule="gpipe",
                                        microbatches=microbatches)
                trainer = EngineTrainer(engine, regularizer=reg, optimizer="adam", lr=lr)
                for t in range(steps):
                    trainer.step(t)
                return {"sent": trainer.bytes_sent, "computed": float("nan")}

            for rnd, (name, work) in itertools.product(
                    range(1, rounds + 1), zip(SPLIT_MEMORY_METHODS, (unsplit, sil, pipeline))):
                dist.barrier()
                peak, out = _peak_growth(work)
                _release_heap()
                every = [None] * world.size
                dist.all_gather_object(every, [peak, float(out["sent"]), out["computed"]])
                for r, (p, sent, computed) in enumerate(every):
                    rows.append({"batch": batch, "round": rnd, "method": name, "rank": r,
                                 "ranks": world.size, "peak_rss_growth_MB": p / 1e6,
                                 "computed_MB": computed / 1e6, "sent_MB": sent / 1e6})
    return rows if world.rank == 0 else []


def bench_memory(*, hidden=(310, 310), m: int = 200, d: int = 20, agents: int = 2) -> list[dict]:
    """Peak resident-memory growth during one matrix-free PL step on a ~1e5-parameter MLP
    (squared + l2, ``solver = "auto"``, which goes matrix-free because ``J`` would exceed the
    budget), next to what the formed ``J`` and a ``P x P`` matrix would take.

    Freed heap memory is first returned to the system (glibc ``malloc_trim``), then a thread
    samples ``/proc/self/statm`` every millisecond during the solve (Linux only)."""
    from .problems import FlatModel, LocalProblems, make_regularizer, mlp
    from .surrogates import PL
    from .surrogates.pl import jacobian_bytes

    X, y = _synthetic(agents, m, d, seed=1)
    model = FlatModel(mlp(n_inputs=d, hidden=hidden, n_outputs=1, seed=0))
    prob = LocalProblems(model=model, shards=[(X[i * m:(i + 1) * m], y[i * m:(i + 1) * m])
                                              for i in range(agents)],
                         loss="squared", task="regression", n_total=agents * m,
                         regularizer=make_regularizer("l2", lam=1e-3))
    V = model.w0.expand(agents, -1).clone()
    G, Pi = prob.gradients(V), torch.zeros_like(V)
    surrogate = PL(tau=1.0)
    if not surrogate.matrix_free(prob):
        raise RuntimeError("the memory benchmark expects the matrix-free path")
    def solve() -> float:
        t0 = time.perf_counter()
        surrogate.solve(prob, V, G, Pi, alpha=0.5)
        return time.perf_counter() - t0

    growth, seconds = _peak_growth(solve)
    P = model.n_params
    return [{"params": P, "agents": agents, "samples_per_agent": m, "solve_s": seconds,
             "peak_rss_growth_MB": growth / 1e6,
             "iterates_MB": agents * P * 8 / 1e6,
             "formed_J_MB": jacobian_bytes(prob) / 1e6,
             "PxP_per_agent_MB": P * P * 8 / 1e6}]


def main(args) -> int:
    from .runner import configure_threads

    configure_threads(0, ranks=_world_size(), fill_cores=True)
    if args.what == "mix":
        sizes = (1_000, 10_000) if args.quick else (1_000, 10_000, 100_000, 1_000_000)
        _print(bench_mix(sizes, reps=5 if args.quick else 30), args.out)
    elif args.what == "solver":
        cases = QUICK_SOLVER_CASES if args.quick else SOLVER_CASES
        _print(bench_solver(cases, reps=1 if args.quick else 3), args.out)
    elif args.what == "costs":
        _print(bench_costs(reps=2 if args.quick else 5), args.out)
    elif args.what == "memory":
        _print(bench_memory(), args.out)
    elif args.what == "threads":
        cases = [c for c in THREAD_CASES if c[0] in QUICK_THREAD_CASES] if args.quick \
            else THREAD_CASES
        _print(bench_threads(cases, reps=3 if args.quick else 7), args.out)
    elif args.what == "bubbles":
        if args.quick:
            rows = bench_bubbles((1, 2), width=16, layers=4, batch=8, steps=2)
        else:
            rows = bench_bubbles()
        _print(rows, args.out)
    elif args.what == "split-memory":
        if args.quick:
            rows = bench_split_memory(width=64, batches=(64,), n_inputs=32, steps=2, rounds=1)
        else:
            rows = bench_split_memory()
        _print(rows, args.out)
    elif args.what == "local-window":
        if args.quick:
            rows = bench_local_window(width=16, layers=4, batch=8, ticks=4, reps=1)
        else:
            rows = bench_local_window()
        _print(rows, args.out)
    elif args.what == "ptdp":
        if args.model == "cnn":
            from .errors import ConfigError
            raise ConfigError("dcnn bench ptdp: --model cnn is not split by ptd-p; use "
                              "--model mlp or --model transformer")
        if args.quick:
            tfm = args.model == "transformer"
            rows = bench_ptdp(width=32 if tfm else 8, layers=8, batch=16, steps=2, shapes=3,
                              microbatches=4 if tfm else 2, model=args.model)
        else:
            rows = bench_ptdp(model=args.model)
        _print(rows, args.out)
    elif args.what == "disropt":
        from .bench_baselines import bench_disropt
        rows = bench_disropt((4,), iterations=200, reps=1) if args.quick else bench_disropt()
        _print(rows, args.out)
    elif args.what == "agent-loop":
        from .bench_baselines import bench_agent_loop
        rows = (bench_agent_loop(args.agents or (16,), rows_per_agent=(20,), iterations=20,
                                 reps=1) if args.quick
                else bench_agent_loop(args.agents or (16, 256)))
        _print(rows, args.out)
    elif args.what == "scaling":
        mlps, agents = SCALING_MLPS, SCALING_AGENTS
        if args.quick:
            mlps = [c for c in SCALING_MLPS if c[0] in QUICK_SCALING[0]]
            agents = QUICK_SCALING[1]
        _print(bench_scaling(mlps, args.agents or agents, reps=2 if args.quick else 5),
               args.out)
    else:
        agents = args.agents or ((8, 64) if args.quick else (8, 64, 512))
        _print(bench_stacked(agents, model=args.model, seconds=0.3 if args.quick else 2.0),
               args.out)
    return 0
