"""The world-of-size-1 path, in process (no mpiexec): every engine trains, its History is the
decentralized methods' one, and full-batch training equals plain gradient steps."""
import doctest
import importlib
import math

import numpy as np
import pytest
import torch
import torch.distributed as dist
from _engine_cases import gd_oracle, l2, module, pooled_problem, shards, token_module, token_shards

from dcnn.baselines import init_world, process_group, train_engine
from dcnn.metrics import COLUMNS
from dcnn.problems import make_regularizer

ENGINES = {
    "ddp": dict(method="ddp"),
    "pipeline-gpipe": dict(method="pipeline", schedule="gpipe", microbatches=2),
    "pipeline-1f1b": dict(method="pipeline", schedule="1f1b", microbatches=13),
    "pipeline-interleaved": dict(method="pipeline", schedule="interleaved", microbatches=2),
    "tensor-parallel": dict(method="tensor-parallel"),
    "ptd-p": dict(method="ptd-p", schedule="interleaved", microbatches=2),
}


@pytest.mark.parametrize("name", list(ENGINES))
def test_one_process_trains_and_equals_gradient_descent(name):
    rng = np.random.default_rng(1)
    test = (rng.normal(size=(9, 3)), rng.normal(size=(9, 2)))
    hist, info = train_engine(module=module([4, 4, 4]), shards=shards(), test=test,
                              regularizer=l2(), iterations=6, lr=0.1, eval_every=3,
                              **ENGINES[name])
    assert not dist.is_initialized()                      # the group it formed is gone
    assert hist.column("iteration") == [0, 3, 6]
    objective = hist.column("objective")
    assert objective[-1] < objective[0]
    # the modelled link's counters are the loop's (dcnn.link): engines do not count them
    assert all(math.isfinite(hist.last[c]) for c in COLUMNS
               if c not in ("consensus_error", "exchanges", "busiest_bytes"))
    assert all(math.isnan(hist.last[c]) for c in ("exchanges", "busiest_bytes"))
    assert hist.column("bytes_per_agent") == [0.0, 0.0, 0.0]        # nothing leaves a rank
    assert hist.column("time_s") == sorted(hist.column("time_s"))
    assert info["world_size"] == 1 and info["launcher"] == "single"
    # one process, full batch: every engine takes exactly the plain gradient steps
    w = info["final_params"]
    ref = gd_oracle(module([4, 4, 4]), shards(), l2(), steps=6, lr=0.1)
    assert float((w - ref).abs().max()) <= 1e-10
    problem = pooled_problem(module([4, 4, 4]), shards(), l2())
    U = float(problem.loss_values(w[None])[0] + l2().value(w))
    assert abs(hist.last["objective"] - U) <= 1e-12


@pytest.mark.parametrize("sequence_parallel", [False, True])
def test_the_transformer_by_heads_in_one_process_takes_gradient_steps(sequence_parallel):
    """The tensor-parallel transformer (a world of one: every head, every token on rank 0)
    takes exactly the plain gradient steps of the unsplit transformer."""
    _, info = train_engine(method="tensor-parallel", module=token_module(),
                           shards=token_shards(), regularizer=l2(), iterations=4, lr=0.1,
                           eval_every=4, sequence_parallel=sequence_parallel)
    ref = gd_oracle(token_module(), token_shards(), l2(), steps=4, lr=0.1)
    assert float((info["final_params"] - ref).abs().max()) <= 1e-10
    assert info["heads_per_rank"] == 4 and info["sequence_parallel"] is sequence_parallel


@pytest.mark.parametrize("method,schedule,m", [("pipeline", "interleaved", 2),
                                               ("ptd-p", "gpipe", 13)])
def test_the_transformer_pipelined_in_one_process_takes_gradient_steps(method, schedule, m):
    """The transformer's four parts as pipeline stages (interleaved: two stages of two parts
    on the one rank) take exactly the plain gradient steps of the unsplit transformer."""
    _, info = train_engine(method=method, module=token_module(), shards=token_shards(),
                           regularizer=l2(), iterations=4, lr=0.1, eval_every=4,
                           schedule=schedule, microbatches=m)
    ref = gd_oracle(token_module(), token_shards(), l2(), steps=4, lr=0.1)
    assert float((info["final_params"] - ref).abs().max()) <= 1e-10
    assert info["stages"] == (2 if schedule == "interleaved" else 1)
    assert info["stage_layers"] == ([[0, 2], [2, 4]] if schedule == "interleaved"
                                    else [[0, 4]])


def test_the_pipeline_measures_its_bubble_from_its_stage_clocks():
    """Every step but the first is timed: the compute inside the stages (busy) against the
    schedule's step; the measured bubble is the idle share, next to the formula's."""
    _, info = train_engine(method="pipeline", schedule="interleaved", microbatches=2,
                           module=module([4, 4, 4]), shards=shards(), iterations=5,
                           eval_every=5)
    assert info["timed_steps"] == 4
    (busy,), (step,) = info["busy_s_per_rank"], info["step_s_per_rank"]
    assert 0.0 < busy < step < info["time_s"]
    assert info["bubble_per_rank"] == [1.0 - busy / step]
    assert info["bubble_measured"] == 1.0 - busy / step
    assert info["bubble_fraction"] == 0.0          # one rank: (p - 1) / (v m + p - 1) = 0


def test_l1_takes_proximal_gradient_steps():
    reg = make_regularizer("l1", lam=0.05)
    hist, info = train_engine(method="ddp", module=module([4]), shards=shards(),
                              regularizer=reg, iterations=5, lr=0.2, eval_every=5)
    problem = pooled_problem(module([4]), shards(), reg)
    w = problem.model.w0.clone()
    for _ in range(5):
        # w <- prox_{lr r}(w - lr grad g(w))
        w = reg.prox(w - 0.2 * problem.gradients(w[None])[0], 0.2)
    assert float((info["final_params"] - w).abs().max()) <= 1e-12
    assert hist.last["sparsity"] > 0.0


def test_minibatch_pipeline_and_tp_agree():
    """Both sample the pooled batch by (seed, step): same steps, same parameters."""
    kw = dict(module=module([4, 4, 4]), shards=shards(), regularizer=l2(), iterations=4,
              batch_size=8, seed=3, eval_every=4)
    _, pp = train_engine(method="pipeline", schedule="gpipe", microbatches=4, **kw)
    _, tp = train_engine(method="tensor-parallel", **kw)
    assert float((pp["final_params"] - tp["final_params"]).abs().max()) <= 1e-12
    assert pp["microbatch_size"] == 2


def test_process_group_is_reused_and_left_alone():
    with process_group() as world:
        assert world.owned and world.size == 1 and world.backend == "gloo"
        inner = init_world()
        assert not inner.owned and inner.launcher == "existing"
        train_engine(method="ddp", module=module([4]), shards=shards(), iterations=1)
        assert dist.is_initialized()                      # train_engine did not close it
    assert not dist.is_initialized()


@pytest.mark.parametrize("name", ["dcnn.baselines.engines.train",
                                  "dcnn.baselines.engines.pipeline",
                                  "dcnn.baselines.runtime.costs",
                                  "dcnn.baselines.runtime.bootstrap"])
def test_docstring_examples_run(name):
    result = doctest.testmod(importlib.import_module(name))
    assert result.attempted > 0 and result.failed == 0


def test_weights_stay_untouched():
    mod = module([4])
    before = [p.detach().clone() for p in mod.parameters()]
    train_engine(method="tensor-parallel", module=mod, shards=shards(), iterations=2)
    assert all(torch.equal(a, b) for a, b in zip(before, mod.parameters()))
