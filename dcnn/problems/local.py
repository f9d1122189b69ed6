"""The local costs of a group of agents, evaluated for all of them at once.

Agent ``i`` holds a shard ``(X_i, T_i)`` and the cost ``g_i(w) = (1/M) sum_k loss(T_ik, f(w; X_ik))``
where ``M`` is the pooled training-set size (see :mod:`dcnn.problems.losses`). Shards of a
group are stacked into ``(A, M_max, d)`` arrays padded with zero-weight rows, so uneven shard
sizes are exact: a padded row adds nothing to a loss, a gradient, a residual or a Jacobian.
Every method takes stacked parameters ``W`` of shape ``(A, P)`` (row ``a`` = agent
``agent_ids[a]``) and maps over agents with ``torch.func.vmap``, or, for an MLP
(``nn.Sequential`` of ``Linear`` and Tanh / Sigmoid / ReLU layers), computes every agent at
once in closed form (:mod:`dcnn.problems.stacked`: the same numbers without vmap's fixed
cost).

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
from torch.func import grad, grad_and_value, jacrev, jvp, vjp, vmap

from ..errors import ConfigError, DataError
from .losses import TASKS, check_loss, per_sample_loss, per_sample_score
from .models import FlatModel
from .stacked import (mlp_layout, stacked_hvp, stacked_jacobians, stacked_jvp,
                      stacked_outputs, stacked_value_and_grad, stacked_vjp)
from .regularizers import Regularizer

__all__ = ["LocalProblems"]


def _as_tensor(a, dtype: torch.dtype) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a), dtype=dtype)


def _check_arguments(model, loss: str, task: str, regularizer) -> None:
    if not isinstance(model, FlatModel):
        hint = "FlatModel(module)" if isinstance(model, torch.nn.Module) else \
            "FlatModel(module) of a torch.nn.Module"
        raise ConfigError(f"model must be a dcnn.FlatModel, got {type(model).__name__}; "
                          f"pass {hint}")
    if task not in TASKS:
        raise ConfigError(f"task {task!r} is unknown; choose one of: {', '.join(TASKS)}")
    check_loss(loss, task)
    if not isinstance(regularizer, Regularizer):
        raise ConfigError(f"regularizer must be a dcnn Regularizer, got "
                          f"{type(regularizer).__name__}; build one with "
                          "make_regularizer('l2', lam=1e-3) (or 'none')")


def _shard_tensors(shards, dtype: torch.dtype, ids=None) -> tuple[list, list]:
    """Inputs ``(M_i, d)`` and targets ``(M_i, O)`` of every shard, checked alike; messages
    name the global agent id when it differs from the position (a rank's group)."""
    if isinstance(shards, (str, bytes)) or not isinstance(shards, Sequence) or len(shards) == 0:
        raise DataError(f"shards must be a non-empty list of (X_i, T_i) pairs, one per agent "
                        f"of the group, got {type(shards).__name__}")
    xs, ts = [], []
    for i, shard in enumerate(shards):
        name = f"shard {i}" if ids is None or len(ids) != len(shards) or ids[i] == i \
            else f"shard {i} (agent {ids[i]})"
        if not isinstance(shard, (tuple, list)) or len(shard) != 2:
            raise DataError(f"{name} is a {type(shard).__name__}, not an (X_i, T_i) pair; "
                            "give one (inputs, targets) pair per agent")
        try:
            x, t = _as_tensor(shard[0], dtype), _as_tensor(shard[1], dtype)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise DataError(f"{name} is not numeric ({' '.join(str(exc).split())}); give "
                            "float arrays") from None
        if x.ndim != 2:
            raise DataError(f"{name} has inputs of shape {tuple(x.shape)}; reshape them "
                            "to (samples, features)")
        if len(x) == 0:
            raise DataError(f"{name} is empty; use fewer agents or another partition")
        if t.ndim == 0 or len(t) != len(x):
            raise DataError(f"{name} has {len(x)} inputs but targets of shape "
                            f"{tuple(t.shape)}; give one target row per input row")
        xs.append(x)
        ts.append(t.reshape(len(t), -1))
    d, o = xs[0].shape[1], ts[0].shape[1]
    for i, (x, t) in enumerate(zip(xs, ts)):
        if x.shape[1] != d or t.shape[1] != o:
            raise DataError(f"{name} has inputs {tuple(x.shape)} and targets "
                            f"{tuple(t.shape)}; every shard needs (M_i, {d}) and (M_i, {o})")
        if not (torch.isfinite(x).all() and torch.isfinite(t).all()):
            raise DataError(f"{name} contains NaN or inf; clean the data")
    return xs, ts


_ENCODE = {"binary": "dcnn.data.encode_targets(y, task='binary', n_classes=2)",
           "multiclass": "dcnn.data.encode_targets(y, task='multiclass', n_classes=C)"}


def _check_targets(ts: list, task: str, o: int) -> None:
    """Classification targets as :func:`dcnn.data.encode_targets` gives them: 0/1 in one
    column (binary), rows of C >= 2 probabilities (multiclass; one-hot for hard labels)."""
    if task == "regression":
        return
    if task == "binary" and o != 1 or task == "multiclass" and o < 2:
        want = "one column of 0/1 labels" if task == "binary" else \
            "one-hot rows (M, C) with C >= 2 columns"
        raise DataError(f"task {task!r} needs targets as {want}, got {o} column(s); encode "
                        f"labels with {_ENCODE[task]}")
    for i, t in enumerate(ts):
        lo, hi = float(t.min()), float(t.max())
        sums = t.sum(1)
        if lo < 0 or hi > 1 or task == "multiclass" and not torch.allclose(
                sums, torch.ones_like(sums), atol=1e-6):
            raise DataError(f"shard {i} has {task} targets outside what the loss expects "
                            f"(values in [{lo:g}, {hi:g}]; want 0/1 labels"
                            f"{' or one-hot rows' if task == 'multiclass' else ''}); encode "
                            f"labels with {_ENCODE[task]}")


def _check_model_fits(model: FlatModel, x: torch.Tensor, task: str, o: int) -> None:
    """One forward pass on a couple of samples: the model must take the data's inputs and
    give, per sample, the ``o`` finite outputs the targets (and the task) call for."""
    try:
        with torch.no_grad():
            out = torch.func.functional_call(
                model.module, {**model.unflatten(model.w0), **model.buffers}, (x,))
    except Exception as exc:  # noqa: BLE001 - any failure of the user's forward is reported
        raise DataError(f"the model fails on inputs of shape {tuple(x.shape)} "
                        f"({type(exc).__name__}: {' '.join(str(exc).split())}); give a module "
                        f"that takes (samples, {x.shape[1]}) inputs") from None
    if not isinstance(out, torch.Tensor):
        raise DataError(f"the model returns a {type(out).__name__}, not a tensor; return the "
                        "(samples, outputs) tensor from forward()")
    if out.ndim == 0 or out.shape[0] != len(x):
        raise DataError(f"the model maps {len(x)} samples to outputs of shape "
                        f"{tuple(out.shape)}; return one row of outputs per sample")
    width = out.reshape(len(x), -1).shape[1]
    if width != o:
        need = {"binary": "1 output (one logit or score)",
                "multiclass": f"{o} outputs (one per class)"}.get(
            task, f"{o} outputs (one per target column)")
        raise DataError(f"task {task!r} needs {need} but the model gives {width}; set the "
                        f"model's output size to {o}")
    if not bool(torch.isfinite(out).all()):
        raise DataError("the model gives NaN or inf outputs at its initial parameters; check "
                        "its initialisation and forward()")


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

    Bad input is refused up front with one line naming it and the fix: a ``model`` that is
    not a :class:`FlatModel`, an unknown task or a loss that does not fit it, an empty or
    ragged shard, NaN/inf, classification targets not encoded as
    :func:`dcnn.data.encode_targets` gives them, and a model that fails on the inputs or
    whose output width does not fit the targets (one forward pass on two samples).
    """

    def __init__(self, *, model: FlatModel, shards: Sequence[tuple], loss: str, task: str,
                 n_total: int, regularizer: Regularizer, agent_ids: Sequence[int] | None = None):
        _check_arguments(model, loss, task, regularizer)
        xs, ts = _shard_tensors(shards, model.dtype,
                                None if agent_ids is None else list(agent_ids))
        d, o = xs[0].shape[1], ts[0].shape[1]
        _check_targets(ts, task, o)
        counts = [len(x) for x in xs]
        if isinstance(n_total, bool) or not isinstance(n_total, (int, np.integer)) \
                or n_total < sum(counts):
            raise DataError(f"n_total must be the number of training samples over all agents "
                            f"(an integer >= {sum(counts)}, the samples of this group), got "
                            f"{n_total!r}")
        dtype = model.dtype
        self.model, self.loss, self.task, self.regularizer = model, loss, task, regularizer
        self.n_total = int(n_total)
        self.scale = 1.0 / self.n_total
        self.agent_ids = tuple(range(len(shards))) if agent_ids is None else tuple(agent_ids)
        if len(self.agent_ids) != len(xs):
            raise DataError(f"{len(self.agent_ids)} agent_ids for {len(xs)} shards; give one "
                            "global agent id per shard")
        self.counts = torch.tensor(counts)
        m_max = int(self.counts.max())
        a = len(xs)
        self.X = torch.zeros(a, m_max, d, dtype=dtype)
        self.T = torch.zeros(a, m_max, o, dtype=dtype)
        self.mask = torch.zeros(a, m_max, dtype=dtype)
        for i, (x, t) in enumerate(zip(xs, ts)):
            self.X[i, : len(x)], self.T[i, : len(t)], self.mask[i, : len(x)] = x, t, 1.0
        self.n_outputs = o
        _check_model_fits(model, torch.cat([x[:2] for x in xs[:2]])[:2], task, o)
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
        self._hvp = vmap(self._agent_hvp)
        # an MLP (Linear + Tanh/Sigmoid/ReLU): every agent at once in closed form
        # (dcnn.problems.stacked), without vmap's fixed cost; None: the general path
        self._mlp = mlp_layout(self.model.module, self.model.names, self.model.sizes)

    # ---- sizes -------------------------------------------------------------------------
    @property
    def n_agents(self) -> int:
        return len(self.agent_ids)

    @property
    def n_params(self) -> int:
        return self.model.n_params

    @property
    def closed_form(self) -> bool:
        """Whether values, gradients and Jacobians come in closed form (an MLP) rather than
        through vmapped autograd (the solver's cost model takes it into account)."""
        return self._mlp is not None

    # ---- the local costs ---------------------------------------------------------------
    def _agent_loss(self, w, x, t, m):
        return self.scale * (m * per_sample_loss(self.loss, self.model.apply(w, x), t)).sum()

    def outputs(self, W: torch.Tensor) -> torch.Tensor:
        """``f(w_i; X_i)`` for every agent, ``(A, M_max, O)`` (padded rows are garbage)."""
        if self._mlp is not None:
            return stacked_outputs(self._mlp, W, self.X)
        return vmap(self.model.apply)(W, self.X)

    def loss_values(self, W: torch.Tensor) -> torch.Tensor:
        """``g_i(w_i)``, shape ``(A,)``."""
        out = self.outputs(W)
        return self.scale * (self.mask * per_sample_loss(self.loss, out, self.T)).sum(-1)

    def gradients(self, W: torch.Tensor) -> torch.Tensor:
        """``grad g_i(w_i)``, shape ``(A, P)``."""
        if self._mlp is not None:
            return stacked_value_and_grad(self._mlp, loss=self.loss, W=W, X=self.X, T=self.T,
                                          weight=self.scale * self.mask, value=False)[1]
        return self.value_and_grad(W)[1]

    def value_and_grad(self, W: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(g_i(w_i), grad g_i(w_i))``: shapes ``(A,)`` and ``(A, P)``."""
        if self._mlp is not None:
            return stacked_value_and_grad(self._mlp, loss=self.loss, W=W, X=self.X, T=self.T,
                                          weight=self.scale * self.mask)
        g, v = self._grad(W, self.X, self.T, self.mask)
        return v, g

    def _agent_hvp(self, w, v, x, t, m):
        return jvp(lambda u: grad(self._agent_loss)(u, x, t, m), (w,), (v,))[1]

    def hvp(self, W: torch.Tensor, V: torch.Tensor) -> torch.Tensor:
        """``hess g_i(w_i) v_i`` for every agent, shape ``(A, P)``."""
        if self._mlp is not None:
            return stacked_hvp(self._mlp, loss=self.loss, W=W, V=V, X=self.X, T=self.T,
                               weight=self.scale * self.mask)
        return self._hvp(W, V, self.X, self.T, self.mask)

    def residuals(self, W: torch.Tensor) -> torch.Tensor:
        """``e_i = T_i - f(w_i; X_i)`` (zero on padded rows), shape ``(A, M_max * O)``."""
        e = (self.T - self.outputs(W)) * self.mask[..., None]
        return e.reshape(e.shape[0], -1)

    def jacobians(self, W: torch.Tensor) -> torch.Tensor:
        """``J_i = d f(w_i; X_i) / d w`` (zero on padded rows), shape ``(A, M_max * O, P)``."""
        J = (stacked_jacobians(self._mlp, W, self.X) if self._mlp is not None
             else self._jac(W, self.X)) * self.mask[..., None, None]
        return J.reshape(J.shape[0], -1, J.shape[-1])

    def _agent_jvp(self, w, d, x):
        return jvp(lambda u: self.model.apply(u, x), (w,), (d,))[1]

    def _agent_vjp(self, w, e, x):
        return vjp(lambda u: self.model.apply(u, x), w)[1](e)[0]

    def jvp(self, W: torch.Tensor, D: torch.Tensor) -> torch.Tensor:
        """``J_i d_i`` without forming ``J_i`` (zero on padded rows), shape ``(A, M_max * O)``."""
        out = (stacked_jvp(self._mlp, W, self.X, D) if self._mlp is not None
               else self._jvp(W, D, self.X)) * self.mask[..., None]
        return out.reshape(out.shape[0], -1)

    def vjp(self, W: torch.Tensor, E: torch.Tensor) -> torch.Tensor:
        """``J_i^T e_i`` without forming ``J_i`` for ``E (A, M_max * O)`` (padded rows of
        ``E`` are ignored), shape ``(A, P)``."""
        E = E.reshape(self.T.shape) * self.mask[..., None]
        if self._mlp is not None:
            return stacked_vjp(self._mlp, W, self.X, E)
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
        out = (stacked_outputs(self._mlp, W, X.expand(W.shape[0], *X.shape))
               if self._mlp is not None else vmap(self.model.apply, in_dims=(0, None))(W, X))
        return per_sample_score(self.loss, self.task, out, T).mean(-1)
