"""Under mpiexec: the transformer tensor-parallel by heads (with and without sequence
parallelism) takes 3 steps of SGD with l2 and of Adam; every rank measures, per run, the
largest difference to the same steps of the unsplit transformer in one process (gd_oracle),
and rank 0 prints every rank's in one line (one writer: lines of two ranks can interleave)."""
import json

from mpi4py import MPI

from _engine_cases import gd_oracle, l2, token_module, token_shards

from dcnn.baselines import train_engine

out = {}
for sp in (False, True):
    for opt in ("sgd", "adam"):
        _, info = train_engine(method="tensor-parallel", module=token_module(),
                               shards=token_shards(), regularizer=l2(), iterations=3, lr=0.05,
                               eval_every=3, sequence_parallel=sp, optimizer=opt)
        ref = gd_oracle(token_module(), token_shards(), l2(), steps=3, lr=0.05, optimizer=opt)
        out[f"{sp}-{opt}"] = [info["world_size"], float((info["final_params"] - ref).abs().max())]
every = MPI.COMM_WORLD.gather(out, root=0)
if MPI.COMM_WORLD.rank == 0:
    print("RESULT " + json.dumps(every), flush=True)
