"""Your own model and data through dcnn in a few lines: :class:`Experiment`.

>>> import numpy as np, torch
>>> import dcnn
>>> rng = np.random.default_rng(0)
>>> X = rng.normal(size=(120, 4)); y = (X[:, 0] + X[:, 1] > 0).astype(int)
>>> class Net(torch.nn.Module):
...     def __init__(self, n_inputs, n_outputs):
...         super().__init__()
...         self.a = torch.nn.Linear(n_inputs, 6)
...         self.b = torch.nn.Linear(6, n_outputs)
...     def forward(self, x):
...         return self.b(torch.tanh(self.a(x)))
>>> exp = dcnn.Experiment(model=Net, X=X, y=y, agents=4, iterations=20, graph="ring",
...                       loss="cross_entropy")
>>> result = exp.run()
>>> result.summary["method"], result.history.last["iteration"]
('next-pl', 20)
>>> result.history.last["objective"] < result.history.records[0]["objective"]
True

Every argument is checked when the experiment is made (the model and data are built and
checked when it runs); a bad one is refused in one line that names the argument (``agents
must be >= 1, got 0``). Any other config key is set with
``settings={"section.key": value}`` (the keys of ``dcnn run --set``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .config import Config, load_config
from .errors import ConfigError

__all__ = ["Experiment"]

# Python argument -> config key
_KEYS = {"agents": "run.agents", "iterations": "run.iterations", "seed": "run.seed",
         "eval_every": "run.eval_every", "graph": "topology.graph",
         "dynamic": "topology.dynamic", "loss": "model.loss",
         "regularizer": "model.regularizer", "lam": "model.lam",
         "partition": "data.partition"}


@dataclass
class Experiment:
    """A model, data, a network of ``agents`` and a method, ready to :meth:`run` or
    :meth:`compare`.

    Args (keyword-only):
        model: an ``nn.Module``, a class or factory (called with ``n_inputs``/``n_outputs``
            if it takes them, under the run's seed), ``"file.py:Name"``, or ``None`` for the
            config's ``model.name`` (an MLP by default).
        X, y, X_test, y_test: your arrays (``None``: the config's ``data.name``); without a
            test part a seeded ``data.test_fraction`` is held out.
        method: a registered method or variant (``"next-pl"``, ``"gt"``, ``"dgd"``, ...),
            optionally with options (``"gt:alpha0=0.25"``); ``None``: the config's
            (NEXT with the PL surrogate by default).
        agents, iterations, seed, eval_every, graph, dynamic, loss, regularizer, lam,
            partition: the most used config keys (``None``: the config's value).
        settings: any other config keys, ``{"section.key": value}``.
        config: a base :class:`~dcnn.config.Config` (default: the defaults).
    """

    model: Any = None
    X: Any = None
    y: Any = None
    X_test: Any = None
    y_test: Any = None
    method: str | None = None
    agents: int | None = None
    iterations: int | None = None
    seed: int | None = None
    eval_every: int | None = None
    graph: str | None = None
    dynamic: str | None = None
    loss: str | None = None
    regularizer: str | None = None
    lam: float | None = None
    partition: str | None = None
    settings: dict = field(default_factory=dict)
    config: Config | None = None

    def __post_init__(self):
        if (self.X is None) != (self.y is None):
            raise ConfigError("give both X and y, or neither (then data.name is used)")
        if (self.X_test is None) != (self.y_test is None):
            raise ConfigError("give both X_test and y_test, or neither")
        if self.X_test is not None and self.X is None:
            raise ConfigError("X_test and y_test need X and y")
        if not isinstance(self.settings, dict):
            raise ConfigError(f"settings must be a dict of 'section.key': value, got "
                              f"{type(self.settings).__name__}")
        if not (self.model is None or isinstance(self.model, (str, torch.nn.Module))
                or callable(self.model)):
            raise ConfigError(f"model must be an nn.Module, a class or factory returning one, "
                              f"or 'file.py:Name'; got {type(self.model).__name__}")
        if self.config is not None and not isinstance(self.config, Config):
            raise ConfigError(f"config must be a dcnn.Config, got {type(self.config).__name__}")
        self.to_config()                        # every argument checked now

    @property
    def _model(self):
        return None if isinstance(self.model, str) else self.model

    @property
    def data(self):
        if self.X is None:
            return None
        if self.X_test is None:
            return (self.X, self.y)
        return (self.X, self.y, self.X_test, self.y_test)

    def to_config(self) -> Config:
        """The :class:`~dcnn.config.Config` this experiment runs (a new copy)."""
        import copy

        from .compare import parse_method
        from .config import _apply
        cfg = copy.deepcopy(self.config) if self.config is not None else load_config()
        cfg.run.progress = False
        if isinstance(self.model, str):        # "file.py:Name": the config's model.name
            _apply(cfg, "model", "name", self.model)
        for arg, key in _KEYS.items():
            value = getattr(self, arg)
            if value is None:
                continue
            section, name = key.split(".")
            try:
                _apply(cfg, section, name, value)
            except ConfigError as exc:
                raise ConfigError(str(exc).replace(key, arg)) from None
        for key, value in self.settings.items():
            if not isinstance(key, str) or key.count(".") != 1:
                raise ConfigError(f"settings key {key!r} is not 'section.key', e.g. "
                                  "{'algorithm.tau': 1.0}")
            _apply(cfg, *key.split("."), value)
        if self.method is not None and not isinstance(self.method, str):
            raise ConfigError(f"method must be a string such as 'gt', got {self.method!r}")
        try:
            keys = {} if self.method is None else parse_method(self.method)
            for key, value in keys.items():
                _apply(cfg, "algorithm", key, value)
            cfg.algorithm.options()
        except ConfigError as exc:
            raise ConfigError(f"method {self.method!r}: {exc}") from None
        return cfg

    def run(self, *, out: str | Path | None = None, network=None, verbose: bool = False,
            callbacks=()):
        """Train with ``method``: a :class:`dcnn.runner.RunResult` (History, summary, final
        state, ``predict``); ``out`` writes the report files there; ``callbacks`` as
        :func:`dcnn.runner.run_experiment`'s (own metrics, early stopping)."""
        from .runner import run_experiment
        return run_experiment(self.to_config(), out=out, network=network, verbose=verbose,
                              model=self._model, data=self.data, callbacks=callbacks)

    def compare(self, methods=None, *, out: str | Path | None = None, network=None,
                gap: float = 0.01, verbose: bool = False, tune: bool = False,
                tune_rounds: int | None = None, seeds: int = 1, links=(),
                tune_factors: tuple[float, ...] | None = None):
        """Run several methods on the same shards, graph and initial point: a
        :class:`dcnn.compare.CompareResult` (``.table()`` prints it, ``.verdict`` names the
        best); ``tune``, ``seeds`` and ``links`` as ``dcnn compare --tune --seeds --link``
        (:func:`dcnn.compare.run_compare`)."""
        from .compare import run_compare
        return run_compare(self.to_config(), methods=methods, out=out, network=network,
                           gap=gap, verbose=verbose, model=self._model, data=self.data,
                           tune=tune, tune_rounds=tune_rounds, seeds=seeds, links=links,
                           tune_factors=tune_factors)
