"""Parallel-training baselines: PyTorch's own engines (not rewrites) and the other schemes,
in three tiers:

- :mod:`~dcnn.baselines.runtime`: the ``torch.distributed`` process group (mpiexec, torchrun
  or one process), :class:`~dcnn.baselines.runtime.traffic.Traffic` (measured bytes), computed
  costs, dcnn's objective and the one update (regulariser gradient, optimiser step, prox), the
  :class:`~dcnn.baselines.runtime.recorder.Recorder` of the History, and the
  :class:`Trainer` interface with the one loop :func:`run_trainer`;
- :mod:`~dcnn.baselines.engines`: data parallel (``DistributedDataParallel``), pipeline
  (``torch.distributed.pipelining``: GPipe, 1F1B, interleaved 1F1B) and tensor parallel
  (``torch.distributed.tensor.parallel``), entry point :func:`train_engine`;
- :mod:`~dcnn.baselines.schemes` (:data:`SCHEMES`): synthetic intermediate labels,
  codistillation, local parallelism and sequence parallelism with ring attention.

Every engine and scheme is a :class:`Trainer` (``step(t)``, ``parameters()``,
``bytes_sent``, ``info()``) trained by :func:`run_trainer` on dcnn's objective ``U``, which
records the delivered model with :func:`dcnn.metrics.evaluate` on the pooled problem, so the
History columns mean the same as for the decentralized methods.
"""
from .engines import (METHODS, SCHEDULES, DDPEngine, Engine, EngineTrainer, PipelineEngine,
                      PTDPEngine, TensorParallelEngine, auto_microbatches, compute_gradients,
                      make_engine, rank_agents, run_engine, split_stages, tp_layout, tp_pairs,
                      train_engine)
from .runtime import (Trainer, World, bubble_fraction, close_world, init_world, make_evaluator,
                      process_group, ring_allreduce_bytes, run_trainer)
from .schemes import (SCHEMES, bench_ring, churn, train_codistillation, train_local_parallel,
                      train_sequence_parallel, train_sil)

__all__ = ["World", "init_world", "close_world", "process_group", "bubble_fraction",
           "ring_allreduce_bytes", "DDPEngine", "rank_agents", "Engine", "compute_gradients",
           "make_evaluator", "run_engine", "SCHEDULES", "PipelineEngine", "PTDPEngine",
           "split_stages", "auto_microbatches", "TensorParallelEngine", "tp_layout", "tp_pairs",
           "METHODS",
           "make_engine", "train_engine", "SCHEMES", "train_sil", "train_codistillation", "churn",
           "train_local_parallel", "train_sequence_parallel", "bench_ring", "Trainer",
           "run_trainer", "EngineTrainer"]
