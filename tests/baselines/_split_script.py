"""Under mpiexec: one gradient of the split model (pipeline schedules, tensor parallel) at the
initial point; every rank prints one JSON line per case with the gathered flat gradient, the
gathered parameters and, for tensor parallel, the forward output on the pooled inputs.

Usage: _split_script.py CASE... with CASE = pipeline/SCHEDULE/M/HIDDEN or tp/HIDDEN and
HIDDEN the comma-separated hidden widths, e.g. pipeline/1f1b/4/4,4,4 or tp/8,8,8; or
tfm/SP/HEADS, the transformer of _engine_cases.token_module split by heads over the ranks
(SP 1: with sequence parallelism), which also prints the collectives one gradient ran; or
ptdp/SCHEDULE/M/DP,TP/HIDDEN, PTD-P with pp = ranks / (DP TP); or tfmptdp/SCHEDULE/M/DP,TP/HEADS,
PTD-P on that transformer (its four parts pipelined, heads and hidden units over tp), which
also prints the collectives one gradient ran."""
import gc
import sys
from collections import Counter

from _engine_cases import emit, l2, module, shards, token_module, token_shards
from torch.utils._python_dispatch import TorchDispatchMode

from dcnn.baselines import compute_gradients, make_engine, process_group



KINDS = ("all_reduce", "all_gather_into_tensor", "reduce_scatter_tensor", "broadcast")


class Collectives(TorchDispatchMode):
    """Counts the functional collectives dispatched (what DTensor runs), by name."""

    def __init__(self):
        super().__init__()
        self.counts = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.namespace == "_c10d_functional" and func.__name__.split(".")[0] in KINDS:
            self.counts[func.__name__.split(".")[0]] += 1
        return func(*args, **(kwargs or {}))


with process_group() as world:
    for case in sys.argv[1:]:
        method, *rest, widths = case.split("/")
        hidden = [int(h) for h in widths.split(",")]
        extra = {}
        if method == "tfm":
            eng = make_engine(method="tensor-parallel", world=world,
                              module=token_module(heads=hidden[0]), shards=token_shards(),
                              sequence_parallel=rest[0] == "1")
        elif method in ("pipeline", "ptdp", "tfmptdp"):
            schedule, m = rest[0], int(rest[1])
            grid = {}
            if method != "pipeline":
                grid = dict(zip(("dp", "tp"), map(int, rest[2].split(","))))
            net, data = ((token_module(heads=hidden[0]), token_shards()) if method == "tfmptdp"
                         else (module(hidden), shards()))
            eng = make_engine(method="ptd-p" if grid else "pipeline", world=world,
                              module=net, shards=data, schedule=schedule, microbatches=m,
                              **grid)
        else:
            eng = make_engine(method="tensor-parallel", world=world, module=module(hidden),
                              shards=shards())
        if method == "tfmptdp":        # the first step also infers the stages' shapes
            compute_gradients(eng, regularizer=l2(), step=0)
        if method in ("tfm", "tfmptdp"):
            with Collectives() as comm:
                compute_gradients(eng, regularizer=l2(), step=0)
            extra["comm"] = dict(comm.counts)
        else:
            compute_gradients(eng, regularizer=l2(), step=0)
        if method in ("tp", "tfm"):
            extra["output"] = eng.forward(eng.X).detach()
            extra["info"] = eng.info()
        else:
            extra["info"] = {k: v for k, v in eng.info().items() if k != "final_params"}
        emit(rank=world.rank, case=case, grad=eng.flat_gradients(),
             params=eng.flat_parameters(), bytes_per_step=eng.bytes_per_step, **extra)
        del eng            # engines go before their process group (see train_engine)
        gc.collect()
