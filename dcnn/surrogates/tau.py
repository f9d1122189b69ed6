"""``algorithm.tau = "auto"``: the proximal weight from a curvature estimate at the start.

The curvature of agent ``i``'s cost at its initial point, ``L_i = |lambda_max(H_i)|`` with
``H_i = hess g_i(w_i[0])``, is estimated by power iteration on Hessian-vector products
(forward-over-reverse ``torch.func.jvp`` of the gradient; no ``P x P`` matrix), all agents at
once. With iid shards ``H_i ~ H / N`` where ``H`` is the Hessian of ``sum_i g_i``, so
``L = N max_i L_i`` estimates the curvature of the whole smooth cost, shared by every agent
(one ``max`` reduction over processes, so every backend picks the same value).

- FL replaces the whole cost by a linear model, so ``tau`` plays the inverse step size of
  gradient tracking: ``tau = L`` makes the local step a ``1/L`` gradient step.
- PL keeps the agent's own Gauss-Newton curvature (a ``1/N`` share of ``L``) and linearises
  only the network output, so the proximal term only has to keep the step where that
  linearisation is trusted: ``tau = L / N = max_i L_i``, the local curvature scale. The
  diminishing step ``alpha[n]`` takes care of the rest (NEXT converges for any ``tau > 0``).

``PL(tau="auto")`` and ``FL(tau="auto")`` resolve it in ``init_memory`` (NEXT's and SONATA's
``init``), so the number lives in the algorithm's state (``state.tau``).

This is a heuristic (documented as such): the curvature of a neural network changes along
the run, and the estimate is taken once at ``w[0]``.
"""
from __future__ import annotations

import torch
from torch.func import grad, jvp, vmap

from ..comm import Network
from ..problems import LocalProblems

__all__ = ["local_curvatures", "auto_tau", "resolve_tau"]


def local_curvatures(problem: LocalProblems, X: torch.Tensor, *, iters: int = 30,
                     seed: int = 0) -> torch.Tensor:
    """``|lambda_max(hess g_i(w_i))|`` for each agent of the group at its row of the stacked
    parameters ``X`` ``(A, P)``; shape ``(A,)``."""
    def hvp(w, v, x, t, m):
        g = lambda u: grad(problem._agent_loss)(u, x, t, m)  # noqa: E731
        return jvp(g, (w,), (v,))[1]

    batched = vmap(hvp)
    gen = torch.Generator().manual_seed(seed)
    V = torch.randn(X.shape, generator=gen, dtype=X.dtype)
    V = V / torch.linalg.vector_norm(V, dim=1, keepdim=True)
    lam = torch.zeros(X.shape[0], dtype=X.dtype)
    for _ in range(iters):
        HV = batched(X, V, problem.X, problem.T, problem.mask)
        lam = torch.linalg.vector_norm(HV, dim=1)
        V = HV / lam.clamp_min(torch.finfo(X.dtype).tiny)[:, None]
    return lam


def auto_tau(surrogate: str, *, problem: LocalProblems, network: Network,
             X0: torch.Tensor) -> float:
    """The ``tau`` of the module docstring for ``surrogate`` (``"fl"`` or ``"pl"``) at the
    group's stacked parameters ``X0`` ``(A, P)``."""
    local = local_curvatures(problem, X0).max()
    L = network.n_agents * float(network.allreduce(local.reshape(1), op="max")[0])
    L = max(L, 1e-8)
    return L if surrogate == "fl" else L / network.n_agents


def resolve_tau(tau, surrogate: str, *, problem: LocalProblems, network: Network | None,
                X0: torch.Tensor) -> float:
    """``tau`` as a number: itself, or :func:`auto_tau` at ``X0`` for ``"auto"`` (collective
    then: every rank of ``network`` must call it)."""
    if tau != "auto":
        return float(tau)
    if network is None:
        from ..errors import ConfigError
        raise ConfigError(f"tau = \"auto\" needs the network to agree on one value; call "
                          f"{surrogate.upper()}.init_memory(problem, X0, network=network) "
                          "(NEXT and SONATA do), or give tau as a number")
    with torch.no_grad():
        return auto_tau(surrogate, problem=problem, network=network, X0=X0)
