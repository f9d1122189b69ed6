"""What a run leaves behind: ``history.csv``, ``summary.json``, ``curves.png``, ``config.json``
and a short table on stdout. Written by rank 0 only, each file by a temporary file and a
rename, so a crash mid-write leaves the earlier file whole. Plain text and PNG only: nothing
a reader has to unpickle."""
from __future__ import annotations

import functools
import json
import math
import os
from pathlib import Path

from .metrics import History

__all__ = ["write_report", "write_config", "format_table", "plot_history", "plottable",
           "log_axis"]


def _temporary(path: Path) -> Path:
    """A sibling of ``path`` with the same suffix (matplotlib reads the format from it)."""
    return path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")


def _write_text(path: Path, text: str) -> Path:
    tmp = _temporary(path)
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


def write_config(out: str | Path, config: dict) -> Path:
    """``out/config.json`` (the resolved config), written before the loop starts so that a
    run killed midway can be resumed (``dcnn run --resume out``)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    return _write_text(out / "config.json", json.dumps(_clean(config), indent=2) + "\n")


def _clean(obj):
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


def plottable(ys) -> list[float]:
    """Values a (log) axis can take: NaN for None, inf and blow-ups past 1e100 (a run that
    diverges leaves the plot instead of breaking the axis)."""
    return [y if y is not None and math.isfinite(y) and abs(y) < 1e100 else math.nan
            for y in ys]


def log_values(ys) -> list[float]:
    """:func:`plottable` values for a log axis: zero, negative values and values below 1e-16
    of the largest (zero up to rounding, such as the consensus error of agents that all
    start at ``w0``) become NaN, so they do not stretch the axis down to 1e-32."""
    ys = plottable(ys)
    top = max((y for y in ys if not math.isnan(y)), default=0.0)
    return [y if not math.isnan(y) and y > 1e-16 * top and y > 0 else math.nan for y in ys]


def log_axis(ax, which: str = "y") -> None:
    """A log scale on ``ax``'s ``which`` axis ("x" or "y") with plain tick labels ("0.02",
    "1e-5", :func:`plain_number`). matplotlib's own labels are mathtext, whose parser took
    0.2-0.3 s to build and run for the first figure of a process (a third of a default run's
    plot)."""
    if which not in ("x", "y"):
        raise ValueError(f"which must be 'x' or 'y', got {which!r}")
    getattr(ax, f"set_{which}scale")("log")
    axis = ax.yaxis if which == "y" else ax.xaxis
    plain = _plain_log_formatter()
    axis.set_major_formatter(plain())
    # matplotlib's own thresholds for labelling minor ticks
    axis.set_minor_formatter(plain(labelOnlyBase=False, minor_thresholds=(1, 0.4)))


def plain_number(x: float) -> str:
    """``0.02``, ``150``, ``1e5``, ``1e-5``: three digits, exponents without padding."""
    s = f"{x:.3g}"
    if "e" in s:
        mantissa, exponent = s.split("e")
        s = f"{mantissa}e{int(exponent)}"
    return s


@functools.cache
def _plain_log_formatter():
    from matplotlib.ticker import LogFormatter

    class Plain(LogFormatter):        # LogFormatter's choice of ticks, plain numbers
        def _num_to_string(self, x, vmin, vmax):
            return plain_number(x)
    return Plain


def history_figure(history: History, *, metric_name: str, reference: dict | None = None,
                   title: str = "", l1: bool = False):
    """The figure of :func:`plot_history` (a matplotlib ``Figure``; the caller closes it)."""
    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    it = history.column("iteration")
    fig, axes = plt.subplots(2, 2, figsize=(10, 7))
    unit = " (%)" if metric_name == "accuracy" else ""
    stationarity = ("prox-gradient norm ||w_bar - prox(w_bar - grad)||" if l1 else
                    "gradient norm ||grad U(w_bar)||")
    panels = [("objective", "objective U(w_bar)", True),
              ("grad_norm", f"stationarity: {stationarity}", True),
              ("consensus_error", "consensus error (1/N) sum ||w_i - w_bar||^2", True),
              ("test_metric", f"test {metric_name}{unit}", False)]
    for ax, (col, label, log) in zip(axes.flat, panels):
        ys = history.column(col)
        shown = log_values(ys) if log else plottable(ys)
        if log and all(math.isnan(y) for y in shown):      # nothing positive: linear
            shown, log = plottable(ys), False
        ax.plot(it, shown, label="network (w_bar)", lw=1.8)
        if col == "test_metric":
            lo = plottable(history.column("agent_test_min"))
            hi = plottable(history.column("agent_test_max"))
            ax.fill_between(it, lo, hi, color="C1", alpha=0.3, label="agents min-max")
            ax.plot(it, lo, color="C1", lw=0.8, ls=":")
            ax.plot(it, hi, color="C1", lw=0.8, ls=":")
        if reference is not None and reference.get(col) is not None:
            ax.axhline(reference[col], color="k", ls="--", lw=1, label="centralized")
        if log:
            log_axis(ax)
        ax.set_xlabel("iteration")
        if len(it) > 1:
            ax.set_xlim(it[0], it[-1])              # every panel over the whole run
        ax.set_ylabel(label, fontsize=8 if len(label) > 30 else None)
        ax.grid(alpha=0.3)
    axes[1, 1].legend()
    axes[0, 0].legend()
    if title:
        fig.suptitle(title)
    # fixed margins: tight_layout measured every tick label again and took half the time
    fig.subplots_adjust(left=0.09, right=0.98, bottom=0.08, top=0.93, wspace=0.28,
                        hspace=0.28)
    return fig


def plot_history(history: History, path: str | Path, *, metric_name: str,
                 reference: dict | None = None, title: str = "", l1: bool = False) -> Path:
    """Objective, stationarity (the gradient norm, or with an l1 part the prox-gradient
    norm), consensus error (log axes) and test metric (accuracy in %, with the agents'
    min-max band) against iterations, saved to ``path``."""
    import matplotlib.pyplot as plt
    fig = history_figure(history, metric_name=metric_name, reference=reference, title=title,
                         l1=l1)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def format_table(summary: dict) -> str:
    """Final network result next to the centralized reference."""
    f, c = summary["final"], summary.get("centralized") or {}
    name = summary["metric_name"]

    def num(x):
        return "-" if x is None else f"{x:.6g}"

    rows = [("", "network (w_bar)", "centralized"),
            ("objective", num(f["objective"]), num(c.get("objective"))),
            ("grad norm", num(f["grad_norm"]), num(c.get("grad_norm"))),
            (f"train {name}", num(f["train_metric"]), num(c.get("train_metric"))),
            (f"test {name}", num(f["test_metric"]), num(c.get("test_metric"))),
            ("consensus error", num(f["consensus_error"]), "-")]
    w = [max(len(r[k]) for r in rows) for k in range(3)]
    lines = ["  ".join(r[k].ljust(w[k]) for k in range(3)) for r in rows]
    lines.append(f"{summary['method']}, {summary['agents']} agents "
                 f"on {summary['ranks']} rank(s), {summary['iterations']} iterations, "
                 f"{summary['bytes_sent_per_agent'] / 1e6:.3g} MB sent per agent, "
                 f"{summary['wall_time_s']:.3g} s")
    hit = summary.get("to_target")
    if c.get("test_metric") is not None:
        lines.append("centralized test metric minus 1 point: " + (
            "not reached" if hit is None else
            f"reached at iteration {hit['iteration']} "
            f"({hit['bytes_per_agent'] / 1e6:.3g} MB per agent, {hit['time_s']:.3g} s)"))
    return "\n".join(lines)


def write_report(out: str | Path, *, history: History, summary: dict, config: dict,
                 files: dict | None = None) -> dict:
    """Write the four files, and ``files`` (``{name: write(path)}``, e.g. the saved model),
    into ``out``; returns their paths. Every file is written in full to a temporary sibling
    first (a full disk or a failing plot leaves the folder as it was), then renamed into
    place, an earlier ``summary.json`` removed first and the new one renamed last: a folder
    with a summary is finished."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = dict(files or {})
    paths = {"plot": out / "curves.png", "history": out / "history.csv",
             "config": out / "config.json", **{name: out / name for name in files},
             "summary": out / "summary.json"}
    tmps = {k: _temporary(p) for k, p in paths.items()}
    try:
        plot_history(history, tmps["plot"], metric_name=summary["metric_name"],
                     reference=summary.get("centralized"),
                     l1=(config.get("model") or {}).get("regularizer") in ("l1", "elastic_net"),
                     title=f"{summary['method']} on {summary['dataset']}")
        history.to_csv(tmps["history"])
        tmps["config"].write_text(json.dumps(_clean(config), indent=2) + "\n")
        for name, write in files.items():
            write(tmps[name])
        tmps["summary"].write_text(json.dumps(_clean(summary), indent=2) + "\n")
    except BaseException:
        for tmp in tmps.values():
            tmp.unlink(missing_ok=True)
        raise
    # an earlier summary goes first, so a folder never shows it beside half-replaced files
    paths["summary"].unlink(missing_ok=True)
    for key in paths:                      # plot, history, config, files, then the summary
        os.replace(tmps[key], paths[key])
    return paths
