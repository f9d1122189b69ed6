"""Under mpiexec: the engine baselines through ``run_experiment`` (the ``dcnn run`` path) on
the MPI world; rank 0 compares each with centralized gradient descent in one process (the
same update on the pooled data) and prints ``RESULT {method: [max |w - w_gd|, |dU|]}``."""
import json
import sys

from dcnn.comm import LocalNetwork, make_network
from dcnn.config import load_config
from dcnn.runner import run_experiment

methods, extra = sys.argv[1].split(","), sys.argv[2:]
base = ["run.progress=false", "run.reference=false", "run.iterations=12", "run.eval_every=4",
        "algorithm.optimizer='gd'", *extra]
out = {}
for m in methods:
    # NAME[:SCHEDULE][:KEY=VALUE...], e.g. ptd-p:interleaved:tp=2
    name, *opts = m.split(":")
    cfg = load_config(overrides=[*base, f"algorithm.name='{name}'",
                                 *[f"algorithm.{o}" if "=" in o else
                                   f"algorithm.pipeline_schedule='{o}'" for o in opts]])
    net = make_network(cfg.run.agents, backend="mpi")
    res = run_experiment(cfg, out=None, network=net, verbose=False)
    out[m] = res
if net.rank == 0:
    cfg = load_config(overrides=[*base, "algorithm.name='centralized'"])
    gd = run_experiment(cfg, out=None, network=LocalNetwork(cfg.run.agents), verbose=False)
    w_gd = gd.state.X[0]
    print("RESULT " + json.dumps({
        m: [float((r.state.X[0] - w_gd).abs().max()),
            abs(r.history.last["objective"] - gd.history.last["objective"]),
            r.summary["bytes_sent_per_agent"]] for m, r in out.items()}))
