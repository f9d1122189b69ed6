"""The centralized baseline: one model trained on the pooled data, on the same loop.

Every agent holds the same ``w``; each iteration uses the pooled gradient
``grad U(w) = sum_i grad g_i(w) + grad r(w)`` (a sum over all agents, one reduction), so the
trajectory is that of one machine holding all the data, whatever the number of processes. No
iterate is exchanged: ``bytes_per_agent`` stays 0 (run as data parallel, each step would cost
one all-reduce of ``P`` numbers; see the DDP baseline). Optimizers, with ``s[n] = lr * alpha[n]``:

- ``gd`` (proximal gradient descent on ``U / N``, the scale of the decentralized methods'
  average step), with ``r = r_1 + r_2`` split into its l1 and smooth parts:
  ``w <- prox_{s[n] r_1 / N}(w - (s[n] / N) (sum_i grad g_i(w) + grad r_2(w)))`` -- the update
  the engine baselines (``ddp``, ``pipeline``, ``tensor-parallel``) make with plain SGD;
- ``adam`` (Kingma & Ba 2015) on ``grad U`` with step ``s[n]``, ``beta = (0.9, 0.999)``,
  ``eps = 1e-8``, bias-corrected moments;
- ``lbfgs`` (Nocedal 1980; Nocedal & Wright, Alg. 7.4): direction ``d = -H grad U`` from the
  last 10 pairs ``(w[k+1] - w[k], grad U(w[k+1]) - grad U(w[k]))`` (two-loop recursion,
  ``H0 = s^T y / y^T y``), a pair kept only if ``s^T y > 1e-12 y^T y``, the first direction
  ``-grad U / max(1, ||grad U||_1)``; step from 1 halved until
  ``U(w + t d) <= U(w) + 1e-4 t grad U^T d`` (Armijo). ``alpha`` is the accepted ``t``. When
  no step decreases ``U`` (converged to rounding) the remaining iterations leave ``w`` as is.

``adam`` and ``lbfgs`` need a smooth ``r``; ``gd`` handles l1 by its prox step.
``Scaled(schedule, "auto")`` resolves at ``init`` to :func:`~dcnn.algorithms.steps.auto_lr`
(``gd``), :data:`~dcnn.algorithms.steps.ADAM_LR` (``adam``) or 1 (``lbfgs``, unused: it takes
line-search steps), kept in the state as ``lr``.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

import numpy as np
import torch

from ..comm import Network
from ..errors import ConfigError
from ..problems import LocalProblems
from ..problems.regularizers import soft_threshold
from .checks import check_name, check_schedule
from .steps import ADAM_LR, resolve_lr, with_lr

__all__ = ["CentralizedState", "Centralized", "OPTIMIZERS"]

OPTIMIZERS = ("lbfgs", "gd", "adam")
_MEMORY, _ARMIJO, _HALVINGS = 10, 1e-4, 40
_BETA1, _BETA2, _EPS = 0.9, 0.999, 1e-8


@dataclass(frozen=True)
class CentralizedState:
    # per-agent rows (A, ...) (checkpoints, divergence guard); the other fields are replicated
    ROWS: ClassVar[tuple[str, ...]] = ("X",)

    t: int
    X: torch.Tensor      # (A, P) every row the common w
    f: float             # U(w) (lbfgs; the other optimizers leave U(w[0]) here)
    g: torch.Tensor      # (P,) grad of the smooth part of U at w (without the l1 part)
    memory: tuple        # lbfgs: (S, Y) pairs (k, P); adam: (m, v); gd: ()
    alpha: float         # step length of the last iteration (lbfgs) or s[t]
    lr: float = 1.0      # the schedule's lr ("auto" resolved at init)
    done: bool = False   # lbfgs: no further decrease possible (converged to rounding)


def _value_and_grad(problem: LocalProblems, network: Network, w: torch.Tensor, *,
                    with_r: bool) -> tuple[float, torch.Tensor]:
    """``sum_i g_i(w) (+ r(w))`` and its gradient (of the smooth part of ``r``), summed over
    every agent (collective)."""
    vals, grads = problem.value_and_grad(w.expand(problem.n_agents, -1))
    f = float(network.allreduce(vals.sum().reshape(1))[0])
    g = network.agent_sum(grads)
    if with_r:
        reg = problem.regularizer
        f += float(reg.value(w))
        g = g + 2.0 * reg.l2 * w
    return f, g


def _two_loop(g: torch.Tensor, S: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """``H g`` for the L-BFGS inverse-Hessian estimate of the pairs ``(S, Y)``."""
    q, rho = g.clone(), 1.0 / (S * Y).sum(1)
    a = torch.empty(len(S), dtype=g.dtype)
    for k in range(len(S) - 1, -1, -1):
        a[k] = rho[k] * (S[k] @ q)
        q -= a[k] * Y[k]
    q *= (S[-1] @ Y[-1]) / (Y[-1] @ Y[-1])
    for k in range(len(S)):
        q += (a[k] - rho[k] * (Y[k] @ q)) * S[k]
    return q


@dataclass(frozen=True)
class Centralized:
    """Pooled-data training with ``optimizer`` in :data:`OPTIMIZERS`."""

    schedule: object
    optimizer: str = "lbfgs"
    name: str = "centralized"
    directed_ok = True   # nothing is mixed: any topology is ignored

    def __post_init__(self):
        check_schedule(self.schedule)
        check_name(self.name)
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"optimizer {self.optimizer!r} is unknown; choose one of: "
                              f"{', '.join(OPTIMIZERS)}")

    def init(self, problem: LocalProblems, network: Network,
             X0: torch.Tensor) -> CentralizedState:
        if self.optimizer != "gd" and not problem.regularizer.smooth:
            raise ConfigError(f"algorithm 'centralized' with optimizer {self.optimizer!r} needs "
                              f"a smooth regularizer, got model.regularizer = "
                              f"{problem.regularizer.name!r}; use algorithm.optimizer = 'gd' "
                              "(proximal steps) for l1")
        w = X0[0].clone()
        f, g = _value_and_grad(problem, network, w, with_r=True)
        P = w.numel()
        memory = {"lbfgs": (torch.empty(0, P, dtype=w.dtype), torch.empty(0, P, dtype=w.dtype)),
                  "adam": (torch.zeros_like(w), torch.zeros_like(w)), "gd": ()}[self.optimizer]
        auto = {"adam": lambda: ADAM_LR, "lbfgs": lambda: 1.0}.get(self.optimizer)
        lr = resolve_lr(self.schedule, problem=problem, network=network, X0=X0, auto=auto)
        return CentralizedState(t=0, X=X0.clone(), f=f, g=g, memory=memory,
                                alpha=with_lr(self.schedule, lr).init(), lr=lr)

    def step(self, state: CentralizedState, problem: LocalProblems, network: Network,
             W: np.ndarray) -> CentralizedState:
        new = getattr(self, f"_{self.optimizer}")(state, problem, network)
        return replace(new, t=state.t + 1, X=new.X[:1].expand_as(state.X).clone())

    def _gd(self, state, problem, network):
        s, N, w = state.alpha, network.n_agents, state.X[0]
        # w = prox_{s r_1 / N}(w - (s / N) (sum_i grad g_i(w) + grad r_2(w)))
        w_new = soft_threshold(w - (s / N) * state.g, s / N * problem.regularizer.l1)
        _, g = _value_and_grad(problem, network, w_new, with_r=True)
        return replace(state, X=w_new[None], g=g,
                       alpha=with_lr(self.schedule, state.lr).update(s, state.t))

    def _adam(self, state, problem, network):
        s, w, (m, v) = state.alpha, state.X[0], state.memory
        k = state.t + 1
        m = _BETA1 * m + (1 - _BETA1) * state.g
        v = _BETA2 * v + (1 - _BETA2) * state.g ** 2
        # w = w - s m^ / (sqrt(v^) + eps), m^ = m / (1 - beta1^k), v^ = v / (1 - beta2^k)
        w_new = w - s * (m / (1 - _BETA1 ** k)) / ((v / (1 - _BETA2 ** k)).sqrt() + _EPS)
        _, g = _value_and_grad(problem, network, w_new, with_r=True)
        return replace(state, X=w_new[None], g=g, memory=(m, v),
                       alpha=with_lr(self.schedule, state.lr).update(s, state.t))

    def _lbfgs(self, state, problem, network):
        w, f, g, (S, Y) = state.X[0], state.f, state.g, state.memory
        if state.done:
            return replace(state, alpha=0.0)
        if len(S):
            d = -_two_loop(g, S, Y)
        else:
            d = -g / max(1.0, float(g.abs().sum()))
        slope = float(g @ d)
        if not slope < 0.0:                      # not a descent direction: restart
            S, Y = S[:0], Y[:0]
            d, slope = -g, -float(g @ g)
        if slope == 0.0:                         # stationary: nothing to do
            return replace(state, alpha=0.0, done=True)
        t = 1.0
        for _ in range(_HALVINGS):
            f_new, g_new = _value_and_grad(problem, network, w + t * d, with_r=True)
            if f_new <= f + _ARMIJO * t * slope:
                break
            t *= 0.5
        else:                                    # no decrease found: keep w
            return replace(state, alpha=0.0, done=True)
        s_k, y_k = t * d, g_new - g
        if float(s_k @ y_k) > 1e-12 * float(y_k @ y_k):
            S = torch.cat((S, s_k[None]))[-_MEMORY:]
            Y = torch.cat((Y, y_k[None]))[-_MEMORY:]
        return replace(state, X=(w + t * d)[None], f=f_new, g=g_new, memory=(S, Y), alpha=t)
