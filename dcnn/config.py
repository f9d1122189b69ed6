"""Run configuration: five sections of typed keys, read from TOML and ``--set`` overrides.

Every key has a default, so an empty config is the default experiment. Unknown sections or
keys are refused with the closest valid name, wrong types (and NaN/inf numbers) with the key,
the bad value and an example, out-of-range values and unknown choices with what is expected. :func:`resolve` returns the complete, validated
config as plain nested dicts (what ``config.json`` of a run holds).
"""
from __future__ import annotations

import dataclasses
import difflib
import math
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

__all__ = ["Config", "RunConfig", "DataConfig", "ModelConfig", "TopologyConfig",
           "AlgorithmConfig", "load_config", "parse_set", "resolve"]


@dataclass
class RunConfig:
    agents: int = 8
    iterations: int = 300
    seed: int = 0
    eval_every: int = 10
    dtype: str = "float64"
    backend: str = "auto"
    threads: int = 0
    progress: bool = True
    reference: bool = True
    comm_timeout: float = 60.0
    checkpoint_every: int = 0


@dataclass
class DataConfig:
    name: str = "breast_cancer"
    partition: str = "iid"
    beta: float = 0.5
    test_fraction: float = 0.2
    task: str = "auto"
    target_column: int = -1
    standardize: bool = True


@dataclass
class ModelConfig:
    name: str = "mlp"
    hidden: list = field(default_factory=lambda: [10])
    activation: str = "tanh"
    loss: str = "squared"
    regularizer: str = "l2"
    lam: float = 1e-3
    l1_ratio: float = 0.5
    tokens: int = 8
    d_model: int = 16
    heads: int = 2
    ffn: int = 32


@dataclass
class TopologyConfig:
    graph: str = "erdos_renyi"
    dynamic: str = "link_failure"
    weights: str = "auto"
    B: int = 10
    p: float | None = None
    radius: float | None = None
    k: int | None = None
    p_rewire: float | None = None
    rows: int | None = None
    p_fail: float | None = None
    parts: int | None = None
    period: int | None = None
    cutoff_agent: int | None = None
    cutoff_start: int | None = None
    cutoff_length: int | None = None


@dataclass
class AlgorithmConfig:
    name: str = "next"
    surrogate: str = "pl"
    tau: float | str = "auto"
    lr: float | str = "auto"
    optimizer: str = "auto"
    schedule: str = "auto"
    alpha0: float = 0.5
    eps: float = 0.01
    power: float = 0.6
    solver: str = "auto"
    inner_tol: float = 1e-6
    inner_iters: int = 500
    batch_size: int = 0
    threads: int = 1
    blocks: str = "layer"
    n_blocks: int | None = None
    block_fraction: float = 1.0
    pipeline_schedule: str = "gpipe"
    microbatches: int = 0
    stages: int = 0
    sil_noise: float = 0.1
    recovery: int = 0
    models: int = 2
    exchange_every: int = 50
    burn_in: int = 100
    distill_weight: float = 1.0
    local_mode: str = "greedy"
    chunk: int = 2


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
    ("algorithm", "name"): ("next", "sonata", "dgd", "dsgd", "gt", "extra", "push-diging",
                            "centralized", "ddp", "pipeline", "tensor-parallel", "sil",
                            "codistillation", "local-parallel", "sequence-parallel"),
    ("algorithm", "local_mode"): ("greedy", "overlapping", "chunked"),
    ("model", "name"): ("mlp", "transformer"),
    ("algorithm", "optimizer"): ("auto", "lbfgs", "gd", "adam"),
    ("algorithm", "pipeline_schedule"): ("gpipe", "1f1b", "interleaved"),
    ("algorithm", "surrogate"): ("fl", "pl"),
    ("algorithm", "schedule"): ("auto", "diminishing", "constant", "polynomial"),
    ("algorithm", "solver"): ("auto", "cholesky", "woodbury", "cg"),
    ("algorithm", "blocks"): ("layer", "neuron", "random"),
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
    ("run", "threads"): (lambda v: v >= 0, ">= 0 (0 = automatic)"),
    ("run", "comm_timeout"): (lambda v: v > 0, "> 0 (seconds)"),
    ("run", "checkpoint_every"): (lambda v: v >= 0, ">= 0 (0 = no checkpoints)"),
    ("data", "beta"): (lambda v: v > 0, "> 0"),
    ("data", "test_fraction"): (lambda v: 0 <= v < 1, "in [0, 1)"),
    ("model", "lam"): (lambda v: v >= 0, ">= 0"),
    ("model", "l1_ratio"): (lambda v: 0 <= v <= 1, "in [0, 1]"),
    ("model", "hidden"): (lambda v: all(h >= 1 for h in v),
                          "a list of layer widths >= 1 (e.g. [10, 10]; [] for a linear model)"),
    ("topology", "B"): (lambda v: v >= 1, ">= 1"),
    ("algorithm", "tau"): (lambda v: v == "auto" or (not isinstance(v, str) and v > 0),
                           "> 0 or \"auto\""),
    ("algorithm", "lr"): (lambda v: v == "auto" or (not isinstance(v, str) and v > 0),
                          "> 0 or \"auto\""),
    ("algorithm", "alpha0"): (lambda v: 0 < v <= 1, "in (0, 1]"),
    ("algorithm", "eps"): (lambda v: 0 < v < 1, "in (0, 1)"),
    ("algorithm", "power"): (lambda v: 0.5 < v <= 1, "in (0.5, 1]"),
    ("algorithm", "inner_tol"): (lambda v: v > 0, "> 0"),
    ("algorithm", "inner_iters"): (lambda v: v >= 1, ">= 1"),
    ("algorithm", "batch_size"): (lambda v: v >= 0, ">= 0 (0 = the whole shard)"),
    ("algorithm", "threads"): (lambda v: v >= 1, ">= 1"),
    ("algorithm", "n_blocks"): (lambda v: v >= 1, ">= 1"),
    ("algorithm", "block_fraction"): (lambda v: 0 < v <= 1, "in (0, 1]"),
    ("algorithm", "microbatches"): (lambda v: v >= 0, ">= 0 (0 = automatic)"),
    ("algorithm", "stages"): (lambda v: v >= 0, ">= 0 (0 = automatic)"),
    ("algorithm", "sil_noise"): (lambda v: v >= 0, ">= 0"),
    ("algorithm", "recovery"): (lambda v: v >= 0, ">= 0"),
    ("algorithm", "models"): (lambda v: v >= 2, ">= 2"),
    ("algorithm", "exchange_every"): (lambda v: v >= 1, ">= 1"),
    ("algorithm", "burn_in"): (lambda v: v >= 0, ">= 0"),
    ("algorithm", "distill_weight"): (lambda v: v >= 0, ">= 0"),
    ("algorithm", "chunk"): (lambda v: v >= 1, ">= 1"),
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


def _closest(value: str, valid) -> str:
    close = difflib.get_close_matches(value, list(valid), n=1)
    return f"did you mean {close[0]!r}? " if close else ""


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    return repr(value)


def _check_type(where: str, value: Any, hint, default: Any = None) -> Any:
    """``value`` converted to the key's type, or a ConfigError naming it and an example."""
    text = str(hint)
    example = "" if default is None else f"; e.g. {where} = {_toml(default)}"
    if "list" in text:
        if isinstance(value, (list, tuple)) and all(isinstance(v, int) and not isinstance(v, bool)
                                                     for v in value):
            return list(value)
        raise ConfigError(f"{where} must be a list of integers, got {value!r}{example}")
    if value is None and "None" in text:
        return None
    if "bool" in text:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where} must be true or false, got {value!r}{example}")
    if "int" in text and "float" not in text:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{where} must be an integer, got {value!r}{example}")
    if "float" in text:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise ConfigError(f"{where} must be a finite number, got {value!r}{example}")
            return float(value)
        if "str" in text and isinstance(value, str):
            return value
        raise ConfigError(f"{where} must be a number, got {value!r}{example}")
    if isinstance(value, str):
        return value
    raise ConfigError(f"{where} must be a string, got {value!r}{example}")


def _apply(cfg: Config, section: str, key: str, value: Any) -> None:
    sections = {f.name: f for f in dataclasses.fields(Config)}
    if section not in sections:
        raise ConfigError(f"unknown config section {section!r}{_suggest(section, sections)}")
    obj = getattr(cfg, section)
    hints = get_type_hints(type(obj))
    if key not in hints:
        raise ConfigError(f"unknown config key '{section}.{key}'"
                          f"{_suggest(key, hints, section + '.')}")
    value = _check_type(f"{section}.{key}", value, hints[key],
                        getattr(type(obj)(), key))
    choices = _CHOICES.get((section, key))
    if choices is not None and value not in choices:
        raise ConfigError(f"{section}.{key} = {value!r} is not allowed; "
                          f"{_closest(str(value), choices)}choose one of: {', '.join(choices)}")
    rng = _RANGES.get((section, key))
    if rng is not None and value is not None and not rng[0](value):
        raise ConfigError(f"{section}.{key} must be {rng[1]}, got {value!r}")
    setattr(obj, key, value)


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
                    if section in get_type_hints(type(getattr(cfg, f.name)))]
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
    """The complete config as nested plain dicts."""
    return dataclasses.asdict(cfg)
