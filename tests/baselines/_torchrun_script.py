"""Under torchrun: DDP on the shards of _engine_cases; rank 0 prints one JSON line."""
from _engine_cases import emit, l2, module, shards

from dcnn.baselines import process_group, train_engine

with process_group() as world:
    hist, info = train_engine(method="ddp", module=module([4]), shards=shards(),
                              regularizer=l2(), iterations=3, lr=0.1, eval_every=3)
    emit(rank=world.rank, case="torchrun", launcher=world.launcher, size=world.size,
         params=info["final_params"])
