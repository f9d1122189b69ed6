"""Under mpiexec -n 2: misconfigurations that depend on the world size fail on every rank with
the same one-line ConfigError (and nothing hangs). Prints one JSON line: {case: message}."""
from _engine_cases import emit, module, shards

from dcnn.baselines import process_group, train_engine
from dcnn.errors import ConfigError

CASES = {
    "ddp-ranks": dict(method="ddp", module=module([4]), shards=shards()[:1]),
    "stages": dict(method="pipeline", module=module([4, 4]), shards=shards(),
                   schedule="interleaved", microbatches=2),
    "1f1b-microbatches": dict(method="pipeline", module=module([4]), shards=shards(),
                              schedule="1f1b", microbatches=1),
    "tp-width": dict(method="tensor-parallel", module=module([5, 4]), shards=shards()),
}

messages = {}
with process_group() as world:
    for case, kw in CASES.items():
        try:
            train_engine(iterations=1, **kw)
            messages[case] = None
        except ConfigError as exc:
            messages[case] = str(exc)
    emit(rank=world.rank, case="errors", messages=messages)
