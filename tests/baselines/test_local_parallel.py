"""Local parallelism (Laskin et al., arXiv 2012.03837): one chunk is backprop, greedy blocks
never see later blocks, the MPI pipeline equals a plain sequential simulation of the tick rule
(float64), it learns, and misconfigurations fail with one line."""
import copy
import json

import numpy as np
import pytest
import torch
from _engine_cases import module, parse, shards
from torch import nn

import _local_script as script
from conftest import error_of, run_mpi

from dcnn.baselines import process_group
from dcnn.baselines.schemes.local_parallel import (LocalPipeline, make_head, plan_units,
                                           train_local_parallel)
from dcnn.baselines.runtime.objective import batch_rows
from dcnn.baselines.runtime.traffic import Traffic
from dcnn.errors import ConfigError
from dcnn.problems import make_regularizer, mlp


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models: intra-op threads only contend with the other processes of the suite."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _pooled():
    X = torch.as_tensor(np.concatenate([x for x, _ in shards()]))
    T = torch.as_tensor(np.concatenate([t for _, t in shards()]))
    return X, T


def _rows(M, batch_size, seed, b):
    rows = batch_rows(M, batch_size, seed=seed, step=b, stream=0)
    return torch.arange(M) if rows is None else rows


def reference(hidden, *, stages, local_mode, chunk=2, iterations, lr=0.1, batch_size=None,
              seed=0, l2=0.0):
    """The tick rule written out with plain loops over ticks and units, explicit tanh layers
    and torch.autograd.grad (SGD only); returns the flat model (no heads)."""
    mod = module(hidden)
    X, T = _pooled()
    M, O = T.shape
    lin = [m for m in mod if isinstance(m, nn.Linear)]
    n = len(lin)
    blocks = np.array_split(np.arange(n), stages)
    k = chunk if local_mode == "chunked" else 1
    U = stages // k
    layers = [[int(i) for blk in blocks[u * k:(u + 1) * k] for i in blk] for u in range(U)]
    theta = [[t.detach().clone() for i in layers[u] for t in (lin[i].weight, lin[i].bias)]
             for u in range(U)]
    phi = {}
    for u in range(U - 1):
        h = make_head(lin[layers[u][-1]].out_features, O, seed=seed, block=(u + 1) * k - 1)
        phi[u] = [h.weight.detach().clone(), h.bias.detach().clone()]

    def F(u, params, x):
        for j, i in enumerate(layers[u]):
            x = x @ params[2 * j].T + params[2 * j + 1]
            if i < n - 1:
                x = torch.tanh(x)
        return x

    acts, deltas, saved = {}, {}, {}
    for t in range(iterations):
        new_acts, new_deltas, grads = {}, {}, {}
        for u in range(U):
            b = t - u
            if b < 0:
                continue
            rows = _rows(M, batch_size, seed, b)
            x = (X[rows] if u == 0 else acts[u - 1]).clone().requires_grad_(True)
            th = [p.clone().requires_grad_(True) for p in theta[u]]
            ph = [p.clone().requires_grad_(True) for p in phi.get(u, [])]
            a = F(u, th, x)
            out = a @ ph[0].T + ph[1] if ph else a
            L = ((out - T[rows]) ** 2).sum() / len(rows)
            g = torch.autograd.grad(L, th + ph + [x])
            new_acts[u] = a.detach()
            g_th, g_ph = list(g[:len(th)]), list(g[len(th):-1])
            if local_mode == "overlapping":
                if u > 0:
                    new_deltas[u - 1] = g[-1]
                if u in deltas:        # from unit u+1 at tick t-1, about my forward of t-2
                    x_old, th_old = saved.pop((u, t - 2))
                    th_old = [p.clone().requires_grad_(True) for p in th_old]
                    extra = torch.autograd.grad(F(u, th_old, x_old), th_old,
                                                grad_outputs=deltas[u])
                    g_th = [gi + ei for gi, ei in zip(g_th, extra)]
                saved[(u, t)] = (x.detach(), [p.clone() for p in theta[u]])
            grads[u] = (g_th, g_ph)
        for u, (g_th, g_ph) in grads.items():
            theta[u] = [p - lr * (gi + 2 * l2 * p) for p, gi in zip(theta[u], g_th)]
            if u in phi:
                phi[u] = [p - lr * gi for p, gi in zip(phi[u], g_ph)]
        acts, deltas = new_acts, new_deltas
    return torch.cat([p.reshape(-1) for u in range(U) for p in theta[u]])


def _train(hidden=(4, 4, 4), *, l2=0.0, lr=0.1, iterations=7, eval_every=3, mod=None, **kw):
    mod = module(list(hidden)) if mod is None else mod
    return train_local_parallel(module=mod, shards=shards(),
                                regularizer=make_regularizer("l2", lam=l2), lr=lr,
                                iterations=iterations, eval_every=eval_every, **kw)


@pytest.mark.parametrize("local_mode,stages,chunk,optimizer", [
    ("chunked", 3, 3, "sgd"), ("greedy", 1, 2, "sgd"), ("chunked", 2, 2, "adam")])
def test_one_chunk_equals_backprop(local_mode, stages, chunk, optimizer):
    """One unit: at tick t the whole MLP steps on batch t with the task loss."""
    lr, lam, seed, steps = (0.1 if optimizer == "sgd" else 0.02), 0.05, 4, 6
    hist, info = _train((4, 4), stages=stages, local_mode=local_mode, chunk=chunk,
                        optimizer=optimizer, lr=lr, l2=lam, batch_size=5, seed=seed,
                        iterations=steps)
    assert info["units"] == 1 and info["bytes_sent"] == 0
    net = copy.deepcopy(module([4, 4]))
    opt = (torch.optim.SGD if optimizer == "sgd" else torch.optim.Adam)(net.parameters(), lr=lr)
    X, T = _pooled()
    for t in range(steps):
        rows = _rows(len(X), 5, seed, t)
        opt.zero_grad()
        (1.0 / len(rows) * ((T[rows] - net(X[rows])) ** 2).sum(-1).sum()).backward()
        for p in net.parameters():
            p.grad.add_(p.detach(), alpha=2 * lam)
        opt.step()
    w = torch.cat([p.detach().reshape(-1) for p in net.parameters()])
    assert torch.equal(info["final_params"], w)
    assert float((w - torch.cat([p.detach().reshape(-1) for p in module([4, 4]).parameters()])
                  ).abs().max()) > 1e-3                       # it trained


def _unit0_grads(world, *, local_mode, perturb, ticks=6):
    """Unit 0's gradient at every tick of a 3-unit pipeline in one process; ``perturb``
    changes the later units (unit 1's head, unit 2's block) before training."""
    mod = module([4, 4])
    pipe = LocalPipeline(world=world, traffic=Traffic(world), module=mod, shards=shards(),
                         specs=plan_units(mod, stages=3, local_mode=local_mode),
                         local_mode=local_mode, iterations=ticks, batch_size=5, seed=1)
    if perturb:
        with torch.no_grad():
            pipe.units[1].head.weight.mul_(-2.0)
            pipe.units[2].body[0].weight.add_(0.5)
    grads = []
    for t in range(ticks):
        pipe.gradients(t)
        grads.append([p.grad.clone() for p in pipe.units[0].parameters()])
        pipe.update()
    return grads


def test_greedy_later_blocks_never_change_an_earlier_gradient():
    with process_group() as world:
        base = _unit0_grads(world, local_mode="greedy", perturb=False)
        pert = _unit0_grads(world, local_mode="greedy", perturb=True)
        for g, h in zip(base, pert):
            assert all(torch.equal(a, b) for a, b in zip(g, h))
        # the check can fail: overlapping lets unit 1's loss reach unit 0 (from tick 2 on)
        base = _unit0_grads(world, local_mode="overlapping", perturb=False)
        pert = _unit0_grads(world, local_mode="overlapping", perturb=True)
        assert all(torch.equal(a, b) for t in (0, 1) for a, b in zip(base[t], pert[t]))
        assert not torch.equal(base[2][0], pert[2][0])


def test_greedy_trajectory_of_earlier_blocks_ignores_later_blocks():
    mod = module([4, 4, 4])
    other = copy.deepcopy(mod)
    with torch.no_grad():
        other[6].weight.mul_(3.0)     # the output layer (block 3)
        other[4].bias.add_(1.0)       # block 2
    cut = sum(p.numel() for p in mod[:4].parameters())   # blocks 0 and 1
    runs = {}
    for mode in ("greedy", "overlapping"):
        runs[mode] = [_train(mod=m, stages=4, local_mode=mode, batch_size=6, seed=2)[1]
                      ["final_params"] for m in (mod, other)]
    a, b = runs["greedy"]
    assert torch.equal(a[:cut], b[:cut])
    assert float((a[cut:] - b[cut:]).abs().max()) > 1e-3
    a, b = runs["overlapping"]
    assert not torch.equal(a[:cut], b[:cut])


@pytest.mark.parametrize("kw", [
    dict(local_mode="greedy", stages=3, batch_size=5, seed=3),
    dict(local_mode="chunked", stages=4, chunk=2, seed=1),
    dict(local_mode="overlapping", stages=4, batch_size=7, seed=2, l2=0.05),
    dict(local_mode="overlapping", stages=2, seed=5)])
def test_one_process_equals_the_sequential_reference(kw):
    kw = dict(kw)
    l2 = kw.pop("l2", 0.0)
    _, info = _train(l2=l2, **kw)
    ref = reference([4, 4, 4], iterations=7, l2=l2, **kw)
    assert float((info["final_params"] - ref).abs().max()) <= 1e-12
    assert float((ref - torch.cat([p.detach().reshape(-1) for p in module([4, 4, 4])
                                   .parameters()])).abs().max()) > 1e-3


def _expected_bytes(info, iterations, batch, width=4, item=8):
    """Measured bytes by the rule: a forward message per tick t in [u, T-2] at each unit
    boundary u -> u+1 across ranks, and (overlapping) a d message per t in [u+1, T-2]."""
    rank_of = {u: r for r, us in enumerate(info["units_per_rank"]) for u in us}
    sent = [0] * info["world_size"]
    for u in range(info["units"] - 1):
        r, q = rank_of[u], rank_of[u + 1]
        if r != q:
            sent[r] += max(0, iterations - 1 - u) * batch * width * item
            if info["local_mode"] == "overlapping":
                sent[q] += max(0, iterations - 2 - u) * batch * width * item
    return max(sent)


@pytest.mark.mpi
@pytest.mark.parametrize("ranks", [2, pytest.param(4, marks=pytest.mark.slow)])
def test_mpi_pipeline_equals_sequential_simulation(ranks):
    res = run_mpi(ranks, ["tests/baselines/_local_script.py"], timeout=120)
    assert res.returncode == 0, res.stderr[-3000:]
    out = parse(res.stdout)
    cases, errors = script.CASES[ranks], script.ERRORS[ranks]
    assert set(out) == set(cases) | set(errors), res.stdout[-2000:]
    T = script.ITERATIONS
    for case, kw in cases.items():
        recs = out[case]
        assert len(recs) == ranks
        first = recs[0]
        for rec in recs[1:]:                 # the same model and History on every rank
            assert rec["params"] == first["params"]
            assert rec["objective"] == first["objective"]
            assert rec["bytes"] == first["bytes"]
        w = torch.tensor(first["params"], dtype=torch.float64)
        kw = dict(kw)
        l2 = kw.pop("l2", 0.0)
        hist, local = _train(script.DEEP, l2=l2, iterations=T, **kw)      # one process
        assert float((w - local["final_params"]).abs().max()) <= 1e-12, case
        np.testing.assert_allclose(first["objective"], hist.column("objective"),
                                   rtol=1e-12, atol=0)
        if kw.get("optimizer", "sgd") == "sgd":
            ref = reference(script.DEEP, iterations=T, l2=l2,
                            **{k: v for k, v in kw.items() if k not in ("lr", "window")})
            assert float((w - ref).abs().max()) <= 1e-12, case
        info = first["info"]
        assert info["world_size"] == ranks and info["window"] == kw.get("window", 1)
        assert info["units"] >= ranks
        assert sorted(u for us in info["units_per_rank"] for u in us) == \
            list(range(info["units"]))
        assert all(len(us) >= 1 for us in info["units_per_rank"])
        assert first["bytes"][-1] == info["bytes_sent"] == \
            _expected_bytes(info, T, info["batch"]) > 0
        assert info["messages"] > 0 and info["time_per_step_s"] > 0
        json.dumps(info)
    for case in errors:
        messages = {rec["error"] for rec in out[case]}
        assert len(messages) == 1, messages            # the same line on every rank
        msg = messages.pop()
        assert "\n" not in msg and "local-parallel" in msg, msg
        assert ("ranks but only" if case == "ranks>units" else "Linear layers") in msg


def test_local_training_learns():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(120, 4))
    teacher = mlp(n_inputs=4, hidden=[8], n_outputs=2, seed=5)
    with torch.no_grad():
        T = teacher(torch.as_tensor(X)).numpy()
    data = [(X[:60], T[:60]), (X[60:], T[60:])]
    for mode in ("greedy", "chunked", "overlapping"):
        hist, info = train_local_parallel(
            module=mlp(n_inputs=4, hidden=[16, 16, 16], n_outputs=2), shards=data,
            iterations=60, eval_every=20, lr=0.1, batch_size=32, stages=4, local_mode=mode)
        obj = hist.column("objective")
        assert obj[-1] < obj[0] / 10, (mode, obj)
        assert info["units"] == (2 if mode == "chunked" else 4)


def test_one_line_errors():
    mod = module([4, 4])                     # 3 Linear layers
    error_of(lambda: _train(mod=mod, local_mode="lazy"), "local_mode 'lazy'", "greedy")
    error_of(lambda: _train(mod=mod, stages=4), "stages=4", "3 Linear layers")
    error_of(lambda: _train(mod=mod, stages=3, local_mode="chunked", chunk=2),
             "chunk=2 does not divide stages=3", "[1, 3]")
    error_of(lambda: _train(mod=module([])), "stages=auto gives 2", "1 Linear layers")
    error_of(lambda: _train(mod=mod, stages=-1), "stages must be an integer >= 0")
    error_of(lambda: _train(mod=mod, chunk=0), "chunk must be an integer >= 1")
    error_of(lambda: _train(mod=mod, window=0), "window must be an integer >= 1")
    error_of(lambda: _train(mod=nn.Sequential(nn.Tanh())), "module must be")
    error_of(lambda: _train(mod=mlp(n_inputs=3, hidden=[4], n_outputs=2)[0]),
             "nn.Sequential")
    error_of(lambda: _train(mod=mod, lr=0), "lr must be a positive number")
    error_of(lambda: train_local_parallel(module=mod, shards=shards(), optimizer="adam",
                                          regularizer=make_regularizer("l1", lam=0.1)),
             "l1 part", kind=ConfigError)


@pytest.mark.parametrize("local_mode,stages,chunk", [("greedy", 3, 1), ("overlapping", 3, 1),
                                                     ("overlapping", 2, 1),
                                                     ("chunked", 4, 2), ("chunked", 4, 4)])
def test_unit_flops_equal_what_pytorch_counts_in_every_tick(local_mode, stages, chunk):
    """The FLOPs counted from the layer shapes equal PyTorch's FlopCounterMode (matrix
    multiplies) of each tick of the trainer, pipeline fill and overlap ticks included;
    chunk = stages is one backprop step: 6 B sum(i o) - 2 B i_1 o_1."""
    from torch.utils.flop_counter import FlopCounterMode
    from dcnn.baselines.schemes.local_units import unit_flops
    mod = module([6, 5, 4])
    specs = plan_units(mod, stages=stages, local_mode=local_mode, chunk=chunk)
    batch, ticks = 7, 6
    with process_group() as world:
        pipe = LocalPipeline(world=world, traffic=Traffic(world), module=mod, shards=shards(),
                             specs=specs, local_mode=local_mode, iterations=ticks,
                             batch_size=batch, seed=0, optimizer="adam", lr=0.01)
        for t in range(ticks):
            with FlopCounterMode(display=False) as counter:
                pipe.gradients(t)
            want = sum(unit_flops(mod, s, batch=batch, local_mode=local_mode,
                                  overlap=local_mode == "overlapping" and s.index + 1 < len(specs)
                                  and t >= s.index + 2)
                       for s in specs if t >= s.index)
            assert counter.get_total_flops() == want, (t, counter.get_flop_counts())
            pipe.update()
    if len(specs) == 1:
        lin = [(m.in_features, m.out_features) for m in mod if isinstance(m, nn.Linear)]
        assert want == 6 * batch * sum(i * o for i, o in lin) - 2 * batch * lin[0][0] * lin[0][1]
