"""The tables and figures of a comparison (``dcnn compare``): the text table it prints,
``compare.md`` and ``compare.png``; pure functions of its rows and histories."""
from __future__ import annotations

import math
import warnings
from pathlib import Path

from .metrics import History
from .report import log_axis, plottable

__all__ = ["format_compare", "markdown_compare", "plot_compare"]


def _fmt(x, spec=".4g") -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return format(x, spec)


def reach_cell(r: dict, key: str, spec: str, scale: float = 1.0) -> str:
    """A figure to a target: its mean, or "k/K" when only k of the K seeds reached it."""
    v = r.get(key)
    if v is not None:
        return _fmt(v * scale, spec)
    got = r.get(f"{key.split('_')[0]}_reached") or 0
    return f"{got}/{r['seeds']}" if r.get("seeds", 1) > 1 and got else "-"


def format_compare(rows: list[dict], *, targets: dict, metric: str) -> str:
    """The comparison as an aligned text table (means over the seeds; a figure to a target
    that only some seeds reached shows how many did)."""
    head = ("method", "objective", "U/U_ref-1", f"test {metric}", "consensus",
            "rounds@test", "MB@test", "s@test", "rounds@obj", "MB@obj", "s@obj")
    tuned = any(r.get("setting") for r in rows)
    if tuned:
        head += ("tuned",)
    body = []
    for r in rows:
        if r["status"] == "diverged":
            cells = (r["method"], "diverged", *["-"] * (len(head) - 2 - tuned))
        else:
            cells = (r["method"] + ("*" if r["status"] != "ok" else ""),
                     _fmt(r["final_objective"]), _fmt(r["objective_gap"], ".2e"),
                     _fmt(r["final_test_metric"]), _fmt(r["final_consensus_error"], ".1e"),
                     *(c for t in ("test", "objective") for c in (
                         reach_cell(r, f"{t}_rounds", ".0f"),
                         reach_cell(r, f"{t}_bytes_per_agent", ".4g", 1e-6),
                         reach_cell(r, f"{t}_time_s", ".3g"))))
        body.append(cells + ((r.get("setting") or "default",) if tuned else ()))
    widths = [max(len(x[k]) for x in (head, *body)) for k in range(len(head))]
    lines = ["  ".join(x[k].ljust(widths[k]) for k in range(len(head))) for x in (head, *body)]
    seeds = max((r.get("seeds", 1) for r in rows), default=1)
    lines.append(f"targets: test {metric} {_fmt(targets['test'])}; objective "
                 f"{_fmt(targets['objective'])} (centralized + {targets['gap']:g} of the gap "
                 "at the start); "
                 "'-' = not reached"
                 + (f"; means of {seeds} seeds, k/{seeds} = reached on k seeds only, "
                    "* = diverged on some seeds" if seeds > 1 else ""))
    return "\n".join(lines)


def _spread(r: dict, key: str, spec: str = ".4g") -> str:
    """``mean (min-max)`` with several seeds, the value with one."""
    v = _fmt(r[key], spec)
    if r.get("seeds", 1) > 1 and r.get(f"{key}_min") is not None:
        v += f" ({_fmt(r[f'{key}_min'], spec)}-{_fmt(r[f'{key}_max'], spec)})"
    return v


def markdown_compare(rows: list[dict], *, targets: dict, metric: str, reference: dict | None,
                     title: str, verdict: str = "", links=(), crossings=()) -> str:
    """The comparison as a markdown table (``compare.md``): final objective and test metric,
    and rounds / MB per agent / loop seconds to each target (means, with the spread over the
    seeds in brackets), then the verdict."""
    def reach(r, key):
        if r[f"{key}_rounds"] is None:
            got = r.get(f"{key}_reached") or 0
            return f"reached on {got} of {r['seeds']} seeds" if got else "not reached"
        rounds = r[f"{key}_rounds"]
        text = (f"{rounds:.4g} / {_fmt(r[f'{key}_bytes_per_agent'] / 1e6, '.3g')} / "
                f"{_fmt(r[f'{key}_time_s'], '.2g')}")
        if r.get("seeds", 1) > 1:
            text += f" (rounds {r[f'{key}_rounds_min']}-{r[f'{key}_rounds_max']})"
        return text
    tuned = any(r.get("setting") for r in rows)
    central = "" if reference is None else f", centralized {_fmt(reference['objective'])}"
    lines = [f"**{title}** (test target {metric} {_fmt(targets['test'])}; objective target "
             f"{_fmt(targets['objective'])}{central})", "",
             f"| method | final objective | final test {metric} | rounds / MB / s to test "
             "target | rounds / MB / s to objective target |" + (" tuned |" if tuned else ""),
             "|---|---|---|---|---|" + ("---|" if tuned else "")]
    for r in rows:
        end = f" {r.get('setting') or 'default'} |" if tuned else ""
        if r["status"] == "diverged":
            lines.append(f"| {r['method']} | diverged | | | |{end}")
            continue
        status = "" if r["status"] == "ok" else f" ({r['status']})"
        lines.append(f"| {r['method']}{status} | {_spread(r, 'final_objective')} | "
                     f"{_spread(r, 'final_test_metric')} | {reach(r, 'test')} | "
                     f"{reach(r, 'objective')} |{end}")
    if links:
        lines += ["", "Modelled seconds to the test / objective target (dcnn.link: "
                  "compute + latency x exchanges + busiest agent's bytes / bandwidth):", "",
                  "| method | " + " | ".join(x.describe() for x in links) + " |",
                  "|---|" + "---|" * len(links)]
        for r in rows:
            if r["status"] == "diverged":
                continue
            lines.append(f"| {r['method']} | " + " | ".join(
                f"{_fmt(r[f'test_time_on_{x.name}'], '.3g')} / "
                f"{_fmt(r[f'objective_time_on_{x.name}'], '.3g')}" for x in links) + " |")
    if crossings:
        lines += ["", "Crossovers (the bandwidth above which the first is faster to the "
                  f"{crossings[0]['target']} target):", ""]
        lines += [f"- {c['link']} latency: {c['faster_above']} faster than {c['faster_below']}"
                  f" above {c['bandwidth_bit_s'] / 1e6:.3g} Mbit/s" for c in crossings]
    return "\n".join(lines) + "\n" + (f"\n{verdict}\n" if verdict else "")


def _band(runs: list[History], col: str, xcol: str, scale: float):
    """x (mean over the seeds), and the mean, min and max of ``col`` over the seeds, on the
    evaluations every run has."""
    import numpy as np
    n = min(len(h.records) for h in runs)
    x = np.mean([[scale * v for v in h.column(xcol)[:n]] for h in runs], axis=0)
    ys = np.array([plottable(h.column(col)[:n]) for h in runs], dtype=float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)   # an all-NaN column stays NaN
        return x, np.nanmean(ys, 0), np.nanmin(ys, 0), np.nanmax(ys, 0)


_LINESTYLES = ("-", "--", "-.", ":")
_MARKERS = "os^vDPX*<>"


def _style(k: int) -> dict:
    """Method ``k``'s colour, line style and marker: eight methods stay apart even where
    their curves overlap (and in grey print)."""
    return {"color": f"C{k % 10}", "ls": _LINESTYLES[k % len(_LINESTYLES)],
            "marker": _MARKERS[k % len(_MARKERS)], "markersize": 4}


def compare_figure(histories: dict[str, History | list[History]], *, metric: str,
                   reference: dict | None, title: str = "", headline: str = ""):
    """The figure of :func:`plot_compare` (a matplotlib ``Figure``; the caller closes it)."""
    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    runs = {m: h if isinstance(h, list) else [h] for m, h in histories.items() if h}
    style = {m: _style(k) for k, m in enumerate(runs)}
    fig, axes = plt.subplots(2, 4, figsize=(17, 7.5))
    xs = [("iteration", "rounds", 1.0), ("bytes_per_agent", "MB sent per agent", 1e-6),
          ("time_s", "seconds (loop)", 1.0)]
    # a method that sends nothing (one process, or the centralized solver) would be a
    # vertical line at 0 MB: named in the panel instead of drawn
    silent = [m for m, hs in runs.items()
              if all(not (v == v and v > 0) for h in hs for v in h.column("bytes_per_agent"))]
    unit = " (%)" if metric == "accuracy" else ""
    for row, (col, label, log) in enumerate((("objective", "objective U(w_bar)", True),
                                             ("test_metric", f"test {metric}{unit}", False))):
        for k, (xcol, xlabel, scale) in enumerate(xs):
            ax = axes[row, k]
            lows, finals = [], []
            for name, hs in runs.items():
                if xcol == "bytes_per_agent" and name in silent:
                    continue
                x, mid, lo, hi = _band(hs, col, xcol, scale)
                ax.plot(x, mid, label=name, markevery=max(1, len(x) // 6), **style[name])
                if len(hs) > 1:
                    ax.fill_between(x, lo, hi, color=style[name]["color"], alpha=0.2, lw=0)
                lows += [v for v in lo if v == v]
                finals += [h.last[col] for h in hs]
            if xcol == "bytes_per_agent" and silent:
                top = row == 0              # where the curves are not: falling, rising
                ax.text(0.98, 0.97 if top else 0.03,
                        "sends nothing, not drawn:\n" + ", ".join(silent),
                        transform=ax.transAxes, ha="right", va="top" if top else "bottom",
                        fontsize=7, color="0.35")
            if reference is not None and reference.get(col) is not None:
                ax.axhline(reference[col], color="k", ls="--", lw=1, label="centralized ref.")
            if log and lows and min(lows) > 0:
                log_axis(ax)
            if col == "test_metric" and reference and reference.get(col) is not None and \
                    finals:
                # the start (chance level) would squeeze the part that differs
                finals = [f for f in finals if f is not None and math.isfinite(f)]
                lo, hi = min(finals + [reference[col]]), max(finals + [reference[col]])
                pad = max(hi - lo, 1e-3 * abs(hi), 1e-12)
                if metric == "accuracy":
                    ax.set_ylim(max(lo - 4 * pad, 0.0), min(hi + pad, 100.0))
                else:
                    ax.set_ylim(max(lo - pad, 0.0), hi + 4 * pad)
            ax.set_xlabel(xlabel)
            ax.set_ylabel(label)
            ax.grid(alpha=0.3)
    ax = axes[0, 3]
    for name, hs in runs.items():   # rounding-level disagreement (centralized) left out
        x, mid, lo, hi = _band(hs, "consensus_error", "iteration", 1.0)
        keep = mid > 1e-24
        if keep.any():
            ax.plot(x[keep], mid[keep], label=name, markevery=max(1, int(keep.sum()) // 6),
                    **style[name])
            if len(hs) > 1:
                ax.fill_between(x[keep], lo[keep], hi[keep], color=style[name]["color"],
                                alpha=0.2, lw=0)
    log_axis(ax)
    ax.set_xlabel("rounds")
    ax.set_ylabel("consensus error")
    ax.grid(alpha=0.3)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    axes[1, 3].axis("off")
    axes[1, 3].legend(handles, labels, loc="center")
    if title or headline:
        fig.suptitle("\n".join(t for t in (title, headline) if t))
    fig.subplots_adjust(left=0.05, right=0.99, bottom=0.08, top=0.9 if headline else 0.93,
                        wspace=0.3, hspace=0.28)  # fixed margins: tight_layout doubles the time
    return fig


def plot_compare(histories: dict[str, History | list[History]], path: Path, *, metric: str,
                 reference: dict | None, title: str = "", headline: str = "") -> Path:
    """Objective and test metric against rounds, MB per agent and seconds; consensus error;
    ``headline`` (the verdict's first finding) under the title. A method with several
    histories (seeds) is drawn as its mean with a min-max band; each method has its own
    colour, line style and marker; a method that sends nothing is named, not drawn, in the
    bytes panels."""
    import matplotlib.pyplot as plt
    fig = compare_figure(histories, metric=metric, reference=reference, title=title,
                         headline=headline)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
