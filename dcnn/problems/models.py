"""Models as functions of one flat parameter vector.

Any ``torch.nn.Module`` is viewed through :class:`FlatModel`: its parameters are flattened
once (in ``named_parameters`` order) into a vector ``w`` of length ``P``, and
``FlatModel.apply(w, x)`` evaluates the module with those parameters through
``torch.func.functional_call``. Because ``apply`` is a pure function of ``(w, x)`` it can be
``vmap``-ed over stacked agents' parameters and shards.
"""
from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError

__all__ = ["ACTIVATIONS", "mlp", "cnn", "FlatModel"]

ACTIVATIONS = {"tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "relu": nn.ReLU}


def mlp(*, n_inputs: int, hidden: Sequence[int], n_outputs: int, activation: str = "tanh",
        seed: int = 0, dtype: torch.dtype = torch.float64) -> nn.Module:
    """A fully connected network ``n_inputs -> hidden... -> n_outputs`` with a linear output.

    ``hidden=()`` gives a linear model. Initialisation is PyTorch's default, drawn in float64
    from a generator seeded with ``seed`` (the global RNG is left untouched) and then cast, so
    float32 and float64 runs start from the same point up to rounding. ReLU is allowed but lies
    outside NEXT's smoothness assumptions (convergence is proven for smooth activations).
    """
    if activation not in ACTIVATIONS:
        raise ConfigError(f"model.activation {activation!r} is unknown; choose one of: "
                          f"{', '.join(ACTIVATIONS)}")
    if isinstance(hidden, (str, bytes)) or not isinstance(hidden, Sequence):
        raise ConfigError(f"hidden must be a list of layer widths, got {hidden!r}; e.g. "
                          "hidden=[10] (or [] for a linear model)")
    sizes = [n_inputs, *hidden, n_outputs]
    if not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s >= 1
               for s in sizes):
        raise ConfigError(f"layer sizes must be positive integers, got n_inputs={n_inputs!r}, "
                          f"hidden={list(hidden)!r}, n_outputs={n_outputs!r}; fix model.hidden "
                          "(e.g. [10])")
    sizes = [int(s) for s in sizes]
    layers: list[nn.Module] = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for k, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(nn.Linear(a, b, dtype=torch.float64))
            if k < len(sizes) - 2:
                layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers).to(dtype)


def _conv_lengths(n_inputs: int, kernels: Sequence[int], *, stride: int, padding: int
                 ) -> list[int]:
    """Signal lengths through the conv stack, ``d_0 = n_inputs`` and
    ``d_l = floor((d_{l-1} + 2 padding - k_l) / stride) + 1`` (< 1: the signal is too short)."""
    lengths = [n_inputs]
    for k in kernels:
        lengths.append((lengths[-1] + 2 * padding - k) // stride + 1)
    return lengths


def _positive_ints(v) -> bool:
    """``v`` is a non-empty list of integers >= 1."""
    return isinstance(v, Sequence) and not isinstance(v, (str, bytes)) and len(v) > 0 \
        and all(isinstance(c, (int, np.integer)) and not isinstance(c, bool) and c >= 1
                for c in v)


def _is_int(v, low: int) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= low


def _cnn_kernels(n_inputs, n_outputs, channels, kernel, stride, padding) -> list[int]:
    """The per-layer kernel sizes, after checking every size (one line per problem)."""
    if not _is_int(n_inputs, 1) or not _is_int(n_outputs, 1):
        raise ConfigError(f"cnn needs positive integer sizes, got n_inputs={n_inputs!r}, "
                          f"n_outputs={n_outputs!r}; give the number of features and of "
                          "outputs")
    if not _positive_ints(channels):
        raise ConfigError(f"model.channels must be a non-empty list of channel counts >= 1, "
                          f"got {channels!r}; e.g. [25, 25, 25]")
    kernels = [kernel] * len(channels) if _is_int(kernel, 1) else kernel
    if not _positive_ints(kernels):
        raise ConfigError(f"model.kernel must be a kernel size >= 1 or a list of them, got "
                          f"{kernel!r}; e.g. 5 or [5, 3, 3]")
    if len(kernels) != len(channels):
        raise ConfigError(f"model.kernel = {list(kernels)} gives {len(kernels)} kernel sizes "
                          f"for the {len(channels)} conv layers of model.channels = "
                          f"{list(channels)}; give one per layer, or one integer for all")
    if not _is_int(stride, 1):
        raise ConfigError(f"model.stride must be an integer >= 1, got {stride!r}; e.g. 2")
    if not _is_int(padding, 0):
        raise ConfigError(f"model.padding must be an integer >= 0, got {padding!r}; e.g. 1")
    lengths = _conv_lengths(int(n_inputs), [int(k) for k in kernels], stride=int(stride),
                           padding=int(padding))
    if min(lengths) < 1:
        layer = next(i for i, n in enumerate(lengths) if n < 1)
        shown = " -> ".join(map(str, lengths[:layer + 1]))
        raise ConfigError(f"cnn: {n_inputs} input features are too short for the conv stack "
                          f"(lengths {shown} at layer {layer}, kernel {kernels[layer - 1]}, "
                          f"stride {stride}, padding {padding}); use fewer layers in "
                          "model.channels, smaller model.kernel or model.stride, or more "
                          "model.padding")
    return [int(k) for k in kernels]


def cnn(*, n_inputs: int, n_outputs: int, channels: Sequence[int] = (25, 25, 25),
        kernel: int | Sequence[int] = (5, 3, 3), stride: int = 2, padding: int = 1,
        activation: str = "tanh", seed: int = 0,
        dtype: torch.dtype = torch.float64) -> nn.Module:
    """A 1-D convolutional network reading a sample's ``n_inputs`` features as one signal::

        x (M, d) -> (M, 1, d) -> [Conv1d(c_{l-1} -> c_l, k_l, stride, padding) -> act] x L
          -> flatten (M, c_L d_L) -> Linear -> (M, n_outputs)

    with ``c_0 = 1``, ``d_0 = d`` and ``d_l = floor((d_{l-1} + 2 padding - k_l) / stride) + 1``
    (a signal too short for the stack is refused). ``kernel`` is one size for every layer or
    one per layer. The defaults are the CNN of MNIST-1D (Greydanus & Kobak, ICML 2024, arXiv
    2011.14439; there with ReLU): on its 40 features ``d_l`` = 40, 19, 10, 5 and 5,210
    parameters for 10 classes. Initialisation as :func:`mlp` (PyTorch's default, drawn in
    float64 from ``seed`` with the global RNG untouched, then cast); ReLU lies outside NEXT's
    smoothness assumptions, as there.

    >>> net = cnn(n_inputs=40, n_outputs=10, activation="relu")
    >>> sum(p.numel() for p in net.parameters())
    5210
    """
    if activation not in ACTIVATIONS:
        raise ConfigError(f"model.activation {activation!r} is unknown; choose one of: "
                          f"{', '.join(ACTIVATIONS)}")
    kernels = _cnn_kernels(n_inputs, n_outputs, channels, kernel, stride, padding)
    n_inputs, n_outputs, stride, padding = int(n_inputs), int(n_outputs), int(stride), \
        int(padding)
    sizes = [1, *(int(c) for c in channels)]
    flat = sizes[-1] * _conv_lengths(n_inputs, kernels, stride=stride, padding=padding)[-1]
    layers: list[nn.Module] = [nn.Unflatten(1, (1, n_inputs))]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for a, b, k in zip(sizes[:-1], sizes[1:], kernels):
            layers += [nn.Conv1d(a, b, k, stride=stride, padding=padding,
                                 dtype=torch.float64), ACTIVATIONS[activation]()]
        layers += [nn.Flatten(), nn.Linear(flat, n_outputs, dtype=torch.float64)]
    return nn.Sequential(*layers).to(dtype)


class FlatModel:
    """A module seen as ``f(w; x)`` with ``w`` one flat vector.

    Holds configuration only: the names, shapes and sizes of the parameters, a copy of the
    module used as a stateless template, and the initial vector ``w0``.
    """

    def __init__(self, module: nn.Module, *, dtype: torch.dtype = torch.float64):
        if not isinstance(module, nn.Module):
            raise ConfigError(f"model must be a torch.nn.Module, got {type(module).__name__}; "
                              "wrap your function in an nn.Module or build one with "
                              "dcnn.mlp(...)")
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise ConfigError(f"dtype must be a floating torch dtype such as torch.float64, "
                              f"got {dtype!r}")
        self.module = copy.deepcopy(module).to(dtype)
        params = dict(self.module.named_parameters())
        if not params:
            raise ConfigError("model has no parameters; give a module with trainable weights")
        self.names = tuple(params)
        self.shapes = tuple(p.shape for p in params.values())
        self.sizes = tuple(p.numel() for p in params.values())
        self.dtype = dtype
        self.buffers = {k: b for k, b in self.module.named_buffers()}
        self.w0 = torch.cat([p.detach().reshape(-1) for p in params.values()]).clone()

    @property
    def n_params(self) -> int:
        return int(sum(self.sizes))

    def unflatten(self, w: torch.Tensor) -> dict[str, torch.Tensor]:
        """Views of ``w`` shaped like the module's parameters (works inside ``vmap``)."""
        chunks = torch.split(w, self.sizes)
        return {n: c.reshape(s) for n, c, s in zip(self.names, chunks, self.shapes)}

    def flatten(self, module: nn.Module) -> torch.Tensor:
        """The flat vector of a module with the same architecture."""
        return torch.cat([p.detach().reshape(-1).to(self.dtype)
                          for p in module.parameters()])

    def apply(self, w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``f(w; x)``: outputs of shape ``(M, O)`` for inputs ``(M, d)``."""
        out = torch.func.functional_call(self.module, {**self.unflatten(w), **self.buffers},
                                         (x,))
        return out.reshape(out.shape[0], -1)

    def load_into(self, w: torch.Tensor, module: nn.Module) -> nn.Module:
        """Copy the flat vector ``w`` into ``module``'s parameters (in place) and return it."""
        params = self.unflatten(w.detach())
        with torch.no_grad():
            for name, p in module.named_parameters():
                p.copy_(params[name])
        return module
