"""Gradient steps shared by the gradient-based baselines: the agents' gradients of
``f_i = g_i + r_smooth / N``, the step length ``lr * alpha[n]`` and its automatic scale.

Every agent carries ``1/N`` of the regulariser, so ``sum_i f_i = sum_i g_i + r = U`` for a
smooth ``r`` (l2 or none). A method with a prox step (DGD, centralized gradient descent) keeps
``r`` out of the gradient and applies ``prox_{step r / N}`` instead, which also covers l1.

``lr = "auto"`` is ``1 / L`` with ``L = max_i L_i + 2 lam_2 / N`` the largest curvature of the
``f_i`` at ``w[0]`` (power iteration on Hessian-vector products, the estimate behind
``tau = "auto"``). With it a step moves the network average by ``alpha[n] / L`` times the
*average* gradient ``(1/N) grad U``, about the scale FL-NEXT's automatic ``tau`` gives
(``alpha0 L`` with ``L`` the network's curvature, on the total gradient ``N y_i``), so one
``alpha0`` means about one step length for every method. It is a heuristic taken once at
``w[0]``; unlike ``tau = "auto"`` it is not raised during the run.
``Scaled(schedule, "auto")`` is resolved by the method's ``init`` (:func:`resolve_lr`,
collective), and the number is kept in the state (``state.lr``): ``step`` reads it there.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import torch

from ..comm import Network
from ..errors import ConfigError
from ..problems import LocalProblems, batch_problems
from .checks import check_batch, check_name, check_positive, check_schedule, check_seed

__all__ = ["Scaled", "GradientMethod", "local_gradients", "auto_lr", "resolve_lr", "with_lr",
           "require_smooth"]

ADAM_LR = 0.02  # lr = "auto" for Adam: its steps are ~lr per weight whatever the curvature


@dataclass(frozen=True)
class Scaled:
    """A schedule whose values are multiplied by ``lr``: ``step[n] = lr * alpha[n]``.

    ``lr = "auto"`` is resolved when the method starts (:func:`resolve_lr`); until then
    ``init`` and ``update`` refuse to run."""

    schedule: object
    lr: float | str

    def __post_init__(self):
        check_schedule(self.schedule)
        check_positive("lr", self.lr, auto=True, example=" (e.g. 0.1)")

    def init(self) -> float:
        if self.lr == "auto":
            raise ConfigError('Scaled(schedule, "auto") is resolved by the method\'s init; '
                              'call resolve_lr first, or give lr as a number')
        return self.lr * self.schedule.init()

    def update(self, step: float, n: int) -> float:
        return self.lr * self.schedule.update(step / self.lr, n)


def local_gradients(problem: LocalProblems, X: torch.Tensor, *, t: int, n_agents: int,
                    batch_size: int | None = None, seed: int = 0,
                    regularizer: bool = True) -> torch.Tensor:
    """``grad f_i(w_i) = grad g_i(w_i) + grad r(w_i) / N`` for the group (``(A, P)``); on the
    mini-batches of iteration ``t`` if ``batch_size``; without ``r`` if not ``regularizer``."""
    G = (problem.gradients(X) if not batch_size
         else batch_problems(problem, t, batch_size=batch_size, seed=seed).gradients(X))
    reg = problem.regularizer
    if regularizer and reg.l2:
        G = G + (2.0 * reg.l2 / n_agents) * X
    return G


def require_smooth(problem: LocalProblems, name: str) -> None:
    """Gradient tracking, EXTRA and Push-DIGing use gradients of ``r``: no l1 part."""
    if not problem.regularizer.smooth:
        raise ConfigError(f"algorithm {name!r} needs a smooth regularizer, got "
                          f"model.regularizer = {problem.regularizer.name!r}; use 'l2' or "
                          "'none', or algorithm.name = 'next' or 'dgd' (prox steps) for l1")


def auto_lr(*, problem: LocalProblems, network: Network, X0: torch.Tensor) -> float:
    """``1 / (max_i L_i + 2 lam_2 / N)`` (see the module docstring), equal on every rank."""
    from ..surrogates.tau import local_curvatures
    with torch.no_grad():
        local = local_curvatures(problem, X0).max()
        L = float(network.allreduce(local.reshape(1), op="max")[0])
    L += 2.0 * problem.regularizer.l2 / network.n_agents
    return 1.0 / max(L, 1e-12)


def resolve_lr(schedule, *, problem: LocalProblems, network: Network, X0: torch.Tensor,
               auto: Callable[[], float] | None = None) -> float:
    """The ``lr`` of a :class:`Scaled` schedule as a number (1 for any other schedule):
    ``"auto"`` is ``auto()``, by default :func:`auto_lr` (collective)."""
    if not isinstance(schedule, Scaled):
        return 1.0
    if schedule.lr != "auto":
        return float(schedule.lr)
    if auto is not None:
        return float(auto())
    return auto_lr(problem=problem, network=network, X0=X0)


def with_lr(schedule, lr: float):
    """``schedule`` with its ``lr`` set to the resolved number (itself if not :class:`Scaled`)."""
    if isinstance(schedule, Scaled) and schedule.lr != lr:
        return replace(schedule, lr=lr)
    return schedule


@dataclass(frozen=True)
class GradientMethod:
    """What the gradient baselines share: the step schedule (in step units, e.g. ``Scaled``,
    whose ``lr = "auto"`` :meth:`_steps` resolves), their name, optional mini-batches drawn
    from ``(seed, t, agent)``, and ``grad f_i``."""

    schedule: object
    name: str = ""
    batch_size: int | None = None
    seed: int = 0

    def __post_init__(self):
        check_schedule(self.schedule)
        check_name(self.name)
        check_batch(self.batch_size)
        check_seed(self.seed)

    def _start(self, problem: LocalProblems, network: Network, X0: torch.Tensor):
        """``(lr, s[0])``: the resolved ``lr`` (kept in the state) and the first step."""
        lr = resolve_lr(self.schedule, problem=problem, network=network, X0=X0)
        return lr, with_lr(self.schedule, lr).init()

    def _next(self, state) -> float:
        """``s[t + 1]`` from ``s[t] = state.alpha``, with the state's ``lr``."""
        return with_lr(self.schedule, state.lr).update(state.alpha, state.t)

    def _grad(self, problem: LocalProblems, X: torch.Tensor, t: int,
              network: Network) -> torch.Tensor:
        return local_gradients(problem, X, t=t, n_agents=network.n_agents,
                               batch_size=self.batch_size, seed=self.seed)
