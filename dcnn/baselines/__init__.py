"""Parallel-training baselines on PyTorch's own engines (not rewrites).

- :mod:`~dcnn.baselines.ddp`: data parallel, ``DistributedDataParallel``;
- :mod:`~dcnn.baselines.pipeline`: ``torch.distributed.pipelining`` (GPipe, 1F1B,
  interleaved 1F1B);
- :mod:`~dcnn.baselines.tensor_parallel`: ``torch.distributed.tensor.parallel``;

all in a ``torch.distributed`` group formed by :mod:`~dcnn.baselines.bootstrap` (mpiexec,
torchrun or one process), trained by the one loop of :mod:`~dcnn.baselines.engine` on dcnn's
objective ``U`` and measured with :func:`dcnn.metrics.evaluate`, so the History columns mean
the same as for the decentralized methods. :func:`train_engine` is the entry point.
"""
from .bootstrap import World, close_world, init_world, process_group
from .costs import bubble_fraction, ring_allreduce_bytes
from .ddp import DDPEngine, rank_agents
from .engine import Engine, compute_gradients, make_evaluator, run_engine
from .pipeline import SCHEDULES, PipelineEngine, split_stages
from .tensor_parallel import TensorParallelEngine, tp_pairs
from .train import METHODS, make_engine, train_engine

__all__ = ["World", "init_world", "close_world", "process_group", "bubble_fraction",
           "ring_allreduce_bytes", "DDPEngine", "rank_agents", "Engine", "compute_gradients",
           "make_evaluator", "run_engine", "SCHEDULES", "PipelineEngine", "split_stages",
           "TensorParallelEngine", "tp_pairs", "METHODS", "make_engine", "train_engine"]
