"""Run under mpiexec: a fault on one rank in the middle of a run (see test_faults.py).

``python _faults_script.py MODE K RANK [TIMEOUT]``

- ``raise-cli``: rank RANK raises at iteration K inside a ``dcnn run`` (``dcnn.cli.main``);
- ``raise-lib``: the same without the CLI (``run_experiment`` on ``make_network``), so only
  the abort hook of the MPI network ends the job;
- ``stuck-lib``: rank RANK sleeps 120 s at iteration K; the network's timeout is TIMEOUT s;
- ``stuck-cli``: the same inside ``dcnn run --set run.comm_timeout=TIMEOUT``;
- ``agents``: rank 0 is given 8 agents, every other rank 6 (K and RANK are ignored);
- ``normal``: a run with a small timeout and no fault; rank 0 prints ``FINISHED``.

Before the fault the faulty rank prints ``INJECT <unix time>``, so the test can time how
long the job takes to end after it.
"""
import sys
import time

from dcnn.comm import make_network

mode = sys.argv[1]
K, RANK = int(sys.argv[2]), int(sys.argv[3])
TIMEOUT = float(sys.argv[4]) if len(sys.argv) > 4 else 60.0
ARGS = ["run.agents=4", "run.iterations=12", "run.eval_every=4", "run.reference=false",
        "run.progress=false", "algorithm.name=dgd", "model.hidden=[4]"]
MESSAGE = f"injected failure on rank {RANK} at iteration {K}"


def inject(network) -> None:
    print(f"INJECT {time.time():.3f}", flush=True)
    if mode.startswith("stuck"):
        time.sleep(120)
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


if mode == "agents":
    from mpi4py import MPI
    make_network(8 if MPI.COMM_WORLD.Get_rank() == 0 else 6, backend="mpi")
    print("NOT REFUSED", flush=True)
    sys.exit(0)
break_dgd()
if mode in ("raise-cli", "stuck-cli"):
    from dcnn.cli import main
    extra = [f"run.comm_timeout={TIMEOUT}"] if mode == "stuck-cli" else []
    sets = [a for kv in ARGS + extra for a in ("--set", kv)]
    sys.exit(main(["run", "--quiet", *sets]))
else:
    from dcnn.config import load_config
    from dcnn.runner import run_experiment
    cfg = load_config(overrides=ARGS)
    net = make_network(cfg.run.agents, backend="mpi", timeout=TIMEOUT)
    run_experiment(cfg, out=None, network=net, verbose=False)
    if net.rank == 0:
        print("FINISHED", flush=True)
