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
for SGD -- exactly the update of :func:`dcnn.baselines.runtime.update.apply_update` on the
part's own cost.

Recovery phase, the last ``R`` steps: ordinary backpropagation through the joined model on
``(1/|B|) sum_{k in B} loss(t_k, f(w; x_k)) + r(w)`` with fresh optimisers (the moments of the
code regression belong to another cost). Under ``mpiexec`` the parts stay on their ranks and
this is a plain pipeline: rank ``r`` receives the cut activations ``(|B|, h)`` from ``r - 1``,
sends its own to ``r + 1``, and the gradients travel back (``2 |B| h itemsize`` bytes per
crossing cut and step, measured by :class:`~dcnn.baselines.runtime.traffic.Traffic`; the training
phase sends nothing).

Placement: part ``j`` sits on the rank whose contiguous block holds it
(:func:`dcnn.comm.agent_blocks`, ``S >= R``); in one process every part lives in the process,
runs exactly the same operations, and so gives the same History as an ``mpiexec`` run.

Memory per worker (computed, :func:`memory_bytes`): its parameters, their gradients, the
optimiser state (SGD none, Adam two moments) and the activations one batch leaves in its
parts (each part's input and every layer's output), beside the same count for one worker
holding the unsplit model.

The parts, codes and costs are in :mod:`~dcnn.baselines.schemes.sil_codes`; the trainer
:class:`SIL` switches from the training phase to recovery inside its step and is run by the
one loop of :mod:`dcnn.baselines.runtime.trainer`.
"""
from __future__ import annotations

import datetime
import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from ...errors import ConfigError, LaunchError
from ...metrics import History
from ...problems import Regularizer, make_regularizer
from ..engines.pipeline import linear_positions
from ..runtime import (DEFAULT_TIMEOUT, Traffic, Trainer, World, apply_update, as_int,
                       as_tensors, batch_rows, check_batch_size, check_trainer_inputs,
                       make_evaluator, make_optimizer, per_rank, pool, train_in_world,
                       weighted_loss)
from .sil_codes import (PartSpec, class_labels, code_checksum, code_table, join_parts,
                        memory_bytes, noisy_codes, part_loss, part_specs, place_parts,
                        split_parts)

__all__ = ["PartSpec", "part_specs", "split_parts", "join_parts", "place_parts", "code_table",
           "class_labels", "noisy_codes", "part_loss", "memory_bytes", "code_checksum", "SIL",
           "train_sil"]


class SIL(Trainer):
    """This rank's parts, their optimisers and the data; :meth:`step` runs the training
    phase for ``t < iterations - recovery`` and recovery after it (module docstring)."""

    method = "sil"

    def __init__(self, *, world: World, module: nn.Module, shards, stages: int, loss: str,
                 task: str, regularizer: Regularizer, optimizer: str, lr: float,
                 batch_size: int | None, noise: float, seed: int, iterations: int,
                 recovery: int):
        self.world, self.loss, self.reg = world, loss, regularizer
        self.iterations, self.recovery = iterations, recovery
        self.start = iterations - recovery       # first recovery step
        self.training_bytes = 0
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
        apply_update(list(self.parts[j].parameters()), self.opts[j], self.reg, self.lr)

    def step(self, t: int) -> None:
        if t == self.start:
            # the joined model's cost is another one: fresh optimiser moments
            self.training_bytes = self.traffic.bytes_sent
            self.reset_optimizers()
        (self.local_step if t < self.start else self.recovery_step)(t)

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

    def parameters(self) -> torch.Tensor:
        """The joined model's flat vector on every rank (disjoint slices, one sum)."""
        flat = torch.zeros(self.n_params, dtype=self.dtype, device=self.world.device)
        for j, part in self.parts.items():
            s = self.specs[j]
            flat[s.offset:s.offset + s.size] = torch.cat([p.detach().reshape(-1)
                                                          for p in part.parameters()])
        dist.all_reduce(flat)
        return flat.cpu()

    @property
    def bytes_sent(self) -> float:
        return self.traffic.bytes_sent

    def info(self) -> dict:
        world = self.world
        sent = per_rank(world, self.traffic.bytes_sent)
        trained = per_rank(world, self.training_bytes if self.start < self.iterations
                           else self.traffic.bytes_sent)
        batch = len(self._rows(0))
        itemsize = torch.empty((), dtype=self.dtype).element_size()
        mem = [memory_bytes([self.specs[j] for j in js], batch=batch, optimizer=self.optimizer,
                            itemsize=itemsize) for js in self.placement]
        unsplit = memory_bytes([self.whole], batch=batch, optimizer=self.optimizer,
                               itemsize=itemsize)
        return {**super().info(), "optimizer": self.optimizer, "lr": self.lr,
                "bytes_sent": int(max(sent)),
                "bytes_note": "measured: the training phase sends nothing; recovery steps send "
                              "the cut activations forward and their gradients back between "
                              "ranks; gathering the joined model for evaluation is not counted",
                "stages": len(self.specs), "cuts": [s.hi - 1 for s in self.specs[:-1]],
                "code_dims": self.cut_dims, "n_classes": self.n_classes,
                "code_checksums": per_rank(world, code_checksum(self.codes)),
                "noise": self.noise, "recovery": self.recovery, "batch": batch,
                "part_layers": [[s.lo, s.hi] for s in self.specs],
                "parts_per_rank": self.placement,
                "training_bytes": int(max(trained)),
                "recovery_bytes": int(max(s - t for s, t in zip(sent, trained))),
                "bytes_per_rank": [int(s) for s in sent],
                "memory_per_worker": max(m["total"] for m in mem),
                "memory_per_rank": [m["total"] for m in mem], "memory_breakdown_per_rank": mem,
                "memory_unsplit": unsplit["total"], "memory_unsplit_breakdown": unsplit}


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

    def build(world: World) -> SIL:
        n_stages = int(stages) or max(world.size, 2)
        n_linear = len(linear_positions(module))
        if n_stages > n_linear:   # same check, same message, on every rank
            raise LaunchError(f"sil: {n_stages} stages (one per rank) but the MLP has "
                               f"{n_linear} Linear layers; run with at most {n_linear} ranks "
                               f"or add hidden layers")
        return SIL(world=world, module=module, shards=shards, stages=n_stages, loss=loss,
                   task=task, regularizer=regularizer, optimizer=optimizer, lr=lr,
                   batch_size=batch_size, noise=float(noise), seed=int(seed),
                   iterations=iterations, recovery=recovery)

    return train_in_world(build, metrics=metrics, iterations=iterations, eval_every=eval_every,
                          progress=progress, backend=backend, device=device, timeout=timeout)
