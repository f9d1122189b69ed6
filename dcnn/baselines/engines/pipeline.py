"""Pipeline parallel: :mod:`torch.distributed.pipelining` stages and schedules; and PTD-P,
the pipeline with tensor and data parallelism beside it (Narayanan et al., SC 2021, arXiv
2104.04473).

The MLP (an ``nn.Sequential`` of :func:`dcnn.problems.mlp`) is cut into ``S`` contiguous
stages, each a group of consecutive Linear layers with their activations (balanced by layer
count); the transformer (:func:`dcnn.problems.transformer`) into groups of its four parts
(embedding | attention sub-layer | MLP sub-layer | head, :func:`~dcnn.problems.transformer.
transformer_parts`; a cut carries the ``L d`` activations of a sample's tokens). GPipe and 1F1B put one stage on each of the ``R`` ranks (``S = R``); interleaved 1F1B
puts ``v = 2`` virtual stages on each rank (``S = 2R``, stage ``s`` on rank ``s mod R``).

Data: the pipeline trains on the *pooled* shards (all agents' samples, in agent order; the
split of the data over agents plays no role). Every step takes one batch ``B`` -- all ``M``
samples, or ``min(b, M)`` distinct samples drawn by a generator seeded by ``(seed, step)`` --
and the schedule splits it into ``m`` equal micro-batches ``B_1..B_m``. The loss of
micro-batch ``j`` on the last stage is

    l_j(w) = (1/|B|) sum_{k in B_j} loss(t_k, f(w; x_k)),

and the schedule runs with ``scale_grads=False``, so the accumulated gradient of every stage
is ``sum_j grad l_j = grad (1/|B|) sum_{k in B} loss_k``: for the full batch exactly the data
part of ``grad U`` (and an unbiased estimate of it for a mini-batch). The regulariser is added
stage by stage after the schedule (:func:`dcnn.baselines.runtime.update.apply_update`).

Bytes per worker and step (computed): at every stage boundary whose two stages sit on different
ranks, the activations of all micro-batches go forward and their gradients come back, ``2 |B|
h_s itemsize`` (``h_s`` the width at the boundary); the total is divided by ``R`` (the average
worker). The theoretical bubble fraction is :func:`dcnn.baselines.runtime.costs.bubble_fraction`.

PTD-P (:class:`PTDPEngine`): ``R = dp tp pp`` ranks on a ``(pp, dp, tp)`` ``DeviceMesh``
(``tp`` varies fastest, so a tensor-parallel group is consecutive ranks, as Megatron-LM places
it within a node). The pipeline has ``v pp`` stages over the ``pp`` axis (interleaved: stage
``s`` on pipeline rank ``s mod pp``, non-consecutive layers); inside a stage the Linear layers
are split over the ``tp`` axis in column/row pairs (:func:`~.tp_layouts.mlp_layout`; the
transformer's attention by heads and its MLP block by hidden units, Megatron-style,
:func:`~.tp_layouts.parts_layout`, the embedding and head parts replicated); the
step's batch is cut into ``dp`` contiguous blocks, one per replica, each split into the ``m``
micro-batches; every replica's loss keeps the weight ``1/|B|`` of the whole batch, so after the
schedule one all-reduce (a sum) of each rank's gradient shards over the ``dp`` axis gives every
replica the gradient of the whole batch. Bytes per worker and step by axis (computed, averaged
over the ranks; ``b = |B| / dp``): ``pp`` the boundaries' activations and gradients of the
replica's ``b`` samples; ``tp`` the layout's all-reduces of each stage on ``b`` samples (a stage
after the first also reduces its input gradient); ``dp`` a ring all-reduce of the parameters
one rank holds.

Measured bubble: each local stage's ``forward_one_chunk`` and ``backward_one_chunk`` (the
compute of one micro-batch; the schedule's sends and receives happen outside them) is timed
with a wall clock (with a CUDA synchronisation around it on a GPU), and so is each
``schedule.step``. A rank's bubble is ``1 - busy / step`` over every step but the first (which
allocates the stages' buffers); :meth:`PipelineEngine.info` gives each rank's and their mean.
The idle share holds the schedule's bubble and the time of the transfers and of the
schedule's own bookkeeping. With PTD-P, a stage's tensor-parallel all-reduces run inside its
chunks and count as busy; the data-parallel all-reduce follows the step and is clocked apart
(``dp_allreduce_s_per_rank``).
"""
from __future__ import annotations

import copy
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.pipelining import (PipelineStage, Schedule1F1B, ScheduleGPipe,
                                          ScheduleInterleaved1F1B)
from torch.distributed.tensor.parallel import RowwiseParallel, parallelize_module

from ...errors import ConfigError, LaunchError
from ..runtime.bootstrap import World
from ..runtime.checks import as_int
from ..runtime.costs import bubble_fraction, ring_allreduce_bytes
from ..runtime.objective import as_tensors, batch_rows, pool, weighted_loss
from .engine import Engine
from ...problems.transformer import TokenTransformer, TransformerPart, transformer_parts
from .tp_layouts import TPLayout, full_tensor, linear_positions, mlp_layout, parts_layout

__all__ = ["SCHEDULES", "StageSpec", "linear_positions", "pipeline_units", "split_stages",
           "auto_microbatches", "check_grid", "replica_blocks", "stage_layout",
           "PipelineEngine", "PTDPEngine"]
# linear_positions lives in .tp_layouts (both layouts need it); it stays importable from here

SCHEDULES = {"gpipe": ScheduleGPipe, "1f1b": Schedule1F1B,
             "interleaved": ScheduleInterleaved1F1B}
_VIRTUAL = {"gpipe": 1, "1f1b": 1, "interleaved": 2}


@dataclass(frozen=True)
class StageSpec:
    """Stage ``index``: children ``[lo, hi)`` of the Sequential, parameters ``[offset,
    offset + size)`` of the flat vector, ``width`` = its output size."""

    index: int
    lo: int
    hi: int
    offset: int
    size: int
    width: int


def pipeline_units(module: nn.Module) -> nn.Sequential:
    """The Sequential a pipeline cuts: the MLP itself, or the transformer's four parts
    (:func:`dcnn.problems.transformer.transformer_parts`, sharing its parameters)."""
    if isinstance(module, TokenTransformer):
        return transformer_parts(module)
    if isinstance(module, nn.Sequential) and len(module) and \
            all(isinstance(u, TransformerPart) for u in module):
        return module                       # already the parts
    linear_positions(module)                # the MLP's Sequential, or a one-line error
    return module


def _unit_starts(units: nn.Sequential) -> list[int]:
    if all(isinstance(u, TransformerPart) for u in units):
        return list(range(len(units)))
    return linear_positions(units)


def split_stages(module: nn.Module, n_stages: int) -> list[StageSpec]:
    """Cut :func:`pipeline_units` of ``module`` into ``n_stages`` contiguous groups of units
    (the MLP: Linear layers, each with the layers up to the next Linear; the transformer:
    its parts), balanced by the number of units."""
    module = pipeline_units(module)
    pos = _unit_starts(module)
    if not 1 <= n_stages <= len(pos):
        what = "parts (embedding, attention, MLP, head)" if isinstance(
            module[0], TransformerPart) else "Linear layers"
        raise LaunchError(f"pipeline: {n_stages} stages but the model has {len(pos)} "
                           f"{what}; use at most {len(pos)} stages (fewer ranks, schedule "
                           f"gpipe/1f1b instead of interleaved) or a deeper model")
    groups = np.array_split(np.arange(len(pos)), n_stages)
    cuts = [pos[g[0]] if k else 0 for k, g in enumerate(groups)] + [len(module)]
    sizes = [sum(p.numel() for p in layer.parameters()) for layer in module]
    specs = []
    for s in range(n_stages):
        lo, hi = cuts[s], cuts[s + 1]
        last_unit = module[pos[groups[s][-1]]]
        specs.append(StageSpec(s, lo, hi, int(sum(sizes[:lo])), int(sum(sizes[lo:hi])),
                               int(last_unit.out_features)))
    return specs


def _check_microbatches(schedule: str, m: int, batch: int, n_stages: int, ranks: int,
                        blocks: Sequence[int] = ()) -> None:
    """``m`` micro-batches split the batch (with data-parallel replicas: each replica's
    block, of sizes ``blocks``) and suit the schedule on ``ranks`` pipeline ranks."""
    if isinstance(m, bool) or not isinstance(m, (int, np.integer)) or m < 1:
        raise ConfigError(f"microbatches must be a positive integer, got {m!r}")
    if len(blocks) > 1 and any(b % m for b in blocks):
        common = math.gcd(*blocks)
        divisors = [d for d in range(1, min(common, 64) + 1) if common % d == 0]
        raise ConfigError(f"ptd-p: {m} micro-batches do not divide every replica's block of "
                          f"the batch of {batch} samples ({', '.join(map(str, blocks))}); "
                          f"choose microbatches among {divisors} or a batch_size that is a "
                          f"multiple of {m * len(blocks)}")
    if batch % m:
        divisors = [d for d in range(1, min(batch, 64) + 1) if batch % d == 0]
        raise ConfigError(f"pipeline: {m} micro-batches do not divide the batch of {batch} "
                          f"samples; choose microbatches among {divisors} or a batch_size "
                          f"that is a multiple of {m}")
    if schedule == "1f1b" and m < n_stages:
        raise LaunchError(f"pipeline: schedule '1f1b' needs microbatches >= stages ({n_stages})"
                           f", got {m}; raise microbatches or use schedule 'gpipe'")
    rounds = max(1, m // ranks)
    if schedule == "interleaved" and m % rounds:
        raise LaunchError(f"pipeline: schedule 'interleaved' needs microbatches to be a "
                           f"multiple of {rounds} (= max(1, m // ranks)), got {m}; use a "
                           f"multiple of {ranks} ranks")


def auto_microbatches(schedule: str, *, batch: int, ranks: int, replicas: int = 1) -> int:
    """The largest divisor of ``batch`` up to 8 that pipeline ``schedule`` accepts as its
    micro-batch count on ``ranks`` ranks (with ``replicas`` data-parallel replicas: that
    divides every replica's block); :class:`~dcnn.errors.LaunchError` if there is none.

    >>> auto_microbatches("1f1b", batch=12, ranks=4)    # 1F1B needs m >= 4 stages
    6
    >>> auto_microbatches("interleaved", batch=10, ranks=4)
    5
    """
    if schedule not in SCHEDULES:
        raise ConfigError(f"pipeline schedule {schedule!r} is unknown; choose one of: "
                          f"{', '.join(SCHEDULES)}")
    stages = ranks * _VIRTUAL[schedule]
    blocks = [len(b) for b in replica_blocks(batch, replicas)]
    for m in range(min(8, *blocks), 0, -1):
        try:
            _check_microbatches(schedule, m, batch, stages, ranks, blocks)
            return m
        except (ConfigError, LaunchError):
            continue
    raise LaunchError(f"no micro-batch count up to 8 divides the batch of {batch} samples for "
                      f"schedule {schedule!r} on {ranks} rank(s); set algorithm.microbatches")


def check_grid(ranks: int, *, dp: int, tp: int, pp: int = 0) -> tuple[int, int, int]:
    """``(dp, tp, pp)`` with ``dp tp pp = ranks`` (``pp = 0``: ``ranks / (dp tp)``), or a
    one-line error."""
    dp, tp, pp = as_int("dp", dp, low=1), as_int("tp", tp, low=1), as_int("pp", pp, low=0)
    if ranks % (dp * tp):
        raise LaunchError(f"ptd-p: dp x tp = {dp} x {tp} = {dp * tp} does not divide the "
                          f"{ranks} ranks; choose dp and tp whose product divides the number "
                          f"of ranks (pp = ranks / (dp tp))")
    if pp and dp * tp * pp != ranks:
        raise LaunchError(f"ptd-p: dp x tp x pp = {dp} x {tp} x {pp} = {dp * tp * pp} but the "
                          f"launch has {ranks} ranks; their product must be the number of "
                          f"ranks (pp = 0 takes the rest: {ranks // (dp * tp)})")
    return dp, tp, ranks // (dp * tp)


def replica_blocks(batch: int, dp: int) -> list[np.ndarray]:
    """The positions in a step's batch each data-parallel replica trains on: ``dp``
    contiguous blocks as equal as possible."""
    if dp > batch:
        raise LaunchError(f"ptd-p: {dp} data-parallel replicas but a batch of {batch} samples; "
                          f"use dp <= {batch} or a larger batch")
    return np.array_split(np.arange(batch), dp)


def stage_layout(module: nn.Module, spec: StageSpec, *, tp: int) -> TPLayout:
    """The tensor-parallel layout of stage ``spec``'s units over ``tp`` ranks (the MLP's
    pairs, a stage after the first back-propagating into its input; the transformer's parts
    by heads and hidden units, the embedding and the head replicated)."""
    units = pipeline_units(module)
    layers = nn.Sequential(*[units[i] for i in range(spec.lo, spec.hi)])
    if isinstance(units[0], TransformerPart):
        return parts_layout(layers, tp)
    layout = mlp_layout(layers, tp, input_grad=spec.index > 0)
    if tp > 1 and not layout.plan:
        raise LaunchError(f"ptd-p: stage {spec.index} holds one Linear layer, so tensor "
                          f"parallelism (tp = {tp}) has no column/row pair to split in it; "
                          f"add hidden layers (2 Linear layers per stage) or lower tp")
    return layout


class PipelineEngine(Engine):
    """This rank's stages of the MLP, driven by one :mod:`torch.distributed.pipelining`
    schedule (see the module docstring): one pipeline rank per rank (``dp``, ``tp`` and
    ``pp`` are :class:`PTDPEngine`'s; here they must leave ``pp = R``)."""

    method = "pipeline"

    def __init__(self, *, world: World, module: nn.Module, shards: Sequence[tuple], loss: str,
                 schedule: str = "gpipe", microbatches: int = 1,
                 batch_size: int | None = None, seed: int = 0, dp: int = 1, tp: int = 1,
                 pp: int = 0):
        if schedule not in SCHEDULES:
            raise ConfigError(f"pipeline schedule {schedule!r} is unknown; choose one of: "
                              f"{', '.join(SCHEDULES)}")
        self.world, self.loss, self.schedule_name = world, loss, schedule
        self.batch_size, self.seed, self.microbatches = batch_size, int(seed), microbatches
        self.dp, self.tp, self.pp = check_grid(world.size, dp=dp, tp=tp, pp=pp)
        if self.method == "pipeline" and self.pp != world.size:
            raise ConfigError("PipelineEngine puts one pipeline rank on every rank; for data "
                              "and tensor parallelism beside it use PTDPEngine (method 'ptd-p')")
        # no copy of the whole model here: a rank holds its stages alone
        self.dtype = next(module.parameters()).dtype
        self.n_params = sum(p.numel() for p in module.parameters())
        self.X, self.T = as_tensors(*pool(shards), self.dtype, world.device)
        module = pipeline_units(module)
        self.batch = len(self.X) if batch_size is None else min(batch_size, len(self.X))
        self.v = _VIRTUAL[schedule]
        self.specs = split_stages(module, self.v * self.pp)
        self.replica_rows = replica_blocks(self.batch, self.dp)
        _check_microbatches(schedule, microbatches, self.batch, len(self.specs), self.pp,
                            [len(r) for r in self.replica_rows])
        # every check before the mesh forms its process groups
        self.layouts = {s.index: stage_layout(module, s, tp=self.tp) for s in self.specs}
        self.mesh = None
        pp_rank, self.dp_rank, group = world.rank, 0, None
        if self.method == "ptd-p":
            self.mesh = init_device_mesh(world.device.type, (self.pp, self.dp, self.tp),
                                         mesh_dim_names=("pp", "dp", "tp"))
            pp_rank = self.mesh.get_local_rank("pp")
            self.dp_rank = self.mesh.get_local_rank("dp")
            group = self.mesh.get_group("pp")
        self.local = [s for s in self.specs if s.index % self.pp == pp_rank]
        self.stages = [PipelineStage(self._stage_module(module, s), s.index, len(self.specs),
                                     world.device, group=group) for s in self.local]
        self.params = [p for st in self.stages for p in st.submod.parameters()]
        weight = 1.0 / self.batch

        def loss_fn(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            return weighted_loss(loss, out.reshape(len(out), -1), target, weight=weight)

        cls = SCHEDULES[schedule]
        stages = self.stages if self.v > 1 else self.stages[0]
        self.schedule = cls(stages, n_microbatches=microbatches, loss_fn=loss_fn,
                            scale_grads=False)
        self.has_first = any(s.index == 0 for s in self.local)
        self.has_last = any(s.index == len(self.specs) - 1 for s in self.local)
        self.bytes_by_axis = self._bytes_by_axis(self.X.element_size())
        self.bytes_per_step = sum(self.bytes_by_axis.values())
        # the clock of the measured bubble: compute seconds inside the stages, step seconds
        self.clock = {"busy": 0.0, "busy_s": 0.0, "step_s": 0.0, "dp_s": 0.0, "steps": 0,
                      "timed": 0}
        for st in self.stages:
            for name in ("forward_one_chunk", "backward_one_chunk"):
                setattr(st, name, self._clocked(getattr(st, name)))

    def _stage_module(self, module: nn.Module, spec: StageSpec) -> nn.Module:
        """Stage ``spec``'s layers, copied; over the tensor-parallel ranks when ``tp > 1``."""
        sub = nn.Sequential(*[copy.deepcopy(module[i]) for i in range(spec.lo, spec.hi)])
        sub = sub.to(self.world.device)
        if self.tp == 1:
            return sub
        return parallelize_module(sub, self.mesh["tp"], self.layouts[spec.index].plan)

    def _bytes_by_axis(self, itemsize: int) -> dict[str, float]:
        """Bytes per worker and step by mesh axis, averaged over the ``R`` ranks (computed:
        see the module docstring)."""
        b = self.batch / self.dp          # a replica's samples, on average
        pp = self.pp
        crossing = [s for s in self.specs[:-1] if s.index % pp != (s.index + 1) % pp]
        out = {"pp": 2.0 * b * itemsize * sum(s.width for s in crossing) / pp}
        if self.tp > 1:
            out["tp"] = sum(lay.bytes_per_step(b, itemsize=itemsize, ranks=self.tp)
                            for lay in self.layouts.values()) / pp
        if self.dp > 1:
            shard = sum(lay.local_params for lay in self.layouts.values()) / pp
            out["dp"] = ring_allreduce_bytes(shard, itemsize=itemsize, ranks=self.dp)
        return out

    def _clocked(self, fn):
        """``fn`` with its wall time added to ``clock["busy"]``."""
        sync = torch.cuda.synchronize if self.world.device.type == "cuda" else (lambda: None)

        def run(*args, **kwargs):
            sync()
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                sync()
                self.clock["busy"] += time.perf_counter() - t0
        return run

    def backward(self, step: int) -> None:
        self._zero_grads()
        rows = batch_rows(len(self.X), self.batch_size, seed=self.seed, step=step, stream=0)
        x, t = (self.X, self.T) if rows is None else (self.X[rows], self.T[rows])
        if self.dp > 1:                      # this replica's block of the step's batch
            block = torch.as_tensor(self.replica_rows[self.dp_rank], device=x.device)
            x, t = x[block], t[block]
        args = (x,) if self.has_first else ()
        target = t if self.has_last else None
        c = self.clock
        busy, t0 = c["busy"], time.perf_counter()
        self.schedule.step(*args, target=target, return_outputs=False)
        if c["steps"]:                       # the first step allocates: not timed
            c["busy_s"] += c["busy"] - busy
            c["step_s"] += time.perf_counter() - t0
            c["timed"] += 1
        c["steps"] += 1
        if self.dp > 1:
            t1 = time.perf_counter()
            self._sum_over_replicas()
            if c["timed"]:
                c["dp_s"] += time.perf_counter() - t1

    def _sum_over_replicas(self) -> None:
        """Each gradient (this rank's shard) summed over the data-parallel replicas: one
        all-reduce of one flat buffer (every replica's loss carries 1/|B|, so the sum is the
        gradient of the whole batch)."""
        local = []
        for p in self.params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            g = p.grad
            local.append(g.to_local() if hasattr(g, "to_local") else g)
        buf = torch.cat([g.reshape(-1) for g in local])
        dist.all_reduce(buf, group=self.mesh.get_group("dp"))
        k = 0
        for g in local:
            g.copy_(buf[k:k + g.numel()].view_as(g))
            k += g.numel()

    def measured_bubble(self) -> dict:
        """Each rank's busy and step seconds over the timed steps and its idle share, and
        the mean share over ranks (None before two steps); beside them each rank's seconds
        in the data-parallel all-reduce after the schedule (PTD-P; not part of the step the
        bubble is measured in); collective."""
        p, c, r = self.world.size, self.clock, self.world.rank
        every = torch.zeros(3 * p, dtype=torch.float64, device=self.world.device)
        every[r], every[p + r], every[2 * p + r] = c["busy_s"], c["step_s"], c["dp_s"]
        dist.all_reduce(every)
        busy, step, dp = every[:p].tolist(), every[p:2 * p].tolist(), every[2 * p:].tolist()
        idle = [1.0 - b / s if s > 0 else None for b, s in zip(busy, step)]
        return {"bubble_measured": (sum(idle) / p if c["timed"] and None not in idle
                                    else None),
                "bubble_per_rank": idle, "busy_s_per_rank": busy, "step_s_per_rank": step,
                "dp_allreduce_s_per_rank": dp, "timed_steps": c["timed"]}

    def _gather(self, tensors: list[torch.Tensor]) -> torch.Tensor:
        """Every stage's slice in place, then one sum over ranks (the slices are disjoint)."""
        flat = torch.zeros(self.n_params, dtype=self.dtype, device=self.world.device)
        k = 0
        for spec, stage in zip(self.local, self.stages):
            n = sum(1 for _ in stage.submod.parameters())
            chunk = torch.cat([full_tensor(t.detach()).reshape(-1) for t in tensors[k:k + n]])
            flat[spec.offset:spec.offset + spec.size] = chunk
            k += n
        dist.all_reduce(flat, group=None if self.mesh is None else self.mesh.get_group("pp"))
        return flat.cpu()

    def flat_parameters(self) -> torch.Tensor:
        return self._gather(self.params)

    def flat_gradients(self) -> torch.Tensor:
        return self._gather([p.grad for p in self.params])

    def info(self) -> dict:
        p = self.pp
        grid = {} if self.method == "pipeline" else {
            "dp": self.dp, "tp": self.tp, "pp": self.pp,
            "bytes_by_axis": self.bytes_by_axis,
            # column/row pairs: one row-parallel layer closes each (attention: q, k, v | o)
            "tp_pairs_per_stage": [sum(isinstance(style, RowwiseParallel) for style in
                                       self.layouts[s.index].plan.values())
                                   for s in self.specs]}
        return {**super().info(), **grid, "schedule": self.schedule_name,
                "stages": len(self.specs),
                "stages_per_rank": self.v, "microbatches": self.microbatches,
                "batch": self.batch,
                "microbatch_size": [len(r) // self.microbatches for r in self.replica_rows]
                if self.dp > 1 else self.batch // self.microbatches,
                "stage_layers": [[s.lo, s.hi] for s in self.specs],
                "stage_ranks": [s.index % p for s in self.specs],
                "bubble_fraction": bubble_fraction(ranks=p, microbatches=self.microbatches,
                                                   virtual_stages=self.v),
                **self.measured_bubble(),
                "data": "pooled shards (every step one batch split into micro-batches"
                        + (", one block of it per data-parallel replica)" if self.dp > 1
                           else ")")}


class PTDPEngine(PipelineEngine):
    """PTD-P: the pipeline of :class:`PipelineEngine` over the ``pp`` axis of a
    ``(pp, dp, tp)`` ``DeviceMesh``, every stage tensor-parallel over its ``tp`` axis and the
    whole pipeline replicated over ``dp`` (see the module docstring)."""

    method = "ptd-p"
