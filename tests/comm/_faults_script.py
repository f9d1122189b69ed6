"""Run under mpiexec: a fault on one rank in the middle of a run (see test_faults.py).

``python _faults_script.py MODE K RANK [TIMEOUT]``

- ``raise-cli``: rank RANK raises at iteration K inside a ``dcnn run`` (``dcnn.cli.main``);
- ``raise-lib``: the same without the CLI (``run_experiment`` on ``make_network``), so only
  the abort hook of the MPI network ends the job;
- ``agents``: rank 0 is given 8 agents, every other rank 6 (K and RANK are ignored);
- ``normal``: a run with a small timeout and no fault; rank 0 prints ``FINISHED``.
- ``stop-each``: rank 0 first works 3 x TIMEOUT in ``on_root`` (its heartbeats keep the
  others waiting, without a timeout), then stops itself (SIGSTOP) inside an ``on_root``; every
  other rank then waits in each kind of collective (one network each, made while all ran) and
  prints ``OP WAITED SECONDS MESSAGE``; rank 1 ends the job (K and RANK are ignored);
- ``stop-reference`` / ``stop-write`` / ``stop-read`` / ``stop-results``: inside ``dcnn run
  --set run.comm_timeout=TIMEOUT``, rank 0 stops itself while it solves the centralized
  reference, writes a checkpoint, reads the checkpoint to resume, or writes the results (K and
  RANK are ignored; argv[5] is the output folder of the last three);

Before the fault the faulty rank prints ``INJECT <unix time>``, so the test can time how
long the job takes to end after it.
"""
import os
import signal
import sys
import time

from dcnn.comm import make_network

mode = sys.argv[1]
K, RANK = int(sys.argv[2]), int(sys.argv[3])
TIMEOUT = float(sys.argv[4]) if len(sys.argv) > 4 else 60.0
ARGS = ["run.agents=4", "run.iterations=12", "run.eval_every=4", "run.reference=false",
        "run.progress=false", "algorithm.name=dgd", "model.hidden=[4]"]
MESSAGE = f"injected failure on rank {RANK} at iteration {K}"
OPS = ("mix", "allreduce", "allgather_rows", "broadcast", "barrier", "on_root")


def inject(network) -> None:
    print(f"INJECT {time.time():.3f}", flush=True)
    raise RuntimeError(MESSAGE)


def break_dgd() -> None:
    """DGD's step calls ``inject`` on rank RANK at iteration K."""
    from dcnn.algorithms import Dgd as cls
    step = cls.step

    def faulty_step(self, state, problem, network, W):
        if state.t == K and network.rank == RANK:
            inject(network)
        return step(self, state, problem, network, W)

    cls.step = faulty_step


def stop_self(*_, **__) -> None:
    print(f"INJECT {time.time():.3f}", flush=True)
    os.kill(os.getpid(), signal.SIGSTOP)
    time.sleep(60)       # continued by someone: never reached in the tests


def cli(extra, out=None) -> int:
    from dcnn.cli import main
    sets = [a for kv in ARGS + [f"run.comm_timeout={TIMEOUT}", *extra] for a in ("--set", kv)]
    return main(["run", "--quiet", *sets, *(["--out", out] if out else [])])


if mode == "stop-each":
    import numpy as np
    import torch
    from dcnn.errors import CommTimeoutError
    from mpi4py import MPI
    nets = [make_network(4, backend="mpi", timeout=TIMEOUT) for _ in OPS]   # while all run
    me = nets[0].rank
    # long work on the root is covered by its heartbeats: no timeout
    assert nets[0].on_root(lambda: time.sleep(3 * TIMEOUT) or 7, what="sleeping") == 7
    if me == 0:      # stops inside its on_root work; the others then wait in every op
        nets[-1].on_root(stop_self, what="testing")
    calls = {"mix": lambda n: n.mix(torch.ones(2, 3), np.full((4, 4), 0.25)),
             "allreduce": lambda n: n.allreduce(torch.ones(3)),
             "allgather_rows": lambda n: n.allgather_rows(torch.ones(2, 3)),
             "broadcast": lambda n: n.broadcast("x"),
             "barrier": lambda n: n.barrier(),
             "on_root": lambda n: n.on_root(stop_self, what="testing")}
    for op, net in zip(OPS[::-1], nets[::-1]):        # on_root first
        t0 = time.perf_counter()
        try:
            calls[op](net)
            print(f"{op} RETURNED", flush=True)
        except CommTimeoutError as exc:
            print(f"{op} WAITED {time.perf_counter() - t0:.2f} {exc}", flush=True)
    MPI.COMM_WORLD.Abort(3)        # ends the stopped rank 0 too
if mode == "stop-reference":
    import dcnn.runner
    dcnn.runner.centralized_reference = stop_self
    sys.exit(cli(["run.reference=true"]))
if mode == "stop-results":
    import dcnn.runner
    dcnn.runner.write_report = stop_self
    sys.exit(cli([], out=sys.argv[5]))
if mode in ("stop-write", "stop-read"):      # argv[5]: the output folder
    import dcnn.checkpoint
    from dcnn.cli import main
    if mode == "stop-write":
        dcnn.checkpoint._commit = stop_self
        sys.exit(cli(["run.checkpoint_every=4"], out=sys.argv[5]))
    dcnn.checkpoint._read_files = stop_self
    sys.exit(main(["run", "--quiet", "--resume", sys.argv[5], "--set",
                   f"run.comm_timeout={TIMEOUT}", "--set", "run.iterations=16"]))
if mode == "agents":
    from mpi4py import MPI
    make_network(8 if MPI.COMM_WORLD.Get_rank() == 0 else 6, backend="mpi")
    print("NOT REFUSED", flush=True)
    sys.exit(0)
break_dgd()
if mode == "raise-cli":
    from dcnn.cli import main
    sets = [a for kv in ARGS for a in ("--set", kv)]
    sys.exit(main(["run", "--quiet", *sets]))
else:
    from dcnn.config import load_config
    from dcnn.runner import run_experiment
    cfg = load_config(overrides=ARGS)
    net = make_network(cfg.run.agents, backend="mpi", timeout=TIMEOUT)
    run_experiment(cfg, out=None, network=net, verbose=False)
    if net.rank == 0:
        print("FINISHED", flush=True)
