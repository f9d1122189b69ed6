"""No hangs: bounded waits, one-line timeout messages, and ending the whole job on a failure.

Three pieces, kept apart from the exchange code of :mod:`dcnn.comm.mpi`:

- :func:`wait_until` polls a completion test until it succeeds or a deadline passes. It busy
  polls for a short while first (an exchange between healthy ranks finishes in micro- to
  milliseconds, and a busy poll is what a blocking ``MPI_Waitall`` does anyway), then sleeps
  with a growing, capped interval, so a rank waiting for a slow or dead peer leaves the CPU
  to others and still notices completion within ~1 ms.
- :func:`agents_label` and :func:`agent_count_mismatch` build the one-line messages.
- :func:`install_abort_hook` makes an uncaught exception on any rank end the whole MPI job:
  without it, the other ranks would wait forever in their next exchange (or until their
  timeout). It prints the exception once, with the rank, and calls ``MPI_Abort``.
"""
from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable, Sequence

from ..errors import CommError

__all__ = ["wait_until", "check_timeout", "agents_label", "ranks_label", "agent_count_mismatch",
           "install_abort_hook", "SPIN_S", "MAX_SLEEP_S"]

_yield = getattr(os, "sched_yield", lambda: None)
SPIN_S = 0.05          # busy polling before the first sleep (covers every healthy exchange)
YIELD_AFTER_S = 3e-5   # pure spinning first: a healthy exchange on free cores ends sooner
MAX_SLEEP_S = 1e-3     # longest sleep between polls: the latency added to a late message


def wait_until(done: Callable[[], bool], *, timeout: float, spin: float = SPIN_S,
               max_sleep: float = MAX_SLEEP_S, clock: Callable[[], float] = time.monotonic,
               sleep: Callable[[float], None] = time.sleep) -> bool:
    """Call ``done()`` until it returns True (then True) or ``timeout`` seconds pass (False).

    ``done`` is polled back to back for ``spin`` seconds (after the first ``YIELD_AFTER_S``
    giving the core to any runnable process between polls, so a peer queued behind this
    process on an oversubscribed machine runs), then between sleeps that start at 50 us and
    double up to ``max_sleep``. ``timeout = math.inf`` waits forever. ``clock`` and
    ``sleep`` are injectable for tests.
    """
    if done():
        return True
    start = clock()
    deadline, busy_until = start + timeout, start + spin
    polite = start + YIELD_AFTER_S
    delay = 5e-5
    while True:
        if done():
            return True
        now = clock()
        if now >= deadline:
            return False
        if now >= busy_until:
            sleep(min(delay, deadline - now))
            delay = min(2 * delay, max_sleep)
        elif now >= polite:
            # hand the core to a runnable peer: with more ranks than cores the rank this one
            # waits for may be queued behind it (a no-op when nothing else is runnable)
            _yield()


def check_timeout(timeout) -> float:
    """``timeout`` as a float > 0 (``math.inf``: wait forever), or a one-line CommError."""
    try:
        t = float(timeout)
    except (TypeError, ValueError):
        t = math.nan
    if not t > 0:
        raise CommError(f"comm timeout = {timeout!r} is not a positive number of seconds; "
                        f"set run.comm_timeout to e.g. 60 (math.inf waits forever)")
    return t


def agents_label(lo: int, hi: int) -> str:
    """``"agent 3"`` or ``"agents 0-3"`` for the block ``[lo, hi)``."""
    return f"agent {lo}" if hi - lo == 1 else f"agents {lo}-{hi - 1}"


def ranks_label(ranks: Sequence[int]) -> str:
    """``"rank 2"``, ``"ranks 1-3"`` or ``"ranks 0, 2, 5"``."""
    ranks = sorted(ranks)
    if len(ranks) == 1:
        return f"rank {ranks[0]}"
    if ranks == list(range(ranks[0], ranks[-1] + 1)):
        return f"ranks {ranks[0]}-{ranks[-1]}"
    shown = ", ".join(str(r) for r in ranks[:8])
    return f"ranks {shown}" + (f" and {len(ranks) - 8} more" if len(ranks) > 8 else "")


def agent_count_mismatch(counts: Sequence[int]) -> str | None:
    """The one-line message when ranks were started with different agent counts, else None.

    ``counts[r]`` is the number of agents rank ``r`` was given. Ranks with the same count are
    grouped, so the line stays short on many ranks.
    """
    counts = [int(c) for c in counts]
    values = list(dict.fromkeys(counts))     # in order of first appearance
    if len(values) == 1:
        return None
    parts = []
    for v in values:
        rs = [r for r, c in enumerate(counts) if c == v]
        parts.append(f"{ranks_label(rs)} {'has' if len(rs) == 1 else 'have'} {v}")
    return (f"ranks disagree on the number of agents: {', '.join(parts)}; start every rank "
            f"with the same run.agents")


def install_abort_hook(*, rank: int, size: int, grace: float = 2.0) -> bool:
    """Make an uncaught exception on this rank end the whole MPI job (``MPI_Abort``).

    The hook prints ``dcnn: rank R of S failed; ending the job`` and then hands the exception
    to the previous ``sys.excepthook`` (Python's prints the traceback, so the message appears
    once), flushes, and aborts ``MPI.COMM_WORLD`` with status 1. A rank other than 0 waits
    ``grace`` seconds first: an error that every rank hits at once (bad input) is then
    printed by rank 0 only, whose abort ends the others while they wait; a rank that fails
    alone still ends the job after ``grace`` seconds. Installed once per process (later calls
    return False); only useful with more than one rank.
    """
    previous = sys.excepthook
    if getattr(previous, "_dcnn_abort", False):
        return False

    def hook(exc_type, exc, tb):
        if rank != 0 and not issubclass(exc_type, KeyboardInterrupt):
            time.sleep(grace)
        print(f"dcnn: rank {rank} of {size} failed; ending the job (MPI_Abort)",
              file=sys.stderr, flush=True)
        try:
            previous(exc_type, exc, tb)
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            time.sleep(0.5)   # lets the launcher forward the lines before the abort
            from mpi4py import MPI
            MPI.COMM_WORLD.Abort(1)

    hook._dcnn_abort = True
    sys.excepthook = hook
    return True
