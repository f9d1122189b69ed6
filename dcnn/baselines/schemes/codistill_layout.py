"""Codistillation's layout: which models train where, on which shards, from which start,
and when they exchange (:mod:`dcnn.baselines.schemes.codistillation` has the scheme).

:func:`placement` puts ``n`` models on ``R`` ranks (data-parallel groups of ``R/n`` ranks, or
``n/R`` models per rank), :func:`model_agents` gives model ``m`` a contiguous block of the
agents' shards, :func:`initial_models` draws models ``1..n-1`` from seeds ``(seed, m)``,
:func:`exchange_steps` and :func:`teacher_step` are the exchange schedule, and
:func:`pack_exchange` / :func:`unpack_exchange` lay the models' vectors out for the one
all-gather of an exchange.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ...comm import agent_blocks
from ...errors import ConfigError, LaunchError

__all__ = ["Placement", "placement", "model_agents", "group_agents", "initial_models",
           "exchange_steps", "teacher_step", "pack_exchange", "unpack_exchange"]


@dataclass(frozen=True)
class Placement:
    """``models`` models on ``ranks`` ranks: ``ranks_per_model`` ranks per model (a
    data-parallel group) or ``models_per_rank`` models per rank (one of them is 1)."""

    models: int
    ranks: int
    ranks_per_model: int
    models_per_rank: int

    def hosted(self, rank: int) -> list[int]:
        """The models rank ``rank`` trains (or helps train)."""
        lo = (rank // self.ranks_per_model) * self.models_per_rank
        return list(range(lo, lo + self.models_per_rank))

    def group(self, model: int) -> list[int]:
        """The ranks of model ``model``'s data-parallel group (one rank if not split)."""
        if self.ranks_per_model == 1:
            return [model // self.models_per_rank]
        g = self.ranks_per_model
        return list(range(model * g, model * g + g))


def placement(models: int, ranks: int) -> Placement:
    """Data-parallel groups of ``ranks/models`` ranks, or ``models/ranks`` models per rank."""
    if ranks % models == 0:
        return Placement(models, ranks, ranks // models, 1)
    if models % ranks == 0:
        return Placement(models, ranks, 1, models // ranks)
    raise LaunchError(f"codistillation: {models} models do not fit {ranks} ranks; run with a "
                       f"number of ranks that divides or is a multiple of {models} (e.g. "
                       f"mpiexec -n {models}), or set models to a divisor or multiple of {ranks}")


def model_agents(n_agents: int, models: int) -> list[list[int]]:
    """The agents whose shards model ``m`` trains on: contiguous blocks (``agent_blocks``)."""
    if models > n_agents:
        raise ConfigError(f"codistillation: {models} models but only {n_agents} shards; use "
                          f"models <= {n_agents} or give more shards")
    return [list(range(lo, hi)) for lo, hi in agent_blocks(n_agents, models)]


def group_agents(blocks: list[list[int]], place: Placement) -> list[list[list[int]]]:
    """Each model's agents split over the ranks of its group (identical on every rank)."""
    g = place.ranks_per_model
    short = min(range(place.models), key=lambda m: len(blocks[m]))
    if len(blocks[short]) < g:
        raise LaunchError(f"codistillation: {g} ranks per model but model {short} has only "
                           f"{len(blocks[short])} shards; run with at most "
                           f"{len(blocks[short]) * place.models} ranks or give more shards")
    return [[block[lo:hi] for lo, hi in agent_blocks(len(block), g)] for block in blocks]


def _model_seed(seed: int, m: int) -> int:
    return int(np.random.SeedSequence([seed, m]).generate_state(1, dtype=np.uint64)[0]
               % (2 ** 63))


def initial_models(module: nn.Module, *, models: int, seed: int = 0) -> list[nn.Module]:
    """Copies of ``module``: model 0 as given, model ``m > 0`` re-initialised by every
    submodule's ``reset_parameters`` under a generator seeded by ``(seed, m)`` (the global RNG
    is left untouched, ``module`` unchanged)."""
    for name, sub in module.named_modules():
        owns = any(True for _ in sub.parameters(recurse=False))
        if owns and not callable(getattr(sub, "reset_parameters", None)):
            raise ConfigError(f"codistillation: submodule {name or type(sub).__name__!r} has "
                              f"parameters but no reset_parameters, so models 1..{models - 1} "
                              f"cannot be re-initialised; give it a reset_parameters method")
    out = [copy.deepcopy(module)]
    for m in range(1, models):
        replica = copy.deepcopy(module)
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            torch.manual_seed(_model_seed(seed, m))
            for sub in replica.modules():
                if callable(getattr(sub, "reset_parameters", None)):
                    sub.reset_parameters()
        out.append(replica)
    return out


def exchange_steps(iterations: int, *, burn_in: int, every: int) -> list[int]:
    """Steps ``t < iterations`` that start with an exchange: ``t >= burn_in``,
    ``(t - burn_in) mod every = 0``."""
    return list(range(burn_in, iterations, every))


def teacher_step(t: int, *, burn_in: int, every: int) -> int | None:
    """The exchange whose parameters teach at step ``t`` (``None`` during burn-in)."""
    if t < burn_in:
        return None
    return burn_in + (t - burn_in) // every * every


def pack_exchange(place: Placement, rank: int, flats: dict[int, torch.Tensor], P: int
          ) -> torch.Tensor:
    """This rank's piece of the exchange: its models' vectors, or its slice of its model's."""
    g = place.ranks_per_model
    if g == 1:
        return torch.cat([flats[m] for m in place.hosted(rank)])
    chunk = -(-P // g)
    padded = torch.zeros(chunk * g, dtype=flats[place.hosted(rank)[0]].dtype,
                         device=flats[place.hosted(rank)[0]].device)
    padded[:P] = flats[place.hosted(rank)[0]]
    j = rank % g
    return padded[j * chunk:(j + 1) * chunk].clone()


def unpack_exchange(place: Placement, pieces: list[torch.Tensor], P: int) -> list[torch.Tensor]:
    """Every model's vector from the ranks' pieces (in rank order)."""
    g = place.ranks_per_model
    if g == 1:
        return [v for piece in pieces for v in piece.split(P)]
    return [torch.cat(pieces[m * g:(m + 1) * g])[:P] for m in range(place.models)]
