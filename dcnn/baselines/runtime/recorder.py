"""The History of a parallel trainer: evaluations of the full model, identical on every rank.

Every trainer of :mod:`dcnn.baselines` (the engines and the schemes of
:data:`dcnn.baselines.SCHEMES`) records the same columns as the decentralized methods: at
``t = 0``, every ``eval_every`` steps and at the end it assembles the full flat parameter
vector (in :class:`dcnn.problems.FlatModel` order, the same on every rank) and evaluates it
with :func:`dcnn.metrics.evaluate` on the pooled problem. ``time_s`` is training time only and
``eval_time_s`` the evaluations', both the slowest rank's, and ``bytes_per_agent`` the busiest
rank's bytes (one all-reduce per record), so the History is identical on every rank.
:func:`make_evaluator` builds that evaluation; :func:`per_rank` and :func:`busiest` share a
rank's own numbers (bytes, messages) for the final ``info``, outside any traffic count.
"""
from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator

import torch
import torch.distributed as dist

from ...comm import LocalNetwork
from ...metrics import History, evaluate
from ...problems import FlatModel, LocalProblems, Regularizer
from .bootstrap import World

__all__ = ["Recorder", "make_evaluator", "per_rank", "busiest"]


def make_evaluator(*, module: torch.nn.Module, pooled: tuple, loss: str, task: str,
                   regularizer: Regularizer, test: tuple | None
                   ) -> Callable[[torch.Tensor], dict]:
    """``w -> metrics`` of the decentralized methods on the pooled problem (one agent)."""
    model = FlatModel(module, dtype=next(module.parameters()).dtype)
    problem = LocalProblems(model=model, shards=[pooled], loss=loss, task=task,
                            n_total=len(pooled[0]), regularizer=regularizer)
    network = LocalNetwork(1)
    test_t = None
    if test is not None:
        Xte = torch.as_tensor(test[0], dtype=model.dtype)
        Tte = torch.as_tensor(test[1], dtype=model.dtype).reshape(len(Xte), -1)
        test_t = (Xte, Tte)

    def metrics(w: torch.Tensor) -> dict:
        return evaluate(w.detach().cpu().to(model.dtype)[None], problem=problem,
                        network=network, test=test_t)

    return metrics


def per_rank(world: World, value: float) -> list[float]:
    """``value`` of every rank, in rank order (collective; measurement, not traffic)."""
    t = torch.zeros(world.size, dtype=torch.float64, device=world.device)
    t[world.rank] = float(value)
    dist.all_reduce(t)
    return t.tolist()


def busiest(world: World, *values: float) -> list[float]:
    """The largest of each value over the ranks (collective; measurement, not traffic)."""
    t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=world.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t.tolist()


class Recorder:
    """Times training, evaluates ``w`` and appends the records of one run.

    >>> # rec = Recorder(world, metrics=make_evaluator(...), desc="sil", progress=True)
    >>> # with rec.training(): ...one step...
    >>> # rec.record(t, w, bytes_per_agent=b, step_size=lr)
    """

    def __init__(self, world: World, *, metrics: Callable[[torch.Tensor], dict],
                 desc: str = "", progress: bool = False, total: int = 0):
        self.world, self.metrics = world, metrics
        self.history = History()
        self.step_time = self.eval_time = 0.0
        self.bar = None
        if progress and world.rank == 0:
            from tqdm.auto import tqdm
            self.bar = tqdm(total=total, desc=desc, leave=False)

    @contextlib.contextmanager
    def training(self, steps: int = 1) -> Iterator[None]:
        """Count the time inside as training time (and ``steps`` on the progress bar)."""
        t0 = time.perf_counter()
        yield
        self.step_time += time.perf_counter() - t0
        if self.bar is not None:
            self.bar.update(steps)

    def record(self, t: int, w: torch.Tensor | Callable[[], torch.Tensor], *,
               bytes_per_agent: float, step_size: float, **extra) -> dict:
        """Evaluate ``w`` (or ``w()``, timed as evaluation: a gather is part of it) and append
        the record of step ``t`` (collective: every rank calls it with the same ``t``).
        ``bytes_per_agent`` is what this rank has sent so far; the record holds the largest
        value over the ranks (the busiest worker)."""
        t0 = time.perf_counter()
        w = w() if callable(w) else w
        rec = self.metrics(w)
        self.eval_time += time.perf_counter() - t0
        slowest = torch.tensor([self.step_time, self.eval_time, float(bytes_per_agent)],
                               dtype=torch.float64, device=self.world.device)
        dist.all_reduce(slowest, op=dist.ReduceOp.MAX)
        train_s, eval_s, sent = slowest.tolist()
        rec.update(iteration=int(t), bytes_per_agent=sent,
                   step_size=float(step_size), time_s=train_s, eval_time_s=eval_s, **extra)
        self.history.append(rec)
        if self.bar is not None:
            self.bar.set_postfix(objective=f"{rec['objective']:.4g}")
        return rec

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
