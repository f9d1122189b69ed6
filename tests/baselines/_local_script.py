"""Under mpiexec -n 2 or -n 4: local parallelism, every case of CASES[world size] in one
launch; rank 0 prints one JSON line per case (every rank's final parameters, History columns
and info), and one per expected refusal (every rank's one-line error)."""
from _engine_cases import emit, module, shards

from dcnn.baselines import process_group
from dcnn.baselines.schemes.local_parallel import train_local_parallel
from dcnn.errors import ConfigError
from dcnn.problems import make_regularizer

DEEP = [4, 4, 4]   # 4 Linear layers: S = 4 blocks

CASES = {
    2: {
        "greedy": dict(local_mode="greedy", stages=4, batch_size=5, seed=3),
        "chunked": dict(local_mode="chunked", stages=4, chunk=2, seed=1),
        "overlapping": dict(local_mode="overlapping", stages=4, batch_size=7, seed=2, l2=0.05),
        "overlapping-adam": dict(local_mode="overlapping", stages=4, optimizer="adam",
                                 lr=0.02),
        # receives posted 3 ticks ahead: ranks run ahead of the next (evaluations between)
        "greedy-window": dict(local_mode="greedy", stages=4, batch_size=5, seed=3, window=3),
        "overlapping-window": dict(local_mode="overlapping", stages=4, seed=2, window=2),
        "chunked-window": dict(local_mode="chunked", stages=4, chunk=2, seed=1, window=2),
    },
    4: {
        "greedy": dict(local_mode="greedy", stages=4, batch_size=5, seed=3),
        "overlapping": dict(local_mode="overlapping", stages=4, batch_size=7, seed=2, l2=0.05),
        "greedy-window": dict(local_mode="greedy", stages=4, batch_size=5, seed=3, window=4),
        # middle ranks send both ways
        "overlapping-window": dict(local_mode="overlapping", stages=4, seed=2, window=3),
    },
}
ERRORS = {
    2: {"ranks>units": dict(local_mode="chunked", stages=2, chunk=2)},
    4: {"auto>linear": dict(hidden=[4], local_mode="greedy")},
}
ITERATIONS = 7


def run(kw):
    kw = dict(kw)
    hidden = kw.pop("hidden", DEEP)
    reg = make_regularizer("l2", lam=kw.pop("l2", 0.0))
    kw.setdefault("lr", 0.1)
    return train_local_parallel(module=module(hidden), shards=shards(), regularizer=reg,
                                iterations=ITERATIONS, eval_every=3, **kw)


if __name__ == "__main__":
    with process_group() as world:  # one group for every case (the trainer reuses it)
        for case, kw in CASES[world.size].items():
            hist, info = run(kw)
            emit(rank=world.rank, case=case, params=info.pop("final_params"),
                 objective=hist.column("objective"), bytes=hist.column("bytes_per_agent"),
                 iteration=hist.column("iteration"), info=info)
        for case, kw in ERRORS[world.size].items():
            try:
                run(kw)
                message = "no error"
            except ConfigError as exc:
                message = str(exc)
            emit(rank=world.rank, case=case, error=message)
