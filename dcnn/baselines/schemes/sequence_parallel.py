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
:func:`~dcnn.baselines.runtime.update.apply_update`):

    w <- prox_{eta r_1}(w - eta (sum_r g_r + grad r_2(w)))

so the run is the unsplit model trained by autograd, to rounding; in one process (``R = 1``)
that is exactly what it is. Megatron-style sequence parallelism (Korthikanti et al., arXiv
2205.05198) shards only LayerNorm/dropout next to tensor parallelism; here, as in ring attention
(Liu et al., arXiv 2310.01889), the whole sequence dimension is split.

Bytes (measured by :class:`~dcnn.baselines.runtime.traffic.Traffic`, per rank and step; ``b = B n d
itemsize``, one block of k or v): ring forward ``2(R-1) b``, ring backward ``2(R-1) b + 2R b``, the
pooled all-reduce ``2(R-1)/R B d itemsize``, the gradient all-reduce ``2(R-1)/R P_tok itemsize``
(:func:`step_bytes`). Attention memory per rank at once: ``B H n^2`` scores instead of ``B H L^2``
(:func:`attention_memory`); :func:`bench_ring` times both.
"""
from __future__ import annotations

import copy
import datetime
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from ...errors import ConfigError
from ...metrics import History
from ...problems import Regularizer, make_regularizer
from ...problems.transformer import (TokenTransformer, embed, finish_block, is_token_param,
                                    pool_head, project_qkv, split_tokens)
from ..runtime import (DEFAULT_TIMEOUT, Traffic, Trainer, World, apply_update, as_int,
                       as_tensors, batch_rows, busiest, check_batch_size, check_trainer_inputs,
                       make_evaluator, make_optimizer, pool, train_in_world, weighted_loss)
from .ring_attention import (Ring, attention_memory, check_tokens, ring_attention,
                             ring_attention_bytes)
from .ring_bench import bench_ring

__all__ = ["METHOD", "check_tokens", "attention_memory", "step_bytes", "SequenceParallel",
           "train_sequence_parallel", "bench_ring"]

METHOD = "sequence-parallel"


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


class SequenceParallel(Trainer):
    """A replica of the transformer on this rank, fed its slice of every sample's tokens
    (module docstring); one :meth:`step` is one collective forward and backward."""

    method = METHOD

    def __init__(self, *, world: World, module: TokenTransformer, pooled: tuple, loss: str,
                 regularizer: Regularizer, optimizer: str, lr: float,
                 batch_size: int | None, seed: int):
        self.world, self.loss, self.reg, self.lr = world, loss, regularizer, lr
        self.optimizer, self.batch_size, self.seed = optimizer, batch_size, seed
        self.dtype = next(module.parameters()).dtype
        self.replica = copy.deepcopy(module).to(world.device)
        self.params = dict(self.replica.named_parameters())
        self.token_params = [p for name, p in self.params.items() if is_token_param(name)]
        self.L, self.heads, self.d_model = module.tokens, module.heads, module.d_model
        n = self.L // world.size
        X, self.T = as_tensors(*pooled, self.dtype, world.device)
        self.start = world.rank * n
        # only this rank's tokens are kept
        self.x_mine = split_tokens(X, self.L)[:, self.start:self.start + n].contiguous()
        self.traffic = Traffic(world)
        self.ring = Ring(self.traffic)
        self.opt = make_optimizer(list(self.replica.parameters()), name=optimizer, lr=lr)
        self.steps = 0

    def step(self, t: int) -> None:
        rows = batch_rows(len(self.T), self.batch_size, seed=self.seed, step=t, stream=0)
        x, target = (self.x_mine, self.T) if rows is None \
            else (self.x_mine[rows], self.T[rows])
        self.opt.zero_grad(set_to_none=False)
        out = _forward(self.params, x, start=self.start, tokens=self.L, heads=self.heads,
                       ring=self.ring)
        # cost of the batch: (1/|B|) sum_k loss(t_k, f(x_k)), replicated on every rank
        weighted_loss(self.loss, out, target, weight=1.0 / len(target)).backward()
        # g = sum_r g_r for the token-wise tensors (the head's gradient is complete)
        _sum_partial_grads(self.token_params, self.traffic)
        apply_update(list(self.replica.parameters()), self.opt, self.reg, self.lr)
        self.steps += 1

    def parameters(self) -> torch.Tensor:
        return torch.cat([p.detach().reshape(-1) for p in self.replica.parameters()]).cpu()

    @property
    def bytes_sent(self) -> float:
        return self.traffic.bytes_sent

    def info(self) -> dict:
        sent = busiest(self.world, self.traffic.bytes_sent)[0]
        R, n = self.world.size, self.L // self.world.size
        batch = len(self.T) if self.batch_size is None else min(self.batch_size, len(self.T))
        itemsize = torch.finfo(self.dtype).bits // 8
        memory = {r: attention_memory(batch=batch, heads=self.heads, length=self.L, ranks=r,
                                      itemsize=itemsize) for r in (R, 1)}
        return {**super().info(), "optimizer": self.optimizer, "lr": self.lr,
                "bytes_sent": sent, "bytes_per_step": sent / self.steps if self.steps else 0.0,
                "bytes_note": "bytes are measured: ring attention's key/value and gradient "
                              "blocks, the all-reduce of the pooled features and of the "
                              "token-wise parameter gradients (busiest rank)",
                "tokens": self.L, "tokens_per_rank": n, "batch": batch, "heads": self.heads,
                "d_model": self.d_model, "attention_memory_per_rank": memory[R],
                "attention_memory_unsplit": memory[1]}


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

    def build(world: World) -> SequenceParallel:
        check_tokens(module.tokens, world.size)
        return SequenceParallel(world=world, module=module, pooled=pooled, loss=loss,
                                regularizer=regularizer, optimizer=optimizer, lr=lr,
                                batch_size=batch_size, seed=seed)

    return train_in_world(build, metrics=metrics, iterations=iterations, eval_every=eval_every,
                          progress=progress, backend=backend, device=device, timeout=timeout)


