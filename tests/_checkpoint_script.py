"""Under ``mpiexec -n 2`` (tests/test_checkpoint.py): ``REF DIR SET...``.

1. ``dcnn run --set SET... --out REF``: the uninterrupted run;
2. ``dcnn run --resume DIR``: the resumed one (DIR holds a killed run's checkpoint);
3. a run whose step size blows up: each rank writes its message into
   ``REF/../diverged-r<rank>.txt`` (a file, not stdout: mpiexec may interleave two ranks'
   lines).
"""
import sys
import tempfile
from pathlib import Path

from dcnn.cli import main
from dcnn.config import load_config
from dcnn.errors import DivergenceError
from dcnn.runner import run_experiment


def run():
    ref, folder, *sets = sys.argv[1:]
    flags = [x for item in sets for x in ("--set", item)]
    assert main(["run", *flags, "--quiet", "--out", ref]) == 0
    assert main(["run", "--resume", folder, "--quiet"]) == 0
    cfg = load_config(overrides=["algorithm.name='gt'", "algorithm.lr=1e8", "run.iterations=30",
                                 "run.eval_every=30", "run.reference=false",
                                 "run.progress=false", "run.threads=1"])
    from mpi4py import MPI
    rank = MPI.COMM_WORLD.Get_rank()
    out = MPI.COMM_WORLD.bcast(tempfile.mkdtemp() if rank == 0 else None)
    try:
        run_experiment(cfg, out=out, verbose=False)
    except DivergenceError as exc:
        (Path(ref).parent / f"diverged-r{rank}.txt").write_text(str(exc))


if __name__ == "__main__":
    run()
