"""Codistillation (online distillation): ``n`` models on disjoint data that learn from each
other's stale copies.

Anil, Pereyra, Passos, Ormandi, Dahl and Hinton, "Large scale distributed neural network
training through online distillation", ICLR 2018 (arXiv 1804.03235).

Data and models. The ``N`` agents' shards are cut into ``n`` contiguous blocks
(:func:`dcnn.comm.agent_blocks`); model ``m`` trains on the union ``S_m`` of block ``m``
(``M_m`` samples). Model 0 starts from ``module``'s parameters, model ``m > 0`` from the same
architecture re-initialised with a seed derived from ``(seed, m)`` (:func:`initial_models`).

Update. With ``b`` = ``burn_in`` and ``T`` = ``exchange_every`` the exchange steps are
``E = {t >= b : (t - b) mod T = 0}``. At the start of an exchange step every model's parameters
are all-gathered, and model ``m`` keeps the others' as frozen teachers ``theta_j^{e(t)}``,
``e(t) = max {e in E : e <= t}`` (:func:`teacher_step`), until the next exchange. Step ``t`` of
model ``m`` on its batch ``B`` (all of ``S_m``, or a mini-batch) minimises

    t < b:   L_m(w) = (1/|B|) sum_{k in B} loss(f(w; x_k), t_k)
    t >= b:  L_m(w) = (1/|B|) sum_{k in B} [loss(f(w; x_k), t_k) + alpha loss(f(w; x_k), p_k)]
             p_k    = (1/(n-1)) sum_{j != m} s(f(theta_j^{e(t)}; x_k))      (no gradient)

with ``s`` = sigmoid (one output) or softmax (several) for the cross-entropy loss (soft
targets) and ``s`` = identity for the squared loss (:func:`distillation_target`); then the
update of :func:`dcnn.baselines.runtime.update.apply_update`, ``w_m <- prox_{eta r_1}(w_m - eta
(grad L_m + grad r_2(w_m)))`` (SGD) or Adam on ``grad L_m + grad r(w_m)``. ``alpha = 0`` is
independent training of the ``n`` models.

Placement over ``R`` ranks (:func:`placement`). ``R mod n = 0``: model ``m`` is a data-parallel
group of ``g = R/n`` ranks ``m g .. m g + g - 1``; its block is split again in ``g`` contiguous
blocks, rank ``j`` of the group back-propagates ``(M_{m,j}/|B_j|)(1/M_m) sum_{k in B_j} [...]``
and an all-reduce (sum) in the group gives ``grad L_m`` (exactly for the full batch, unbiased
for mini-batches of ``min(b, M_{m,j})`` rows drawn by ``(seed, step, stream = m g + j)``).
``n mod R = 0``: rank ``r`` holds models ``r k .. r k + k - 1``, ``k = n/R``; one process holds
all ``n`` (the oracle the multi-rank runs equal).

Bytes (measured by :class:`~dcnn.baselines.runtime.traffic.Traffic`): an exchange is one
all-gather in which every rank sends its ``k`` models' vectors (``k P`` entries) or its ``1/g``
slice of its model's vector (``ceil(P/g)`` entries), ``(R-1)`` times that; a data-parallel group
adds one all-reduce of ``P`` gradient entries per step. The delivered model (History,
``final_params``) is model 0.

The layout and schedule are in :mod:`~dcnn.baselines.schemes.codistill_layout`, the targets
and :func:`churn` in :mod:`~dcnn.baselines.schemes.distillation`; the trainer
:class:`Codistillation` (burn-in, then exchanges, inside its step) is run by the one loop of
:mod:`dcnn.baselines.runtime.trainer`.
"""
from __future__ import annotations

import copy
import datetime
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from ...errors import ConfigError
from ...metrics import History
from ...problems import FlatModel, Regularizer, make_regularizer, per_sample_loss
from ..runtime import (DEFAULT_TIMEOUT, Traffic, Trainer, World, apply_update, as_int,
                       as_tensors, batch_rows, busiest, check_batch_size, check_trainer_inputs,
                       make_evaluator, make_optimizer, pool, train_in_world)
from .codistill_layout import (Placement, exchange_steps, group_agents, initial_models,
                               model_agents, pack_exchange, placement, teacher_step,
                               unpack_exchange)
from .distillation import (checksum, churn, distillation_target, final_metrics,
                           predicted_classes)

__all__ = ["Placement", "placement", "model_agents", "initial_models", "exchange_steps",
           "teacher_step", "distillation_target", "checksum", "predicted_classes", "churn",
           "Codistillation", "train_codistillation"]

METHOD = "codistillation"


@dataclass
class _Replica:
    """This rank's part of model ``index``: its module, optimiser and rows of ``S_m``."""

    index: int
    module: nn.Module
    params: list[torch.Tensor]
    opt: torch.optim.Optimizer
    X: torch.Tensor
    T: torch.Tensor
    samples: int                     # M_m: the model's samples over its whole group
    stream: int                      # mini-batch stream m g + j
    group: object | None             # the group's process group (None: not split)
    leader: bool                     # rank j = 0 of the group (writes the teacher trace)
    teachers: list[torch.Tensor] | None = None
    target: torch.Tensor | None = None   # cached p of the full batch since the last exchange


def _gather_models(world: World, place: Placement, replicas: list[_Replica], flat: FlatModel,
                   traffic: Traffic | None = None) -> list[torch.Tensor]:
    """All ``n`` models' flat vectors on every rank: one all-gather (through ``traffic`` for
    an exchange; outside it for an evaluation)."""
    flats = {r.index: flat.flatten(r.module) for r in replicas}
    piece = pack_exchange(place, world.rank, flats, flat.n_params)
    pieces = [torch.empty_like(piece) for _ in range(world.size)]
    if traffic is not None:
        traffic.all_gather(pieces, piece)
    else:
        dist.all_gather(pieces, piece)
    return unpack_exchange(place, pieces, flat.n_params)


def _model0(world: World, replicas: list[_Replica], flat: FlatModel) -> torch.Tensor:
    """Model 0's flat vector on every rank (rank 0 always holds it; not counted)."""
    if world.rank == 0:
        w = flat.flatten(replicas[0].module)
    else:
        w = torch.empty(flat.n_params, dtype=flat.dtype, device=world.device)
    dist.broadcast(w, src=0)
    return w.cpu()


def _teacher_outputs(flat: FlatModel, teachers: list[torch.Tensor], x: torch.Tensor,
                     loss: str) -> torch.Tensor:
    with torch.no_grad():
        return distillation_target([flat.apply(w, x) for w in teachers], loss=loss)


def _backward(rep: _Replica, *, flat: FlatModel, loss: str, alpha: float,
              batch_size: int | None, seed: int, step: int, traffic: Traffic) -> None:
    """``p.grad`` = ``grad L_m`` of step ``step`` (summed over the model's group)."""
    for p in rep.params:
        p.grad = None
    rows = batch_rows(len(rep.X), batch_size, seed=seed, step=step, stream=rep.stream)
    x, t = (rep.X, rep.T) if rows is None else (rep.X[rows], rep.T[rows])
    out = rep.module(x).reshape(len(x), -1)
    per = per_sample_loss(loss, out, t)
    if rep.teachers is not None:
        if rows is None:
            if rep.target is None:
                rep.target = _teacher_outputs(flat, rep.teachers, x, loss)
            target = rep.target
        else:
            target = _teacher_outputs(flat, rep.teachers, x, loss)
        # task loss + alpha * distillation loss toward the teachers' averaged prediction
        per = per + alpha * per_sample_loss(loss, out, target)
    # (M_{m,j}/|B_j|) / M_m: the group's sum is the (unbiased) gradient of L_m
    weight = (len(rep.X) / len(x)) / rep.samples
    (weight * per.sum()).backward()
    for p in rep.params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    if rep.group is not None:
        buf = torch.cat([p.grad.reshape(-1) for p in rep.params])
        traffic.all_reduce(buf, group=rep.group)
        for p, g in zip(rep.params, buf.split([p.numel() for p in rep.params])):
            p.grad.copy_(g.reshape(p.shape))


def _build(world: World, place: Placement, starts: list[nn.Module], shards: Sequence[tuple],
           split: list[list[list[int]]], *, optimizer: str, lr: float
           ) -> tuple[list[_Replica], list]:
    """This rank's replicas, and every subgroup it created (to free them at the end)."""
    g = place.ranks_per_model
    groups, mine = [], None
    if g > 1:                         # every rank creates every group, in the same order
        for m in range(place.models):
            pg = dist.new_group(ranks=place.group(m))
            groups.append(pg)
            if world.rank in place.group(m):
                mine = pg
    dtype = next(starts[0].parameters()).dtype
    replicas = []
    for m in place.hosted(world.rank):
        j = world.rank % g if g > 1 else 0
        agents = split[m][j]
        module = starts[m].to(world.device)
        params = [p for p in module.parameters() if p.requires_grad]
        X, T = as_tensors(*pool([shards[a] for a in agents]), dtype, world.device)
        samples = sum(len(shards[a][0]) for part in split[m] for a in part)
        replicas.append(_Replica(m, module, params, make_optimizer(params, name=optimizer,
                                                                   lr=lr),
                                 X, T, samples, m * g + j, mine, j == 0))
    return replicas, groups


def _validate(*, module, shards, loss, task, regularizer, optimizer, lr, models,
              distill_weight, trace) -> None:
    check_trainer_inputs(module=module, shards=shards, loss=loss, task=task,
                         regularizer=regularizer, optimizer=optimizer, lr=lr)
    if models < 2:
        raise ConfigError(f"codistillation needs models >= 2 (a model distils from the "
                          f"others), got {models}; use method 'ddp' for one model")
    if isinstance(distill_weight, bool) or not isinstance(distill_weight, (int, float)) \
            or not (math.isfinite(distill_weight) and distill_weight >= 0):
        raise ConfigError(f"distill_weight must be a finite number >= 0, got "
                          f"{distill_weight!r}; use 0 for independent training")
    if not isinstance(trace, bool):
        raise ConfigError(f"trace must be True or False, got {trace!r}")


class Codistillation(Trainer):
    """This rank's models (or its share of one), the exchange schedule and the traces; one
    :meth:`step` is an exchange when one is due, then every hosted model's update."""

    method = METHOD

    def __init__(self, *, world: World, place: Placement, starts: list[nn.Module],
                 shards: Sequence[tuple], split: list[list[list[int]]], flat: FlatModel,
                 metrics, loss: str, task: str, regularizer: Regularizer, optimizer: str,
                 lr: float, batch_size: int | None, seed: int, exchange_every: int,
                 burn_in: int, alpha: float, trace: bool, test: tuple | None, pooled: tuple,
                 blocks: list[list[int]]):
        self.world, self.place, self.flat, self.metrics = world, place, flat, metrics
        self.loss, self.task, self.reg, self.optimizer, self.lr = (loss, task, regularizer,
                                                                   optimizer, lr)
        self.batch_size, self.seed, self.alpha, self.trace = batch_size, seed, alpha, trace
        self.every, self.burn_in, self.test, self.pooled = exchange_every, burn_in, test, pooled
        self.blocks = blocks
        self.samples = [sum(len(shards[a][0]) for a in b) for b in blocks]
        self.replicas, self.groups = _build(world, place, starts, shards, split,
                                            optimizer=optimizer, lr=lr)
        self.traffic = Traffic(world)
        # the teachers' template on the training device (``flat`` stays on the CPU)
        self.flat_dev = FlatModel(copy.deepcopy(flat.module).to(world.device),
                                  dtype=flat.dtype)
        self.exchanges, self.exchange_bytes = 0, 0
        self.teacher_trace, self.exchange_trace = [], []

    def _exchange(self, t: int) -> None:
        before = self.traffic.bytes_sent
        every = _gather_models(self.world, self.place, self.replicas, self.flat, self.traffic)
        self.exchange_bytes += self.traffic.bytes_sent - before
        self.exchanges += 1
        for rep in self.replicas:
            rep.teachers = [w for j, w in enumerate(every) if j != rep.index]
            rep.target = None
        if self.trace:
            self.exchange_trace.append((t, [checksum(w) for w in every]))

    def step(self, t: int) -> None:
        if t >= self.burn_in and (t - self.burn_in) % self.every == 0:
            self._exchange(t)
        for rep in self.replicas:
            if self.trace and rep.leader:
                self.teacher_trace.append((t, rep.index, [checksum(w) for w in rep.teachers]
                                           if rep.teachers is not None else []))
            _backward(rep, flat=self.flat_dev, loss=self.loss, alpha=self.alpha,
                      batch_size=self.batch_size, seed=self.seed, step=t,
                      traffic=self.traffic)
            apply_update(rep.params, rep.opt, self.reg, self.lr)

    def parameters(self) -> torch.Tensor:
        return _model0(self.world, self.replicas, self.flat)

    @property
    def bytes_sent(self) -> float:
        return self.traffic.bytes_sent

    def info(self) -> dict:
        final = [w.cpu() for w in _gather_models(self.world, self.place, self.replicas,
                                                 self.flat)]
        sent, exchanged = busiest(self.world, self.traffic.bytes_sent, self.exchange_bytes)
        place = self.place
        info = {**super().info(), "optimizer": self.optimizer, "lr": self.lr,
                "bytes_sent": sent, "exchange_bytes": exchanged,
                "bytes_note": "measured: the parameter all-gathers of the exchanges plus, with "
                              "several ranks per model, the gradient all-reduce in each "
                              "model's group (busiest rank)",
                "exchanges": self.exchanges, "models": place.models,
                "ranks_per_model": place.ranks_per_model,
                "models_per_rank": place.models_per_rank, "agents_per_model": self.blocks,
                "samples_per_model": self.samples, "exchange_every": self.every,
                "burn_in": self.burn_in, "distill_weight": self.alpha,
                "batch_size_per_rank": self.batch_size}
        info.update(final_metrics(final, self.flat, metrics=self.metrics, loss=self.loss,
                                  task=self.task, test=self.test, pooled=self.pooled))
        if self.trace:
            merged = [None] * self.world.size
            dist.all_gather_object(merged, self.teacher_trace)
            info["teacher_trace"] = sorted((e for part in merged for e in part),
                                           key=lambda e: (e[0], e[1]))
            info["exchange_trace"] = self.exchange_trace
            info["final_checksums"] = [checksum(w) for w in final]
        return info

    def close(self) -> None:
        self.replicas = []
        for pg in self.groups:
            if pg is not None and pg != dist.GroupMember.NON_GROUP_MEMBER:
                dist.destroy_process_group(pg)
        self.groups = []


def train_codistillation(*, module: nn.Module, shards: Sequence[tuple],
                         test: tuple | None = None, loss: str = "squared",
                         task: str = "regression", regularizer: Regularizer | None = None,
                         iterations: int = 100, optimizer: str = "sgd", lr: float = 0.1,
                         batch_size: int | None = None, eval_every: int = 10, seed: int = 0,
                         progress: bool = False, backend: str = "auto", device: str = "cpu",
                         timeout: datetime.timedelta = DEFAULT_TIMEOUT, models: int = 2,
                         exchange_every: int = 50, burn_in: int = 100,
                         distill_weight: float = 1.0, trace: bool = False
                         ) -> tuple[History, dict]:
    """Train ``models`` models on disjoint blocks of ``shards`` with codistillation (see the
    module docstring); ``(History of model 0, info)`` on every rank.

    Scheme keywords: ``models`` (n >= 2, at most the number of shards), ``exchange_every``
    (T >= 1 steps between parameter exchanges), ``burn_in`` (b >= 0 steps of plain training
    before the first exchange), ``distill_weight`` (alpha >= 0), ``trace`` (record the
    checksums of the teachers used at every step and of the models at every exchange).
    ``batch_size`` is per rank of a model's group (like ``ddp``). The other keywords are
    those of :func:`dcnn.baselines.train_engine`.

    >>> import numpy as np
    >>> from dcnn.problems import mlp
    >>> rng = np.random.default_rng(0)
    >>> shards = [(rng.normal(size=(8, 3)), rng.normal(size=(8, 1))) for _ in range(2)]
    >>> hist, info = train_codistillation(module=mlp(n_inputs=3, hidden=[4], n_outputs=1),
    ...     shards=shards, iterations=6, eval_every=3, burn_in=2, exchange_every=2)
    >>> [r["iteration"] for r in hist.records], info["exchanges"], info["models_per_rank"]
    ([0, 3, 6], 2, 2)
    """
    regularizer = make_regularizer("none") if regularizer is None else regularizer
    models = as_int("models", models, low=1)
    _validate(module=module, shards=shards, loss=loss, task=task, regularizer=regularizer,
              optimizer=optimizer, lr=lr, models=models, distill_weight=distill_weight,
              trace=trace)
    iterations = as_int("iterations", iterations, low=0)
    eval_every = as_int("eval_every", eval_every, low=1)
    exchange_every = as_int("exchange_every", exchange_every, low=1)
    burn_in = as_int("burn_in", burn_in, low=0)
    seed = as_int("seed", seed, low=0)
    batch_size = check_batch_size(batch_size)
    alpha = float(distill_weight)
    blocks = model_agents(len(shards), models)
    starts = initial_models(module, models=models, seed=seed)
    flat = FlatModel(module, dtype=next(module.parameters()).dtype)
    pooled = pool(shards)
    metrics = make_evaluator(module=module, pooled=pooled, loss=loss, task=task,
                             regularizer=regularizer, test=test)

    def build(world: World) -> Codistillation:
        if burn_in >= iterations and world.rank == 0:
            print(f"dcnn: warning: codistillation: burn_in = {burn_in} >= iterations = "
                  f"{iterations}: no exchange happens, the models train independently",
                  file=sys.stderr, flush=True)
        # world-dependent checks: the same on every rank, before any collective
        place = placement(models, world.size)
        return Codistillation(world=world, place=place, starts=starts, shards=shards,
                              split=group_agents(blocks, place), flat=flat, metrics=metrics,
                              loss=loss, task=task, regularizer=regularizer,
                              optimizer=optimizer, lr=lr, batch_size=batch_size, seed=seed,
                              exchange_every=exchange_every, burn_in=burn_in, alpha=alpha,
                              trace=trace, test=test, pooled=pooled, blocks=blocks)

    return train_in_world(build, metrics=metrics, iterations=iterations, eval_every=eval_every,
                          progress=progress, backend=backend, device=device, timeout=timeout)
