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
method stopped by the divergence guard is in its folder's ``checkpoint``, or in
``METHOD.partial/checkpoint`` when the folder held a finished run, which it keeps). With
``run.checkpoint_every = k`` every method writes checkpoints into its own folder (engine
methods cannot; they are refused up front). A method refused when it starts because it does
not fit the launch or the problem (a :class:`~dcnn.errors.ConfigError` such as a
:class:`~dcnn.errors.LaunchError`: more ranks than pipeline stages, tokens that do not split
over the ranks, a model that is not the MLP a split needs, l1 for a method without prox
steps) is skipped with its one-line reason, logged and kept under ``skipped`` in
``compare.json``; the others still run. With l1 the reference is
solved by FISTA, else by L-BFGS-B.

Best-tuned against best-tuned, over seeds, with a verdict: ``tune`` runs each method's step
grid first (:mod:`dcnn.tuning`; every point on every seed, the lowest mean final training
objective wins), ``seeds`` repeats every method over ``run.seed, run.seed + 1, ...`` and folds
the rows into means with their spread, and the verdict names the best method per target by
rounds, bytes, loop time and the modelled time on each of ``links`` (:mod:`dcnn.verdict`,
:mod:`dcnn.link`). The tables and figures are :mod:`dcnn.compare_tables`'.
"""
from __future__ import annotations

import copy
import csv
import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

from .comm import Network, make_network
from .config import Config, _apply, parse_set, resolve
from .errors import ConfigError, DivergenceError, LaunchError
from .methods import default_methods, get_method, parse_variant
from .metrics import History, metric_name
from .report import _clean
from .runner import run_experiment, unusable_out
from .topology import DIRECTED_GRAPHS
from .tuning import EXTEND, Grid, choose, split_grid
from .compare_tables import format_compare, markdown_compare, plot_compare
from .log import run_log
from .link import Link, crossovers, modelled_time, parse_link, plot_links
from .verdict import MEASURES, aggregate, format_verdict, verdict

__all__ = ["CompareResult", "run_compare", "compare_rows", "format_compare", "plot_compare",
           "markdown_compare", "crossovers",
           "parse_method", "DEFAULT_METHODS", "DEFAULT_METHODS_DIRECTED", "ROW_KEYS"]

# the registry's defaults for the built-in methods (default_methods() reads it anew)
DEFAULT_METHODS = default_methods(directed=False)
DEFAULT_METHODS_DIRECTED = default_methods(directed=True)
_REACH = ("rounds", "bytes_per_agent", "time_s", "compute_s", "exchanges", "busiest_bytes")
FIGURES = ("final_objective", "objective_gap", "final_test_metric", "final_consensus_error",
           "rounds", "bytes_per_agent", "time_s",
           *(f"{t}_{k}" for t in ("test", "objective") for k in _REACH))
# one row per method: the figures (means over the seeds), the tuned setting, the seeds
ROW_KEYS = ("method", "status", *FIGURES, "setting", "seeds")
# with several seeds the CSV adds each figure's spread and how many seeds reached each target
SPREAD_KEYS = (*(f"{k}_{e}" for k in FIGURES for e in ("min", "max")), "test_reached",
               "objective_reached")


@dataclass
class CompareResult:
    rows: list[dict]
    histories: dict[str, History]
    summaries: dict[str, dict]
    reference: dict | None
    targets: dict
    task: str
    out: Path | None
    verdict: dict = dataclasses.field(default_factory=dict)
    tuning: dict = dataclasses.field(default_factory=dict)
    per_seed: list = dataclasses.field(default_factory=list)
    crossovers: list = dataclasses.field(default_factory=list)

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


def _first(history: History, hit, share: float) -> dict | None:
    """Rounds, bytes, loop time and the modelled link's parts (:mod:`dcnn.link`: one agent's
    compute ``share * time_s``, exchanges, the busiest agent's bytes) at the first
    evaluation that ``hit`` accepts."""
    for rec in history.records:
        if hit(rec):
            return {"rounds": rec["iteration"], "bytes_per_agent": rec["bytes_per_agent"],
                    "time_s": rec["time_s"], "compute_s": share * rec["time_s"],
                    **{k: None if not math.isfinite(rec[k]) else rec[k]
                       for k in ("exchanges", "busiest_bytes")}}
    return None


def _blew_up(history: History) -> bool:
    """A run whose final objective is not finite, or more than 100 times its start."""
    start, last = history.records[0]["objective"], history.last["objective"]
    return not math.isfinite(last) or last > 100.0 * abs(start)


def compare_rows(histories: dict[str, History], *, reference: dict | None, task: str,
                 gap: float, shares: dict[str, float] | None = None) -> tuple[list[dict], dict]:
    """One row per method (see :data:`ROW_KEYS`) and the two targets. ``shares``: the share
    of the loop time one agent computes (:mod:`dcnn.link`; default 1)."""
    from .metrics import target_metric
    ref_obj = None if reference is None else reference.get("objective")
    ref_test = None if reference is None else reference.get("test_metric")
    start = next((h.records[0]["objective"] for h in histories.values() if h is not None),
                 None)
    if start is None:                        # every method diverged on this seed
        ref_obj = None
    targets = {
        "test": None if ref_test is None else target_metric(ref_test, task),
        "objective": None if ref_obj is None else ref_obj + gap * (start - ref_obj),
        "gap": gap, "start_objective": start,
    }
    rows = []
    for name, h in histories.items():
        if h is None or _blew_up(h):       # NaN/inf, or finite but far above the start
            rows.append({k: None for k in FIGURES} | {"method": name, "status": "diverged"})
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
            reached = None if hit is None else _first(h, hit, (shares or {}).get(name, 1.0))
            for k in _REACH:
                row[f"{kind}_{k}"] = None if reached is None else reached[k]
        rows.append(row)
    return rows, targets


def _attempt(c: Config, folder, *, network, reference, model, data):
    """``("ok", result)``, ``("diverged", message)`` or ``("skipped", message)``: a method
    that does not fit this launch or model (more ranks than pipeline stages, a model that is
    not the MLP it splits, ...) is found when it starts, with the same check and message on
    every rank before any traffic, so the others still run (LaunchError is a ConfigError)."""
    try:
        return "ok", run_experiment(c, out=folder, network=network, verbose=False,
                                    reference=reference, model=model, data=data)
    except DivergenceError as exc:
        return "diverged", str(exc)
    except ConfigError as exc:
        return "skipped", str(exc)


def _with(c: Config, setting: dict, **run) -> Config:
    c = copy.deepcopy(c)
    for key, value in setting.items():
        _apply(c, "algorithm", key, value)
    for key, value in run.items():
        setattr(c.run, key, value)
    return c


def _auto_value(c: Config, key: str, *, network, model, data):
    """The number the method resolves ``algorithm.key`` to (its ``"auto"``), from building it
    on the prepared experiment (the same estimate its run makes; collective)."""
    from .prepare import prepare
    from .runner import build
    try:
        built, _ = build(prepare(c, network=network, model=model, data=data))
    except ConfigError:     # it does not fit this launch: its own run says why, untuned
        return None
    value = built.info.get(key)
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _fmt_setting(key: str, value) -> str:
    return f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}"


def _numeric(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _tune(m: str, c: Config, grid: Grid, *, rounds: int, run, log, gap: float,
          auto) -> dict:
    """Every point of ``grid`` for method ``m`` (``rounds`` each, on every seed, no output
    folder and no checkpoints: ``run`` returns one ``(status, result)`` per seed) and the
    chosen one (:func:`dcnn.tuning.choose` on the mean over the seeds; a point that diverged
    or was refused on any seed is out): ``{"key", "grid", "rounds", "points", "chosen",
    "setting", "at_edge"}``; ``setting`` is the algorithm keys of the chosen point (``{}``:
    the method's default). A relative grid's factor 1 is the method's default as it runs
    (``"auto"``, with whatever the method does with it, e.g. NEXT's raise of ``tau``); its
    other points fix the key at factor x the automatic value on the first seed. A relative
    grid of 3 or more points whose best point is one of its ends is extended past it by
    factors of 2 (at most :data:`dcnn.tuning.EXTEND` times) while that improves the choice;
    ``at_edge`` says a numeric grid's choice is still one of its ends."""
    c = _with(c, {}, iterations=rounds, eval_every=min(c.run.eval_every, rounds),
              checkpoint_every=0)
    base = auto(c, grid.key) if grid.relative else None
    record = {"key": grid.key, "grid": grid.describe(), "rounds": rounds, "points": [],
              "chosen": None, "setting": None, "at_edge": False}
    if grid.relative and base is None:
        record["note"] = f"not tuned: {m} resolves no number for {grid.key} here"
        record["setting"] = {}
        return record
    points, settings = [], []

    def measure(v):
        default = grid.relative and v == 1
        setting = {} if default else {grid.key: v * base if grid.relative else v}
        runs = run(_with(c, setting))                     # one (status, result) a seed
        point = {"value": setting.get(grid.key, base), "factor": v if grid.relative else None,
                 "default": default}
        bad = [(st, res) for st, res in runs if st != "ok"]
        if not bad:
            rows = [compare_rows({m: res.history}, reference=res.summary["centralized"],
                                 task=res.summary["task"], gap=gap)[0][0] for _, res in runs]
            bad = [("diverged", "blew up") for r in rows if r["status"] != "ok"]
        if bad:     # diverged (or refused) on one seed: out of the choice
            point.update(status=bad[0][0], final_objective=None, objective_rounds=None,
                         error=bad[0][1])
        else:       # the mean over the seeds; rounds only when every seed reached the target
            reached = [r["objective_rounds"] for r in rows]
            point.update(status="ok",
                         final_objective=sum(r["final_objective"] for r in rows) / len(rows),
                         objective_rounds=None if None in reached else
                         sum(reached) / len(reached),
                         final_objectives=[r["final_objective"] for r in rows],
                         final_test_metric=sum(r["final_test_metric"] for r in rows)
                         / len(rows))
        log(f"compare: tune {m}: {_fmt_setting(grid.key, point['value'])}: "
            + (f"objective {point['final_objective']:.4g}" if point["status"] == "ok"
               else point["status"]))
        return point, setting

    for v in grid.values:
        for lst, x in zip((points, settings), measure(v)):
            lst.append(x)
    k = choose(points)
    numeric = all(_numeric(p["value"]) for p in points)

    def ends():
        order = sorted(range(len(points)), key=lambda i: points[i]["value"])
        return order[0], order[-1]
    for _ in range(EXTEND if grid.relative and len(grid.values) >= 3 else 0):
        low, high = ends()
        if k is None or k not in (low, high):
            break
        point, setting = measure(points[k]["factor"] * (0.5 if k == low else 2.0))
        points.append(point)
        settings.append(setting)
        k = choose(points)
    record["points"] = points
    if k is not None:
        record["chosen"], record["setting"] = points[k]["value"], settings[k]
        record["at_edge"] = numeric and len(points) > 2 and k in ends()
        if record["at_edge"]:
            log(f"compare: tune {m}: the best {grid.key} is at an end of the grid; widen it "
                f"({m}:{grid.key}=a|b|c)")
    return record


def run_compare(cfg: Config, *, methods=None, out: str | Path | None = "auto",
                network: Network | None = None, gap: float = 0.01,
                verbose: bool = True, model=None, data=None, tune: bool = False,
                tune_rounds: int | None = None, seeds: int = 1,
                links=(), tune_factors: tuple[float, ...] | None = None) -> CompareResult:
    """Run every method of ``methods`` (default: the registry's
    :func:`~dcnn.methods.default_methods` for the graph's kind, less those the topology does
    not allow) on ``cfg``; write the comparison into ``out`` (rank 0). ``model`` and ``data``
    (your own ``nn.Module``/factory and arrays, as for :func:`dcnn.run_experiment`) replace
    the config's.

    ``tune``: each method first runs its step grid (:meth:`dcnn.methods.MethodSpec.step_grid`,
    or the grid given with it, ``"gt:alpha0=0.1|0.25|0.5"``, which is tuned even without
    ``tune``) for ``tune_rounds`` rounds (default ``run.iterations``) on every seed and keeps
    the point with the lowest mean final training objective among those that diverged on no
    seed (:mod:`dcnn.tuning`). ``seeds``:
    every method then runs on the seeds ``run.seed, run.seed + 1, ...`` (data split,
    partition, initial point and graph); the rows hold means with their spread
    (:mod:`dcnn.verdict`). ``links`` (presets or ``"latency=1ms,bandwidth=1Gbit"``, or
    :class:`dcnn.link.Link`): each method's time to each target on that modelled link
    (:mod:`dcnn.link`), in the table and the verdict. ``tune_factors`` replace the factors of
    the methods' default grids (e.g. ``(0.5, 1, 2)`` for a short check)."""
    if not 0 < gap < 1:
        raise ConfigError(f"--gap must lie in (0, 1) (the fraction of the initial objective "
                          f"gap left at the target, e.g. 0.01), got {gap}")
    if not isinstance(tune, bool):
        raise ConfigError(f"tune must be True or False, got {tune!r}")
    if not isinstance(seeds, int) or isinstance(seeds, bool) or seeds < 1:
        raise ConfigError(f"--seeds must be a positive integer (how many seeds each method "
                          f"runs on, e.g. 3), got {seeds!r}")
    if tune_rounds is not None and (not isinstance(tune_rounds, int)
                                    or isinstance(tune_rounds, bool) or tune_rounds < 1):
        raise ConfigError(f"--tune-rounds must be a positive integer (rounds per grid point, "
                          f"e.g. 100), got {tune_rounds!r}")
    if cfg.run.seed + seeds > 2**32:
        raise ConfigError(f"run.seed = {cfg.run.seed} with --seeds {seeds} passes 2**32; "
                          "lower run.seed")
    if isinstance(links, (str, Link)):
        links = [links]
    if not isinstance(links, (list, tuple)) or not all(isinstance(x, (str, Link))
                                                         for x in links):
        raise ConfigError(f"links must be link names or dcnn.link.Link objects (e.g. "
                          f"['lan', 'latency=1ms,bandwidth=1Gbit']), got {links!r}")
    links = [x if isinstance(x, Link) else parse_link(x) for x in links]
    for x in links:
        x.check()
    if len({x.name for x in links}) != len(links):
        raise ConfigError(f"--link names a link twice: {', '.join(x.name for x in links)}")
    explicit = methods is not None
    if isinstance(methods, str):             # "next-pl,gt" as on the command line
        methods = [m.strip() for m in methods.split(",") if m.strip()]
    if methods is None:
        methods = default_methods(directed=cfg.topology.graph in DIRECTED_GRAPHS)
    methods = list(methods)
    if not methods:
        raise ConfigError("no method given; e.g. --methods next-pl,gt,dgd")
    grids = dict(split_grid(m) for m in methods)             # "gt:alpha0=0.1|0.5" -> "gt"
    names = [split_grid(m)[0] for m in methods]
    if len(set(names)) != len(names):
        raise ConfigError(f"--methods lists a method twice: {','.join(methods)}")
    skipped = {m: why for m in names if (why := _fits(m, cfg))}
    if skipped and explicit:
        m, why = next(iter(skipped.items()))
        raise ConfigError(f"method {m!r} {why} and topology is {cfg.topology.graph!r} "
                          f"({cfg.topology.dynamic}); drop it from --methods or change "
                          "the topology")
    names = [m for m in names if m not in skipped]
    network = network or make_network(cfg.run.agents, backend=cfg.run.backend,
                                      timeout=cfg.run.comm_timeout)
    log = run_log(verbose and network.rank == 0)
    for m, why in skipped.items():
        log(f"compare: skipping {m} ({why})")
    out_dir = None
    if out is not None:
        if out == "auto":
            stamp = time.strftime("%Y%m%d-%H%M%S")
            name = f"{stamp}-compare-{Path(str(cfg.data.name)).stem}"
            out = network.broadcast(str(Path("runs") / name))
        out_dir = Path(out)
        problem = unusable_out(out_dir) if network.rank == 0 else None
        if (problem := network.broadcast(problem)) is not None:
            raise ConfigError(problem)
    if tune_factors is not None and not tune:
        raise ConfigError("--tune-factors sets the default grids of --tune; add --tune")
    configs = {m: _config_for(cfg, m) for m in names}        # every spec checked up front
    for m, c in configs.items():
        c.algorithm.options()                                 # and every method's options
        if grids[m] is not None:                              # and every point of its grid
            parse_method(f"{m}:{grids[m].key}=0")             # a key the method reads
            for v in grids[m].values:
                _with(c, {grids[m].key: v}).algorithm.options()
        elif tune:
            default = get_method(c.algorithm.name).step_grid()
            grids[m] = None if default is None else Grid(
                default[0], tuple(tune_factors or default[1]), relative=True)
    if cfg.run.checkpoint_every:
        engines = [m for m, c in configs.items()
                   if not get_method(c.algorithm.name).supports.resumable]
        if engines or out_dir is None:
            raise ConfigError(f"run.checkpoint_every = {cfg.run.checkpoint_every} needs an "
                              "output folder and methods that can be checkpointed"
                              + (f" ({engines[0]!r} cannot)" if engines else
                                 " (give --out DIR)") + "; set run.checkpoint_every = 0")
    seed_list = [cfg.run.seed + s for s in range(seeds)]
    references: dict[int, dict | None] = {s: None for s in seed_list}   # solved once a seed
    histories = {s: {} for s in seed_list}
    summaries = {s: {} for s in seed_list}
    tuning, settings = {}, {}
    kw = dict(network=network, model=model, data=data)
    for k, m in enumerate(names, 1):
        c = configs[m]
        c.run.progress = cfg.run.progress and verbose
        c.run.reference = cfg.run.reference
        setting = {}
        if grids[m] is not None:
            def tune_run(ct):
                runs = []
                for s in seed_list:
                    status, res = _attempt(_with(ct, {}, seed=s), None,
                                           reference=references[s], **kw)
                    runs.append((status, res))
                    if status != "ok":       # out of the choice already
                        break
                    references[s] = res.summary["centralized"]
                return runs
            tuning[m] = _tune(m, c, grids[m], rounds=tune_rounds or cfg.run.iterations,
                              run=tune_run, log=log, gap=gap,
                              auto=lambda ct, key: _auto_value(ct, key, **kw))
            if all(p["status"] == "skipped" for p in tuning[m]["points"]) \
                    and tuning[m]["points"]:
                skipped[m] = tuning[m]["points"][0]["error"]
                log(f"compare: [{k}/{len(names)}] {m}: skipped ({skipped[m]})")
                continue
            if tuning[m]["setting"] is None:
                log(f"compare: [{k}/{len(names)}] {m}: every point of its grid diverged")
                for s in seed_list:
                    histories[s][m] = summaries[s][m] = None
                settings[m] = ""
                continue
            setting = tuning[m]["setting"]
        settings[m] = ", ".join(_fmt_setting(*kv) for kv in setting.items())
        for s in seed_list:
            t0 = time.perf_counter()
            folder = None if out_dir is None else out_dir / m if seeds == 1 else \
                out_dir / m / f"seed-{s}"
            status, res = _attempt(_with(c, setting, seed=s), folder,
                                   reference=references[s], **kw)
            where = f"{m}" + (f" seed {s}" if seeds > 1 else "")
            if status == "skipped":
                skipped[m] = res
                log(f"compare: [{k}/{len(names)}] {where}: skipped ({res})")
                break
            if status == "diverged":
                histories[s][m] = summaries[s][m] = None
                log(f"compare: [{k}/{len(names)}] {where}: diverged ({res})")
                continue
            histories[s][m], summaries[s][m] = res.history, res.summary
            references[s] = res.summary["centralized"]
            log(f"compare: [{k}/{len(names)}] {where}: objective "
                f"{res.history.last['objective']:.4g}, test "
                f"{res.history.last['test_metric']:.4g} ({time.perf_counter() - t0:.1f} s)")
    ran = [m for m in names if m not in skipped]
    done = [x for s in seed_list for x in summaries[s].values() if x is not None]
    if not ran:
        raise LaunchError(f"no method fits this launch: {'; '.join(skipped.values())}")
    if not done:
        raise DivergenceError(f"every method diverged ({', '.join(ran)}); lower "
                              "algorithm.alpha0")
    task = done[0]["task"]
    per_seed, targets_by_seed = [], {}
    pooled = {m: get_method(parse_method(m)["name"]).pooled for m in ran}
    # one agent's share of a process's loop time (dcnn.link): pooled data is one machine's
    shares = {m: 1.0 if pooled[m] else network.size / cfg.run.agents for m in ran}
    for s in seed_list:
        rows_s, targets_by_seed[s] = compare_rows({m: histories[s][m] for m in ran},
                                                  reference=references[s], task=task, gap=gap,
                                                  shares=shares)
        per_seed.append(rows_s)
    rows = aggregate(per_seed, figures=FIGURES)
    for row in rows:
        row["setting"] = settings.get(row["method"], "")
        for link in links:          # linear in the parts: the mean's time = the mean time
            for t in ("test", "objective"):
                row[f"{t}_time_on_{link.name}"] = modelled_time(
                    *(row[f"{t}_{k}"] for k in ("compute_s", "exchanges", "busiest_bytes")),
                    link)
    measures = MEASURES + tuple((f"time_on_{x.name}", f"time on {x.describe()}", 1.0, " s")
                                for x in links)
    # each seed is measured against its own targets; the tables show their mean
    targets = _mean_targets(targets_by_seed)
    contenders = [m for m in ran if not pooled[m]]
    result = verdict(rows, targets=targets, contenders=contenders, measures=measures)
    crossings = crossovers(rows, links=links, contenders=contenders)
    metric = metric_name(task)
    reference = references[seed_list[0]]
    if out_dir is not None:
        def write() -> None:
            out_dir.mkdir(parents=True, exist_ok=True)
            keys = (ROW_KEYS + tuple(f"{t}_time_on_{x.name}" for x in links
                                     for t in ("test", "objective"))
                    + (SPREAD_KEYS if seeds > 1 else ()))
            with (out_dir / "compare.csv").open("w", newline="") as fh:
                writer = csv.DictWriter(fh, fieldnames=keys, extrasaction="ignore")
                writer.writeheader()
                writer.writerows(rows)
            (out_dir / "compare.json").write_text(json.dumps(_clean(
                {"rows": rows, "targets": targets, "centralized": reference,
                 "metric_name": metric, "methods": ran, "skipped": skipped,
                 "seeds": seed_list, "targets_by_seed": {str(s): t for s, t in
                                                         targets_by_seed.items()},
                 "rows_by_seed": {str(s): r for s, r in zip(seed_list, per_seed)},
                 "tuning": tuning, "verdict": result,
                 "links": [dataclasses.asdict(x) for x in links], "crossovers": crossings,
                 "config": resolve(cfg), "algorithm_keys": cfg.algorithm.explicit}),
                indent=2) + "\n")
            ok = [m for m in ran if any(histories[s].get(m) is not None for s in seed_list)]
            title = (f"{cfg.data.name}: {cfg.topology.graph} ({cfg.topology.dynamic}), "
                     f"{cfg.run.agents} agents" + (f", {seeds} seeds" if seeds > 1 else ""))
            said = format_verdict(result, metric=metric, seeds=seeds, measures=measures)
            (out_dir / "compare.md").write_text(markdown_compare(
                rows, targets=targets, metric=metric, reference=reference, title=title,
                verdict=said, links=links, crossings=crossings))
            plot_compare({m: [histories[s][m] for s in seed_list if histories[s].get(m)]
                          for m in ok}, out_dir / "compare.png", metric=metric,
                         reference=reference, title=title,
                         headline=said.splitlines()[0].split("; ")[0] if said else "")
            if links:
                plot_links(rows, out_dir / "compare_link.png", links=links, contenders=contenders,
                           title=title)

        # the other ranks wait as long as rank 0 writes and sends heartbeats
        network.on_root(write, what=f"writing the comparison into {out_dir}")
        log(f"results in {out_dir}/ (compare.csv, compare.json, compare.md, compare.png"
            + (", compare_link.png" if links else "") + ", one folder per method)")
    if verbose and network.rank == 0:
        print(format_compare(rows, targets=targets, metric=metric), flush=True)
        print(format_verdict(result, metric=metric, seeds=seeds, measures=measures), flush=True)
    first = seed_list[0]
    return CompareResult(rows=rows, histories=histories[first], summaries=summaries[first],
                         reference=reference, targets=targets, task=task, out=out_dir,
                         verdict=result, tuning=tuning, per_seed=per_seed,
                         crossovers=crossings)


def _mean_targets(targets_by_seed: dict) -> dict:
    """The targets of several seeds as one (their mean: each seed is measured against its
    own, the verdict line shows the mean)."""
    first = next(iter(targets_by_seed.values()))
    out = dict(first)
    for key in ("test", "objective"):
        vals = [t[key] for t in targets_by_seed.values()]
        out[key] = None if any(v is None for v in vals) else sum(vals) / len(vals)
    return out
