"""The one training loop of every baseline, and the interface a trainer implements.

A :class:`Trainer` is this rank's wiring of one engine or scheme, built in a formed process
group (construction is its ``init``), with

- :meth:`Trainer.step` ``(t)``: training step ``t`` (collective: every rank calls it with the
  same ``t``); the gradient of the step's cost, then the update of
  :func:`~dcnn.baselines.runtime.update.apply_update` on every tensor it trains. A scheme with
  phases (SIL's recovery, codistillation's burn-in) switches on ``t`` inside it;
- :meth:`Trainer.parameters`: the delivered model's full flat vector in
  :class:`dcnn.problems.FlatModel` order, identical on every rank (collective);
- :attr:`Trainer.bytes_sent`: the bytes this rank has sent so far, counted by
  :class:`~dcnn.baselines.runtime.traffic.Traffic` or computed from the scheme (engines);
- :meth:`Trainer.info`: what the report shows about the layout (may be collective).

:func:`run_trainer` runs ``iterations`` steps and records the model at ``t = 0``, every
``eval_every`` steps and at the end with :class:`~dcnn.baselines.runtime.recorder.Recorder`;
:func:`train_in_world` forms the process group around it and frees the trainer while the group
is still alive.
"""
from __future__ import annotations

import datetime
import gc
from abc import ABC, abstractmethod
from collections.abc import Callable

import torch

from ...metrics import History
from .bootstrap import DEFAULT_TIMEOUT, World, process_group
from .recorder import Recorder

__all__ = ["Trainer", "run_trainer", "train_in_world"]


class Trainer(ABC):
    """This rank's part of one baseline (see the module docstring)."""

    method: str
    world: World
    lr: float

    @abstractmethod
    def step(self, t: int) -> None:
        """Training step ``t``: gradient, regulariser, optimiser, prox (collective)."""

    @abstractmethod
    def parameters(self) -> torch.Tensor:
        """The delivered model's flat vector ``(P,)``, the same on every rank (collective)."""

    @property
    @abstractmethod
    def bytes_sent(self) -> float:
        """Bytes this rank has sent for training so far (evaluations not counted)."""

    def settle(self) -> None:
        """Finish the messages still in flight (called before an evaluation's collectives)."""

    def info(self) -> dict:
        """What the report shows about the layout (called once, after the last step, on
        every rank: it may gather)."""
        return {"method": self.method, "world_size": self.world.size,
                "launcher": self.world.launcher, "backend": self.world.backend}

    def close(self) -> None:
        """Free what holds the process group (subgroups); called before it is destroyed."""


def run_trainer(trainer: Trainer, *, metrics: Callable[[torch.Tensor], dict], iterations: int,
                eval_every: int = 10, progress: bool = False) -> tuple[History, dict]:
    """Train ``trainer`` for ``iterations`` steps; ``(History, info)`` on every rank.

    ``info`` is :meth:`Trainer.info` plus ``iterations``, ``time_s`` (training, the slowest
    rank's), ``eval_time_s``, ``time_per_step_s`` and ``final_params`` (the flat vector, a
    tensor: drop it before writing ``info`` as JSON).
    """
    rec = Recorder(trainer.world, metrics=metrics, desc=trainer.method, progress=progress,
                   total=iterations)
    w = None

    def gather() -> torch.Tensor:
        nonlocal w
        w = trainer.parameters()
        return w

    def record(t: int) -> None:
        rec.record(t, gather, bytes_per_agent=trainer.bytes_sent, step_size=trainer.lr)

    record(0)
    for t in range(iterations):
        due = (t + 1) % eval_every == 0 or t + 1 == iterations
        with rec.training():
            trainer.step(t)
            if due:
                trainer.settle()
        if due:
            record(t + 1)
    rec.close()
    last = rec.history.last
    info = {**trainer.info(), "iterations": iterations, "time_s": last["time_s"],
            "eval_time_s": last["eval_time_s"],
            "time_per_step_s": last["time_s"] / iterations if iterations else float("nan"),
            "final_params": w}
    return rec.history, info


def train_in_world(build: Callable[[World], Trainer], *, metrics: Callable[[torch.Tensor], dict],
                   iterations: int, eval_every: int = 10, progress: bool = False,
                   backend: str = "auto", device: str = "cpu",
                   timeout: datetime.timedelta = DEFAULT_TIMEOUT) -> tuple[History, dict]:
    """Form the process group (:func:`~dcnn.baselines.runtime.bootstrap.process_group`),
    ``build(world)`` this rank's trainer (world-dependent checks first, identical on every
    rank) and :func:`run_trainer` it."""
    with process_group(backend=backend, device=device, timeout=timeout) as world:
        trainer = build(world)
        try:
            return run_trainer(trainer, metrics=metrics, iterations=iterations,
                               eval_every=eval_every, progress=progress)
        finally:
            # free the trainer (DDP's reducer, pipeline stages, DTensors, subgroups) while
            # its process group is alive, also after a divergence: destroyed after the
            # group, DDP's reducer hung now and then on 4 ranks
            trainer.close()
            del trainer
            gc.collect()
