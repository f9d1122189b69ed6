"""The engine baselines as dcnn methods (``algorithm.name = ddp | pipeline |
tensor-parallel | ptd-p``): the same update as centralized gradient descent on the pooled data (to
1e-10) in one process and under ``mpiexec -n 2`` / ``-n 4``, the same report, a place in
``dcnn compare``, and one-line refusals of what they cannot do."""
import json

import pytest

from dcnn.config import load_config
from dcnn.errors import ConfigError
from dcnn.runner import run_experiment

from conftest import error_of, run_mpi

BASE = ["run.progress=false", "run.reference=false", "run.iterations=12", "run.eval_every=4",
        "algorithm.optimizer='gd'"]


def _run(*overrides):
    return run_experiment(load_config(overrides=[*BASE, *overrides]), out=None, verbose=False)


@pytest.mark.parametrize("name", ["ddp", "pipeline", "tensor-parallel", "ptd-p"])
def test_one_process_equals_centralized_gradient_descent(name):
    gd = _run("algorithm.name='centralized'")
    res = _run(f"algorithm.name='{name}'")
    assert float((res.state.X[0] - gd.state.X[0]).abs().max()) < 1e-10
    for a, b in zip(res.history.records, gd.history.records):
        assert a["iteration"] == b["iteration"]
        assert abs(a["objective"] - b["objective"]) < 1e-12 * b["objective"]
    assert res.summary["bytes_sent_per_agent"] == 0          # a world of one sends nothing
    assert res.summary["method"] == ("pipeline-gpipe" if name == "pipeline" else name)
    assert res.summary["engine"]["bytes_note"].startswith("bytes are computed")


def test_the_transformer_by_heads_with_sequence_parallelism_equals_centralized():
    """``algorithm.sequence_parallel = true`` reaches the engine and is reported."""
    model = ["model.name='transformer'", "model.tokens=6", "run.iterations=6"]
    gd = _run("algorithm.name='centralized'", *model)
    res = _run("algorithm.name='tensor-parallel'", "algorithm.sequence_parallel=true", *model)
    assert float((res.state.X[0] - gd.state.X[0]).abs().max()) < 1e-10
    assert res.summary["engine"]["sequence_parallel"] is True
    assert res.summary["engine"]["heads_per_rank"] == 2          # the default 2 heads, 1 rank


def test_elastic_net_steps_equal_centralized_gradient_descent():
    """l2 part in the gradient, prox of the l1 part: the same split in both."""
    net = ["model.regularizer='elastic_net'", "model.lam=0.05"]
    gd = _run("algorithm.name='centralized'", *net)
    res = _run("algorithm.name='ddp'", *net)
    assert float((res.state.X[0] - gd.state.X[0]).abs().max()) < 1e-12
    assert res.history.last["sparsity"] > 0


def test_adam_steps_equal_centralized_adam():
    gd = _run("algorithm.name='centralized'", "algorithm.optimizer='adam'")
    res = _run("algorithm.name='ddp'", "algorithm.optimizer='adam'")
    assert float((res.state.X[0] - gd.state.X[0]).abs().max()) < 1e-12


def _mpi(n, methods, *extra):
    res = run_mpi(n, ["tests/baselines/_runner_script.py", ",".join(methods), *extra],
                  timeout=240)
    assert res.returncode == 0, res.stderr[-3000:]
    line = next(x for x in res.stdout.splitlines() if x.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


@pytest.mark.mpi
@pytest.mark.slow
def test_two_ranks_equal_centralized_gradient_descent():
    out = _mpi(2, ["ddp", "pipeline:gpipe", "pipeline:1f1b", "tensor-parallel"],
               "model.hidden=[8, 8, 8]")
    for m, (dw, dobj, sent) in out.items():
        assert dw < 1e-10 and dobj < 1e-12, (m, dw, dobj)
        assert sent > 0, m                                     # computed from the scheme


@pytest.mark.mpi
@pytest.mark.slow
def test_four_ranks_equal_centralized_gradient_descent():
    # interleaved on 4 ranks needs 8 stages: an MLP with 8 Linear layers, whose 12 steps
    # amplify rounding differences (summation order) to ~1e-10, hence 1e-9 here
    # PTD-P at (dp, tp, pp) = (1, 2, 2), interleaved: 4 stages of one column/row pair each
    out = _mpi(4, ["ddp", "pipeline:interleaved", "tensor-parallel", "ptd-p:interleaved:tp=2"],
               "model.hidden=[8, 8, 8, 8, 8, 8, 8]")
    for m, (dw, dobj, sent) in out.items():
        assert dw < 1e-9 and dobj < 1e-10, (m, dw, dobj)


@pytest.mark.parametrize("overrides,fragments", [
    (["algorithm.name='ddp'", "algorithm.schedule='diminishing'"],
     ("takes a constant step", "algorithm.schedule = 'constant'")),
    (["algorithm.name='pipeline'", "algorithm.optimizer='lbfgs'"],
     ("not 'lbfgs'", "'gd' or 'adam'")),
    (["algorithm.name='ddp'", "algorithm.optimizer='adam'", "model.regularizer='l1'"],
     ("l1",)),
    (["algorithm.name='pipeline'", "algorithm.microbatches=4"],
     ("4 micro-batches", "batch of 455 samples")),
    # one process: dp x tp x pp must be 1
    (["algorithm.name='ptd-p'", "algorithm.dp=2"],
     ("dp x tp = 2 x 1 = 2 does not divide the 1 ranks",)),
    (["algorithm.name='ptd-p'", "algorithm.pp=2"],
     ("dp x tp x pp = 1 x 1 x 2 = 2 but the launch has 1 ranks", "pp = 0 takes the rest")),
    (["algorithm.name='ptd-p'", "algorithm.tp=0"], ("tp must be >= 1",)),
])
def test_misconfigurations_give_one_line(overrides, fragments):
    error_of(lambda: _run(*overrides), *fragments, kind=ConfigError)


@pytest.mark.parametrize("name", ["ddp", "sil"])
def test_process_group_waits_run_comm_timeout(name, monkeypatch):
    import torch.distributed as dist
    seen = []
    init = dist.init_process_group

    def spy(*args, **kwargs):
        seen.append(kwargs["timeout"].total_seconds())
        return init(*args, **kwargs)

    monkeypatch.setattr(dist, "init_process_group", spy)
    _run(f"algorithm.name='{name}'", "run.comm_timeout=7.5")
    assert seen == [7.5]


def test_a_diverging_trainer_stops_with_one_line():
    """The trainers' guard: a non-finite evaluated objective (dcnn.metrics.evaluate checks
    it, identically on every rank) ends the run with a DivergenceError, which dcnn compare
    reports as diverged."""
    from dcnn.errors import DivergenceError
    error_of(lambda: _run("algorithm.name='ddp'", "algorithm.lr=1e4", "model.hidden=[]",
                          "run.iterations=400", "run.eval_every=20"),
             "objective is NaN or inf", "algorithm.alpha0", kind=DivergenceError)
