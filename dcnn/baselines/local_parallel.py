"""Local parallelism: blocks trained on local losses, pipelined over ranks without a flush.

After Laskin et al., "Parallel Training of Deep Networks with Local Updates" (arXiv
2012.03837): global backprop is replaced by truncated backprop through auxiliary heads, so the
blocks of a network train at the same time and only forward activations travel.

Split. The MLP (the ``nn.Sequential`` of :func:`dcnn.problems.mlp`) is cut at Linear
boundaries into ``S`` blocks balanced by Linear count (:func:`dcnn.baselines.pipeline.
split_stages`): block ``s`` holds its Linear layers and the activation after each, so every
block but the last outputs a post-activation hidden vector ``a_s`` (the last block outputs the
model's ``O`` outputs). Units ``u = 0..U-1`` are what trains: a block (``greedy``,
``overlapping``, ``U = S``) or a chunk of ``k`` consecutive blocks (``chunked``, ``U = S / k``).
Every unit but the last has a head ``g_u(phi_u; a) = W a + c``, a Linear from its output width
to ``O`` applied to the unit's post-activation output, drawn like PyTorch's default
(``U(-1/sqrt(width), 1/sqrt(width))``) from ``numpy.random.default_rng([seed, s])``, ``s`` the
unit's last block. The last unit's "head" is the identity: its loss is the task loss.

Update rule (one tick ``t = 0..T-1``; ``T`` = ``iterations``). ``B_b`` is the batch of step
``b``: all ``M`` pooled samples, or ``min(batch_size, M)`` distinct rows drawn by
``(seed, b)`` (:func:`dcnn.baselines.objective.batch_rows`). Unit ``u`` at tick ``t`` works on
batch ``b = t - u`` (it idles while ``b < 0``); its input is

    x_u^t = X[B_t]            (u = 0),      x_u^t = a_{u-1}^{t-1}  (u > 0, detached),

the activation unit ``u-1`` produced one tick earlier. With ``F_u(theta_u; x)`` the unit's
blocks and

    L_u^t(theta, phi) = (1/|B_b|) sum_{k in B_b} loss(t_k, g_u(phi; F_u(theta; x_k)))

(``g_{U-1}`` the identity), ``a_u^t = F_u(theta_u^t; x_u^t)`` goes forward and the gradient
of the unit's parameters is

    greedy, chunked:  G_u^t = grad_{theta,phi} L_u^t(theta_u^t, phi_u^t)
    overlapping:      G_u^t = grad_{theta,phi} L_u^t(theta_u^t, phi_u^t)
                              + ( J_theta F_u(theta_u^{t-2}; x_u^{t-2})^T d_{u+1}^{t-1}, 0 ),
                      d_u^t = dL_u^t / dx_u^t          (sent to unit u-1),

so in ``overlapping`` mode a local loss also reaches one block back, one tick late: the
gradient ``d_{u+1}^{t-1}`` that unit ``u+1`` computed at tick ``t-1`` (on the activation unit
``u`` produced at tick ``t-2``) is applied by unit ``u`` at tick ``t`` through a vector-Jacobian
product of its forward of tick ``t-2``, recomputed from the saved input and a saved copy of
``theta_u^{t-2}`` (:func:`overlap_grads`); it does not travel further back. In ``chunked``
mode the gradient inside a chunk is full backprop (``F_u`` is the composition of ``k``
blocks). Then every active unit steps once (``eta`` = ``lr``, ``r = r_1 + r_2`` the l1 and l2
parts of the regulariser, applied to the model's parameters ``theta``, not to the heads):

    SGD:  theta <- prox_{eta r_1}(theta - eta (G^theta + grad r_2(theta))),
          phi <- phi - eta G^phi;          Adam: one torch.optim.Adam per unit.

One unit (``S = 1``, or ``chunked`` with ``k = S``) is ordinary backprop: at tick ``t`` the
whole network takes a gradient step on batch ``t`` with the task loss. The delivered model is
the MLP without its heads; after ``T`` ticks its unit ``u`` has taken ``T - u`` steps.

Ranks. The ``U >= R`` units sit on the ``R`` ranks in contiguous balanced blocks
(:func:`place_units`). Every rank holds all the data (targets of any batch are known
everywhere) and runs the same tick rule for its units, keeping the previous tick's activation
in a buffer between units on the same rank; between ranks the activation (and, overlapping,
the one-hop gradient ``d``) goes with non-blocking ``isend``/``irecv`` posted at the end of a
tick and waited for at the start of the next, through one :class:`~dcnn.baselines.traffic.
Traffic` (measured bytes). No flush: every unit steps every tick, so one process running all
units is exactly the sequential simulation the multi-rank run must reproduce.
"""
from __future__ import annotations

import copy
import datetime
import gc
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from ..errors import ConfigError, LaunchError
from ..metrics import History
from ..problems import Regularizer, make_regularizer
from .bootstrap import DEFAULT_TIMEOUT, World, process_group
from .engine import make_evaluator
from .objective import (add_regularizer_grad_, as_int, as_tensors, batch_rows, check_batch_size,
                        check_trainer_inputs, make_optimizer, pool, prox_, smooth_part,
                        weighted_loss)
from .pipeline import split_stages
from .recorder import Recorder
from .traffic import Traffic

__all__ = ["METHOD", "MODES", "UnitSpec", "Unit", "resolve_stages", "plan_units",
           "place_units", "make_head", "build_units", "local_loss", "overlap_grads",
           "LocalPipeline", "train_local_parallel"]

METHOD = "local-parallel"
MODES = ("greedy", "chunked", "overlapping")


@dataclass(frozen=True)
class UnitSpec:
    """Unit ``index``: blocks ``blocks``, children ``[lo, hi)`` of the Sequential, parameters
    ``[offset, offset + size)`` of the flat vector, input and output widths, and whether it
    has an auxiliary head (every unit but the last)."""

    index: int
    blocks: tuple[int, ...]
    lo: int
    hi: int
    offset: int
    size: int
    width_in: int
    width: int
    head: bool


class Unit(nn.Module):
    """One trainable unit: ``body`` (its blocks) and ``head`` (``None`` for the last)."""

    def __init__(self, body: nn.Sequential, head: nn.Linear | None):
        super().__init__()
        self.body = body
        self.head = head


def _n_linear(module: nn.Module) -> int:
    if not isinstance(module, nn.Sequential):
        raise ConfigError(f"{METHOD} needs the MLP as an nn.Sequential (dcnn.problems.mlp), "
                          f"got {type(module).__name__}")
    n = sum(isinstance(layer, nn.Linear) for layer in module)
    if n == 0:
        raise ConfigError(f"{METHOD}: the model has no nn.Linear layer; build it with "
                          f"dcnn.problems.mlp")
    return n


def resolve_stages(stages: int, *, local_mode: str, chunk: int, ranks: int, n_linear: int
                   ) -> int:
    """``S``: ``stages``, or for ``0`` (auto) one unit per rank and at least 2 units
    (``max(R, 2)`` blocks; chunked: ``k max(R, 2)``, so that one process does not reduce to a
    single unit, which is plain backprop); checked against the Linear count and ``k``."""
    auto = stages == 0
    if auto:
        stages = chunk * max(ranks, 2) if local_mode == "chunked" else max(ranks, 2)
    if stages > n_linear:
        how = f"stages=auto gives {stages}" if auto else f"stages={stages}"
        raise LaunchError(f"{METHOD}: {how} blocks but the MLP has {n_linear} Linear layers; "
                           f"use stages <= {n_linear}, fewer ranks, or more hidden layers")
    if local_mode == "chunked" and stages % chunk:
        divisors = [d for d in range(1, stages + 1) if stages % d == 0]
        raise ConfigError(f"{METHOD}: chunk={chunk} does not divide stages={stages}; choose "
                          f"chunk among {divisors}")
    return stages


def plan_units(module: nn.Sequential, *, stages: int, local_mode: str = "greedy",
               chunk: int = 2) -> list[UnitSpec]:
    """The units of ``module`` cut into ``stages`` blocks (see the module docstring)."""
    blocks = split_stages(module, stages)
    k = chunk if local_mode == "chunked" else 1
    n_units = stages // k
    widths_in = [next(layer for layer in module if isinstance(layer, nn.Linear)).in_features]
    widths_in += [b.width for b in blocks[:-1]]
    specs = []
    for u in range(n_units):
        group = blocks[u * k:(u + 1) * k]
        specs.append(UnitSpec(u, tuple(b.index for b in group), group[0].lo, group[-1].hi,
                              group[0].offset, sum(b.size for b in group),
                              widths_in[group[0].index], group[-1].width, u < n_units - 1))
    return specs


def place_units(n_units: int, ranks: int) -> list[list[int]]:
    """Contiguous balanced blocks of units, one list per rank (needs ``n_units >= ranks``)."""
    if ranks > n_units:
        raise LaunchError(f"{METHOD}: {ranks} ranks but only {n_units} units; run with at most "
                           f"{n_units} ranks (mpiexec -n {n_units}) or raise stages (or lower "
                           f"chunk)")
    cuts = np.cumsum([0] + [len(a) for a in np.array_split(np.arange(n_units), ranks)])
    return [list(range(int(cuts[r]), int(cuts[r + 1]))) for r in range(ranks)]


def make_head(width: int, n_outputs: int, *, seed: int, block: int,
              dtype: torch.dtype = torch.float64) -> nn.Linear:
    """The auxiliary head of block ``block``: ``nn.Linear(width, n_outputs)`` with entries
    ``U(-1/sqrt(width), 1/sqrt(width))`` from ``numpy.random.default_rng([seed, block])``."""
    rng = np.random.default_rng([int(seed), int(block)])
    bound = 1.0 / np.sqrt(width)
    with torch.random.fork_rng(devices=[]):      # nn.Linear's own init: leave the RNG be
        head = nn.Linear(width, n_outputs, dtype=dtype)
    with torch.no_grad():
        head.weight.copy_(torch.from_numpy(rng.uniform(-bound, bound, (n_outputs, width))))
        head.bias.copy_(torch.from_numpy(rng.uniform(-bound, bound, n_outputs)))
    return head


def build_units(module: nn.Sequential, specs: Sequence[UnitSpec], *, seed: int,
                only: Sequence[int] | None = None) -> dict[int, Unit]:
    """Fresh copies of the units ``only`` (default all) with their heads."""
    dtype = next(module.parameters()).dtype
    n_out = [layer for layer in module if isinstance(layer, nn.Linear)][-1].out_features
    units = {}
    for spec in specs:
        if only is not None and spec.index not in only:
            continue
        body = nn.Sequential(*[copy.deepcopy(module[i]) for i in range(spec.lo, spec.hi)])
        head = (make_head(spec.width, n_out, seed=seed, block=spec.blocks[-1], dtype=dtype)
                if spec.head else None)
        units[spec.index] = Unit(body, head)
    return units


def local_loss(unit: Unit, x: torch.Tensor, target: torch.Tensor, *, loss: str,
               weight: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(a, L)``: the unit's output ``F(theta; x)`` and its local loss
    ``weight * sum_k loss(t_k, g(phi; a_k))`` (the task loss for the last unit)."""
    a = unit.body(x)
    out = a if unit.head is None else unit.head(a)
    return a, weighted_loss(loss, out.reshape(len(out), -1), target, weight=weight)


def overlap_grads(body: nn.Module, params: dict[str, torch.Tensor], x: torch.Tensor,
                  delta: torch.Tensor) -> dict[str, torch.Tensor]:
    """``J_theta F(theta; x)^T delta`` at the saved ``params``: what the next unit's loss
    sends back into this unit's parameters (overlapping mode)."""
    def forward(p: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.func.functional_call(body, p, (x,))

    _, vjp = torch.func.vjp(forward, params)
    return vjp(delta)[0]


class LocalPipeline:
    """This rank's units, their optimisers and the tick of the module docstring.

    ``gradients(t)`` fills ``p.grad`` of every active unit (receiving last tick's messages
    first and posting this tick's at the end), ``step()`` applies the regulariser and the
    optimiser; ``flat_parameters()`` gathers the model (collective)."""

    def __init__(self, *, world: World, traffic: Traffic, module: nn.Sequential,
                 shards: Sequence[tuple], specs: Sequence[UnitSpec], loss: str = "squared",
                 local_mode: str = "greedy", iterations: int, batch_size: int | None = None,
                 seed: int = 0, optimizer: str = "sgd", lr: float = 0.1,
                 regularizer: Regularizer | None = None):
        self.world, self.traffic, self.specs = world, traffic, list(specs)
        self.loss, self.mode, self.iterations = loss, local_mode, int(iterations)
        self.batch_size, self.seed, self.lr = batch_size, int(seed), lr
        self.regularizer = make_regularizer("none") if regularizer is None else regularizer
        self.placement = place_units(len(self.specs), world.size)
        self.rank_of = {u: r for r, us in enumerate(self.placement) for u in us}
        self.mine = self.placement[world.rank]
        self.dtype = next(module.parameters()).dtype
        self.n_params = sum(p.numel() for p in module.parameters())
        self.n_outputs = [m for m in module if isinstance(m, nn.Linear)][-1].out_features
        self.X, self.T = as_tensors(*pool(shards), self.dtype, world.device)
        self.batch = len(self.X) if batch_size is None else min(batch_size, len(self.X))
        self.units = {u: m.to(world.device)
                      for u, m in build_units(module, self.specs, seed=seed,
                                              only=self.mine).items()}
        self.opts = {u: make_optimizer(list(m.parameters()), name=optimizer, lr=lr)
                     for u, m in self.units.items()}
        self.inbox: dict[int, torch.Tensor] = {}    # unit -> activation of tick t-1
        self.deltas: dict[int, torch.Tensor] = {}   # unit -> d from unit+1 of tick t-1
        self.saved: dict[tuple[int, int], tuple] = {}  # (unit, tick) -> (x, params)
        self.pending: list = []                     # (work, kind, unit, buffer)
        self.active: list[int] = []

    # --- data and messages -------------------------------------------------------------
    def _rows(self, b: int) -> torch.Tensor:
        rows = batch_rows(len(self.X), self.batch_size, seed=self.seed, step=b, stream=0)
        return torch.arange(len(self.X), device=self.X.device) if rows is None else rows

    def drain(self) -> None:
        """Wait for the posted sends and receives; file what arrived."""
        for work, kind, u, buf in self.pending:
            work.wait()
            if kind == "act":
                self.inbox[u] = buf
            elif kind == "delta":
                self.deltas[u] = buf
        self.pending = []

    def _send(self, buf: torch.Tensor, dst: int) -> None:
        self.pending.append((self.traffic.isend(buf, dst), "send", None, buf))

    def _post(self, t: int, outs: dict, deltas: dict) -> None:
        """Route tick ``t``'s activations and one-hop gradients to where tick ``t+1`` needs
        them: in place on this rank, else through non-blocking sends."""
        if t + 1 >= self.iterations:
            return
        self.inbox = {u + 1: a for u, a in outs.items() if u + 1 in self.units}
        self.deltas = {u - 1: d for u, d in deltas.items() if u - 1 in self.units}
        for u, a in outs.items():
            if u + 1 < len(self.specs) and u + 1 not in self.units:
                self._send(a, self.rank_of[u + 1])
        for u, d in deltas.items():
            if u - 1 not in self.units:
                self._send(d, self.rank_of[u - 1])
        first, last = self.mine[0], self.mine[-1]
        if first > 0 and t + 1 - first >= 0:
            buf = torch.empty(self.batch, self.specs[first].width_in, dtype=self.dtype,
                              device=self.X.device)
            self.pending.append((self.traffic.irecv(buf, self.rank_of[first - 1]), "act",
                                 first, buf))
        if self.mode == "overlapping" and last + 1 < len(self.specs) and t - (last + 1) >= 0:
            buf = torch.empty(self.batch, self.specs[last].width, dtype=self.dtype,
                              device=self.X.device)
            self.pending.append((self.traffic.irecv(buf, self.rank_of[last + 1]), "delta",
                                 last, buf))

    # --- the tick -------------------------------------------------------------------------
    def gradients(self, t: int) -> None:
        """``p.grad`` = ``G_u^t`` for every unit of this rank active at tick ``t``."""
        self.drain()
        outs, deltas, self.active = {}, {}, []
        weight = 1.0 / self.batch
        for u in self.mine:
            unit = self.units[u]
            unit.zero_grad(set_to_none=True)
            b = t - u
            if b < 0:
                continue
            rows = self._rows(b)
            x = self.X[rows] if u == 0 else self.inbox[u]
            back = self.mode == "overlapping" and u > 0
            x = x.detach().requires_grad_(back)
            a, L = local_loss(unit, x, self.T[rows], loss=self.loss, weight=weight)
            L.backward()
            outs[u] = a.detach()
            if back:
                deltas[u] = x.grad
            if self.mode == "overlapping":
                self._overlap(u, t, x.detach())
            self.active.append(u)
        self._post(t, outs, deltas)

    def _overlap(self, u: int, t: int, x: torch.Tensor) -> None:
        """Save this tick's forward; add ``J^T d`` for the forward of tick ``t-2``."""
        body = self.units[u].body
        if u + 1 < len(self.specs) and t + 2 < self.iterations:
            self.saved[(u, t)] = (x, {n: p.detach().clone() for n, p in body.named_parameters()})
        delta = self.deltas.pop(u, None)
        if delta is None:
            return
        x_old, params = self.saved.pop((u, t - 2))
        extra = overlap_grads(body, params, x_old, delta)
        for n, p in body.named_parameters():
            p.grad.add_(extra[n])

    def step(self) -> None:
        """The update of every active unit (regulariser on the model's tensors only)."""
        for u in self.active:
            body = list(self.units[u].body.parameters())
            add_regularizer_grad_(body, smooth_part(self.regularizer))
            self.opts[u].step()
            if not self.regularizer.smooth:
                prox_(body, self.regularizer, self.lr)

    def flat_parameters(self) -> torch.Tensor:
        """The model without heads, in FlatModel order, on every rank (not counted)."""
        flat = torch.zeros(self.n_params, dtype=self.dtype, device=self.X.device)
        for u, unit in self.units.items():
            spec = self.specs[u]
            flat[spec.offset:spec.offset + spec.size] = torch.cat(
                [p.detach().reshape(-1) for p in unit.body.parameters()])
        if self.world.size > 1:
            dist.all_reduce(flat)     # the slices are disjoint: the sum assembles them
        return flat.cpu()

    def bytes_per_tick(self) -> int:
        """Steady-state bytes the busiest rank sends per tick (activations, and d when
        overlapping, at every unit boundary that crosses ranks)."""
        item = torch.empty((), dtype=self.dtype).element_size()
        per_rank = [0] * self.world.size
        for s in self.specs[:-1]:
            r, q = self.rank_of[s.index], self.rank_of[s.index + 1]
            if r != q:
                per_rank[r] += self.batch * s.width * item
                if self.mode == "overlapping":
                    per_rank[q] += self.batch * s.width * item
        return max(per_rank)


def _validate(*, module, shards, loss, task, regularizer, optimizer, lr, iterations,
              eval_every, batch_size, seed, stages, local_mode, chunk) -> tuple:
    check_trainer_inputs(module=module, shards=shards, loss=loss, task=task,
                         regularizer=regularizer, optimizer=optimizer, lr=lr)
    n_linear = _n_linear(module)
    if local_mode not in MODES:
        raise ConfigError(f"local_mode {local_mode!r} is unknown; choose one of: "
                          f"{', '.join(MODES)}")
    stages, chunk = as_int("stages", stages, low=0), as_int("chunk", chunk, low=1)
    if stages:
        resolve_stages(stages, local_mode=local_mode, chunk=chunk, ranks=1, n_linear=n_linear)
    return (n_linear, as_int("iterations", iterations, low=0),
            as_int("eval_every", eval_every, low=1), check_batch_size(batch_size),
            as_int("seed", seed, low=0), stages, chunk)


def train_local_parallel(*, module: nn.Module, shards: Sequence[tuple],
                         test: tuple | None = None, loss: str = "squared",
                         task: str = "regression", regularizer: Regularizer | None = None,
                         iterations: int = 100, optimizer: str = "sgd", lr: float = 0.1,
                         batch_size: int | None = None, eval_every: int = 10, seed: int = 0,
                         progress: bool = False, backend: str = "auto", device: str = "cpu",
                         timeout: datetime.timedelta = DEFAULT_TIMEOUT, stages: int = 0,
                         local_mode: str = "greedy", chunk: int = 2) -> tuple[History, dict]:
    """Train ``module`` by local parallelism (module docstring); ``(History, info)`` on
    every rank.

    Scheme keywords: ``stages`` (``S`` blocks, ``0`` = auto: ``max(R, 2)``, chunked
    ``k max(R, 2)``; ``1 <= S <=`` Linear layers), ``local_mode`` (``"greedy"``,
    ``"chunked"``, ``"overlapping"``), ``chunk`` (``k`` blocks per unit in chunked mode,
    ``>= 1`` and dividing ``S``; ignored otherwise). ``iterations`` counts ticks. The other
    keywords are those of :func:`dcnn.baselines.train_engine`.

    >>> import numpy as np
    >>> from dcnn.problems import mlp
    >>> rng = np.random.default_rng(0)
    >>> shards = [(rng.normal(size=(8, 3)), rng.normal(size=(8, 1))) for _ in range(2)]
    >>> hist, info = train_local_parallel(module=mlp(n_inputs=3, hidden=[4], n_outputs=1),
    ...                                   shards=shards, iterations=5, eval_every=5)
    >>> [r["iteration"] for r in hist.records], info["units"], info["local_mode"]
    ([0, 5], 2, 'greedy')
    """
    regularizer = make_regularizer("none") if regularizer is None else regularizer
    n_linear, iterations, eval_every, batch_size, seed, stages, chunk = _validate(
        module=module, shards=shards, loss=loss, task=task, regularizer=regularizer,
        optimizer=optimizer, lr=lr, iterations=iterations, eval_every=eval_every,
        batch_size=batch_size, seed=seed, stages=stages, local_mode=local_mode, chunk=chunk)
    metrics = make_evaluator(module=module, pooled=pool(shards), loss=loss, task=task,
                             regularizer=regularizer, test=test)
    with process_group(backend=backend, device=device, timeout=timeout) as world:
        # world-dependent checks, identical on every rank, before any collective
        S = resolve_stages(stages, local_mode=local_mode, chunk=chunk, ranks=world.size,
                           n_linear=n_linear)
        specs = plan_units(module, stages=S, local_mode=local_mode, chunk=chunk)
        place_units(len(specs), world.size)
        traffic = Traffic(world)
        pipe = LocalPipeline(world=world, traffic=traffic, module=module, shards=shards,
                             specs=specs, loss=loss, local_mode=local_mode,
                             iterations=iterations, batch_size=batch_size, seed=seed,
                             optimizer=optimizer, lr=lr, regularizer=regularizer)
        try:
            history, w = _run(pipe, world=world, traffic=traffic, metrics=metrics,
                              iterations=iterations, eval_every=eval_every, lr=lr,
                              progress=progress)
            busiest = torch.tensor([traffic.messages], dtype=torch.float64,
                                   device=world.device)
            dist.all_reduce(busiest, op=dist.ReduceOp.MAX)
            info = {"method": METHOD, "world_size": world.size, "launcher": world.launcher,
                    "backend": world.backend, "iterations": iterations,
                    "optimizer": optimizer, "lr": lr, "stages": S, "units": len(specs),
                    "local_mode": local_mode, "chunk": chunk if local_mode == "chunked" else 1,
                    "units_per_rank": pipe.placement,
                    "unit_blocks": [list(s.blocks) for s in specs],
                    "unit_layers": [[s.lo, s.hi] for s in specs],
                    "batch": pipe.batch, "bytes_per_tick": pipe.bytes_per_tick(),
                    "messages": int(busiest.item()),
                    "head_params": sum((s.width + 1) * pipe.n_outputs
                                       for s in specs if s.head),
                    "time_s": history.last["time_s"],
                    "eval_time_s": history.last["eval_time_s"],
                    "time_per_step_s": (history.last["time_s"] / iterations if iterations
                                        else float("nan")),
                    "bytes_sent": history.last["bytes_per_agent"],
                    "bytes_note": "measured: activations (and in overlapping mode the "
                                  "one-hop input gradients) sent between ranks by the "
                                  "busiest rank; evaluations not counted",
                    "data": "pooled shards (every rank holds all of them)",
                    "final_params": w}
        finally:
            del pipe
            gc.collect()
    return history, info


def _run(pipe: LocalPipeline, *, world: World, traffic: Traffic, metrics, iterations: int,
         eval_every: int, lr: float, progress: bool) -> tuple[History, torch.Tensor]:
    rec = Recorder(world, metrics=metrics, desc=METHOD, progress=progress, total=iterations)
    w = None

    def gather() -> torch.Tensor:
        nonlocal w
        w = pipe.flat_parameters()
        return w

    rec.record(0, gather, bytes_per_agent=traffic.bytes_sent, step_size=lr)
    for t in range(iterations):
        due = (t + 1) % eval_every == 0 or t + 1 == iterations
        with rec.training():
            pipe.gradients(t)
            pipe.step()
            if due:
                pipe.drain()     # no message in flight across an evaluation's collective
        if due:
            rec.record(t + 1, gather, bytes_per_agent=traffic.bytes_sent, step_size=lr)
    rec.close()
    return rec.history, w
