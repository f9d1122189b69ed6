"""``dcnn compare``: several methods on identical shards, graphs and seeds, one report.

Each method is a registered method or one of its variants (:func:`dcnn.methods.variants`:
``next-pl``, ``gt``, ``centralized-lbfgs``, ...), optionally followed by ``algorithm`` keys of
its own (``gt:alpha0=0.25``, ``dgd:schedule=constant:alpha0=0.1``), applied as ``algorithm``
overrides to one config, so the data, partition, model, initial point, topology sequence and
evaluation are the same for all (the model and data may be your own: ``model=``, ``data=``); every
method runs under the same launch (one process, or ``mpiexec -n R``). The centralized
reference is solved once and shared.

Targets (both with the resolution ``run.eval_every``):

- ``test``: the centralized test metric minus one point (accuracy) or plus 0.01 (MSE), as in
  a single run's summary;
- ``objective``: ``U(w_bar) <= U_ref + gap (U_0 - U_ref)``: the optimality gap at the start
  (``U_0 = U(w[0])``, the same for every method) reduced to the fraction ``gap`` (``--gap``,
  default 0.01, i.e. 99% of the way from ``w[0]`` to the centralized objective ``U_ref``).
  Scale-free, so one ``gap`` means the same on every dataset; for a neural network ``U_ref``
  is the local minimum the reference's L-BFGS-B finds from ``w[0]``.

For each, the table gives the rounds (iterations = communication rounds), the bytes sent per
agent and the loop time to reach it. Files in ``out``: ``compare.csv`` (one row per method),
``compare.json`` (rows, targets, reference), ``compare.md`` (the table in markdown),
``compare.png`` (objective and test metric against rounds, bytes and time; consensus error
against rounds), and one folder per method
with its own ``history.csv``, ``summary.json``, ``curves.png``, ``config.json``. A method
that diverges (NaN or inf, or a final objective above 100 times the start) does not stop the
comparison: its row says ``diverged`` (with an output folder, the last finite state of a
method stopped by the divergence guard is in its folder's ``checkpoint``). With
``run.checkpoint_every = k`` every method writes checkpoints into its own folder (engine
methods cannot; they are refused up front). A method refused when it starts because it does
not fit the launch or the problem (a :class:`~dcnn.errors.ConfigError` such as a
:class:`~dcnn.errors.LaunchError`: more ranks than pipeline stages, tokens that do not split
over the ranks, a model that is not the MLP a split needs, l1 for a method without prox
steps) is skipped with its one-line reason, logged and kept under ``skipped`` in
``compare.json``; the others still run. With l1 the reference is
solved by FISTA, else by L-BFGS-B.
"""
from __future__ import annotations

import copy
import csv
import dataclasses
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .comm import Network, make_network
from .config import Config, _apply, parse_set, resolve
from .errors import ConfigError, DivergenceError, LaunchError
from .methods import default_methods, get_method, parse_variant
from .metrics import History, metric_name
from .report import _clean, plottable
from .runner import run_experiment
from .topology import DIRECTED_GRAPHS

__all__ = ["CompareResult", "run_compare", "compare_rows", "format_compare", "plot_compare",
           "parse_method", "DEFAULT_METHODS", "DEFAULT_METHODS_DIRECTED", "ROW_KEYS"]

# the registry's defaults for the built-in methods (default_methods() reads it anew)
DEFAULT_METHODS = default_methods(directed=False)
DEFAULT_METHODS_DIRECTED = default_methods(directed=True)
ROW_KEYS = ("method", "status", "final_objective", "objective_gap", "final_test_metric",
            "final_consensus_error", "rounds", "bytes_per_agent", "time_s",
            "test_rounds", "test_bytes_per_agent", "test_time_s",
            "objective_rounds", "objective_bytes_per_agent", "objective_time_s")


@dataclass
class CompareResult:
    rows: list[dict]
    histories: dict[str, History]
    summaries: dict[str, dict]
    reference: dict | None
    targets: dict
    task: str
    out: Path | None

    def table(self) -> str:
        """The comparison as the text table ``dcnn compare`` prints."""
        return format_compare(self.rows, targets=self.targets, metric=metric_name(self.task))


def parse_method(spec: str) -> dict:
    """``"gt:alpha0=0.25"`` -> ``{"name": "gt", "alpha0": 0.25}`` (the ``algorithm`` keys);
    a key the method does not read is refused."""
    variant, *pairs = spec.split(":")
    keys = parse_variant(variant)
    own = {f.name for f in dataclasses.fields(get_method(keys["name"]).options)}
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"method {spec!r}: {pair!r} is not key=value; write e.g. "
                              "gt:alpha0=0.25")
        _, key, value = parse_set(f"algorithm.{pair}")
        if key not in own:
            raise ConfigError(f"method {spec!r}: {keys['name']!r} has no option {key!r}; its "
                              f"options are {', '.join(sorted(own))}")
        keys[key] = value
    return keys


def _fits(spec: str, cfg: Config) -> str | None:
    """Why method ``spec`` cannot run on ``cfg``'s topology, or ``None``."""
    supports = get_method(parse_method(spec)["name"]).supports
    time_varying = cfg.topology.dynamic != "static" or cfg.topology.cutoff_agent is not None
    return supports.refusal(directed=cfg.topology.graph in DIRECTED_GRAPHS,
                            time_varying=time_varying)


def _config_for(cfg: Config, spec: str) -> Config:
    c = copy.deepcopy(cfg)
    for key, value in parse_method(spec).items():
        _apply(c, "algorithm", key, value)
    return c


def _first(history: History, hit) -> dict | None:
    for rec in history.records:
        if hit(rec):
            return {"rounds": rec["iteration"], "bytes_per_agent": rec["bytes_per_agent"],
                    "time_s": rec["time_s"]}
    return None


def _blew_up(history: History) -> bool:
    """A run whose final objective is not finite, or more than 100 times its start."""
    start, last = history.records[0]["objective"], history.last["objective"]
    return not math.isfinite(last) or last > 100.0 * abs(start)


def compare_rows(histories: dict[str, History], *, reference: dict | None, task: str,
                 gap: float) -> tuple[list[dict], dict]:
    """One row per method (see :data:`ROW_KEYS`) and the two targets."""
    from .metrics import target_metric
    ref_obj = None if reference is None else reference.get("objective")
    ref_test = None if reference is None else reference.get("test_metric")
    start = next(h.records[0]["objective"] for h in histories.values() if h is not None)
    targets = {
        "test": None if ref_test is None else target_metric(ref_test, task),
        "objective": None if ref_obj is None else ref_obj + gap * (start - ref_obj),
        "gap": gap, "start_objective": start,
    }
    rows = []
    for name, h in histories.items():
        if h is None or _blew_up(h):       # NaN/inf, or finite but far above the start
            rows.append({k: None for k in ROW_KEYS} | {"method": name, "status": "diverged"})
            continue
        last = h.last
        row = {"method": name, "status": "ok", "final_objective": last["objective"],
               "objective_gap": None if not ref_obj else
               (last["objective"] - ref_obj) / abs(ref_obj),
               "final_test_metric": last["test_metric"],
               "final_consensus_error": last["consensus_error"],
               "rounds": last["iteration"], "bytes_per_agent": last["bytes_per_agent"],
               "time_s": last["time_s"]}
        for kind, hit in (
                ("test", None if targets["test"] is None else
                 (lambda r: r["test_metric"] <= targets["test"]) if task == "regression" else
                 (lambda r: r["test_metric"] >= targets["test"])),
                ("objective", None if targets["objective"] is None else
                 (lambda r: r["objective"] <= targets["objective"]))):
            reached = None if hit is None else _first(h, hit)
            for k in ("rounds", "bytes_per_agent", "time_s"):
                row[f"{kind}_{k}"] = None if reached is None else reached[k]
        rows.append(row)
    return rows, targets


def _fmt(x, spec=".4g") -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return format(x, spec)


def format_compare(rows: list[dict], *, targets: dict, metric: str) -> str:
    """The comparison as an aligned text table."""
    head = ("method", "objective", "U/U_ref-1", f"test {metric}", "consensus",
            "rounds@test", "MB@test", "s@test", "rounds@obj", "MB@obj", "s@obj")
    body = [(r["method"], "diverged", *["-"] * (len(head) - 2)) if r["status"] == "diverged"
            else (r["method"], _fmt(r["final_objective"]), _fmt(r["objective_gap"], ".2e"),
             _fmt(r["final_test_metric"]), _fmt(r["final_consensus_error"], ".1e"),
             _fmt(r["test_rounds"], "d"),
             _fmt(None if r["test_bytes_per_agent"] is None else r["test_bytes_per_agent"] / 1e6),
             _fmt(r["test_time_s"], ".3g"), _fmt(r["objective_rounds"], "d"),
             _fmt(None if r["objective_bytes_per_agent"] is None
                  else r["objective_bytes_per_agent"] / 1e6),
             _fmt(r["objective_time_s"], ".3g")) for r in rows]
    widths = [max(len(x[k]) for x in (head, *body)) for k in range(len(head))]
    lines = ["  ".join(x[k].ljust(widths[k]) for k in range(len(head))) for x in (head, *body)]
    lines.append(f"targets: test {metric} {_fmt(targets['test'])}; objective "
                 f"{_fmt(targets['objective'])} (centralized + {targets['gap']:g} of the gap "
                 "at the start); "
                 "'-' = not reached")
    return "\n".join(lines)


def markdown_compare(rows: list[dict], *, targets: dict, metric: str, reference: dict | None,
                     title: str) -> str:
    """The comparison as a markdown table (``compare.md``): final objective and test metric,
    and rounds / MB per agent / loop seconds to each target."""
    def reach(r, key):
        if r[f"{key}_rounds"] is None:
            return "not reached"
        return (f"{r[f'{key}_rounds']} / {_fmt(r[f'{key}_bytes_per_agent'] / 1e6, '.3g')} / "
                f"{_fmt(r[f'{key}_time_s'], '.2g')}")
    central = "" if reference is None else f", centralized {_fmt(reference['objective'])}"
    lines = [f"**{title}** (test target {metric} {_fmt(targets['test'])}; objective target "
             f"{_fmt(targets['objective'])}{central})", "",
             f"| method | final objective | final test {metric} | rounds / MB / s to test "
             "target | rounds / MB / s to objective target |", "|---|---|---|---|---|"]
    lines += [f"| {r['method']} | {r['status']} | | | |" if r["status"] != "ok" else
              f"| {r['method']} | {_fmt(r['final_objective'])} | {_fmt(r['final_test_metric'])}"
              f" | {reach(r, 'test')} | {reach(r, 'objective')} |" for r in rows]
    return "\n".join(lines) + "\n"


def plot_compare(histories: dict[str, History], path: Path, *, metric: str,
                 reference: dict | None, title: str = "") -> Path:
    """Objective and test metric against rounds, MB per agent and seconds; consensus error."""
    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    shown = plottable

    fig, axes = plt.subplots(2, 4, figsize=(17, 7.5))
    xs = [("iteration", "rounds", 1.0), ("bytes_per_agent", "MB sent per agent", 1e-6),
          ("time_s", "seconds (loop)", 1.0)]
    for row, (col, label, log) in enumerate((("objective", "objective U(w_bar)", True),
                                             ("test_metric", f"test {metric}", False))):
        for k, (xcol, xlabel, scale) in enumerate(xs):
            ax = axes[row, k]
            for name, h in histories.items():
                ax.plot([scale * v for v in h.column(xcol)], shown(h.column(col)), label=name)
            if reference is not None and reference.get(col) is not None:
                ax.axhline(reference[col], color="k", ls="--", lw=1, label="centralized ref.")
            if log and all(v > 0 for h in histories.values()
                           for v in shown(h.column(col)) if not math.isnan(v)):
                ax.set_yscale("log")
            if col == "test_metric" and reference and reference.get(col) is not None:
                # the start (chance level) would squeeze the part that differs
                finals = [h.last[col] for h in histories.values()] + [reference[col]]
                lo, hi = min(finals), max(finals)
                pad = max(hi - lo, 1e-3 * abs(hi), 1e-12)
                if metric == "accuracy":
                    ax.set_ylim(max(lo - 4 * pad, 0.0), min(hi + pad, 100.0))
                else:
                    ax.set_ylim(max(lo - pad, 0.0), hi + 4 * pad)
            ax.set_xlabel(xlabel)
            ax.set_ylabel(label)
            ax.grid(alpha=0.3)
    ax = axes[0, 3]
    for name, h in histories.items():   # rounding-level disagreement (centralized) left out
        pts = [(i, y) for i, y in zip(h.column("iteration"), shown(h.column("consensus_error")))
               if y > 1e-24]
        if pts:
            ax.plot(*zip(*pts), label=name, color=f"C{list(histories).index(name)}")
    ax.set_yscale("log")
    ax.set_xlabel("rounds")
    ax.set_ylabel("consensus error")
    ax.grid(alpha=0.3)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    axes[1, 3].axis("off")
    axes[1, 3].legend(handles, labels, loc="center")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def run_compare(cfg: Config, *, methods=None, out: str | Path | None = "auto",
                network: Network | None = None, gap: float = 0.01,
                verbose: bool = True, model=None, data=None) -> CompareResult:
    """Run every method of ``methods`` (default: the registry's
    :func:`~dcnn.methods.default_methods` for the graph's kind, less those the topology does
    not allow) on ``cfg``; write the comparison into ``out`` (rank 0). ``model`` and ``data``
    (your own ``nn.Module``/factory and arrays, as for :func:`dcnn.run_experiment`) replace
    the config's."""
    if not 0 < gap < 1:
        raise ConfigError(f"--gap must lie in (0, 1) (the fraction of the initial objective "
                          f"gap left at the target, e.g. 0.01), got {gap}")
    explicit = methods is not None
    if isinstance(methods, str):             # "next-pl,gt" as on the command line
        methods = [m.strip() for m in methods.split(",") if m.strip()]
    if methods is None:
        methods = default_methods(directed=cfg.topology.graph in DIRECTED_GRAPHS)
    methods = list(methods)
    if not methods:
        raise ConfigError("no method given; e.g. --methods next-pl,gt,dgd")
    if len(set(methods)) != len(methods):
        raise ConfigError(f"--methods lists a method twice: {','.join(methods)}")
    skipped = {m: why for m in methods if (why := _fits(m, cfg))}
    if skipped and explicit:
        m, why = next(iter(skipped.items()))
        raise ConfigError(f"method {m!r} {why} and topology is {cfg.topology.graph!r} "
                          f"({cfg.topology.dynamic}); drop it from --methods or change "
                          "the topology")
    methods = [m for m in methods if m not in skipped]
    network = network or make_network(cfg.run.agents, backend=cfg.run.backend,
                                      timeout=cfg.run.comm_timeout)
    log = (lambda msg: print(f"dcnn: {msg}", file=sys.stderr, flush=True)) \
        if verbose and network.rank == 0 else (lambda msg: None)
    for m, why in skipped.items():
        log(f"compare: skipping {m} ({why})")
    out_dir = None
    if out is not None:
        if out == "auto":
            stamp = time.strftime("%Y%m%d-%H%M%S")
            name = f"{stamp}-compare-{Path(str(cfg.data.name)).stem}"
            out = network.broadcast(str(Path("runs") / name))
        out_dir = Path(out)
    reference = None      # solved with the first method, then shared
    configs = {m: _config_for(cfg, m) for m in methods}     # every spec checked up front
    for c in configs.values():
        c.algorithm.options()                                 # and every method's options
    if cfg.run.checkpoint_every:
        engines = [m for m, c in configs.items()
                   if not get_method(c.algorithm.name).supports.resumable]
        if engines or out_dir is None:
            raise ConfigError(f"run.checkpoint_every = {cfg.run.checkpoint_every} needs an "
                              "output folder and methods that can be checkpointed"
                              + (f" ({engines[0]!r} cannot)" if engines else
                                 " (give --out DIR)") + "; set run.checkpoint_every = 0")
    histories, summaries = {}, {}
    for k, m in enumerate(methods, 1):
        t0 = time.perf_counter()
        c = configs[m]
        c.run.progress = cfg.run.progress and verbose
        c.run.reference = cfg.run.reference
        try:
            res = run_experiment(c, out=None if out_dir is None else out_dir / m,
                                 network=network, verbose=False, reference=reference,
                                 model=model, data=data)
        except DivergenceError as exc:
            histories[m], summaries[m] = None, None
            log(f"compare: [{k}/{len(methods)}] {m}: diverged ({exc})")
            continue
        except ConfigError as exc:
            # a method that does not fit this launch or this model (more ranks than pipeline
            # stages, a model that is not the MLP it splits, ...), found when it starts: the
            # same check and message on every rank, before any traffic, so the others still
            # run and nothing done is lost (LaunchError is a ConfigError)
            skipped[m] = str(exc)
            log(f"compare: [{k}/{len(methods)}] {m}: skipped ({exc})")
            continue
        histories[m], summaries[m] = res.history, res.summary
        reference = res.summary["centralized"]
        log(f"compare: [{k}/{len(methods)}] {m}: objective {res.history.last['objective']:.4g}"
            f", test {res.history.last['test_metric']:.4g} ({time.perf_counter() - t0:.1f} s)")
    ran = [m for m in methods if m in histories]
    done = [s for s in summaries.values() if s is not None]
    if not ran:
        raise LaunchError(f"no method fits this launch: {'; '.join(skipped.values())}")
    if not done:
        raise DivergenceError(f"every method diverged ({', '.join(methods)}); lower "
                              "algorithm.alpha0")
    task = done[0]["task"]
    rows, targets = compare_rows(histories, reference=reference, task=task, gap=gap)
    metric = metric_name(task)
    if out_dir is not None and network.rank == 0:
        out_dir.mkdir(parents=True, exist_ok=True)
        with (out_dir / "compare.csv").open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=ROW_KEYS)
            writer.writeheader()
            writer.writerows(rows)
        (out_dir / "compare.json").write_text(json.dumps(_clean(
            {"rows": rows, "targets": targets, "centralized": reference,
             "metric_name": metric, "methods": ran, "skipped": skipped,
             "config": resolve(cfg), "algorithm_keys": cfg.algorithm.explicit}),
            indent=2) + "\n")
        ok = {r["method"] for r in rows if r["status"] == "ok"}
        title = (f"{cfg.data.name}: {cfg.topology.graph} ({cfg.topology.dynamic}), "
                 f"{cfg.run.agents} agents")
        (out_dir / "compare.md").write_text(markdown_compare(
            rows, targets=targets, metric=metric, reference=reference, title=title))
        plot_compare({m: h for m, h in histories.items() if m in ok},
                     out_dir / "compare.png", metric=metric, reference=reference, title=title)
        log(f"results in {out_dir}/ (compare.csv, compare.json, compare.md, compare.png, one "
            "folder per method)")
    if verbose and network.rank == 0:
        print(format_compare(rows, targets=targets, metric=metric), flush=True)
    return CompareResult(rows=rows, histories=histories, summaries=summaries,
                         reference=reference, targets=targets, task=task, out=out_dir)
