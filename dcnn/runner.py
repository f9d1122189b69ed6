"""One run from a config: dataset -> partition -> local problems -> topology -> network ->
algorithm loop -> History -> report. Used by the ``dcnn`` command and by Python code alike.

With an output folder ``DIR``, ``config.json`` is written before the loop starts and the
report when it ends; ``run.checkpoint_every = k`` writes ``DIR/checkpoint`` every ``k``
iterations (:mod:`dcnn.checkpoint`), and a diverging run leaves its last finite state there.
:func:`resume_experiment` (``dcnn run --resume DIR``) continues such a run to
``run.iterations``. Checkpoints cover every method of the one loop; the engine baselines
(``ALGORITHMS[name].kind == "engine"``) keep their state inside torch.distributed and refuse
``run.checkpoint_every > 0``.
"""
from __future__ import annotations

import copy
import datetime
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from .algorithms import ALGORITHMS, Scaled, auto_lr, make_schedule, run_loop
from .algorithms.loop import check_compatible
from .algorithms.registry import OPTIMIZER_DEFAULT
from .algorithms.steps import ADAM_LR
from .checkpoint import (FOLDER, RESUME_FREE, Checkpoint, Checkpointer, config_difference,
                         load_checkpoint, trajectory_config)
from .comm import Network, make_network
from .config import Config, _apply, load_config, parse_set, resolve
from .errors import CheckpointError, ConfigError, DataError, LaunchError
from .data import encode_targets, load_dataset, partition
from .metrics import History, metric_name, rounds_to_target, target_metric
from .problems import FlatModel, LocalProblems, make_regularizer, mlp
from .reference import centralized_reference
from .report import format_table, write_config, write_report
from .surrogates import make_blocked, make_surrogate
from .surrogates.tau import auto_tau
from .topology import make_topology

__all__ = ["RunResult", "run_experiment", "resume_experiment", "local_problems",
           "configure_threads",
           "build_algorithm", "method_label", "make_model", "SCHEME_KEYS"]

_DTYPES = {"float64": torch.float64, "float32": torch.float32}


@dataclass
class RunResult:
    history: History
    summary: dict
    state: object
    out: Path | None


def configure_threads(requested: int, *, ranks: int) -> int:
    """torch threads per rank: ``requested`` if > 0; else respect ``OMP_NUM_THREADS``; else
    the host's cores divided by the ranks sharing the host (never oversubscribe).

    numpy/scipy's OpenBLAS is held to one thread: dcnn's heavy maths runs in torch, and an
    OpenBLAS pool spinning beside torch's OpenMP pool slows both down."""
    threadpool_limits(1, user_api="blas")
    if requested > 0:
        torch.set_num_threads(requested)
    elif "OMP_NUM_THREADS" not in os.environ:
        local = os.environ.get("MPI_LOCALNRANKS") or os.environ.get(
            "OMPI_COMM_WORLD_LOCAL_SIZE") or ranks
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // max(1, int(local))))
    return torch.get_num_threads()


def local_problems(*, model: FlatModel, X, T, parts, network: Network, loss: str, task: str,
                   regularizer) -> LocalProblems:
    """The group's :class:`LocalProblems` from pooled arrays and one index array per agent."""
    if len(parts) != network.n_agents:
        raise DataError(f"{len(parts)} shards for {network.n_agents} agents; give one index "
                        "array per agent")
    X, T = np.asarray(X), np.asarray(T)
    for i, p in enumerate(parts):
        idx = np.asarray(p)
        if idx.size and (idx.dtype.kind not in "iu" or idx.min() < 0 or idx.max() >= len(X)):
            bad = idx.ravel()[0] if idx.dtype.kind not in "iu" else \
                (idx.min() if idx.min() < 0 else idx.max())
            raise DataError(f"part {i} has index {bad!r} but there are {len(X)} samples; give "
                            f"integer indices in 0..{len(X) - 1}")
    T = T.reshape(len(T), -1)
    shards = [(X[parts[i]], T[parts[i]]) for i in network.agents]
    return LocalProblems(model=model, shards=shards, loss=loss, task=task, n_total=len(X),
                         regularizer=regularizer, agent_ids=list(network.agents))


def make_model(m, *, n_inputs: int, n_outputs: int, seed: int, dtype: torch.dtype):
    """The module the ``model`` section ``m`` names: the MLP or the one-block transformer."""
    if m.name == "transformer":
        from .problems.transformer import transformer
        return transformer(n_inputs=n_inputs, n_outputs=n_outputs, tokens=m.tokens,
                           d_model=m.d_model, heads=m.heads, ffn=m.ffn, seed=seed,
                           dtype=dtype)
    return mlp(n_inputs=n_inputs, hidden=m.hidden, n_outputs=n_outputs,
               activation=m.activation, seed=seed, dtype=dtype)


def _out_dir(out, cfg: Config, network: Network) -> Path | None:
    if out is None:
        return None
    if out == "auto":
        stamp = time.strftime("%Y%m%d-%H%M%S")
        out = Path("runs") / f"{stamp}-{cfg.data.name}-{cfg.algorithm.name}"
        while network.rank == 0 and out.exists():
            out = out.with_name(out.name + "+")
        out = network.broadcast(str(out))
    return Path(out)


def method_label(a) -> str:
    """``next-pl``, ``sonata-fl``, ``centralized-lbfgs``, or the algorithm's name."""
    kind = ALGORITHMS[a.name].kind
    if kind == "surrogate":
        return f"{a.name}-{a.surrogate}"
    if kind == "centralized":
        return f"{a.name}-{_optimizer(a)}"
    if a.name == "pipeline":
        return f"pipeline-{a.pipeline_schedule}"
    if a.name == "local-parallel":
        return f"local-{a.local_mode}"
    return a.name


def _optimizer(a) -> str:
    kind = ALGORITHMS[a.name].kind
    opt = OPTIMIZER_DEFAULT.get(kind) if a.optimizer == "auto" else a.optimizer
    if kind == "engine" and opt == "lbfgs":
        raise ConfigError(f"algorithm.name = {a.name!r} trains with 'gd' or 'adam', not "
                          "'lbfgs'; set algorithm.optimizer = 'gd' or 'adam'")
    return opt


@dataclass(frozen=True)
class EngineState:
    """What an engine baseline leaves: the iteration count and the trained ``w`` (1, P)."""

    t: int
    X: torch.Tensor


def _microbatches(a, *, batch: int, ranks: int) -> int:
    """``algorithm.microbatches`` or, if 0, the largest divisor of the batch up to 8 that the
    pipeline schedule accepts on ``ranks`` stages."""
    if a.microbatches:
        return a.microbatches
    from .baselines.pipeline import _VIRTUAL, _check_microbatches
    stages = ranks * _VIRTUAL[a.pipeline_schedule]
    for m in range(min(8, batch), 0, -1):
        if batch % m == 0:
            try:
                _check_microbatches(a.pipeline_schedule, m, batch, stages, ranks)
                return m
            except ConfigError:
                continue
    raise LaunchError(f"no micro-batch count up to 8 divides the batch of {batch} samples for "
                       f"schedule {a.pipeline_schedule!r} on {ranks} rank(s); set "
                       "algorithm.microbatches")


# the keyword arguments of each scheme of dcnn.baselines and the algorithm keys they come from
SCHEME_KEYS = {
    "sil": {"stages": "stages", "noise": "sil_noise", "recovery": "recovery"},
    "codistillation": {"models": "models", "exchange_every": "exchange_every",
                       "burn_in": "burn_in", "distill_weight": "distill_weight"},
    "local-parallel": {"stages": "stages", "local_mode": "local_mode", "chunk": "chunk"},
    "sequence-parallel": {},
}


def _train_engine(a, info: dict, *, model: FlatModel, shards: list, test, loss: str,
                  task: str, regularizer, r, network: Network, progress: bool):
    """Train with :func:`dcnn.baselines.train_engine` or one of the schemes
    (:data:`dcnn.baselines.SCHEMES`): ``(EngineState, History)``."""
    from .baselines import SCHEMES, train_engine
    common = dict(module=model.module, shards=shards, test=test, loss=loss, task=task,
                  regularizer=regularizer, iterations=r.iterations,
                  optimizer=info["engine_optimizer"], lr=info["engine_lr"],
                  batch_size=info["batch_size"], eval_every=r.eval_every, seed=r.seed,
                  progress=progress,
                  # the process group's timeout (gloo's, for every collective and send)
                  timeout=datetime.timedelta(seconds=min(r.comm_timeout, 1e7)))
    extra = {}
    if a.name in SCHEMES:
        extra = {k: getattr(a, key) for k, key in SCHEME_KEYS[a.name].items()}
        history, details = SCHEMES[a.name](**common, **extra)
    else:
        total = sum(len(x) for x, _ in shards)
        batch = min(info["batch_size"] or total, total)      # what the pipeline engine uses
        if a.name == "pipeline":
            extra = {"microbatches": _microbatches(a, batch=batch, ranks=network.size)}
        history, details = train_engine(method=a.name, **common,
                                        schedule=a.pipeline_schedule,
                                        microbatches=extra.get("microbatches", 1))
    w = details.pop("final_params")
    info["engine"] = {**extra, **details}      # the trainer's resolved values win
    return EngineState(t=r.iterations, X=w.reshape(1, -1)), history


def build_algorithm(a, *, problem: LocalProblems, network: Network, X0: torch.Tensor,
                    model: FlatModel, seed: int) -> tuple[object, dict]:
    """The algorithm the ``algorithm`` section ``a`` names, with ``schedule = "auto"``,
    ``tau = "auto"``, ``lr = "auto"`` and the method's default batch size resolved; returns
    it and the resolved values (for the log and the summary)."""
    method = ALGORITHMS[a.name]
    schedule_name = method.schedule if a.schedule == "auto" else a.schedule
    schedule = make_schedule(schedule_name, alpha0=a.alpha0, eps=a.eps, power=a.power)
    batch = a.batch_size or method.batch_size or None
    info: dict = {"schedule": schedule_name}
    if method.kind == "surrogate":
        tau = a.tau
        if tau == "auto":
            with torch.no_grad():
                tau = auto_tau(a.surrogate, problem=problem, network=network, W=X0)
        surrogate = make_blocked(
            make_surrogate(a.surrogate, tau=tau, solver=a.solver, inner_tol=a.inner_tol,
                           inner_iters=a.inner_iters),
            model=model, threads=a.threads, blocks=a.blocks, n_blocks=a.n_blocks,
            block_fraction=a.block_fraction, seed=seed)
        info.update(tau=float(tau), batch_size=batch)
        return method.cls(surrogate=surrogate, schedule=schedule, batch_size=batch,
                          seed=seed), info
    optimizer = _optimizer(a) if method.kind in OPTIMIZER_DEFAULT else None
    lr = a.lr
    if lr == "auto":
        if optimizer == "adam":
            lr = ADAM_LR
        elif optimizer == "lbfgs":
            lr = 1.0          # unused: L-BFGS takes line-search steps
        else:
            with torch.no_grad():
                lr = auto_lr(problem=problem, network=network, X0=X0)
    if method.kind == "centralized":
        info.update(optimizer=optimizer)
        if optimizer != "lbfgs":
            info.update(lr=float(lr))
        return method.cls(schedule=Scaled(schedule, float(lr)), optimizer=optimizer), info
    if method.kind == "engine":
        if schedule_name != "constant":
            raise ConfigError(f"algorithm.name = {a.name!r} takes a constant step; set "
                              "algorithm.schedule = 'constant' (or 'auto')")
        # the step of centralized gradient descent: s / N on grad U (Adam: s on grad U)
        step = float(lr) * schedule.init()
        info.update(optimizer=optimizer, lr=float(lr), batch_size=batch,
                    engine_optimizer="sgd" if optimizer == "gd" else "adam",
                    engine_lr=step / network.n_agents if optimizer == "gd" else step)
        if a.name == "pipeline":
            info.update(pipeline_schedule=a.pipeline_schedule)
        if a.name == "local-parallel":
            info.update(local_mode=a.local_mode)
        return method.cls(method=a.name), info
    info.update(lr=float(lr), batch_size=batch)
    return method.cls(schedule=Scaled(schedule, float(lr)), name=a.name, batch_size=batch,
                      seed=seed), info


def _check_checkpointing(cfg: Config, out, resume: Checkpoint | None) -> None:
    r, a = cfg.run, cfg.algorithm
    if ALGORITHMS[a.name].kind == "engine" and (r.checkpoint_every or resume is not None):
        raise ConfigError(f"run.checkpoint_every = {r.checkpoint_every} (and --resume) is not "
                          f"supported for algorithm.name = {a.name!r}: the engine baselines "
                          "keep their state inside torch.distributed; set "
                          "run.checkpoint_every = 0")
    if r.checkpoint_every and out is None:
        raise ConfigError(f"run.checkpoint_every = {r.checkpoint_every} needs an output folder "
                          "for the checkpoints; give --out DIR (out=DIR in Python)")


def run_experiment(cfg: Config, *, out: str | Path | None = "auto",
                   network: Network | None = None, verbose: bool = True,
                   reference: dict | None = None,
                   resume: Checkpoint | None = None) -> RunResult:
    """Run the experiment ``cfg`` describes; write the report into ``out`` (rank 0).
    ``reference`` (a summary's ``centralized`` entry) skips solving the reference again.
    ``resume`` (a checkpoint of this config, see :func:`resume_experiment`) continues it."""
    if not isinstance(cfg, Config):
        raise ConfigError(f"cfg must be a dcnn.Config, got {type(cfg).__name__}; build it "
                          "with dcnn.load_config(...)")
    if out not in (None, "auto") and Path(out).exists() and not Path(out).is_dir():
        raise ConfigError(f"--out {out} is a file; give a folder")
    r, d, m, tp, a = cfg.run, cfg.data, cfg.model, cfg.topology, cfg.algorithm
    _check_checkpointing(cfg, out, resume)
    if resume is not None:
        # the step sizes the interrupted run resolved ("auto"), not re-estimated
        a = copy.copy(a)
        for key, value in resume.info.items():
            if getattr(a, key) == "auto" and value is not None:
                setattr(a, key, value)
    dtype = _DTYPES[r.dtype]
    network = network or make_network(r.agents, backend=r.backend, timeout=r.comm_timeout)
    log = (lambda msg: print(f"dcnn: {msg}", file=sys.stderr, flush=True)) \
        if verbose and network.rank == 0 else (lambda msg: None)
    threads = configure_threads(r.threads, ranks=network.size)
    log(f"{r.agents} agents on {network.size} rank(s), {threads} torch thread(s) per rank")

    ds = load_dataset(d.name, test_fraction=d.test_fraction, seed=r.seed, task=d.task,
                      standardize=d.standardize, target_column=d.target_column)
    T_train = encode_targets(ds.y_train, task=ds.task, n_classes=ds.n_classes)
    T_test = encode_targets(ds.y_test, task=ds.task, n_classes=ds.n_classes)
    parts = partition(ds.y_train, r.agents, kind=d.partition, seed=r.seed, beta=d.beta,
                      task=ds.task)
    model = FlatModel(make_model(m, n_inputs=ds.n_features, n_outputs=T_train.shape[1],
                                 seed=r.seed, dtype=dtype), dtype=dtype)
    reg = make_regularizer(m.regularizer, lam=m.lam, l1_ratio=m.l1_ratio)
    problem = local_problems(model=model, X=ds.X_train, T=T_train, parts=parts,
                             network=network, loss=m.loss, task=ds.task, regularizer=reg)
    params = {k: v for k, v in vars(tp).items()
              if v is not None and k not in ("graph", "dynamic", "weights", "B")}
    topology = make_topology(graph=tp.graph, n=r.agents, dynamic=tp.dynamic,
                             weights=None if tp.weights == "auto" else tp.weights,
                             seed=r.seed, **params)
    topology.check(iterations=r.iterations, B=tp.B)
    X0 = model.w0.expand(network.n_local, -1).clone()
    algorithm, info = build_algorithm(a, problem=problem, network=network, X0=X0,
                                      model=model, seed=r.seed)
    test = (torch.as_tensor(ds.X_test, dtype=dtype), torch.as_tensor(T_test, dtype=dtype))
    log(f"{ds.name}: {ds.n_train} train / {ds.n_test} test samples, task {ds.task}; "
        f"model with {model.n_params} parameters; graph {tp.graph} ({tp.dynamic}); "
        f"{method_label(a)}: " + ", ".join(f"{k} = {v:.4g}" if isinstance(v, float) else
                                           f"{k} = {v}" for k, v in info.items()))
    if ALGORITHMS[a.name].kind != "engine":
        check_compatible(algorithm, topology=topology, network=network)
    out_dir = _out_dir(out, cfg, network)
    if resume is None and out_dir is not None and (out_dir / FOLDER / "manifest.json").exists():
        raise ConfigError(f"--out {out_dir} holds the checkpoint of an earlier run; continue "
                          f"it with --resume {out_dir}, or give another --out folder")
    checkpoints = None
    if out_dir is not None:
        if network.rank == 0:
            write_config(out_dir, resolve(cfg))
        checkpoints = Checkpointer(out_dir / FOLDER, every=r.checkpoint_every,
                                   config=resolve(cfg), info=info)
    if resume is not None:
        log(f"resuming from iteration {resume.iteration} ({resume.directory})")
    if ALGORITHMS[a.name].kind == "engine":
        state, history = _train_engine(
            a, info, model=model, shards=[(ds.X_train[p], T_train[p]) for p in parts],
            test=test, loss=m.loss, task=ds.task, regularizer=reg, r=r, network=network,
            progress=r.progress and verbose)
    else:
        state, history = run_loop(algorithm, problem=problem, network=network,
                                  topology=topology, X0=X0, iterations=r.iterations,
                                  eval_every=r.eval_every, test=test,
                                  progress=r.progress and verbose,
                                  checkpoints=checkpoints, resume=resume)
    ref = reference
    if r.reference and ref is None:
        if network.rank == 0:
            pooled = LocalProblems(model=model, shards=[(ds.X_train, T_train)], loss=m.loss,
                                   task=ds.task, n_total=ds.n_train, regularizer=reg)
            res = centralized_reference(pooled, test=test)
            ref = {"objective": res.objective, "grad_norm": res.grad_norm,
                   "train_metric": res.train_metric, "test_metric": res.test_metric,
                   "iterations": res.iterations, "solver": "L-BFGS-B" if reg.smooth else "FISTA"}
        # the other ranks wait while rank 0 solves: as long as it takes (a crash on rank 0
        # still ends the job through the abort hook)
        ref = network.broadcast(ref, timeout=math.inf)
    last = history.last
    summary = {
        "algorithm": a.name, "method": method_label(a),
        "surrogate": a.surrogate if "tau" in info else None,
        "tau": info.get("tau"), "lr": info.get("lr"), "schedule": info["schedule"],
        "alpha0": a.alpha0, "optimizer": info.get("optimizer"),
        "batch_size": info.get("batch_size"),
        "dataset": ds.name, "task": ds.task,
        "agents": r.agents, "ranks": network.size, "threads_per_rank": threads,
        "iterations": int(state.t), "parameters": model.n_params,
        "metric_name": metric_name(ds.task),
        "final": {k: last[k] for k in ("objective", "grad_norm", "consensus_error",
                                       "train_metric", "test_metric", "agent_test_min",
                                       "agent_test_max", "sparsity")},
        "centralized": ref,
        "to_target": None if not ref or ref["test_metric"] is None else rounds_to_target(
            history, target=target_metric(ref["test_metric"], ds.task), task=ds.task),
        "bytes_sent_per_agent": last["bytes_per_agent"],
        "engine": info.get("engine"),
        "wall_time_s": last["time_s"], "eval_time_s": last["eval_time_s"],
    }
    if out_dir is not None and network.rank == 0:
        write_report(out_dir, history=history, summary=summary, config=resolve(cfg))
        log(f"results in {out_dir}/ (history.csv, summary.json, curves.png, config.json)")
    if verbose and network.rank == 0:
        print(format_table(summary), flush=True)
    return RunResult(history=history, summary=summary, state=state, out=out_dir)


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
                      network: Network | None = None, verbose: bool = True) -> RunResult:
    """Continue the run whose output folder is ``out`` from its checkpoint
    (``out/checkpoint``) to ``run.iterations``, and write the complete report into ``out``.

    The config is ``out/config.json``; ``overrides`` (``--set`` items) may change only the
    keys of :data:`dcnn.checkpoint.RESUME_FREE` (e.g. ``run.iterations`` to extend the run),
    since every other key changes the trajectory. On the rank count that wrote the
    checkpoint the result is bitwise that of the uninterrupted run; on another rank count
    (same ``run.agents``) it agrees to rounding.
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
    return run_experiment(cfg, out=out, network=network, verbose=verbose, resume=ckpt)
