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
The ``z`` and ``y`` exchanges travel in one message (a stacked ``(A, 2, P)`` mix).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from ..comm import Network
from ..problems import LocalProblems

__all__ = ["NextState", "Next"]


@dataclass(frozen=True)
class NextState:
    """Everything NEXT carries between iterations, for the group's agents."""

    t: int
    X: torch.Tensor      # (A, P) iterates w_i
    Y: torch.Tensor      # (A, P) trackers y_i
    G: torch.Tensor      # (A, P) stored local gradients grad g_i(w_i)
    alpha: float         # alpha[t]


@dataclass(frozen=True)
class Next:
    """NEXT with a surrogate (``FL``/``PL``) and a step-size schedule."""

    surrogate: object
    schedule: object
    name: str = "next"
    directed_ok = False  # needs doubly stochastic W; Sonata is the directed counterpart

    def init(self, problem: LocalProblems, network: Network, X0: torch.Tensor) -> NextState:
        self.surrogate.check(problem)
        G = problem.gradients(X0)
        return NextState(t=0, X=X0.clone(), Y=G.clone(), G=G, alpha=self.schedule.init())

    def step(self, state: NextState, problem: LocalProblems, network: Network,
             W: np.ndarray) -> NextState:
        X, Y, G, alpha = state.X, state.Y, state.G, state.alpha
        # pi~_i = N y_i - grad g_i(w_i)
        Pi = network.n_agents * Y - G
        Xt = self.surrogate.solve(problem, X, G, Pi, alpha=alpha)
        # z_i = w_i + alpha (w~_i - w_i)
        Z = X + alpha * (Xt - X)
        mixed = network.mix(torch.stack((Z, Y), dim=1), W)
        X_new = mixed[:, 0].contiguous()
        G_new = problem.gradients(X_new)
        # y_i = sum_j W_ij y_j + grad g_i(w_i new) - grad g_i(w_i old)
        Y_new = mixed[:, 1] + G_new - G
        return replace(state, t=state.t + 1, X=X_new, Y=Y_new, G=G_new,
                       alpha=self.schedule.update(alpha, state.t))
