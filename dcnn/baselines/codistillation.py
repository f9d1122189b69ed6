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
targets) and ``s`` = identity for the squared loss (:func:`distillation_target`); then, as in
:mod:`dcnn.baselines.engine`, ``w_m <- prox_{eta r_1}(w_m - eta (grad L_m + grad r_2(w_m)))``
(SGD) or Adam on ``grad L_m + grad r(w_m)``. ``alpha = 0`` is independent training of the
``n`` models.

Placement over ``R`` ranks (:func:`placement`). ``R mod n = 0``: model ``m`` is a data-parallel
group of ``g = R/n`` ranks ``m g .. m g + g - 1``; its block is split again in ``g`` contiguous
blocks, rank ``j`` of the group back-propagates ``(M_{m,j}/|B_j|)(1/M_m) sum_{k in B_j} [...]``
and an all-reduce (sum) in the group gives ``grad L_m`` (exactly for the full batch, unbiased
for mini-batches of ``min(b, M_{m,j})`` rows drawn by ``(seed, step, stream = m g + j)``).
``n mod R = 0``: rank ``r`` holds models ``r k .. r k + k - 1``, ``k = n/R``; one process holds
all ``n`` (the oracle the multi-rank runs equal).

Bytes (measured by :class:`~dcnn.baselines.traffic.Traffic`): an exchange is one all-gather in
which every rank sends its ``k`` models' vectors (``k P`` entries) or its ``1/g`` slice of its
model's vector (``ceil(P/g)`` entries), ``(R-1)`` times that; a data-parallel group adds one
all-reduce of ``P`` gradient entries per step. The delivered model (History,
``final_params``) is model 0.
"""
from __future__ import annotations

import copy
import datetime
import gc
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from ..comm import agent_blocks
from ..errors import ConfigError, LaunchError
from ..metrics import History
from ..problems import FlatModel, Regularizer, make_regularizer, per_sample_loss
from .bootstrap import DEFAULT_TIMEOUT, World, process_group
from .engine import make_evaluator
from .objective import (TASKS, add_regularizer_grad_, as_int, as_tensors, batch_rows,
                        check_batch_size, check_trainer_inputs, make_optimizer, pool, prox_,
                        smooth_part)
from .recorder import Recorder
from .traffic import Traffic

__all__ = ["Placement", "placement", "model_agents", "initial_models", "exchange_steps",
           "teacher_step", "distillation_target", "checksum", "predicted_classes", "churn",
           "train_codistillation"]

METHOD = "codistillation"


# ----------------------------------------------------------------------------- layout


@dataclass(frozen=True)
class Placement:
    """``models`` models on ``ranks`` ranks: ``ranks_per_model`` ranks per model (a
    data-parallel group) or ``models_per_rank`` models per rank (one of them is 1)."""

    models: int
    ranks: int
    ranks_per_model: int
    models_per_rank: int

    def hosted(self, rank: int) -> list[int]:
        """The models rank ``rank`` trains (or helps train)."""
        lo = (rank // self.ranks_per_model) * self.models_per_rank
        return list(range(lo, lo + self.models_per_rank))

    def group(self, model: int) -> list[int]:
        """The ranks of model ``model``'s data-parallel group (one rank if not split)."""
        if self.ranks_per_model == 1:
            return [model // self.models_per_rank]
        g = self.ranks_per_model
        return list(range(model * g, model * g + g))


def placement(models: int, ranks: int) -> Placement:
    """Data-parallel groups of ``ranks/models`` ranks, or ``models/ranks`` models per rank."""
    if ranks % models == 0:
        return Placement(models, ranks, ranks // models, 1)
    if models % ranks == 0:
        return Placement(models, ranks, 1, models // ranks)
    raise LaunchError(f"codistillation: {models} models do not fit {ranks} ranks; run with a "
                       f"number of ranks that divides or is a multiple of {models} (e.g. "
                       f"mpiexec -n {models}), or set models to a divisor or multiple of {ranks}")


def model_agents(n_agents: int, models: int) -> list[list[int]]:
    """The agents whose shards model ``m`` trains on: contiguous blocks (``agent_blocks``)."""
    if models > n_agents:
        raise ConfigError(f"codistillation: {models} models but only {n_agents} shards; use "
                          f"models <= {n_agents} or give more shards")
    return [list(range(lo, hi)) for lo, hi in agent_blocks(n_agents, models)]


def _group_agents(blocks: list[list[int]], place: Placement) -> list[list[list[int]]]:
    """Each model's agents split over the ranks of its group (identical on every rank)."""
    g = place.ranks_per_model
    short = min(range(place.models), key=lambda m: len(blocks[m]))
    if len(blocks[short]) < g:
        raise LaunchError(f"codistillation: {g} ranks per model but model {short} has only "
                           f"{len(blocks[short])} shards; run with at most "
                           f"{len(blocks[short]) * place.models} ranks or give more shards")
    return [[block[lo:hi] for lo, hi in agent_blocks(len(block), g)] for block in blocks]


def _model_seed(seed: int, m: int) -> int:
    return int(np.random.SeedSequence([seed, m]).generate_state(1, dtype=np.uint64)[0]
               % (2 ** 63))


def initial_models(module: nn.Module, *, models: int, seed: int = 0) -> list[nn.Module]:
    """Copies of ``module``: model 0 as given, model ``m > 0`` re-initialised by every
    submodule's ``reset_parameters`` under a generator seeded by ``(seed, m)`` (the global RNG
    is left untouched, ``module`` unchanged)."""
    for name, sub in module.named_modules():
        owns = any(True for _ in sub.parameters(recurse=False))
        if owns and not callable(getattr(sub, "reset_parameters", None)):
            raise ConfigError(f"codistillation: submodule {name or type(sub).__name__!r} has "
                              f"parameters but no reset_parameters, so models 1..{models - 1} "
                              f"cannot be re-initialised; give it a reset_parameters method")
    out = [copy.deepcopy(module)]
    for m in range(1, models):
        replica = copy.deepcopy(module)
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            torch.manual_seed(_model_seed(seed, m))
            for sub in replica.modules():
                if callable(getattr(sub, "reset_parameters", None)):
                    sub.reset_parameters()
        out.append(replica)
    return out


# ----------------------------------------------------------------------------- schedule


def exchange_steps(iterations: int, *, burn_in: int, every: int) -> list[int]:
    """Steps ``t < iterations`` that start with an exchange: ``t >= burn_in``,
    ``(t - burn_in) mod every = 0``."""
    return list(range(burn_in, iterations, every))


def teacher_step(t: int, *, burn_in: int, every: int) -> int | None:
    """The exchange whose parameters teach at step ``t`` (``None`` during burn-in)."""
    if t < burn_in:
        return None
    return burn_in + (t - burn_in) // every * every


# ----------------------------------------------------------------------------- maths


def distillation_target(outputs: Sequence[torch.Tensor], *, loss: str) -> torch.Tensor:
    """The teachers' averaged prediction ``p = mean_j s(f_j)``: probabilities (sigmoid for
    one output, softmax for several) for ``cross_entropy``, raw outputs for ``squared``."""
    if loss == "squared":
        preds = list(outputs)
    elif outputs[0].shape[-1] == 1:
        preds = [torch.sigmoid(o) for o in outputs]
    else:
        preds = [torch.softmax(o, dim=-1) for o in outputs]
    return torch.stack(preds).mean(0)


def checksum(w: torch.Tensor) -> float:
    """``sum_i w_i (1 + i/P)``: one number that tells parameter vectors (and permutations of
    them) apart, for the traces."""
    w = w.detach().reshape(-1).to(device="cpu", dtype=torch.float64)
    ramp = 1.0 + torch.arange(len(w), dtype=torch.float64) / max(len(w), 1)
    return float((w * ramp).sum())


def _as_array(a) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().numpy()
    return np.asarray(a)


def predicted_classes(outputs, *, threshold: float = 0.0) -> np.ndarray:
    """Class labels from predictions: a 1-D array is taken as labels already; ``(M, 1)``
    outputs give ``out > threshold`` (0 for logits, 0.5 for squared-loss outputs); ``(M, O)``
    outputs give the argmax."""
    out = _as_array(outputs)
    if out.ndim == 1:
        return out
    if out.ndim != 2:
        raise ConfigError(f"predictions must be labels (M,) or outputs (M, O), got shape "
                          f"{out.shape}")
    if out.shape[1] == 1:
        return (out[:, 0] > threshold).astype(np.int64)
    return out.argmax(1)


def churn(pred_a, pred_b, *, task: str, threshold: float = 0.0) -> float:
    """Prediction disagreement of two models (or two retrains) on the same samples.

    Classification: the fraction of samples whose predicted classes differ
    (:func:`predicted_classes`); regression: the RMS difference of the predictions.

    >>> churn([0, 1, 2, 1], [0, 2, 2, 1], task="multiclass")
    0.25
    >>> churn([[1.0], [2.0]], [[1.0], [4.0]], task="regression") == 2 ** 0.5
    True
    """
    if task not in TASKS:
        raise ConfigError(f"task {task!r} is unknown; choose one of: {', '.join(TASKS)}")
    a, b = _as_array(pred_a), _as_array(pred_b)
    if a.shape != b.shape or a.size == 0:
        raise ConfigError(f"churn needs two non-empty predictions of the same shape, got "
                          f"{a.shape} and {b.shape}")
    if task == "regression":
        return float(np.sqrt(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)))
    return float(np.mean(predicted_classes(a, threshold=threshold)
                         != predicted_classes(b, threshold=threshold)))


# ----------------------------------------------------------------------------- wiring


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


def _pack(place: Placement, rank: int, flats: dict[int, torch.Tensor], P: int
          ) -> torch.Tensor:
    """This rank's piece of the exchange: its models' vectors, or its slice of its model's."""
    g = place.ranks_per_model
    if g == 1:
        return torch.cat([flats[m] for m in place.hosted(rank)])
    chunk = -(-P // g)
    padded = torch.zeros(chunk * g, dtype=flats[place.hosted(rank)[0]].dtype,
                         device=flats[place.hosted(rank)[0]].device)
    padded[:P] = flats[place.hosted(rank)[0]]
    j = rank % g
    return padded[j * chunk:(j + 1) * chunk].clone()


def _unpack(place: Placement, pieces: list[torch.Tensor], P: int) -> list[torch.Tensor]:
    """Every model's vector from the ranks' pieces (in rank order)."""
    g = place.ranks_per_model
    if g == 1:
        return [v for piece in pieces for v in piece.split(P)]
    return [torch.cat(pieces[m * g:(m + 1) * g])[:P] for m in range(place.models)]


def _gather_models(world: World, place: Placement, replicas: list[_Replica], flat: FlatModel,
                   traffic: Traffic | None = None) -> list[torch.Tensor]:
    """All ``n`` models' flat vectors on every rank: one all-gather (through ``traffic`` for
    an exchange; outside it for an evaluation)."""
    flats = {r.index: flat.flatten(r.module) for r in replicas}
    piece = _pack(place, world.rank, flats, flat.n_params)
    pieces = [torch.empty_like(piece) for _ in range(world.size)]
    if traffic is not None:
        traffic.all_gather(pieces, piece)
    else:
        dist.all_gather(pieces, piece)
    return _unpack(place, pieces, flat.n_params)


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


# ----------------------------------------------------------------------------- validation


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


# ----------------------------------------------------------------------------- trainer


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
    with process_group(backend=backend, device=device, timeout=timeout) as world:
        if burn_in >= iterations and world.rank == 0:
            print(f"dcnn: warning: codistillation: burn_in = {burn_in} >= iterations = "
                  f"{iterations}: no exchange happens, the models train independently",
                  file=sys.stderr, flush=True)
        # world-dependent checks: the same on every rank, before any collective
        place = placement(models, world.size)
        split = _group_agents(blocks, place)
        replicas, groups = _build(world, place, starts, shards, split, optimizer=optimizer,
                                  lr=lr)
        try:
            history, info = _train(world, place, replicas, flat, metrics=metrics, loss=loss,
                                   task=task, regularizer=regularizer, iterations=iterations,
                                   lr=lr, batch_size=batch_size, eval_every=eval_every,
                                   seed=seed, progress=progress, exchange_every=exchange_every,
                                   burn_in=burn_in, alpha=alpha, trace=trace, test=test,
                                   pooled=pooled)
        finally:
            del replicas
            for pg in groups:
                if pg is not None and pg != dist.GroupMember.NON_GROUP_MEMBER:
                    dist.destroy_process_group(pg)
            gc.collect()
    info.update(method=METHOD, optimizer=optimizer, lr=lr, models=models,
                ranks_per_model=place.ranks_per_model, models_per_rank=place.models_per_rank,
                agents_per_model=blocks,
                samples_per_model=[sum(len(shards[a][0]) for a in b) for b in blocks],
                exchange_every=exchange_every, burn_in=burn_in, distill_weight=alpha,
                batch_size_per_rank=batch_size)
    return history, info


def _train(world, place, replicas, flat, *, metrics, loss, task, regularizer, iterations, lr,
           batch_size, eval_every, seed, progress, exchange_every, burn_in, alpha, trace,
           test, pooled) -> tuple[History, dict]:
    traffic = Traffic(world)
    rec = Recorder(world, metrics=metrics, desc=METHOD, progress=progress, total=iterations)
    # the teachers' template on the training device (``flat`` stays on the CPU for metrics)
    flat_dev = FlatModel(copy.deepcopy(flat.module).to(world.device), dtype=flat.dtype)
    exchanges, exchange_bytes = 0, 0
    teacher_trace, exchange_trace = [], []

    def record(t: int) -> None:
        rec.record(t, lambda: _model0(world, replicas, flat), bytes_per_agent=traffic.bytes_sent,
                   step_size=lr)

    record(0)
    for t in range(iterations):
        with rec.training():
            if t >= burn_in and (t - burn_in) % exchange_every == 0:
                before = traffic.bytes_sent
                every = _gather_models(world, place, replicas, flat, traffic)
                exchange_bytes += traffic.bytes_sent - before
                exchanges += 1
                for rep in replicas:
                    rep.teachers = [w for j, w in enumerate(every) if j != rep.index]
                    rep.target = None
                if trace:
                    exchange_trace.append((t, [checksum(w) for w in every]))
            for rep in replicas:
                if trace and rep.leader:
                    teacher_trace.append((t, rep.index, [checksum(w) for w in rep.teachers]
                                          if rep.teachers is not None else []))
                _backward(rep, flat=flat_dev, loss=loss, alpha=alpha, batch_size=batch_size,
                          seed=seed, step=t, traffic=traffic)
                add_regularizer_grad_(rep.params, smooth_part(regularizer))
                rep.opt.step()
                if not regularizer.smooth:
                    prox_(rep.params, regularizer, lr)
        if (t + 1) % eval_every == 0 or t + 1 == iterations:
            record(t + 1)
    rec.close()
    final = [w.cpu() for w in _gather_models(world, place, replicas, flat)]
    busiest = torch.tensor([float(traffic.bytes_sent), float(exchange_bytes)],
                           dtype=torch.float64, device=world.device)
    dist.all_reduce(busiest, op=dist.ReduceOp.MAX)
    history, last = rec.history, rec.history.last
    info = {"world_size": world.size, "launcher": world.launcher, "backend": world.backend,
            "iterations": iterations, "time_s": last["time_s"],
            "eval_time_s": last["eval_time_s"],
            "time_per_step_s": last["time_s"] / iterations if iterations else float("nan"),
            "bytes_sent": busiest[0].item(), "exchange_bytes": busiest[1].item(),
            "bytes_note": "measured: the parameter all-gathers of the exchanges plus, with "
                          "several ranks per model, the gradient all-reduce in each model's "
                          "group (busiest rank)",
            "exchanges": exchanges, "final_params": final[0]}
    info.update(_final_metrics(final, flat, metrics=metrics, loss=loss, task=task, test=test,
                               pooled=pooled))
    if trace:
        merged = [None] * world.size
        dist.all_gather_object(merged, teacher_trace)
        info["teacher_trace"] = sorted((e for part in merged for e in part),
                                       key=lambda e: (e[0], e[1]))
        info["exchange_trace"] = exchange_trace
        info["final_checksums"] = [checksum(w) for w in final]
    return history, info


def _final_metrics(final: list[torch.Tensor], flat: FlatModel, *, metrics, loss, task, test,
                   pooled) -> dict:
    """Every model's final metrics, and the disagreement of models 0 and 1 (on the test set,
    else on the training set)."""
    recs = [metrics(w) for w in final]
    X = (test if test is not None else pooled)[0]
    x = torch.as_tensor(np.asarray(X), dtype=flat.dtype)
    with torch.no_grad():
        outs = [flat.apply(w, x) for w in final[:2]]
    return {"final_test_metric_per_model": [r.get("test_metric") for r in recs],
            "final_train_metric_per_model": [r["train_metric"] for r in recs],
            "final_objective_per_model": [r["objective"] for r in recs],
            "disagreement": churn(outs[0], outs[1], task=task,
                                  threshold=0.5 if loss == "squared" else 0.0),
            "disagreement_on": "test" if test is not None else "train"}
