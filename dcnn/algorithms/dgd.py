"""DGD and D-PSGD: decentralized (proximal) gradient descent, exact or on mini-batches.

Nedic & Ozdaglar, "Distributed subgradient methods for multi-agent optimization", IEEE TAC 2009
(DGD); Lian et al., "Can decentralized algorithms outperform centralized algorithms?", NeurIPS
2017 (D-PSGD). For doubly stochastic ``W[n]`` and the step ``s[n] = lr * alpha[n]``, every
agent ``i`` per iteration:

    w_i <- prox_{s[n] r / N}( sum_j W_ij[n] w_j - s[n] grad g_i(w_i) )

(``prox`` of ``r / N`` handles l2 and l1 alike; for ``r = 0`` it is plain DGD). With a constant
step DGD stops in an ``O(s / (1 - sigma))`` neighbourhood of the optimum (the local gradients
disagree at the optimum and nothing corrects for it); with a diminishing, non-summable step it
converges to the optimum of a convex problem, slowly. D-PSGD (``batch_size = b``) replaces
``grad g_i`` by its unbiased mini-batch estimate on ``min(b, M_i)`` rows drawn from
``(seed, n, i)``. One ``P``-vector per neighbour per iteration.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

import numpy as np
import torch

from ..comm import Network
from ..problems import LocalProblems
from .steps import GradientMethod, local_gradients

__all__ = ["DgdState", "Dgd"]


@dataclass(frozen=True)
class DgdState:
    # per-agent rows (A, ...) (checkpoints, divergence guard); the other fields are replicated
    ROWS: ClassVar[tuple[str, ...]] = ("X",)

    t: int
    X: torch.Tensor      # (A, P) iterates w_i
    alpha: float         # the step s[t]
    lr: float            # the schedule's lr ("auto" resolved at init)


@dataclass(frozen=True)
class Dgd(GradientMethod):
    """DGD with a prox step for ``r``; ``batch_size`` > 0 makes it D-PSGD."""

    name: str = "dgd"
    directed_ok = False

    def init(self, problem: LocalProblems, network: Network, X0: torch.Tensor) -> DgdState:
        lr, s = self._start(problem, network, X0)
        return DgdState(t=0, X=X0.clone(), alpha=s, lr=lr)

    def step(self, state: DgdState, problem: LocalProblems, network: Network,
             W: np.ndarray) -> DgdState:
        s, N = state.alpha, network.n_agents
        G = local_gradients(problem, state.X, t=state.t, n_agents=N, regularizer=False,
                            batch_size=self.batch_size, seed=self.seed)
        # w_i = prox_{s r / N}(sum_j W_ij w_j - s grad g_i(w_i))
        X_new = problem.regularizer.prox(network.mix(state.X, W) - s * G, s / N)
        return replace(state, t=state.t + 1, X=X_new, alpha=self._next(state))
