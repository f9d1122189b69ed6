"""The one loop every algorithm runs in: ``init`` once, then ``step`` with ``W(t)``.

Evaluations (every ``eval_every`` iterations, and at the start and the end) are timed apart
from the steps. Callbacks get ``(state, record)`` after each evaluation and may return
``True`` to stop early. A progress bar is shown on rank 0 only. The network's byte counters
start from zero, so one network can serve several runs (`dcnn compare`).
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import torch

from ..comm import Network
from ..errors import ConfigError
from ..metrics import History, evaluate
from ..problems import LocalProblems

__all__ = ["run_loop"]


def run_loop(algorithm, *, problem: LocalProblems, network: Network, topology,
             X0: torch.Tensor, iterations: int, eval_every: int = 10,
             test: tuple[torch.Tensor, torch.Tensor] | None = None,
             callbacks: Sequence[Callable] = (), progress: bool = False):
    """Run ``algorithm`` for ``iterations`` steps; returns ``(final_state, History)``.

    ``topology`` is anything with ``weights(t) -> (N, N) array`` (row i = what agent i
    receives); a directed one (``topology.directed``) is refused unless
    ``algorithm.directed_ok``, a time-varying one (not ``topology.static``) if
    ``algorithm.static_only``. ``X0`` holds the group's initial iterates ``(A, P)``.
    """
    if getattr(topology, "directed", False) and not getattr(algorithm, "directed_ok", False):
        raise ConfigError(f"algorithm {algorithm.name!r} needs an undirected graph (doubly "
                          f"stochastic weights) and the topology is directed; use "
                          f"algorithm.name = 'sonata' or 'push-diging' for directed graphs")
    if getattr(algorithm, "static_only", False) and not getattr(topology, "static", False):
        raise ConfigError(f"algorithm {algorithm.name!r} needs a static graph and the topology "
                          f"is time-varying; set topology.dynamic = 'static' or use "
                          f"algorithm.name = 'gt'")
    history = History()
    network.reset_counters()
    bar = None
    if progress and network.rank == 0:
        from tqdm.auto import tqdm
        bar = tqdm(total=iterations, desc=f"{algorithm.name}", leave=False)
    with torch.no_grad():
        state = algorithm.init(problem, network, X0)
    step_time = eval_time = 0.0

    def record(state) -> bool:
        nonlocal eval_time
        t0 = time.perf_counter()
        rec = evaluate(state.X, problem=problem, network=network, test=test)
        eval_time += time.perf_counter() - t0
        bytes_per_agent = float(network.allreduce(
            torch.tensor([float(network.bytes_sent)], dtype=torch.float64))[0]) / network.n_agents
        rec.update(iteration=state.t, bytes_per_agent=bytes_per_agent,
                   step_size=state.alpha, time_s=step_time, eval_time_s=eval_time)
        history.append(rec)
        if bar is not None:
            bar.set_postfix(objective=f"{rec['objective']:.4g}",
                            test=f"{rec.get('test_metric', float('nan')):.4g}")
        return any(bool(cb(state, rec)) for cb in callbacks)

    stop = record(state)
    for t in range(iterations):
        if stop:
            break
        t0 = time.perf_counter()
        with torch.no_grad():
            state = algorithm.step(state, problem, network, topology.weights(t))
        step_time += time.perf_counter() - t0
        if bar is not None:
            bar.update(1)
        if (t + 1) % eval_every == 0 or t + 1 == iterations:
            stop = record(state)
    if bar is not None:
        bar.close()
    return state, history
