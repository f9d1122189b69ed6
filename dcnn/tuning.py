"""Step-size tuning for ``dcnn compare --tune``: a method's grid, and the choice among its points.

A grid is one ``algorithm`` key and its values, either given with the method
(``gt:alpha0=0.1|0.25|0.5|1``: the values as written) or the method's default
(:meth:`dcnn.methods.MethodSpec.step_grid`: a key and *factors* of the number the method
resolves from ``"auto"``, ``lr`` for the gradient methods and the trainers, ``tau`` for NEXT
and SONATA). A relative grid reads that number by building the method on the first seed's
experiment and multiplies it, so the grid is centred on the automatic choice whatever the
problem's scale; the point of factor 1 is the method's default as it runs (``"auto"``, with
NEXT's raise of ``tau`` during the run), the others fix the value. When the best point is an
end of a relative grid of 3 or more points, the grid is extended past it by factors of 2 (up
to :data:`EXTEND` more points) while that improves the choice, so a choice at an end is
reported (``at_edge``) only when the extension ran out.

The choice (:func:`choose`) looks at the training objective only, never at the test set: the
lowest final objective (``dcnn compare`` runs every point on every seed and gives the mean; a
point that diverged on any seed is out: choosing on one seed picked steps at the edge of
stability that diverged on the next) among the points that did not diverge; a tie (within
``1e-9`` relative) goes to the fewest rounds to the objective target, then to the earlier
point.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from .config import parse_set
from .errors import ConfigError

__all__ = ["Grid", "split_grid", "choose", "TIE", "EXTEND"]

TIE = 1e-9   # relative difference of two final objectives that counts as a tie
EXTEND = 4   # a relative grid grows past its best end by at most this many factors of 2


@dataclass(frozen=True)
class Grid:
    """``values`` of ``algorithm.key``; factors of the resolved ``"auto"`` value when
    ``relative``."""

    key: str
    values: tuple
    relative: bool = False

    def __post_init__(self):
        if not self.values:
            raise ConfigError(f"the grid over {self.key!r} is empty; give at least one value")
        same = [float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else repr(v)
                for v in self.values]                     # 1 and 1.0 are one value
        if len(set(same)) != len(self.values):
            raise ConfigError(f"the grid over {self.key!r} lists a value twice: "
                              f"{'|'.join(map(str, self.values))}")
        if self.relative and not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                     and math.isfinite(v) and v > 0 for v in self.values):
            raise ConfigError(f"the factors of the grid over {self.key!r} must be positive "
                              f"numbers, got {self.values!r}")

    def describe(self) -> str:
        vals = "|".join(f"{v:g}" if isinstance(v, float) else str(v) for v in self.values)
        return f"{self.key} = {vals}" + (" x its automatic value" if self.relative else "")


def split_grid(spec: str) -> tuple[str, Grid | None]:
    """``"gt:alpha0=0.1|0.25:schedule=constant"`` -> ``("gt:schedule=constant",
    Grid("alpha0", (0.1, 0.25)))``; a spec without ``|`` comes back unchanged with ``None``.
    One key per method may carry a grid."""
    variant, *pairs = spec.split(":")
    grids = [p for p in pairs if "|" in p]
    if not grids:
        return spec, None
    if len(grids) > 1:
        keys = ", ".join(p.split("=", 1)[0] for p in grids)
        raise ConfigError(f"method {spec!r} has grids over several keys ({keys}); tune one "
                          "key per method, e.g. gt:alpha0=0.1|0.25|0.5")
    key, sep, text = grids[0].partition("=")
    pieces = [t.strip() for t in text.split("|")]
    if not sep or not key.strip() or any(not t for t in pieces):
        raise ConfigError(f"method {spec!r}: {grids[0]!r} is not key=value|value|...; write "
                          "e.g. gt:alpha0=0.1|0.25|0.5")
    values = tuple(parse_set(f"algorithm.{key.strip()}={t}")[2] for t in pieces)
    base = ":".join([variant, *(p for p in pairs if p is not grids[0])])
    return base, Grid(key.strip(), values)


def choose(points: list[dict]) -> int | None:
    """The index of the chosen point, or ``None`` when every point diverged. A point is a
    dict with ``status`` (``"ok"`` or not), ``final_objective`` and ``objective_rounds``
    (``None``: the objective target was not reached)."""
    ok = [i for i, p in enumerate(points) if p["status"] == "ok"
          and p["final_objective"] is not None and math.isfinite(p["final_objective"])]
    if not ok:
        return None
    best = min(points[i]["final_objective"] for i in ok)
    tied = [i for i in ok if points[i]["final_objective"] <= best + TIE * abs(best)]
    return min(tied, key=lambda i: (math.inf if points[i]["objective_rounds"] is None
                                    else points[i]["objective_rounds"], i))
