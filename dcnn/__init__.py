"""dcnn: decentralized consensus training of neural networks.

The NEXT framework (Di Lorenzo & Scutari 2016) for neural networks (Scardapane & Di Lorenzo
2017): agents hold private shards, solve convex surrogates of their local costs, and mix
iterates and gradient trackers with their neighbours over a sparse, time-varying graph, in one
process or over MPI ranks.
"""
from .algorithms import (Centralized, Constant, Dgd, Diminishing, Extra, GradientTracking, Next,
                         NextState, Polynomial, PushDiging, Scaled, Sonata, make_schedule,
                         run_loop)
from .comm import LocalNetwork, Network, make_network
from .config import Config, load_config
from .errors import (CheckpointError, CommError, CommTimeoutError, ConfigError, DataError,
                     DcnnError, DivergenceError, LaunchError, TopologyError)
from .metrics import History, evaluate
from .problems import FlatModel, LocalProblems, cnn, make_regularizer, mlp
from .reference import centralized_reference
from .surrogates import FL, PL, make_surrogate

__version__ = "0.1.0"

_LAZY = {"RunResult": "runner", "local_problems": "runner", "run_experiment": "runner",
         "resume_experiment": "runner", "Experiment": "experiment", "prepare": "prepare",
         "register": "methods", "MethodSpec": "methods", "Supports": "methods",
         "make_topology": "topology", "run_compare": "compare", "train_engine": "baselines",
         "load_run": "saved", "SavedRun": "saved", "DecentralizedClassifier": "estimator",
         "DecentralizedRegressor": "estimator"}


def __getattr__(name):
    # the runner pulls in datasets and topologies; import them on first use only
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
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
           "__version__"]
