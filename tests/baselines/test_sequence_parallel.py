"""Sequence parallelism with ring attention: the blockwise schedule equals full attention (one
process), the trainer in one process equals the unsplit model trained by autograd, under
``mpiexec -n 2`` / ``-n 4`` ring attention equals full attention and the History equals the
one-process History, it learns digits read as 8 tokens, and bad input fails in one line."""
import doctest
import importlib
import json
import math

import pytest
import torch
from _ring_script import CASES, SHAPES, TOKENS, case_kwargs, module, shards

from conftest import error_of, run_mpi

from dcnn.baselines.runtime import batch_rows, pool, prox_, smooth_part
from dcnn.baselines.schemes.ring_attention import (blockwise_attention, blockwise_attention_grad,
                                           ring_attention_bytes)
from dcnn.baselines.schemes.sequence_parallel import (check_tokens, step_bytes,
                                              train_sequence_parallel)
from dcnn.errors import ConfigError
from dcnn.problems import FlatModel, LocalProblems, make_regularizer, mlp
from dcnn.problems.transformer import attention, is_token_param, transformer

COLUMNS = ("objective", "grad_norm", "train_metric", "sparsity")


@pytest.mark.parametrize("blocks", [1, 2, 3, 4, 6])
def test_blockwise_schedule_equals_full_attention(blocks):
    g = torch.Generator().manual_seed(blocks)
    q, k, v, do = (3 * torch.randn(2, 3, 12, 5, generator=g, dtype=torch.float64)
                   for _ in range(4))
    leaves = [t.clone().requires_grad_(True) for t in (q, k, v)]
    ref = attention(*leaves)
    ref.backward(do)
    o, lse = blockwise_attention(q, k, v, blocks=blocks)
    assert float((o - ref.detach()).abs().max()) < 1e-12
    scores = q @ k.transpose(-1, -2) / math.sqrt(5)
    assert float((lse - torch.logsumexp(scores, -1, keepdim=True)).abs().max()) < 1e-12
    for mine, leaf in zip(blockwise_attention_grad(q, k, v, do, blocks=blocks), leaves):
        assert float((mine - leaf.grad).abs().max()) < 1e-12


def _oracle(case):
    """The unsplit model (FlatModel, full attention) trained with torch.optim on the flat
    vector: full-batch or seeded mini-batch gradients by LocalProblems (vmap autograd), the
    l2 part added, the prox of the l1 part after SGD."""
    kw = case_kwargs(case)
    reg = kw.get("regularizer", make_regularizer("none"))
    X, T = pool(shards())
    prob = LocalProblems(model=FlatModel(module()), shards=[(X, T)], loss="squared",
                         task="regression", n_total=len(X), regularizer=reg)
    w = prob.model.w0.clone().requires_grad_(True)
    opt = (torch.optim.SGD if kw["optimizer"] == "sgd" else torch.optim.Adam)([w], lr=kw["lr"])
    for t in range(kw["iterations"]):
        rows = batch_rows(len(X), kw.get("batch_size"), seed=kw.get("seed", 0), step=t,
                          stream=0)
        view = prob if rows is None else prob.batch(rows[None], torch.tensor([len(rows)]))
        w.grad = view.gradients(w.detach()[None])[0] + smooth_part(reg).grad(w.detach())
        opt.step()
        if not reg.smooth:
            prox_([w], reg, kw["lr"])
    return w.detach()


@pytest.fixture(scope="module")
def one_process():
    """``{case: (History, info)}`` of the trainer in one process (a world of 1)."""
    return {case: train_sequence_parallel(module=module(), shards=shards(), eval_every=2,
                                          **case_kwargs(case)) for case in CASES}


def test_one_process_equals_unsplit_autograd(one_process):
    w0 = FlatModel(module()).w0
    for case, (hist, info) in one_process.items():
        w = info["final_params"]
        assert float((w - w0).abs().max()) > 1e-3, case                   # it trained
        assert float((w - _oracle(case)).abs().max()) < 1e-12, case
        assert info["world_size"] == 1 and info["tokens_per_rank"] == TOKENS
        assert info["bytes_sent"] == 0 and info["bytes_per_step"] == 0
        assert [r["iteration"] for r in hist.records] == \
            sorted({0, *range(2, info["iterations"] + 1, 2), info["iterations"]})
    sparse = one_process["elastic_net"][1]["final_params"]
    assert int((sparse == 0).sum()) > int((w0 == 0).sum())               # the prox acted


@pytest.mark.mpi
@pytest.mark.parametrize("ranks", [2, 4])
def test_ring_and_trainer_under_mpiexec(ranks, one_process):
    res = run_mpi(ranks, ["tests/baselines/_ring_script.py"], timeout=150)
    assert res.returncode == 0, res.stderr[-3000:]
    line = next(x for x in res.stdout.splitlines() if x.startswith("JSON "))
    recs = json.loads(line[5:])
    assert [r["rank"] for r in recs] == list(range(ranks))
    n = TOKENS // ranks
    for rec in recs:
        # ring attention = full attention on this rank's block; bytes as the schedule says
        for out, (b, h, blk, d) in zip(rec["ring"], SHAPES):
            assert max(out["errors"]) < 1e-10, out
            want = ring_attention_bytes(batch=b, heads=h, block=blk, d_head=d, itemsize=8,
                                        ranks=ranks)
            assert out["forward_bytes"] == want["forward"]
            assert out["total_bytes"] == want["forward"] + want["backward"]
        for case in CASES:
            hist, info = one_process[case]
            got = rec[case]
            w = torch.tensor(got["info"]["params"], dtype=torch.float64)
            assert float((w - info["final_params"]).abs().max()) < 1e-10, case
            assert got["info"]["params"] == recs[0][case]["info"]["params"]  # same replicas
            assert len(got["history"]) == len(hist.records)
            for mine, ref in zip(got["history"], hist.records):
                assert mine["iteration"] == ref["iteration"]
                for col in COLUMNS:
                    assert abs(mine[col] - ref[col]) <= 1e-10 * max(1.0, abs(ref[col])), \
                        (case, col)
            batch = min(CASES[case].get("batch_size") or 10**9, 15)
            lay = got["info"]
            net = module()
            p_tok = sum(p.numel() for name, p in net.named_parameters() if is_token_param(name))
            assert lay["bytes_per_step"] == step_bytes(batch=batch, tokens=TOKENS, d_model=8,
                                                       token_params=p_tok, itemsize=8,
                                                       ranks=ranks), case
            assert lay["bytes_sent"] == lay["bytes_per_step"] * CASES[case]["iterations"]
            assert [r["bytes_per_agent"] for r in got["history"]] == \
                [r["iteration"] * lay["bytes_per_step"] for r in got["history"]]
            assert lay["tokens_per_rank"] == n and lay["world_size"] == ranks
            assert lay["attention_memory_per_rank"] == batch * 2 * n * n * 8
            assert lay["attention_memory_unsplit"] == batch * 2 * TOKENS ** 2 * 8
        # the same one-line refusal on every rank, before any collective of the trainer
        assert rec["error"] == recs[0]["error"]
        assert f"{2 * ranks - 1} tokens do not split evenly over {ranks} ranks" in rec["error"]
        assert rec["bench"] == recs[0]["bench"]
    for row in recs[0]["bench"]:
        assert row["ranks"] == ranks and row["ring_time_s"] > 0 and row["full_time_s"] > 0
        assert row["attention_memory_full"] == ranks ** 2 * row["attention_memory_per_rank"]
        want = ring_attention_bytes(batch=1, heads=2, block=row["tokens_per_rank"], d_head=4,
                                    itemsize=4, ranks=ranks)
        assert row["bytes_per_rank"] == want["forward"] + want["backward"]


def test_learns_digits_read_as_eight_tokens():
    """sklearn digits, standardised, each 8x8 image as 8 tokens (rows) of 8 pixels."""
    from dcnn.data import load_dataset
    from dcnn.data.partitions import encode_targets

    ds = load_dataset("digits", seed=0)
    T = encode_targets(ds.y_train, task="multiclass", n_classes=10)
    Tte = encode_targets(ds.y_test, task="multiclass", n_classes=10)
    net = transformer(n_inputs=64, n_outputs=10, tokens=8)
    before = FlatModel(net).w0
    hist, info = train_sequence_parallel(
        module=net, shards=[(ds.X_train, T)],
        test=(ds.X_test, Tte), loss="cross_entropy", task="multiclass", optimizer="adam",
        lr=0.02, iterations=25, eval_every=25, batch_size=128, seed=0)
    first, last = hist.records[0], hist.last
    assert last["objective"] < 0.5 * first["objective"]
    assert last["test_metric"] > 50 > 3 * first["test_metric"]          # percent correct
    assert info["tokens"] == 8 and info["batch"] == 128
    assert info["attention_memory_per_rank"] == 128 * 2 * 8 * 8 * 8
    assert torch.equal(FlatModel(net).w0, before)                        # copied, not changed


@pytest.mark.parametrize("name", ["dcnn.baselines.schemes.sequence_parallel",
                                  "dcnn.baselines.schemes.ring_attention",
                                  "dcnn.problems.transformer"])
def test_docstring_examples_run(name):
    result = doctest.testmod(importlib.import_module(name))
    assert result.attempted > 0 and result.failed == 0


def test_check_tokens():
    assert check_tokens(8, 4) == 2
    error_of(lambda: check_tokens(6, 4), "6 tokens do not split evenly over 4 ranks",
             "[1, 2, 3, 6]", kind=ConfigError)


@pytest.mark.parametrize("kw,fragments", [
    (dict(module=mlp(n_inputs=16, hidden=[4], n_outputs=2)),
     ["needs the transformer", "got Sequential"]),
    (dict(module=transformer(n_inputs=12, n_outputs=2, tokens=4)),
     ["[16] features", "reads 12", "n_inputs=16"]),
    (dict(optimizer="lbfgs"), ["optimizer 'lbfgs'"]),
    (dict(optimizer="adam", regularizer=make_regularizer("l1", lam=0.1)), ["l1 part"]),
    (dict(loss="cross_entropy"), ["needs a classification dataset"]),
    (dict(iterations=-1), ["iterations must be an integer >= 0"]),
    (dict(lr=0), ["lr must be a positive number"]),
    (dict(shards=[]), ["non-empty"]),
])
def test_one_line_errors(kw, fragments):
    args = {**dict(module=module(), shards=shards(), iterations=1), **kw}
    error_of(lambda: train_sequence_parallel(**args), *fragments, kind=ConfigError)
