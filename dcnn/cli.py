"""The ``dcnn`` command: ``run``, ``compare``, ``study``, ``predict``, ``info`` and ``bench``.

``dcnn run [CONFIG.toml] [--set section.key=value]... [--out DIR]`` runs one experiment;
``dcnn run --resume DIR [--set run.iterations=N]`` continues one from ``DIR/checkpoint``
(written with ``--set run.checkpoint_every=K``) with the config in ``DIR/config.json``;
``dcnn compare [CONFIG.toml] --methods next-pl,gt,... [--set ...] [--out DIR] [--tune]
[--seeds K]`` runs several methods on identical shards, graphs and seeds (each method's step
tuned on a grid first with ``--tune``) and writes one comparison with its verdict;
``dcnn study NAME`` runs the comparisons a study file names (:mod:`dcnn.study`);
``dcnn predict DIR data.csv [--out FILE]`` predicts with the model a run saved
(:mod:`dcnn.saved`); under
``mpiexec -n R dcnn run ...`` the agents are spread over the R ranks. Bad input ends with one
line ``dcnn: error: ...`` and exit status 2; under MPI the whole job ends (no rank is left
waiting in a collective).
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import platform
import sys
import time
import traceback
import warnings

from .errors import DcnnError

__all__ = ["main"]


def _world():
    """(rank, size, comm or None) without initialising MPI when not launched by mpiexec."""
    from .comm import launched_by_mpi
    if not launched_by_mpi():
        return 0, 1, None
    from mpi4py import MPI
    return MPI.COMM_WORLD.Get_rank(), MPI.COMM_WORLD.Get_size(), MPI.COMM_WORLD


def _one_run_per_job(cfg) -> None:
    """Refuse ``run.backend = 'local'`` under mpiexec: each process would run every agent and
    write the same output folder."""
    from .comm import launched_by_mpi, launcher_size
    from .errors import ConfigError
    if cfg.run.backend == "local" and launched_by_mpi():
        raise ConfigError(
            f"run.backend = 'local' under mpiexec with {launcher_size()} processes would run "
            "every agent in each process and write the same results twice; set run.backend = "
            "'auto' to spread the agents over the processes, or start one process")


def _cmd_run(args) -> int:
    from .config import load_config
    from .errors import ConfigError
    from .runner import resume_experiment, run_experiment
    if args.resume is not None:
        if args.config is not None or args.out is not None:
            raise ConfigError(f"--resume {args.resume} takes its config from "
                              f"{args.resume}/config.json and writes into {args.resume}; "
                              "drop the CONFIG argument and --out")
        progress = ["run.progress=false"] if args.quiet else []
        with _tensorboard(args.tensorboard) as callbacks:
            resume_experiment(args.resume, overrides=[*args.set, *progress],
                              verbose=not args.quiet, callbacks=callbacks)
        return 0
    cfg = load_config(args.config, overrides=args.set)
    _one_run_per_job(cfg)
    if args.quiet:
        cfg.run.progress = False
    with _tensorboard(args.tensorboard) as callbacks:
        run_experiment(cfg, out=args.out or "auto", verbose=not args.quiet,
                       callbacks=callbacks)
    return 0


@contextlib.contextmanager
def _tensorboard(logdir: str | None):
    """``[TensorBoard(logdir)]`` (none without ``--tensorboard``), closed at the end."""
    if logdir is None:
        yield []
        return
    from .tensorboard import TensorBoard
    writer = TensorBoard(logdir)
    try:
        yield [writer]
    finally:
        writer.close()


def _not_under_torchrun(command: str) -> None:
    """``dcnn compare`` and ``dcnn study`` run methods whose agents live on MPI ranks beside
    the trainers: refused under torchrun, where every process would run them all."""
    from .comm import torchrun_world
    from .errors import ConfigError
    world = torchrun_world()
    if world is not None:
        raise ConfigError(f"dcnn {command} runs the decentralized methods, whose agents live "
                          f"on MPI ranks; launch it with mpiexec -n {world[1]} (under torchrun "
                          f"only dcnn run with a parallel trainer such as ddp)")


def _cmd_compare(args) -> int:
    from .compare import run_compare
    from .config import load_config
    _not_under_torchrun("compare")
    cfg = load_config(args.config, overrides=args.set)
    _one_run_per_job(cfg)
    if args.quiet:
        cfg.run.progress = False
    methods = None if args.methods is None else [m.strip() for m in args.methods.split(",")
                                                 if m.strip()]
    run_compare(cfg, methods=methods, out=args.out or "auto", gap=args.gap,
                verbose=not args.quiet, tune=args.tune, tune_rounds=args.tune_rounds,
                seeds=args.seeds, links=args.link, tune_factors=args.tune_factors)
    return 0


def _factors(text: str) -> tuple[float, ...]:
    """``--tune-factors 0.5,1,2``: positive numbers, comma-separated."""
    try:
        factors = tuple(float(a) for a in text.split(","))
    except ValueError:
        factors = ()
    if not factors or min(factors) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of positive factors; e.g. "
                                         "0.5,1,2")
    return factors


def _cmd_study(args) -> int:
    from pathlib import Path

    from .study import check_markers, into_readme, load_study, run_study
    _not_under_torchrun("study")
    study = load_study(args.study)
    if args.into is not None:       # checked before hours of runs, not after
        check_markers(args.into, study.name)
    out = args.out or f"runs/studies/{study.name}"
    only = None if args.cases is None else [c.strip() for c in args.cases.split(",")
                                            if c.strip()]
    run_study(study, out=out, seeds=args.seeds, rounds=args.rounds,
              tune_rounds=args.tune_rounds, tune_factors=args.tune_factors, only=only,
              overrides=args.set, tune=False if args.no_tune else None,
              resume=args.resume, verbose=not args.quiet)
    if _world()[0] == 0:
        if args.into is not None:
            into_readme((Path(out) / "study.md").read_text(), args.into, study.name)
        print(f"dcnn: study {study.name}: results in {out}/ (study.md, study.csv, study.json, "
              "one compare folder per case)" + (f"; tables written into {args.into}"
                                                if args.into else ""), flush=True)
    return 0


def _cmd_predict(args) -> int:
    from .saved import load_run, predict_file
    pred, score = predict_file(args.run, args.data, out=args.out,
                               target_column=args.target_column)
    what = load_run(args.run).summary.get("metric_name", "score")
    units = " (in standardised target units, as the run's History)" if what == "mse" else ""
    scored = "" if score is None else f"; {what} on the file's targets: {score:.6g}{units}"
    if args.out is None:
        for row in pred.reshape(len(pred), -1).tolist():
            print(",".join(f"{v:.10g}" if isinstance(v, float) else str(v) for v in row))
        print(f"dcnn: {len(pred)} predictions{scored}", file=sys.stderr, flush=True)
    else:
        print(f"dcnn: {len(pred)} predictions written to {args.out}{scored}", flush=True)
    return 0


def _cmd_info(args) -> int:
    import networkx
    import numpy
    import scipy
    import torch

    from . import __version__
    rank, size, comm = _world()
    lines = [f"dcnn {__version__}", f"python {platform.python_version()}",
             f"torch {torch.__version__} ({torch.get_num_threads()} threads)",
             f"numpy {numpy.__version__}", f"scipy {scipy.__version__}",
             f"networkx {networkx.__version__}", f"cpus {os.cpu_count()}"]
    try:
        import mpi4py
        from mpi4py import MPI
        lib = MPI.Get_library_version().splitlines()[0].strip()
        lines.append(f"mpi4py {mpi4py.__version__}; {lib}")
    except ImportError:  # pragma: no cover
        lines.append("mpi4py not installed: MPI runs unavailable")
    lines.append(f"ranks {size}")
    from .config import MODELS
    from .data.datasets import BUNDLED
    from .methods import method_names
    lines += [f"datasets {', '.join(BUNDLED)}, or a .csv/.npz file (data.name)",
              f"models {', '.join(MODELS)}, or your own 'file.py:Name' (model.name)",
              f"methods {', '.join(method_names())} (algorithm.name; dcnn compare --methods)"]
    if rank == 0:
        print("\n".join(lines))
    return 0


def _cmd_bench(args) -> int:
    from .bench import main as bench_main
    return bench_main(args)


def _agent_counts(text: str) -> tuple[int, ...]:
    """``--agents 8,64``: positive integers, comma-separated."""
    try:
        counts = tuple(int(a) for a in text.split(","))
    except ValueError:
        counts = ()
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of agent counts; give "
                                         "positive integers such as 8,64")
    return counts


def _plugin_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--plugin", action="append", default=[], metavar="FILE.py|MODULE",
                   help="import this file or module first: it registers your own methods "
                   "with dcnn.methods.register (repeatable)")


def _load_plugins(args) -> None:
    from .methods import load_plugin
    for ref in getattr(args, "plugin", []):
        load_plugin(ref)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dcnn", description="Decentralized consensus training "
                                "of neural networks (NEXT) and its baselines.")
    from . import __version__
    p.add_argument("--version", action="version", version=f"dcnn {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run one experiment")
    run.add_argument("config", nargs="?", help="a TOML config (default: the default experiment)")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override a config key, e.g. --set run.agents=16 (repeatable)")
    run.add_argument("--no-reference", dest="set", action="append_const",
                       const="run.reference=false", help="skip the centralized reference "
                       "solve (= --set run.reference=false)")
    run.add_argument("--out", help="output folder (default: runs/<time>-<data>-<algorithm>)")
    run.add_argument("--resume", metavar="DIR", help="continue the run in DIR from its "
                     "checkpoint (run.checkpoint_every) to run.iterations; --set may change "
                     "only run.iterations and how it runs (progress, threads, checkpoints)")
    run.add_argument("--quiet", action="store_true", help="no progress bar, log or table")
    run.add_argument("--verbose", action="store_true", help="also debug lines in the log "
                       "(timings of the loop, the evaluations and the reference)")
    run.add_argument("--tensorboard", metavar="DIR", help="write every evaluation's metrics "
                     "as TensorBoard scalars into DIR as the run goes (needs tensorboard; "
                     "the decentralized methods)")
    _plugin_option(run)
    run.set_defaults(func=_cmd_run)
    cmp = sub.add_parser("compare", help="several methods on the same shards, graph and seed")
    cmp.add_argument("config", nargs="?", help="a TOML config (default: the default experiment)")
    cmp.add_argument("--methods", help="comma-separated registered methods or variants, e.g. "
                     "next-pl,next-fl,gt,dgd,extra,centralized (default: the registry's "
                     "defaults for the graph's kind that the topology allows)")
    cmp.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override a config key for every method (repeatable)")
    cmp.add_argument("--no-reference", dest="set", action="append_const",
                       const="run.reference=false", help="skip the centralized reference "
                       "solve (= --set run.reference=false)")
    cmp.add_argument("--out", help="output folder (default: runs/<time>-compare-<data>)")
    cmp.add_argument("--gap", type=float, default=0.01,
                     help="objective target: U_ref + GAP * (U_0 - U_ref), the fraction of the "
                     "initial gap to the centralized objective left (default 0.01)")
    cmp.add_argument("--tune", action="store_true",
                     help="first run each method's step grid (tau x 1/4..4 for NEXT and "
                     "SONATA, lr x 1/4..4 for the others) and keep the lowest final training "
                     "objective; a grid given with a method (gt:alpha0=0.1|0.25|0.5) is "
                     "tuned even without --tune")
    cmp.add_argument("--tune-rounds", type=int, metavar="N",
                     help="rounds per grid point (default run.iterations)")
    cmp.add_argument("--tune-factors", type=_factors, metavar="F[,F...]",
                     help="the factors of the default grids (default 0.25,0.5,1,2,4)")
    cmp.add_argument("--seeds", type=int, default=1, metavar="K",
                     help="run every method on K seeds (run.seed, run.seed + 1, ...: data "
                     "split, partition, initial point, graph) and report means and spread")
    cmp.add_argument("--link", action="append", default=[], metavar="PRESET|latency=..,"
                     "bandwidth=..", help="also model each method's time to the targets on "
                     "this link (datacenter, lan, wan, edge, or e.g. latency=1ms,bandwidth="
                     "1Gbit; repeatable): compute + latency x exchanges + the busiest agent's "
                     "bytes / bandwidth")
    cmp.add_argument("--quiet", action="store_true", help="no progress, log or table")
    cmp.add_argument("--verbose", action="store_true", help="also debug lines in the log "
                       "(timings of the loop, the evaluations and the reference)")
    _plugin_option(cmp)
    cmp.set_defaults(func=_cmd_compare)
    study = sub.add_parser("study", help="run a study: several comparisons named in a TOML "
                           "file (experiments/studies/NAME.toml)")
    study.add_argument("study", help="a study TOML, or the name of one in experiments/studies")
    study.add_argument("--out", help="output folder (default: runs/studies/NAME)")
    study.add_argument("--seeds", type=int, metavar="K", help="replace the study's seeds")
    study.add_argument("--rounds", type=int, metavar="N",
                       help="replace every case's run.iterations (a shortened run)")
    study.add_argument("--tune-rounds", type=int, metavar="N",
                       help="replace the study's rounds per grid point")
    study.add_argument("--tune-factors", type=_factors, metavar="F[,F...]",
                       help="replace the factors of the default step grids (e.g. 0.5,1,2)")
    study.add_argument("--cases", help="run only these cases (comma-separated names)")
    study.add_argument("--no-tune", action="store_true",
                       help="run every method at its defaults (no step grids)")
    study.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config key in every case, after the study's own "
                       "(repeatable)")
    study.add_argument("--into", metavar="FILE.md", help="write study.md into FILE.md between "
                       "its '<!-- study NAME -->' and '<!-- /study NAME -->' lines")
    study.add_argument("--resume", action="store_true", help="keep the cases that --out "
                       "holds finished from an earlier run with the same options")
    study.add_argument("--quiet", action="store_true", help="no progress, log or table")
    study.add_argument("--verbose", action="store_true", help="also debug lines in the log "
                       "(timings of the loop, the evaluations and the reference)")
    _plugin_option(study)
    study.set_defaults(func=_cmd_study)
    pred = sub.add_parser("predict", help="predict with the model a run saved in its folder")
    pred.add_argument("run", help="the --out folder of a finished run")
    pred.add_argument("data", help="a .csv (the run's features, with or without the target "
                      "column) or .npz file of samples")
    pred.add_argument("--out", help="write the predictions here as CSV (default: print them)")
    pred.add_argument("--target-column", type=int, help="the target's column in the CSV "
                      "(default: the run's data.target_column)")
    pred.set_defaults(func=_cmd_predict)
    info = sub.add_parser("info", help="versions, MPI library, ranks, threads, datasets, "
                          "models and methods")
    info.set_defaults(func=_cmd_info)
    bench = sub.add_parser("bench", help="performance benchmarks (docs/performance.md)")
    bench.add_argument("what", choices=["mix", "stacked", "threads", "memory", "solver", "costs",
                                        "scaling", "bubbles", "ptdp", "split-memory",
                                        "local-window", "disropt", "agent-loop"],
                       help="which benchmark")
    bench.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    bench.add_argument("--model", choices=["mlp", "cnn", "transformer"], default="mlp",
                       help="stacked: the MLP 10-16-1 (squared loss) or the MNIST-1D CNN "
                       "(cross-entropy, 10 classes); ptdp: the MLP or the one-block "
                       "transformer")
    bench.add_argument("--agents", type=_agent_counts, metavar="N[,N...]",
                       help="stacked, scaling: the agent counts (default 8,64,512 for "
                       "stacked, 8,16,32,64,128 for scaling's CNN rows)")
    bench.add_argument("--out", help="write the table here (JSON for *.json, else CSV)")
    bench.set_defaults(func=_cmd_bench)
    return p


def _start_mpi() -> None:
    """Under mpiexec, initialise MPI before anything can fail: every rank gets here at
    once, so the collective MPI_Init completes, and the error path then only uses an MPI
    that is already up (MPI_Init on one failing rank alone would wait for the others for
    good when they never initialise it)."""
    from .comm import launched_by_mpi
    if launched_by_mpi():
        try:
            importlib.import_module("mpi4py.MPI")     # initialises MPI
        except ImportError:
            pass                     # the MPI backend names the missing package itself


def _world_to_fail() -> tuple[int, int, object]:
    """(rank, size, comm or None) of an MPI that is already initialised; never initialises
    it (see :func:`_start_mpi`)."""
    MPI = sys.modules.get("mpi4py.MPI")
    if MPI is None or not MPI.Is_initialized() or MPI.Is_finalized():
        return 0, 1, None
    return MPI.COMM_WORLD.Get_rank(), MPI.COMM_WORLD.Get_size(), MPI.COMM_WORLD


def _fail(exc: BaseException, code: int) -> int:
    rank, size, comm = _world_to_fail()
    msg = f"dcnn: error: {exc}" if isinstance(exc, DcnnError) else \
        f"dcnn: error: unexpected {type(exc).__name__}: {exc}"
    from .comm import torchrun_world
    if size == 1 and isinstance(exc, DcnnError) and (torchrun_world() or (0,))[0] != 0:
        return code              # under torchrun every process fails alike: rank 0 says it
    if size == 1:
        if not isinstance(exc, DcnnError):
            traceback.print_exc()
        print(msg, file=sys.stderr, flush=True)
        return code
    # Deterministic errors hit every rank at once: rank 0 reports and ends the job. A rank
    # that fails alone reports itself after a grace period, so nothing is left hanging.
    # Before the abort, the launcher gets a moment to forward the line (an immediate abort
    # lost it now and then on a loaded machine).
    if rank != 0:
        time.sleep(2.0)
        msg = msg.replace("dcnn: error:", f"dcnn: error: [rank {rank}]", 1)
    if not isinstance(exc, DcnnError):
        traceback.print_exc()
    print(msg, file=sys.stderr, flush=True)
    time.sleep(0.5)
    comm.Abort(code)
    return code  # pragma: no cover


def _one_line_warnings(previous):
    """A ``warnings.showwarning`` that prints dcnn's own warnings as one line ``dcnn: warning:
    ...`` (rank 0 only under mpiexec) and hands the others to ``previous``."""
    from .comm import launcher_rank
    from .errors import DataWarning

    def show(message, category, *rest, **kw):
        if not issubclass(category, DataWarning):
            return previous(message, category, *rest, **kw)
        if launcher_rank() == 0:
            print(f"dcnn: warning: {message}", file=sys.stderr, flush=True)
    return show


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if hasattr(args, "verbose"):
        import logging

        from .log import set_verbosity
        set_verbosity(logging.DEBUG if args.verbose else logging.INFO)
    shown = warnings.showwarning
    warnings.showwarning = _one_line_warnings(shown)
    try:
        _start_mpi()
        _load_plugins(args)
        return args.func(args)
    except DcnnError as exc:
        return _fail(exc, 2)
    except KeyboardInterrupt:  # pragma: no cover
        return 130
    except Exception as exc:  # noqa: BLE001 - report, then end every rank
        return _fail(exc, 1)
    finally:
        warnings.showwarning = shown


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
