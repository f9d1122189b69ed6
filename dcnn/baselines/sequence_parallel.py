"""Sequence parallel: the tokens of every sample split over ranks, attention by ring attention.

The model is the one-block transformer of :mod:`dcnn.problems.transformer`, replicated on every
rank. Every rank takes the same batch ``B`` (all ``M`` pooled samples, or ``min(b, M)`` rows
drawn by a generator seeded by ``(seed, step)``) but only its contiguous slice of the ``L``
tokens, ``n = L/R`` of them (rank ``r``: tokens ``r n .. (r+1) n - 1``). Per step, on rank ``r``:

    h_j, q_j, k_j, v_j            for its tokens j            (embedding, LN_1, projections)
    a_j = ring attention of q_r against every rank's k, v     (:mod:`.ring_attention`)
    z_j = finish_block(h_j, a_j)                              (out-projection, MLP, LNs)
    pooled = (1/L) sum_r sum_{j of r} z_j                     (all-reduce of partial sums)
    cost = (1/|B|) sum_{k in B} loss(t_k, W_h pooled_k + b_h)  (the same on every rank)

Backward runs through the same pieces: the all-reduce's backward is the identity (every rank
holds the whole ``d cost / d pooled``, the cost being replicated), ring attention returns every
``dk_j, dv_j`` to its owner, and each rank's gradient of a token-wise parameter (everything but
the head) covers its own tokens only, so those gradients are summed over the ranks (one
all-reduce of one flat buffer); the head's gradient is already complete. Every replica then
takes the identical step (SGD with the prox of an l1 part, or Adam; the update of
:mod:`~dcnn.baselines.engine`):

    w <- prox_{eta r_1}(w - eta (sum_r g_r + grad r_2(w)))

so the run is the unsplit model trained by autograd, to rounding; in one process (``R = 1``)
that is exactly what it is. Megatron-style sequence parallelism (Korthikanti et al., arXiv
2205.05198) shards only LayerNorm/dropout next to tensor parallelism; here, as in ring attention
(Liu et al., arXiv 2310.01889), the whole sequence dimension is split.

Bytes (measured by :class:`~dcnn.baselines.traffic.Traffic`, per rank and step; ``b = B n d
itemsize``, one block of k or v): ring forward ``2(R-1) b``, ring backward ``2(R-1) b + 2R b``,
the pooled all-reduce ``2(R-1)/R B d itemsize``, the gradient all-reduce ``2(R-1)/R P_tok
itemsize`` (:func:`step_bytes`). Attention memory per rank at once: ``B H n^2`` scores instead of
``B H L^2`` (:func:`attention_memory`); :func:`bench_ring` times both.
"""
from __future__ import annotations

import copy
import datetime
import statistics
import time
from collections.abc import Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from ..errors import ConfigError, LaunchError
from ..metrics import History
from ..problems import Regularizer, make_regularizer
from ..problems.transformer import (TokenTransformer, attention, embed, finish_block,
                                    is_token_param, pool_head, project_qkv, split_tokens)
from .bootstrap import DEFAULT_TIMEOUT, World, process_group
from .engine import make_evaluator
from .objective import (add_regularizer_grad_, as_int, as_tensors, batch_rows, check_batch_size,
                        check_trainer_inputs, make_optimizer, pool, prox_, smooth_part,
                        weighted_loss)
from .recorder import Recorder
from .ring_attention import Ring, ring_attention, ring_attention_bytes
from .traffic import Traffic

__all__ = ["METHOD", "check_tokens", "attention_memory", "step_bytes",
           "train_sequence_parallel", "bench_ring"]

METHOD = "sequence-parallel"


def check_tokens(tokens: int, ranks: int) -> int:
    """Tokens per rank, ``L / R``; a one-line error (the same on every rank) otherwise."""
    if tokens % ranks:
        ok = [r for r in range(1, tokens + 1) if tokens % r == 0]
        raise LaunchError(f"sequence-parallel: {tokens} tokens do not split evenly over {ranks} "
                           f"ranks; run with a number of ranks in {ok} or change the model's "
                           f"tokens")
    return tokens // ranks


def attention_memory(*, batch: int, heads: int, length: int, ranks: int, itemsize: int) -> int:
    """Bytes of the attention scores one rank holds at once: ``B H (L/R)^2 itemsize``
    (``ranks=1``: the unsplit ``B H L^2 itemsize``)."""
    return batch * heads * (length // ranks) ** 2 * itemsize


def step_bytes(*, batch: int, tokens: int, d_model: int, token_params: int, itemsize: int,
               ranks: int) -> int:
    """Bytes one rank sends in one training step (see the module docstring)."""
    if ranks == 1:
        return 0
    ring = ring_attention_bytes(batch=batch, heads=1, block=tokens // ranks, d_head=d_model,
                                itemsize=itemsize, ranks=ranks)
    allreduce = lambda n: int(round(2 * (ranks - 1) / ranks * n * itemsize))  # noqa: E731
    return ring["forward"] + ring["backward"] + allreduce(batch * d_model) \
        + allreduce(token_params)


class _SumOverRanks(torch.autograd.Function):
    """``sum_r x_r`` on every rank; backward is the identity, because the cost downstream is
    replicated: each rank already holds the whole gradient w.r.t. the sum."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, traffic: Traffic) -> torch.Tensor:
        y = x.detach().clone()
        traffic.all_reduce(y)
        return y

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        return g, None


def _forward(params: dict, x_tokens: torch.Tensor, *, start: int, tokens: int, heads: int,
             ring: Ring) -> torch.Tensor:
    """The model's outputs ``(B, O)`` from this rank's token slice (collective)."""
    h = embed(params, x_tokens, start=start)
    q, k, v = project_qkv(params, h, heads=heads)
    z = finish_block(params, h, ring_attention(q, k, v, ring=ring))
    pooled = _SumOverRanks.apply(z.sum(dim=-2), ring.traffic) / tokens
    return pool_head(params, pooled)


def _sum_partial_grads(tensors: list[torch.Tensor], traffic: Traffic) -> None:
    """``p.grad <- sum_r p.grad`` over the ranks: flatten once, all-reduce once, unflatten."""
    flat = torch.cat([p.grad.reshape(-1) for p in tensors])
    traffic.all_reduce(flat)
    for p, g in zip(tensors, torch.split(flat, [p.numel() for p in tensors])):
        p.grad.copy_(g.view_as(p))


def _validate(*, module, shards, loss, task, regularizer, optimizer, lr) -> None:
    if not isinstance(module, TokenTransformer):
        raise ConfigError(f"sequence-parallel needs the transformer of "
                          f"dcnn.problems.transformer, got {type(module).__name__}; build it "
                          f"with transformer(n_inputs=..., n_outputs=..., tokens=...)")
    check_trainer_inputs(module=module, shards=shards, loss=loss, task=task,
                         regularizer=regularizer, optimizer=optimizer, lr=lr)
    widths = sorted({np.asarray(x).reshape(len(x), -1).shape[1] for x, _ in shards})
    if widths != [module.n_inputs]:
        raise ConfigError(f"sequence-parallel: the shards have {widths} features but the "
                          f"transformer reads {module.n_inputs} ({module.tokens} tokens of "
                          f"{module.features}); build it with n_inputs={widths[0]}")


def train_sequence_parallel(*, module: nn.Module, shards: Sequence[tuple],
                            test: tuple | None = None, loss: str = "squared",
                            task: str = "regression", regularizer: Regularizer | None = None,
                            iterations: int = 100, optimizer: str = "sgd", lr: float = 0.1,
                            batch_size: int | None = None, eval_every: int = 10, seed: int = 0,
                            progress: bool = False, backend: str = "auto", device: str = "cpu",
                            timeout: datetime.timedelta = DEFAULT_TIMEOUT
                            ) -> tuple[History, dict]:
    """Train the transformer ``module`` with its tokens split over the ranks (see the module
    docstring); ``(History, info)`` on every rank. No scheme keyword: the split is the world
    size ``R``, which must divide ``module.tokens``.

    >>> import numpy as np
    >>> from dcnn.problems.transformer import transformer
    >>> rng = np.random.default_rng(0)
    >>> shards = [(rng.normal(size=(6, 8)), rng.normal(size=(6, 1))) for _ in range(2)]
    >>> hist, info = train_sequence_parallel(module=transformer(n_inputs=8, n_outputs=1,
    ...     tokens=4), shards=shards, iterations=4, eval_every=2, lr=0.02)
    >>> [r["iteration"] for r in hist.records], info["tokens_per_rank"]
    ([0, 2, 4], 4)
    >>> hist.last["objective"] < hist.records[0]["objective"]
    True
    """
    regularizer = make_regularizer("none") if regularizer is None else regularizer
    _validate(module=module, shards=shards, loss=loss, task=task, regularizer=regularizer,
              optimizer=optimizer, lr=lr)
    iterations = as_int("iterations", iterations, low=0)
    eval_every = as_int("eval_every", eval_every, low=1)
    batch_size = check_batch_size(batch_size)
    pooled = pool(shards)
    metrics = make_evaluator(module=module, pooled=pooled, loss=loss, task=task,
                             regularizer=regularizer, test=test)
    with process_group(backend=backend, device=device, timeout=timeout) as world:
        check_tokens(module.tokens, world.size)
        # nothing of _train outlives it: no engine object holds the group
        history, info = _train(world, module=module, pooled=pooled, metrics=metrics,
                               loss=loss, regularizer=regularizer, iterations=iterations,
                               optimizer=optimizer, lr=lr, batch_size=batch_size,
                               eval_every=eval_every, seed=seed, progress=progress)
    return history, info


def _train(world: World, *, module: TokenTransformer, pooled, metrics, loss, regularizer,
           iterations, optimizer, lr, batch_size, eval_every, seed, progress
           ) -> tuple[History, dict]:
    dtype = next(module.parameters()).dtype
    replica = copy.deepcopy(module).to(world.device)
    params = dict(replica.named_parameters())
    token_params = [p for name, p in params.items() if is_token_param(name)]
    L, R = module.tokens, world.size
    n = L // R
    X, T = as_tensors(*pooled, dtype, world.device)
    start = world.rank * n
    x_mine = split_tokens(X, L)[:, start:start + n].contiguous()     # only this rank's tokens
    del X
    traffic = Traffic(world)
    ring = Ring(traffic)
    opt = make_optimizer(list(replica.parameters()), name=optimizer, lr=lr)
    rec = Recorder(world, metrics=metrics, desc=METHOD, progress=progress, total=iterations)
    w = None

    def flat() -> torch.Tensor:
        nonlocal w
        w = torch.cat([p.detach().reshape(-1) for p in replica.parameters()]).cpu()
        return w

    def record(t: int) -> None:
        rec.record(t, flat, bytes_per_agent=traffic.bytes_sent, step_size=lr)

    record(0)
    for t in range(iterations):
        with rec.training():
            rows = batch_rows(len(T), batch_size, seed=seed, step=t, stream=0)
            x, target = (x_mine, T) if rows is None else (x_mine[rows], T[rows])
            opt.zero_grad(set_to_none=False)
            out = _forward(params, x, start=start, tokens=L, heads=module.heads, ring=ring)
            # cost of the batch: (1/|B|) sum_k loss(t_k, f(x_k)), replicated on every rank
            weighted_loss(loss, out, target, weight=1.0 / len(target)).backward()
            # g = sum_r g_r for the token-wise tensors (the head's gradient is complete)
            _sum_partial_grads(token_params, traffic)
            add_regularizer_grad_(replica.parameters(), smooth_part(regularizer))
            opt.step()
            if not regularizer.smooth:
                prox_(replica.parameters(), regularizer, lr)
        if (t + 1) % eval_every == 0 or t + 1 == iterations:
            record(t + 1)
    rec.close()
    last = rec.history.last
    batch = len(T) if batch_size is None else min(batch_size, len(T))
    itemsize = torch.finfo(dtype).bits // 8
    info = {"method": METHOD, "world_size": R, "launcher": world.launcher,
            "backend": world.backend, "iterations": iterations, "optimizer": optimizer,
            "lr": lr, "time_s": last["time_s"], "eval_time_s": last["eval_time_s"],
            "time_per_step_s": last["time_s"] / iterations if iterations else float("nan"),
            "bytes_sent": last["bytes_per_agent"],
            "bytes_per_step": last["bytes_per_agent"] / iterations if iterations else 0.0,
            "bytes_note": "bytes are measured: ring attention's key/value and gradient "
                          "blocks, the all-reduce of the pooled features and of the "
                          "token-wise parameter gradients (busiest rank)",
            "tokens": L, "tokens_per_rank": n, "batch": batch, "heads": module.heads,
            "d_model": module.d_model,
            "attention_memory_per_rank": attention_memory(batch=batch, heads=module.heads,
                                                          length=L, ranks=R,
                                                          itemsize=itemsize),
            "attention_memory_unsplit": attention_memory(batch=batch, heads=module.heads,
                                                         length=L, ranks=1,
                                                         itemsize=itemsize),
            "final_params": w}
    return rec.history, info


def bench_ring(*, lengths: Sequence[int] = (256, 512, 1024, 2048), batch: int = 1,
               heads: int = 4, d_head: int = 32, repeats: int = 3, seed: int = 0,
               dtype: torch.dtype = torch.float32, backend: str = "auto", device: str = "cpu",
               timeout: datetime.timedelta = DEFAULT_TIMEOUT) -> list[dict]:
    """Time one forward + backward of ring attention over the world's ``R`` ranks against full
    attention of the whole sequence on one rank, for each length ``L`` (a multiple of ``R``);
    rows identical on every rank (collective; forms or reuses the process group).

    Per row: ``ring_time_s`` (median over ``repeats`` of the slowest rank), ``full_time_s``
    (median, full attention with autograd on rank 0 while the others wait, so it runs alone),
    ``attention_memory_per_rank`` / ``attention_memory_full`` (bytes of the score blocks held
    at once, computed), ``bytes_per_rank`` (measured ring traffic of one forward + backward)
    and, on CUDA, the measured peak memory of each (``None`` on CPU).
    """
    rows = []
    with process_group(backend=backend, device=device, timeout=timeout) as world:
        R = world.size
        for L in lengths:
            check_tokens(int(L), R)
            rows.append(_bench_one(world, length=int(L), batch=batch, heads=heads,
                                   d_head=d_head, repeats=repeats, seed=seed, dtype=dtype))
    return rows


def _peak(dev: torch.device) -> int | None:
    return int(torch.cuda.max_memory_allocated(dev)) if dev.type == "cuda" else None


def _reset_peak(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        torch.cuda.reset_peak_memory_stats(dev)


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _bench_one(world: World, *, length, batch, heads, d_head, repeats, seed, dtype) -> dict:
    dev, R = world.device, world.size
    n = length // R
    g = torch.Generator().manual_seed(seed)
    q, k, v, do = (torch.randn(batch, heads, length, d_head, generator=g, dtype=dtype)
                   for _ in range(4))
    sl = slice(world.rank * n, (world.rank + 1) * n)
    mine = [t[..., sl, :].contiguous().to(dev) for t in (q, k, v, do)]
    traffic = Traffic(world)
    ring = Ring(traffic)
    ring_times = []
    _reset_peak(dev)
    for _ in range(repeats):
        qi, ki, vi = (t.clone().requires_grad_(True) for t in mine[:3])
        dist.barrier()
        t0 = time.perf_counter()
        ring_attention(qi, ki, vi, ring=ring).backward(mine[3])
        _sync(dev)
        ring_times.append(time.perf_counter() - t0)
    ring_peak = _peak(dev)
    sent = traffic.bytes_sent // max(repeats, 1)
    full_times, full_peak = [], None
    dist.barrier()
    if world.rank == 0:
        full = [t.to(dev) for t in (q, k, v, do)]
        _reset_peak(dev)
        for _ in range(repeats):
            qf, kf, vf = (t.clone().requires_grad_(True) for t in full[:3])
            t0 = time.perf_counter()
            attention(qf, kf, vf).backward(full[3])
            _sync(dev)
            full_times.append(time.perf_counter() - t0)
        full_peak = _peak(dev)
    dist.barrier()
    # the slowest rank's median; rank 0's full-attention time shared with every rank
    stats = torch.tensor([statistics.median(ring_times),
                          statistics.median(full_times) if full_times else 0.0,
                          float(sent), float(ring_peak or 0), float(full_peak or 0)],
                         dtype=torch.float64, device=dev)
    dist.all_reduce(stats, op=dist.ReduceOp.MAX)
    ring_s, full_s, sent, rpeak, fpeak = stats.tolist()
    itemsize = torch.finfo(dtype).bits // 8
    cuda = dev.type == "cuda"
    return {"length": length, "ranks": R, "tokens_per_rank": n, "batch": batch, "heads": heads,
            "d_head": d_head, "dtype": str(dtype).replace("torch.", ""),
            "ring_time_s": ring_s, "full_time_s": full_s,
            "attention_memory_per_rank": attention_memory(batch=batch, heads=heads,
                                                          length=length, ranks=R,
                                                          itemsize=itemsize),
            "attention_memory_full": attention_memory(batch=batch, heads=heads, length=length,
                                                      ranks=1, itemsize=itemsize),
            "bytes_per_rank": int(sent),
            "peak_memory_ring": int(rpeak) if cuda else None,
            "peak_memory_full": int(fpeak) if cuda else None}
