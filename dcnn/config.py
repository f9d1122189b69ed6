"""Run configuration: five sections of typed keys, read from TOML and ``--set`` overrides.

Every key has a default, so an empty config is the default experiment. Unknown sections or
keys are refused with the closest valid name, wrong types (and NaN/inf numbers) with the key,
the bad value and an example, out-of-range values and unknown choices with what is expected.
The ``algorithm`` section is the registry's (:mod:`dcnn.methods`): ``name`` is a registered
method and every other key an option some method declares, typed and checked by that
declaration. :func:`resolve` returns the complete, validated config as plain nested dicts
(what ``config.json`` of a run holds), the algorithm section with the chosen method's options.
"""
from __future__ import annotations

import copy
import dataclasses
import difflib
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from .errors import ConfigError
from .methods.options import check_value
from .methods.options import closest as _closest

__all__ = ["Config", "RunConfig", "DataConfig", "ModelConfig", "TopologyConfig",
           "AlgorithmConfig", "load_config", "parse_set", "resolve"]


def key(default: Any, doc: str):
    """A config key: its default and one line of what it means (the reference in
    ``docs/config.md`` is generated from these, :mod:`dcnn.config_reference`)."""
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"doc": doc})
    return field(default=default, metadata={"doc": doc})


@dataclass
class RunConfig:
    agents: int = key(8, "number of agents N (any N >= the MPI ranks; contiguous blocks per "
                         "rank)")
    iterations: int = key(300, "rounds of the method (steps of the parallel trainers)")
    seed: int = key(0, "seeds the split, the partition, the initial model and the graph "
                       "sequence")
    eval_every: int = key(10, "rounds between two evaluations (rows of history.csv)")
    dtype: str = key("float64", "floating-point type of the iterates")
    backend: str = key("auto", "auto: MPI under mpiexec, else all agents in this process")
    threads: int = key(0, "torch threads per rank (0: OMP_NUM_THREADS if set, else 1)")
    progress: bool = key(True, "progress bar on rank 0")
    reference: bool = key(True, "solve the centralized reference (same model, loss and "
                                "regulariser on the pooled data; cached)")
    reference_budget: float = key(300.0, "seconds the reference solve may take (0: no limit); "
                                         "one stopped by it is marked in the log and "
                                         "summary.json")
    comm_timeout: float = key(60.0, "seconds any rank waits for a peer before the job ends "
                                    "with a message naming both")
    checkpoint_every: int = key(0, "K > 0: the complete state into DIR/checkpoint every K "
                                   "rounds (resume with --resume)")
    blowup: float = key(1e6, "the divergence guard stops a run whose objective passes "
                             "blowup x (abs(U_0) + 1) (and any NaN or inf); 0: only those")


@dataclass
class DataConfig:
    name: str = key("breast_cancer", "breast_cancer, digits, wine, iris, diabetes "
                                     "(scikit-learn's), mnist1d, or a .npz / .csv path")
    partition: str = key("iid", "how the training rows are dealt to the agents")
    beta: float = key(0.5, "dirichlet: concentration of the label skew (smaller: more "
                           "skewed)")
    test_fraction: float = key(0.2, "held-out fraction (mnist1d: its own 80/20 split)")
    task: str = key("auto", "auto: from the targets (integers: classification)")
    target_column: int = key(-1, ".csv: the column holding the target")
    standardize: bool = key(True, "features (and regression targets) to zero mean, unit "
                                  "scale, by the training statistics")
    samples: int = key(5000, "mnist1d only: samples generated locally from its seed 42")


@dataclass
class ModelConfig:
    name: str = key("mlp", "mlp, cnn, transformer, or your own: 'path/to/file.py:Class' or "
                           "'package.module:factory', called with n_inputs, n_outputs")
    hidden: list = key([10], "mlp: hidden layer widths ([] = linear model)")
    channels: list = key([25, 25, 25], "cnn: channels of the Conv1d layers (the features "
                                       "read as one signal)")
    kernel: int | list = key([5, 3, 3], "cnn: kernel sizes, one per layer or one for all")
    stride: int = key(2, "cnn: stride of every conv layer")
    padding: int = key(1, "cnn: padding of every conv layer")
    activation: str = key("tanh", "mlp, cnn: the hidden activation")
    loss: str = key("squared", "the training loss (squared: one-hot targets for classes)")
    regularizer: str = key("l2", "the regulariser r of U = sum_i g_i + r")
    lam: float = key(1e-3, "weight of the regulariser")
    l1_ratio: float = key(0.5, "elastic_net: the l1 share of lam")
    tokens: int = key(8, "transformer: tokens per sample (features / tokens values each)")
    d_model: int = key(16, "transformer: width of the encoder block")
    heads: int = key(2, "transformer: attention heads")
    ffn: int = key(32, "transformer: hidden width of the MLP block")


@dataclass
class TopologyConfig:
    graph: str = key("erdos_renyi", "the base graph (directed_*, random_digraph: directed)")
    dynamic: str = key("link_failure", "how the graph changes over the rounds")
    weights: str = key("auto", "mixing weights (auto: metropolis_hastings on undirected "
                               "graphs, column_stochastic on directed ones)")
    B: int = key(10, "connectivity window: a run is refused if some window [kB, (k+1)B) "
                     "has a disconnected union (the message names it)")
    p: float | None = key(None, "erdos_renyi, random_digraph and the random dynamic: edge "
                                "probability")
    radius: float | None = key(None, "geometric: connection radius")
    k: int | None = key(None, "small_world: neighbours per node")
    p_rewire: float | None = key(None, "small_world: rewiring probability")
    rows: int | None = key(None, "torus: rows of the grid")
    p_fail: float | None = key(None, "link_failure: probability that a link fails in a round")
    parts: int | None = key(None, "switching: graphs whose union is the base graph")
    period: int | None = key(None, "switching: rounds per graph")
    cutoff_agent: int | None = key(None, "with cutoff_start and cutoff_length: this agent "
                                         "loses every link for those rounds")
    cutoff_start: int | None = key(None, "first round of the cut-off")
    cutoff_length: int | None = key(None, "rounds of the cut-off")


class AlgorithmConfig:
    """``algorithm.name`` and the ``algorithm.*`` keys that were set; any other key reads as
    its default. The keys are the options of the registered methods
    (:mod:`dcnn.methods`): a key is accepted if some method declares it, and each method
    reads only its own (:meth:`options`)."""

    def __init__(self, name: str | None = None, **values):
        if name is None:
            from .methods import default_method
            name = default_method()
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "_values", dict(values))

    def __getattr__(self, key: str):
        if key.startswith("_"):
            raise AttributeError(key)
        if key in self._values:
            return self._values[key]
        declared = _option_fields().get(key)
        if declared is None:
            raise AttributeError(f"algorithm has no key {key!r}")
        mine = [f for method, f, _ in declared if method == self.name]
        return (mine or [declared[0][1]])[0].default

    def __setattr__(self, key: str, value) -> None:
        if key == "name":
            object.__setattr__(self, "name", value)
        else:
            self._values[key] = value

    def __deepcopy__(self, memo):
        return AlgorithmConfig(self.name, **copy.deepcopy(self._values, memo))

    def __copy__(self):
        return AlgorithmConfig(self.name, **self._values)

    def __eq__(self, other) -> bool:
        return isinstance(other, AlgorithmConfig) and (self.name, self._values) == \
            (other.name, other._values)

    def __repr__(self) -> str:
        keys = "".join(f", {k}={v!r}" for k, v in self._values.items())
        return f"AlgorithmConfig(name={self.name!r}{keys})"

    @property
    def spec(self):
        """The registry entry of ``name`` (:class:`dcnn.methods.MethodSpec`)."""
        from .methods import get_method
        return get_method(self.name)

    def options(self):
        """The method's typed options: the keys it reads, set or defaulted, validated."""
        from .methods.options import options_from
        return options_from(self.spec.options, self._values, method=self.name)

    @property
    def explicit(self) -> dict:
        """The keys that were set (a copy)."""
        return dict(self._values)


def _option_fields() -> dict:
    from .methods import option_fields
    return option_fields()


def resolve_algorithm(a: AlgorithmConfig) -> dict:
    """``{"name": ..., **the method's options}``: what the chosen method reads."""
    import dataclasses as dc
    return {"name": a.name, **{f.name: getattr(a.options(), f.name)
                               for f in dc.fields(a.spec.options)}}


@dataclass
class Config:
    run: RunConfig = field(default_factory=RunConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    topology: TopologyConfig = field(default_factory=TopologyConfig)
    algorithm: AlgorithmConfig = field(default_factory=AlgorithmConfig)


_CHOICES = {
    ("run", "dtype"): ("float64", "float32"),
    ("run", "backend"): ("auto", "local", "mpi"),
    # mirrors of registries that live in heavier modules (tests/test_bad_input.py checks that
    # they agree with dcnn.data and dcnn.problems): a typo fails before any data is loaded
    ("data", "partition"): ("iid", "dirichlet"),
    ("data", "task"): ("auto", "regression", "binary", "multiclass"),
    ("model", "activation"): ("tanh", "sigmoid", "relu"),
    ("model", "loss"): ("squared", "cross_entropy"),
    ("model", "regularizer"): ("l2", "l1", "elastic_net", "none"),
}
_RANGES = {  # (section, key): (test, description)
    ("run", "agents"): (lambda v: v >= 1, ">= 1"),
    ("run", "seed"): (lambda v: 0 <= v < 2**32, "in [0, 2**32)"),
    ("run", "iterations"): (lambda v: v >= 1, ">= 1"),
    ("run", "eval_every"): (lambda v: v >= 1, ">= 1"),
    ("run", "threads"): (lambda v: v >= 0, ">= 0 (0 = OMP_NUM_THREADS, else 1)"),
    ("run", "comm_timeout"): (lambda v: v > 0, "> 0 (seconds)"),
    ("run", "reference_budget"): (lambda v: v >= 0, ">= 0 (seconds; 0 = no limit)"),
    ("run", "checkpoint_every"): (lambda v: v >= 0, ">= 0 (0 = no checkpoints)"),
    ("run", "blowup"): (lambda v: v == 0 or 1 < v < float("inf"),
                        "0 (off) or a finite number > 1"),
    ("data", "beta"): (lambda v: v > 0, "> 0"),
    ("data", "test_fraction"): (lambda v: 0 <= v < 1, "in [0, 1)"),
    ("data", "samples"): (lambda v: v >= 100 and v % 10 == 0,
                          "a multiple of 10, at least 100 (mnist1d makes samples/10 per class)"),
    ("model", "lam"): (lambda v: v >= 0, ">= 0"),
    ("model", "l1_ratio"): (lambda v: 0 <= v <= 1, "in [0, 1]"),
    ("model", "hidden"): (lambda v: all(h >= 1 for h in v),
                          "a list of layer widths >= 1 (e.g. [10, 10]; [] for a linear model)"),
    ("model", "channels"): (lambda v: len(v) >= 1 and all(c >= 1 for c in v),
                            "a non-empty list of channel counts >= 1 (e.g. [25, 25, 25])"),
    ("model", "kernel"): (lambda v: all(k >= 1 for k in ([v] if isinstance(v, int) else v))
                          and v != [], "a kernel size >= 1, or a non-empty list of them, one "
                          "per conv layer (e.g. 5 or [5, 3, 3])"),
    ("model", "stride"): (lambda v: v >= 1, ">= 1"),
    ("model", "padding"): (lambda v: v >= 0, ">= 0"),
    ("topology", "B"): (lambda v: v >= 1, ">= 1"),
    ("model", "tokens"): (lambda v: v >= 1, ">= 1"),
    ("model", "d_model"): (lambda v: v >= 1, ">= 1"),
    ("model", "heads"): (lambda v: v >= 1, ">= 1"),
    ("model", "ffn"): (lambda v: v >= 1, ">= 1"),
}


def _suggest(name: str, valid, prefix: str = "") -> str:
    close = difflib.get_close_matches(name, list(valid), n=1)
    if close:
        return f"; did you mean '{prefix}{close[0]}'?"
    return f"; valid: {', '.join(prefix + v for v in valid)}"


def _keys(obj) -> dict:
    """``{key: type hint}`` of a config section (the algorithm's: ``name`` and every key some
    registered method declares)."""
    if isinstance(obj, AlgorithmConfig):
        return {"name": str, **{k: fs[0][2] for k, fs in _option_fields().items()}}
    return get_type_hints(type(obj))


def _apply_algorithm(a: AlgorithmConfig, key: str, value: Any) -> None:
    where = f"algorithm.{key}"
    if key == "name":
        value = check_value(where, value, str, AlgorithmConfig().name)
        from .methods import REGISTRY, get_method, parse_variant
        if value not in REGISTRY and ":" not in value:
            try:                             # a variant: next-fl = next with surrogate fl
                keys = parse_variant(value)
            except ConfigError:
                keys = None
            if keys is not None:
                for k, v in keys.items():
                    _apply_algorithm(a, k, v)
                return
        get_method(value)
        a.name = value
        return
    from .methods.options import check_field
    errors = []
    for _, f, hint in _option_fields()[key]:   # valid for one method that reads it
        try:
            setattr(a, key, check_field(where, value, f, hint))
            return
        except ConfigError as exc:
            errors.append(exc)
    raise errors[0]


def _apply(cfg: Config, section: str, key: str, value: Any) -> None:
    sections = {f.name: f for f in dataclasses.fields(Config)}
    if section not in sections:
        raise ConfigError(f"unknown config section {section!r}{_suggest(section, sections)}")
    obj = getattr(cfg, section)
    hints = _keys(obj)
    if key not in hints:
        raise ConfigError(f"unknown config key '{section}.{key}'"
                          f"{_suggest(key, hints, section + '.')}")
    if section == "algorithm":
        _apply_algorithm(obj, key, value)
        return
    value = check_value(f"{section}.{key}", value, hints[key], getattr(type(obj)(), key))
    if (section, key) == ("model", "name"):
        _check_model_name(value)
    choices = _CHOICES.get((section, key)) or _topology_choices().get((section, key))
    if choices is not None and value not in choices:
        raise ConfigError(f"{section}.{key} = {value!r} is not allowed; "
                          f"{_closest(str(value), choices)}choose one of: {', '.join(choices)}")
    rng = _RANGES.get((section, key))
    if rng is not None and value is not None and not rng[0](value):
        raise ConfigError(f"{section}.{key} must be {rng[1]}, got {value!r}")
    setattr(obj, key, value)


MODELS = ("mlp", "cnn", "transformer")


def _topology_choices() -> dict:
    """The graph and dynamic names :func:`dcnn.topology.make_topology` accepts."""
    from .topology import DIRECTED_GRAPHS, DYNAMICS, GRAPHS
    return {("topology", "graph"): (*GRAPHS, *DIRECTED_GRAPHS),
            ("topology", "dynamic"): tuple(DYNAMICS)}


def _check_model_name(value: str) -> None:
    """A built-in model, or ``"path/to/file.py:Name"`` / ``"package.module:name"``."""
    if value in MODELS or ":" in value:
        return
    raise ConfigError(f"model.name = {value!r} is not allowed; {_closest(value, MODELS)}"
                      f"choose one of: {', '.join(MODELS)}, or your own model as "
                      "'path/to/file.py:ClassOrFactory' or 'package.module:factory'")


def parse_set(item: str) -> tuple[str, str, Any]:
    """``"section.key=value"`` -> ``(section, key, value)``; the value is read as TOML."""
    if "=" not in item or "." not in item.split("=", 1)[0]:
        raise ConfigError(f"--set {item!r} is malformed; write --set section.key=value, "
                          "e.g. --set run.agents=16")
    lhs, raw = item.split("=", 1)
    section, key = lhs.strip().split(".", 1)
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return section, key, value


def load_config(path: str | Path | None = None, overrides: list[str] | tuple = (),
                **sections: dict) -> Config:
    """Defaults, then the TOML file, then ``sections`` (dicts), then ``--set`` overrides."""
    if isinstance(overrides, (str, bytes)) or not isinstance(overrides, (list, tuple)) \
            or not all(isinstance(item, str) for item in overrides):
        raise ConfigError(f"overrides must be a list of 'section.key=value' strings, got "
                          f"{overrides!r}; e.g. overrides=['run.agents=16']")
    cfg = Config()
    if path is not None:
        _merge(cfg, _read_toml(path), str(path))
    _merge(cfg, sections, "arguments")
    for item in overrides:
        _apply(cfg, *parse_set(item))
    return cfg


def _read_toml(path) -> dict:
    """The tables of the TOML file ``path``; any problem with it is one ConfigError line."""
    if not isinstance(path, (str, os.PathLike)):
        raise ConfigError(f"config path must be a string or a path, got {path!r}; give the "
                          "path of a .toml file")
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"config file '{p}' is a directory; give the path of a .toml file")
    if not p.is_file():
        raise ConfigError(f"config file '{p}' does not exist; give the path of a .toml file")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file '{p}' is not UTF-8 text (byte {exc.start}: "
                          f"{exc.reason}); save it as a UTF-8 .toml file") from None
    except OSError as exc:
        raise ConfigError(f"config file '{p}' cannot be read ({exc.strerror}); check that "
                          "it is readable") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        detail = " ".join(str(exc).split())
        raise ConfigError(f"config file '{p}' is not valid TOML: {detail}; fix that line "
                          "(keys are written key = value under [section] headers)") from None


def _merge(cfg: Config, data: dict, origin: str) -> None:
    for section, keys in data.items():
        if not isinstance(keys, dict):
            home = [f.name for f in dataclasses.fields(Config)
                    if section in _keys(getattr(cfg, f.name))]
            fix = f"; write it under [{home[0]}]" if home else \
                f"; sections are {', '.join(f.name for f in dataclasses.fields(Config))}"
            raise ConfigError(f"{origin}: '{section}' must be a section (a table of keys), "
                              f"got {keys!r}{fix}")
        for key, value in keys.items():
            try:
                _apply(cfg, section, key, value)
            except ConfigError as exc:
                if origin == "arguments":
                    raise
                raise ConfigError(f"{origin}: {exc}") from None


def resolve(cfg: Config) -> dict:
    """The complete config as nested plain dicts; the algorithm section holds ``name`` and
    the options of that method (validated; defaults filled in)."""
    return {f.name: resolve_algorithm(cfg.algorithm) if f.name == "algorithm" else
            dataclasses.asdict(getattr(cfg, f.name)) for f in dataclasses.fields(Config)}
