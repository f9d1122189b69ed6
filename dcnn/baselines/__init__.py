"""Parallel-training baselines: PyTorch's own engines (not rewrites) and the other schemes.

- :mod:`~dcnn.baselines.ddp`: data parallel, ``DistributedDataParallel``;
- :mod:`~dcnn.baselines.pipeline`: ``torch.distributed.pipelining`` (GPipe, 1F1B,
  interleaved 1F1B);
- :mod:`~dcnn.baselines.tensor_parallel`: ``torch.distributed.tensor.parallel``;

and the other schemes users compare with (:data:`SCHEMES`), each its own trainer measuring its
traffic with :class:`~dcnn.baselines.traffic.Traffic`:

- :mod:`~dcnn.baselines.sil`: synthetic intermediate labels (parts trained apart, joined);
- :mod:`~dcnn.baselines.codistillation`: online distillation between models on disjoint data;
- :mod:`~dcnn.baselines.local_parallel`: local losses, pipelined forward-only;
- :mod:`~dcnn.baselines.sequence_parallel`: a transformer's tokens over ranks, ring attention;

all in a ``torch.distributed`` group formed by :mod:`~dcnn.baselines.bootstrap` (mpiexec,
torchrun or one process). The engines are trained by the one loop of
:mod:`~dcnn.baselines.engine` on dcnn's objective ``U`` (entry point :func:`train_engine`);
every trainer records the delivered model with :class:`~dcnn.baselines.recorder.Recorder`
(:func:`dcnn.metrics.evaluate` on the pooled problem), so the History columns mean the same as
for the decentralized methods.
"""
from .bootstrap import World, close_world, init_world, process_group
from .costs import bubble_fraction, ring_allreduce_bytes
from .ddp import DDPEngine, rank_agents
from .engine import Engine, compute_gradients, make_evaluator, run_engine
from .pipeline import SCHEDULES, PipelineEngine, split_stages
from .tensor_parallel import TensorParallelEngine, tp_pairs
from .train import METHODS, make_engine, train_engine
from .codistillation import churn, train_codistillation
from .local_parallel import train_local_parallel
from .sequence_parallel import bench_ring, train_sequence_parallel
from .sil import train_sil


# the other parallel schemes, by method name: each trainer takes the keywords of
# train_engine (less method, schedule and microbatches) plus its own (dcnn.runner.SCHEME_KEYS)
SCHEMES = {"sil": train_sil, "codistillation": train_codistillation,
           "local-parallel": train_local_parallel,
           "sequence-parallel": train_sequence_parallel}

__all__ = ["World", "init_world", "close_world", "process_group", "bubble_fraction",
           "ring_allreduce_bytes", "DDPEngine", "rank_agents", "Engine", "compute_gradients",
           "make_evaluator", "run_engine", "SCHEDULES", "PipelineEngine", "split_stages",
           "TensorParallelEngine", "tp_pairs", "METHODS", "make_engine", "train_engine",
           "SCHEMES", "train_sil", "train_codistillation", "churn", "train_local_parallel",
           "train_sequence_parallel", "bench_ring"]
