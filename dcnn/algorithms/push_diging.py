"""Push-DIGing: gradient tracking with push-sum on directed, time-varying graphs.

Nedic, Olshevsky & Shi, "Achieving geometric convergence for distributed optimization over
time-varying graphs", SIAM J. Optim. 27(4), 2017 (Sec. 4). With ``f_i = g_i + r / N`` (``r``
smooth), column-stochastic ``C[n]`` with positive self weights (row ``i`` = what agent ``i``
receives; each agent splits what it sends over its out-neighbours and itself) and the step
``s[n] = lr * alpha[n]``, every agent ``i``:

    u_i <- sum_j C_ij[n] (u_j - s[n] y_j)
    v_i <- sum_j C_ij[n] v_j
    w_i  = u_i / v_i
    y_i <- sum_j C_ij[n] y_j + grad f_i(w_i new) - grad f_i(w_i old)

with ``u_i = w_i[0]``, ``v_i = 1``, ``y_i = grad f_i(w_i[0])``. Column stochasticity keeps
``sum_i v_i = N`` and ``sum_i y_i = sum_i grad f_i(w_i)``; the push-sum ratio ``u_i / v_i``
undoes the bias of a weight matrix that is not row-stochastic, and a small enough constant
step reaches the exact optimum of a convex problem. ``u - s y``, ``y`` and ``v`` travel in one
``(A, 2P + 1)`` message. On doubly stochastic weights ``v = 1``: the ``w`` update is then
adapt-then-combine, the tracking update DIGing's.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

import numpy as np
import torch

from ..comm import Network
from ..problems import LocalProblems
from .sonata import check_push_sum
from .steps import GradientMethod, require_smooth

__all__ = ["PushDigingState", "PushDiging"]


@dataclass(frozen=True)
class PushDigingState:
    # per-agent rows (A, ...) (checkpoints, divergence guard); the other fields are replicated
    ROWS: ClassVar[tuple[str, ...]] = ("X", "U", "v", "Y", "G")

    t: int
    X: torch.Tensor      # (A, P) de-biased iterates w_i = u_i / v_i
    U: torch.Tensor      # (A, P) push-sum numerators u_i
    v: torch.Tensor      # (A,) push-sum weights v_i
    Y: torch.Tensor      # (A, P) trackers y_i
    G: torch.Tensor      # (A, P) stored gradients grad f_i(w_i)
    alpha: float         # the step s[t]
    lr: float            # the schedule's lr ("auto" resolved at init)


@dataclass(frozen=True)
class PushDiging(GradientMethod):
    """Push-DIGing for column-stochastic (directed) weight sequences."""

    name: str = "push-diging"
    directed_ok = True

    def init(self, problem: LocalProblems, network: Network,
             X0: torch.Tensor) -> PushDigingState:
        require_smooth(problem, self.name)
        lr, s = self._start(problem, network, X0)
        G = self._grad(problem, X0, 0, network)
        return PushDigingState(t=0, X=X0.clone(), U=X0.clone(),
                               v=torch.ones(X0.shape[0], dtype=X0.dtype), Y=G.clone(), G=G,
                               alpha=s, lr=lr)

    def step(self, state: PushDigingState, problem: LocalProblems, network: Network,
             W: np.ndarray) -> PushDigingState:
        C = check_push_sum(W)
        s, P = state.alpha, state.X.shape[1]
        mixed = network.mix(torch.cat((state.U - s * state.Y, state.Y, state.v[:, None]),
                                      dim=1), C)
        # u_i = sum_j C_ij (u_j - s y_j);  v_i = sum_j C_ij v_j;  w_i = u_i / v_i
        U_new, v_new = mixed[:, :P], mixed[:, 2 * P].contiguous()
        X_new = U_new / v_new[:, None]
        G_new = self._grad(problem, X_new, state.t + 1, network)
        # y_i = sum_j C_ij y_j + grad f_i(w_i new) - grad f_i(w_i old)
        Y_new = mixed[:, P:2 * P] + G_new - state.G
        return replace(state, t=state.t + 1, X=X_new, U=U_new, v=v_new, Y=Y_new, G=G_new,
                       alpha=self._next(state))
