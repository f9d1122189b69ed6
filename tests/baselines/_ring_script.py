"""Sequence parallelism under ``mpiexec -n R``: one launch checks ring attention against full
attention (forward and gradients, float64) and its measured bytes, runs the trainer on the
cases below, the refusal of a token count R does not divide, and a small ``bench_ring``. Rank 0
prints one ``JSON`` line with every rank's record. The test module imports the cases from here
to run the same trainings in one process (the oracle)."""
import json

import numpy as np
import torch

from dcnn.problems import make_regularizer
from dcnn.problems.transformer import attention, transformer

TOKENS, FEATURES = 8, 2
# attention shapes (batch, heads, L per rank, d_head); the last one's key/value block passes
# 1 MB, where blocking sends would deadlock
SHAPES = [(2, 3, 3, 4), (1, 2, 5, 8), (1, 1, 128, 1024)]
CASES = {
    "sgd_l2": dict(optimizer="sgd", lr=0.05, iterations=4, regularizer=("l2", 0.05)),
    "adam": dict(optimizer="adam", lr=0.02, iterations=4),
    "minibatch": dict(optimizer="sgd", lr=0.05, iterations=4, batch_size=5, seed=3),
    "elastic_net": dict(optimizer="sgd", lr=0.05, iterations=3,
                        regularizer=("elastic_net", 0.5)),
}


def shards(seed=0):
    rng = np.random.default_rng(seed)
    return [(rng.normal(size=(m, TOKENS * FEATURES)), rng.normal(size=(m, 2)))
            for m in (4, 6, 5)]


def module(tokens=TOKENS):
    return transformer(n_inputs=tokens * FEATURES, n_outputs=2, tokens=tokens, d_model=8,
                       heads=2, ffn=8, seed=1)


def case_kwargs(case):
    kw = dict(CASES[case])
    if "regularizer" in kw:
        name, lam = kw.pop("regularizer")
        kw["regularizer"] = make_regularizer(name, lam=lam)
    return kw


def _ring_errors(world, traffic):
    """Max |ring - full| of O, dq, dk, dv of this rank's block, and the bytes sent."""
    from dcnn.baselines.schemes.ring_attention import Ring, ring_attention

    ring = Ring(traffic)
    out = []
    for b, h, n, d in SHAPES:
        g = torch.Generator().manual_seed(b * 100 + n)
        q, k, v, do = (2 * torch.randn(b, h, n * world.size, d, generator=g,
                                       dtype=torch.float64) for _ in range(4))
        full = [t.clone().requires_grad_(True) for t in (q, k, v)]
        ref = attention(*full)
        ref.backward(do)
        sl = slice(world.rank * n, (world.rank + 1) * n)
        mine = [t[..., sl, :].clone().requires_grad_(True) for t in (q, k, v)]
        before = traffic.bytes_sent
        o = ring_attention(*mine, ring=ring)
        o_val = o.detach()
        fwd_bytes = traffic.bytes_sent - before
        o.backward(do[..., sl, :])
        err = [float((o_val - ref.detach()[..., sl, :]).abs().max())]
        err += [float((m.grad - f.grad[..., sl, :]).abs().max()) for m, f in zip(mine, full)]
        out.append({"shape": [b, h, n, d], "errors": err, "forward_bytes": fwd_bytes,
                    "total_bytes": traffic.bytes_sent - before})
    return out


def main():
    import torch.distributed as dist

    from dcnn.baselines.runtime.bootstrap import process_group
    from dcnn.baselines.schemes.sequence_parallel import bench_ring, train_sequence_parallel
    from dcnn.baselines.runtime.traffic import Traffic
    from dcnn.errors import ConfigError

    with process_group() as world:
        record = {"rank": world.rank, "ring": _ring_errors(world, Traffic(world))}
        for case in CASES:
            hist, info = train_sequence_parallel(module=module(), shards=shards(),
                                                 eval_every=2, **case_kwargs(case))
            info["params"] = info.pop("final_params").tolist()
            record[case] = {"info": info, "history": hist.records}
        try:
            train_sequence_parallel(module=module(2 * world.size - 1), shards=[
                (np.zeros((3, (2 * world.size - 1) * FEATURES)), np.zeros((3, 2)))],
                iterations=1)
            record["error"] = None
        except ConfigError as exc:
            record["error"] = str(exc)
        record["bench"] = bench_ring(lengths=(4 * world.size, 16 * world.size), heads=2,
                                     d_head=4, repeats=2)
        records = [None] * world.size if world.rank == 0 else None
        dist.gather_object(record, records, dst=0)
        if world.rank == 0:
            print("JSON " + json.dumps(records), flush=True)


if __name__ == "__main__":
    main()
