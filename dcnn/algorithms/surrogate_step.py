"""NEXT's and SONATA's local step, with the surrogate's memory carried in their state.

The state keeps the surrogate's :class:`~dcnn.surrogates.Memory` as plain fields: the per-agent
rows ``warm`` ``(A, P)`` (the last ``w~_i``, the next inner solve's start; ``(A, 0)`` for a
surrogate without warm starts) and ``has_warm`` ``(A,)``, and the replicated ``calls`` (local
steps so far) and ``tau`` (``"auto"`` resolved at ``init``). So a checkpoint saves them like
any other field, and a resumed run continues with the warm starts the uninterrupted one uses.
The memory's ``inner`` (the last inner solve) is a diagnostic and stays out of the state.
"""
from __future__ import annotations

from dataclasses import replace

import torch

from ..comm import Network
from ..errors import ConfigError
from ..problems import LocalProblems
from ..problems.batches import BatchProblems
from ..surrogates import Memory
from ..surrogates.tau import local_objective, move_curvature, raised_tau, tau_coefficient

__all__ = ["MEMORY_ROWS", "check_surrogate", "check_adapt_tau", "adapts_tau", "start_objective",
           "init_memory", "memory_fields", "memory_of", "local_solve", "next_gradients",
           "next_tau"]

MEMORY_ROWS = ("warm", "has_warm")


def check_surrogate(surrogate) -> None:
    """``surrogate`` has the explicit-state interface (``FL``, ``PL``, ``Blocked``)."""
    if not (callable(getattr(surrogate, "init_memory", None))
            and callable(getattr(surrogate, "update", None))):
        raise ConfigError(f"surrogate must be a surrogate with init_memory() and update(), "
                          f"e.g. PL(tau=1.0) or FL(tau='auto'), got {surrogate!r}")


ADAPTABLE = ("fl", "pl")


def check_adapt_tau(adapt_tau, *, surrogate, batch_size) -> None:
    """``adapt_tau`` is ``None``, ``True`` or ``False``; ``True`` needs a surrogate whose
    ``tau`` rule is known (FL, PL, their blocks) and the whole shard."""
    if adapt_tau is not None and not isinstance(adapt_tau, bool):
        raise ConfigError(f"adapt_tau must be True, False or None (adapt when the surrogate's "
                          f"tau is \"auto\"), got {adapt_tau!r}")
    if adapt_tau and getattr(surrogate, "name", None) not in ADAPTABLE:
        raise ConfigError(f"adapt_tau=True needs an FL or PL surrogate (its tau rule), got "
                          f"{type(surrogate).__name__}; set adapt_tau=False")
    if adapt_tau and batch_size:
        raise ConfigError(f"adapt_tau=True needs the whole shard, got batch_size="
                          f"{batch_size}: two iterations' mini-batches are two different "
                          "costs; set adapt_tau=False (or batch_size=0)")


def adapts_tau(algorithm) -> bool:
    """Whether NEXT/SONATA ``algorithm`` raises ``tau`` during the run: ``adapt_tau``, or
    when it is ``None``, whether the surrogate (FL or PL) has ``tau = "auto"`` and the
    algorithm the whole shard."""
    if algorithm.adapt_tau is not None:
        return algorithm.adapt_tau
    s = algorithm.surrogate
    return (getattr(s, "tau", None) == "auto" and getattr(s, "name", None) in ADAPTABLE
            and not algorithm.batch_size)


def start_objective(algorithm, problem: LocalProblems, X0: torch.Tensor,
                    network: Network) -> float:
    """The state field ``objective``: the agents' summed cost at the start,
    ``sum_i g_i(w_i[0])``, when the algorithm adapts ``tau`` (collective), else 0 (unused)."""
    if not adapts_tau(algorithm):
        return 0.0
    return local_objective(problem.loss_values(X0), network=network)


def next_gradients(algorithm, costs: BatchProblems, problem: LocalProblems,
                   X_new: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(G_new, losses)``: the gradients of the next iteration's costs at ``X_new`` and, when
    the algorithm adapts ``tau`` (whole shard: ``costs`` is ``problem``), the costs
    ``g_i(w_i new)`` from the same pass (``None`` otherwise)."""
    if not adapts_tau(algorithm):
        return costs.gradients(X_new), None
    losses, G_new = problem.value_and_grad(X_new)
    return G_new, losses


def next_tau(algorithm, state, problem: LocalProblems, X: torch.Tensor, X_new: torch.Tensor,
             losses: torch.Tensor | None, network: Network) -> float:
    """The ``tau`` of the next iteration. When the algorithm adapts it (collective then, the
    same decisions on every rank): if the agents' summed cost ``sum_i g_i(w_i)`` (from
    ``losses``, :func:`next_gradients`) is above its value at the start (the screen: one
    scalar all-reduce), the curvature along the network's
    mean move ``X -> X_new`` is measured and ``tau`` raised by
    :func:`~dcnn.surrogates.tau.raised_tau` once it outgrew ``tau``."""
    if not adapts_tau(algorithm):
        return state.tau
    if not local_objective(losses, network=network) > state.objective:
        return state.tau
    coefficient = tau_coefficient(algorithm.surrogate.name, alpha0=algorithm.schedule.init(),
                                  n_agents=network.n_agents)
    return raised_tau(state.tau, move_curvature(problem, X, X_new, network=network),
                      coefficient=coefficient)


def init_memory(surrogate, problem: LocalProblems, network: Network, X0: torch.Tensor, *,
                alpha0: float) -> dict:
    """The state fields of the surrogate's fresh memory (collective for ``tau = "auto"``,
    which depends on the schedule's first step ``alpha0``)."""
    return memory_fields(surrogate.init_memory(problem, X0, network=network, alpha0=alpha0))


def memory_fields(memory: Memory) -> dict:
    """``memory`` as state fields (its diagnostic ``inner`` left out)."""
    return {"tau": memory.tau, "warm": memory.warm, "has_warm": memory.has_warm,
            "calls": memory.calls}


def memory_of(state) -> Memory:
    """The surrogate's memory kept in ``state``."""
    return Memory(warm=state.warm, has_warm=state.has_warm, calls=state.calls, tau=state.tau)


def local_solve(costs: BatchProblems, surrogate, X: torch.Tensor, G: torch.Tensor,
                Pi: torch.Tensor, *, alpha: float, state) -> tuple[torch.Tensor, dict]:
    """``w~_i`` for every agent of the group and the memory fields after the step.

    The mini-batch views of one iteration (:class:`~dcnn.problems.batches.BatchProblems`)
    each take their agents' rows of the memory; every view starts from the same count, so
    they all pick the same random blocks, and the count advances once per iteration.
    """
    memory = memory_of(state)
    if len(costs.parts) == 1 and costs.parts[0][0] is None:
        Xt, memory = surrogate.update(costs.parts[0][1], X, G, Pi, alpha=alpha, memory=memory)
        return Xt, memory_fields(memory)
    Xt, joined = torch.empty_like(X), memory
    for pos, view in costs.parts:
        Xt[pos], part = surrogate.update(view, X[pos], G[pos], Pi[pos], alpha=alpha,
                                         memory=memory.rows(pos))
        joined = joined.put(pos, part)
    return Xt, memory_fields(replace(joined, calls=memory.calls + 1))
