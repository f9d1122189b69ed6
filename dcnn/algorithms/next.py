"""NEXT: in-network successive convex approximation with dynamic consensus.

Di Lorenzo & Scutari, "NEXT: In-Network Nonconvex Optimization", IEEE TSIPN 2016; for neural
networks, Scardapane & Di Lorenzo, "A Framework for Parallel and Distributed Training of
Neural Networks", Neural Networks 91 (2017). Per iteration ``n``, every agent ``i``:

    w~_i   = argmin_w  g~_i(w; w_i) + pi~_i^T (w - w_i) + r(w)          (local surrogate)
    z_i    = w_i + alpha[n] (w~_i - w_i)
    w_i   <- sum_j W_ij[n] z_j                                          (consensus)
    y_i   <- sum_j W_ij[n] y_j + grad g_i(w_i new) - grad g_i(w_i old)  (dynamic consensus)
    pi~_i  = N y_i - grad g_i(w_i new)

with ``y_i = grad g_i(w_i[0])`` at start. ``sum_i y_i = sum_i grad g_i(w_i)`` holds at every
iteration because every ``W[n]`` is column-stochastic and the stored gradient is reused.
The ``z`` and ``y`` exchanges travel in one message (a stacked ``(A, 2, P)`` mix). What the
surrogate remembers between iterations (PL's warm starts, the block-Jacobi call count,
``tau`` with ``"auto"`` resolved at ``init``) is part of :class:`NextState`
(:mod:`dcnn.algorithms.surrogate_step`).

Stochastic variant (``batch_size = b``; an extension beyond both papers). At iteration ``n``
agent ``i`` uses the batch ``B_i[n]`` of ``min(b, M_i)`` rows of its shard drawn by
:func:`dcnn.problems.sample_batches` from ``(seed, n, i)`` and the unbiased estimate
``g_i^n(w) = (M_i / |B_i[n]|) (1/M) sum_{k in B_i[n]} loss(t_k, f(w; x_k))`` of ``g_i``:

    w~_i   = argmin_w  g~_i^n(w; w_i) + pi~_i^T (w - w_i) + r(w)        (surrogate of g_i^n)
    z_i    = w_i + alpha[n] (w~_i - w_i)
    w_i   <- sum_j W_ij[n] z_j
    G_i   <- grad g_i^{n+1}(w_i new)                       (on the batch of iteration n + 1)
    y_i   <- sum_j W_ij[n] y_j + G_i new - G_i old
    pi~_i  = N y_i - G_i

with ``G_i = y_i = grad g_i^0(w_i[0])`` at start. ``G_i old`` is the stored gradient, never a
recomputed one, so ``sum_i y_i = sum_i G_i`` still holds exactly at every iteration. The
gradient at the new iterate is taken on the *next* iteration's batch so that the surrogate of
iteration ``n + 1`` is gradient-consistent with the ``G_i`` it is given: FL's linear term and
PL's linearisation (outputs, Jacobian and ``G_i``) then all come from one cost ``g_i^{n+1}``,
and the local step is exactly NEXT's step on that sampled cost (evaluating ``G_i`` on
``B_i[n]`` instead would make PL mix two batches in one surrogate). It costs the same one
gradient per iteration, and the batches are recomputed from ``(seed, n, i)`` rather than
stored. NEXT's theorem does not cover this variant: with a constant step it settles in a
noise-dominated neighbourhood of a stationary point, not on it; with a diminishing step and
bounded gradient variance it behaves like stochastic gradient tracking (e.g. Pu & Nedic,
"Distributed stochastic gradient tracking methods", Math. Programming 2021). ``batch_size``
``None`` or ``0`` is the full shard, bit for bit the deterministic method above.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

import numpy as np
import torch

from ..comm import Network
from ..problems import LocalProblems, batch_problems
from .checks import check_batch, check_name, check_schedule, check_seed
from .surrogate_step import (MEMORY_ROWS, check_adapt_tau, check_surrogate, init_memory,
                             local_solve, next_gradients, next_tau, start_objective)

__all__ = ["NextState", "Next"]


@dataclass(frozen=True)
class NextState:
    """Everything NEXT carries between iterations, for the group's agents."""

    # per-agent rows (A, ...) (checkpoints, divergence guard); the other fields are replicated
    ROWS: ClassVar[tuple[str, ...]] = ("X", "Y", "G", *MEMORY_ROWS)

    t: int
    X: torch.Tensor      # (A, P) iterates w_i
    Y: torch.Tensor      # (A, P) trackers y_i
    G: torch.Tensor      # (A, P) stored local gradients grad g_i(w_i)
    alpha: float         # alpha[t]
    tau: float           # the surrogate's proximal weight ("auto" resolved at init)
    warm: torch.Tensor   # (A, P) or (A, 0): last w~_i, the surrogate's next warm start
    has_warm: torch.Tensor  # (A,) bool: row i of warm holds a warm start
    calls: int           # the surrogate's local steps so far (block-Jacobi block choice)
    objective: float     # sum_i g_i(w_i[0]) (adaptive tau's screen; 0 when tau is fixed)


@dataclass(frozen=True)
class Next:
    """NEXT with a surrogate (``FL``/``PL``/``Blocked``; ``tau = "auto"`` is resolved by
    ``init``, collectively, into ``state.tau``) and a step-size schedule; ``batch_size`` > 0
    makes it stochastic (mini-batches drawn from ``seed``, see the module docstring).
    ``adapt_tau``: raise ``state.tau`` during the run when the agents' summed cost climbs
    above its start and the curvature along the network's mean move outgrows ``tau``
    (:mod:`dcnn.surrogates.tau`); ``None`` (default) adapts iff the surrogate's ``tau`` is
    ``"auto"`` and the shard whole."""

    surrogate: object
    schedule: object
    name: str = "next"
    batch_size: int | None = None
    seed: int = 0
    adapt_tau: bool | None = None
    directed_ok = False  # needs doubly stochastic W; Sonata is the directed counterpart

    def __post_init__(self):
        check_surrogate(self.surrogate)
        check_schedule(self.schedule)
        check_name(self.name)
        check_batch(self.batch_size)
        check_seed(self.seed)
        check_adapt_tau(self.adapt_tau, surrogate=self.surrogate, batch_size=self.batch_size)

    def _costs(self, problem: LocalProblems, t: int):
        return batch_problems(problem, t, batch_size=self.batch_size, seed=self.seed)

    def init(self, problem: LocalProblems, network: Network, X0: torch.Tensor) -> NextState:
        memory = init_memory(self.surrogate, problem, network, X0,
                             alpha0=self.schedule.init())
        G = self._costs(problem, 0).gradients(X0)
        return NextState(t=0, X=X0.clone(), Y=G.clone(), G=G, alpha=self.schedule.init(),
                         objective=start_objective(self, problem, X0, network), **memory)

    def step(self, state: NextState, problem: LocalProblems, network: Network,
             W: np.ndarray) -> NextState:
        X, Y, G, alpha = state.X, state.Y, state.G, state.alpha
        # pi~_i = N y_i - grad g_i(w_i)
        Pi = network.n_agents * Y - G
        Xt, memory = local_solve(self._costs(problem, state.t), self.surrogate, X, G, Pi,
                                 alpha=alpha, state=state)
        # z_i = w_i + alpha (w~_i - w_i)
        Z = X + alpha * (Xt - X)
        mixed = network.mix(torch.stack((Z, Y), dim=1), W)
        X_new = mixed[:, 0].contiguous()
        G_new, losses = next_gradients(self, self._costs(problem, state.t + 1), problem, X_new)
        # y_i = sum_j W_ij y_j + grad g_i(w_i new) - grad g_i(w_i old)
        Y_new = mixed[:, 1] + G_new - G
        memory["tau"] = next_tau(self, state, problem, X, X_new, losses, network)
        return replace(state, t=state.t + 1, X=X_new, Y=Y_new, G=G_new,
                       alpha=self.schedule.update(alpha, state.t), **memory)
