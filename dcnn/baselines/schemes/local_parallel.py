"""Local parallelism: blocks trained on local losses, pipelined over ranks without a flush.

After Laskin et al., "Parallel Training of Deep Networks with Local Updates" (arXiv
2012.03837): global backprop is replaced by truncated backprop through auxiliary heads, so the
blocks of a network train at the same time and only forward activations travel.

Split. The MLP (the ``nn.Sequential`` of :func:`dcnn.problems.mlp`) is cut at Linear boundaries
into ``S`` blocks balanced by Linear count (:func:`dcnn.baselines.engines.pipeline.split_stages`):
block ``s`` holds its Linear layers and the activation after each, so every block but the last
outputs a post-activation hidden vector ``a_s`` (the last block outputs the model's ``O`` outputs).
Units ``u = 0..U-1`` are what trains: a block (``greedy``, ``overlapping``, ``U = S``) or a chunk
of ``k`` consecutive blocks (``chunked``, ``U = S / k``). Every unit but the last has a head
``g_u(phi_u; a) = W a + c``, a Linear from its output width to ``O`` applied to the unit's
post-activation output, drawn like PyTorch's default (``U(-1/sqrt(width), 1/sqrt(width))``) from
``numpy.random.default_rng([seed, s])``, ``s`` the unit's last block. The last unit's "head" is the
identity: its loss is the task loss.

Update rule (one tick ``t = 0..T-1``; ``T`` = ``iterations``). ``B_b`` is the batch of step
``b``: all ``M`` pooled samples, or ``min(batch_size, M)`` distinct rows drawn by
``(seed, b)`` (:func:`dcnn.baselines.runtime.objective.batch_rows`). Unit ``u`` at tick ``t``
works on batch ``b = t - u`` (it idles while ``b < 0``); its input is

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
the one-hop gradient ``d``) goes with non-blocking ``isend``/``irecv`` through one
:class:`~dcnn.baselines.runtime.traffic.Traffic` (measured bytes). A rank waits at the start
of tick ``t`` only for the messages tick ``t`` consumes and for its own sends of tick
``t - 1``; its receives are posted ``window`` ticks ahead. With gloo, whose sends complete
once the receive is posted, a rank can start tick ``s`` once the next rank has finished tick
``s - window``: with ``window = 1`` neighbouring ranks move in step, with ``window > 1`` each
rank steps as soon as its input has arrived while the one before may run ``window - 1``
ticks further ahead (greedy and chunked: nothing flows back;
overlapping stays coupled by ``d``). Evaluations drain what is due. No flush: every unit steps
every tick, so one process running all units is exactly the sequential simulation the
multi-rank run must reproduce.

The units, heads and local losses are in :mod:`~dcnn.baselines.schemes.local_units`; the
trainer :class:`LocalPipeline` runs one tick per step of the one loop of
:mod:`dcnn.baselines.runtime.trainer`.
"""
from __future__ import annotations

import datetime
from collections.abc import Sequence

import torch
import torch.distributed as dist
from torch import nn

from ...errors import ConfigError
from ...metrics import History
from ...problems import Regularizer, make_regularizer
from ..runtime import (DEFAULT_TIMEOUT, Traffic, Trainer, World, apply_update, as_int,
                       as_tensors, batch_rows, busiest, check_batch_size, check_trainer_inputs,
                       make_evaluator, make_optimizer, pool, train_in_world)
from .local_units import (METHOD, MODES, Unit, UnitSpec, build_units, local_loss, make_head,
                          n_linear, overlap_grads, place_units, plan_units, resolve_stages)

__all__ = ["METHOD", "MODES", "UnitSpec", "Unit", "resolve_stages", "plan_units",
           "place_units", "make_head", "build_units", "local_loss", "overlap_grads",
           "LocalPipeline", "train_local_parallel"]


class LocalPipeline(Trainer):
    """This rank's units, their optimisers and the tick of the module docstring.

    ``step(t)`` is one tick: :meth:`gradients` fills ``p.grad`` of every active unit
    (receiving last tick's messages first and posting this tick's at the end), then
    :meth:`update` applies the regulariser and the optimiser; :meth:`parameters` gathers the
    model (collective)."""

    method = METHOD

    def __init__(self, *, world: World, traffic: Traffic, module: nn.Sequential,
                 shards: Sequence[tuple], specs: Sequence[UnitSpec], loss: str = "squared",
                 local_mode: str = "greedy", iterations: int, batch_size: int | None = None,
                 seed: int = 0, optimizer: str = "sgd", lr: float = 0.1,
                 regularizer: Regularizer | None = None, window: int = 1):
        self.world, self.traffic, self.specs = world, traffic, list(specs)
        self.window = as_int("window", window, low=1)
        self.last_tick = 0
        self.loss, self.mode, self.iterations = loss, local_mode, int(iterations)
        self.batch_size, self.seed, self.lr, self.optimizer = batch_size, int(seed), lr, optimizer
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
        self.pending: list = []                     # (due tick, work, kind, unit, buffer)
        self.posted = 0                             # receives posted for ticks < posted
        self.active: list[int] = []

    # --- data and messages -------------------------------------------------------------
    def _rows(self, b: int) -> torch.Tensor:
        rows = batch_rows(len(self.X), self.batch_size, seed=self.seed, step=b, stream=0)
        return torch.arange(len(self.X), device=self.X.device) if rows is None else rows

    def drain(self, t: int | None = None) -> None:
        """Wait for the sends and receives due by tick ``t`` (all: ``None``); file what
        arrived."""
        keep = []
        for due, work, kind, u, buf in self.pending:
            if t is not None and due > t:
                keep.append((due, work, kind, u, buf))
                continue
            work.wait()
            if kind == "act":
                self.inbox[u] = buf
            elif kind == "delta":
                self.deltas[u] = buf
        self.pending = keep

    def _send(self, buf: torch.Tensor, dst: int, t: int) -> None:
        # complete by the start of the next tick (its receive is posted `window` ticks ahead)
        self.pending.append((t + 1, self.traffic.isend(buf, dst), "send", None, buf))

    def _post_receives(self, upto: int) -> None:
        """Post this rank's receives for the ticks before ``upto`` not posted yet: the
        activation its first unit needs at tick ``tau`` (sent at ``tau - 1``) and, in
        overlapping mode, the one-hop gradient its last unit needs."""
        first, last = self.mine[0], self.mine[-1]
        upto = min(upto, self.iterations)
        for tau in range(self.posted, upto):
            if first > 0 and tau >= first:
                buf = torch.empty(self.batch, self.specs[first].width_in, dtype=self.dtype,
                                  device=self.X.device)
                self.pending.append((tau, self.traffic.irecv(buf, self.rank_of[first - 1]),
                                     "act", first, buf))
            if (self.mode == "overlapping" and last + 1 < len(self.specs)
                    and tau >= last + 2):
                buf = torch.empty(self.batch, self.specs[last].width, dtype=self.dtype,
                                  device=self.X.device)
                self.pending.append((tau, self.traffic.irecv(buf, self.rank_of[last + 1]),
                                     "delta", last, buf))
        self.posted = max(self.posted, upto)

    def _post(self, t: int, outs: dict, deltas: dict) -> None:
        """Route tick ``t``'s activations and one-hop gradients to where tick ``t+1`` needs
        them: in place on this rank, else through non-blocking sends; keep the receives
        posted ``window`` ticks ahead."""
        if t + 1 >= self.iterations:
            return
        self.inbox = {u + 1: a for u, a in outs.items() if u + 1 in self.units}
        self.deltas = {u - 1: d for u, d in deltas.items() if u - 1 in self.units}
        for u, a in outs.items():
            if u + 1 < len(self.specs) and u + 1 not in self.units:
                self._send(a, self.rank_of[u + 1], t)
        for u, d in deltas.items():
            if u - 1 not in self.units:
                self._send(d, self.rank_of[u - 1], t)
        self._post_receives(t + 1 + self.window)

    # --- the tick -------------------------------------------------------------------------
    def gradients(self, t: int) -> None:
        """``p.grad`` = ``G_u^t`` for every unit of this rank active at tick ``t``."""
        if t == 0:                    # later ticks' receives: posted at the end of a tick
            self._post_receives(1 + self.window)
        self.drain(t)
        self.last_tick = t
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

    def update(self) -> None:
        """The update of every active unit (regulariser on the model's tensors only; the
        heads step on their data gradient alone)."""
        for u in self.active:
            apply_update(list(self.units[u].body.parameters()), self.opts[u], self.regularizer,
                         self.lr)

    def step(self, t: int) -> None:
        self.gradients(t)
        self.update()

    def settle(self) -> None:
        # every message of the ticks so far (all sends are due by the next tick) delivered
        # before an evaluation's collective; receives posted for later ticks stay posted:
        # nothing is sent to them before the evaluation
        self.drain(self.last_tick + 1)

    def parameters(self) -> torch.Tensor:
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

    @property
    def bytes_sent(self) -> float:
        return self.traffic.bytes_sent

    def info(self) -> dict:
        sent, messages = busiest(self.world, self.traffic.bytes_sent, self.traffic.messages)
        specs = self.specs
        return {**super().info(), "optimizer": self.optimizer, "lr": self.lr,
                "stages": sum(len(s.blocks) for s in specs), "units": len(specs),
                "local_mode": self.mode, "window": self.window,
                "chunk": len(specs[0].blocks) if self.mode == "chunked" else 1,
                "units_per_rank": self.placement,
                "unit_blocks": [list(s.blocks) for s in specs],
                "unit_layers": [[s.lo, s.hi] for s in specs],
                "batch": self.batch, "bytes_per_tick": self.bytes_per_tick(),
                "messages": int(messages),
                "head_params": sum((s.width + 1) * self.n_outputs for s in specs if s.head),
                "bytes_sent": sent,
                "bytes_note": "measured: activations (and in overlapping mode the one-hop "
                              "input gradients) sent between ranks by the busiest rank; "
                              "evaluations not counted",
                "data": "pooled shards (every rank holds all of them)"}


def _validate(*, module, shards, loss, task, regularizer, optimizer, lr, iterations,
              eval_every, batch_size, seed, stages, local_mode, chunk, window) -> tuple:
    check_trainer_inputs(module=module, shards=shards, loss=loss, task=task,
                         regularizer=regularizer, optimizer=optimizer, lr=lr)
    n_lin = n_linear(module)
    if local_mode not in MODES:
        raise ConfigError(f"local_mode {local_mode!r} is unknown; choose one of: "
                          f"{', '.join(MODES)}")
    stages, chunk = as_int("stages", stages, low=0), as_int("chunk", chunk, low=1)
    as_int("window", window, low=1)
    if stages:
        resolve_stages(stages, local_mode=local_mode, chunk=chunk, ranks=1, n_linear=n_lin)
    return (n_lin, as_int("iterations", iterations, low=0),
            as_int("eval_every", eval_every, low=1), check_batch_size(batch_size),
            as_int("seed", seed, low=0), stages, chunk)


def train_local_parallel(*, module: nn.Module, shards: Sequence[tuple],
                         test: tuple | None = None, loss: str = "squared",
                         task: str = "regression", regularizer: Regularizer | None = None,
                         iterations: int = 100, optimizer: str = "sgd", lr: float = 0.1,
                         batch_size: int | None = None, eval_every: int = 10, seed: int = 0,
                         progress: bool = False, backend: str = "auto", device: str = "cpu",
                         timeout: datetime.timedelta = DEFAULT_TIMEOUT, stages: int = 0,
                         local_mode: str = "greedy", chunk: int = 2, window: int = 1
                         ) -> tuple[History, dict]:
    """Train ``module`` by local parallelism (module docstring); ``(History, info)`` on
    every rank.

    Scheme keywords: ``stages`` (``S`` blocks, ``0`` = auto: ``max(R, 2)``, chunked
    ``k max(R, 2)``; ``1 <= S <=`` Linear layers), ``local_mode`` (``"greedy"``,
    ``"chunked"``, ``"overlapping"``), ``chunk`` (``k`` blocks per unit in chunked mode,
    ``>= 1`` and dividing ``S``; ignored otherwise), ``window`` (``>= 1``: receives are posted
    ``window`` ticks ahead, so a rank may start tick ``s`` once the rank after it has finished
    tick ``s - window``; 1 couples neighbouring ranks at every tick,
    more lets each rank step as soon as its input has arrived; the result is the same).
    ``iterations`` counts ticks. The other
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
    n_lin, iterations, eval_every, batch_size, seed, stages, chunk = _validate(
        module=module, shards=shards, loss=loss, task=task, regularizer=regularizer,
        optimizer=optimizer, lr=lr, iterations=iterations, eval_every=eval_every,
        batch_size=batch_size, seed=seed, stages=stages, local_mode=local_mode, chunk=chunk,
        window=window)
    metrics = make_evaluator(module=module, pooled=pool(shards), loss=loss, task=task,
                             regularizer=regularizer, test=test)

    def build(world: World) -> LocalPipeline:
        # world-dependent checks, identical on every rank, before any collective
        S = resolve_stages(stages, local_mode=local_mode, chunk=chunk, ranks=world.size,
                           n_linear=n_lin)
        specs = plan_units(module, stages=S, local_mode=local_mode, chunk=chunk)
        place_units(len(specs), world.size)
        return LocalPipeline(world=world, traffic=Traffic(world), module=module,
                             shards=shards, specs=specs, loss=loss, local_mode=local_mode,
                             iterations=iterations, batch_size=batch_size, seed=seed,
                             optimizer=optimizer, lr=lr, regularizer=regularizer,
                             window=int(window))

    return train_in_world(build, metrics=metrics, iterations=iterations, eval_every=eval_every,
                          progress=progress, backend=backend, device=device, timeout=timeout)
