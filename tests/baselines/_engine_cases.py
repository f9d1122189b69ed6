"""Shared problems and in-process oracles of the engine-baseline tests (imported by the test
modules and by the helper scripts that run under mpiexec)."""
import json

import numpy as np
import torch

from dcnn.problems import FlatModel, LocalProblems, make_regularizer, mlp

SIZES = (5, 7, 6, 8)  # uneven shards of 4 agents, 26 samples


def shards(sizes=SIZES, *, d=3, O=2, seed=0):
    rng = np.random.default_rng(seed)
    return [(rng.normal(size=(m, d)), rng.normal(size=(m, O))) for m in sizes]


def module(hidden, *, d=3, O=2, seed=0):
    return mlp(n_inputs=d, hidden=hidden, n_outputs=O, seed=seed)


def token_shards():
    """Shards for the transformer: 12 features read as 4 tokens of 3."""
    return shards(d=12)


def token_module(*, heads=4, ffn=8, seed=0):
    from dcnn.problems import transformer
    return transformer(n_inputs=12, n_outputs=2, tokens=4, d_model=8, heads=heads, ffn=ffn,
                       seed=seed)


def pooled_problem(mod, shard_list, reg, *, loss="squared", task="regression"):
    X = np.concatenate([x for x, _ in shard_list])
    T = np.concatenate([t for _, t in shard_list])
    return LocalProblems(model=FlatModel(mod), shards=[(X, T)], loss=loss, task=task,
                         n_total=len(X), regularizer=reg)


def full_gradient(problem, w):
    """``grad U(w)`` of the unsplit model: data part by dcnn's LocalProblems, plus r."""
    return problem.gradients(w[None])[0] + problem.regularizer.grad(w)


def gd_oracle(mod, shard_list, reg, *, steps, lr, optimizer="sgd"):
    """One process, full-batch steps on the union of the shards (torch.optim on ``w``)."""
    problem = pooled_problem(mod, shard_list, reg)
    w = problem.model.w0.clone().requires_grad_(True)
    opt = (torch.optim.SGD if optimizer == "sgd" else torch.optim.Adam)([w], lr=lr)
    for _ in range(steps):
        w.grad = full_gradient(problem, w.detach())
        opt.step()
    return w.detach()


def ddp_minibatch_oracle(mod, shard_list, reg, *, ranks, steps, lr, batch_size, seed):
    """Mini-batch DDP by its definition: rank r draws B_r by (seed, step, r) out of the union
    S_r of its agents' shards; the step uses sum_r (M_r/|B_r|)(1/M) grad sum_{B_r} loss."""
    from dcnn.baselines.engines.ddp import rank_agents
    from dcnn.baselines.runtime.objective import batch_rows

    M = sum(len(x) for x, _ in shard_list)
    unions = []
    for agents in rank_agents(len(shard_list), ranks):
        X = np.concatenate([shard_list[a][0] for a in agents])
        T = np.concatenate([shard_list[a][1] for a in agents])
        unions.append(LocalProblems(model=FlatModel(mod), shards=[(X, T)], loss="squared",
                                    task="regression", n_total=M, regularizer=reg))
    w = unions[0].model.w0.clone()
    for t in range(steps):
        g = reg.grad(w)
        for r, prob in enumerate(unions):
            m_r = int(prob.counts[0])
            rows = batch_rows(m_r, batch_size, seed=seed, step=t, stream=r)
            rows = torch.arange(m_r) if rows is None else rows
            view = prob.batch(rows[None], torch.tensor([len(rows)]))
            g = g + view.gradients(w[None])[0]
        w = w - lr * g
    return w


def l2(lam=0.05):
    return make_regularizer("l2", lam=lam)


def emit(**record):
    """Gather every rank's record (tensors as lists) on rank 0, which prints one JSON line
    (one writer only: lines of several ranks could interleave on the shared stdout)."""
    import torch.distributed as dist

    out = {k: (v.tolist() if isinstance(v, torch.Tensor) else v) for k, v in record.items()}
    rank, size = dist.get_rank(), dist.get_world_size()
    records = [None] * size if rank == 0 else None
    dist.gather_object(out, records, dst=0)
    if rank == 0:
        print("JSON " + json.dumps(records), flush=True)


def parse(stdout):
    """``{case: [record of rank 0, record of rank 1, ...]}`` from the scripts' output."""
    cases = [json.loads(line[5:]) for line in stdout.splitlines() if line.startswith("JSON ")]
    return {recs[0]["case"]: recs for recs in cases}
