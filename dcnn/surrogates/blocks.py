"""Block-Jacobi surrogates: one agent's local step split over parameter blocks and threads.

The parameter vector is partitioned into blocks ``I_1, ..., I_C`` and the surrogate of
:mod:`~dcnn.surrogates.pl` (or :mod:`~dcnn.surrogates.fl`) is replaced by

    g~(w; v) = sum_b g~_b(w_b; v),   g~_b(w_b; v) = g~(v + E_b (w_b - v_b); v)

where ``E_b`` puts block ``b``'s coordinates in place and every other coordinate stays at
``v`` (``d_{-b} = 0``). For PL, ``g~_b`` is the PL surrogate with ``J`` restricted to the
block's columns, ``J[:, :, I_b]``, and ``q``, ``v`` restricted likewise. Each ``g~_b`` is
strongly convex in ``w_b`` (the proximal term) and its gradient at ``v`` is block ``b`` of
``grad g(v)``, so the sum is strongly convex and gradient-consistent: a valid NEXT surrogate
(the multi-core split of the local step that Scardapane & Di Lorenzo 2017 propose), and
NEXT's limit points on convex problems are the same optima as without blocks. The
regulariser is separable over coordinates, so the local step splits into ``C`` independent
problems, solved concurrently on ``threads`` threads.

Step size: the block step ignores the coupling between blocks. With ``H`` the curvature the
unblocked surrogate keeps and ``D`` its block diagonal, ``H <= C D``, so a block step can
overshoot the unblocked one by up to a factor ``C``; with strongly coupled blocks (random
ones) a constant ``alpha`` about ``1/C`` of the unblocked one keeps NEXT stable (the
diminishing schedule needs no change). Uncoupled blocks (e.g. the outputs of a squared loss
as the neuron blocks of a linear model) lose nothing.

Optionally only a random subset of ``ceil(fraction C)`` blocks is updated per call (chosen
by a generator seeded with ``(seed, t)``, ``t = memory.calls`` the number of local steps
since ``init_memory``: every MPI rank and every agent of a group picks the same blocks); the
others keep ``w~_b = v_b``. Warm starts and that count are the explicit
:class:`~dcnn.surrogates.memory.Memory` of :mod:`~dcnn.surrogates.pl`; the thread pool is a
cached resource of the surrogate, not state.

The Jacobian (or, matrix-free, the linearisation of the network at ``v``) is computed once
per call and shared by the blocks. Matrix-free, the products are autograd passes through one
recorded graph (``J^T e``: a backward pass; ``J d``: the backward pass of that backward,
linear in ``e``) rather than ``problem.jvp``/``vjp``: ``torch.func.functional_call`` swaps the
module's parameters while it runs and forward-mode AD levels are process-global, so neither
may run on two threads at once, while backward passes through a retained graph may.
Each block's matrix-free products still cost a full pass through the network, so there
``C`` blocks do about ``C`` times the product work of one (spread over the threads).

FL is coordinate-separable, so ``Blocked(FL)`` is FL itself (its step is one elementwise
expression; no threads are used), restricted to the chosen blocks when ``fraction < 1``.

Threads: while the blocks run on the pool, torch's intra-op pool is held to one thread
(``torch.set_num_threads(1)``, restored afterwards; every pool worker also pins itself to one
thread when it starts, since OpenMP reads the count once per thread). Otherwise every block
would fan its kernels out over all cores and ``C`` blocks would oversubscribe them.
``threads = 1`` runs the blocks one after the other with the normal intra-op threads.
"""
from __future__ import annotations

import math
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.func import vmap

from ..comm import Network
from ..errors import ConfigError
from ..problems import FlatModel, LocalProblems
from .fl import FL
from .inner import InnerResult
from .memory import Memory
from .pl import (PL, Ops, formed, inner_tolerance, is_direct, is_least_squares, linearised,
                 local_step, products)

__all__ = ["BLOCK_KINDS", "Blocked", "make_blocks", "make_blocked"]

BLOCK_KINDS = ("layer", "neuron", "random")


# ---- block partitions (pure, seeded) ---------------------------------------------------------

def make_blocks(model: FlatModel, kind: str = "layer", *, n_blocks: int | None = None,
                seed: int = 0) -> list[torch.Tensor]:
    """A partition of ``0..P-1`` into sorted index tensors.

    - ``"layer"``: one block per parameter tensor (``model.names``).
    - ``"neuron"``: one block per output neuron of each ``nn.Linear`` (its weight row and its
      bias entry); every other parameter tensor is a block of its own.
    - ``"random"``: ``n_blocks`` blocks of (nearly) equal size from a permutation seeded
      with ``seed``.
    """
    if kind not in BLOCK_KINDS:
        raise ConfigError(f"blocks {kind!r} is unknown; choose one of: "
                          f"{', '.join(BLOCK_KINDS)}")
    P = model.n_params
    if kind != "random":
        if n_blocks is not None:
            raise ConfigError(f"n_blocks is only used with blocks = 'random', got "
                              f"n_blocks={n_blocks!r} with blocks={kind!r}")
        return _layer_blocks(model) if kind == "layer" else _neuron_blocks(model)
    if n_blocks is None:
        raise ConfigError("n_blocks is needed with blocks = 'random' (e.g. n_blocks = 4)")
    if isinstance(n_blocks, bool) or not isinstance(n_blocks, int) or not 1 <= n_blocks <= P:
        raise ConfigError(f"n_blocks must be an integer in [1, {P}] (the number "
                          f"of parameters), got {n_blocks!r}")
    perm = torch.randperm(P, generator=torch.Generator().manual_seed(int(seed)))
    return [b.sort().values for b in perm.tensor_split(n_blocks)]


def _offsets(model: FlatModel) -> dict[str, int]:
    starts = np.concatenate([[0], np.cumsum(model.sizes)[:-1]])
    return {n: int(s) for n, s in zip(model.names, starts)}


def _layer_blocks(model: FlatModel) -> list[torch.Tensor]:
    off = _offsets(model)
    return [torch.arange(off[n], off[n] + s) for n, s in zip(model.names, model.sizes)]


def _neuron_blocks(model: FlatModel) -> list[torch.Tensor]:
    off, shapes = _offsets(model), dict(zip(model.names, model.shapes))
    bias_of, biases = {}, set()
    for name, mod in model.module.named_modules():
        if not isinstance(mod, nn.Linear):
            continue
        pre = f"{name}." if name else ""
        w, b = pre + "weight", (pre + "bias" if mod.bias is not None else None)
        if w in off and (b is None or b in off):   # skip weights shared under another name
            bias_of[w] = b
            biases.add(b)
    blocks = []
    for name, size in zip(model.names, model.sizes):
        if name in bias_of:
            n_out, n_in = shapes[name]
            rows = off[name] + torch.arange(n_out * n_in).reshape(n_out, n_in)
            b = bias_of[name]
            for j in range(n_out):
                extra = [] if b is None else [torch.tensor([off[b] + j])]
                blocks.append(torch.cat([rows[j], *extra]))
        elif name not in biases:
            blocks.append(torch.arange(off[name], off[name] + size))
    return blocks


# ---- the block-Jacobi surrogate -------------------------------------------------------------

def _check_threads(threads) -> int:
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ConfigError(f"threads must be an integer >= 1, got {threads!r}")
    return threads


def _check_fraction(fraction, name: str = "fraction") -> float:
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) \
            or not 0.0 < fraction <= 1.0:
        raise ConfigError(f"{name} must lie in (0, 1], got {fraction!r}")
    return float(fraction)


@dataclass(frozen=True, eq=False)
class Blocked:
    """The block-Jacobi version of ``base`` (``PL`` or ``FL``) over ``blocks``, solved on
    ``threads`` threads, updating a ``fraction`` of the blocks per call (seeded by ``seed``).

    Same interface as the base surrogate (``init_memory``, ``update``, ``solve``, ``name``,
    ``tau``); the memory is the base's plus the call count. The thread pool is created once
    and reused (a cached resource, not state).
    """

    base: PL | FL
    blocks: Sequence[torch.Tensor]
    threads: int
    fraction: float = 1.0
    seed: int = 0
    _cache: dict = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self):
        if not isinstance(self.base, (PL, FL)):
            raise ConfigError(f"base must be a PL or FL surrogate, got "
                              f"{type(self.base).__name__}")
        _check_threads(self.threads)
        object.__setattr__(self, "fraction", _check_fraction(self.fraction))
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)):
            raise ConfigError(f"seed must be an integer, got {self.seed!r}")
        blocks = list(self.blocks)
        if not blocks:
            raise ConfigError("blocks is empty; build the blocks with make_blocks")
        norm = []
        for k, b in enumerate(blocks):
            b = torch.as_tensor(b)
            if b.ndim != 1 or b.numel() == 0 or b.is_floating_point() or b.is_complex():
                raise ConfigError(f"block {k} must be a non-empty 1-D integer tensor, got "
                                  f"shape {tuple(b.shape)} and dtype {b.dtype}")
            norm.append(b.to(torch.long).sort().values)
        object.__setattr__(self, "blocks", tuple(norm))

    def __repr__(self) -> str:
        return (f"Blocked(base={self.base!r}, blocks=<{len(self.blocks)} blocks>, "
                f"threads={self.threads}, fraction={self.fraction}, seed={self.seed})")

    @property
    def name(self) -> str:
        return self.base.name

    @property
    def tau(self) -> float | str:
        return self.base.tau

    def init_memory(self, problem: LocalProblems, X0: torch.Tensor, *,
                    network: Network | None = None, alpha0: float = 1.0) -> Memory:
        """The blocks must partition ``0..P-1``; then the base's fresh memory (no warm
        starts, count 0; ``tau = "auto"`` resolved, collective)."""
        P = problem.n_params
        every = torch.cat(self.blocks)
        inside = (every >= 0) & (every < P)
        counts = torch.bincount(every[inside], minlength=P)
        if (counts != 1).any() or not inside.all():
            raise ConfigError(f"the blocks must partition the {P} parameters (each index "
                              f"0..{P - 1} exactly once): {int((counts == 0).sum())} "
                              f"missing, {int((counts > 1).sum())} repeated, "
                              f"{int((~inside).sum())} out of range; build them with "
                              "make_blocks")
        return self.base.init_memory(problem, X0, network=network, alpha0=alpha0)

    def chosen(self, t: int) -> list[int]:
        """The blocks updated by call ``t`` (all of them when ``fraction = 1``)."""
        n = len(self.blocks)
        k = max(1, math.ceil(self.fraction * n - 1e-12))
        if k >= n:
            return list(range(n))
        rng = np.random.default_rng([int(self.seed), int(t)])
        return sorted(int(b) for b in rng.choice(n, size=k, replace=False))

    def update(self, problem: LocalProblems, V: torch.Tensor, G: torch.Tensor,
               Pi: torch.Tensor, *, alpha: float, memory: Memory) -> tuple[torch.Tensor, Memory]:
        """The block-Jacobi step on the blocks of call ``memory.calls``, and the memory
        after it (count + 1; for PL the answer is every agent's next warm start)."""
        idxs = [self.blocks[b] for b in self.chosen(memory.calls)]
        if isinstance(self.base, FL):
            W, memory = self.base.update(problem, V, G, Pi, alpha=alpha, memory=memory)
            if len(idxs) == len(self.blocks):
                return W, memory
            return _scatter(V.clone(), idxs, [W[:, idx] for idx in idxs]), memory
        return self._update_pl(problem, V, G, Pi, alpha, idxs, memory)

    def solve(self, problem: LocalProblems, V: torch.Tensor, G: torch.Tensor,
              Pi: torch.Tensor, *, alpha: float = 1.0) -> torch.Tensor:
        """One step from a fresh memory (call 0, cold; ``tau`` must be a number)."""
        memory = self.init_memory(problem, V)
        return self.update(problem, V, G, Pi, alpha=alpha, memory=memory)[0]

    def _update_pl(self, problem, V, G, Pi, alpha, idxs, memory: Memory):
        base, P = self.base, problem.n_params
        free = base.matrix_free(problem)
        direct = is_direct(problem, free)
        ops, out = _linearisation(problem, V) if free else (products(problem, V, free=False),
                                                            None)
        h = None if is_least_squares(problem) else linearised(problem, V, out)
        D0 = tol = None
        if not direct:
            D0 = memory.start(V)
            # each block to tol / sqrt(#blocks): the concatenated residual meets PL's tol
            tol = inner_tolerance(V, G, Pi, base.inner_tol, alpha) / math.sqrt(len(idxs))
        opts = base.options(problem, tau=memory.tau, tol=tol)

        def block(idx: torch.Tensor):
            sub = ops if len(idx) == P else _restrict(ops, idx, P)
            return local_step(problem, sub, h, V[:, idx], G[:, idx], Pi[:, idx],
                              None if D0 is None else D0[:, idx], **opts)

        results = self._map(block, idxs)
        D = _scatter(torch.zeros_like(V), idxs, [d for d, _ in results])
        W = V + D
        if direct:
            return W, memory.counted()
        its = torch.stack([r.iterations for _, r in results]).amax(0)
        res = torch.stack([r.residual for _, r in results]).square().sum(0).sqrt()
        return W, memory.remember(W, InnerResult(D, its, res))

    def _map(self, fn: Callable, items: list) -> list:
        if self.threads == 1 or len(items) == 1:
            return [fn(x) for x in items]
        n = torch.get_num_threads()
        # one intra-op thread per block while the blocks share the cores (see module doc)
        torch.set_num_threads(1)
        try:
            return list(self._pool().map(fn, items))
        finally:
            torch.set_num_threads(n)

    def _pool(self) -> ThreadPoolExecutor:
        pool = self._cache.get("pool")
        if pool is None:
            pool = ThreadPoolExecutor(self.threads, thread_name_prefix="dcnn-block",
                                      initializer=torch.set_num_threads, initargs=(1,))
            weakref.finalize(self, pool.shutdown, wait=False)
            self._cache["pool"] = pool
        return pool


def _scatter(out: torch.Tensor, idxs: list[torch.Tensor], parts: list) -> torch.Tensor:
    """``out[:, idx] = part`` for each block, in place."""
    for idx, part in zip(idxs, parts):
        out[:, idx] = part
    return out


def _restrict(ops: Ops, idx: torch.Tensor, P: int) -> Ops:
    """``ops`` on block ``idx`` alone: ``J[:, :, idx]``, or products with ``d_{-b} = 0``."""
    if ops.J is not None:
        J, lo, n = ops.J, int(idx[0]), len(idx)
        if int(idx[-1]) - lo + 1 == n:       # a range (layer, neuron without bias): a slice
            return formed(J[..., lo:lo + n].contiguous())
        # gathering columns of the 2-D view is several times faster than of the 3-D one
        return formed(J.reshape(-1, P).index_select(1, idx).reshape(*J.shape[:-1], n))
    fwd, adj = ops.fwd, ops.adj

    def fwd_b(D):
        return fwd(D.new_zeros(D.shape[0], P).index_copy_(1, idx, D))

    def adj_b(E):
        return adj(E).index_select(1, idx)
    return Ops(None, fwd_b, adj_b)


def _linearisation(problem: LocalProblems, V: torch.Tensor) -> tuple[Ops, torch.Tensor]:
    """Matrix-free :class:`Ops` at ``V`` from one recorded forward pass, safe to call from
    several threads at once, and the outputs ``f(V)`` ``(A, M, O)``.

    With ``F(W) = mask * f(W)`` flattened to ``(A, K)``: ``adj(E) = J^T E`` is the backward
    pass of ``F`` with cotangent ``E``; ``u(E) = J^T E`` is linear in ``E``, so
    ``fwd(D) = J D`` is the backward pass of ``u`` at ``E0 = 0`` with cotangent ``D``.
    """
    with torch.enable_grad():
        W = V.detach().requires_grad_(True)
        raw = vmap(problem.model.apply)(W, problem.X)
        out = (raw * problem.mask[..., None]).reshape(V.shape[0], -1)
        E0 = torch.zeros_like(out, requires_grad=True)
        (u,) = torch.autograd.grad(out, W, E0, create_graph=True)

    def fwd(D):
        return torch.autograd.grad(u, E0, D, retain_graph=True)[0]

    def adj(E):
        return torch.autograd.grad(out, W, E, retain_graph=True)[0]
    return Ops(None, fwd, adj), raw.detach()


# ---- from configuration -------------------------------------------------------------------

def make_blocked(base: PL | FL, *, model: FlatModel, threads: int = 1, blocks: str = "layer",
                 n_blocks: int | None = None, block_fraction: float = 1.0,
                 seed: int = 0) -> PL | FL | Blocked:
    """``base`` split into blocks of ``model`` (:func:`make_blocks`) on ``threads`` threads.

    With every option at its default (``threads = 1``, ``blocks = "layer"``, no
    ``n_blocks``, ``block_fraction = 1``) ``base`` is returned unchanged: unblocked is the
    single-thread default. ``blocks = "random"`` without ``n_blocks`` uses ``threads``
    blocks.
    """
    _check_threads(threads)
    block_fraction = _check_fraction(block_fraction, "block_fraction")
    if threads == 1 and block_fraction == 1.0 and blocks == "layer" and n_blocks is None:
        return base
    if blocks == "random" and n_blocks is None:
        n_blocks = threads
    parts = make_blocks(model, blocks, n_blocks=n_blocks, seed=seed)
    return Blocked(base, parts, threads, fraction=block_fraction, seed=seed)
