"""The scheme tier of :mod:`dcnn.baselines`: the parallel schemes PyTorch does not provide,
written on the runtime tier's process group and :class:`~dcnn.baselines.runtime.traffic.
Traffic` (measured bytes), each a :class:`~dcnn.baselines.runtime.trainer.Trainer` run by the
one loop.

- :mod:`.sil` (with :mod:`.sil_codes`): synthetic intermediate labels, parts trained apart
  then joined;
- :mod:`.codistillation` (with :mod:`.codistill_layout`, :mod:`.distillation`): online
  distillation between models on disjoint data;
- :mod:`.local_parallel` (with :mod:`.local_units`): local losses, pipelined forward-only;
- :mod:`.sequence_parallel` (with :mod:`.ring_attention`, :mod:`.ring_bench`): a
  transformer's tokens over ranks, ring attention.
"""
from .codistillation import Codistillation, churn, train_codistillation
from .local_parallel import LocalPipeline, train_local_parallel
from .ring_bench import bench_ring
from .sequence_parallel import SequenceParallel, train_sequence_parallel
from .sil import SIL, train_sil

# the other parallel schemes, by method name: each trainer takes the keywords of
# train_engine (less method, schedule and microbatches) plus its own (their registry
# entries in dcnn.methods.parallel name them)
SCHEMES = {"sil": train_sil, "codistillation": train_codistillation,
           "local-parallel": train_local_parallel,
           "sequence-parallel": train_sequence_parallel}

__all__ = ["SCHEMES", "SIL", "train_sil", "Codistillation", "train_codistillation", "churn",
           "LocalPipeline", "train_local_parallel", "SequenceParallel",
           "train_sequence_parallel", "bench_ring"]
