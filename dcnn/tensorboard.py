"""TensorBoard scalars of a run, written as it trains.

:class:`TensorBoard` is a callback (``run_experiment(cfg, callbacks=[TensorBoard(DIR)])``,
``Experiment.run(callbacks=...)``, ``dcnn run --tensorboard DIR``): at every evaluation it
writes each numeric entry of the record (objective, gradient norm, consensus error, train and
test metric, bytes per agent, step size, times, and the columns other callbacks add) as a
scalar at step ``iteration``, on rank 0 only, and flushes, so ``tensorboard --logdir DIR``
shows a run while it runs. It writes the columns of the callbacks listed before it. It needs the ``tensorboard`` package (``pip install tensorboard``;
the ``test`` extra brings it); without it the callback is refused in one line when made.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

from .errors import ConfigError

__all__ = ["TensorBoard"]


def _rank() -> int:
    """This process's rank: MPI's once mpi4py has started it (any launcher), else the
    launcher's or torchrun's variables (0 alone)."""
    import sys
    mpi = sys.modules.get("mpi4py.MPI")
    if mpi is not None and mpi.Is_initialized() and not mpi.Is_finalized():
        return mpi.COMM_WORLD.Get_rank()
    from .comm import launcher_rank
    return launcher_rank()


class TensorBoard:
    """Write every evaluation's metrics into the TensorBoard folder ``logdir`` (rank 0)."""

    def __init__(self, logdir: str | os.PathLike, *, rank: int | None = None):
        if not isinstance(logdir, (str, os.PathLike)) or not str(logdir):
            raise ConfigError(f"tensorboard folder must be a path, got {logdir!r}; e.g. "
                              "runs/tensorboard")
        if Path(logdir).exists() and not Path(logdir).is_dir():
            raise ConfigError(f"tensorboard folder '{logdir}' is a file; give a folder")
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ConfigError("writing TensorBoard scalars needs the tensorboard package; "
                              "pip install tensorboard") from None
        if rank is None:
            rank = _rank()
        self.logdir, self._rank, self._make = Path(logdir), rank, SummaryWriter
        self._writer = None                  # made at the first evaluation: a run refused
                                             # before it starts leaves no file

    def __call__(self, state, record: dict) -> None:
        if self._rank != 0:
            return None
        if self._writer is None:
            self._writer = self._make(log_dir=str(self.logdir))
        step = int(record["iteration"])
        for key, value in record.items():
            if key != "iteration" and isinstance(value, (int, float)) \
                    and not isinstance(value, bool) and math.isfinite(value):
                self._writer.add_scalar(key, float(value), step)
        self._writer.flush()
        return None

    def close(self) -> None:
        """Close the event file (also done when the process ends)."""
        if self._writer is not None:
            self._writer.close()
