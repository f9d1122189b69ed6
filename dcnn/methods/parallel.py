"""The parallel trainers of :mod:`dcnn.baselines` as methods: PyTorch's engines (DDP,
pipeline, tensor parallel, PTD-P) and the other schemes (synthetic intermediate labels,
codistillation, local parallelism, sequence parallelism).

They train one model (or, for codistillation, several) on a process group formed from the
launch, ignore the graph, and take centralized gradient descent's step: ``lr * alpha0 / N`` on
``grad U`` (Adam: ``lr * alpha0``), with a constant schedule. Their state lives inside
torch.distributed, so they refuse checkpoints (``Supports.resumable = False``).
"""
from __future__ import annotations

import datetime
from dataclasses import dataclass

from ..errors import ConfigError
from .centralized import optimizer_of
from .decentralized import resolve_lr, step_schedule
from .options import TrainerOptions, option
from .registry import MethodSpec, Supports, get_method, register
from .runs import TrainerMethod

__all__ = ["ParallelOptions", "PipelineOptions", "PTDPOptions", "TensorParallelOptions",
           "SilOptions", "CodistillationOptions", "LocalOptions", "engine_step",
           "common_arguments"]

_PARALLEL = Supports(directed=True, topology=False, resumable=False)


@dataclass(frozen=True)
class ParallelOptions(TrainerOptions):
    """The parallel trainers: a constant step, and gradient descent or Adam."""

    def check(self) -> None:
        if self.schedule not in ("auto", "constant"):
            raise ConfigError(f"schedule = {self.schedule!r} is not allowed: a parallel "
                              "trainer takes a constant step; set algorithm.schedule = "
                              "'constant' (or 'auto')")
        if self.optimizer == "lbfgs":
            raise ConfigError("optimizer = 'lbfgs' is not allowed: a parallel trainer trains "
                              "with 'gd' or 'adam', not 'lbfgs'; set algorithm.optimizer = "
                              "'gd' or 'adam'")


@dataclass(frozen=True)
class PipelineOptions(ParallelOptions):
    pipeline_schedule: str = option("gpipe", choices=("gpipe", "1f1b", "interleaved"),
                                    doc="the pipeline schedule (interleaved: two non-consecutive"
                                        " stages per rank)")
    microbatches: int = option(0, check=(lambda v: v >= 0, ">= 0 (0 = automatic)"),
                               doc="micro-batches per step (0: the largest divisor of the batch "
                                   "up to 8 the schedule accepts)")


@dataclass(frozen=True)
class PTDPOptions(PipelineOptions):
    dp: int = option(1, check=(lambda v: v >= 1, ">= 1"), doc="data-parallel replicas")
    tp: int = option(1, check=(lambda v: v >= 1, ">= 1"), doc="tensor-parallel degree")
    pp: int = option(0, check=(lambda v: v >= 0, ">= 0 (0 = ranks / (dp tp))"),
                     doc="pipeline depth")


@dataclass(frozen=True)
class TensorParallelOptions(ParallelOptions):
    sequence_parallel: bool = option(False, doc="transformer only: LayerNorm regions hold "
                                     "L/R tokens per rank (Korthikanti et al. 2022)")


_STAGES = option(0, check=(lambda v: v >= 0, ">= 0 (0 = automatic)"),
                 doc="parts of the model (0: one per rank, at least 2)")


@dataclass(frozen=True)
class SilOptions(ParallelOptions):
    stages: int = _STAGES
    sil_noise: float = option(0.1, check=(lambda v: v >= 0, ">= 0"),
                              doc="noise added to the codes a later part reads")
    recovery: int = option(0, check=(lambda v: v >= 0, ">= 0"),
                           doc="last steps that train the joined model end to end")


@dataclass(frozen=True)
class CodistillationOptions(ParallelOptions):
    models: int = option(2, check=(lambda v: v >= 2, ">= 2"),
                         doc="models trained on disjoint blocks of shards")
    exchange_every: int = option(50, check=(lambda v: v >= 1, ">= 1"),
                                 doc="steps between two all-gathers of the parameters")
    burn_in: int = option(100, check=(lambda v: v >= 0, ">= 0"),
                          doc="steps before the first exchange")
    distill_weight: float = option(1.0, check=(lambda v: v >= 0, ">= 0"),
                                   doc="weight of the distillation term")


@dataclass(frozen=True)
class LocalOptions(ParallelOptions):
    stages: int = _STAGES
    local_mode: str = option("greedy", choices=("greedy", "overlapping", "chunked"),
                             doc="greedy: each block on its own head; overlapping: a block's "
                                 "loss also reaches the block before; chunked: backprop inside "
                                 "chunks")
    chunk: int = option(2, check=(lambda v: v >= 1, ">= 1"),
                        doc="blocks per chunk (chunked)")
    window: int = option(1, check=(lambda v: v >= 1, ">= 1"),
                         doc="w > 1: receives posted w ticks ahead (same result)")


def engine_step(spec: MethodSpec, exp, o) -> dict:
    """The resolved step of a trainer: ``info`` with ``optimizer``, ``lr`` (the user's scale),
    ``batch_size``, and the trainer's own ``engine_optimizer`` / ``engine_lr``."""
    schedule_name, schedule = step_schedule(spec, o)
    if schedule_name != "constant":
        raise ConfigError(f"algorithm.name = {spec.name!r} takes a constant step; set "
                          "algorithm.schedule = 'constant' (or 'auto')")
    optimizer = optimizer_of(o, "gd")
    if optimizer == "lbfgs":
        raise ConfigError(f"algorithm.name = {spec.name!r} trains with 'gd' or 'adam', not "
                          "'lbfgs'; set algorithm.optimizer = 'gd' or 'adam'")
    lr = resolve_lr(exp, o.lr, optimizer)
    # the step of centralized gradient descent: s / N on grad U (Adam: s on grad U)
    step = lr * schedule.init()
    return {"schedule": schedule_name, "optimizer": optimizer, "lr": lr,
            "batch_size": o.batch_size or spec.batch_size or None,
            "engine_optimizer": "sgd" if optimizer == "gd" else "adam",
            "engine_lr": step / exp.network.n_agents if optimizer == "gd" else step}


def common_arguments(exp, info: dict, *, progress: bool) -> dict:
    """The keyword arguments every trainer of :mod:`dcnn.baselines` takes."""
    return dict(module=exp.model.module, shards=exp.shards, test=exp.test, loss=exp.loss,
                task=exp.task, regularizer=exp.regularizer, iterations=exp.iterations,
                optimizer=info["engine_optimizer"], lr=info["engine_lr"],
                batch_size=info["batch_size"], eval_every=exp.eval_every, seed=exp.seed,
                progress=progress,
                # the process group's timeout (gloo's, for every collective and send)
                timeout=datetime.timedelta(seconds=min(exp.comm_timeout, 1e7)))


def _engine(name: str):
    def build(exp, o) -> TrainerMethod:
        info = engine_step(get_method(name), exp, o)
        extra = {}
        if name in ("pipeline", "ptd-p"):
            info["pipeline_schedule"] = o.pipeline_schedule
        if name == "ptd-p":
            info.update(dp=o.dp, tp=o.tp, pp=o.pp)
        if name == "tensor-parallel":
            info["sequence_parallel"] = o.sequence_parallel

        def train(exp, *, progress: bool):
            from ..baselines import auto_microbatches, train_engine
            kw = {}
            if name in ("pipeline", "ptd-p"):
                total = sum(len(x) for x, _ in exp.shards)
                batch = min(info["batch_size"] or total, total)
                # ptd-p: each replica's part of the batch, on the pipeline ranks
                replicas = o.dp if name == "ptd-p" else 1
                depth = exp.network.size // (replicas * o.tp) if name == "ptd-p" else \
                    exp.network.size
                m = o.microbatches or auto_microbatches(
                    o.pipeline_schedule, batch=batch, ranks=max(1, depth),
                    replicas=min(replicas, batch))
                extra["microbatches"] = m
                kw = {"schedule": o.pipeline_schedule, "microbatches": m}
                if name == "ptd-p":
                    kw.update(dp=o.dp, tp=o.tp, pp=o.pp)
            if name == "tensor-parallel":
                kw = {"sequence_parallel": o.sequence_parallel}
            history, details = train_engine(method=name, **common_arguments(
                exp, info, progress=progress), **kw)
            return history, {**extra, **details}
        return TrainerMethod(train, info)
    return build


def _scheme(name: str, trainer: str, keys: dict[str, str], shown: tuple[str, ...] = ()):
    """A scheme trained by ``dcnn.baselines.<trainer>``, which takes the options ``keys``
    (``{argument: option}``) beside the common arguments."""
    def build(exp, o) -> TrainerMethod:
        info = engine_step(get_method(name), exp, o)
        info.update({k: getattr(o, k) for k in shown})
        extra = {arg: getattr(o, key) for arg, key in keys.items()}

        def train(exp, *, progress: bool):
            from .. import baselines
            history, details = getattr(baselines, trainer)(
                **common_arguments(exp, info, progress=progress), **extra)
            return history, {**extra, **details}
        return TrainerMethod(train, info)
    return build


for _spec in (
    MethodSpec("ddp", "data parallel: torch DistributedDataParallel, one shard block per rank",
               ParallelOptions, _engine("ddp"), _PARALLEL),
    MethodSpec("pipeline", "pipeline: torch.distributed.pipelining, MLP or transformer split "
               "over ranks",
               PipelineOptions, _engine("pipeline"), _PARALLEL,
               variants={f"pipeline-{s}": {"pipeline_schedule": s}
                         for s in ("gpipe", "1f1b", "interleaved")},
               label=lambda o: f"pipeline-{o.pipeline_schedule}"),
    MethodSpec("ptd-p", "PTD-P: data x tensor x pipeline parallel on a 3-D device mesh "
               "(Megatron-LM)", PTDPOptions, _engine("ptd-p"), _PARALLEL),
    MethodSpec("tensor-parallel", "tensor parallel: torch.distributed.tensor.parallel (MLP "
               "pairs, transformer attention by heads)", TensorParallelOptions,
               _engine("tensor-parallel"), _PARALLEL),
    MethodSpec("sil", "synthetic intermediate labels: parts trained apart, then joined",
               SilOptions,
               _scheme("sil", "train_sil",
                       {"stages": "stages", "noise": "sil_noise", "recovery": "recovery"}),
               _PARALLEL),
    MethodSpec("codistillation", "codistillation: models on disjoint shards distil from "
               "stale copies of each other", CodistillationOptions,
               _scheme("codistillation", "train_codistillation",
                       {k: k for k in ("models", "exchange_every", "burn_in",
                                       "distill_weight")}), _PARALLEL),
    MethodSpec("local-parallel", "local parallelism: blocks with local losses, pipelined "
               "forward-only", LocalOptions,
               _scheme("local-parallel", "train_local_parallel",
                       {k: k for k in ("stages", "local_mode", "chunk", "window")},
                       shown=("local_mode",)), _PARALLEL,
               variants={f"local-{m}": {"local_mode": m}
                         for m in ("greedy", "overlapping", "chunked")},
               label=lambda o: f"local-{o.local_mode}"),
    MethodSpec("sequence-parallel", "sequence parallel: a transformer's tokens over ranks, "
               "ring attention", ParallelOptions,
               _scheme("sequence-parallel", "train_sequence_parallel", {}), _PARALLEL),
):
    register(_spec)
