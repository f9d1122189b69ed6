"""One entry point for the engine baselines: validate, form the world, build, train.

:func:`train_engine` runs under ``mpiexec -n R``, ``torchrun`` or in one process (a world of
size 1) and returns the same :class:`dcnn.metrics.History` as the decentralized methods, on
every rank. Everything that does not depend on the world is validated before the process
group forms; what depends on it (ranks vs shards, stages vs layers, widths vs degree) is
checked identically on every rank before any collective, so a misconfiguration fails with the
same one-line :class:`dcnn.errors.ConfigError` everywhere instead of hanging. The engine is
trained by the one loop of :mod:`dcnn.baselines.runtime.trainer` through
:class:`~dcnn.baselines.engines.engine.EngineTrainer`.
"""
from __future__ import annotations

import datetime
from collections.abc import Sequence

from torch import nn

from ...errors import ConfigError
from ...metrics import History
from ...problems import Regularizer, make_regularizer
from ..runtime.bootstrap import DEFAULT_TIMEOUT, World
from ..runtime.checks import as_int, check_batch_size, check_trainer_inputs
from ..runtime.objective import pool
from ..runtime.recorder import make_evaluator
from ..runtime.trainer import train_in_world
from .ddp import DDPEngine
from .engine import Engine, EngineTrainer
from .pipeline import SCHEDULES, PipelineEngine, PTDPEngine, pipeline_units
from .tensor_parallel import TensorParallelEngine
from .tp_layouts import tp_layout

__all__ = ["METHODS", "make_engine", "train_engine"]

METHODS = ("ddp", "pipeline", "tensor-parallel", "ptd-p")


def make_engine(*, method: str, world: World, module: nn.Module, shards: Sequence[tuple],
                loss: str = "squared", batch_size: int | None = None,
                schedule: str = "gpipe", microbatches: int = 1, seed: int = 0,
                sequence_parallel: bool = False, dp: int = 1, tp: int = 1,
                pp: int = 0) -> Engine:
    """This rank's :class:`~dcnn.baselines.engines.engine.Engine` for ``method`` in ``world``."""
    if method not in METHODS:
        raise ConfigError(f"engine method {method!r} is unknown; choose one of: "
                          f"{', '.join(METHODS)} (sil, codistillation, local-parallel and "
                          f"sequence-parallel have their own trainers: "
                          f"dcnn.baselines.SCHEMES)")
    batch_size = check_batch_size(batch_size)
    common = dict(world=world, module=module, shards=shards, loss=loss,
                  batch_size=batch_size, seed=seed)
    if method == "ddp":
        return DDPEngine(**common)
    if method == "pipeline":
        return PipelineEngine(**common, schedule=schedule, microbatches=microbatches)
    if method == "ptd-p":
        return PTDPEngine(**common, schedule=schedule, microbatches=microbatches,
                          dp=dp, tp=tp, pp=pp)
    return TensorParallelEngine(**common, sequence_parallel=sequence_parallel)


def _validate(*, method, module, shards, loss, task, regularizer, optimizer, schedule,
              microbatches, sequence_parallel, dp, tp, pp) -> None:
    if method not in METHODS:
        raise ConfigError(f"engine method {method!r} is unknown; choose one of: "
                          f"{', '.join(METHODS)} (sil, codistillation, local-parallel and "
                          f"sequence-parallel have their own trainers: "
                          f"dcnn.baselines.SCHEMES)")
    check_trainer_inputs(module=module, shards=shards, loss=loss, task=task,
                         regularizer=regularizer, optimizer=optimizer)
    if method in ("pipeline", "ptd-p"):
        if schedule not in SCHEDULES:
            raise ConfigError(f"pipeline schedule {schedule!r} is unknown; choose one of: "
                              f"{', '.join(SCHEDULES)}")
        as_int("microbatches", microbatches, low=1)
        pipeline_units(module)               # the MLP or the transformer, else one line
    if not isinstance(sequence_parallel, bool):
        raise ConfigError(f"sequence_parallel must be true or false, got {sequence_parallel!r}")
    if sequence_parallel and method != "tensor-parallel":
        raise ConfigError(f"sequence_parallel is an option of method 'tensor-parallel', not "
                          f"{method!r}; drop it or use method 'tensor-parallel'")
    if method == "tensor-parallel":
        tp_layout(module, 1, sequence_parallel=sequence_parallel)   # the model is one it cuts
    dp, tp, pp = as_int("dp", dp, low=1), as_int("tp", tp, low=1), as_int("pp", pp, low=0)
    if method != "ptd-p" and (dp, tp, pp) != (1, 1, 0):
        raise ConfigError(f"dp, tp and pp are options of method 'ptd-p', not {method!r}; "
                          f"drop them or use method 'ptd-p'")


def train_engine(*, method: str, module: nn.Module, shards: Sequence[tuple],
                 test: tuple | None = None, loss: str = "squared", task: str = "regression",
                 regularizer: Regularizer | None = None, iterations: int = 100,
                 optimizer: str = "sgd", lr: float = 0.1, batch_size: int | None = None,
                 schedule: str = "gpipe", microbatches: int = 1,
                 sequence_parallel: bool = False, dp: int = 1, tp: int = 1, pp: int = 0,
                 eval_every: int = 10,
                 seed: int = 0, progress: bool = False, backend: str = "auto",
                 device: str = "cpu", timeout: datetime.timedelta = DEFAULT_TIMEOUT
                 ) -> tuple[History, dict]:
    """Train ``module`` on ``shards`` with a PyTorch engine; ``(History, info)`` on every rank.

    Args (keyword-only):
        method: ``"ddp"`` (:mod:`~dcnn.baselines.engines.ddp`), ``"pipeline"``
            (:mod:`~dcnn.baselines.engines.pipeline`), ``"tensor-parallel"``
            (:mod:`~dcnn.baselines.engines.tensor_parallel`) or ``"ptd-p"`` (data x tensor
            x pipeline, :mod:`~dcnn.baselines.engines.pipeline`).
        module: the model (for pipeline, tensor-parallel and ptd-p the ``nn.Sequential`` of
            :func:`dcnn.problems.mlp` or :func:`dcnn.problems.transformer`), float64 for
            exact comparisons; it is copied, never changed.
        shards: all ``N`` agents' ``(X_i, T_i)``; DDP maps them to ranks in contiguous
            blocks, pipeline, tensor-parallel and ptd-p train on their union (ptd-p: each
            step's batch cut into ``dp`` contiguous blocks, one per replica).
        test: ``(X_test, T_test)`` for ``test_metric``, or ``None``.
        loss, task, regularizer: as for the decentralized methods (``regularizer`` defaults
            to none; an l1 part needs ``optimizer="sgd"``).
        iterations, optimizer (``"sgd"`` | ``"adam"``), lr: the training steps.
        batch_size: ``None``/``0`` for the full batch; else samples per rank and step (DDP)
            or per step (pipeline, tensor-parallel, ptd-p: all replicas together), drawn by
            seeded generators.
        schedule, microbatches: pipeline and ptd-p (``"gpipe"``, ``"1f1b"``,
            ``"interleaved"``); with ptd-p each replica splits its part of the batch.
        sequence_parallel: tensor-parallel on the transformer only: the LayerNorm regions
            hold ``L/R`` tokens per rank (:mod:`~dcnn.baselines.engines.tp_layouts`).
        dp, tp, pp: ``"ptd-p"`` only: data-parallel replicas, tensor-parallel degree and
            pipeline depth, ``dp tp pp = R`` (``pp = 0``: ``R / (dp tp)``;
            :mod:`~dcnn.baselines.engines.pipeline`).
        eval_every, seed, progress: evaluation period, batch seed, progress bar on rank 0.
        backend, device, timeout: the process group (:mod:`~dcnn.baselines.runtime.bootstrap`).

    ``info`` holds the layout (world size, agents per rank, stages, pairs), the theoretical
    bubble fraction (pipeline), ``bytes_per_step`` (computed from the scheme, not measured),
    ``time_per_step_s`` (measured, training only) and ``final_params`` (a tensor).

    >>> import numpy as np
    >>> from dcnn.problems import mlp
    >>> rng = np.random.default_rng(0)
    >>> shards = [(rng.normal(size=(8, 3)), rng.normal(size=(8, 1))) for _ in range(2)]
    >>> hist, info = train_engine(method="ddp", module=mlp(n_inputs=3, hidden=[4],
    ...                           n_outputs=1), shards=shards, iterations=5, eval_every=5)
    >>> [r["iteration"] for r in hist.records], info["world_size"]
    ([0, 5], 1)
    >>> hist.last["objective"] < hist.records[0]["objective"]
    True
    """
    regularizer = make_regularizer("none") if regularizer is None else regularizer
    _validate(method=method, module=module, shards=shards, loss=loss, task=task,
              regularizer=regularizer, optimizer=optimizer, schedule=schedule,
              microbatches=microbatches, sequence_parallel=sequence_parallel, dp=dp, tp=tp,
              pp=pp)
    iterations = as_int("iterations", iterations, low=0)
    eval_every = as_int("eval_every", eval_every, low=1)
    batch_size = check_batch_size(batch_size)
    metrics = make_evaluator(module=module, pooled=pool(shards), loss=loss, task=task,
                             regularizer=regularizer, test=test)

    def build(world: World) -> EngineTrainer:
        engine = make_engine(method=method, world=world, module=module, shards=shards,
                             loss=loss, batch_size=batch_size, schedule=schedule,
                             microbatches=microbatches, seed=seed,
                             sequence_parallel=sequence_parallel, dp=dp, tp=tp, pp=pp)
        return EngineTrainer(engine, regularizer=regularizer, optimizer=optimizer, lr=lr)

    return train_in_world(build, metrics=metrics, iterations=iterations, eval_every=eval_every,
                          progress=progress, backend=backend, device=device, timeout=timeout)
