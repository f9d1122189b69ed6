"""dcnn's log: the ``logging`` logger ``"dcnn"``, one line ``dcnn: ...`` per message on the
standard error of rank 0.

Runs log what they chose and where the results went at ``INFO``; ``dcnn ... --quiet`` (or
``verbose=False`` from Python) says nothing, ``--verbose`` adds ``DEBUG`` lines. Configure
the ``"dcnn"`` logger as any other (``logging.getLogger("dcnn").addHandler(...)``) to send the
lines elsewhere; until it has a handler of yours, dcnn prints them itself.
"""
from __future__ import annotations

import logging
import sys
from collections.abc import Callable

__all__ = ["LOGGER", "run_log", "set_verbosity"]

LOGGER = logging.getLogger("dcnn")


class _Stderr(logging.Handler):
    """Writes to the ``sys.stderr`` of the moment (a test or notebook may swap it)."""

    def emit(self, record: logging.LogRecord) -> None:
        print(self.format(record), file=sys.stderr, flush=True)


_OWN = _Stderr()
_OWN.setFormatter(logging.Formatter("dcnn: %(message)s"))


def set_verbosity(level: int) -> None:
    """The level of the ``"dcnn"`` logger (``logging.DEBUG`` for ``--verbose``)."""
    LOGGER.setLevel(level)


def run_log(enabled: bool) -> Callable[..., None]:
    """What a run logs through, ``log(msg, level=logging.INFO)``: ``LOGGER.log`` when
    ``enabled`` (rank 0, verbose), else nothing. dcnn's own handler is attached while the
    logger has none of the user's."""
    if not enabled:
        return lambda msg, level=logging.INFO: None
    if not [h for h in LOGGER.handlers if h is not _OWN]:
        if _OWN not in LOGGER.handlers:
            LOGGER.addHandler(_OWN)
        LOGGER.propagate = False
    elif _OWN in LOGGER.handlers:
        LOGGER.removeHandler(_OWN)
    if LOGGER.level == logging.NOTSET:
        LOGGER.setLevel(logging.INFO)
    return lambda msg, level=logging.INFO: LOGGER.log(level, msg)
