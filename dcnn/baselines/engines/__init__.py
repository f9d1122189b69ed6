"""The engine tier of :mod:`dcnn.baselines`: PyTorch's own parallel engines, not rewrites.

- :mod:`.ddp`: data parallel, ``DistributedDataParallel``;
- :mod:`.pipeline`: ``torch.distributed.pipelining`` (GPipe, 1F1B, interleaved 1F1B), and
  PTD-P (the pipeline with tensor and data parallelism on a 3-D device mesh);
- :mod:`.tensor_parallel`: ``torch.distributed.tensor.parallel``, with the plans of
  :mod:`.tp_layouts` (MLP pairs; transformer attention by heads, sequence parallelism);
- :mod:`.engine`: the :class:`Engine` interface they implement and :class:`EngineTrainer`,
  which trains any of them with the one loop of :mod:`dcnn.baselines.runtime.trainer`;
- :mod:`.train`: the entry point :func:`train_engine`.
"""
from .ddp import DDPEngine, rank_agents
from .engine import Engine, EngineTrainer, compute_gradients, run_engine
from .pipeline import SCHEDULES, PipelineEngine, PTDPEngine, auto_microbatches, split_stages
from .tensor_parallel import TensorParallelEngine
from .tp_layouts import tp_layout, tp_pairs
from .train import METHODS, make_engine, train_engine

__all__ = ["DDPEngine", "rank_agents", "Engine", "EngineTrainer", "compute_gradients",
           "run_engine", "SCHEDULES", "PipelineEngine", "PTDPEngine", "auto_microbatches",
           "split_stages", "TensorParallelEngine", "tp_layout", "tp_pairs", "METHODS",
           "make_engine", "train_engine"]
