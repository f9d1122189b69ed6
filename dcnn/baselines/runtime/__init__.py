"""The runtime tier of :mod:`dcnn.baselines`: what every engine and scheme stands on.

- :mod:`.bootstrap`: the ``torch.distributed`` process group (mpiexec, torchrun, one process);
- :mod:`.traffic`: ``torch.distributed`` operations that count the bytes a rank sends;
- :mod:`.costs`: bytes and bubbles computed from a scheme;
- :mod:`.objective`, :mod:`.checks`, :mod:`.update`: dcnn's objective on local tensors, the
  input checks, and the one update (regulariser gradient, optimiser step, prox);
- :mod:`.recorder`: the History (evaluations of the delivered model);
- :mod:`.trainer`: the :class:`Trainer` interface and the one loop :func:`run_trainer`.
"""
from .bootstrap import DEFAULT_TIMEOUT, World, close_world, init_world, process_group
from .checks import TASKS, as_int, check_batch_size, check_regularizer, check_trainer_inputs
from .costs import bubble_fraction, ring_allreduce_bytes
from .objective import as_tensors, batch_rows, pool, weighted_loss
from .recorder import Recorder, busiest, make_evaluator, per_rank
from .traffic import Traffic
from .trainer import Trainer, run_trainer, train_in_world
from .update import (OPTIMIZERS, add_regularizer_grad_, apply_update, local_tensor,
                     make_optimizer, prox_, smooth_part)

__all__ = ["DEFAULT_TIMEOUT", "World", "close_world", "init_world", "process_group", "TASKS",
           "as_int", "check_batch_size", "check_regularizer", "check_trainer_inputs",
           "bubble_fraction", "ring_allreduce_bytes", "as_tensors", "batch_rows", "pool",
           "weighted_loss", "Recorder", "busiest", "make_evaluator", "per_rank", "Traffic",
           "Trainer", "run_trainer", "train_in_world", "OPTIMIZERS", "add_regularizer_grad_",
           "apply_update", "local_tensor", "make_optimizer", "prox_", "smooth_part"]
