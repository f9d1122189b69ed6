"""SIL's pieces: the split of the MLP into parts, the class codes at the cuts, and the costs.

The maths of :mod:`dcnn.baselines.schemes.sil` (its module docstring has the equations):
:func:`part_specs` / :func:`split_parts` / :func:`join_parts` cut and rejoin the
``nn.Sequential`` of :func:`dcnn.problems.mlp`, :func:`place_parts` puts the parts on ranks,
:func:`code_table` draws the codes from a generator seeded by ``(seed, cut)`` only (so every
rank builds the same table without communicating), :func:`noisy_codes` and :func:`part_loss`
form a part's training-phase cost, :func:`memory_bytes` counts what a worker holds.
"""
from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ...comm import agent_blocks
from ...errors import ConfigError, LaunchError
from ..engines.pipeline import linear_positions
from ..runtime.objective import weighted_loss

__all__ = ["PartSpec", "part_specs", "split_parts", "join_parts", "place_parts", "code_table",
           "class_labels", "noisy_codes", "part_loss", "memory_bytes", "code_checksum"]

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


def code_checksum(codes: Sequence[torch.Tensor]) -> float:
    """A position-weighted sum of the code tables (differs when any entry or order differs):
    what each rank reports of the tables it built, so a test can compare them."""
    flat = torch.cat([c.reshape(-1).to(torch.float64).cpu() for c in codes])
    return float((flat * torch.arange(1, len(flat) + 1, dtype=torch.float64)).sum())
