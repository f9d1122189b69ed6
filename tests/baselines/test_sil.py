"""Synthetic Intermediate Labels (dcnn.baselines.schemes.sil): the split and join are exact, the
codes are a pure function of (seed, cut), the training phase trains each part alone against
its codes with no traffic, recovery is plain backprop, mpiexec -n 2 gives the one-process
History, it learns, and misconfigurations fail in one line (on every rank)."""
import copy
import doctest
import importlib
import math

import numpy as np
import pytest
import torch
from _engine_cases import parse
from _sil_script import CASES, COLUMNS, TABLE, case_kwargs
from conftest import error_of

from dcnn.baselines.runtime.objective import batch_rows, pool
from dcnn.baselines.schemes.sil import (class_labels, code_checksum, code_table, join_parts,
                                        noisy_codes, part_specs, place_parts, split_parts,
                                        train_sil)
from dcnn.data import load_dataset
from dcnn.data.partitions import encode_targets
from dcnn.errors import ConfigError
from dcnn.problems import FlatModel, make_regularizer, mlp, per_sample_loss


def _params(info):
    return info["final_params"]


# ----------------------------------------------------------------------- pure pieces
def test_code_table_depends_on_seed_and_cut_only():
    a = code_table(n_classes=3, dims=[4, 5], seed=7)
    assert [tuple(c.shape) for c in a] == [(3, 4), (3, 5)] and a[0].dtype == torch.float64
    b = code_table(n_classes=3, dims=[2, 5, 6], seed=7)   # other cuts' widths do not matter
    assert torch.equal(a[1], b[1])
    c = code_table(n_classes=3, dims=[4, 5], seed=8)
    assert not torch.equal(a[0], c[0]) and not torch.equal(a[1], c[1])
    assert not torch.equal(a[0][:, :4], b[2][:, :4])      # each cut has its own stream
    big = code_table(n_classes=50, dims=[200], seed=0)[0]
    assert abs(float(big.mean())) < 0.05 and abs(float(big.std()) - 1.0) < 0.05


def test_noisy_codes_are_seeded_by_step_and_part():
    codes = code_table(n_classes=2, dims=[3], seed=0)[0]
    y = torch.tensor([0, 1, 1, 0])
    kw = dict(noise=0.5, seed=2, step=3, part=1)
    assert torch.equal(noisy_codes(codes, y, **kw), noisy_codes(codes, y, **kw))
    assert torch.equal(noisy_codes(codes, y, **{**kw, "noise": 0.0}), codes[y])
    for other in ({"step": 4}, {"part": 2}, {"seed": 3}):
        assert not torch.equal(noisy_codes(codes, y, **kw), noisy_codes(codes, y, **{**kw,
                                                                                      **other}))
    many = torch.zeros(20000, dtype=torch.long)
    eps = noisy_codes(codes, many, **kw) - codes[many]
    assert abs(float(eps.std()) - 0.5) < 0.02


def test_split_and_join_are_exact():
    mod = mlp(n_inputs=3, hidden=[6, 5, 4], n_outputs=2, seed=1)
    x = torch.randn(9, 3, dtype=torch.float64)
    w0 = FlatModel(mod).w0
    for stages, cuts in [(2, [2]), (3, [2, 4]), (4, [0, 2, 4])]:
        specs = part_specs(mod, stages)
        assert [s.hi - 1 for s in specs[:-1]] == cuts
        parts = split_parts(mod, stages)
        assert all(isinstance(p[0], torch.nn.Tanh) for p in parts[1:])   # cut pre-activation
        assert torch.equal(join_parts(parts)(x), mod(x))
        assert torch.equal(FlatModel(mod).flatten(join_parts(parts)), w0)
        for s, p in zip(specs, parts):
            flat = torch.cat([q.detach().reshape(-1) for q in p.parameters()])
            assert torch.equal(flat, w0[s.offset:s.offset + s.size])
    first, second = split_parts(mod, 2)
    assert torch.equal(second(first(x)), mod(x))
    assert [s.in_dim for s in part_specs(mod, 3)] == [3, 5, 4]
    assert place_parts(5, 2) == [[0, 1, 2], [3, 4]]


def test_class_labels():
    labels, n = class_labels(torch.tensor([[0.0], [1.0], [1.0]]), "binary")
    assert labels.tolist() == [0, 1, 1] and n == 2
    labels, n = class_labels(torch.eye(4, dtype=torch.float64)[[2, 0, 3]], "multiclass")
    assert labels.tolist() == [2, 0, 3] and n == 4


# ------------------------------------------------------------------ one-process oracles
def _oracle_training_phase(kw, *, stages):
    """Each part trained alone by plain SGD on the costs of the module docstring, written
    out here (squared error to the codes, task loss on noisy codes), plus the l2 gradient."""
    mod, l2 = kw["module"], kw["regularizer"].l2
    X, T = (torch.as_tensor(a) for a in pool(kw["shards"]))
    y = class_labels(T, kw["task"])[0]
    specs = part_specs(mod, stages)
    codes = code_table(n_classes=3, dims=[s.out_dim for s in specs[:-1]], seed=kw["seed"])
    out = []
    for j, part in enumerate(split_parts(mod, stages)):
        for t in range(kw["iterations"]):
            rows = batch_rows(len(X), kw["batch_size"], seed=kw["seed"], step=t, stream=0)
            xb, tb, yb = X[rows], T[rows], y[rows]
            inp = xb if j == 0 else noisy_codes(codes[j - 1], yb, noise=kw["noise"],
                                                seed=kw["seed"], step=t, part=j)
            f = part(inp)
            if j == stages - 1:
                cost = per_sample_loss(kw["loss"], f, tb).mean()
            else:
                cost = ((f - codes[j][yb]) ** 2).sum(1).mean()
            grads = torch.autograd.grad(cost, list(part.parameters()))
            with torch.no_grad():
                for p, g in zip(part.parameters(), grads):
                    p -= kw["lr"] * (g + 2 * l2 * p)
        out.append(torch.cat([p.detach().reshape(-1) for p in part.parameters()]))
    return torch.cat(out)


def test_training_phase_trains_each_part_alone():
    kw = {**case_kwargs("train"), "module": mlp(n_inputs=3, hidden=[6, 5, 4], n_outputs=3),
          "stages": 3}
    hist, info = train_sil(**kw)
    w = _params(info)
    assert float((w - FlatModel(kw["module"]).w0).abs().max()) > 1e-2      # it trained
    assert float((w - _oracle_training_phase(kw, stages=3)).abs().max()) < 1e-12
    assert info["training_bytes"] == 0 and info["bytes_sent"] == 0
    assert set(hist.column("bytes_per_agent")) == {0}
    assert info["cuts"] == [2, 4] and info["code_dims"] == [5, 4]
    # parts > 0 see only labels: other inputs change part 0 and nothing else
    other = [(np.random.default_rng(9).normal(size=x.shape), t) for x, t in kw["shards"]]
    w2 = _params(train_sil(**{**kw, "shards": other})[1])
    cut = part_specs(kw["module"], 3)[1].offset
    assert torch.equal(w2[cut:], w[cut:]) and not torch.equal(w2[:cut], w[:cut])


@pytest.mark.parametrize("optimizer,lr", [("sgd", 0.1), ("adam", 0.02)])
def test_all_recovery_is_end_to_end_backprop(optimizer, lr):
    kw = {**case_kwargs("recovery"), "optimizer": optimizer, "lr": lr, "recovery": 6}
    mod = copy.deepcopy(kw["module"])
    X, T = (torch.as_tensor(a) for a in pool(kw["shards"]))
    opt = (torch.optim.SGD if optimizer == "sgd" else torch.optim.Adam)(mod.parameters(), lr=lr)
    for t in range(kw["iterations"]):
        rows = batch_rows(len(X), kw["batch_size"], seed=kw["seed"], step=t, stream=0)
        opt.zero_grad()
        per_sample_loss(kw["loss"], mod(X[rows]), T[rows]).mean().backward()
        opt.step()
    w = _params(train_sil(**kw)[1])
    assert float((w - FlatModel(mod).flatten(mod)).abs().max()) < 1e-12


def test_memory_is_counted_per_part():
    kw = case_kwargs("train")
    info = train_sil(**{**kw, "iterations": 1})[1]
    P, B = FlatModel(kw["module"]).n_params, kw["batch_size"]
    # one worker, whole model: params + grads (SGD: no state) + input and every layer output
    assert info["memory_unsplit"] == 8 * (2 * P + B * (3 + 6 + 6 + 5 + 5 + 3))
    # one process holds both parts; part 1 also holds its own (noisy-code) input of width 5
    assert info["memory_per_rank"] == [info["memory_unsplit"] + 8 * B * 5]


def test_sil_learns_wine():
    ds = load_dataset("wine", seed=0)
    T = encode_targets(ds.y_train, task=ds.task, n_classes=ds.n_classes)
    Tt = encode_targets(ds.y_test, task=ds.task, n_classes=ds.n_classes)
    hist, info = train_sil(module=mlp(n_inputs=ds.n_features, hidden=[16, 16], n_outputs=3),
                           shards=[(ds.X_train, T)], test=(ds.X_test, Tt),
                           loss="cross_entropy", task="multiclass", iterations=60,
                           eval_every=30, lr=0.1, batch_size=32)
    assert hist.records[0]["test_metric"] < 50                 # chance is about 40 %
    assert hist.last["test_metric"] >= 90, hist.column("test_metric")
    assert info["training_bytes"] == 0 and info["stages"] == 2


# --------------------------------------------------------------------------- mpiexec
@pytest.mark.mpi
def test_two_ranks_give_the_one_process_history(mpi):
    res = mpi(2, ["tests/baselines/_sil_script.py", "all"], timeout=120)
    assert res.returncode == 0, res.stderr[-3000:]
    out = parse(res.stdout)
    assert set(out) == {"codes", *CASES, "errors"}, res.stdout[-2000:]
    mine = code_table(**TABLE)
    for rec in out["codes"]:     # every rank built the table alone: all equal, and to ours
        assert len(rec["table"]) == len(mine) and all(
            torch.equal(torch.tensor(a, dtype=torch.float64), b)
            for a, b in zip(rec["table"], mine))
        assert rec["checksum"] == out["codes"][0]["checksum"]
    for case in CASES:
        recs = out[case]
        hist, info = train_sil(**case_kwargs(case))
        for rec in recs:
            assert rec["params"] == recs[0]["params"], case
            assert rec["info"]["world_size"] == 2 and rec["info"]["training_bytes"] == 0
            # the tables the trainer built on each rank (not a recomputation) equal the
            # table of the case's seed
            ours = code_checksum(code_table(n_classes=info["n_classes"],
                                            dims=info["code_dims"],
                                            seed=case_kwargs(case)["seed"]))
            assert rec["info"]["code_checksums"] == [ours, ours], case
            w = torch.tensor(rec["params"], dtype=torch.float64)
            assert float((w - _params(info)).abs().max()) < 1e-12, case
            for col in COLUMNS:
                for a, b in zip(rec[col], hist.column(col), strict=True):
                    same = math.isnan(a) and math.isnan(b)         # no test set: nan
                    assert same or abs(a - b) <= 1e-12 * max(1.0, abs(b)), (case, col)
        mpi_info = recs[0]["info"]
        assert mpi_info["parts_per_rank"] == place_parts(mpi_info["stages"], 2)
        if mpi_info["recovery"] == 0:
            assert mpi_info["bytes_sent"] == 0 and set(recs[0]["bytes_per_agent"]) == {0}
        else:
            # every recovery step: the crossing cut's activations (|B| x h, float64) forward
            # from rank 0, their gradients back from rank 1
            crossing = mpi_info["code_dims"][mpi_info["parts_per_rank"][0][-1]]
            step = 8 * mpi_info["batch"] * crossing
            assert mpi_info["recovery_bytes"] > 0
            assert mpi_info["bytes_per_rank"] == [mpi_info["recovery"] * step] * 2
            assert info["recovery_bytes"] == 0                 # one process: nothing sent
        assert mpi_info["memory_per_worker"] == max(mpi_info["memory_per_rank"])
        assert mpi_info["memory_per_worker"] < mpi_info["memory_unsplit"]
    msgs = out["errors"]
    assert msgs[0]["messages"] == msgs[1]["messages"]
    assert "recovery must be an integer in 0..2, got 9" in msgs[0]["messages"]["recovery"]


@pytest.mark.mpi
@pytest.mark.slow
def test_more_ranks_than_stages_fail_on_every_rank(mpi):
    res = mpi(3, ["tests/baselines/_sil_script.py", "errors"], timeout=120)
    assert res.returncode == 0, res.stderr[-3000:]
    recs = parse(res.stdout)["errors"]
    assert len(recs) == 3 and all(r["messages"] == recs[0]["messages"] for r in recs)
    msgs = recs[0]["messages"]
    assert "3 ranks but only 2 stages" in msgs["ranks"] and "mpiexec -n 2" in msgs["ranks"]
    assert "3 stages (one per rank)" in msgs["auto"] and "2 Linear layers" in msgs["auto"]
    assert all("\n" not in m for m in msgs.values())


# ----------------------------------------------------------------------------- errors
def _train(**kw):
    return lambda: train_sil(**{**case_kwargs("train"), "iterations": 2, **kw})


def test_misconfigurations_are_one_line_errors():
    error_of(_train(loss="squared", task="regression"), "task 'regression'",
             "binary or multiclass", kind=ConfigError)
    error_of(_train(stages=4), "stages", "got 4", "3 Linear layers", kind=ConfigError)
    error_of(_train(stages=1), "stages=1", "stages >= 2", kind=ConfigError)
    error_of(_train(recovery=3), "recovery", "0..2", "got 3", kind=ConfigError)
    error_of(_train(recovery=-1), "recovery", "got -1", kind=ConfigError)
    error_of(_train(noise=-0.1), "noise", "got -0.1", kind=ConfigError)
    error_of(_train(seed=-1), "seed", "got -1", kind=ConfigError)
    error_of(_train(module=mlp(n_inputs=3, hidden=[], n_outputs=3)), "1 Linear layer",
             "add a hidden layer", kind=ConfigError)
    error_of(_train(module=mlp(n_inputs=3, hidden=[4], n_outputs=2)), "width 3",
             "the model has 2", kind=ConfigError)
    error_of(_train(optimizer="adam", regularizer=make_regularizer("l1", lam=0.1)),
             "optimizer='sgd'", kind=ConfigError)
    error_of(_train(lr=0.0), "lr must be a positive number", kind=ConfigError)
    error_of(lambda: place_parts(2, 3), "3 ranks but only 2 stages", kind=ConfigError)
    error_of(lambda: part_specs(mlp(n_inputs=3, hidden=[4], n_outputs=2), 3), "3 stages",
             "2 Linear layers", kind=ConfigError)


def test_weights_stay_untouched_and_docstring_runs():
    kw = case_kwargs("elastic")
    before = [p.detach().clone() for p in kw["module"].parameters()]
    train_sil(**kw)
    assert all(torch.equal(a, b) for a, b in zip(before, kw["module"].parameters()))
    for name in ("dcnn.baselines.schemes.sil", "dcnn.baselines.schemes.sil_codes"):
        result = doctest.testmod(importlib.import_module(name))
        assert result.attempted > 0 and result.failed == 0

