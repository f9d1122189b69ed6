"""The interface a PyTorch engine implements, and the trainer that drives it.

An :class:`Engine` is wiring only: this rank's part of the model as PyTorch's engine wants it
(a DDP replica, pipeline stages, tensor-parallel shards), its trainable tensors ``params``,
and three collective operations: :meth:`Engine.backward` (fill ``p.grad`` with this rank's
part of the gradient of the step's data cost), :meth:`Engine.flat_parameters` and
:meth:`Engine.flat_gradients` (the full flat vectors in :class:`dcnn.problems.FlatModel`
order, identical on every rank). :class:`EngineTrainer` makes any engine a
:class:`~dcnn.baselines.runtime.trainer.Trainer`: one step ``t`` is

    g_t = engine.backward(t);   w <- apply_update(w; g_t)

(:func:`~dcnn.baselines.runtime.update.apply_update`: SGD with the prox of an l1 part, or
Adam; the update of ``centralized-gd``, :mod:`dcnn.algorithms.centralized`, so the two agree),
run by the one loop :func:`~dcnn.baselines.runtime.trainer.run_trainer`. ``g_t`` is the
gradient of the data cost of step ``t``: the full batch, or an unbiased mini-batch estimate.

``bytes_per_agent`` of the History is ``t * engine.bytes_per_step``: bytes sent per worker,
*computed* from the communication scheme of the engine, not measured.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

import torch

from ...metrics import History
from ...problems import Regularizer
from ..runtime.bootstrap import World
from ..runtime.trainer import Trainer, run_trainer
from ..runtime.update import add_regularizer_grad_, apply_update, make_optimizer, smooth_part

__all__ = ["Engine", "EngineTrainer", "compute_gradients", "run_engine"]


class Engine(ABC):
    """This rank's wiring of one engine (see the module docstring)."""

    method: str
    world: World
    params: list[torch.Tensor]
    bytes_per_step: float

    @abstractmethod
    def backward(self, step: int) -> None:
        """Set ``p.grad`` (zeroed first) of every tensor of ``params`` to this rank's part
        of the gradient of step ``step``'s data cost (collective)."""

    @abstractmethod
    def flat_parameters(self) -> torch.Tensor:
        """The full flat parameter vector ``(P,)`` on every rank (collective)."""

    @abstractmethod
    def flat_gradients(self) -> torch.Tensor:
        """The full flat gradient ``(P,)`` of the last :meth:`backward` (collective)."""

    def info(self) -> dict:
        """What the report shows about the layout (world size, mapping, bytes per step)."""
        return {"method": self.method, "world_size": self.world.size,
                "launcher": self.world.launcher, "backend": self.world.backend,
                "bytes_per_step": self.bytes_per_step,
                "bytes_note": "bytes are computed from the communication scheme, not measured"}

    def _zero_grads(self) -> None:
        for p in self.params:
            p.grad = None


def compute_gradients(engine: Engine, *, regularizer: Regularizer, step: int) -> None:
    """``p.grad`` = this rank's part of ``g_t + grad r_smooth`` (the gradient
    :class:`EngineTrainer` steps on; for tests and diagnostics)."""
    engine.backward(step)
    for p in engine.params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    add_regularizer_grad_(engine.params, smooth_part(regularizer))


class EngineTrainer(Trainer):
    """An :class:`Engine` with its optimiser and regulariser: one :meth:`step` is the
    engine's backward, then :func:`~dcnn.baselines.runtime.update.apply_update`."""

    def __init__(self, engine: Engine, *, regularizer: Regularizer, optimizer: str = "sgd",
                 lr: float = 0.1):
        self.engine, self.regularizer = engine, regularizer
        self.method, self.world = engine.method, engine.world
        self.optimizer, self.lr = optimizer, lr
        self.opt = make_optimizer(engine.params, name=optimizer, lr=lr)
        self.steps = 0

    def step(self, t: int) -> None:
        self.engine.backward(t)
        apply_update(self.engine.params, self.opt, self.regularizer, self.lr)
        self.steps += 1

    def parameters(self) -> torch.Tensor:
        return self.engine.flat_parameters()

    @property
    def bytes_sent(self) -> float:
        return self.steps * self.engine.bytes_per_step

    def info(self) -> dict:
        return {**self.engine.info(), "optimizer": self.optimizer, "lr": self.lr}


def run_engine(engine: Engine, *, metrics: Callable[[torch.Tensor], dict],
               regularizer: Regularizer, iterations: int, optimizer: str = "sgd",
               lr: float = 0.1, eval_every: int = 10, progress: bool = False
               ) -> tuple[History, dict]:
    """Train ``engine`` for ``iterations`` steps with :func:`run_trainer`; ``(History,
    info)``, ``info`` being :meth:`Engine.info` plus ``optimizer``, ``lr`` and the loop's
    ``iterations``, ``time_s``, ``eval_time_s``, ``time_per_step_s``, ``final_params``."""
    trainer = EngineTrainer(engine, regularizer=regularizer, optimizer=optimizer, lr=lr)
    return run_trainer(trainer, metrics=metrics, iterations=iterations, eval_every=eval_every,
                       progress=progress)
