"""The one training loop of the engine baselines, and the interface an engine implements.

An :class:`Engine` is wiring only: this rank's part of the model as PyTorch's engine wants it
(a DDP replica, pipeline stages, tensor-parallel shards), its trainable tensors ``params``,
and three collective operations: :meth:`Engine.backward` (fill ``p.grad`` with this rank's
part of the gradient of the step's data cost), :meth:`Engine.flat_parameters` and
:meth:`Engine.flat_gradients` (the full flat vectors in :class:`dcnn.problems.FlatModel`
order, identical on every rank). The optimiser, the regulariser and the loop live here, once.

One iteration ``t`` (``eta`` = ``lr``, ``g_t`` = the engine's gradient of the data cost of
step ``t``: the full batch, or an unbiased mini-batch estimate):

    SGD:   w <- prox_{eta r_1}(w - eta (g_t + grad r_2(w)))    (r = r_1 (l1) + r_2 (l2);
                                                           without l1 the prox is the identity)
    Adam:  torch.optim.Adam on g_t + grad r(w)                (r smooth only)

(the update of ``centralized-gd``, :mod:`dcnn.algorithms.centralized`, so the two agree).

Evaluations (at ``t = 0``, every ``eval_every`` steps and at the end) gather the flat vector
and compute the metrics of the decentralized methods with :func:`dcnn.metrics.evaluate` on
the pooled problem (one agent holding every shard), so every column of the History means the
same as for NEXT. ``time_s`` is training time only (the slowest rank's), ``eval_time_s`` the
evaluations' (also the slowest rank's), so the History is identical on every rank.
``bytes_per_agent`` is ``t * engine.bytes_per_step``: bytes sent per worker, *computed* from
the communication scheme of the engine, not measured.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

import torch

from ..comm import LocalNetwork
from ..metrics import History, evaluate
from ..problems import FlatModel, LocalProblems, Regularizer
from .bootstrap import World
from .recorder import Recorder
from .objective import add_regularizer_grad_, make_optimizer, prox_, smooth_part

__all__ = ["Engine", "compute_gradients", "make_evaluator", "run_engine"]


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
    """``p.grad`` = this rank's part of ``g_t + grad r_smooth`` (see the module docstring)."""
    engine.backward(step)
    for p in engine.params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    add_regularizer_grad_(engine.params, smooth_part(regularizer))


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


def run_engine(engine: Engine, *, metrics: Callable[[torch.Tensor], dict],
               regularizer: Regularizer, iterations: int, optimizer: str = "sgd",
               lr: float = 0.1, eval_every: int = 10, progress: bool = False
               ) -> tuple[History, dict]:
    """Train ``engine`` for ``iterations`` steps; returns ``(History, info)``.

    ``info`` is :meth:`Engine.info` plus ``iterations``, ``time_s`` (training),
    ``eval_time_s``, ``time_per_step_s`` (training time / iterations, slowest rank) and
    ``final_params`` (the flat vector, a tensor: drop it before writing ``info`` as JSON).
    """
    opt = make_optimizer(engine.params, name=optimizer, lr=lr)
    rec = Recorder(engine.world, metrics=metrics, desc=engine.method, progress=progress,
                   total=iterations)
    w = None

    def gather() -> torch.Tensor:
        nonlocal w
        w = engine.flat_parameters()
        return w

    def record(t: int) -> None:
        rec.record(t, gather, bytes_per_agent=t * engine.bytes_per_step, step_size=lr)

    record(0)
    for t in range(iterations):
        with rec.training():
            compute_gradients(engine, regularizer=regularizer, step=t)
            opt.step()
            if not regularizer.smooth:
                prox_(engine.params, regularizer, lr)
        if (t + 1) % eval_every == 0 or t + 1 == iterations:
            record(t + 1)
    rec.close()
    history = rec.history
    last = history.last
    info = {**engine.info(), "iterations": iterations, "optimizer": optimizer, "lr": lr,
            "time_s": last["time_s"], "eval_time_s": last["eval_time_s"],
            "time_per_step_s": last["time_s"] / iterations if iterations else float("nan"),
            "final_params": w}
    return history, info
