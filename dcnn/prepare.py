"""The first step of a run: everything a method needs, prepared from a config (and, from
Python, your own model and data).

:func:`prepare` is a straight pipeline of small steps::

    data (bundled, file or your arrays) -> targets -> partition -> model (built-in, your
    nn.Module / factory / "file.py:Name") -> regulariser -> local problems of this rank's
    agents -> topology (checked for B-connectivity) -> initial iterates

and returns a :class:`Prepared`, which the registry's builders (:mod:`dcnn.methods`) turn into
a runnable method. Every rank prepares the same experiment from the same seed; the model's
size and initial point are compared across ranks (one all-reduce), so a user model that
differs between ranks is refused instead of giving wrong results.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .comm import Network, make_network
from .config import MODELS, Config, DataConfig
from .data import Dataset, dataset_from_arrays, encode_targets, load_dataset, partition
from .errors import ConfigError, DataError
from .problems import FlatModel, LocalProblems, Regularizer, cnn, make_regularizer, mlp
from .problems.user_model import build_module
from .topology import make_topology

__all__ = ["Prepared", "prepare", "make_model", "local_problems", "as_dataset", "DTYPES",
           "fingerprint"]

DTYPES = {"float64": torch.float64, "float32": torch.float32}


@dataclass
class Prepared:
    """A prepared experiment: the data and its shards, the model, this rank's local problems,
    the topology, the network and the initial iterates, with the run's settings."""

    cfg: Config
    dataset: Dataset
    T_train: np.ndarray
    T_test: np.ndarray
    parts: list
    model: FlatModel
    regularizer: Regularizer
    problem: LocalProblems
    topology: object
    network: Network
    X0: torch.Tensor
    test: tuple

    @property
    def iterations(self) -> int:
        return self.cfg.run.iterations

    @property
    def eval_every(self) -> int:
        return self.cfg.run.eval_every

    @property
    def seed(self) -> int:
        return self.cfg.run.seed

    @property
    def comm_timeout(self) -> float:
        return self.cfg.run.comm_timeout

    @property
    def loss(self) -> str:
        return self.cfg.model.loss

    @property
    def task(self) -> str:
        return self.dataset.task

    @property
    def shards(self) -> list:
        """Every agent's ``(X_i, T_i)`` (the trainers of :mod:`dcnn.baselines` take all)."""
        return [(self.dataset.X_train[p], self.T_train[p]) for p in self.parts]

    def pooled(self) -> LocalProblems:
        """The pooled training problem (one agent holding every sample)."""
        ds = self.dataset
        return LocalProblems(model=self.model, shards=[(ds.X_train, self.T_train)],
                             loss=self.loss, task=ds.task, n_total=ds.n_train,
                             regularizer=self.regularizer)


def make_model(m, *, n_inputs: int, n_outputs: int, seed: int, dtype: torch.dtype):
    """The module the ``model`` section ``m`` names: the MLP, the 1-D CNN, the one-block
    transformer, or your own (``m.name = "path/to/file.py:Name"``, see
    :mod:`dcnn.problems.user_model`)."""
    if m.name == "transformer":
        from .problems.transformer import transformer
        return transformer(n_inputs=n_inputs, n_outputs=n_outputs, tokens=m.tokens,
                           d_model=m.d_model, heads=m.heads, ffn=m.ffn, seed=seed,
                           dtype=dtype)
    if m.name.startswith("<python>"):
        raise ConfigError(f"model.name = {m.name!r}: this run's model was a Python object; "
                          "give it again (run_experiment/resume_experiment(..., model=...))")
    if m.name == "mlp":
        return mlp(n_inputs=n_inputs, hidden=m.hidden, n_outputs=n_outputs,
                   activation=m.activation, seed=seed, dtype=dtype)
    if m.name == "cnn":
        return cnn(n_inputs=n_inputs, n_outputs=n_outputs, channels=m.channels,
                   kernel=m.kernel, stride=m.stride, padding=m.padding,
                   activation=m.activation, seed=seed, dtype=dtype)
    return build_module(m.name, n_inputs=n_inputs, n_outputs=n_outputs, seed=seed,
                        dtype=dtype)


def local_problems(*, model: FlatModel, X, T, parts, network: Network, loss: str, task: str,
                   regularizer) -> LocalProblems:
    """The group's :class:`LocalProblems` from pooled arrays and one index array per agent."""
    if len(parts) != network.n_agents:
        raise DataError(f"{len(parts)} shards for {network.n_agents} agents; give one index "
                        "array per agent")
    X, T = np.asarray(X), np.asarray(T)
    for i, p in enumerate(parts):
        idx = np.asarray(p)
        if idx.size and (idx.dtype.kind not in "iu" or idx.min() < 0 or idx.max() >= len(X)):
            bad = idx.ravel()[0] if idx.dtype.kind not in "iu" else \
                (idx.min() if idx.min() < 0 else idx.max())
            raise DataError(f"part {i} has index {bad!r} but there are {len(X)} samples; give "
                            f"integer indices in 0..{len(X) - 1}")
    T = T.reshape(len(T), -1)
    shards = [(X[parts[i]], T[parts[i]]) for i in network.agents]
    return LocalProblems(model=model, shards=shards, loss=loss, task=task, n_total=len(X),
                         regularizer=regularizer, agent_ids=list(network.agents))


def as_dataset(data, cfg: Config) -> Dataset:
    """``data`` as a :class:`Dataset`: ``None`` (the config's ``data.name``), a Dataset, or
    arrays ``(X, y)`` / ``(X, y, X_test, y_test)`` / a dict with those keys, split and
    standardised as the ``data`` section says."""
    d, r = cfg.data, cfg.run
    _check_samples_key(d, data)
    options = dict(test_fraction=d.test_fraction, seed=r.seed, task=d.task,
                   standardize=d.standardize)
    if data is None:
        if d.name == "<python arrays>":
            raise DataError("data.name = '<python arrays>': this run's data were Python "
                            "arrays; give them again (run_experiment/resume_experiment(..., "
                            "data=...))")
        return load_dataset(d.name, target_column=d.target_column, samples=d.samples,
                            **options)
    if isinstance(data, Dataset):
        return data
    if isinstance(data, dict):
        unknown = set(data) - {"X", "y", "X_test", "y_test"}
        if unknown or not {"X", "y"} <= set(data):
            raise DataError(f"data dict has keys {sorted(data)}; give X, y and optionally "
                            "X_test, y_test")
        return dataset_from_arrays(**data, **options)
    if isinstance(data, Sequence) and len(data) in (2, 4) and not isinstance(data, str):
        X, y, *rest = data
        X_test, y_test = rest if rest else (None, None)
        return dataset_from_arrays(X, y, X_test=X_test, y_test=y_test, **options)
    raise DataError(f"data must be None (data.name), a dcnn.data.Dataset, (X, y), "
                    f"(X, y, X_test, y_test) or a dict of those; got {type(data).__name__}")


def _check_samples_key(d, data) -> None:
    """``data.samples`` sizes the generated MNIST-1D; set for other data it would be ignored.
    (A section cannot tell a key set to its default from one left out: only a value other
    than the default is refused.)"""
    if d.samples == DataConfig().samples or (data is None and d.name == "mnist1d"):
        return
    what = f"data.name is {d.name!r}" if data is None else "the data are Python objects"
    raise ConfigError(f"data.samples = {d.samples} applies to data.name = 'mnist1d' only, but "
                      f"{what}; remove data.samples")


def _probe(problem: LocalProblems, X0: torch.Tensor, what: str) -> None:
    """One gradient of a user model, so that a model dcnn cannot treat as a pure function of
    its flat parameters fails here, in one line, not inside a method."""
    try:
        problem.gradients(X0)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())[:200]
        raise ConfigError(f"model {what}: its forward cannot be evaluated as a pure function of "
                          f"the parameters for every agent at once (torch.func.vmap: "
                          f"{detail}); call model.eval() first and avoid random operations or "
                          "in-place buffer updates (BatchNorm in training mode, Dropout) in "
                          "forward") from None


def arrays_sha256(*arrays) -> str:
    """The sha256 of ``arrays``: each one's dtype, shape and bytes, in order."""
    import hashlib
    h = hashlib.sha256()
    for arr in arrays:
        a = np.ascontiguousarray(arr)
        h.update(f"{a.dtype}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def fingerprint(exp: Prepared) -> dict:
    """The sha256 of the run's data (train and test arrays) and of its model (parameter
    names, shapes and initial values): what a checkpoint must be resumed with."""
    import hashlib
    ds, model = exp.dataset, hashlib.sha256()
    data = arrays_sha256(ds.X_train, ds.y_train, ds.X_test, ds.y_test)
    w0 = exp.model.w0.detach().to(torch.float64).contiguous()
    model.update(repr(exp.model.names).encode())
    model.update(w0.numpy().tobytes())
    return {"data": data, "model": model.hexdigest()}


def _check_same_model(model: FlatModel, network: Network) -> None:
    """Every rank must start from the same model: compare the size and a checksum of w0."""
    w0 = model.w0.detach().to(torch.float64)
    mine = torch.tensor([float(model.n_params), float(w0.sum()), float((w0 * w0).sum())],
                        dtype=torch.float64)
    hi = network.allreduce(mine.clone(), op="max")
    lo = network.allreduce(mine.clone(), op="min")
    if not torch.equal(hi, lo):
        raise ConfigError(f"the model differs across ranks ({int(lo[0])} to {int(hi[0])} "
                          "parameters, or other initial weights); build it deterministically "
                          "(dcnn seeds factories; an nn.Module instance must be the same on "
                          "every rank)")


def prepare(cfg: Config, *, network: Network | None = None, model=None,
            data=None) -> Prepared:
    """The experiment ``cfg`` describes, on ``network`` (default: from ``run.backend``);
    ``model`` (an nn.Module, a class or factory) and ``data`` (see :func:`as_dataset`)
    replace the config's ``model.name`` and ``data.name``."""
    if not isinstance(cfg, Config):
        raise ConfigError(f"cfg must be a dcnn.Config, got {type(cfg).__name__}; build it "
                          "with dcnn.load_config(...)")
    r, m, tp = cfg.run, cfg.model, cfg.topology
    dtype = DTYPES[r.dtype]
    network = network or make_network(r.agents, backend=r.backend, timeout=r.comm_timeout)
    ds = as_dataset(data, cfg)
    T_train = encode_targets(ds.y_train, task=ds.task, n_classes=ds.n_classes)
    T_test = encode_targets(ds.y_test, task=ds.task, n_classes=ds.n_classes)
    parts = partition(ds.y_train, r.agents, kind=cfg.data.partition, seed=r.seed,
                      beta=cfg.data.beta, task=ds.task)
    kw = dict(n_inputs=ds.n_features, n_outputs=T_train.shape[1], seed=r.seed, dtype=dtype)
    module = make_model(m, **kw) if model is None else build_module(model, **kw)
    flat = FlatModel(module, dtype=dtype)
    _check_same_model(flat, network)
    reg = make_regularizer(m.regularizer, lam=m.lam, l1_ratio=m.l1_ratio)
    problem = local_problems(model=flat, X=ds.X_train, T=T_train, parts=parts,
                             network=network, loss=m.loss, task=ds.task, regularizer=reg)
    params = {k: v for k, v in vars(tp).items()
              if v is not None and k not in ("graph", "dynamic", "weights", "B")}
    topology = make_topology(graph=tp.graph, n=r.agents, dynamic=tp.dynamic,
                             weights=None if tp.weights == "auto" else tp.weights,
                             seed=r.seed, **params)
    topology.check(iterations=r.iterations, B=tp.B)
    X0 = flat.w0.expand(network.n_local, -1).clone()
    if model is not None or m.name not in MODELS:
        _probe(problem, X0, m.name if model is None else type(model).__name__)
    test = (torch.as_tensor(ds.X_test, dtype=dtype), torch.as_tensor(T_test, dtype=dtype))
    return Prepared(cfg=cfg, dataset=ds, T_train=T_train, T_test=T_test, parts=parts,
                    model=flat, regularizer=reg, problem=problem, topology=topology,
                    network=network, X0=X0, test=test)
