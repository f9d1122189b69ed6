"""Link churn on top of any graph sequence: one agent cut off for a window of iterations.

``cut_off(seq, agent=a, start=t0, length=L)`` is ``seq`` except that for ``t`` in
``[t0, t0 + L)`` every link of agent ``a`` (both directions) is gone: the topology's weight
rule then gives ``a`` only its self loop (``W[a, a] = 1``, row and column ``a`` zero
elsewhere) and reweighs the others on the remaining graph. Like every sequence it is a pure
function of ``(seed, t)``, directed when ``seq`` is. Per-iteration link failures are the
``link_failure`` dynamic (:class:`~dcnn.topology.dynamic.LinkFailures`).

Whether the run still converges is the B-connectivity check's call
(:mod:`~dcnn.topology.connectivity`): with the aligned windows ``[kB, (k+1)B)`` a cut-off
shorter than ``B`` never covers a whole window, so it breaks B-connectivity only where the
rest of a window leaves the agent unlinked (e.g. its links failed there too).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import TopologyError
from .connectivity import Disconnection, links_at
from .dynamic import GraphSequence

__all__ = ["CUTOFF_KEYS", "CutOff", "cut_off", "check_cutoff"]

#: The ``make_topology`` parameters (and ``topology.*`` config keys) of a cut-off window.
CUTOFF_KEYS: tuple[str, ...] = ("cutoff_agent", "cutoff_start", "cutoff_length")


def _int(key: str, value: Any, minimum: int, maximum: int | None = None) -> int:
    ok = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
    if ok and value >= minimum and (maximum is None or value <= maximum):
        return int(value)
    bound = f"in {minimum}..{maximum}" if maximum is not None else f">= {minimum}"
    raise TopologyError(f"topology.{key} must be an integer {bound}, got {value!r}")


def check_cutoff(*, n: int, cutoff_agent=None, cutoff_start=None, cutoff_length=None
                 ) -> tuple[int, int, int] | None:
    """``(agent, start, length)`` of a valid cut-off window on ``n`` agents, None if all three
    are None; a one-line error naming the key otherwise (all three or none; ``0 <= agent <
    n``, ``start >= 0``, ``length >= 1``)."""
    given = {"cutoff_agent": cutoff_agent, "cutoff_start": cutoff_start,
             "cutoff_length": cutoff_length}
    missing = [k for k, v in given.items() if v is None]
    if len(missing) == 3:
        return None
    if missing:
        have = ", ".join(f"topology.{k}" for k in given if k not in missing)
        raise TopologyError(f"a cut-off window needs topology.cutoff_agent, cutoff_start and "
                            f"cutoff_length together; {have} given without "
                            f"topology.{missing[0]}: set it too, or unset all three")
    return (_int("cutoff_agent", cutoff_agent, 0, n - 1),
            _int("cutoff_start", cutoff_start, 0),
            _int("cutoff_length", cutoff_length, 1))


@dataclass(frozen=True)
class CutOff(GraphSequence):
    """The sequence ``inner`` with every link (edge, or arc in either direction) of ``agent``
    removed over ``[start, start + length)``."""

    inner: Any
    agent: int
    start: int
    length: int
    static = False
    regular = False

    @property
    def n(self) -> int:
        return self.inner.n

    @property
    def directed(self) -> bool:
        return bool(getattr(self.inner, "directed", False))

    @property
    def stop(self) -> int:
        return self.start + self.length

    def active(self, t: int) -> bool:
        """Whether agent ``agent`` is cut off at iteration ``t``."""
        return self.start <= t < self.stop

    def edges(self, t: int) -> np.ndarray:
        links = links_at(self.inner, t)
        if not self.active(t):
            return links
        return links[(links[:, 0] != self.agent) & (links[:, 1] != self.agent)]

    def graph_key(self, t: int):
        key = getattr(self.inner, "graph_key", None)
        key = key(t) if key is not None else None
        return None if key is None else (key, self.active(t))

    def connectivity_fix(self, d: Disconnection) -> str | None:
        """The fix when the cut-off is what isolates the agent in window ``d``."""
        if d.static or self.agent not in d.agents or not (d.start < self.stop
                                                           and self.start < d.stop):
            return None
        span = f"agent {self.agent} is cut off over iterations {self.start}..{self.stop - 1}"
        if self.start <= d.start and d.stop <= self.stop:
            return (f"{span}, the whole window; make topology.cutoff_length < B (now "
                    f"{self.length} >= {d.B}), or raise topology.B")
        return (f"{span} and has no link in the rest of that window; shorten "
                f"topology.cutoff_length, move topology.cutoff_start, or raise topology.B")


def cut_off(seq, *, agent: int, start: int, length: int) -> CutOff:
    """``seq`` with ``agent`` cut off for iterations ``[start, start + length)``.

    >>> from dcnn.topology import make_graph, make_sequence
    >>> seq = cut_off(make_sequence("static", make_graph("ring", 4)), agent=0, start=2,
    ...               length=3)
    >>> seq.edges(1).tolist(), seq.edges(2).tolist()
    ([[0, 1], [0, 3], [1, 2], [2, 3]], [[1, 2], [2, 3]])
    """
    agent, start, length = check_cutoff(n=seq.n, cutoff_agent=agent, cutoff_start=start,
                                        cutoff_length=length)
    return CutOff(seq, agent, start, length)
