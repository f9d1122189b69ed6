"""Under mpiexec: one gradient of the split model (pipeline schedules, tensor parallel) at the
initial point; every rank prints one JSON line per case with the gathered flat gradient, the
gathered parameters and, for tensor parallel, the forward output on the pooled inputs.

Usage: _split_script.py CASE... with CASE = pipeline/SCHEDULE/M/HIDDEN or tp/HIDDEN and
HIDDEN the comma-separated hidden widths, e.g. pipeline/1f1b/4/4,4,4 or tp/8,8,8."""
import gc
import sys

from _engine_cases import emit, l2, module, shards

from dcnn.baselines import compute_gradients, make_engine, process_group

with process_group() as world:
    for case in sys.argv[1:]:
        method, *rest, widths = case.split("/")
        hidden = [int(h) for h in widths.split(",")]
        if method == "pipeline":
            schedule, m = rest[0], int(rest[1])
            eng = make_engine(method="pipeline", world=world, module=module(hidden),
                              shards=shards(), schedule=schedule, microbatches=m)
        else:
            eng = make_engine(method="tensor-parallel", world=world, module=module(hidden),
                              shards=shards())
        compute_gradients(eng, regularizer=l2(), step=0)
        extra = {}
        if method == "tp":
            extra["output"] = eng.forward(eng.X).detach()
            extra["pairs"] = eng.info()["colwise_rowwise_pairs"]
            extra["replicated"] = eng.info()["replicated_layers"]
        else:
            extra["bubble"] = eng.info()["bubble_fraction"]
            extra["stages"] = eng.info()["stages"]
        emit(rank=world.rank, case=case, grad=eng.flat_gradients(),
             params=eng.flat_parameters(), bytes_per_step=eng.bytes_per_step, **extra)
        del eng            # engines go before their process group (see train_engine)
        gc.collect()
