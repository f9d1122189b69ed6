"""Gradient tracking (DIGing) on undirected, time-varying graphs.

Nedic, Olshevsky & Shi, "Achieving geometric convergence for distributed optimization over
time-varying graphs", SIAM J. Optim. 27(4), 2017. With ``f_i = g_i + r / N`` (``r`` smooth),
doubly stochastic ``W[n]`` and the step ``s[n] = lr * alpha[n]``, every agent ``i``:

    w_i <- sum_j W_ij[n] w_j - s[n] y_i
    y_i <- sum_j W_ij[n] y_j + grad f_i(w_i new) - grad f_i(w_i old)

with ``y_i = grad f_i(w_i[0])``. ``sum_i y_i = sum_i grad f_i(w_i)`` at every iteration, so
``y_i`` tracks the average gradient and a small enough *constant* step reaches the exact
optimum of a convex problem (geometrically if strongly convex). ``w`` and ``y`` travel in one
``(A, 2, P)`` message. ``batch_size`` > 0 uses mini-batch gradients stored and reused as in
stochastic NEXT (an extension; it then stops in a noise neighbourhood).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

import numpy as np
import torch

from ..comm import Network
from ..problems import LocalProblems
from .steps import GradientMethod, require_smooth

__all__ = ["GtState", "GradientTracking"]


@dataclass(frozen=True)
class GtState:
    # per-agent rows (A, ...) (checkpoints, divergence guard); the other fields are replicated
    ROWS: ClassVar[tuple[str, ...]] = ("X", "Y", "G")

    t: int
    X: torch.Tensor      # (A, P) iterates w_i
    Y: torch.Tensor      # (A, P) trackers y_i
    G: torch.Tensor      # (A, P) stored gradients grad f_i(w_i)
    alpha: float         # the step s[t]
    lr: float            # the schedule's lr ("auto" resolved at init)


@dataclass(frozen=True)
class GradientTracking(GradientMethod):
    """DIGing: consensus on ``w`` and ``y`` with one gradient step along the tracker."""

    name: str = "gt"
    directed_ok = False

    def init(self, problem: LocalProblems, network: Network, X0: torch.Tensor) -> GtState:
        require_smooth(problem, self.name)
        lr, s = self._start(problem, network, X0)
        G = self._grad(problem, X0, 0, network)
        return GtState(t=0, X=X0.clone(), Y=G.clone(), G=G, alpha=s, lr=lr)

    def step(self, state: GtState, problem: LocalProblems, network: Network,
             W: np.ndarray) -> GtState:
        s = state.alpha
        mixed = network.mix(torch.stack((state.X, state.Y), dim=1), W)
        # w_i = sum_j W_ij w_j - s y_i
        X_new = mixed[:, 0] - s * state.Y
        G_new = self._grad(problem, X_new, state.t + 1, network)
        # y_i = sum_j W_ij y_j + grad f_i(w_i new) - grad f_i(w_i old)
        Y_new = mixed[:, 1] + G_new - state.G
        return replace(state, t=state.t + 1, X=X_new, Y=Y_new, G=G_new,
                       alpha=self._next(state))
