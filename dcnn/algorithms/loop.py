"""The one loop every algorithm runs in: ``init`` once, then ``step`` with ``W(t)``.

Evaluations (every ``eval_every`` iterations, and at the start and the end) are timed apart
from the steps. Callbacks get ``(state, record)`` after each evaluation and may return
``True`` to stop early. A progress bar is shown on rank 0 only. The network's byte counters
start from zero, so one network can serve several runs (`dcnn compare`).

Divergence guard (``guard=True``): after every step each rank checks that its agents' rows
of every per-agent state field (the state class's ``ROWS``: iterates, trackers, ...) and the
replicated tensors are finite, and one ``min`` all-reduce of two numbers tells every rank
the first offending (agent, quantity); the objective is checked at every evaluation (finite,
and at most ``blowup`` x (|U_0| + 1), ``run.blowup``: a run that grows without bound while
still finite is stopped too). The
run then stops on every rank at the same iteration with a :class:`~dcnn.errors.DivergenceError`
naming the agent, the quantity and the iteration, after saving the last finite state (the
one before that step) as a checkpoint when ``checkpoints`` is given.

Checkpoints (``checkpoints``, a :class:`~dcnn.checkpoint.Checkpointer`): every
``checkpoints.every`` iterations and at the end, after that iteration's evaluation, so the
saved History ends where the state does. ``resume`` (a loaded
:class:`~dcnn.checkpoint.Checkpoint`) continues from its iteration with its History and
counters, on the trajectory the uninterrupted run takes; no evaluation is repeated at the
resume point. Writing a checkpoint counts in neither ``time_s`` nor ``eval_time_s``; the guard
counts in ``time_s``.
"""
from __future__ import annotations

import math
import numbers
import time
from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np
import torch

from ..checkpoint import Checkpoint, Checkpointer, row_fields
from ..comm import Network
from ..errors import ConfigError, DivergenceError
from ..metrics import History, evaluate
from ..problems import LocalProblems
from ..topology import as_topology

__all__ = ["check_compatible", "check_X0", "check_run_args", "run_loop", "nonfinite",
           "local_codes", "verdict"]

# what the state fields are, for the divergence message
QUANTITIES = {"X": "iterate w", "Y": "tracker y", "G": "stored local gradient",
              "phi": "push-sum weight phi", "U": "push-sum numerator u",
              "v": "push-sum weight v", "X_prev": "previous iterate",
              "WX_prev": "mixed previous iterate", "G_prev": "previous local gradient",
              "g": "pooled gradient", "memory": "optimizer memory",
              "warm": "surrogate's warm start w~"}
_FIX = "lower algorithm.alpha0 (or algorithm.lr), or raise algorithm.tau"


def _kind(x: torch.Tensor) -> str:
    return "nan" if bool(torch.isnan(x).any()) else "inf"


def _checked(x) -> bool:
    """Whether ``x`` is a tensor that can hold a NaN or inf (floating, not empty)."""
    return isinstance(x, torch.Tensor) and x.is_floating_point() and x.numel() > 0


_NUMPY_FLOATS = (torch.float64, torch.float32, torch.float16)


def _all_finite(tensors, zeros: dict) -> bool:
    """Whether every entry is finite: ``x . 0`` is 0 for finite ``x`` and NaN otherwise, and
    BLAS's dot is several times faster than ``isfinite(x).all()`` (numpy's, on a CPU
    tensor's memory: a third of the fixed cost of torch's)."""
    total = 0.0
    for x in tensors:
        if x.is_cpu and x.dtype in _NUMPY_FLOATS:
            v = x.detach().numpy().ravel()
            zero = zeros.get(v.size)
            if zero is None or zero.dtype != v.dtype:
                zero = zeros[v.size] = np.zeros(v.size, dtype=v.dtype)
            total += np.dot(v, zero)
        else:
            total += float(torch.dot(x.reshape(-1), torch.zeros_like(x).reshape(-1)))
    return math.isfinite(total)


_FIELDS: dict = {}


def _fields(state) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The per-agent fields of ``state``'s class and the others (cached per class)."""
    cls = type(state)
    if cls not in _FIELDS:
        rows = row_fields(state)
        _FIELDS[cls] = rows, tuple(f for f in state.__dataclass_fields__ if f not in rows)
    return _FIELDS[cls]


def local_codes(state, *, problem: LocalProblems, network: Network,
                zeros: dict | None = None) -> list[float] | None:
    """What this process finds not finite in ``state``: ``None`` when every per-agent row and
    replicated tensor is finite, else two codes (``inf``: nothing), the lowest
    ``(agent, field, nan/inf)`` of its rows and the first replicated field, each one exactly
    representable number for a ``min`` all-reduce (:func:`verdict`). No communication.
    ``zeros``: a cache of zero vectors kept between calls."""
    rows, others = _fields(state)
    A, F = network.n_local, len(rows)
    tensors = []
    for name in rows + others:
        v = getattr(state, name)
        if isinstance(v, torch.Tensor):
            if v.is_floating_point() and v.numel():
                tensors.append(v)
        elif isinstance(v, (tuple, list)):
            tensors.extend(x for x in v if _checked(x))
    if _all_finite(tensors, {} if zeros is None else zeros):
        return None
    shared = [(f, getattr(state, f)) for f in others]
    codes = [math.inf, math.inf]
    for k, name in enumerate(rows):
        if not _checked(getattr(state, name)):
            continue
        T = getattr(state, name).reshape(A, -1)
        ok = torch.isfinite(T).all(1)
        if not bool(ok.all()):
            a = int((~ok).nonzero()[0, 0])
            code = 2 * (problem.agent_ids[a] * F + k) + (_kind(T[a]) == "inf")
            codes[0] = min(codes[0], code)
    for k, (name, value) in enumerate(shared):
        items = value if isinstance(value, (tuple, list)) else (value,)
        for item in items:
            if _checked(item) and not bool(torch.isfinite(item).all()):
                codes[1] = min(codes[1], 2 * k + (_kind(item) == "inf"))
    return codes


_FINITE = (math.inf, math.inf)
_NOTHING = torch.tensor(_FINITE, dtype=torch.float64)   # read only (sent, never written)


def verdict(codes, state) -> str | None:
    """The message for the all-reduced (``min``) :func:`local_codes` of every process, e.g.
    ``"agent 3: tracker y is not finite (nan)"`` (the lowest agent id, then the first field
    of ``ROWS``), or ``None`` when no process found anything."""
    rows, others = _fields(state)
    row_code, shared_code = (float(c) for c in codes)
    if math.isfinite(row_code):
        c = int(row_code)
        agent, k = divmod(c // 2, len(rows))
        return (f"agent {agent}: {QUANTITIES.get(rows[k], rows[k])} is not finite "
                f"({'inf' if c % 2 else 'nan'})")
    if math.isfinite(shared_code):
        c = int(shared_code)
        name = others[c // 2]
        return f"the {QUANTITIES.get(name, name)} is not finite ({'inf' if c % 2 else 'nan'})"
    return None


def nonfinite(state, *, problem: LocalProblems, network: Network,
              zeros: dict | None = None) -> str | None:
    """``None`` if every per-agent row and replicated tensor of ``state`` is finite on every
    process, else what is not (:func:`verdict`). Collective: one all-reduce of two numbers
    (none in a network of one process)."""
    codes = local_codes(state, problem=problem, network=network, zeros=zeros)
    if network.size == 1:
        return None if codes is None else verdict(codes, state)
    return verdict(network.allreduce(torch.tensor(codes or _FINITE, dtype=torch.float64),
                                     op="min").tolist(), state)


def check_X0(X0, *, problem: LocalProblems, network: Network) -> None:
    """``X0`` must be the group's initial iterates: a floating tensor of the model's dtype,
    shape ``(network.n_local, problem.n_params)``."""
    if not isinstance(network, Network):
        raise ConfigError(f"network must be a dcnn Network, got {network!r}; give "
                          "network = dcnn.LocalNetwork(n_agents) or dcnn.make_network(n_agents)")
    if not isinstance(problem, LocalProblems):
        raise ConfigError(f"problem must be a dcnn LocalProblems, got {type(problem).__name__}; "
                          "build it with dcnn.local_problems(...) or dcnn.LocalProblems(...)")
    A, P = network.n_local, problem.n_params
    dtype = problem.model.dtype
    fix = f"give X0 = w0.expand({A}, -1).clone() with w0 = problem.model.w0 ({dtype})"
    if not isinstance(X0, torch.Tensor):
        raise ConfigError(f"X0 must be a torch tensor of shape ({A}, {P}), got a "
                          f"{type(X0).__name__}; {fix}")
    if not X0.is_floating_point() or X0.dtype != dtype:
        raise ConfigError(f"X0 must have the model's dtype {dtype}, got {X0.dtype}; {fix}")
    if tuple(X0.shape) != (A, P):
        raise ConfigError(f"X0 must have shape ({A}, {P}) (this process's agents, the "
                          f"model's parameters), got {tuple(X0.shape)}; {fix}")
    if not bool(torch.isfinite(X0).all()):
        raise ConfigError(f"X0 holds NaN or inf values; {fix}")


def check_run_args(*, iterations, eval_every, test, problem: LocalProblems) -> None:
    """``iterations`` an integer >= 0, ``eval_every`` one >= 1, ``test`` None or ``(X, T)``:
    tensors of the model's dtype with as many rows each and the problem's feature and
    output widths."""
    for name, v, low in (("iterations", iterations, 0), ("eval_every", eval_every, 1)):
        if not isinstance(v, numbers.Integral) or isinstance(v, bool) or v < low:
            raise ConfigError(f"{name} = {v!r} must be an integer >= {low}")
    if test is None:
        return
    dtype = problem.model.dtype
    F, O = problem.X.shape[-1], problem.T.shape[-1]
    fix = f"give test = (X_test ({dtype}, n x {F}), T_test ({dtype}, n x {O}))"
    if not (isinstance(test, (tuple, list)) and len(test) == 2
            and all(isinstance(a, torch.Tensor) for a in test)):
        raise ConfigError(f"test must be a pair of torch tensors (X, T), got "
                          f"{type(test).__name__}; {fix}")
    X, T = test
    if X.dtype != dtype or T.dtype != dtype or X.dim() != 2 or T.dim() != 2 \
            or X.shape[1] != F or T.shape[1] != O or X.shape[0] != T.shape[0]:
        raise ConfigError(f"test = (X {tuple(X.shape)} {X.dtype}, T {tuple(T.shape)} "
                          f"{T.dtype}) does not fit the problem; {fix}")


def check_compatible(algorithm, *, topology, network: Network):
    """The topology ``run_loop`` will use, after refusing what ``algorithm`` cannot run on: a
    directed graph for an undirected method, a time-varying one for a static-only method. A
    dcnn topology passes through (agent count checked); a matrix or any object with
    ``weights(t)`` is wrapped and every ``W(t)`` validated. The runner calls it before it
    writes anything, so a refused run leaves an existing output folder untouched."""
    topology = as_topology(topology, n_agents=network.n_agents)
    if getattr(topology, "directed", False) and not getattr(algorithm, "directed_ok", False):
        raise ConfigError(f"algorithm {algorithm.name!r} needs an undirected graph (doubly "
                          f"stochastic weights) and the topology is directed; use "
                          f"algorithm.name = 'sonata' or 'push-diging' for directed graphs")
    if getattr(algorithm, "static_only", False) and not getattr(topology, "static", False):
        raise ConfigError(f"algorithm {algorithm.name!r} needs a static graph and the topology "
                          f"is time-varying; set topology.dynamic = 'static' or use "
                          f"algorithm.name = 'gt'")
    return topology


def run_loop(algorithm, *, problem: LocalProblems, network: Network, topology,
             X0: torch.Tensor, iterations: int, eval_every: int = 10,
             test: tuple[torch.Tensor, torch.Tensor] | None = None,
             callbacks: Sequence[Callable] = (), progress: bool = False,
             checkpoints: Checkpointer | None = None, resume: Checkpoint | None = None,
             guard: bool = True, blowup: float = 1e6):
    """Run ``algorithm`` for ``iterations`` steps; returns ``(final_state, History)``.

    ``topology`` is anything with ``weights(t) -> (N, N) array`` (row i = what agent i
    receives); a directed one (``topology.directed``) is refused unless
    ``algorithm.directed_ok``, a time-varying one (not ``topology.static``) if
    ``algorithm.static_only``. ``X0`` holds the group's initial iterates ``(A, P)``, a tensor
of the model's dtype (:func:`check_X0`).
    ``checkpoints`` (a :class:`~dcnn.checkpoint.Checkpointer`) writes checkpoints and the last
    finite state of a diverging run; ``resume`` (a :class:`~dcnn.checkpoint.Checkpoint`)
    continues a saved run; ``guard`` turns the divergence guard on (see the module docstring);
    ``blowup`` is its bound on the objective's growth (0: none).
    """
    check_X0(X0, problem=problem, network=network)
    check_run_args(iterations=iterations, eval_every=eval_every, test=test, problem=problem)
    if progress not in (True, False):
        raise ConfigError(f"progress = {progress!r} must be True or False")
    if not isinstance(blowup, numbers.Real) or isinstance(blowup, bool) or not (
            blowup == 0 or 1 < blowup < math.inf):
        raise ConfigError(f"blowup = {blowup!r} must be 0 (no bound) or a number > 1 (the "
                          "divergence guard stops a run whose objective passes blowup x "
                          "(|U_0| + 1))")
    topology = check_compatible(algorithm, topology=topology, network=network)
    network.reset_counters()
    with torch.no_grad():
        state = algorithm.init(problem, network, X0)
        if resume is not None:
            state = resume.restore(state, algorithm=algorithm, problem=problem,
                                   network=network)
    start = int(state.t)
    if start > iterations:
        raise ConfigError(f"run.iterations = {iterations} is below the checkpoint's iteration "
                          f"{start}; set run.iterations >= {start} to resume it")
    history = resume.history() if resume is not None else History()
    saved = resume.counters if resume is not None else {}
    bytes_offset = saved.get("bytes_sent", 0.0)
    # the modelled link's counters (dcnn.link): the same on every rank, no reduction needed
    link_offset = {k: saved.get(k, 0.0) for k in ("exchanges", "busiest_bytes")}
    step_time, eval_time = saved.get("step_time", 0.0), saved.get("eval_time", 0.0)
    bar = None
    if progress and network.rank == 0:
        from tqdm.auto import tqdm
        bar = tqdm(total=iterations, initial=start, desc=f"{algorithm.name}", leave=False)

    def bytes_sent() -> float:
        return bytes_offset + float(network.allreduce(
            torch.tensor([float(network.bytes_sent)], dtype=torch.float64))[0])

    def save(good, reason: str):
        return checkpoints.save(good, network=network, history=history,
                                counters={"bytes_sent": bytes_sent(), "step_time": step_time,
                                          "eval_time": eval_time, **link()}, reason=reason)

    def link() -> dict:
        return {k: link_offset[k] + getattr(network, k) for k in link_offset}

    def diverged(what: str, t: int, good):
        if good is None:
            where = "there is no earlier state to save"
        else:
            k = int(good.t)
            where = (f"the last finite state (iteration {k}) is in {save(good, 'divergence')}"
                     if checkpoints is not None else
                     f"the last finite state (iteration {k}) was not saved (no output folder)")
        raise DivergenceError(f"{what} at iteration {t}; {where}; {_FIX}")

    def record(state, good) -> bool:
        nonlocal eval_time
        t0 = time.perf_counter()
        rec = evaluate(state.X, problem=problem, network=network, test=test, check=not guard)
        eval_time += time.perf_counter() - t0
        if guard and not math.isfinite(rec["objective"]):
            diverged(f"the objective is not finite ({rec['objective']})", state.t, good)
        start = history.records[0]["objective"] if history.records else rec["objective"]
        if guard and blowup and rec["objective"] > blowup * (abs(start) + 1.0):
            diverged(f"the objective grew to {rec['objective']:.3g}, past run.blowup = "
                     f"{blowup:g} x (|U_0| + 1) with U_0 = {start:.4g}", state.t, good)
        rec.update(iteration=state.t, bytes_per_agent=bytes_sent() / network.n_agents,
                   step_size=state.alpha, time_s=step_time, eval_time_s=eval_time, **link())
        # every callback sees the record first (and may add its own metrics to it)
        stop = any([bool(cb(state, rec)) for cb in callbacks])
        history.append(rec)
        if bar is not None:
            bar.set_postfix(objective=f"{rec['objective']:.4g}",
                            test=f"{rec.get('test_metric', float('nan')):.4g}")
        return stop

    # On several processes the guard's verdict on a state (an all-reduce) is read one step
    # later, so that it overlaps that step instead of holding every process at the end of
    # each one, and at once before an evaluation, a checkpoint and the end. A process whose
    # own rows are not finite steps from the last verified state instead (same iteration,
    # same messages: a local solve on NaN could raise while the others wait for it in the
    # exchange); the late verdict discards that step, so every process stops at the same
    # iteration with the same message and last finite state as with an immediate verdict.
    deferred = guard and network.size > 1
    try:
        stop = False
        if resume is None:
            if guard:
                bad = nonfinite(state, problem=problem, network=network)
                if bad:
                    diverged(bad, start, None)
            stop = record(state, None)
        good = state          # the newest state known to be finite (states are immutable)
        zeros: dict = {}
        pending, local_ok = None, True     # deferred: the verdict on `state`, not read yet
        for t in range(start, iterations):
            if stop:
                break
            t0 = time.perf_counter()
            with torch.no_grad():
                src = state if local_ok else replace(good, t=state.t)
                new = algorithm.step(src, problem, network, topology.weights(t))
                codes = local_codes(new, problem=problem, network=network,
                                    zeros=zeros) if guard else None
                local_ok, late = codes is None, None
                if pending is not None:
                    late = verdict(pending.wait().tolist(), state)
                    pending = None
                    if not late:
                        good = state
                if deferred and not late:
                    pending = network.iallreduce(_NOTHING if codes is None else torch.tensor(
                        codes, dtype=torch.float64), op="min")
            step_time += time.perf_counter() - t0
            if late:
                diverged(late, int(state.t), good)
            prev, state = state, new
            if bar is not None:
                bar.update(1)
            scored = (t + 1) % eval_every == 0 or t + 1 == iterations
            keep = checkpoints is not None and checkpoints.due(t + 1, iterations)
            found = None if deferred else codes   # one process: its own codes are the verdict's
            if pending is not None and (scored or keep):
                t0 = time.perf_counter()
                found = pending.wait().tolist()
                pending = None
                step_time += time.perf_counter() - t0
            bad = verdict(found, state) if found is not None else None
            if bad:
                diverged(bad, int(state.t), prev)
            if scored:
                stop = record(state, prev)
            if pending is None:
                good = state
            if keep:
                save(state, "periodic")
    finally:
        if bar is not None:
            bar.close()
    return state, history
