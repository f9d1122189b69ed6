"""Block-Jacobi surrogates: partitions, one block = PL, each block solves its own subproblem,
threads = 1 equals threads = 2, Blocked(FL) = FL, NEXT oracles (ridge, logistic, softmax)
with layer / neuron / random blocks and with a random subset of blocks per iteration, and
validation."""
import numpy as np
import pytest
import scipy.optimize
import torch

from dcnn.algorithms import Constant, Next, run_loop
from dcnn.comm import LocalNetwork
from dcnn.data import encode_targets, load_dataset, partition
from dcnn.errors import ConfigError
from dcnn.problems import FlatModel, LocalProblems, make_regularizer, mlp
from dcnn.surrogates import FL, PL, Blocked, make_blocked, make_blocks
from dcnn.topology import make_topology

from oracles import random_point as _point, tiny_problem as _tiny


CASES = [("squared", 2, "l2"), ("cross_entropy", 3, "l2"), ("squared", 2, "l1")]


@pytest.mark.parametrize("loss,O,reg", CASES)
def test_one_block_equals_unblocked_pl(loss, O, reg):
    prob = _tiny(loss, O, reg)
    V, G, Pi = _point(prob)
    pl, one = PL(tau=0.5, inner_tol=1e-10), Blocked(PL(tau=0.5, inner_tol=1e-10),
                                                    [torch.arange(prob.n_params)], threads=2)
    m, mb = pl.init_memory(prob, V), one.init_memory(prob, V)
    for _ in range(2):   # the second call starts warm
        W, m = pl.update(prob, V, G, Pi, alpha=0.5, memory=m)
        Wb, mb = one.update(prob, V, G, Pi, alpha=0.5, memory=mb)
        assert torch.equal(W, Wb)
        assert torch.equal(m.warm, mb.warm) and torch.equal(m.has_warm, mb.has_warm)
        assert m.calls == mb.calls
        V = V + 0.3 * (W - V)
        G = prob.gradients(V)


@pytest.mark.parametrize("loss,O,reg", [("squared", 2, "l2"), ("cross_entropy", 3, "l2")])
def test_one_block_matrix_free_matches_unblocked_pl(loss, O, reg):
    """Matrix-free, the blocks share one autograd linearisation instead of jvp/vjp: the same
    step up to rounding and the inner tolerance."""
    prob = _tiny(loss, O, reg, hidden=(5,))
    V, G, Pi = _point(prob, seed=1)
    pl = PL(tau=0.7, solver="cg", inner_tol=1e-13)
    one = Blocked(pl, [torch.arange(prob.n_params)], threads=1)
    torch.testing.assert_close(one.solve(prob, V, G, Pi, alpha=1.0),
                               pl.solve(prob, V, G, Pi, alpha=1.0), atol=1e-10, rtol=0)


def _is_partition(blocks, P):
    every = torch.cat(blocks)
    return len(every) == P and torch.equal(every.sort().values, torch.arange(P))


def test_make_blocks_partitions_every_kind():
    model = FlatModel(mlp(n_inputs=3, hidden=(4, 5), n_outputs=2, seed=0))
    P = model.n_params
    layer = make_blocks(model, "layer")
    assert _is_partition(layer, P)
    assert [len(b) for b in layer] == list(model.sizes)
    neuron = make_blocks(model, "neuron")
    assert _is_partition(neuron, P) and len(neuron) == 4 + 5 + 2
    # neuron j of the first layer: its weight row (3 inputs) and its bias entry
    assert torch.equal(neuron[1], torch.tensor([3, 4, 5, 12 + 1]))
    assert all(torch.equal(b, b.sort().values) for b in neuron)
    rnd = make_blocks(model, "random", n_blocks=7, seed=3)
    assert _is_partition(rnd, P) and len(rnd) == 7
    assert max(len(b) for b in rnd) - min(len(b) for b in rnd) <= 1
    assert all(torch.equal(a, b) for a, b in zip(rnd, make_blocks(model, "random",
                                                                 n_blocks=7, seed=3)))
    assert not all(torch.equal(a, b) for a, b in zip(rnd, make_blocks(model, "random",
                                                                     n_blocks=7, seed=4)))


def test_neuron_blocks_keep_other_parameter_tensors_whole():
    module = torch.nn.Sequential(torch.nn.Linear(3, 2, bias=False), torch.nn.LayerNorm(2),
                                 torch.nn.Linear(2, 1))
    model = FlatModel(module)
    blocks = make_blocks(model, "neuron")
    assert _is_partition(blocks, model.n_params)
    # 2 bias-free rows, LayerNorm weight and bias whole, 1 output neuron with its bias
    assert [len(b) for b in blocks] == [3, 3, 2, 2, 3]


def test_each_block_solves_its_own_subproblem():
    """Squared + l2: block b's step is the dense solve of the PL system restricted to the
    block's coordinates, the others held at v (written independently in numpy)."""
    prob = _tiny("squared", 2, "l2", hidden=(5,))
    V, G, Pi = _point(prob)
    blocks = make_blocks(prob.model, "random", n_blocks=3, seed=1)
    W = Blocked(PL(tau=0.5), blocks, threads=2).solve(prob, V, G, Pi)
    J = prob.jacobians(V).numpy()
    s, lam, c = prob.scale, 0.1, 0.5 + 0.2
    q = (-G - Pi - 2 * lam * V).numpy()
    for a in range(prob.n_agents):
        for b in blocks:
            Jb = J[a][:, b.numpy()]
            d = np.linalg.solve(2 * s * Jb.T @ Jb + c * np.eye(len(b)), q[a, b.numpy()])
            np.testing.assert_allclose((W - V)[a, b].numpy(), d, atol=1e-12, rtol=0)


@pytest.mark.parametrize("solver", ["auto", "cg"])
@pytest.mark.parametrize("loss,O,reg", CASES)
def test_threads_1_and_2_give_identical_results(loss, O, reg, solver):
    prob = _tiny(loss, O, reg, hidden=(5,))
    V, G, Pi = _point(prob)
    n = torch.get_num_threads()
    for kind, nb in [("layer", None), ("neuron", None), ("random", 5)]:
        blocks = make_blocks(prob.model, kind, n_blocks=nb)
        out = []
        for threads in (1, 2):
            s = Blocked(PL(tau=0.5, solver=solver, inner_tol=1e-10), blocks, threads=threads)
            out.append(s.solve(prob, V, G, Pi, alpha=1.0))
            assert torch.get_num_threads() == n        # the intra-op threads are restored
        torch.testing.assert_close(out[0], out[1], atol=1e-12, rtol=0, msg=kind)


def test_blocked_fl_is_fl_and_a_fraction_keeps_the_other_blocks_at_v():
    prob = _tiny("squared", 2, "l1")
    V, G, Pi = _point(prob)
    fl = FL(tau=3.0)
    blocks = make_blocks(prob.model, "neuron")
    assert torch.equal(Blocked(fl, blocks, threads=2).solve(prob, V, G, Pi),
                       fl.solve(prob, V, G, Pi))
    for base in (fl, PL(tau=0.5)):
        part = Blocked(base, blocks, threads=2, fraction=0.5, seed=7)
        W = part.solve(prob, V, G, Pi)
        chosen = part.chosen(0)
        assert len(blocks) == 6 and len(chosen) == 3
        on = torch.cat([blocks[k] for k in chosen])
        off = torch.cat([b for k, b in enumerate(blocks) if k not in chosen])
        assert torch.equal(W[:, off], V[:, off])
        d = W - V
        assert (d[:, on] != 0).any()
        if isinstance(base, FL):
            torch.testing.assert_close(W[:, on], fl.solve(prob, V, G, Pi)[:, on], atol=0,
                                       rtol=0)


def test_block_choice_is_seeded_by_seed_and_call_count():
    prob = _tiny()
    V, G, Pi = _point(prob)
    blocks = make_blocks(prob.model, "random", n_blocks=6, seed=0)
    a = Blocked(PL(), blocks, threads=1, fraction=0.4, seed=5)
    b = Blocked(PL(), blocks, threads=2, fraction=0.4, seed=5)
    picks = [a.chosen(t) for t in range(20)]
    assert picks == [b.chosen(t) for t in range(20)]
    assert len({tuple(p) for p in picks}) > 1 and all(len(p) == 3 for p in picks)
    m0 = a.init_memory(prob, V)
    W0, m1 = a.update(prob, V, G, Pi, alpha=1.0, memory=m0)
    W1, m2 = a.update(prob, V, G, Pi, alpha=1.0, memory=m1)
    assert (m0.calls, m1.calls, m2.calls) == (0, 1, 2)
    off = [b for k, b in enumerate(blocks) if k not in a.chosen(0)]
    assert all(torch.equal(W0[:, b], V[:, b]) for b in off)          # call 0's blocks only
    assert torch.equal(a.solve(prob, V, G, Pi), W0)       # a fresh memory is call 0 again
    # the count, not the surrogate, picks the blocks: from m1 the step is call 1's again
    again, _ = a.update(prob, V, G, Pi, alpha=1.0, memory=m1)
    assert torch.equal(again, W1) and not torch.equal(W1, W0)


# ---- NEXT oracles ---------------------------------------------------------------------------

@pytest.fixture
def one_intra_op_thread():
    """The oracle runs are tiny; one intra-op thread keeps them fast on a shared machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _dataset_problem(name, loss, lam, n_agents=6):
    ds = load_dataset(name, seed=0)
    T = np.asarray(encode_targets(ds.y_train, task=ds.task, n_classes=ds.n_classes),
                   dtype=float).reshape(ds.n_train, -1)
    parts = partition(ds.y_train, n_agents, kind="iid", seed=0, task=ds.task)
    model = FlatModel(mlp(n_inputs=ds.n_features, hidden=(), n_outputs=T.shape[1], seed=0))
    prob = LocalProblems(model=model, shards=[(ds.X_train[p], T[p]) for p in parts],
                         loss=loss, task=ds.task, n_total=len(T),
                         regularizer=make_regularizer("l2", lam=lam))
    return prob, np.hstack([ds.X_train, np.ones((ds.n_train, 1))]), T


def _ridge_optimum(Xa, T, lam):
    """Closed form of (1/M)||T - Xa Theta||^2 + lam ||Theta||^2 (one column per output)."""
    M = len(T)
    theta = np.linalg.solve(Xa.T @ Xa / M + lam * np.eye(Xa.shape[1]), Xa.T @ T / M)
    return np.sum((T - Xa @ theta) ** 2) / M + lam * np.sum(theta ** 2)


def _cross_entropy_optimum(Xa, T, lam):
    """Logistic (one output) or softmax regression + lam ||Theta||^2 by scipy L-BFGS-B."""
    M, O = T.shape

    def fun(th):
        Z = Xa @ th.reshape(-1, O)
        if O == 1:
            f, E = np.sum(np.logaddexp(0, Z) - T * Z), 1 / (1 + np.exp(-Z)) - T
        else:
            lse = np.logaddexp.reduce(Z, axis=1, keepdims=True)
            f, E = -np.sum(T * (Z - lse)), np.exp(Z - lse) - T
        return f / M + lam * th @ th, (Xa.T @ E).reshape(-1) / M + 2 * lam * th
    res = scipy.optimize.minimize(fun, np.zeros(Xa.shape[1] * O), jac=True,
                                  method="L-BFGS-B",
                                  options={"gtol": 1e-12, "ftol": 0.0, "maxiter": 10000})
    return res.fun


def _gap(case, kind, n_blocks, *, alpha, iters, fraction=1.0, threads=2):
    name, loss, lam, tau = {"ridge": ("diabetes", "squared", 0.1, 1.0),
                            "ridge3": ("iris", "squared", 0.1, 1.0),
                            "logistic": ("breast_cancer", "cross_entropy", 1e-2, 0.1),
                            "softmax": ("iris", "cross_entropy", 1e-2, 0.1)}[case]
    prob, Xa, T = _dataset_problem(name, loss, lam)
    opt = _ridge_optimum(Xa, T, lam) if loss == "squared" else \
        _cross_entropy_optimum(Xa, T, lam)
    blocks = make_blocks(prob.model, kind, n_blocks=n_blocks, seed=0)
    surrogate = Blocked(PL(tau=tau), blocks, threads=threads, fraction=fraction, seed=0)
    n = prob.n_agents
    topo = make_topology(graph="erdos_renyi", n=n, dynamic="link_failure", p_fail=0.3, seed=1)
    _, hist = run_loop(Next(surrogate=surrogate, schedule=Constant(alpha)), problem=prob,
                       network=LocalNetwork(n), topology=topo,
                       X0=prob.model.w0.expand(n, -1).clone(), iterations=iters,
                       eval_every=iters)
    assert hist.last["consensus_error"] < 1e-12
    return (hist.last["objective"] - opt) / abs(opt), len(blocks)


# Jacobi over coupled blocks overshoots by up to the number of blocks C, so the constant
# step is ~1/C there (random blocks); layer blocks of a linear model on standardised data and
# neuron blocks of a squared loss are uncoupled, and cross-entropy's curvature is mild.
@pytest.mark.parametrize("case,kind,n_blocks,C,alpha,iters", [
    ("ridge", "layer", None, 2, 0.5, 300),
    ("ridge", "random", 4, 4, 0.25, 300),
    ("ridge3", "neuron", None, 3, 0.5, 300),
    ("logistic", "layer", None, 2, 0.5, 200),
    ("logistic", "random", 4, 4, 0.5, 200),
    ("softmax", "neuron", None, 3, 0.5, 300),
])
def test_next_with_blocks_reaches_the_convex_optimum(one_intra_op_thread, case, kind,
                                                     n_blocks, C, alpha, iters):
    gap, n = _gap(case, kind, n_blocks, alpha=alpha, iters=iters)
    assert n == C
    assert -1e-12 <= gap <= 1e-6, gap


def test_next_updating_half_the_blocks_per_iteration_reaches_the_ridge_optimum(
        one_intra_op_thread):
    gap, _ = _gap("ridge", "random", 4, alpha=0.5, iters=300, fraction=0.5)
    assert -1e-12 <= gap <= 1e-6, gap


# ---- validation -----------------------------------------------------------------------------

def test_bad_options_give_one_line_config_errors():
    model = FlatModel(mlp(n_inputs=3, hidden=(4,), n_outputs=1, seed=0))
    P = model.n_params
    bad = [
        (dict(threads=0), "^threads must be an integer >= 1, got 0$"),
        (dict(threads=2.0), "^threads.*2.0"),
        (dict(threads=2, block_fraction=0.0), r"^block_fraction must lie in \(0, 1\]"),
        (dict(block_fraction=1.5), "block_fraction.*1.5"),
        (dict(threads=2, blocks="rows"), "^blocks 'rows' is unknown; choose one of: "
                                          "layer, neuron, random$"),
        (dict(threads=2, blocks="layer", n_blocks=3), "n_blocks is only used with.*'random'"),
        (dict(threads=2, blocks="random", n_blocks=0), rf"n_blocks must be an integer in "
                                                        rf"\[1, {P}\].*got 0"),
        (dict(threads=2, blocks="random", n_blocks=P + 1), f"got {P + 1}"),
    ]
    for kwargs, match in bad:
        with pytest.raises(ConfigError, match=match) as info:
            make_blocked(PL(), model=model, **kwargs)
        assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="n_blocks is needed"):
        make_blocks(model, "random")
    with pytest.raises(ConfigError, match="PL or FL"):
        Blocked("pl", make_blocks(model), threads=1)
    with pytest.raises(ConfigError, match="block 1 must be a non-empty"):
        Blocked(PL(), [torch.arange(3), torch.tensor([], dtype=torch.long)], threads=1)
    prob = _tiny(O=1, hidden=(4,))
    halves = Blocked(PL(), [torch.arange(5), torch.arange(4, P + 1)], threads=1)
    with pytest.raises(ConfigError, match="partition.*0 missing, 1 repeated, 1 out of range"):
        halves.init_memory(prob, prob.model.w0.expand(prob.n_agents, -1))
    with pytest.raises(ConfigError, match="^fraction must lie in .*got 0$"):
        Blocked(PL(), make_blocks(model), threads=1, fraction=0)


def test_make_blocked_defaults_keep_the_base_and_random_uses_threads_blocks():
    model = FlatModel(mlp(n_inputs=3, hidden=(4,), n_outputs=1, seed=0))
    pl = PL(tau=2.0)
    assert make_blocked(pl, model=model) is pl
    s = make_blocked(pl, model=model, threads=3, blocks="random", seed=1)
    assert isinstance(s, Blocked) and len(s.blocks) == 3 and s.threads == 3
    assert (s.name, s.tau) == ("pl", 2.0)
    s = make_blocked(pl, model=model, blocks="neuron")      # sequential block-Jacobi
    assert isinstance(s, Blocked) and len(s.blocks) == 5 and s.threads == 1
    assert "5 blocks" in repr(s)


def test_bench_threads_runs_and_checks_both_paths_agree():
    from dcnn.bench import bench_threads
    rows = bench_threads([("tiny", (4,), 20, "squared", "auto"),
                          ("tiny CE free", (4,), 20, "cross_entropy", "cg")], reps=1)
    assert [r["path"] for r in rows] == ["formed J", "matrix-free"]
    assert all(r["max_abs_diff_1_vs_2"] <= 1e-12 and r["blk_2thr_ms"] > 0 for r in rows)
