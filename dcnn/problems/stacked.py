"""Every agent's MLP at once, in closed form: batched forward and backward passes.

The general path of :class:`~dcnn.problems.LocalProblems` evaluates agent ``i``'s model at its
own parameters with ``torch.func.vmap`` over ``grad``: exact for any module, but its fixed
cost (about 0.6 ms per call, most of a gradient-tracking iteration on a small model) is
transform bookkeeping, not arithmetic. For the models most runs use -- an ``nn.Sequential`` of
``nn.Linear`` layers and ``Tanh`` / ``Sigmoid`` / ``ReLU`` activations (:func:`dcnn.mlp`, a
linear model) -- this module does the same work directly on the stacked parameters
``W (A, P)``:

    forward   h_{l+1} = act(h_l W_l^T + b_l)               (one batched product per layer)
    backward  delta_L = dloss/dout;  dW_l = delta_l^T h_l,  db_l = sum delta_l,
              delta_{l-1} = (delta_l W_l) * act'(h_l)

with the loss derivatives in closed form (squared: ``-2 (t - o)``; binary cross-entropy:
``sigmoid(o) - t``; softmax cross-entropy: ``softmax(o) sum(t) - t``), each row weighted by
the shard mask and the problem's scale. No autograd graph, no vmap. Tests compare it with
the general path on every activation, loss and bias setting (to rounding; for a logit above
20, where torch's ``softplus`` becomes the identity, autograd's derivative is 1 and the closed
form keeps ``sigmoid``'s exact value, a difference below 2e-9). A module with forward hooks,
or any other layer, takes the general path. The results are written into preallocated
tensors: differentiable by ordinary autograd (:func:`stacked_hvp` does), not meant to be
wrapped in ``torch.func`` transforms.

Hessian-vector products (:func:`stacked_hvp`, for the curvature estimates of
:mod:`dcnn.surrogates.tau`) differentiate this closed-form gradient once more with ordinary
autograd: exact, and free of the general path's one-time cost (its first forward-over-reverse
``jvp`` takes over a second to set up).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["MLPLayout", "mlp_layout", "stacked_outputs", "stacked_value_and_grad",
           "stacked_hvp", "stacked_jvp", "stacked_vjp", "stacked_jacobians"]

_ACTS = {nn.Tanh: "tanh", nn.Sigmoid: "sigmoid", nn.ReLU: "relu"}


@dataclass(frozen=True)
class MLPLayout:
    """Where each layer's parameters sit in the flat vector: ``("linear", out, in, w, b)``
    with ``w`` / ``b`` the offsets of the weight and bias (``b`` None without a bias), or
    ``(activation name,)``."""
    layers: tuple


def mlp_layout(module: nn.Module, names: tuple, sizes: tuple) -> MLPLayout | None:
    """The layout of ``module`` if it is an ``nn.Sequential`` of ``Linear`` and
    Tanh / Sigmoid / ReLU layers whose parameters are, in order, ``names`` (a
    :class:`~dcnn.problems.FlatModel`'s), else None (the general path serves it)."""
    if type(module) is not nn.Sequential or len(module) == 0 or _hooked(module):
        return None
    offsets, at = {}, 0
    for name, size in zip(names, sizes):
        offsets[name] = at
        at += size
    layers, used = [], []
    # _modules, not named_children(): the latter skips a module met before, so a shared
    # activation or a reused Linear would drop out of the layout
    for idx, layer in module._modules.items():
        if layer is None or _hooked(layer):
            return None
        if type(layer) is nn.Linear:
            o, i = layer.weight.shape
            w, b = f"{idx}.weight", f"{idx}.bias"
            has_b = layer.bias is not None
            if w not in offsets or (has_b and b not in offsets):
                return None
            layers.append(("linear", o, i, offsets[w], offsets[b] if has_b else None))
            used += [w, b] if has_b else [w]
        elif type(layer) in _ACTS:
            layers.append((_ACTS[type(layer)],))
        else:
            return None
    if tuple(used) != tuple(names) or layers[0][0] != "linear":
        return None
    return MLPLayout(tuple(layers))


def _hooked(module: nn.Module) -> bool:
    """Whether ``module`` has forward hooks of its own (the general path runs them)."""
    return bool(module._forward_hooks or module._forward_pre_hooks)


def _linear(W: torch.Tensor, spec) -> tuple[torch.Tensor, torch.Tensor | None]:
    _, o, i, w, b = spec
    weight = W[:, w:w + o * i].reshape(-1, o, i)
    return weight, (None if b is None else W[:, b:b + o])


def _act(name: str, h: torch.Tensor) -> torch.Tensor:
    if name == "tanh":
        return torch.tanh(h)
    if name == "sigmoid":
        return torch.sigmoid(h)
    return torch.relu(h)


def _forward(layout: MLPLayout, W: torch.Tensor, X: torch.Tensor) -> list[torch.Tensor]:
    """Every layer's output, the input first: ``hs[-1]`` is the network's output."""
    hs = [X]
    for spec in layout.layers:
        h = hs[-1]
        if spec[0] == "linear":
            weight, bias = _linear(W, spec)
            h = (torch.bmm(h, weight.transpose(1, 2)) if bias is None
                 else torch.baddbmm(bias[:, None, :], h, weight.transpose(1, 2)))
        else:
            h = _act(spec[0], h)
        hs.append(h)
    return hs


def stacked_outputs(layout: MLPLayout, W: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
    """``f(w_i; X_i)`` for every agent: ``(A, M, O)`` from ``W (A, P)``, ``X (A, M, d)``."""
    return _forward(layout, W, X)[-1]


def _loss_and_delta(loss: str, out: torch.Tensor, T: torch.Tensor, weight: torch.Tensor,
                    value: bool = True):
    """Per-agent loss sums ``(A,)`` (None unless ``value``) and ``d loss / d out`` (rows
    weighted by ``weight``)."""
    w = weight[..., None]
    if loss == "squared":
        e = out - T
        delta = (2.0 * w) * e
        return ((weight * (e * e).sum(-1)).sum(-1) if value else None), delta
    if out.shape[-1] == 1:            # binary cross-entropy on one logit
        v = ((weight * (torch.nn.functional.softplus(out) - T * out).sum(-1)).sum(-1)
             if value else None)
        return v, w * (torch.sigmoid(out) - T)
    logp = torch.log_softmax(out, dim=-1)
    v = -(weight * (T * logp).sum(-1)).sum(-1) if value else None
    return v, w * (logp.exp() * T.sum(-1, keepdim=True) - T)


def _dact(name: str, h_out: torch.Tensor) -> torch.Tensor:
    """The activation's derivative, from its output."""
    if name == "tanh":
        return 1.0 - h_out * h_out
    if name == "sigmoid":
        return h_out * (1.0 - h_out)
    return (h_out > 0).to(h_out.dtype)


def _backward(layout: MLPLayout, W: torch.Tensor, hs: list, delta: torch.Tensor
              ) -> torch.Tensor:
    """``sum over samples of delta^T d out / d w``: ``(A, P)`` from ``delta (A, M, O)``."""
    G = torch.empty_like(W)
    for k in range(len(layout.layers) - 1, -1, -1):
        spec = layout.layers[k]
        if spec[0] == "linear":
            _, o, i, w, b = spec
            G[:, w:w + o * i] = torch.bmm(delta.transpose(1, 2), hs[k]).reshape(-1, o * i)
            if b is not None:
                G[:, b:b + o] = delta.sum(1)
            if k > 0:
                delta = torch.bmm(delta, _linear(W, spec)[0])
        else:
            delta = delta * _dact(spec[0], hs[k + 1])
    return G


def stacked_value_and_grad(layout: MLPLayout, *, loss: str, W: torch.Tensor, X: torch.Tensor,
                           T: torch.Tensor, weight: torch.Tensor, value: bool = True
                           ) -> tuple[torch.Tensor | None, torch.Tensor]:
    """``(g_i(w_i), grad g_i(w_i))`` for every agent: values ``(A,)`` (None unless
    ``value``) and gradients ``(A, P)`` of ``g_i(w) = sum_k weight[i, k] loss(t_k, f(w; x_k))``."""
    hs = _forward(layout, W, X)
    v, delta = _loss_and_delta(loss, hs[-1], T, weight, value)
    return v, _backward(layout, W, hs, delta)


def stacked_vjp(layout: MLPLayout, W: torch.Tensor, X: torch.Tensor, E: torch.Tensor
                ) -> torch.Tensor:
    """``J_i^T e_i`` for every agent, ``(A, P)``, from ``E (A, M, O)``."""
    return _backward(layout, W, _forward(layout, W, X), E)


def stacked_jvp(layout: MLPLayout, W: torch.Tensor, X: torch.Tensor, D: torch.Tensor
                ) -> torch.Tensor:
    """``J_i d_i`` for every agent, ``(A, M, O)``: the forward pass's tangent along ``D``."""
    h, dh = X, None
    for spec in layout.layers:
        if spec[0] == "linear":
            weight, bias = _linear(W, spec)
            dweight, dbias = _linear(D, spec)
            tangent = torch.bmm(h, dweight.transpose(1, 2))
            if dh is not None:
                tangent = tangent + torch.bmm(dh, weight.transpose(1, 2))
            dh = tangent if dbias is None else tangent + dbias[:, None, :]
            h = (torch.bmm(h, weight.transpose(1, 2)) if bias is None
                 else torch.baddbmm(bias[:, None, :], h, weight.transpose(1, 2)))
        else:
            h = _act(spec[0], h)
            dh = dh * _dact(spec[0], h)
    return dh


def stacked_jacobians(layout: MLPLayout, W: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
    """``d f(w_i; x_m)_o / d w`` for every agent, sample and output: ``(A, M, O, P)``
    (backpropagation of the identity over the outputs)."""
    hs = _forward(layout, W, X)
    A, M, O = hs[-1].shape
    J = torch.empty(A, M, O, W.shape[1], dtype=W.dtype)
    delta = torch.eye(O, dtype=W.dtype).expand(A, M, O, O)      # d out_k / d out
    for k in range(len(layout.layers) - 1, -1, -1):
        spec = layout.layers[k]
        if spec[0] == "linear":
            _, o, i, w, b = spec
            J[..., w:w + o * i] = (delta[..., :, None] * hs[k][:, :, None, None, :]
                                   ).reshape(A, M, O, o * i)
            if b is not None:
                J[..., b:b + o] = delta
            if k > 0:
                delta = torch.einsum("amkr,ari->amki", delta, _linear(W, spec)[0])
        else:
            delta = delta * _dact(spec[0], hs[k + 1])[:, :, None, :]
    return J


def stacked_hvp(layout: MLPLayout, *, loss: str, W: torch.Tensor, V: torch.Tensor,
                X: torch.Tensor, T: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``hess g_i(w_i) v_i`` for every agent, ``(A, P)``: the derivative of the closed-form
    gradient along ``V (A, P)`` (one backward pass through it)."""
    W = W.detach().requires_grad_(True)
    with torch.enable_grad():
        _, G = stacked_value_and_grad(layout, loss=loss, W=W, X=X, T=T, weight=weight)
        # a scalar output: grad_outputs would import sympy on first use (0.7 s)
        (HV,) = torch.autograd.grad((G * V).sum(), W)
    return HV
