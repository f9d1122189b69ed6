"""EXTRA: exact first-order decentralized gradient descent on a static graph.

Shi, Ling, Wu & Yin, "EXTRA: An exact first-order algorithm for decentralized consensus
optimization", SIAM J. Optim. 25(2), 2015. With ``f_i = g_i + r / N`` (``r`` smooth), a fixed
symmetric doubly stochastic ``W``, ``W~ = (I + W) / 2`` and the step ``s``, in matrix form
(row ``i`` = agent ``i``):

    X[1]     = W X[0] - s grad F(X[0])
    X[k + 2] = (I + W) X[k + 1] - W~ X[k] - s (grad F(X[k + 1]) - grad F(X[k]))

Subtracting consecutive updates of DGD cancels its steady-state error, so a small enough
*constant* step reaches the exact optimum of a convex problem. ``W X[k]`` is kept from the
previous iteration, so each iteration sends one ``P``-vector per neighbour. A schedule that
is not constant enters as ``s[k + 1] grad F(X[k + 1]) - s[k] grad F(X[k])`` (equal to the
above for a constant step); only the constant step carries the guarantee. The graph must be
static (the correction assumes one ``W``): a time-varying topology is refused by the loop.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

import numpy as np
import torch

from ..comm import Network
from ..problems import LocalProblems
from .steps import GradientMethod, require_smooth

__all__ = ["ExtraState", "Extra"]


@dataclass(frozen=True)
class ExtraState:
    # per-agent rows (A, ...) (checkpoints, divergence guard); the other fields are replicated
    ROWS: ClassVar[tuple[str, ...]] = ("X", "X_prev", "WX_prev", "G", "G_prev")

    t: int
    X: torch.Tensor             # (A, P) X[k + 1]
    X_prev: torch.Tensor        # (A, P) X[k]
    WX_prev: torch.Tensor       # (A, P) (W X[k]) for the group's rows
    G: torch.Tensor             # (A, P) s[k + 1] grad F(X[k + 1])
    G_prev: torch.Tensor        # (A, P) s[k] grad F(X[k])
    alpha: float                # the step s[t]
    lr: float                   # the schedule's lr ("auto" resolved at init)


@dataclass(frozen=True)
class Extra(GradientMethod):
    """EXTRA with a (constant) step; static graphs only (``static_only``)."""

    name: str = "extra"
    directed_ok = False
    static_only = True

    def init(self, problem: LocalProblems, network: Network, X0: torch.Tensor) -> ExtraState:
        require_smooth(problem, self.name)
        lr, s = self._start(problem, network, X0)
        G = s * self._grad(problem, X0, 0, network)
        return ExtraState(t=0, X=X0.clone(), X_prev=X0.clone(), WX_prev=X0.clone(), G=G,
                          G_prev=G, alpha=s, lr=lr)

    def step(self, state: ExtraState, problem: LocalProblems, network: Network,
             W: np.ndarray) -> ExtraState:
        WX = network.mix(state.X, W)
        if state.t == 0:
            # X[1] = W X[0] - s grad F(X[0])
            X_new = WX - state.G
        else:
            # X[k+2] = W X[k+1] + X[k+1] - (X[k] + W X[k]) / 2 - (s grad F(X[k+1]) - s grad F(X[k]))
            X_new = WX + state.X - 0.5 * (state.X_prev + state.WX_prev) - (state.G - state.G_prev)
        s_new = self._next(state)
        G_new = s_new * self._grad(problem, X_new, state.t + 1, network)
        return replace(state, t=state.t + 1, X=X_new, X_prev=state.X, WX_prev=WX, G=G_new,
                       G_prev=state.G, alpha=s_new)
