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

__all__ = ["ACTIVATIONS", "mlp", "FlatModel"]

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
