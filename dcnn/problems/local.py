"""The local costs of a group of agents, evaluated for all of them at once.

Agent ``i`` holds a shard ``(X_i, T_i)`` and the cost ``g_i(w) = (1/M) sum_k loss(T_ik, f(w; X_ik))``
where ``M`` is the pooled training-set size (see :mod:`dcnn.problems.losses`). Shards of a
group are stacked into ``(A, M_max, d)`` arrays padded with zero-weight rows, so uneven shard
sizes are exact: a padded row adds nothing to a loss, a gradient, a residual or a Jacobian.
Every method takes stacked parameters ``W`` of shape ``(A, P)`` (row ``a`` = agent
``agent_ids[a]``) and maps over agents with ``torch.func.vmap``.

``jacobians`` forms ``J_i = d f(w_i; X_i) / d w`` (``(A, M_max O, P)``); for models too big for
that, ``jvp(W, D) = J_i d_i`` (forward mode) and ``vjp(W, E) = J_i^T e_i`` (reverse mode) give
the same products at the cost of a few forward passes, without building ``J_i``.

``batch(rows, sizes)`` is a view on mini-batches of the shards whose costs are unbiased
estimates of the ``g_i`` (stochastic NEXT / SONATA; see :mod:`dcnn.problems.batches`).
"""
from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np
import torch
from torch.func import grad_and_value, jacrev, jvp, vjp, vmap

from ..errors import DataError
from .losses import check_loss, per_sample_loss, per_sample_score
from .models import FlatModel
from .regularizers import Regularizer

__all__ = ["LocalProblems"]


def _as_tensor(a, dtype: torch.dtype) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a), dtype=dtype)


class LocalProblems:
    """The stacked local problems ``g_i`` of agents ``agent_ids`` plus the shared ``r``.

    Args (keyword-only):
        model: the common model.
        shards: one ``(X_i, T_i)`` pair per agent of the group; ``T_i`` is ``(M_i, O)``.
        loss: ``"squared"`` or ``"cross_entropy"``.
        task: ``"regression"``, ``"binary"`` or ``"multiclass"`` (for metrics).
        n_total: ``M``, the number of training samples over *all* agents.
        regularizer: ``r``.
        agent_ids: global ids of the group's agents (default ``0..A-1``).
    """

    def __init__(self, *, model: FlatModel, shards: Sequence[tuple], loss: str, task: str,
                 n_total: int, regularizer: Regularizer, agent_ids: Sequence[int] | None = None):
        check_loss(loss, task)
        if len(shards) == 0:
            raise DataError("a group needs at least one agent's shard")
        dtype = model.dtype
        for i, (x, _) in enumerate(shards):
            if len(x) == 0:
                raise DataError(f"shard {i} is empty; use fewer agents or another partition")
        xs = [_as_tensor(x, dtype) for x, _ in shards]
        ts = [_as_tensor(t, dtype).reshape(len(t), -1) for _, t in shards]
        d, o = xs[0].shape[1], ts[0].shape[1]
        for i, (x, t) in enumerate(zip(xs, ts)):
            if x.ndim != 2 or x.shape[1] != d or t.shape[1] != o or len(x) != len(t):
                raise DataError(f"shard {i} has inputs {tuple(x.shape)} and targets "
                                f"{tuple(t.shape)}; every shard needs (M_i, {d}) and (M_i, {o})")
            if not (torch.isfinite(x).all() and torch.isfinite(t).all()):
                raise DataError(f"shard {i} contains NaN or inf; clean the data")
        self.model, self.loss, self.task, self.regularizer = model, loss, task, regularizer
        self.n_total = int(n_total)
        self.scale = 1.0 / self.n_total
        self.agent_ids = tuple(range(len(shards))) if agent_ids is None else tuple(agent_ids)
        self.counts = torch.tensor([len(x) for x in xs])
        m_max = int(self.counts.max())
        a = len(xs)
        self.X = torch.zeros(a, m_max, d, dtype=dtype)
        self.T = torch.zeros(a, m_max, o, dtype=dtype)
        self.mask = torch.zeros(a, m_max, dtype=dtype)
        for i, (x, t) in enumerate(zip(xs, ts)):
            self.X[i, : len(x)], self.T[i, : len(t)], self.mask[i, : len(x)] = x, t, 1.0
        self.n_outputs = o
        out = model.apply(model.w0, self.X[0, :1])
        if out.shape[-1] != o:
            raise DataError(f"the model gives {out.shape[-1]} outputs but the targets have {o}; "
                            f"set the model's output size to {o}")
        self._bind()

    def _bind(self) -> None:
        """The vmapped kernels, bound to this object (a view re-binds its own)."""
        self._grad = vmap(grad_and_value(self._agent_loss))
        # per-sample Jacobians (M O backward passes of one sample each): jacrev of the
        # whole batch would run M O backward passes over all M samples, M times the work
        single = lambda w, x: self.model.apply(w, x[None])[0]  # noqa: E731
        self._jac = vmap(vmap(jacrev(single), in_dims=(None, 0)))
        self._jvp = vmap(self._agent_jvp)
        self._vjp = vmap(self._agent_vjp)

    # ---- sizes -------------------------------------------------------------------------
    @property
    def n_agents(self) -> int:
        return len(self.agent_ids)

    @property
    def n_params(self) -> int:
        return self.model.n_params

    # ---- the local costs ---------------------------------------------------------------
    def _agent_loss(self, w, x, t, m):
        return self.scale * (m * per_sample_loss(self.loss, self.model.apply(w, x), t)).sum()

    def outputs(self, W: torch.Tensor) -> torch.Tensor:
        """``f(w_i; X_i)`` for every agent, ``(A, M_max, O)`` (padded rows are garbage)."""
        return vmap(self.model.apply)(W, self.X)

    def loss_values(self, W: torch.Tensor) -> torch.Tensor:
        """``g_i(w_i)``, shape ``(A,)``."""
        out = self.outputs(W)
        return self.scale * (self.mask * per_sample_loss(self.loss, out, self.T)).sum(-1)

    def gradients(self, W: torch.Tensor) -> torch.Tensor:
        """``grad g_i(w_i)``, shape ``(A, P)``."""
        return self._grad(W, self.X, self.T, self.mask)[0]

    def value_and_grad(self, W: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        g, v = self._grad(W, self.X, self.T, self.mask)
        return v, g

    def residuals(self, W: torch.Tensor) -> torch.Tensor:
        """``e_i = T_i - f(w_i; X_i)`` (zero on padded rows), shape ``(A, M_max * O)``."""
        e = (self.T - self.outputs(W)) * self.mask[..., None]
        return e.reshape(e.shape[0], -1)

    def jacobians(self, W: torch.Tensor) -> torch.Tensor:
        """``J_i = d f(w_i; X_i) / d w`` (zero on padded rows), shape ``(A, M_max * O, P)``."""
        J = self._jac(W, self.X) * self.mask[..., None, None]
        return J.reshape(J.shape[0], -1, J.shape[-1])

    def _agent_jvp(self, w, d, x):
        return jvp(lambda u: self.model.apply(u, x), (w,), (d,))[1]

    def _agent_vjp(self, w, e, x):
        return vjp(lambda u: self.model.apply(u, x), w)[1](e)[0]

    def jvp(self, W: torch.Tensor, D: torch.Tensor) -> torch.Tensor:
        """``J_i d_i`` without forming ``J_i`` (zero on padded rows), shape ``(A, M_max * O)``."""
        out = self._jvp(W, D, self.X) * self.mask[..., None]
        return out.reshape(out.shape[0], -1)

    def vjp(self, W: torch.Tensor, E: torch.Tensor) -> torch.Tensor:
        """``J_i^T e_i`` without forming ``J_i`` for ``E (A, M_max * O)`` (padded rows of
        ``E`` are ignored), shape ``(A, P)``."""
        E = E.reshape(self.T.shape) * self.mask[..., None]
        return self._vjp(W, E, self.X)

    # ---- mini-batch views ----------------------------------------------------------------
    def batch(self, rows: torch.Tensor, sizes: torch.Tensor, *,
              agents: Sequence[int] | torch.Tensor | None = None) -> LocalProblems:
        """The costs of agents ``agents`` (group positions, default all) on rows of their
        shards: a view whose ``g_i`` is the unbiased estimate

            g_i^B(w) = (M_i / |B_i|) (1/M) sum_{k in B_i} loss(t_k, f(w; x_k))

        of the full-shard ``g_i``, with ``B_i`` = ``rows[a, :sizes[a]]`` (local row indices,
        distinct; entries past ``sizes[a]`` are padding and ignored). The view is an ordinary
        :class:`LocalProblems` (binary mask, zero padded rows, scalar ``scale``), so every
        method and every surrogate use it unchanged; its ``scale`` is
        ``(M_i / |B_i|) / M``, which must therefore be the same for all its agents (group
        agents by that ratio, as :class:`dcnn.problems.batches.BatchProblems` does). On all
        rows of the shards in order it equals ``self`` exactly.
        """
        pos = (torch.arange(self.n_agents) if agents is None
               else torch.as_tensor(agents, dtype=torch.long).reshape(-1))
        rows = torch.as_tensor(rows, dtype=torch.long)
        sizes = torch.as_tensor(sizes, dtype=torch.long).reshape(-1)
        counts = self.counts[pos]
        if rows.ndim != 2 or rows.shape[0] != len(pos) or sizes.shape != (len(pos),):
            raise DataError(f"rows {tuple(rows.shape)} and sizes {tuple(sizes.shape)} do not "
                            f"fit {len(pos)} agents; pass rows (A, b) and sizes (A,)")
        if not bool(((sizes >= 1) & (sizes <= counts) & (sizes <= rows.shape[1])).all()):
            raise DataError(f"batch sizes {sizes.tolist()} must lie in [1, M_i] with M_i = "
                            f"{counts.tolist()} and at most rows.shape[1] = {rows.shape[1]}")
        valid = torch.arange(rows.shape[1]) < sizes[:, None]
        if not bool((((rows >= 0) & (rows < counts[:, None])) | ~valid).all()):
            raise DataError(f"batch rows must index the agents' own rows 0..M_i-1, "
                            f"M_i = {counts.tolist()}")
        # M_i / |B_i| equal for all agents of the view (exact integer comparison)
        if not bool((counts * sizes[0] == counts[0] * sizes).all()):
            raise DataError(f"one batch view needs equal M_i / |B_i| for all its agents, got "
                            f"M_i = {counts.tolist()}, |B_i| = {sizes.tolist()}; split the "
                            f"agents by that ratio")
        safe = torch.where(valid, rows, 0)
        take = pos[:, None]
        view = copy.copy(self)
        view.X = torch.where(valid[..., None], self.X[take, safe], 0.0)
        view.T = torch.where(valid[..., None], self.T[take, safe], 0.0)
        view.mask = torch.where(valid, self.mask[take, safe], 0.0)
        view.counts = sizes.clone()
        view.agent_ids = tuple(self.agent_ids[int(a)] for a in pos)
        view.scale = self.scale * (int(counts[0]) / int(sizes[0]))
        view._bind()
        return view

    # ---- metrics -----------------------------------------------------------------------
    def score_sums(self, W: torch.Tensor) -> torch.Tensor:
        """Per agent, the sum of per-sample scores of ``w_i`` on its own shard, ``(A,)``."""
        s = per_sample_score(self.loss, self.task, self.outputs(W), self.T)
        return (s * self.mask).sum(-1)

    def scores_on(self, W: torch.Tensor, X: torch.Tensor, T: torch.Tensor) -> torch.Tensor:
        """Mean score of each row of ``W`` on a common set ``(X, T)``, shape ``(A,)``."""
        out = vmap(self.model.apply, in_dims=(0, None))(W, X)
        return per_sample_score(self.loss, self.task, out, T).mean(-1)
