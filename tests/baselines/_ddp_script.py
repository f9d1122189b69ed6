"""Under mpiexec: DDP on the 4 uneven shards of _engine_cases; every rank prints one JSON line
per case (final flat parameters, History columns, info)."""
from _engine_cases import emit, l2, module, shards

from dcnn.baselines import process_group, train_engine

CASES = {
    "sgd": dict(optimizer="sgd", lr=0.1, iterations=5),
    "adam": dict(optimizer="adam", lr=0.05, iterations=5),
    "minibatch": dict(optimizer="sgd", lr=0.1, iterations=4, batch_size=3, seed=7),
}

with process_group() as world:  # one group for every case (train_engine reuses it)
    for case, kw in CASES.items():
        hist, info = train_engine(method="ddp", module=module([4]), shards=shards(),
                                  regularizer=l2(), eval_every=2, **kw)
        emit(rank=world.rank, case=case, params=info["final_params"],
             objective=hist.column("objective"), bytes=hist.column("bytes_per_agent"),
             iteration=hist.column("iteration"), agents_per_rank=info["agents_per_rank"],
             world_size=info["world_size"], time_s=hist.column("time_s"))
