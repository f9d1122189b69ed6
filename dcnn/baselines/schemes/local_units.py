"""Local parallelism's units: the blocks and chunks of the MLP, their auxiliary heads and
their local losses (:mod:`dcnn.baselines.schemes.local_parallel` has the scheme).

:func:`plan_units` cuts the ``nn.Sequential`` of :func:`dcnn.problems.mlp` into units (a block,
or a chunk of ``k`` blocks), :func:`place_units` puts them on ranks, :func:`make_head` and
:func:`build_units` make each unit with its seeded head, :func:`local_loss` is a unit's loss
and :func:`overlap_grads` the one-hop vector-Jacobian product of overlapping mode.
"""
from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ...errors import ConfigError, LaunchError
from ..engines.pipeline import split_stages
from ..runtime.objective import weighted_loss

__all__ = ["METHOD", "MODES", "UnitSpec", "Unit", "n_linear", "resolve_stages", "plan_units",
           "place_units", "make_head", "build_units", "local_loss", "overlap_grads",
           "unit_flops"]

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


def n_linear(module: nn.Module) -> int:
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


def unit_flops(module: nn.Sequential, spec: UnitSpec, *, batch: int, local_mode: str,
               overlap: bool = False) -> int:
    """Matrix-multiply FLOPs of one tick of unit ``spec`` on ``batch`` samples, counted from
    the layer shapes: a Linear ``i -> o`` costs ``2 B i o`` forward (two FLOPs per
    multiply-add) and as much for its weight gradient and for its input gradient; bias adds,
    activations and losses are not counted. The tick is the unit's forward and its head's, the
    backward through the head and every Linear's weights, the input gradient of every Linear
    but the unit's first (of the first too in overlapping mode past unit 0: ``d`` goes back),
    and, with ``overlap`` (overlapping mode with a ``d`` to apply), the recomputed forward of
    tick ``t-2`` and its vector-Jacobian product in the parameters. One unit with no head is a
    backprop step: ``6 B sum i o - 2 B i_1 o_1``."""
    shapes = [(m.in_features, m.out_features) for m in module[spec.lo:spec.hi]
              if isinstance(m, nn.Linear)]
    n_out = [m for m in module if isinstance(m, nn.Linear)][-1].out_features
    body = sum(i * o for i, o in shapes)
    first = shapes[0][0] * shapes[0][1]
    head = spec.width * n_out if spec.head else 0
    send_back = local_mode == "overlapping" and spec.index > 0
    flops = 2 * batch * (body + head)                                 # forward
    flops += 2 * batch * (body + head)                                # weight gradients
    flops += 2 * batch * (body - (0 if send_back else first) + head)  # input gradients
    if overlap:
        flops += 2 * batch * (body + body + body - first)             # recompute + vjp
    return flops
