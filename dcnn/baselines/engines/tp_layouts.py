"""How a model is cut for tensor parallelism: the ``parallelize_module`` plan, the forward pass
of the sharded model, and the collectives it runs per step (Megatron-LM, Shoeybi et al. 2019,
arXiv 1909.08053; sequence parallelism of Korthikanti et al. 2022, arXiv 2205.05198).

**MLP** (the ``nn.Sequential`` of :func:`dcnn.problems.mlp`): Linear layers in consecutive
pairs ``(A, B)``: ``A`` column-parallel (rank ``r`` holds a slice of the hidden units), ``B``
row-parallel (the matching columns of ``W_B``, ``b_B`` replicated); an odd last layer stays
replicated. Per step: one all-reduce of each ``B``'s output (forward) and of each ``A``'s input
gradient but the first pair's, whose input is the data (backward; in a pipeline stage after
the first, whose input is an activation, the first pair's too).

**Transformer** (:class:`dcnn.problems.TokenTransformer`), by heads: ``q``, ``k``, ``v``
column-parallel (rank ``r`` holds heads ``r H/R .. (r+1) H/R - 1``: rows of ``W_q, W_k,
W_v`` are head-major, so a contiguous row block is a block of whole heads), attention on the
local heads alone, ``o`` row-parallel; ``fc1`` column-parallel, ``fc2`` row-parallel; embedding,
positions, LayerNorms and head replicated. Per step, ``n = |B| L d`` entries each: all-reduces
of ``o``'s and ``fc2``'s outputs (forward) and of the input gradients of ``q``, ``k``, ``v``
and ``fc1`` (backward; PyTorch's column-parallel style reduces each projection's input gradient
on its own, where Megatron's fused QKV reduces once). In a PTD-P pipeline stage made of some of
the transformer's four parts (:func:`parts_layout`) the same plan applies part by part: the
attention part runs four of these all-reduces, the MLP part two, the embedding and head
parts none (replicated).

**Sequence parallelism** (transformer, option): the LayerNorm regions hold only this rank's
``L/R`` tokens (``SequenceParallel``); the residual stream is token-sharded; each region's
input is all-gathered once before the column-parallel layers and the row-parallel outputs are
reduce-scattered back to tokens (the all-reduce split into its two halves, so activations of the
LayerNorm regions are ``1/R`` the size). Per step, ``n`` entries each: all-gathers of ``LN_1``'s
and ``LN_2``'s outputs (forward), of the gradients of the embedding output and of ``o``'s and
``fc2``'s outputs (backward); reduce-scatters of ``o``'s and ``fc2``'s outputs (forward) and of
the gradients of the two gathered inputs (backward); an all-reduce of the pooled features
``|B| d`` and of the LayerNorms' gradients (each rank's tokens give a partial sum), ``6 d``.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributed.tensor import DTensor, Replicate, Shard
from torch.distributed.tensor.parallel import (ColwiseParallel, RowwiseParallel,
                                               SequenceParallel)

from ...errors import ConfigError, LaunchError
from ...problems.transformer import (TokenTransformer, _heads, _merge, attention,
                                     attention_sublayer, mlp_sublayer, split_tokens)
from ..runtime.costs import ring_allreduce_bytes, ring_gather_bytes

__all__ = ["TPLayout", "tp_layout", "mlp_layout", "parts_layout", "linear_positions", "tp_pairs",
           "local_params", "full_tensor"]


@dataclass(frozen=True)
class TPLayout:
    """``plan`` for ``parallelize_module``; ``forward(model, x, mesh)`` the sharded model's
    output ``(M, O)``, replicated on every rank (collective); ``collectives(b)`` the
    collectives of one step on ``b`` samples, ``{kind: entries}`` (``all_reduce``,
    ``all_gather``, ``reduce_scatter``); ``local_params`` the parameters one rank holds;
    ``info`` what the report shows."""

    plan: dict
    forward: Callable
    collectives: Callable[[int], dict[str, int]]
    local_params: int
    info: dict

    def bytes_per_step(self, batch: int, *, itemsize: int, ranks: int) -> float:
        """Bytes each rank sends per step (ring collectives)."""
        c = self.collectives(batch)
        gathers = c.get("all_gather", 0) + c.get("reduce_scatter", 0)
        return (ring_allreduce_bytes(c.get("all_reduce", 0), itemsize=itemsize, ranks=ranks)
                + ring_gather_bytes(gathers, itemsize=itemsize, ranks=ranks))


def full_tensor(t: torch.Tensor) -> torch.Tensor:
    return t.full_tensor() if isinstance(t, DTensor) else t


def local_params(module: nn.Module, plan: dict, degree: int) -> int:
    """Parameters one of ``degree`` ranks holds under ``plan``: a column-parallel layer's
    weight and bias and a row-parallel layer's weight are split, the rest replicated."""
    n = 0
    for name, p in module.named_parameters():
        owner, _, kind = name.rpartition(".")
        style = plan.get(owner)
        split = isinstance(style, ColwiseParallel) or \
            (isinstance(style, RowwiseParallel) and kind == "weight")
        n += p.numel() // degree if split else p.numel()
    return n


def _divisible(what: str, size: int, degree: int, fix: str) -> None:
    if size % degree:
        raise LaunchError(f"tensor-parallel: {what} is not divisible by the "
                          f"tensor-parallel degree {degree}; {fix}")


def linear_positions(module: nn.Module) -> list[int]:
    """Indices of the ``nn.Linear`` children of the MLP's ``nn.Sequential``."""
    if not isinstance(module, nn.Sequential):
        raise ConfigError(f"pipeline, ptd-p and tensor-parallel need the MLP (an "
                          f"nn.Sequential, dcnn.problems.mlp) or the transformer "
                          f"(dcnn.problems.transformer), got {type(module).__name__}")
    pos = [i for i, layer in enumerate(module) if isinstance(layer, nn.Linear)]
    if not pos:
        raise ConfigError("the model has no nn.Linear layer; build it with dcnn.problems.mlp")
    return pos


def tp_pairs(module: nn.Module, degree: int) -> tuple[list[tuple[int, int]], list[int]]:
    """``(pairs, replicated)``: child indices of the MLP's (colwise, rowwise) Linear pairs
    and of the Linear layer left replicated (the last one when their number is odd)."""
    pos = linear_positions(module)
    pairs = [(pos[k], pos[k + 1]) for k in range(0, len(pos) - 1, 2)]
    for a, _ in pairs:
        _divisible(f"hidden width {module[a].out_features} (layer {a})",
                   module[a].out_features, degree,
                   f"use widths that are multiples of {degree} or fewer ranks")
    return pairs, [pos[-1]] if len(pos) % 2 else []


def mlp_layout(module: nn.Sequential, degree: int, *, input_grad: bool = False) -> TPLayout:
    """The MLP's layout (see the module docstring); ``input_grad``: the first pair's input
    needs its gradient too (a pipeline stage after the first), one more all-reduce."""
    pairs, replicated = tp_pairs(module, degree)
    plan = {}
    for a, b in pairs:
        plan[str(a)], plan[str(b)] = ColwiseParallel(), RowwiseParallel()

    def forward(model, x, mesh):
        return full_tensor(model(x)).reshape(len(x), -1)

    def collectives(b):
        return {"all_reduce": sum(b * module[j].out_features for _, j in pairs)
                + sum(b * module[i].in_features for i, _ in pairs[0 if input_grad else 1:])}

    return TPLayout(plan, forward, collectives, local_params(module, plan, degree),
                    {"colwise_rowwise_pairs": [list(p) for p in pairs],
                     "replicated_layers": replicated})


_STYLES = {"colwise": ColwiseParallel, "rowwise": RowwiseParallel}


def _check_transformer(heads: int, ffn: int, degree: int) -> None:
    _divisible(f"heads {heads}", heads, degree,
               f"use a number of heads that is a multiple of {degree} or fewer ranks")
    _divisible(f"ffn width {ffn}", ffn, degree,
               f"use an ffn width that is a multiple of {degree} or fewer ranks")


def parts_layout(stage: nn.Sequential, degree: int) -> TPLayout:
    """The layout of a pipeline stage made of consecutive parts of
    :func:`dcnn.problems.transformer.transformer_parts`: each part's projections split as in
    the whole transformer's layout (attention by heads, the MLP block by hidden units), the
    embedding and the head replicated; per step each part runs its ``tp_allreduces``
    all-reduces of ``|B| L d`` entries (``L d`` = the part's ``out_features``)."""
    plan, per_sample = {}, 0
    for k, part in enumerate(stage):
        if "q" in part.tp_plan:
            heads = part.q.out_features // part.width
            _divisible(f"heads {heads}", heads, degree,
                       f"use a number of heads that is a multiple of {degree} or lower tp")
        if "fc1" in part.tp_plan:
            _divisible(f"ffn width {part.fc1.out_features}", part.fc1.out_features, degree,
                       f"use an ffn width that is a multiple of {degree} or lower tp")
        plan.update({f"{k}.{name}": _STYLES[style]() for name, style in part.tp_plan.items()})
        per_sample += part.tp_allreduces * part.out_features

    def forward(model, x, mesh):
        return full_tensor(model(x)).reshape(len(x), -1)

    def collectives(b):
        return {"all_reduce": b * per_sample}

    return TPLayout(plan, forward, collectives, local_params(stage, plan, degree),
                    {"parts": [type(p).__name__.strip("_").lower() for p in stage]})


def _transformer_layout(module: TokenTransformer, degree: int, sequence_parallel: bool
                        ) -> TPLayout:
    _check_transformer(module.heads, module.ffn, degree)
    if sequence_parallel:
        _divisible(f"tokens {module.tokens}", module.tokens, degree,
                   f"sequence parallelism shards the tokens; use a multiple of {degree}")
    width, L, d = module.d_model // module.heads, module.tokens, module.d_model
    if not sequence_parallel:
        plan = {"q": ColwiseParallel(), "k": ColwiseParallel(), "v": ColwiseParallel(),
                "o": RowwiseParallel(), "fc1": ColwiseParallel(), "fc2": RowwiseParallel()}

        def forward(model, x, mesh):
            h = model.embed(split_tokens(x, L)) + model.pos
            h = mlp_sublayer(model, attention_sublayer(model, h, width=width))
            return model.head(model.lnf(h).mean(dim=-2))

        def collectives(b):
            return {"all_reduce": 6 * b * L * d}
    else:
        def row():       # reduce-scatter onto the tokens, kept a DTensor for the residual
            return RowwiseParallel(output_layouts=Shard(1), use_local_output=False)

        plan = {"ln1": SequenceParallel(), "q": ColwiseParallel(), "k": ColwiseParallel(),
                "v": ColwiseParallel(), "o": row(), "ln2": SequenceParallel(),
                "fc1": ColwiseParallel(), "fc2": row(), "lnf": SequenceParallel()}

        def forward(model, x, mesh):
            h = model.embed(split_tokens(x, L)) + model.pos
            h = DTensor.from_local(h, mesh, [Replicate()], run_check=False)
            h = h.redistribute(mesh, [Shard(1)])            # this rank's tokens
            u = model.ln1(h).redistribute(mesh, [Replicate()])       # one all-gather
            a = attention(_heads(model.q(u), width), _heads(model.k(u), width),
                          _heads(model.v(u), width))
            h = h + model.o(_merge(a))
            h = h + model.fc2(F.gelu(model.fc1(model.ln2(h).redistribute(mesh,
                                                                         [Replicate()]))))
            z = model.lnf(h).mean(dim=-2).redistribute(mesh, [Replicate()]).to_local()
            return model.head(z)

        def collectives(b):
            return {"all_gather": 5 * b * L * d, "reduce_scatter": 4 * b * L * d,
                    "all_reduce": b * d + 6 * d}

    return TPLayout(plan, forward, collectives, local_params(module, plan, degree),
                    {"heads_per_rank": module.heads // degree,
                     "ffn_per_rank": module.ffn // degree,
                     "sequence_parallel": sequence_parallel,
                     "tokens_per_rank": L // degree if sequence_parallel else L,
                     "colwise": ["q", "k", "v", "fc1"], "rowwise": ["o", "fc2"]})


def tp_layout(module: nn.Module, degree: int, *, sequence_parallel: bool = False) -> TPLayout:
    """The :class:`TPLayout` of ``module`` over ``degree`` ranks (see the module docstring)."""
    if isinstance(module, TokenTransformer):
        return _transformer_layout(module, degree, sequence_parallel)
    if sequence_parallel:
        raise ConfigError("tensor-parallel: sequence_parallel shards a transformer's tokens; "
                          f"the model is a {type(module).__name__}; set model.name = "
                          "'transformer' or sequence_parallel = false")
    if isinstance(module, nn.Sequential):
        return mlp_layout(module, degree)
    raise ConfigError(f"tensor-parallel needs the MLP (dcnn.problems.mlp) or the transformer "
                      f"(dcnn.problems.transformer), got {type(module).__name__}")
