"""Synthetic Intermediate Labels (SIL): the parts of a split model train apart, each against
random class codes, with no communication (Karadag & Topaloglu, arXiv 2403.11204, 2024).

The paper's label generator was not retrievable; this is the workable reading of
``notes/baselines.md``. The MLP ``f = f_{S-1} o ... o f_0`` (an ``nn.Sequential`` of
:func:`dcnn.problems.mlp`) is cut into ``S`` contiguous parts right after ``S - 1`` of its
Linear layers (pre-activation; balanced by the number of Linear layers), so part ``j > 0``
begins with an activation. At cut ``j`` (width ``h_j``, the Linear layer's output size) every
class ``y`` of the ``C`` classes has a code ``c^j_y in R^{h_j}`` with iid ``N(0, 1)`` entries,
drawn by a generator seeded by ``(seed, j)`` only (:func:`code_table`), so every rank builds
the same table without communicating. Labels: binary ``y = [t > 1/2]`` (``C = 2``),
multiclass ``y = argmax t``; a regression task is refused.

Training phase, steps ``t < T - R`` (``T`` = ``iterations``, ``R`` = ``recovery``); every part
takes the same batch ``B_t`` (rows by ``(seed, t)``; parts ``j > 0`` use only its labels),
``eps^{t,j}_k ~ N(0, I)`` from a generator seeded by ``(seed, t, j)``, ``sigma`` = ``noise``:

    L_0(w_0)     = (1/|B|) sum_{k in B} || f_0(w_0; x_k) - c^0_{y_k} ||^2
    L_j(w_j)     = (1/|B|) sum_{k in B} || f_j(w_j; c^{j-1}_{y_k} + sigma eps^{t,j}_k)
                                          - c^j_{y_k} ||^2                       0 < j < S-1
    L_{S-1}(w)   = (1/|B|) sum_{k in B} loss(t_k, f_{S-1}(w; c^{S-2}_{y_k} + sigma eps^{t,S-1}_k))

(the squared error is summed over the ``h_j`` code entries without a factor 1/2, dcnn's
convention for ``squared``, and averaged over the batch). Each part has its own optimiser
(the same kind and rate) and steps on ``grad L_j + grad r_2(w_j)``, then ``prox_{lr r_1}``
for SGD -- exactly the update of :mod:`dcnn.baselines.engine` on the part's own cost.

Recovery phase, the last ``R`` steps: ordinary backpropagation through the joined model on
``(1/|B|) sum_{k in B} loss(t_k, f(w; x_k)) + r(w)`` with fresh optimisers (the moments of the
code regression belong to another cost). Under ``mpiexec`` the parts stay on their ranks and
this is a plain pipeline: rank ``r`` receives the cut activations ``(|B|, h)`` from ``r - 1``,
sends its own to ``r + 1``, and the gradients travel back (``2 |B| h itemsize`` bytes per
crossing cut and step, measured by :class:`~dcnn.baselines.traffic.Traffic`; the training
phase sends nothing).

Placement: part ``j`` sits on the rank whose contiguous block holds it
(:func:`dcnn.comm.agent_blocks`, ``S >= R``); in one process every part lives in the process,
runs exactly the same operations, and so gives the same History as an ``mpiexec`` run.

Memory per worker (computed, :func:`memory_bytes`): its parameters, their gradients, the
optimiser state (SGD none, Adam two moments) and the activations one batch leaves in its
parts (each part's input and every layer's output), beside the same count for one worker
holding the unsplit model.
"""
from __future__ import annotations

import copy
import datetime
import gc
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from ..comm import agent_blocks
from ..errors import ConfigError, LaunchError
from ..metrics import History
from ..problems import Regularizer, make_regularizer
from .bootstrap import DEFAULT_TIMEOUT, World, process_group
from .engine import make_evaluator
from .objective import (add_regularizer_grad_, as_int, as_tensors, batch_rows, check_batch_size,
                        check_trainer_inputs, make_optimizer, pool, prox_, smooth_part,
                        weighted_loss)
from .pipeline import linear_positions
from .recorder import Recorder
from .traffic import Traffic

__all__ = ["PartSpec", "part_specs", "split_parts", "join_parts", "place_parts", "code_table",
           "class_labels", "noisy_codes", "part_loss", "memory_bytes", "train_sil"]

_CODE_SALT, _NOISE_SALT = 0x5111, 0x5112  # keep the code and noise streams apart
_OPT_STATE = {"sgd": 0, "adam": 2}         # optimiser state tensors per parameter tensor


@dataclass(frozen=True)
class PartSpec:
    """Part ``index``: children ``[lo, hi)`` of the Sequential, parameters ``[offset, offset +
    size)`` of the flat vector, input/output widths, and ``units``: the activation entries
    one sample leaves in it (its input plus every child's output)."""

    index: int
    lo: int
    hi: int
    offset: int
    size: int
    in_dim: int
    out_dim: int
    units: int


def part_specs(module: nn.Module, stages: int) -> list[PartSpec]:
    """Cut the MLP after ``stages - 1`` of its Linear layers (balanced by Linear count)."""
    pos = linear_positions(module)
    if isinstance(stages, bool) or not isinstance(stages, (int, np.integer)) \
            or not 1 <= stages <= len(pos):
        raise ConfigError(f"sil: {stages!r} stages but the MLP has {len(pos)} Linear layers; "
                          f"use 2..{len(pos)} stages or add hidden layers")
    groups = np.array_split(np.arange(len(pos)), int(stages))
    bounds = [0] + [pos[g[-1]] + 1 for g in groups[:-1]] + [len(module)]
    sizes = [sum(p.numel() for p in layer.parameters()) for layer in module]
    width, specs = module[pos[0]].in_features, []
    for s in range(int(stages)):
        lo, hi = bounds[s], bounds[s + 1]
        in_dim, units = width, width
        for layer in module[lo:hi]:
            width = layer.out_features if isinstance(layer, nn.Linear) else width
            units += width
        specs.append(PartSpec(s, lo, hi, int(sum(sizes[:lo])), int(sum(sizes[lo:hi])),
                              int(in_dim), int(width), int(units)))
    return specs


def split_parts(module: nn.Module, stages: int) -> list[nn.Sequential]:
    """The ``stages`` parts of ``module`` (deep copies; ``module`` is left alone)."""
    return [nn.Sequential(*[copy.deepcopy(module[i]) for i in range(s.lo, s.hi)])
            for s in part_specs(module, stages)]


def join_parts(parts: Sequence[nn.Sequential]) -> nn.Sequential:
    """All parts composed: the original architecture, same parameter names and order."""
    return nn.Sequential(*[layer for part in parts for layer in part])


def place_parts(stages: int, ranks: int) -> list[list[int]]:
    """The parts each rank holds: contiguous blocks (:func:`dcnn.comm.agent_blocks`)."""
    if ranks > stages:
        raise LaunchError(f"sil: {ranks} ranks but only {stages} stages; set stages >= "
                           f"{ranks} (at most the number of Linear layers) or run with at most "
                           f"{stages} ranks (mpiexec -n {stages})")
    return [list(range(lo, hi)) for lo, hi in agent_blocks(stages, ranks)]


def _generator(*keys: int) -> torch.Generator:
    """A CPU generator seeded by the tuple ``keys`` (non-negative integers)."""
    state = np.random.SeedSequence([int(k) for k in keys]).generate_state(2, np.uint64)
    return torch.Generator().manual_seed(int(state[0] >> np.uint64(1)))


def code_table(*, n_classes: int, dims: Sequence[int], seed: int) -> list[torch.Tensor]:
    """One code per class at every cut: ``table[j]`` is ``(n_classes, dims[j])`` float64 with
    iid ``N(0, 1)`` entries from a generator seeded by ``(seed, j)`` only.

    >>> a = code_table(n_classes=3, dims=[4, 2], seed=0)
    >>> [tuple(c.shape) for c in a], torch.equal(a[0], code_table(n_classes=3, dims=[4],
    ...                                                          seed=0)[0])
    ([(3, 4), (3, 2)], True)
    """
    return [torch.randn(int(n_classes), int(h), generator=_generator(_CODE_SALT, seed, j),
                        dtype=torch.float64) for j, h in enumerate(dims)]


def class_labels(T: torch.Tensor, task: str) -> tuple[torch.Tensor, int]:
    """``(labels, C)``: binary ``t > 1/2`` (``C = 2``), multiclass ``argmax t`` (one-hot)."""
    if task == "binary":
        return (T[:, 0] > 0.5).long(), 2
    return T.argmax(dim=1), int(T.shape[1])


def noisy_codes(codes: torch.Tensor, labels: torch.Tensor, *, noise: float, seed: int,
                step: int, part: int) -> torch.Tensor:
    """``c_{y_k} + sigma eps_k``, ``eps`` drawn by a generator seeded by ``(seed, step, part)``."""
    out = codes[labels]
    if noise == 0.0:
        return out
    eps = torch.randn(out.shape, generator=_generator(_NOISE_SALT, seed, step, part),
                      dtype=torch.float64)
    return out + noise * eps.to(out.dtype).to(out.device)


def part_loss(part: nn.Module, index: int, *, n_parts: int, loss: str, x: torch.Tensor | None,
              t: torch.Tensor, labels: torch.Tensor, codes: Sequence[torch.Tensor],
              noise: float, seed: int, step: int) -> torch.Tensor:
    """The training-phase cost ``L_index`` of one part on one batch (module docstring);
    ``x`` is used by part 0 only, ``t`` by the last part only."""
    if index == 0:
        inp = x
    else:
        inp = noisy_codes(codes[index - 1], labels, noise=noise, seed=seed, step=step,
                          part=index)
    out = part(inp)
    weight = 1.0 / len(labels)
    if index == n_parts - 1:
        return weighted_loss(loss, out.reshape(len(out), -1), t, weight=weight)
    return weighted_loss("squared", out, codes[index][labels], weight=weight)


def memory_bytes(specs: Sequence[PartSpec], *, batch: int, optimizer: str,
                 itemsize: int) -> dict:
    """What a worker holding ``specs`` keeps during a step, in bytes (computed): parameters,
    their gradients, the optimiser state (SGD none, Adam two moments) and the activations of
    one batch of ``batch`` samples through its parts (inputs and every layer's output)."""
    n = sum(s.size for s in specs)
    out = {"params": n * itemsize, "grads": n * itemsize,
           "optimizer": _OPT_STATE[optimizer] * n * itemsize,
           "activations": batch * sum(s.units for s in specs) * itemsize}
    return {**out, "total": sum(out.values())}


# --------------------------------------------------------------------------- the trainer
class _Worker:
    """This rank's parts, their optimisers and the data: wiring only."""

    def __init__(self, *, world: World, module: nn.Module, shards, stages: int, loss: str,
                 task: str, regularizer: Regularizer, optimizer: str, lr: float,
                 batch_size: int | None, noise: float, seed: int):
        self.world, self.loss, self.reg = world, loss, regularizer
        self.optimizer, self.lr, self.noise, self.seed = optimizer, lr, noise, seed
        self.batch_size = batch_size
        self.specs = part_specs(module, stages)
        self.whole = part_specs(module, 1)[0]
        self.placement = place_parts(stages, world.size)
        self.mine = self.placement[world.rank]
        dtype = next(module.parameters()).dtype
        self.X, self.T = as_tensors(*pool(shards), dtype, world.device)
        self.labels, self.n_classes = class_labels(self.T, task)
        self.cut_dims = [s.out_dim for s in self.specs[:-1]]
        self.codes = [c.to(dtype).to(world.device) for c in
                      code_table(n_classes=self.n_classes, dims=self.cut_dims, seed=seed)]
        self.n_params = sum(p.numel() for p in module.parameters())
        self.dtype = dtype
        parts = split_parts(module, stages)
        self.parts = {j: parts[j].to(world.device) for j in self.mine}
        self.reset_optimizers()
        self.traffic = Traffic(world)

    def reset_optimizers(self) -> None:
        self.opts = {j: make_optimizer(p.parameters(), name=self.optimizer, lr=self.lr)
                     for j, p in self.parts.items()}

    def _update(self, j: int) -> None:
        params = list(self.parts[j].parameters())
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        add_regularizer_grad_(params, smooth_part(self.reg))
        self.opts[j].step()
        if not self.reg.smooth:
            prox_(params, self.reg, self.lr)

    def _zero(self) -> None:
        for part in self.parts.values():
            for p in part.parameters():
                p.grad = None

    def _rows(self, step: int) -> torch.Tensor:
        rows = batch_rows(len(self.X), self.batch_size, seed=self.seed, step=step, stream=0)
        return torch.arange(len(self.X), device=self.X.device) if rows is None \
            else rows.to(self.X.device)

    def local_step(self, step: int) -> None:
        """One training-phase step of every local part (no communication)."""
        self._zero()
        rows = self._rows(step)
        for j, part in self.parts.items():
            part_loss(part, j, n_parts=len(self.specs), loss=self.loss,
                      x=self.X[rows] if j == 0 else None, t=self.T[rows],
                      labels=self.labels[rows], codes=self.codes,
                      noise=self.noise, seed=self.seed, step=step).backward()
            self._update(j)

    def recovery_step(self, step: int) -> None:
        """One backprop step of the joined model, pipelined over the ranks (part boundaries
        are detached and chained by hand, so one process runs the same operations)."""
        self._zero()
        rows = self._rows(step)
        r, last = self.world.rank, len(self.specs) - 1
        first = self.mine[0]
        if first == 0:
            h = self.X[rows]
        else:
            h = torch.empty(len(rows), self.specs[first].in_dim, dtype=self.dtype,
                            device=self.X.device)
            self.traffic.recv(h, r - 1)
        chain = []
        for j in self.mine:
            inp = h.detach().requires_grad_(j > 0)
            h = self.parts[j](inp)
            chain.append((inp, h))
        if self.mine[-1] == last:
            out = h.reshape(len(h), -1)
            weighted_loss(self.loss, out, self.T[rows], weight=1.0 / len(rows)).backward()
            grad = chain[-1][0].grad
            chain = chain[:-1]
        else:
            self.traffic.send(h.detach(), r + 1)
            grad = torch.empty_like(h)
            self.traffic.recv(grad, r + 1)
        for inp, out in reversed(chain):
            out.backward(grad)
            grad = inp.grad
        if first > 0:
            self.traffic.send(grad, r - 1)
        for j in self.mine:
            self._update(j)

    def flat_parameters(self) -> torch.Tensor:
        """The joined model's flat vector on every rank (disjoint slices, one sum)."""
        flat = torch.zeros(self.n_params, dtype=self.dtype, device=self.world.device)
        for j, part in self.parts.items():
            s = self.specs[j]
            flat[s.offset:s.offset + s.size] = torch.cat([p.detach().reshape(-1)
                                                          for p in part.parameters()])
        dist.all_reduce(flat)
        return flat.cpu()

    def per_rank(self, value: float) -> list[float]:
        """``value`` of every rank (measurement, outside Traffic)."""
        t = torch.zeros(self.world.size, dtype=torch.float64, device=self.world.device)
        t[self.world.rank] = float(value)
        dist.all_reduce(t)
        return t.tolist()


def code_checksum(codes: Sequence[torch.Tensor]) -> float:
    """A position-weighted sum of the code tables (differs when any entry or order differs):
    what each rank reports of the tables it built, so a test can compare them."""
    flat = torch.cat([c.reshape(-1).to(torch.float64).cpu() for c in codes])
    return float((flat * torch.arange(1, len(flat) + 1, dtype=torch.float64)).sum())


# ------------------------------------------------------------------------------ checks
def _int(name: str, value, *, lo: int, hi: int | None = None, fix: str = "") -> int:
    return as_int(name, value, low=lo, high=hi, fix=fix, who="sil")


def _validate(*, module, shards, loss, task, regularizer, optimizer, lr, stages, noise,
              recovery, iterations, seed) -> None:
    check_trainer_inputs(module=module, shards=shards, loss=loss, task=task,
                         regularizer=regularizer, optimizer=optimizer, lr=lr, who="sil")
    if not isinstance(module, nn.Sequential):
        raise ConfigError(f"sil: the model must be the nn.Sequential MLP of "
                          f"dcnn.problems.mlp (model.name = 'mlp'), got "
                          f"{type(module).__name__}")
    n_linear = len(linear_positions(module))
    if task not in ("binary", "multiclass"):
        raise ConfigError(f"sil needs class labels for its codes, got task {task!r}; use a "
                          f"binary or multiclass dataset, or another method (e.g. pipeline)")
    if n_linear < 2:
        raise ConfigError(f"sil: the MLP has {n_linear} Linear layer, so there is no cut; "
                          f"add a hidden layer (model.hidden)")
    _int("seed", seed, lo=0)
    if _int("stages", stages, lo=0, hi=n_linear,
            fix=f" (0 = one per rank, at least 2; the MLP has {n_linear} Linear layers; "
                f"add hidden layers for more)") == 1:
        raise ConfigError("sil: stages=1 leaves no cut to put codes at; use stages >= 2 "
                          "(or 0 for one per rank)")
    if isinstance(noise, bool) or not isinstance(noise, (int, float)) \
            or not (math.isfinite(noise) and noise >= 0):
        raise ConfigError(f"sil: noise must be a finite number >= 0 (the code noise sigma), "
                          f"got {noise!r}")
    _int("recovery", recovery, lo=0, hi=iterations,
         fix=" (the last end-to-end steps of the iterations); lower it or raise iterations")
    out = next(m for m in reversed(module) if isinstance(m, nn.Linear)).out_features
    width = np.asarray(shards[0][1]).reshape(len(shards[0][1]), -1).shape[1]
    want = 1 if task == "binary" else width
    if width != out or (task == "binary") != (width == 1):
        raise ConfigError(f"sil: task {task!r} with targets of width {width} needs a model "
                          f"with {want} outputs (one 0/1 column for binary, one-hot for "
                          f"multiclass), the model has {out}")


# ------------------------------------------------------------------------ entry point
def train_sil(*, module: nn.Module, shards: Sequence[tuple], test: tuple | None = None,
              loss: str = "squared", task: str = "regression",
              regularizer: Regularizer | None = None, iterations: int = 100,
              optimizer: str = "sgd", lr: float = 0.1, batch_size: int | None = None,
              eval_every: int = 10, seed: int = 0, progress: bool = False,
              backend: str = "auto", device: str = "cpu",
              timeout: datetime.timedelta = DEFAULT_TIMEOUT, stages: int = 0,
              noise: float = 0.1, recovery: int = 0) -> tuple[History, dict]:
    """Train ``module`` with Synthetic Intermediate Labels; ``(History, info)`` on every rank.

    The common arguments are those of :func:`dcnn.baselines.train_engine`. Scheme options:

    - ``stages``: number of parts ``S`` (``0`` = ``max(world size, 2)``); ``2 <= S <=`` the
      number of Linear layers, and ``S >=`` the world size.
    - ``noise``: ``sigma >= 0``, the standard deviation of the noise on the codes fed to the
      parts ``j > 0``.
    - ``recovery``: ``0 <= R <= iterations``, the last ``R`` steps train the joined model end
      to end (a pipeline over the ranks).

    The History evaluates the joined model. ``info`` adds ``stages``, ``cuts`` (Sequential
    indices of the Linear layers each cut follows), ``code_dims``, ``parts_per_rank``,
    ``training_bytes`` (0), ``recovery_bytes``, ``memory_per_worker`` (bytes, busiest rank),
    ``memory_per_rank``, ``memory_unsplit`` and their breakdowns.

    >>> import numpy as np
    >>> from dcnn.problems import mlp
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(40, 3)); T = (X[:, :1] > 0).astype(float)
    >>> hist, info = train_sil(module=mlp(n_inputs=3, hidden=[4], n_outputs=1), shards=[(X, T)],
    ...                        loss="cross_entropy", task="binary", iterations=4, eval_every=2)
    >>> info["stages"], info["cuts"], info["code_dims"], info["training_bytes"]
    (2, [0], [4], 0)
    """
    regularizer = make_regularizer("none") if regularizer is None else regularizer
    iterations = _int("iterations", iterations, lo=0)
    eval_every = _int("eval_every", eval_every, lo=1)
    batch_size = check_batch_size(batch_size)
    _validate(module=module, shards=shards, loss=loss, task=task, regularizer=regularizer,
              optimizer=optimizer, lr=lr, stages=stages, noise=noise, recovery=recovery,
              iterations=iterations, seed=seed)
    metrics = make_evaluator(module=module, pooled=pool(shards), loss=loss, task=task,
                             regularizer=regularizer, test=test)
    with process_group(backend=backend, device=device, timeout=timeout) as world:
        n_stages = int(stages) or max(world.size, 2)
        n_linear = len(linear_positions(module))
        if n_stages > n_linear:   # same check, same message, on every rank
            raise LaunchError(f"sil: {n_stages} stages (one per rank) but the MLP has "
                               f"{n_linear} Linear layers; run with at most {n_linear} ranks "
                               f"or add hidden layers")
        worker = _Worker(world=world, module=module, shards=shards, stages=n_stages,
                         loss=loss, task=task, regularizer=regularizer, optimizer=optimizer,
                         lr=lr, batch_size=batch_size, noise=float(noise), seed=int(seed))
        try:
            history, info = _run(worker, metrics=metrics, iterations=iterations,
                                 recovery=recovery, eval_every=eval_every, progress=progress)
        finally:
            del worker
            gc.collect()
    return history, info


def _run(worker: _Worker, *, metrics, iterations: int, recovery: int, eval_every: int,
         progress: bool) -> tuple[History, dict]:
    rec = Recorder(worker.world, metrics=metrics, desc="sil", progress=progress,
                   total=iterations)
    w, lr, start = None, worker.lr, iterations - recovery
    training_bytes = 0

    def gather() -> torch.Tensor:
        nonlocal w
        w = worker.flat_parameters()
        return w

    rec.record(0, gather, bytes_per_agent=0, step_size=lr)
    for t in range(iterations):
        if t == start:
            training_bytes = worker.traffic.bytes_sent
            worker.reset_optimizers()
        with rec.training():
            (worker.local_step if t < start else worker.recovery_step)(t)
        if (t + 1) % eval_every == 0 or t + 1 == iterations:
            rec.record(t + 1, gather, bytes_per_agent=worker.traffic.bytes_sent, step_size=lr)
    rec.close()
    if start == iterations:
        training_bytes = worker.traffic.bytes_sent
    history, last = rec.history, rec.history.last
    sent = worker.per_rank(worker.traffic.bytes_sent)
    trained = worker.per_rank(training_bytes)
    batch = len(worker._rows(0))
    itemsize = torch.empty((), dtype=worker.dtype).element_size()
    mem = [memory_bytes([worker.specs[j] for j in js], batch=batch, optimizer=worker.optimizer,
                        itemsize=itemsize) for js in worker.placement]
    whole = worker.whole
    info = {"method": "sil", "world_size": worker.world.size,
            "launcher": worker.world.launcher, "backend": worker.world.backend,
            "iterations": iterations, "optimizer": worker.optimizer, "lr": lr,
            "time_s": last["time_s"], "eval_time_s": last["eval_time_s"],
            "time_per_step_s": last["time_s"] / iterations if iterations else float("nan"),
            "bytes_sent": int(max(sent)),
            "bytes_note": "measured: the training phase sends nothing; recovery steps send "
                          "the cut activations forward and their gradients back between "
                          "ranks; gathering the joined model for evaluation is not counted",
            "stages": len(worker.specs), "cuts": [s.hi - 1 for s in worker.specs[:-1]],
            "code_dims": worker.cut_dims, "n_classes": worker.n_classes,
            "code_checksums": worker.per_rank(code_checksum(worker.codes)),
            "noise": worker.noise, "recovery": recovery, "batch": batch,
            "part_layers": [[s.lo, s.hi] for s in worker.specs],
            "parts_per_rank": worker.placement,
            "training_bytes": int(max(trained)),
            "recovery_bytes": int(max(s - t for s, t in zip(sent, trained))),
            "bytes_per_rank": [int(s) for s in sent],
            "memory_per_worker": max(m["total"] for m in mem),
            "memory_per_rank": [m["total"] for m in mem], "memory_breakdown_per_rank": mem,
            "memory_unsplit": memory_bytes([whole], batch=batch, optimizer=worker.optimizer,
                                           itemsize=itemsize)["total"],
            "memory_unsplit_breakdown": memory_bytes([whole], batch=batch,
                                                     optimizer=worker.optimizer,
                                                     itemsize=itemsize),
            "final_params": w}
    return history, info
