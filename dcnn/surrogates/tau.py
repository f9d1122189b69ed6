"""``algorithm.tau = "auto"``: the proximal weight from a curvature estimate at the start.

The curvature of the whole smooth cost at the common start ``w[0]``,
``L = |lambda_max(H)|`` with ``H = sum_i hess g_i(w[0])``, is estimated by power iteration on
Hessian-vector products (forward-over-reverse ``torch.func.jvp`` of the gradient; no
``P x P`` matrix): every agent multiplies the same vector by its own ``H_i`` and the products
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

This is a heuristic for the scale, not a bound: the curvature of a neural network changes
along the run and the estimate is taken once, at ``w[0]``; NEXT itself converges for any
``tau > 0`` under its diminishing step (Di Lorenzo & Scutari 2016), which eventually makes any
step short enough.
"""
from __future__ import annotations

import torch
from torch.func import grad, jvp, vmap

from ..comm import Network
from ..problems import LocalProblems

__all__ = ["local_curvatures", "network_curvature", "auto_tau", "resolve_tau"]


def _hvp(problem: LocalProblems):
    """``(w, v, x, t, m) -> hess g_i(w) v`` for one agent, batched over agents by ``vmap``."""
    def hvp(w, v, x, t, m):
        g = lambda u: grad(problem._agent_loss)(u, x, t, m)  # noqa: E731
        return jvp(g, (w,), (v,))[1]
    return vmap(hvp)


def local_curvatures(problem: LocalProblems, X: torch.Tensor, *, iters: int = 30,
                     seed: int = 0) -> torch.Tensor:
    """``|lambda_max(hess g_i(w_i))|`` for each agent of the group at its row of the stacked
    parameters ``X`` ``(A, P)``; shape ``(A,)``."""
    batched = _hvp(problem)
    gen = torch.Generator().manual_seed(seed)
    V = torch.randn(X.shape, generator=gen, dtype=X.dtype)
    V = V / torch.linalg.vector_norm(V, dim=1, keepdim=True)
    lam = torch.zeros(X.shape[0], dtype=X.dtype)
    for _ in range(iters):
        HV = batched(X, V, problem.X, problem.T, problem.mask)
        lam = torch.linalg.vector_norm(HV, dim=1)
        V = HV / lam.clamp_min(torch.finfo(X.dtype).tiny)[:, None]
    return lam


def network_curvature(problem: LocalProblems, network: Network, X0: torch.Tensor, *,
                      iters: int = 30, seed: int = 0) -> float:
    """``|lambda_max(sum_i hess g_i(w_i))|`` over the whole network at the stacked ``X0``
    ``(A, P)`` (collective; the same value on every rank and backend)."""
    batched = _hvp(problem)
    gen = torch.Generator().manual_seed(seed)
    v = torch.randn(X0.shape[1], generator=gen, dtype=X0.dtype)
    v = v / torch.linalg.vector_norm(v)
    lam = torch.zeros((), dtype=X0.dtype)
    for _ in range(iters):
        rows = batched(X0, v.expand_as(X0), problem.X, problem.T, problem.mask)
        hv = network.allgather_rows(rows).sum(0)    # agent order: equal on every backend
        lam = torch.linalg.vector_norm(hv)
        v = hv / lam.clamp_min(torch.finfo(X0.dtype).tiny)
    return float(lam)


def auto_tau(surrogate: str, *, problem: LocalProblems, network: Network,
             X0: torch.Tensor, alpha0: float = 1.0) -> float:
    """The ``tau`` of the module docstring for ``surrogate`` (``"fl"`` or ``"pl"``) at the
    group's stacked parameters ``X0`` ``(A, P)``, for steps ``alpha <= alpha0``."""
    L = max(network_curvature(problem, network, X0), 1e-8)
    n = network.n_agents
    # FL: tau = alpha0 L;  PL: tau = max(alpha0 - 1/N, 1/N) L
    return alpha0 * L if surrogate == "fl" else max(alpha0 - 1.0 / n, 1.0 / n) * L


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
