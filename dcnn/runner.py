"""One run from a config, as a pipeline: prepare (:mod:`dcnn.prepare`: data, partition,
model, local problems, topology, network) -> build (the method from the registry,
:mod:`dcnn.methods`) -> execute (the one loop, or the method's trainer) -> summarize ->
report. Used by the ``dcnn`` command and by Python code alike.

With an output folder ``DIR``, ``config.json`` is written before the loop starts and the
report when it ends; ``run.checkpoint_every = k`` writes ``DIR/checkpoint`` every ``k``
iterations (:mod:`dcnn.checkpoint`), and a diverging run leaves its last finite state there.
:func:`resume_experiment` (``dcnn run --resume DIR``) continues such a run to
``run.iterations``. Checkpoints cover every method of the one loop; methods registered with
``Supports(resumable=False)`` (the parallel trainers, whose state lives inside
torch.distributed) refuse ``run.checkpoint_every > 0``.
"""
from __future__ import annotations

import copy
import dataclasses
import functools
import json
import logging
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from threadpoolctl import threadpool_limits

from .checkpoint import (FOLDER, RESUME_FREE, Checkpoint, Checkpointer, config_difference,
                         load_checkpoint, trajectory_config)
from .comm import Network, make_network, torchrun_world
from .comm.agree import check_ranks_agree, rank_hosts
from .config import Config, _apply, load_config, parse_set, resolve
from .errors import CheckpointError, ConfigError
from .prepare import Prepared, fingerprint, local_problems, make_model, prepare
from .topology import DIRECTED_GRAPHS
from .metrics import History, metric_name, rounds_to_target, target_metric
from .methods import Built, get_method, method_names
from .methods.runs import LoopMethod
from .reference import centralized_reference
from .reference_cache import lookup, reference_key, store
from .log import run_log
from .report import format_table, write_config, write_report
from .saved import Predictor, model_files, preprocessing_of

__all__ = ["RunResult", "run_experiment", "resume_experiment", "local_problems",
           "configure_threads", "build", "summarize", "reference_of", "make_model"]


@dataclass
class RunResult:
    """What :func:`run_experiment` returns: the History, the summary, the final state, the
    output folder (or ``None``) and the trained network at ``w_bar`` with its preprocessing
    (:class:`dcnn.saved.Predictor`: ``result.predict(X)`` on raw features)."""

    history: History
    summary: dict
    state: object
    out: Path | None
    predictor: Predictor | None = None

    def predict(self, X):
        """Predictions of the trained network for raw features ``X`` (see
        :meth:`dcnn.saved.Predictor.predict`)."""
        return self.predictor.predict(X)


def configure_threads(requested: int, *, ranks: int, fill_cores: bool = False) -> int:
    """torch threads per rank: ``requested`` if > 0; else respect ``OMP_NUM_THREADS``; else
    one thread (``fill_cores``: the host's cores divided by the ranks sharing the host, what
    the benchmarks use on an idle machine).

    One thread is the default because it never loses much and the alternative can lose a
    lot: on a 2-core machine two threads ran the default run (100 iterations) in 5.62 s
    against 5.95 s when idle, but in 10.0 s (up to 21 s) against 8.4 s beside two busy
    processes (docs/running.md).
    numpy/scipy's OpenBLAS is held to one thread: dcnn's heavy maths runs in torch, and an
    OpenBLAS pool spinning beside torch's OpenMP pool slows both down."""
    threadpool_limits(1, user_api="blas")
    if requested > 0:
        torch.set_num_threads(requested)
    elif "OMP_NUM_THREADS" not in os.environ:
        local = os.environ.get("MPI_LOCALNRANKS") or os.environ.get(
            "OMPI_COMM_WORLD_LOCAL_SIZE") or ranks
        cores = max(1, (os.cpu_count() or 1) // max(1, int(local)))
        torch.set_num_threads(cores if fill_cores else 1)
    return torch.get_num_threads()


def _out_dir(out, cfg: Config, network: Network) -> Path | None:
    if out is None:
        return None
    if out == "auto":
        stamp = time.strftime("%Y%m%d-%H%M%S")
        out = Path("runs") / f"{stamp}-{Path(str(cfg.data.name)).stem}-{cfg.algorithm.name}"
        while network.rank == 0 and out.exists():
            out = out.with_name(out.name + "+")
        out = network.broadcast(str(out))
    return Path(out)


PARTIAL = ".partial"


def _stage_of(out: Path) -> Path:
    """``OUT.partial`` beside the real folder ``out`` (``--out .`` or a symlink included)."""
    real = Path(os.path.realpath(out))
    return real.with_name(real.name + PARTIAL)


def _check_out(out: Path | None, network: Network, *,
               resume: bool) -> tuple[Path | None, Path | None]:
    """``(out, stage)`` after refusing, before any work, an output folder that cannot be
    written or that holds an earlier run's checkpoint. ``stage`` is ``OUT.partial`` when
    ``out`` holds a finished result (``summary.json``): the new run keeps its checkpoints there
    and replaces the result only when it has finished, so a run that fails leaves it byte for
    byte as it was. Resuming ``OUT.partial`` continues that staged run and finishes into
    ``OUT``. Rank 0 looks; every rank gets its verdict."""
    if out is None:
        return None, None
    verdict = None
    if network.rank == 0:
        verdict = _out_problem(out, resume=resume)
    verdict = network.broadcast(verdict)
    if verdict is None:
        return out, None
    if verdict == "stage":
        return out, _stage_of(out)
    if verdict == "promote":          # --resume OUT.partial of a finished OUT
        return Path(str(out)[:-len(PARTIAL)]), out
    raise ConfigError(verdict)


MIN_FREE = 16 * 2**20   # bytes an output folder's file system must have free before a run


def unusable_out(out: Path) -> str | None:
    """A one-line refusal for an output folder that cannot be written (a file on its path,
    no write permission, less than ``MIN_FREE`` bytes free), else None."""
    p = Path(out)
    while not p.exists() and p != p.parent:      # the nearest folder that exists
        p = p.parent
    if not p.is_dir():
        return f"--out {out}: {p} is a file, not a folder; give another --out"
    if not os.access(p, os.W_OK | os.X_OK):
        return f"--out {out}: {p} is not writable; give a folder you can write to"
    free = shutil.disk_usage(p).free
    if free < MIN_FREE:
        return (f"--out {out}: its file system has {free / 2**20:.1f} MB free, less than the "
                f"{MIN_FREE // 2**20} MB a run's results need; free disk space or give "
                "another --out")
    return None


def _out_problem(out: Path, *, resume: bool) -> str | None:
    """A one-line refusal for ``out``, ``"stage"``, ``"promote"`` or None (write into it)."""
    if (problem := unusable_out(out)) is not None:
        return problem
    if resume:
        done = Path(str(out)[:-len(PARTIAL)]) if str(out).endswith(PARTIAL) else None
        return "promote" if done is not None and (done / "summary.json").is_file() else None
    if (out / FOLDER / "manifest.json").exists():
        return (f"--out {out} holds the checkpoint of an earlier run; continue it with "
                f"--resume {out}, or give another --out folder")
    if not (out / "summary.json").is_file():
        return None
    stage = _stage_of(out)
    if stage.exists():
        return (f"--out {out}: {stage} holds the partial state of an earlier run into it "
                f"that did not finish; continue it with --resume {stage}, or delete it")
    return "stage"


def build(exp: Prepared, *, resumed_info: dict | None = None) -> tuple[Built, object]:
    """The method of ``exp.cfg.algorithm`` from the registry, built on ``exp``: ``(built,
    options)``. ``resumed_info`` (a checkpoint's resolved values) replaces ``"auto"``
    options, so a resumed run keeps the steps the interrupted one estimated."""
    a = exp.cfg.algorithm
    spec = get_method(a.name)
    options = a.options()
    if resumed_info:
        changes = {k: v for k, v in resumed_info.items()
                   if v is not None and getattr(options, k, None) == "auto"}
        options = dataclasses.replace(options, **changes)
    return spec.build(exp, options), options


def check_supports(cfg: Config) -> None:
    """Refuse, before anything runs, a graph or regulariser the method's registry entry
    (:class:`~dcnn.methods.Supports`) says it cannot handle."""
    name, tp = cfg.algorithm.name, cfg.topology
    supports = get_method(name).supports
    kind = dict(directed=tp.graph in DIRECTED_GRAPHS,
                time_varying=tp.dynamic != "static" or tp.cutoff_agent is not None)
    why = supports.refusal(**kind)
    if why:
        able = [n for n in method_names() if get_method(n).supports.topology
                and get_method(n).supports.refusal(**kind) is None]
        fix = {"needs a static graph": "set topology.dynamic = 'static'",
               "needs an undirected graph": "use an undirected topology.graph",
               "needs a directed graph": "use a directed topology.graph"}.get(why, "change it")
        raise ConfigError(f"algorithm.name = {name!r} {why} and the topology is {tp.graph!r} "
                          f"({tp.dynamic}); {fix}, or use a method that runs on it: "
                          f"{', '.join(map(repr, able))}")
    if not supports.l1 and cfg.model.regularizer in ("l1", "elastic_net"):
        able = [n for n in method_names() if get_method(n).supports.l1]
        raise ConfigError(f"algorithm {name!r} needs a smooth regularizer, got "
                          f"model.regularizer = {cfg.model.regularizer!r}; use 'l2' or 'none', "
                          f"or a method with prox steps: {', '.join(map(repr, able))}")


PYTHON_MODEL, PYTHON_DATA = "<python>", "<python arrays>"


def recorded_config(cfg: Config, *, model=None, data=None) -> Config:
    """The config as ``config.json`` and the checkpoints record it: a model or data given as
    Python objects by a marker (a resume must be given them again), a model file by its
    absolute path."""
    out = copy.deepcopy(cfg)
    if model is not None:
        name = getattr(model, "__qualname__", type(model).__name__)
        out.model.name = f"{PYTHON_MODEL}:{name}"
    elif ":" in out.model.name:
        source, _, obj = out.model.name.rpartition(":")
        if source.endswith(".py") or "/" in source:
            out.model.name = f"{Path(source).expanduser().resolve()}:{obj}"
    if data is not None:
        out.data.name = PYTHON_DATA
    return out


def _check_checkpointing(cfg: Config, out, resume: Checkpoint | None) -> None:
    r, name = cfg.run, cfg.algorithm.name
    if not get_method(name).supports.resumable and (r.checkpoint_every or resume is not None):
        raise ConfigError(f"run.checkpoint_every = {r.checkpoint_every} (and --resume) is not "
                          f"supported for algorithm.name = {name!r}: it keeps its state "
                          "inside torch.distributed; set run.checkpoint_every = 0")
    if r.checkpoint_every and out is None:
        raise ConfigError(f"run.checkpoint_every = {r.checkpoint_every} needs an output folder "
                          "for the checkpoints; give --out DIR (out=DIR in Python)")


def reference_of(exp: Prepared, *, cache: bool = True) -> dict:
    """The centralized reference (rank 0 solves, every rank gets it): the same model, loss and
    regulariser on the pooled data, by L-BFGS-B (FISTA with l1); solved once per distinct
    problem (:mod:`dcnn.reference_cache`; ``cache = False`` for a model given as an object,
    whose ``forward`` no key can hold), in at most ``run.reference_budget`` seconds (a
    reference stopped by it is marked ``stopped_at_budget``, kept for this process only, and
    solved again from the start when a run allows more time)."""
    budget = exp.cfg.run.reference_budget or None

    def solve() -> dict:
        key = reference_key(exp) if cache else None
        ref = lookup(key)
        if ref is not None and ref.get("stopped_at_budget") and (
                budget is None or budget > ref.get("budget_s", 0)):
            ref = None                       # a longer budget now: solved again, from w0
        if ref is None:
            res = centralized_reference(exp.pooled(), test=exp.test, budget=budget)
            ref = {"objective": res.objective, "grad_norm": res.grad_norm,
                   "train_metric": res.train_metric, "test_metric": res.test_metric,
                   "iterations": res.iterations,
                   "solver": "L-BFGS-B" if exp.regularizer.smooth else "FISTA",
                   "stopped_at_budget": res.stopped, "budget_s": budget}
            # one stopped by the clock depends on the machine's load: this process only
            store(key, ref, disk=not res.stopped)
        return ref

    # the other ranks wait as long as rank 0 solves and sends heartbeats
    return exp.network.on_root(solve, what="solving the centralized reference")


def local_solve_time(watch, *, history: History, resumed: float = 0.0) -> dict | None:
    """``{"local_solve_s", "local_solve_share"}``: the seconds this process spent in the
    surrogate's local steps (``watch``, a :class:`~dcnn.surrogates.timed.Stopwatch`) and
    their share of its loop time in this session (the loop's ``time_s`` less the ``resumed``
    seconds a checkpoint carried); None for a method without local solves."""
    if watch is None:
        return None
    loop = history.last["time_s"] - resumed
    return {"local_solve_s": watch.seconds,
            "local_solve_share": watch.seconds / loop if loop > 0 else None}


def summarize(exp: Prepared, *, label: str, options, info: dict, state, history: History,
              reference: dict | None, threads: int) -> dict:
    """The run's ``summary.json``: the method and its resolved values, the final metrics,
    the centralized reference and the rounds to its test target."""
    ds, r, last = exp.dataset, exp.cfg.run, history.last
    return {
        "algorithm": exp.cfg.algorithm.name, "method": label,
        "surrogate": info.get("surrogate"), "tau": info.get("tau"),
        "tau_final": getattr(state, "tau", None) if "tau" in info else None,
        "solver": info.get("solver"), "lr": info.get("lr"),
        "schedule": info.get("schedule"), "alpha0": getattr(options, "alpha0", None),
        "optimizer": info.get("optimizer"), "batch_size": info.get("batch_size"),
        "dataset": ds.name, "task": ds.task,
        "agents": r.agents, "ranks": (torchrun_world() or (0, exp.network.size))[1],
        "threads_per_rank": threads,
        "iterations": int(state.t), "parameters": exp.model.n_params,
        "metric_name": metric_name(ds.task),
        "final": {k: last[k] for k in ("objective", "grad_norm", "consensus_error",
                                       "train_metric", "test_metric", "agent_test_min",
                                       "agent_test_max", "sparsity")},
        "centralized": reference,
        "to_target": None if not reference or reference["test_metric"] is None else
        rounds_to_target(history, target=target_metric(reference["test_metric"], ds.task),
                         task=ds.task),
        "bytes_sent_per_agent": last["bytes_per_agent"],
        "engine": info.get("engine"),
        "wall_time_s": last["time_s"], "eval_time_s": last["eval_time_s"],
        **provenance(),
    }


@functools.lru_cache(maxsize=1)
def _commit() -> str | None:
    """The git commit of a dcnn checkout, ``+dirty`` with uncommitted changes (``None`` for
    an installed copy); looked up once per process."""
    import subprocess
    root = Path(__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return None
    try:
        git = ["git", "-C", str(root)]
        head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=5).stdout.strip()
        dirty = subprocess.run([*git, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return (head + ("+dirty" if dirty else "")) if head else None


def provenance() -> dict:
    """What made the result: dcnn's version, the git commit of a dcnn checkout (``None`` for
    an installed copy), the command line (shell-quoted) and rank 0's host (``hosts``, added
    by the run, maps every host to its ranks)."""
    import shlex
    import socket

    from . import __version__
    return {"dcnn_version": __version__, "git_commit": _commit(),
            "command": shlex.join(sys.argv), "host": socket.gethostname()}


def final_parameters(exp: Prepared, state) -> torch.Tensor:
    """``w_bar``, the flat parameters the History's metrics are measured at: the mean of the
    agents' final iterates (collective), or a parallel trainer's final parameters."""
    from .methods.runs import TrainerState
    if isinstance(state, TrainerState):
        return state.X[0]
    return exp.network.agent_sum(state.X) / exp.network.n_agents


def _agreed(cfg: Config) -> dict:
    """What every rank must hold alike: the resolved config (but the keys that only change
    this process's output or threads, and a data file's path, whose contents the data's
    sha256 compares) and dcnn's version."""
    from . import __version__
    flat = {f"{s}.{k}": v for s, sec in resolve(cfg).items() for k, v in sec.items()}
    for key in ("run.progress", "run.threads"):
        flat.pop(key, None)
    if Path(str(flat.get("data.name", ""))).suffix in (".csv", ".npz"):
        flat.pop("data.name")
    return {**flat, "dcnn.version": __version__}


def run_experiment(cfg: Config, *, out: str | Path | None = "auto",
                   network: Network | None = None, verbose: bool = True,
                   reference: dict | None = None, resume: Checkpoint | None = None,
                   model=None, data=None, callbacks=()) -> RunResult:
    """Run the experiment ``cfg`` describes; write the report into ``out`` (rank 0).

    The run is a pipeline: :func:`dcnn.prepare.prepare` -> :func:`build` (the method from
    the registry) -> execute (the one loop, or the method's trainer) -> :func:`summarize` ->
    report. ``model`` (an ``nn.Module``, a class or a factory) and ``data`` (``(X, y)``,
    ``(X, y, X_test, y_test)`` or a :class:`dcnn.data.Dataset`) replace the config's model and
    dataset. ``reference`` (a summary's ``centralized`` entry) skips solving the reference
    again. ``resume`` (a checkpoint of this config, see :func:`resume_experiment`) continues
    it. ``callbacks`` (the one-loop methods): each is called as ``cb(state, record)`` at every
    evaluation, on every rank; it may add its own metrics to ``record`` (they become columns
    of the History and ``history.csv``) and stops the run by returning ``True``."""
    before = torch.get_num_threads()
    try:
        return _run_experiment(cfg, out=out, network=network, verbose=verbose,
                               reference=reference, resume=resume, model=model, data=data,
                               callbacks=callbacks)
    finally:
        torch.set_num_threads(before)     # the caller's process keeps its own setting


def _run_experiment(cfg: Config, *, out: str | Path | None = "auto",
                    network: Network | None = None, verbose: bool = True,
                    reference: dict | None = None, resume: Checkpoint | None = None,
                    model=None, data=None, callbacks=()) -> RunResult:
    if not isinstance(cfg, Config):
        raise ConfigError(f"cfg must be a dcnn.Config, got {type(cfg).__name__}; build it "
                          "with dcnn.load_config(...)")
    if out not in (None, "auto") and Path(out).exists() and not Path(out).is_dir():
        raise ConfigError(f"--out {out} is a file; give a folder")
    if isinstance(model, str):               # "file.py:Name": the config's own way
        cfg = copy.deepcopy(cfg)
        _apply(cfg, "model", "name", model)
        model = None
    r, tp = cfg.run, cfg.topology
    if isinstance(callbacks, (str, bytes)) or not all(callable(c) for c in callbacks):
        raise ConfigError("callbacks must be a sequence of functions cb(state, record), got "
                          f"{callbacks!r}")
    cfg.algorithm.options()                  # the method's options, checked before any work
    check_supports(cfg)
    torchrun = torchrun_world()
    if torchrun is not None:
        if get_method(cfg.algorithm.name).supports.topology:
            raise ConfigError(f"{cfg.algorithm.name!r} spreads its agents over MPI ranks; "
                              f"under torchrun each of the {torchrun[1]} processes would run "
                              f"a whole copy: launch it with mpiexec -n {torchrun[1]} (torchrun "
                              "serves the parallel trainers: ddp, pipeline, tensor-parallel, "
                              "...)")
        if torchrun[0] != 0:                 # the trainers' result is alike on every rank
            verbose, out = False, None
    _check_checkpointing(cfg, out, resume)
    network = network or make_network(r.agents, backend=r.backend, timeout=r.comm_timeout)
    log = run_log(verbose and network.rank == 0)
    threads = configure_threads(r.threads, ranks=network.size)
    how = ("run.threads" if r.threads > 0 else "OMP_NUM_THREADS" if "OMP_NUM_THREADS" in
           os.environ else "the default; more with run.threads = C")
    where = f"{torchrun[1]} torchrun processes" if torchrun else f"{network.size} rank(s)"
    log(f"{r.agents} agents on {where}, {threads} torch thread(s) per rank "
        f"({how})")
    check_ranks_agree(_agreed(cfg), network=network, what="config",
                      fix="start every rank with the same config file, --set options and dcnn")
    hosts = rank_hosts(network)
    out_dir = _out_dir(out, cfg, network)
    out_dir, stage = _check_out(out_dir, network, resume=resume is not None)
    exp = prepare(cfg, network=network, model=model, data=data)
    inputs = fingerprint(exp)
    check_ranks_agree(inputs, network=network, what="data or initial model (their sha256)",
                      fix="give every rank the same data files and model")
    if resume is not None and resume.info.get("inputs", inputs) != inputs:
        which = [k for k in inputs if resume.info["inputs"].get(k) != inputs[k]]
        raise CheckpointError(f"the checkpoint in {resume.directory} was written for other "
                              f"{' and '.join(which)} (their sha256 differ); resume with the "
                              "run's own data and model (from Python: resume_experiment(out, "
                              "model=..., data=...))")
    built, options = build(exp, resumed_info=resume.info if resume is not None else None)
    spec = get_method(cfg.algorithm.name)
    ignored = sorted(set(cfg.algorithm.explicit) - {f.name for f in
                                                    dataclasses.fields(spec.options)})
    if ignored:
        log(f"algorithm keys not read by {cfg.algorithm.name!r} (ignored): "
            f"{', '.join(ignored)}")
    label, info = spec.label_of(options), built.info
    ds = exp.dataset
    log(f"{ds.name}: {ds.n_train} train / {ds.n_test} test samples, task {ds.task}; "
        f"model with {exp.model.n_params} parameters; graph {tp.graph} ({tp.dynamic}); "
        f"{label}: " + ", ".join(f"{k} = {v:.4g}" if isinstance(v, float) else f"{k} = {v}"
                                 for k, v in info.items()))
    checkpoints = None
    work = stage or out_dir      # checkpoints go beside a finished result, not into it
    recorded = resolve(recorded_config(cfg, model=model, data=data))
    if out_dir is not None:
        # config.json is written with the first checkpoint (what --resume reads) or with the
        # report: a run refused while it starts leaves the folder as it was
        checkpoints = Checkpointer(work / FOLDER, every=r.checkpoint_every,
                                   config=recorded, info={**info, "inputs": inputs},
                                   before_first=lambda: write_config(work, recorded))
    if resume is not None:
        log(f"resuming from iteration {resume.iteration} ({resume.directory})")
    if callbacks:
        if not isinstance(built, LoopMethod):
            raise ConfigError(f"callbacks (and --tensorboard) run in the one loop of the "
                              f"decentralized methods; {cfg.algorithm.name!r} is a parallel "
                              "trainer: drop them")
        extra = {"callbacks": tuple(callbacks)}
    else:
        extra = {}
    state, history = built.execute(exp, progress=r.progress and verbose, **extra,
                                   checkpoints=checkpoints, resume=resume)
    log(f"training: {history.last['time_s']:.3g} s in the loop, "
        f"{history.last['eval_time_s']:.3g} s evaluating ({len(history)} evaluations)",
        logging.DEBUG)
    solve = local_solve_time(getattr(built, "solve_watch", None), history=history,
                             resumed=resume.counters.get("step_time", 0.0) if resume else 0.0)
    if solve is not None:
        share = solve["local_solve_share"]
        share = "-" if share is None else f"{100 * share:.0f} %"
        log(f"local steps ({info.get('solver') or 'closed form'}): "
            f"{solve['local_solve_s']:.3g} s, {share} of the loop on rank 0")
    ref = reference
    if r.reference and ref is None:
        t_ref = time.perf_counter()
        ref = reference_of(exp, cache=model is None)
        log(f"centralized reference: {time.perf_counter() - t_ref:.3g} s "
            f"({ref['solver']}, {ref['iterations']} iterations)", logging.DEBUG)
    if ref is not None and ref.get("stopped_at_budget"):
        log(f"warning: the centralized reference stopped at its time budget "
            f"(run.reference_budget = {ref['budget_s']:g} s) after {ref['iterations']} "
            f"iterations with gradient norm {ref['grad_norm']:.3g}: its objective is an upper "
            "bound on the optimum and the targets derived from it are loose; raise "
            "run.reference_budget (0 = no limit) for an exact reference", logging.WARNING)
    summary = summarize(exp, label=label, options=options, info=info, state=state,
                        history=history, reference=ref, threads=threads)
    summary.update(solve or {})
    summary["hosts"] = hosts
    w_bar = final_parameters(exp, state)               # collective: every rank
    trained = Predictor(exp.model.load_into(w_bar, copy.deepcopy(exp.model.module)).eval(),
                        preprocessing_of(exp.dataset, loss=exp.loss, dtype=exp.model.dtype))
    if out_dir is not None:
        saved = model_files(module=trained.module, preprocessing=trained.preprocessing)

        def finish() -> None:
            write_report(out_dir, history=history, summary=summary, config=recorded,
                         files=saved)
            if stage is not None:            # the new result is in place: its checkpoints too
                if (stage / FOLDER).exists():
                    shutil.rmtree(out_dir / FOLDER, ignore_errors=True)  # no manifest: stale
                    shutil.move(stage / FOLDER, out_dir / FOLDER)
                shutil.rmtree(stage, ignore_errors=True)

        # the other ranks wait as long as rank 0 writes and sends heartbeats
        network.on_root(finish, what=f"writing the results into {out_dir}")
        log(f"results in {out_dir}/ (history.csv, summary.json, curves.png, config.json, "
            "model.pt; read back with dcnn.load_run)")
    if verbose and network.rank == 0:
        print(format_table(summary), flush=True)
    return RunResult(history=history, summary=summary, state=state, out=out_dir,
                     predictor=trained)


def _saved_config(directory: Path) -> Config:
    """The config ``directory/config.json`` holds (written by every run with an output
    folder), validated like any config."""
    path = directory / "config.json"
    if not path.is_file():
        raise CheckpointError(f"{path} is missing: {directory} is not the output folder of a "
                              "dcnn run; give the --out folder of the run to resume")
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path} cannot be read as JSON ({exc}); restore it from the "
                              "run's checkpoint manifest or start the run again") from None
    if not isinstance(saved, dict):
        raise CheckpointError(f"{path} is not a config (a JSON object of sections)")
    # keys that may change on resume fall back to their defaults when saved as null
    free = {tuple(k.split(".")) for k in RESUME_FREE}
    saved = {sec: {k: v for k, v in keys.items() if v is not None or (sec, k) not in free}
             if isinstance(keys, dict) else keys for sec, keys in saved.items()}
    return load_config(None, **saved)


def resume_experiment(out: str | Path, *, overrides: list[str] | tuple = (),
                      network: Network | None = None, verbose: bool = True, model=None,
                      data=None, callbacks=()) -> RunResult:
    """Continue the run whose output folder is ``out`` from its checkpoint
    (``out/checkpoint``) to ``run.iterations``, and write the complete report into ``out``
    (the staged ``OUT.partial`` of a rerun into a finished ``OUT`` finishes into ``OUT``).

    The config is ``out/config.json``; ``overrides`` (``--set`` items) may change only the
    keys of :data:`dcnn.checkpoint.RESUME_FREE` (e.g. ``run.iterations`` to extend the run),
    since every other key changes the trajectory. On the rank count that wrote the
    checkpoint the result is bitwise that of the uninterrupted run; on another rank count
    (same ``run.agents``) it agrees to rounding. A run whose ``model`` or ``data`` were Python
    objects is resumed with the same objects (their sha256 must match the checkpoint's).
    """
    out = Path(out)
    cfg = _saved_config(out)
    before = trajectory_config(resolve(cfg))
    for item in overrides:
        _apply(cfg, *parse_set(item))
    diff = config_difference(before, trajectory_config(resolve(cfg)))
    if diff is not None:
        raise ConfigError(f"--set cannot change {diff.split(' = ')[0]} on --resume ({diff}): "
                          f"it changes the trajectory; only {', '.join(RESUME_FREE)} may "
                          "change; start a new run with --out for a different config")
    network = network or make_network(cfg.run.agents, backend=cfg.run.backend,
                                      timeout=cfg.run.comm_timeout)
    ckpt = load_checkpoint(out / FOLDER, network=network, config=resolve(cfg))
    if ckpt.iteration > cfg.run.iterations:
        raise ConfigError(f"run.iterations = {cfg.run.iterations} is below the checkpoint's "
                          f"iteration {ckpt.iteration}; resume with --set "
                          f"run.iterations={ckpt.iteration} or more")
    return run_experiment(cfg, out=out, network=network, verbose=verbose, resume=ckpt,
                          model=model, data=data, callbacks=callbacks)
