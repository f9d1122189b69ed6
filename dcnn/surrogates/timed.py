"""The local solver's share of a run: a surrogate that adds the seconds of its local steps to
a :class:`Stopwatch`, which the runner reads after the loop (``summary.json``:
``local_solve_s`` and ``local_solve_share``). A measuring instrument like the network's byte
counters: it changes no result, and the algorithm's state stays free of clock readings (a
resumed run's state equals the uninterrupted run's bit for bit)."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

__all__ = ["Stopwatch", "Timed"]


@dataclass
class Stopwatch:
    """Seconds and calls added up by :class:`Timed`."""

    seconds: float = 0.0
    calls: int = 0


@dataclass(frozen=True)
class Timed:
    """``surrogate`` with its ``update`` (the local step of every agent of the group) timed
    into ``watch``; every other attribute is the surrogate's own."""

    surrogate: object
    # an instrument, not configuration: out of equality, hashing and repr
    watch: Stopwatch = field(default_factory=Stopwatch, compare=False, repr=False)

    def init_memory(self, *args, **kwargs):
        return self.surrogate.init_memory(*args, **kwargs)

    def update(self, *args, **kwargs):
        start = time.perf_counter()
        try:
            return self.surrogate.update(*args, **kwargs)
        finally:
            self.watch.seconds += time.perf_counter() - start
            self.watch.calls += 1

    def __getattr__(self, name: str):
        # only reached for names Timed lacks; "surrogate" itself is missing while copy or
        # pickle rebuild the object, and dunder lookups must not reach the surrogate
        if name == "surrogate" or name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.surrogate, name)
