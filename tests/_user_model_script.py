"""Under mpiexec: run_experiment and run_compare with the user's model class and arrays;
prints RESULT <json> on rank 0."""
import json
import sys

import numpy as np

from dcnn.compare import run_compare
from dcnn.config import load_config
from dcnn.runner import run_experiment

sys.path.insert(0, "tests")
from _user_model import TwoBranch  # noqa: E402

csv = sys.argv[1]
data = np.loadtxt(csv, delimiter=",", skiprows=1)
X, y = data[:, :-1], data[:, -1].astype(int)
cfg = load_config(overrides=["run.agents=4", "run.iterations=10", "run.eval_every=5",
                             "run.progress=false", "run.reference=false"])
run = run_experiment(cfg, out=None, verbose=False, model=TwoBranch, data=(X, y))
cmp = run_compare(cfg, methods=["next-pl", "gt"], out=None, verbose=False, model=TwoBranch,
                  data=(X, y))
if run.summary["ranks"] == 2 and __import__("mpi4py.MPI").MPI.COMM_WORLD.rank == 0:
    print("RESULT " + json.dumps({"run": run.history.last["objective"],
                                  "compare": {m: h.last["objective"]
                                              for m, h in cmp.histories.items()}}), flush=True)
