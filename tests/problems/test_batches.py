"""Mini-batches: the draw depends on (seed, t, global agent id) only; batch views give the
unbiased estimate (M_i / |B_i|) (1/M) sum_{k in B_i} loss_k against a dense per-sample
computation and against exhaustive enumeration; PL on a batch view is PL on those rows with
the scaled weight."""
import itertools

import numpy as np
import pytest
import torch

from dcnn.errors import ConfigError, DataError
from dcnn.problems import (FlatModel, LocalProblems, batch_problems, batch_sizes,
                           check_batch_size, make_regularizer, mlp, per_sample_loss,
                           sample_batches)
from dcnn.surrogates import PL

from oracles import random_shards

SIZES = (7, 9, 6, 9)   # uneven; with b = 3 the weights M_i / |B_i| are 7/3, 3, 2, 3


def _problem(loss="squared", outputs=2, sizes=SIZES, reg="l2", lam=0.1, agent_ids=None):
    shards, task = random_shards(np.random.default_rng(0), sizes, loss=loss, O=outputs)
    model = FlatModel(mlp(n_inputs=3, hidden=(4,), n_outputs=outputs, seed=1))
    return LocalProblems(model=model, shards=shards, loss=loss, task=task,
                         n_total=sum(sizes) + 5, regularizer=make_regularizer(reg, lam=lam),
                         agent_ids=agent_ids)


def _W(p, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return p.model.w0 + 0.3 * torch.randn(p.n_agents, p.n_params, generator=gen,
                                          dtype=torch.float64)


def _dense_grad(p, a, rows, w):
    """grad of (M_a / |B|) (1/M) sum_{k in B} loss_k(w), one sample at a time."""
    M_a = int(p.counts[a])

    def cost(u):
        total = 0.0
        for k in rows:
            out = p.model.apply(u, p.X[a, k][None])
            total = total + per_sample_loss(p.loss, out, p.T[a, k][None]).sum()
        return M_a / len(rows) / p.n_total * total
    return torch.func.grad(cost)(w)


def test_draw_depends_on_seed_iteration_and_global_id_only():
    counts = torch.tensor(SIZES)
    rows = sample_batches(counts, 3, seed=4, t=7, agent_ids=[10, 11, 12, 13])
    assert rows.shape == (4, 3)
    for a, m in enumerate(SIZES):
        r = rows[a].tolist()
        assert r == sorted(set(r)) and 0 <= r[0] and r[-1] < m
    # the same agents in another group (another rank, another position): the same rows
    sub = sample_batches(counts[[3, 1]], 3, seed=4, t=7, agent_ids=[13, 11])
    assert torch.equal(sub, rows[[3, 1]])
    assert not torch.equal(rows, sample_batches(counts, 3, seed=4, t=8,
                                                agent_ids=[10, 11, 12, 13]))
    assert not torch.equal(rows, sample_batches(counts, 3, seed=5, t=7,
                                                agent_ids=[10, 11, 12, 13]))
    # a batch at least as large as the shard is the whole shard in order, padded with 0
    full = sample_batches(counts, 9, seed=4, t=7, agent_ids=[10, 11, 12, 13])
    assert full.shape == (4, 9)
    assert full[0].tolist() == list(range(7)) + [0, 0]
    assert full[1].tolist() == list(range(9))
    assert batch_sizes(counts, 8).tolist() == [7, 8, 6, 8]


def test_batch_size_validation():
    assert check_batch_size(None) is None and check_batch_size(0) is None
    assert check_batch_size(16) == 16
    for bad in (-1, 2.5, True, "16"):
        with pytest.raises(ConfigError, match="algorithm.batch_size"):
            check_batch_size(bad)


def test_full_rows_in_order_are_the_problem_itself():
    p = _problem()
    view = p.batch(sample_batches(p.counts, 100, seed=0, t=0, agent_ids=p.agent_ids),
                   batch_sizes(p.counts, 100))
    for name in ("X", "T", "mask"):
        assert torch.equal(getattr(view, name), getattr(p, name))
    assert view.scale == p.scale
    W = _W(p)
    assert torch.equal(view.gradients(W), p.gradients(W))
    assert torch.equal(view.jacobians(W), p.jacobians(W))


@pytest.mark.parametrize("loss,outputs", [("squared", 2), ("cross_entropy", 1),
                                          ("cross_entropy", 3)])
def test_batch_gradients_equal_dense_unbiased_estimate(loss, outputs):
    p = _problem(loss, outputs, agent_ids=[3, 4, 5, 6])
    W = _W(p)
    costs = batch_problems(p, 2, batch_size=3, seed=1)
    assert len(costs.parts) == 3   # weights 7/3, 3 (two agents), 2
    G = costs.gradients(W)
    rows = sample_batches(p.counts, 3, seed=1, t=2, agent_ids=p.agent_ids)
    for a in range(p.n_agents):
        torch.testing.assert_close(G[a], _dense_grad(p, a, rows[a].tolist(), W[a]),
                                   atol=1e-13, rtol=1e-12)


@pytest.mark.parametrize("loss,outputs", [("squared", 2), ("cross_entropy", 3)])
def test_batch_gradient_is_unbiased_over_all_batches(loss, outputs):
    """The mean over every batch of size 2 of a 6-row shard is the full-shard gradient."""
    p = _problem(loss, outputs)
    W = _W(p)
    a, k = 2, 2
    subsets = list(itertools.combinations(range(int(p.counts[a])), k))
    mean = sum(p.batch(torch.tensor([s]), torch.tensor([k]), agents=[a]).gradients(W[[a]])
               for s in subsets) / len(subsets)
    torch.testing.assert_close(mean[0], p.gradients(W)[a], atol=1e-14, rtol=1e-12)


def test_batch_view_refuses_mixed_weights_and_bad_rows():
    p = _problem()
    rows = sample_batches(p.counts, 3, seed=0, t=0, agent_ids=p.agent_ids)
    with pytest.raises(DataError, match="equal M_i / |B_i|"):
        p.batch(rows, batch_sizes(p.counts, 3))
    with pytest.raises(DataError, match="own rows"):
        p.batch(torch.tensor([[0, 7]]), torch.tensor([2]), agents=[2])


def _reference(p, a, rows):
    """The full-shard problem of agent ``a`` built from just ``rows``, weighted like the
    batch: ``scale = (M_a / |B|) / M``."""
    model, k = p.model, len(rows)
    ref = LocalProblems(model=model, shards=[(p.X[a, rows].numpy(), p.T[a, rows].numpy())],
                        loss=p.loss, task=p.task, n_total=p.n_total, regularizer=p.regularizer,
                        agent_ids=[100 + a])
    ref.scale = p.scale * (int(p.counts[a]) / k)
    return ref


@pytest.mark.parametrize("loss,outputs,reg,solver", [
    ("squared", 2, "l2", "cholesky"), ("squared", 2, "l2", "woodbury"),
    ("squared", 2, "l2", "cg"), ("cross_entropy", 3, "l2", "auto"),
    ("squared", 2, "l1", "auto")])
def test_pl_on_batch_view_is_pl_on_those_rows(loss, outputs, reg, solver):
    p = _problem(loss, outputs, reg=reg, lam=0.05)
    V = _W(p)
    Pi = 0.1 * torch.randn(V.shape, generator=torch.Generator().manual_seed(3),
                           dtype=V.dtype)
    costs = batch_problems(p, 5, batch_size=3, seed=2)
    G = costs.gradients(V)
    got = costs.solve(PL(tau=0.5, solver=solver, inner_tol=1e-13, inner_iters=2000), V, G,
                      Pi, alpha=1.0)
    rows = sample_batches(p.counts, 3, seed=2, t=5, agent_ids=p.agent_ids)
    for a in range(p.n_agents):
        ref = _reference(p, a, rows[a].tolist())
        Ga = ref.gradients(V[[a]])
        torch.testing.assert_close(G[[a]], Ga, atol=1e-14, rtol=1e-12)
        want = PL(tau=0.5, solver=solver, inner_tol=1e-13, inner_iters=2000).solve(
            ref, V[[a]], Ga, Pi[[a]], alpha=1.0)
        torch.testing.assert_close(got[[a]], want, atol=1e-9, rtol=0)
        if loss == "squared" and reg == "l2":
            # dense oracle: (2 s c J_B^T J_B + (tau + 2 lam) I) d = -G - pi - 2 lam v
            J = ref.jacobians(V[[a]])[0].numpy()
            s_c, v = ref.scale, V[a].numpy()
            H = 2 * s_c * J.T @ J + (0.5 + 2 * 0.05) * np.eye(len(v))
            d = np.linalg.solve(H, -G[a].numpy() - Pi[a].numpy() - 2 * 0.05 * v)
            np.testing.assert_allclose(got[a].numpy(), v + d, atol=1e-9, rtol=0)
