"""Codistillation: alpha = 0 is independent training (bitwise), the teachers are the partners'
parameters of the last exchange, the update equals a sequential simulation written with
plain torch, ``mpiexec -n 2`` / ``-n 4`` give the one-process History, distillation lowers the
disagreement of the models, and misconfigurations fail with one-line errors."""
import copy
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from _codist_script import CASES, case, summary
from _engine_cases import l2, module, parse, shards
from conftest import error_of, run_mpi

from dcnn.baselines import train_engine
from dcnn.baselines.schemes.codistillation import (checksum, churn, exchange_steps, initial_models,
                                           model_agents, placement, teacher_step,
                                           train_codistillation)
from dcnn.baselines.runtime.objective import batch_rows
from dcnn.errors import ConfigError
from dcnn.problems import mlp, per_sample_loss


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run fastest (and steadiest on a shared machine) on one thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _flat(mod):
    return torch.cat([p.detach().reshape(-1) for p in mod.parameters()])


def test_alpha_zero_equals_independent_ddp_training():
    """Full batch, SGD, l2: each model = DDP alone on its block, bit for bit."""
    sh, mod = shards(), module([4])
    kw = dict(regularizer=l2(), iterations=10, eval_every=5, lr=0.1)
    _, info = train_codistillation(module=mod, shards=sh, burn_in=2, exchange_every=3,
                                   distill_weight=0.0, trace=True, **kw)
    assert info["exchanges"] == 3                    # the teachers were there, with weight 0
    starts = initial_models(mod, models=2, seed=0)
    for m, agents in enumerate(model_agents(len(sh), 2)):
        _, alone = train_engine(method="ddp", module=starts[m], shards=[sh[a] for a in agents],
                                **kw)
        assert checksum(alone["final_params"]) == info["final_checksums"][m]
        if m == 0:
            assert torch.equal(alone["final_params"], info["final_params"])


def test_alpha_zero_equals_independent_minibatch_adam_loop():
    """Mini-batches (rows of model m drawn by (seed, step, stream m)), Adam, cross-entropy:
    each model = an explicit loop on its block, bit for bit."""
    kw = case("multi-mb")
    _, info = train_codistillation(**{**kw, "distill_weight": 0.0})
    sh = kw["shards"]
    for m, (start, agents) in enumerate(zip(initial_models(kw["module"], models=2, seed=7),
                                            model_agents(len(sh), 2))):
        X = torch.as_tensor(np.concatenate([sh[a][0] for a in agents]))
        T = torch.as_tensor(np.concatenate([sh[a][1] for a in agents]))
        opt = torch.optim.Adam(list(start.parameters()), lr=kw["lr"])
        for t in range(kw["iterations"]):
            rows = batch_rows(len(X), 3, seed=7, step=t, stream=m)
            out = start(X[rows])
            opt.zero_grad()
            ((len(X) / len(rows)) / len(X) * per_sample_loss("cross_entropy", out, T[rows])
             .sum()).backward()
            opt.step()
        assert checksum(_flat(start)) == info["final_checksums"][m]
        if m == 0:
            assert torch.equal(_flat(start), info["final_params"])


def test_teacher_is_the_partners_parameters_of_the_last_exchange():
    kw = case("reg")
    n, b, T, steps = 2, kw["burn_in"], kw["exchange_every"], kw["iterations"]
    _, info = train_codistillation(**kw)
    exchanges = dict(info["exchange_trace"])
    assert list(exchanges) == exchange_steps(steps, burn_in=b, every=T) == [3, 7, 11]
    # the checksums of an exchange are the models after e steps: a run stopped at e
    for e, sums in exchanges.items():
        _, stopped = train_codistillation(**{**kw, "iterations": e})
        assert sums == stopped["final_checksums"]
    trace = info["teacher_trace"]
    assert [(t, m) for t, m, _ in trace] == [(t, m) for t in range(steps) for m in range(n)]
    for t, m, used in trace:
        e = teacher_step(t, burn_in=b, every=T)
        if t < b:
            assert e is None and used == []
        else:
            assert used == [s for j, s in enumerate(exchanges[e]) if j != m], (t, m)


def _simulate(kw, *, models):
    """Codistillation by its definition with plain torch: F.cross_entropy with soft targets,
    teachers deep-copied at the exchange steps, the l2 term in the loss."""
    sh, alpha, lam = kw["shards"], kw["distill_weight"], kw["regularizer"].l2
    nets = initial_models(kw["module"], models=models, seed=0)
    data = [(torch.as_tensor(np.concatenate([sh[a][0] for a in ag])),
             torch.as_tensor(np.concatenate([sh[a][1] for a in ag])).argmax(1))
            for ag in model_agents(len(sh), models)]
    opts = [torch.optim.SGD(net.parameters(), lr=kw["lr"]) for net in nets]
    frozen = None
    for t in range(kw["iterations"]):
        if t >= kw["burn_in"] and (t - kw["burn_in"]) % kw["exchange_every"] == 0:
            frozen = [copy.deepcopy(net) for net in nets]
        for m, (net, opt, (X, y)) in enumerate(zip(nets, opts, data)):
            out = net(X)
            cost = F.cross_entropy(out, y)
            if frozen is not None:
                with torch.no_grad():
                    p = sum(torch.softmax(f(X), -1) for j, f in enumerate(frozen) if j != m)
                cost = cost + alpha * F.cross_entropy(out, p / (models - 1))
            cost = cost + lam * sum((q ** 2).sum() for q in net.parameters())
            opt.zero_grad()
            cost.backward()
            opt.step()
    return [_flat(net) for net in nets]


def test_equals_a_sequential_simulation_of_three_models():
    sh, te = _three_class(seed=5)
    kw = dict(module=mlp(n_inputs=2, hidden=[5], n_outputs=3, seed=4), shards=sh, test=te,
              loss="cross_entropy", task="multiclass", regularizer=l2(0.01), lr=0.3,
              iterations=15, eval_every=15, burn_in=4, exchange_every=3, distill_weight=1.5,
              models=3, trace=True)
    _, info = train_codistillation(**kw)
    ref = _simulate(kw, models=3)
    assert float((info["final_params"] - ref[0]).abs().max()) < 1e-12
    for m in range(3):
        assert math.isclose(info["final_checksums"][m], checksum(ref[m]), rel_tol=1e-12)
    # and the distillation term mattered
    _, plain = train_codistillation(**{**kw, "distill_weight": 0.0})
    assert float((info["final_params"] - plain["final_params"]).abs().max()) > 1e-3


def _three_class(n=80, *, seed, shards_of=20):
    """Three overlapping Gaussian blobs in the plane: shards of ``shards_of`` and a test set."""
    rng = np.random.default_rng(seed)

    def draw(k):
        y = rng.integers(0, 3, k)
        X = np.array([[0, 0], [1.5, 0], [0.75, 1.3]])[y] + rng.normal(scale=0.8, size=(k, 2))
        return X, np.eye(3)[y]
    X, T = draw(n)
    return [(X[i:i + shards_of], T[i:i + shards_of]) for i in range(0, n, shards_of)], draw(400)


def test_distillation_pulls_the_predictions_together():
    """Two models on disjoint halves of a 3-class problem disagree on part of the test set;
    distilling from each other (alpha = 1) lowers that part clearly (seen for data seeds 0-4:
    0.21 -> 0.06, 0.36 -> 0.17, 0.36 -> 0.15, 0.23 -> 0.09, 0.24 -> 0.10 at 300 steps)."""
    sh, te = _three_class(seed=0)
    kw = dict(module=mlp(n_inputs=2, hidden=[16], n_outputs=3, seed=0), shards=sh, test=te,
              loss="cross_entropy", task="multiclass", iterations=300, lr=0.5,
              eval_every=300, burn_in=20, exchange_every=10)
    _, alone = train_codistillation(distill_weight=0.0, **kw)
    _, codist = train_codistillation(distill_weight=1.0, **kw)
    assert alone["disagreement"] > 0.1
    assert codist["disagreement"] < 0.6 * alone["disagreement"]
    assert alone["disagreement_on"] == "test"
    assert len(codist["final_test_metric_per_model"]) == 2


def test_churn_on_hand_made_predictions():
    assert churn([0, 1, 2, 1], [0, 2, 2, 1], task="multiclass") == 0.25
    logits_a = np.array([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [0.0, 0.0, 1.0]])
    logits_b = np.array([[0.0, 1.0, 0.0], [0.0, 3.0, 1.0], [5.0, 0.0, 1.0]])
    assert churn(logits_a, logits_b, task="multiclass") == pytest.approx(2 / 3)
    assert churn(torch.tensor(logits_a), torch.tensor(logits_a), task="multiclass") == 0.0
    # one output: logits split at 0, squared-loss outputs at 0.5
    a, b = np.array([[0.3], [-0.2], [0.7]]), np.array([[0.6], [0.1], [0.8]])
    assert churn(a, b, task="binary") == pytest.approx(1 / 3)
    assert churn(a, b, task="binary", threshold=0.5) == pytest.approx(1 / 3)
    assert churn(a, b, task="binary", threshold=0.65) == 0.0
    assert churn([[1.0], [2.0]], [[1.0], [4.0]], task="regression") == pytest.approx(2 ** 0.5)
    error_of(lambda: churn([0, 1], [0, 1, 2], task="binary"), "same shape", kind=ConfigError)
    error_of(lambda: churn([0], [0], task="ranking"), "task 'ranking'", kind=ConfigError)


def test_initial_models_are_seeded_and_leave_the_global_rng_alone():
    mod = module([4])
    state = torch.get_rng_state()
    a = initial_models(mod, models=3, seed=1)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(_flat(a[0]), _flat(mod)) and a[0] is not mod
    b = initial_models(mod, models=3, seed=1)
    c = initial_models(mod, models=3, seed=2)
    for m in (1, 2):
        assert torch.equal(_flat(a[m]), _flat(b[m]))
        assert not torch.equal(_flat(a[m]), _flat(c[m]))
        assert not torch.equal(_flat(a[m]), _flat(a[0]))
    assert not torch.equal(_flat(a[1]), _flat(a[2]))


def test_docstring_examples_run():
    import doctest

    from dcnn.baselines.schemes import codistillation, distillation
    assert doctest.testmod(codistillation).failed == 0
    assert doctest.testmod(distillation).failed == 0


def test_placement_and_schedule():
    p = placement(2, 4)
    assert (p.ranks_per_model, p.models_per_rank, p.hosted(3), p.group(1)) == (2, 1, [1], [2, 3])
    p = placement(6, 3)
    assert (p.ranks_per_model, p.models_per_rank, p.hosted(1)) == (1, 2, [2, 3])
    assert placement(3, 1).hosted(0) == [0, 1, 2]
    assert exchange_steps(10, burn_in=2, every=3) == [2, 5, 8]
    assert [teacher_step(t, burn_in=2, every=3) for t in range(8)] == [None, None, 2, 2, 2, 5,
                                                                       5, 5]


def _train(**over):
    return lambda: train_codistillation(**{**case("reg"), "iterations": 1, **over})


def test_one_line_errors():
    error_of(_train(models=5), "5 models but only 4 shards", "models <= 4", kind=ConfigError)
    error_of(lambda: placement(3, 2), "3 models do not fit 2 ranks", "mpiexec -n 3",
             kind=ConfigError)
    error_of(_train(distill_weight=-0.5), "distill_weight", "got -0.5", kind=ConfigError)
    error_of(_train(distill_weight=float("nan")), "distill_weight", kind=ConfigError)
    error_of(_train(models=1), "models >= 2", "'ddp'", kind=ConfigError)
    error_of(_train(exchange_every=0), "exchange_every must be an integer >= 1",
             kind=ConfigError)
    error_of(_train(burn_in=-1), "burn_in must be an integer >= 0", kind=ConfigError)
    error_of(_train(trace="yes"), "trace must be True or False", kind=ConfigError)
    error_of(_train(optimizer="adam"), "'elastic_net'", "optimizer='sgd'", kind=ConfigError)
    error_of(_train(lr=0), "lr must be a positive number", kind=ConfigError)


# ----------------------------------------------------------------------------- multi-rank


def _close(a, b, tol=1e-12):
    """Equal to ``tol`` relative (NaN == NaN), through nested lists and tuples."""
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_close(x, y, tol) for x, y in zip(a, b))
    if a is None or b is None or isinstance(a, str):
        return a == b
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return abs(a - b) <= tol * max(1.0, abs(b))


def _expected_bytes(kw, ranks, exchanges):
    P = sum(p.numel() for p in kw["module"].parameters())
    p = placement(kw.get("models", 2), ranks)
    g, k = p.ranks_per_model, p.models_per_rank
    gather = exchanges * (ranks - 1) * (k * P if g == 1 else -(-P // g)) * 8
    reduce = kw["iterations"] * round(2 * (g - 1) / g * P * 8)
    return gather, gather + reduce


def _check_against_one_process(ranks):
    res = run_mpi(ranks, ["tests/baselines/_codist_script.py"], timeout=150)
    assert res.returncode == 0, res.stderr[-3000:]
    out = parse(res.stdout)
    assert set(out) == {*CASES[ranks], "errors"}, res.stdout[-2000:]
    for name in CASES[ranks]:
        recs = out[name]
        assert len(recs) == ranks
        for rec in recs[1:]:                      # the same History and info on every rank
            assert {k: v for k, v in rec.items() if k != "rank"} == \
                {k: v for k, v in recs[0].items() if k != "rank"}, name
        mpi, kw = recs[0], case(name)
        hist, info = train_codistillation(**kw)
        one = json.loads(json.dumps(summary(hist, info)))
        assert mpi["world_size"] == ranks
        for key in ("iteration", "objective", "grad_norm", "train_metric", "test_metric",
                    "sparsity", "params", "final_test_metric_per_model",
                    "final_train_metric_per_model", "disagreement", "exchange_trace",
                    "teacher_trace", "final_checksums", "exchanges"):
            assert _close(mpi[key], one[key]), (name, key, mpi[key], one[key])
        gather, total = _expected_bytes(kw, ranks, one["exchanges"])
        assert (mpi["exchange_bytes"], mpi["bytes_sent"]) == (gather, total), name
        assert mpi["bytes_per_agent"][-1] == total and one["bytes_sent"] == 0
        assert mpi["objective"][-1] < mpi["objective"][0]
    errors = out["errors"]
    assert all(r["messages"] == errors[0]["messages"] for r in errors)
    return errors[0]["messages"]


@pytest.mark.mpi
def test_two_ranks_one_or_two_models_per_rank_equal_one_process():
    msg = _check_against_one_process(2)
    assert "3 models do not fit 2 ranks" in msg["models-vs-ranks"]


@pytest.mark.mpi
@pytest.mark.slow
def test_four_ranks_data_parallel_groups_equal_one_process():
    msg = _check_against_one_process(4)
    assert "3 models do not fit 4 ranks" in msg["models-vs-ranks"]
    assert "model 1 has only 1 shards" in msg["group-too-large"]
    assert "at most 2 ranks" in msg["group-too-large"]
