"""Seeds and the verdict of a comparison: pure functions on the rows of ``dcnn compare``.

:func:`aggregate` folds one row per method and seed into one row per method: every figure is
the mean over the seeds, with its spread in ``<key>_min`` / ``<key>_max``. A figure *to a
target* (``test_rounds``, ``objective_time_s``, ...) has a mean only when every seed reached
the target (a mean over the seeds that happened to reach it would flatter the method);
``test_reached`` / ``objective_reached`` count the seeds that did. A method that diverged on
some seeds has ``status = "diverged on k of K seeds"`` and its figures over the others.

:func:`verdict` names, per target, the best method by rounds, bytes and loop time among the
contenders (methods that train on a network; the pooled-data reference is left out) that
reached it on every seed, with the ratio of every other contender to it. Rounds are counted
at the resolution of ``run.eval_every``; a tie is reported as one.
"""
from __future__ import annotations

import math
from statistics import mean

__all__ = ["aggregate", "verdict", "format_verdict", "MEASURES", "TARGETS"]

TARGETS = ("test", "objective")
# (row suffix, what the verdict line calls it, unit scale, unit)
MEASURES = (("rounds", "rounds", 1.0, ""), ("bytes_per_agent", "MB per agent", 1e-6, " MB"),
            ("time_s", "loop time", 1.0, " s"))


def _is_target_key(key: str) -> bool:
    """A figure measured *to* a target (``test_rounds``, ``objective_time_s``, ...)."""
    return key.startswith(tuple(f"{t}_" for t in TARGETS)) and not key.endswith("_gap")


def aggregate(per_seed: list[list[dict]], *, figures: tuple[str, ...]) -> list[dict]:
    """One row per method from ``per_seed[s][m]`` (the same methods in the same order for every
    seed); ``figures`` are the numeric keys to fold."""
    if not per_seed:
        raise ValueError("aggregate needs the rows of at least one seed")
    names = [[r["method"] for r in rows] for rows in per_seed]
    if any(n != names[0] for n in names):
        raise ValueError(f"every seed must list the same methods in the same order: {names}")
    K = len(per_seed)
    out = []
    for rows in zip(*per_seed):
        ok = [r for r in rows if r["status"] == "ok"]
        bad = K - len(ok)
        row = {"method": rows[0]["method"], "seeds": K,
               "status": "ok" if not bad else "diverged" if bad == K
               else f"diverged on {bad} of {K} seeds"}
        for key in figures:
            vals = [r[key] for r in ok if r.get(key) is not None]
            whole = len(vals) == K if _is_target_key(key) else bool(vals)
            row[key] = mean(vals) if whole else None
            row[f"{key}_min"] = min(vals) if vals else None
            row[f"{key}_max"] = max(vals) if vals else None
        for t in TARGETS:
            row[f"{t}_reached"] = sum(r.get(f"{t}_rounds") is not None for r in ok)
        out.append(row)
    return out


def verdict(rows: list[dict], *, targets: dict, contenders: list[str],
            measures: tuple = MEASURES) -> dict:
    """``{target: None | {"target", "reached", "not_reached", "by": {measure: ...}}}``; each
    measure: ``best`` (a list: several on a tie), ``value``, ``runner_up``,
    ``ratio_to_runner_up`` and ``ratios`` (every other method that reached the target: its
    figure over the best)."""
    out: dict = {}
    cands = [r for r in rows if r["method"] in contenders]
    for t in TARGETS:
        if targets.get(t) is None:
            out[t] = None
            continue
        reached = [r for r in cands if r["status"] == "ok" and r.get(f"{t}_rounds") is not None]
        entry = {"target": targets[t], "reached": [r["method"] for r in reached],
                 "not_reached": [r["method"] for r in cands if r not in reached],
                 # seeds on which each of those reached it all the same (k of K)
                 "reached_on": {r["method"]: [r.get(f"{t}_reached", 0), r.get("seeds", 1)]
                                for r in cands if r not in reached}, "by": {}}
        for measure, *_ in measures:
            vals = sorted((r[f"{t}_{measure}"], r["method"]) for r in reached
                          if r.get(f"{t}_{measure}") is not None)
            if not vals:
                entry["by"][measure] = None
                continue
            low = vals[0][0]
            best = [m for v, m in vals if v == low]
            rest = [(v, m) for v, m in vals if v != low]

            def ratio(v):
                return v / low if low > 0 else math.inf
            entry["by"][measure] = {
                "best": best, "value": low,
                "runner_up": rest[0][1] if rest else None,
                "ratio_to_runner_up": ratio(rest[0][0]) if rest else None,
                "ratios": {m: ratio(v) for v, m in rest}}
        out[t] = entry
    return out


def _num(x: float, scale: float) -> str:
    return format(x * scale, ".3g")


def format_verdict(result: dict, *, metric: str, seeds: int = 1,
                   measures: tuple = MEASURES) -> str:
    """One line per target: who is best by rounds, bytes and loop time, by how much."""
    lines = []
    means = f", mean of {seeds} seeds" if seeds > 1 else ""
    for t in TARGETS:
        entry = result.get(t)
        if entry is None:
            continue
        what = (f"test {metric} target {entry['target']:.4g}" if t == "test"
                else f"objective target {entry['target']:.4g}")
        if not entry["reached"]:
            lines.append(f"verdict ({what}{means}): no method reached it")
            continue
        parts = []
        for measure, label, scale, unit in measures:
            by = entry["by"].get(measure)
            if by is None:
                continue
            best = " and ".join(by["best"])
            tie = " (tie)" if len(by["best"]) > 1 else ""
            others = ", ".join(f"{m} {r:.2g}x" for m, r in by["ratios"].items())
            parts.append(f"least {label}: {best}{tie} {_num(by['value'], scale)}{unit}"
                         + (f" ({others})" if others else ""))
        line = f"verdict ({what}{means}): " + "; ".join(parts)
        if entry["not_reached"]:
            def why(m):
                got, of = entry.get("reached_on", {}).get(m, (0, 1))
                return f"{m} (reached on {got} of {of} seeds only)" if got else m
            line += f"; not reached: {', '.join(map(why, entry['not_reached']))}"
        lines.append(line)
    return "\n".join(lines)
