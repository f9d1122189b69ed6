"""The one loop of the baselines (dcnn.baselines.run_trainer) and auto_microbatches: the
records fall where they should, messages are settled before every evaluation, the update is
the one of centralized gradient descent, and every engine and scheme is a Trainer."""
import numpy as np
import pytest
import torch

from dcnn.baselines import (SCHEMES, Trainer, auto_microbatches, make_evaluator,
                            process_group, run_trainer)
from dcnn.baselines.engines import EngineTrainer
from dcnn.baselines.runtime import apply_update, make_optimizer, pool
from dcnn.baselines.schemes import Codistillation, LocalPipeline, SequenceParallel, SIL
from dcnn.errors import ConfigError, LaunchError
from dcnn.problems import Regularizer, make_regularizer, mlp


class _Quadratic(Trainer):
    """``min_w 1/2 |w - c|^2 + r(w)`` by the shared update; 3 bytes "sent" per step."""

    method = "quadratic"

    def __init__(self, world, *, regularizer, lr=0.5):
        self.world, self.lr, self.reg = world, lr, regularizer
        self.w = torch.zeros(3, dtype=torch.float64, requires_grad=True)
        self.c = torch.tensor([1.0, -2.0, 0.05], dtype=torch.float64)
        self.opt = make_optimizer([self.w], name="sgd", lr=lr)
        self.steps, self.settled = 0, []

    def step(self, t):
        assert t == self.steps
        self.w.grad = (self.w - self.c).detach()
        apply_update([self.w], self.opt, self.reg, self.lr)
        self.steps += 1

    def parameters(self):
        return self.w.detach().clone()

    @property
    def bytes_sent(self):
        return 3.0 * self.steps

    def settle(self):
        self.settled.append(self.steps)

    def info(self):
        return {**super().info(), "extra": 1}


def _metrics(w):
    return {"objective": float(w.sum())}


def test_run_trainer_records_settles_and_reports():
    with process_group() as world:
        tr = _Quadratic(world, regularizer=make_regularizer("none"))
        hist, info = run_trainer(tr, metrics=_metrics, iterations=7, eval_every=3)
    assert [r["iteration"] for r in hist.records] == [0, 3, 6, 7]
    assert [r["bytes_per_agent"] for r in hist.records] == [0.0, 9.0, 18.0, 21.0]
    assert tr.settled == [3, 6, 7]                   # before every evaluation after a step
    assert all(r["step_size"] == 0.5 for r in hist.records)
    assert info["iterations"] == 7 and info["extra"] == 1 and info["method"] == "quadratic"
    assert info["world_size"] == 1 and info["time_s"] == hist.last["time_s"]
    assert torch.equal(info["final_params"], tr.parameters())


def test_shared_update_is_proximal_gradient_descent():
    lr, l1, l2 = 0.5, 0.1, 0.2
    reg = Regularizer("elastic_net", l1=l1, l2=l2)
    with process_group() as world:
        tr = _Quadratic(world, regularizer=reg, lr=lr)
        run_trainer(tr, metrics=_metrics, iterations=4, eval_every=4)
    w = torch.zeros(3, dtype=torch.float64)
    for _ in range(4):
        # w <- prox_{lr l1 |.|_1}(w - lr ((w - c) + 2 l2 w))
        v = w - lr * ((w - tr.c) + 2 * l2 * w)
        w = torch.sign(v) * torch.clamp(v.abs() - lr * l1, min=0.0)
    assert torch.allclose(tr.parameters(), w, atol=1e-15, rtol=0)


def test_iterations_zero_records_the_start_only():
    with process_group() as world:
        hist, info = run_trainer(_Quadratic(world, regularizer=make_regularizer("none")),
                                 metrics=_metrics, iterations=0, eval_every=5)
    assert [r["iteration"] for r in hist.records] == [0]
    assert np.isnan(info["time_per_step_s"])


def test_every_engine_and_scheme_is_a_trainer():
    assert all(issubclass(c, Trainer)
               for c in (EngineTrainer, SIL, Codistillation, LocalPipeline, SequenceParallel))
    assert set(SCHEMES) == {"sil", "codistillation", "local-parallel", "sequence-parallel"}


def test_make_evaluator_is_exported():
    rng = np.random.default_rng(0)
    shards = [(rng.normal(size=(5, 3)), rng.normal(size=(5, 1)))]
    net = mlp(n_inputs=3, hidden=[4], n_outputs=1, dtype=torch.float64)
    m = make_evaluator(module=net, pooled=pool(shards), loss="squared", task="regression",
                       regularizer=make_regularizer("none"), test=None)
    w = torch.cat([p.detach().reshape(-1) for p in net.parameters()])
    assert m(w)["objective"] > 0


@pytest.mark.parametrize("schedule,batch,ranks,want", [
    ("gpipe", 12, 2, 6), ("gpipe", 7, 3, 7), ("1f1b", 12, 4, 6), ("1f1b", 8, 2, 8),
    ("interleaved", 6, 4, 6), ("interleaved", 10, 4, 5), ("gpipe", 1, 1, 1)])
def test_auto_microbatches(schedule, batch, ranks, want):
    assert auto_microbatches(schedule, batch=batch, ranks=ranks) == want


def test_auto_microbatches_refuses():
    with pytest.raises(LaunchError, match="set algorithm.microbatches"):
        auto_microbatches("1f1b", batch=3, ranks=4)      # 1f1b needs m >= 4 stages
    with pytest.raises(ConfigError, match="unknown"):
        auto_microbatches("zigzag", batch=8, ranks=2)
