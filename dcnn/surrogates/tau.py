"""``algorithm.tau = "auto"``: the proximal weight from a curvature estimate at the start,
raised during the run when the curvature outgrows it.

The curvature of the whole smooth cost at the common start ``w[0]``,
``L = |lambda_max(H)|`` with ``H = sum_i hess g_i(w[0])``, is estimated by power iteration on
Hessian-vector products (:meth:`~dcnn.problems.LocalProblems.hvp`: the closed-form MLP
gradient differentiated once more, or forward-over-reverse ``torch.func.jvp`` for other
models; no ``P x P`` matrix): every agent multiplies the same vector by its own ``H_i`` and the products
are summed over the network in agent order (an all-gather of the rows), so every backend and
every rank computes the same ``L`` bit for bit. (``N max_i L_i``, the earlier estimate from
the agents' own curvatures, is an upper bound that overestimated ``L`` by 2-3x with 32 agents
on small shards.)

Why ``tau`` must grow with ``alpha0 N``. NEXT's local step minimises the agent's surrogate
plus ``pi~_i^T (w - w_i)`` with ``grad g_i + pi~_i = N y_i``, the tracked gradient of the
*whole* cost. Near a minimum, along an eigenvector of ``H`` with curvature ``h``, the
surrogate's curvature is ``c_i + tau`` (``c_i = 0`` for FL, the agent's own share
``c_i ~ h / N`` for PL's Gauss-Newton model), so one NEXT step on the network cost
multiplies the error by ``1 - alpha h / (c_i + tau)``. It is a descent step no longer than a
``1/h`` gradient step iff ``alpha h <= c_i + tau``, and it diverges once
``alpha h > 2 (c_i + tau)``:

- FL (``c_i = 0``): ``alpha h <= tau`` for every ``h <= L`` iff ``tau >= alpha0 L``, so
  ``tau = alpha0 L``: the first step is a ``1/L`` gradient step on the network cost.
- PL (``c_i = h / N``): ``alpha h <= h / N + tau`` for every ``h <= L`` iff
  ``tau >= (alpha0 - 1/N) L``, so ``tau = max(alpha0 - 1/N, 1/N) L`` (``alpha0`` the
  largest step of the schedule). Even an agent whose shard sees none of a direction
  (``c_i = 0``, non-iid shards) stays stable (``alpha0 L / tau < 2`` when ``alpha0 >= 2/N``).

The rule before this one, ``tau = max_i L_i ~ L / N`` for PL, is stable only for
``h < 2 L / (alpha0 N - 2)``: at ``alpha0 = 0.5`` on the edge with 8 agents (the deep MLP of
``experiments/parallel.toml`` blew up after 25 rounds on Erdos-Renyi, converged on the
complete graph) and unstable from the first rounds with 32 agents, on any graph, the
complete one included. PL's own curvature is only a ``1/N`` share of the network's while its
linear term carries the network's whole gradient; the proximal term has to make up the
rest, and more so the more agents share the cost.

``PL(tau="auto")`` and ``FL(tau="auto")`` resolve it in ``init_memory`` (NEXT's and SONATA's
``init``, which give their schedule's first step as ``alpha0``), so the number lives in the
algorithm's state (``state.tau``).

Raised during the run. The estimate is taken at ``w[0]``, and a network's curvature can grow
far beyond it: ReLU networks on cross-entropy (the CNN on wine and MNIST-1D, two-layer ReLU
MLPs on digits and MNIST-1D) passed the stability edge above within a few rounds and blew up
(NEXT-PL, the CNN on wine, 8 agents on a ring: the curvature at the network average was 26x
the start estimate at iteration 6, the objective 4e4 at 30, NaN at 35; the iterates grow
superexponentially, since a positively homogeneous network's gradient grows with a power of
the weights). So NEXT and SONATA with ``tau = "auto"`` (``adapt_tau``) watch for it after
every iteration:

- the screen: the agents' summed cost at their own iterates, ``sum_i g_i(w_i)``
  (:func:`local_objective`, one scalar all-reduce; the costs come with the gradients), is
  above its value at the start: the run has lost all its progress, the mark of a blow-up.
  Not any rise: gradient steps on neural networks run at the "edge of stability", where the
  cost rises now and then and the curvature hovers near ``2 / step`` without diverging
  (Cohen et al., ICLR 2021); a screen on any rise raised ``tau`` in 35 of 52 ReLU runs and
  cost NEXT-FL 14 points of MNIST-1D test accuracy (65.8 % with ``tau`` fixed, 51.6 %
  raised 6x);
- the measure, only then: the curvature of the whole cost along the network's mean move
  ``d = (1/N) sum_i (w_i[n+1] - w_i[n])``, ``||sum_i hess g_i(w_i[n+1]) d|| / ||d||``
  (:func:`move_curvature`: one Hessian-vector product per agent, two all-reduces of a
  ``P``-vector), the scale of the start estimate;
- the raise: once the measure exceeds ``RAISE_AT = 2`` times the curvature ``tau`` covers
  (``tau / coefficient``, the stability edge), ``tau = coefficient * measured``
  (:func:`raised_tau`), the start rule on the newer estimate. ``tau`` never decreases and every
  raise at least doubles it.

Two cheaper designs failed. Each agent's own share, ``N ||hess g_i d_i|| / ||d_i||`` along its
own move (or the secant of its gradients), is on the wrong scale: with 32 agents of small
shards, or Dirichlet shards, it was up to 50x the network's curvature along the mean move (which
stayed within 2.3x the start estimate) and raised ``tau`` in runs that converged with it fixed.
And a gradient secant cannot measure ReLU curvature: the gradient jumps where a unit switches,
so on the small moves late in a run the secant grows without bound (it doubled ``tau`` a dozen
times in the last 100 of 300 rounds of converging runs); the Hessian-vector product (the
generalized Hessian) stays bounded. Where the start estimate is enough, nothing is raised and
the run keeps its trajectory bit for bit (tested on the default experiment, iid and
Dirichlet shards).

Theory kept. NEXT converges for any fixed ``tau > 0`` under its diminishing step (the surrogate
uniformly strongly convex with constant ``tau`` and gradient-consistent, each ``grad g_i``
``L_i``-Lipschitz; Di Lorenzo & Scutari 2016). With ``L_i``-Lipschitz gradients the measure
never exceeds ``sum_i L_i``, so ``tau`` is raised at most
``log2(coefficient sum_i L_i / tau[0])`` times; after the last raise the run is NEXT with a
fixed ``tau``, started from the state it reached, which the theorem covers (any starting point
is allowed). Every decision is taken on all-reduced values, so every rank raises at the same
iteration to the same ``tau``; one process and MPI raise at the same iteration to a ``tau``
equal to rounding (sums in a different order) and stay on one trajectory (to 1e-10, tested).
A NaN makes the screen and the measure NaN on every rank, which raises nothing (the
divergence guard reports it). With mini-batches two iterations' costs are two different
batches, so ``tau`` stays fixed there. The cost: a scalar all-reduce per iteration (the costs
come out of the gradient's pass); the measure only on iterations whose summed cost is above
the start.
"""
from __future__ import annotations

import math

import torch

from ..comm import Network
from ..problems import LocalProblems

__all__ = ["local_curvatures", "network_curvature", "tau_coefficient", "auto_tau", "resolve_tau",
           "RAISE_AT", "local_objective", "move_curvature", "outgrown",
           "raised_tau"]

# tau is raised during the run once the measured curvature exceeds RAISE_AT times the one it
# covers: the stability edge of the module docstring (a step diverges past 2x)
RAISE_AT = 2.0


def local_curvatures(problem: LocalProblems, X: torch.Tensor, *, iters: int = 30,
                     seed: int = 0) -> torch.Tensor:
    """``|lambda_max(hess g_i(w_i))|`` for each agent of the group at its row of the stacked
    parameters ``X`` ``(A, P)``; shape ``(A,)``."""
    gen = torch.Generator().manual_seed(seed)
    V = torch.randn(X.shape, generator=gen, dtype=X.dtype)
    V = V / torch.linalg.vector_norm(V, dim=1, keepdim=True)
    lam = torch.zeros(X.shape[0], dtype=X.dtype)
    for _ in range(iters):
        HV = problem.hvp(X, V)
        lam = torch.linalg.vector_norm(HV, dim=1)
        V = HV / lam.clamp_min(torch.finfo(X.dtype).tiny)[:, None]
    return lam


def network_curvature(problem: LocalProblems, network: Network, X0: torch.Tensor, *,
                      iters: int = 30, seed: int = 0) -> float:
    """``|lambda_max(sum_i hess g_i(w_i))|`` over the whole network at the stacked ``X0``
    ``(A, P)`` (collective; the same value on every rank and backend)."""
    gen = torch.Generator().manual_seed(seed)
    v = torch.randn(X0.shape[1], generator=gen, dtype=X0.dtype)
    v = v / torch.linalg.vector_norm(v)
    lam = torch.zeros((), dtype=X0.dtype)
    for _ in range(iters):
        rows = problem.hvp(X0, v.expand_as(X0))
        hv = network.allgather_rows(rows).sum(0)    # agent order: equal on every backend
        lam = torch.linalg.vector_norm(hv)
        v = hv / lam.clamp_min(torch.finfo(X0.dtype).tiny)
    return float(lam)


def tau_coefficient(surrogate: str, *, alpha0: float, n_agents: int) -> float:
    """``tau / L`` of the module docstring: ``alpha0`` for FL, ``max(alpha0 - 1/N, 1/N)``
    for PL."""
    if surrogate == "fl":
        return alpha0
    return max(alpha0 - 1.0 / n_agents, 1.0 / n_agents)


def auto_tau(surrogate: str, *, problem: LocalProblems, network: Network,
             X0: torch.Tensor, alpha0: float = 1.0) -> float:
    """The ``tau`` of the module docstring for ``surrogate`` (``"fl"`` or ``"pl"``) at the
    group's stacked parameters ``X0`` ``(A, P)``, for steps ``alpha <= alpha0``."""
    L = max(network_curvature(problem, network, X0), 1e-8)
    return tau_coefficient(surrogate, alpha0=alpha0, n_agents=network.n_agents) * L


def local_objective(losses: torch.Tensor, *, network: Network) -> float:
    """``sum_i g_i(w_i)`` from the group's costs ``losses`` ``(A,)`` (each agent's at its own
    iterate), summed over the network (collective: one scalar all-reduce; NaN on every rank if
    any is NaN)."""
    return float(network.allreduce(losses.sum().reshape(1))[0])


def move_curvature(problem: LocalProblems, X: torch.Tensor, X_new: torch.Tensor, *,
                   network: Network) -> float:
    """``||sum_j hess g_j(w_j new) d|| / ||d||`` along the network's mean move
    ``d = (1/N) sum_j (w_j new - w_j)``: the curvature of the whole cost along the step the
    network took, on the scale of the start estimate (:func:`network_curvature`); one
    Hessian-vector product per agent and two all-reduces of a ``P``-vector (collective, the
    same on every rank; 0 if the mean did not move)."""
    d = network.agent_sum(X_new - X) / network.n_agents
    size = torch.linalg.vector_norm(d)
    if not float(size) > 0:
        return 0.0 if float(size) == 0 else math.nan
    V = (d / size).expand_as(X).contiguous()
    HV = problem.hvp(X_new, V)
    return float(torch.linalg.vector_norm(network.agent_sum(HV)))


def outgrown(tau: float, curvature: float, *, coefficient: float) -> bool:
    """Whether ``curvature`` exceeds ``RAISE_AT`` times the curvature ``tau`` covers
    (``tau / coefficient``)."""
    return math.isfinite(curvature) and curvature > RAISE_AT * tau / coefficient


def raised_tau(tau: float, curvature: float, *, coefficient: float) -> float:
    """``coefficient * curvature`` once :func:`outgrown`, else ``tau``: a raise at least
    doubles ``tau``, so under bounded curvature it happens finitely often (module
    docstring)."""
    return coefficient * curvature if outgrown(tau, curvature, coefficient=coefficient) else tau


def resolve_tau(tau, surrogate: str, *, problem: LocalProblems, network: Network | None,
                X0: torch.Tensor, alpha0: float = 1.0) -> float:
    """``tau`` as a number: itself, or :func:`auto_tau` at ``X0`` for ``"auto"`` (collective
    then: every rank of ``network`` must call it); ``alpha0`` is the largest step
    ``alpha[n]`` the algorithm will take (1, the largest allowed, when unknown)."""
    if tau != "auto":
        return float(tau)
    if network is None:
        from ..errors import ConfigError
        raise ConfigError(f"tau = \"auto\" needs the network to agree on one value; call "
                          f"{surrogate.upper()}.init_memory(problem, X0, network=network) "
                          "(NEXT and SONATA do), or give tau as a number")
    with torch.no_grad():
        return auto_tau(surrogate, problem=problem, network=network, X0=X0, alpha0=alpha0)
