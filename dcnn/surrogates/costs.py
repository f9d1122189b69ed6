"""PL's ``solver = "auto"``: the predicted time of one local step on each path, and the pick.

For ``A`` agents stacked, each with ``M`` samples (``K = M O`` rows of ``J``, ``O`` outputs)
and ``P`` parameters, the paths of :mod:`dcnn.surrogates.pl` cost about (seconds)

    t_J    = c_J + e_J A K P              form J: a vmapped per-sample jacrev, O backward
                                          passes per sample, plus writing every entry
    t_pair = c_p + e_p A M P              one jvp + one vjp: a pass over the M samples each,
                                          whatever O (the outputs share the forward pass)
    t_mv   = e_mv A K P                   one product with a formed J (reads J: memory-bound)
    chol   = A (2 K P^2 + 2 P^3 / 3) / F  the Gram matrix J^T J, and a P x P Cholesky
                                          factorisation (which runs at about half of F)
    wood   = A (2 K^2 P + 2 K^3 / 3) / F  J J^T and a K x K Cholesky

and one local step costs

    squared + smooth r:    cholesky  t_J + chol            woodbury  t_J + wood
                           cg        (n_cg + 1) t_pair
    cross-entropy + l2:    cholesky / woodbury  t_J + n_N (chol | wood + 4 t_mv)
                           (B = R^T J and the Newton products, about 4 reads of J each)
                           cg        (n_N' (n_in + 2) + 1) t_pair        (Newton-CG)
    l1 / elastic net:      formed    t_J + 2 (15 + n_f) t_mv           (power iteration, FISTA)
                           cg        (16 + n_f) t_pair

with the iteration counts of :data:`COSTS`. Lower-order terms are left out (``J q``, the
triangular solves), so between the two direct solves the model picks Woodbury exactly when
``K < P``, as ``pl_solve(method="auto")`` does. :func:`choose_solver` takes the cheapest path
among those whose arrays fit the memory budget (the stacked ``J``, the ``P x P`` or ``K x K``
matrix); with a non-smooth regulariser no linear system is solved and a formed ``J`` is named
``"woodbury"`` when ``K < P`` else ``"cholesky"``.

The choice is a pure function of the shapes: no timing is taken while a run goes, so it is
deterministic. NEXT and SONATA built by the runner take it from the global shapes
(:func:`resolve_solver`: all agents, the longest shard), so every rank and every number of
ranks takes the same path, the one a single process would take. It does not depend on the
thread count either; with more intra-op threads the dense factorisations speed up more than
the vmapped Jacobian and the jvp/vjp dispatch, so the model then leans slightly towards CG.

The constants of forming ``J`` and of a jvp + vjp pair depend on how the model computes
them: :data:`COSTS` holds those of vmapped autograd (any model), :data:`CLOSED_FORM` those of
the MLPs :mod:`dcnn.problems.stacked` computes in closed form (a fifth to a tenth of the
fixed costs; measured 2026-12-08 with ``dcnn bench costs``: ``c_J`` 0.11 ms, ``c_p`` 0.17
ms, ``e_J`` 12 ns, ``e_p`` 0.64 ns), picked by ``closed_form`` (``problem.closed_form``). A
direct solve predicted within :data:`DIRECT_MARGIN` (10 %) of CG is taken instead of CG: it
is exact, and the model cannot tell paths that close apart.

Calibration of :data:`COSTS` (``dcnn bench costs``, checked end to end by ``dcnn bench
solver``): an Intel
Xeon KVM guest with 2 cores (AVX-512), torch 2.13 CPU with MKL, float64, one intra-op thread,
tanh MLPs with 20 inputs. The constants are round values over the benchmark's shapes, which
spread them: the matmul rate is 35-100 Gflop/s (small to large matrices), ``e_p`` 0.3-1.8 ns
(wide to narrow layers), ``e_J`` 4-10 ns. The iteration counts are those the benchmark
problems take with ``tau = 1`` or ``tau = "auto"`` (the local curvature): CG 6-21, Newton 2-5.
CG takes more when ``2 s J^T J + c I`` (``s = 1/M_total``, ``c = tau + 2 lam``) is worse
conditioned, e.g. with a ``tau`` far below the curvature; ``cg_iters`` passes a known count
(e.g. the last solve's, ``Memory.inner.iterations``).
"""
from __future__ import annotations

import warnings

import torch

from ..comm import Network

__all__ = ["JACOBIAN_BUDGET_BYTES", "COSTS", "CLOSED_FORM", "DIRECT_MARGIN", "step_costs",
           "choose_solver", "problem_shapes", "resolve_solver", "warn_if_slow"]

JACOBIAN_BUDGET_BYTES = 256 * 2**20   # no formed J (or P x P, K x K matrix) above this size

COSTS = {
    "F": 5.0e10,      # dense matmul rate, flop/s
    "c_J": 1.5e-3,    # fixed cost of forming J
    "e_J": 9.0e-9,    # per entry of the stacked J
    "c_p": 8.0e-4,    # fixed cost of one jvp + vjp pair
    "e_p": 1.0e-9,    # per sample x parameter x agent of a jvp + vjp pair
    "e_mv": 1.5e-9,   # per entry of J, one product with the formed J
    "n_cg": 12,       # CG iterations, squared loss
    "n_newton": 3,    # Newton steps on a formed J
    "n_newton_cg": 4,  # Newton steps with CG directions (inexact: a few more)
    "n_inner": 5,     # CG iterations per Newton direction
    "n_fista": 25,    # FISTA iterations (either path)
}

# Jacobians, jvp and vjp of an MLP in closed form (dcnn.problems.stacked) instead of vmapped
# autograd: a fifth to a tenth of the fixed costs (measured by dcnn bench costs, 2026-12-08)
CLOSED_FORM = {"c_J": 1.5e-4, "e_J": 1.2e-8, "c_p": 2.0e-4, "e_p": 7.0e-10}

_ORDER = ("cholesky", "woodbury", "cg")   # ties go to the earlier one
DIRECT_MARGIN = 1.1     # a direct solve predicted within 10 % of CG is taken instead


def step_costs(*, A: int, K: int, P: int, O: int, loss: str, smooth: bool = True,
               cg_iters: int | None = None, closed_form: bool = False) -> dict[str, float]:
    """Predicted seconds of one local step on each path (``"cholesky"``, ``"woodbury"``,
    ``"cg"``), by the model of the module docstring (``closed_form``: the model's Jacobians
    and products come in closed form, :data:`CLOSED_FORM`)."""
    c = {**COSTS, **CLOSED_FORM} if closed_form else COSTS
    M = max(K // max(O, 1), 1)
    t_J = c["c_J"] + c["e_J"] * A * K * P
    t_pair = c["c_p"] + c["e_p"] * A * M * P
    t_mv = c["e_mv"] * A * K * P
    chol = A * (2.0 * K * P * P + 2.0 * P ** 3 / 3.0) / c["F"]
    wood = A * (2.0 * K * K * P + 2.0 * K ** 3 / 3.0) / c["F"]
    if not smooth:
        formed = t_J + 2.0 * (15 + c["n_fista"]) * t_mv
        return {"cholesky": formed, "woodbury": formed,
                "cg": (16 + c["n_fista"]) * t_pair}
    if loss == "squared":
        n = c["n_cg"] if cg_iters is None else cg_iters
        return {"cholesky": t_J + chol, "woodbury": t_J + wood, "cg": (n + 1) * t_pair}
    n = c["n_inner"] if cg_iters is None else cg_iters
    newton = c["n_newton"]
    return {"cholesky": t_J + newton * (chol + 4.0 * t_mv),
            "woodbury": t_J + newton * (wood + 4.0 * t_mv),
            "cg": (c["n_newton_cg"] * (n + 2) + 1) * t_pair}


def _fits(*, A: int, K: int, P: int, itemsize: int, budget: int) -> dict[str, bool]:
    J = A * K * P * itemsize <= budget
    return {"cholesky": J and A * P * P * itemsize <= budget,
            "woodbury": J and A * K * K * itemsize <= budget, "cg": True}


def choose_solver(*, A: int, K: int, P: int, O: int, loss: str, smooth: bool = True,
                  itemsize: int = 8, budget: int = JACOBIAN_BUDGET_BYTES,
                  cg_iters: int | None = None, closed_form: bool = False) -> str:
    """The path ``solver = "auto"`` takes for ``A`` agents of ``K = M O`` residuals and ``P``
    parameters (``loss``: ``"squared"`` or ``"cross_entropy"``; ``smooth``: the regulariser
    is l2 or none): the cheapest of :func:`step_costs` that fits ``budget`` bytes, except
    that a direct solve predicted within :data:`DIRECT_MARGIN` of CG is preferred to it (it
    is exact, and the model cannot tell paths that close apart).

    >>> choose_solver(A=2, K=50, P=100, O=1, loss="squared")
    'woodbury'
    >>> choose_solver(A=2, K=1000, P=10_000, O=1, loss="squared")
    'cg'
    """
    costs = step_costs(A=A, K=K, P=P, O=O, loss=loss, smooth=smooth, cg_iters=cg_iters,
                       closed_form=closed_form)
    fits = _fits(A=A, K=K, P=P, itemsize=itemsize, budget=budget)
    if not smooth:
        formed = "woodbury" if K < P else "cholesky"
        return formed if fits[formed] and costs[formed] <= DIRECT_MARGIN * costs["cg"] \
            else "cg"
    best = min((s for s in _ORDER if fits[s]), key=costs.get)
    if best == "cg":     # within DIRECT_MARGIN a direct solve: exact, no inner tolerance
        direct = [s for s in _ORDER[:2] if fits[s] and costs[s] <= DIRECT_MARGIN * costs["cg"]]
        best = min(direct, key=costs.get, default=best)
    return best


def problem_shapes(problem, *, batch_size: int | None = None) -> dict:
    """The keyword shapes of :func:`choose_solver` for a group of local problems (``K`` from
    its longest shard, or from a mini-batch of ``batch_size`` rows)."""
    A, m, O = problem.T.shape
    if batch_size:
        m = min(m, int(batch_size))
    return dict(A=A, K=m * O, P=problem.n_params, O=O, loss=problem.loss,
                smooth=problem.regularizer.smooth, itemsize=problem.T.element_size(),
                closed_form=bool(getattr(problem, "closed_form", False)))


def resolve_solver(solver: str, *, problem, network: Network | None = None,
                   batch_size: int | None = None) -> str:
    """``solver``, or for ``"auto"`` :func:`choose_solver` on the global shapes: all
    ``network.n_agents`` agents and the longest shard of any rank (collective then), i.e. the
    choice one process holding the whole problem would make. Every rank, and every split of
    the agents over ranks, gets the same answer; the memory budget then bounds the whole
    stacked ``J``, so no process exceeds it."""
    if solver != "auto":
        return solver
    shapes = problem_shapes(problem, batch_size=batch_size)
    if network is not None:
        longest = network.allreduce(torch.tensor([float(shapes["K"])], dtype=torch.float64),
                                    op="max")
        shapes["A"], shapes["K"] = network.n_agents, int(longest[0])
    return choose_solver(**shapes)


def warn_if_slow(solver: str, shapes: dict, *, factor: float = 10.0,
                 seconds: float = 1.0) -> str | None:
    """Warn (one line) when a forced ``solver`` is predicted to take over ``seconds`` per
    local step and ``factor`` times what ``"auto"`` would take; returns the message."""
    if solver not in ("cholesky", "woodbury"):
        return None
    costs = step_costs(**{k: v for k, v in shapes.items() if k not in ("itemsize",)})
    best = choose_solver(**shapes)
    if costs[solver] < seconds or costs[solver] < factor * costs[best]:
        return None
    size = f"P = {shapes['P']}" if solver == "cholesky" else f"K = {shapes['K']}"
    msg = (f"solver = {solver!r} is predicted to take ~{costs[solver]:.3g} s per local step "
           f"({size}, {shapes['A']} agent(s)), {costs[solver] / costs[best]:.0f}x the "
           f"{best!r} path; use solver = 'auto' or 'cg'")
    warnings.warn(msg, stacklevel=3)
    return msg
