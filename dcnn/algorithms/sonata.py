"""SONATA: NEXT's local surrogate step with push-sum consensus and tracking, for digraphs.

Scutari & Sun, "Distributed nonconvex constrained optimization over time-varying digraphs",
Math. Programming 176 (2019). For column-stochastic ``A[n]`` (row ``i`` = what agent ``i``
receives; each column sums to 1), per iteration ``n`` every agent ``i``:

    w~_i   = argmin_w  g~_i(w; w_i) + pi~_i^T (w - w_i) + r(w)          (local surrogate)
    z_i    = w_i + alpha[n] (w~_i - w_i)
    phi_i <- sum_j A_ij[n] phi_j                                        (push-sum weights)
    w_i   <- (1 / phi_i new) sum_j A_ij[n] phi_j z_j                    (consensus)
    y_i   <- (1 / phi_i new) [sum_j A_ij[n] phi_j y_j
                              + grad g_i(w_i new) - grad g_i(w_i old)]  (tracking)
    pi~_i  = N y_i - grad g_i(w_i new)

with ``phi_i = 1`` and ``y_i = grad g_i(w_i[0])`` at start. Column stochasticity keeps
``sum_i phi_i = N`` and ``sum_i phi_i y_i = sum_i grad g_i(w_i)`` at every iteration, so the
de-biased ``y_i`` tracks the average gradient and ``N y_i`` the total one. The state holds the
de-biased ``w_i`` and ``y_i`` (what metrics read); ``phi z``, ``phi y`` and ``phi`` travel in one
message (a stacked ``(A, 2P + 1)`` mix). On a doubly stochastic ``W`` the weights stay
``phi = 1`` and SONATA is NEXT (:mod:`dcnn.algorithms.next`). The surrogate's memory (warm
starts, call count, resolved ``tau``) is part of :class:`SonataState`, as in NEXT.

Stochastic variant (``batch_size = b``; an extension beyond the paper): exactly as in
:mod:`dcnn.algorithms.next`, iteration ``n`` solves the surrogate of the unbiased mini-batch
cost ``g_i^n`` (batch drawn from ``(seed, n, i)``) and stores ``G_i = grad g_i^{n+1}(w_i new)``,
taken on the next iteration's batch; the tracking uses the stored ``G_i``,

    y_i   <- (1 / phi_i new) [sum_j A_ij[n] phi_j y_j + G_i new - G_i old],

so ``sum_i phi_i y_i = sum_i G_i`` stays exact. No convergence guarantee to exact
stationarity with a constant step; with a diminishing step and bounded variance it behaves
like stochastic (push-sum) gradient tracking.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

import numpy as np
import torch

from ..comm import Network
from ..errors import TopologyError
from ..problems import LocalProblems, batch_problems
from .checks import check_batch, check_name, check_schedule, check_seed
from .surrogate_step import (MEMORY_ROWS, check_adapt_tau, check_surrogate, init_memory,
                             local_solve, next_gradients, next_tau, start_objective)
from ..topology import check_column_stochastic

__all__ = ["SonataState", "Sonata", "check_push_sum"]


@dataclass(frozen=True)
class SonataState:
    """Everything SONATA carries between iterations, for the group's agents."""

    # per-agent rows (A, ...) (checkpoints, divergence guard); the other fields are replicated
    ROWS: ClassVar[tuple[str, ...]] = ("X", "Y", "G", "phi", *MEMORY_ROWS)

    t: int
    X: torch.Tensor      # (A, P) de-biased iterates w_i
    Y: torch.Tensor      # (A, P) de-biased trackers y_i
    G: torch.Tensor      # (A, P) stored local gradients grad g_i(w_i)
    phi: torch.Tensor    # (A,) push-sum weights phi_i
    alpha: float         # alpha[t]
    tau: float           # the surrogate's proximal weight ("auto" resolved at init)
    warm: torch.Tensor   # (A, P) or (A, 0): last w~_i, the surrogate's next warm start
    has_warm: torch.Tensor  # (A,) bool: row i of warm holds a warm start
    calls: int           # the surrogate's local steps so far (block-Jacobi block choice)
    objective: float     # sum_i g_i(w_i[0]) (adaptive tau's screen; 0 when tau is fixed)


def check_push_sum(W: np.ndarray) -> np.ndarray:
    W = check_column_stochastic(W)
    zero = np.flatnonzero(np.diagonal(W) <= 0)
    if len(zero):
        raise TopologyError(f"push-sum needs a positive self weight, but W[{zero[0]}, "
                            f"{zero[0]}] = {W[zero[0], zero[0]]:.3g}; use weights "
                            f"'column_stochastic'")
    return W


@dataclass(frozen=True)
class Sonata:
    """SONATA with a surrogate (``FL``/``PL``/``Blocked``; ``tau = "auto"`` is resolved by
    ``init`` into ``state.tau``) and a step-size schedule; any column-stochastic weights,
    directed and time-varying included; ``batch_size`` > 0 makes it stochastic;
    ``adapt_tau`` as for :class:`~dcnn.algorithms.Next`."""

    surrogate: object
    schedule: object
    name: str = "sonata"
    batch_size: int | None = None
    seed: int = 0
    adapt_tau: bool | None = None
    directed_ok = True

    def __post_init__(self):
        check_surrogate(self.surrogate)
        check_schedule(self.schedule)
        check_name(self.name)
        check_batch(self.batch_size)
        check_seed(self.seed)
        check_adapt_tau(self.adapt_tau, surrogate=self.surrogate, batch_size=self.batch_size)

    def _costs(self, problem: LocalProblems, t: int):
        return batch_problems(problem, t, batch_size=self.batch_size, seed=self.seed)

    def init(self, problem: LocalProblems, network: Network,
             X0: torch.Tensor) -> SonataState:
        memory = init_memory(self.surrogate, problem, network, X0,
                             alpha0=self.schedule.init())
        G = self._costs(problem, 0).gradients(X0)
        phi = torch.ones(X0.shape[0], dtype=X0.dtype)
        return SonataState(t=0, X=X0.clone(), Y=G.clone(), G=G, phi=phi,
                           alpha=self.schedule.init(),
                           objective=start_objective(self, problem, X0, network), **memory)

    def step(self, state: SonataState, problem: LocalProblems, network: Network,
             W: np.ndarray) -> SonataState:
        W = check_push_sum(W)
        X, Y, G, phi, alpha = state.X, state.Y, state.G, state.phi, state.alpha
        P = X.shape[1]
        # pi~_i = N y_i - grad g_i(w_i)
        Pi = network.n_agents * Y - G
        Xt, memory = local_solve(self._costs(problem, state.t), self.surrogate, X, G, Pi,
                                 alpha=alpha, state=state)
        # z_i = w_i + alpha (w~_i - w_i)
        Z = X + alpha * (Xt - X)
        p = phi[:, None]
        mixed = network.mix(torch.cat((p * Z, p * Y, p), dim=1), W)
        # phi_i = sum_j A_ij phi_j
        phi_new = mixed[:, 2 * P].contiguous()
        q = phi_new[:, None]
        # w_i = (1 / phi_i) sum_j A_ij phi_j z_j
        X_new = mixed[:, :P] / q
        G_new, losses = next_gradients(self, self._costs(problem, state.t + 1), problem, X_new)
        # y_i = (1 / phi_i) (sum_j A_ij phi_j y_j + grad g_i(w_i new) - grad g_i(w_i old))
        Y_new = (mixed[:, P:2 * P] + G_new - G) / q
        memory["tau"] = next_tau(self, state, problem, X, X_new, losses, network)
        return replace(state, t=state.t + 1, X=X_new, Y=Y_new, G=G_new, phi=phi_new,
                       alpha=self.schedule.update(alpha, state.t), **memory)
