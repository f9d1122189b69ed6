"""dcnn: decentralized consensus training of neural networks.

The NEXT framework (Di Lorenzo & Scutari 2016) for neural networks (Scardapane & Di Lorenzo
2017): agents hold private shards, solve convex surrogates of their local costs, and mix
iterates and gradient trackers with their neighbours over a sparse, time-varying graph, in one
process or over MPI ranks.
"""
from .errors import (CheckpointError, CommError, CommTimeoutError, ConfigError, DataError,
                     DcnnError, DivergenceError, LaunchError, TopologyError)

__version__ = "0.1.0"

# everything but the errors is imported on first use: `dcnn --help` and `--version` (and an
# `import dcnn` that needs only the errors) do not wait for torch
_LAZY = {**{name: "algorithms" for name in (
             "Centralized", "Constant", "Dgd", "Diminishing", "Extra", "GradientTracking", "Next",
             "NextState", "Polynomial", "PushDiging", "Scaled", "Sonata", "make_schedule",
             "run_loop")},
         "LocalNetwork": "comm", "Network": "comm", "make_network": "comm",
         "Config": "config", "load_config": "config", "History": "metrics",
         "evaluate": "metrics", "FlatModel": "problems", "LocalProblems": "problems",
         "cnn": "problems", "make_regularizer": "problems", "mlp": "problems",
         "centralized_reference": "reference", "FL": "surrogates", "PL": "surrogates",
         "make_surrogate": "surrogates",
         "RunResult": "runner", "local_problems": "runner", "run_experiment": "runner",
         "resume_experiment": "runner", "Experiment": "experiment", "prepare": "prepare",
         "register": "methods", "MethodSpec": "methods", "Supports": "methods",
         "make_topology": "topology", "run_compare": "compare", "train_engine": "baselines",
         "load_run": "saved", "SavedRun": "saved", "DecentralizedClassifier": "estimator",
         "DecentralizedRegressor": "estimator", "TensorBoard": "tensorboard"}


def __getattr__(name):
    import importlib
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    try:                                     # a subpackage: dcnn.problems.mlp after import dcnn
        return importlib.import_module(f".{name}", __name__)
    except ModuleNotFoundError as exc:
        if exc.name != f"{__name__}.{name}":
            raise
    raise AttributeError(f"module 'dcnn' has no attribute {name!r}")


__all__ = ["Constant", "Diminishing", "Next", "NextState", "Polynomial", "make_schedule",
           "Sonata", "Dgd", "GradientTracking", "Extra", "PushDiging", "Centralized", "Scaled",
           "run_compare", "train_engine",
           "run_loop", "LocalNetwork", "Network", "make_network", "Config", "load_config",
           "ConfigError", "DataError", "DcnnError", "TopologyError", "CheckpointError",
           "CommError", "CommTimeoutError", "DivergenceError", "LaunchError",
           "resume_experiment", "History", "evaluate",
           "FlatModel", "LocalProblems", "make_regularizer", "mlp", "cnn",
           "centralized_reference",
           "RunResult", "local_problems", "run_experiment", "FL", "PL", "make_surrogate",
           "make_topology", "Experiment", "prepare", "register", "MethodSpec", "Supports",
           "load_run", "SavedRun", "DecentralizedClassifier", "DecentralizedRegressor",
           "TensorBoard", "__version__"]
