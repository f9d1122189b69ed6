"""The two ways a built method runs: on the one loop, or as a parallel trainer.

:class:`LoopMethod` wraps an algorithm of :mod:`dcnn.algorithms` (``init``/``step`` on stacked
group state) and runs it with :func:`dcnn.algorithms.run_loop` (evaluation, History, guard,
progress, checkpoints). :class:`TrainerMethod` wraps a trainer of :mod:`dcnn.baselines`
(``train(exp, progress) -> (History, details)``), which forms its own process group and
records the same History columns; its final flat parameters become the state's ``X``.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from ..surrogates.timed import Stopwatch

__all__ = ["LoopMethod", "TrainerMethod", "TrainerState"]


@dataclass
class LoopMethod:
    """An algorithm of the one loop, with the values its builder resolved (``info``)."""

    algorithm: object
    info: dict = field(default_factory=dict)
    solve_watch: Stopwatch | None = None    # the local solver's time (surrogate methods)

    def execute(self, exp, *, progress: bool, checkpoints=None, resume=None, callbacks=()):
        from ..algorithms import run_loop
        return run_loop(self.algorithm, problem=exp.problem, network=exp.network,
                        topology=exp.topology, X0=exp.X0, iterations=exp.iterations,
                        callbacks=callbacks,
                        eval_every=exp.eval_every, test=exp.test, progress=progress,
                        checkpoints=checkpoints, resume=resume, blowup=exp.cfg.run.blowup)


@dataclass(frozen=True)
class TrainerState:
    """What a trainer leaves: the iteration count and the trained ``w`` as ``(1, P)``."""

    t: int
    X: torch.Tensor


@dataclass
class TrainerMethod:
    """A parallel trainer: ``train(exp, progress=...) -> (History, details)``, ``details``
    holding ``final_params`` (the flat vector) and what the report shows in ``engine``."""

    train: Callable
    info: dict = field(default_factory=dict)

    def execute(self, exp, *, progress: bool, checkpoints=None, resume=None):
        history, details = self.train(exp, progress=progress)
        details = dict(details)
        w = details.pop("final_params")
        self.info["engine"] = {**self.info.get("engine", {}), **details}
        return TrainerState(t=exp.iterations, X=w.reshape(1, -1)), history
