"""Your own model: an ``nn.Module``, a class or factory, or a ``"file.py:Name"`` reference.

:func:`build_module` turns any of these into the module every agent starts from:

- an ``nn.Module`` instance: deep-copied (your object is never changed) and cast to ``dtype``;
- a class or factory: called as ``factory(n_inputs=d, n_outputs=k)`` (only the keywords its
  signature takes; none if it takes none) under ``torch.manual_seed(seed)`` inside
  ``torch.random.fork_rng``, so every rank and every run with the same seed builds the same
  initial weights and your global random state is left as it was;
- ``"path/to/file.py:Name"`` or ``"package.module:name"`` (``model.name`` in a config):
  imported the normal Python way (a file by its path, relative to the working directory; a
  module from ``sys.path``), then treated as a class or factory.

The module may be any architecture whose ``forward(x)`` maps a ``(batch, d)`` float tensor to
``(batch, k)`` outputs (``k`` = :attr:`dcnn.data.Dataset.n_outputs`) as a pure function of
its parameters: dcnn views it as a function of one flat parameter vector
(:class:`~dcnn.problems.FlatModel`) evaluated for all agents at once with ``torch.func.vmap``,
so random operations and in-place buffer updates in ``forward`` (Dropout, BatchNorm in
training mode) are refused when a run starts (:func:`dcnn.prepare.prepare`). The engine
baselines that split a model (pipeline, tensor parallel, SIL, local parallelism) need the
``nn.Sequential`` MLP and say so when given another module.
"""
from __future__ import annotations

import copy
import inspect
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError
from ..imports import import_object

__all__ = ["build_module"]


def _call(factory, *, n_inputs: int, n_outputs: int, where: str) -> Any:
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        params = {}
    wanted = {"n_inputs": n_inputs, "n_outputs": n_outputs}
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        kwargs = wanted
    else:
        kwargs = {k: v for k, v in wanted.items() if k in params}
    try:
        return factory(**kwargs)
    except Exception as exc:
        raise ConfigError(f"{where}: calling {getattr(factory, '__name__', factory)!r}"
                          f"({', '.join(f'{k}={v}' for k, v in kwargs.items())}) failed "
                          f"({type(exc).__name__}: {' '.join(str(exc).split())}); it must "
                          "build an nn.Module, taking n_inputs/n_outputs keywords or "
                          "none") from None


def build_module(model, *, n_inputs: int, n_outputs: int, seed: int = 0,
                 dtype: torch.dtype = torch.float64, where: str = "model") -> nn.Module:
    """The initial module from ``model`` (see the module docstring)."""
    if isinstance(model, str):
        where = f"model.name = {model!r}"
        model = import_object(model, where="model.name")
    if isinstance(model, nn.Module):
        module = copy.deepcopy(model)
    elif callable(model):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            module = _call(model, n_inputs=n_inputs, n_outputs=n_outputs, where=where)
    else:
        raise ConfigError(f"{where} must be an nn.Module, a class or factory returning one, or "
                          f"'file.py:Name'; got {type(model).__name__}")
    if not isinstance(module, nn.Module):
        raise ConfigError(f"{where} built a {type(module).__name__}, not an nn.Module; return "
                          "a torch.nn.Module")
    params = list(module.parameters())
    if not params:
        raise ConfigError(f"{where} has no parameters; give a model with trainable weights")
    if any(not p.is_floating_point() for p in params):
        raise ConfigError(f"{where} has non-floating parameters; use float tensors")
    return module.to(dtype)
