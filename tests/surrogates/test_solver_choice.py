"""PL's solver = "auto" by the cost model: picks on clear-cut shapes, the memory budget, the
resolved path equals the forced one exactly, every path gives the same step, one answer over
ranks (global shapes), the forced-Cholesky warning, the summary's "solver", and the
``bench solver --quick`` rows. (Timings are the benchmark's business, not asserted here.)"""
import json
import warnings

import pytest
import torch

import dcnn
from dcnn.bench import QUICK_SOLVER_CASES, _print, bench_solver
from dcnn.comm import LocalNetwork
from dcnn.config import load_config
from dcnn.surrogates import PL, choose_solver, resolve_solver
from dcnn.surrogates.costs import problem_shapes, step_costs

from oracles import random_point as _point, tiny_problem as _tiny


@pytest.mark.parametrize("shape,expected", [
    # a few hundred parameters: forming J is cheap, the direct solve in the smaller dimension
    (dict(A=2, K=50, P=100, O=1, loss="squared"), "woodbury"),
    (dict(A=2, K=1000, P=100, O=1, loss="squared"), "cholesky"),
    (dict(A=2, K=20, P=134, O=10, loss="cross_entropy"), "woodbury"),
    # P ~ 1e4 and more: a P x P (or K x K) factorisation costs seconds, CG milliseconds
    (dict(A=2, K=1000, P=10_000, O=1, loss="squared"), "cg"),
    (dict(A=2, K=10_000, P=1_000, O=1, loss="squared"), "cg"),
    (dict(A=2, K=1_100, P=11_000, O=10, loss="cross_entropy"), "cg"),
    # 10 classes: J has 10 rows per sample, a jvp/vjp pair still one pass over the samples
    (dict(A=2, K=1250, P=1250, O=10, loss="cross_entropy"), "cg"),
    # l1: FISTA on a formed J (named like pl_solve's "auto") or on products
    (dict(A=2, K=50, P=100, O=1, loss="squared", smooth=False), "woodbury"),
    (dict(A=2, K=1_100, P=11_000, O=10, loss="cross_entropy", smooth=False), "cg"),
])
def test_clear_cut_shapes(shape, expected):
    assert choose_solver(**shape) == expected
    assert choose_solver(**shape) == expected            # pure: the same every call


def test_docstring_examples_run():
    import doctest

    import dcnn.surrogates.costs as costs
    result = doctest.testmod(costs)
    assert result.attempted > 0 and result.failed == 0, result


def test_direct_solves_split_at_k_equal_p_and_the_budget_forces_cg():
    """Between the two direct solves the model picks Woodbury exactly when K < P (the old
    rule, so small problems keep their trajectories); past the memory budget only CG is
    left."""
    for K, P in [(9, 10), (10, 10), (11, 10), (99, 100), (100, 100)]:
        costs = step_costs(A=1, K=K, P=P, O=1, loss="squared")
        assert (costs["woodbury"] < costs["cholesky"]) == (K < P)
    small = dict(A=2, K=200, P=50, O=1, loss="squared")
    assert choose_solver(**small) == "cholesky"
    assert choose_solver(**small, budget=2 * 200 * 50 * 8 - 1) == "cg"
    assert choose_solver(**small, budget=2 * 50 * 50 * 8 - 1) == "cg"   # the P x P matrix
    # an observed iteration count moves the balance: many CG iterations favour forming J
    mid = dict(A=2, K=300, P=400, O=1, loss="squared")
    assert choose_solver(**mid, cg_iters=5) == "cg"
    assert choose_solver(**mid, cg_iters=500) == "woodbury"


@pytest.mark.parametrize("loss,O,reg", [("squared", 2, "l2"), ("cross_entropy", 3, "l2"),
                                        ("cross_entropy", 1, "l1")])
def test_auto_is_the_resolved_path_exactly_and_every_path_agrees(loss, O, reg):
    prob = _tiny(loss, O, reg, hidden=(5,))
    V, G, Pi = _point(prob, seed=1)
    auto = PL(tau=0.7, inner_tol=1e-13)
    name = auto.resolved_solver(prob)
    assert name == choose_solver(**problem_shapes(prob)) and name != "cg"   # tiny: formed J
    W = auto.solve(prob, V, G, Pi, alpha=1.0)
    assert torch.equal(W, PL(tau=0.7, solver=name, inner_tol=1e-13).solve(prob, V, G, Pi,
                                                                          alpha=1.0))
    for solver in ("cholesky", "woodbury", "cg"):
        pl = PL(tau=0.7, solver=solver, inner_tol=1e-13)
        assert pl.resolved_solver(prob) == solver and pl.matrix_free(prob) == (solver == "cg")
        torch.testing.assert_close(pl.solve(prob, V, G, Pi, alpha=1.0), W, atol=1e-8, rtol=0,
                                   msg=solver)


def test_resolve_solver_uses_global_shapes():
    """The runner's resolution: every agent and the longest shard of any rank, so a group
    (what one rank holds) gets the answer of the whole problem; a named solver passes."""
    prob = _tiny("squared", 2, "l2", sizes=(6, 9, 7))
    net = LocalNetwork(prob.n_agents)
    assert resolve_solver("auto", problem=prob, network=net) == PL().resolved_solver(prob)
    assert resolve_solver("cg", problem=prob, network=net) == "cg"
    shapes = problem_shapes(prob, batch_size=4)
    assert shapes["K"] == 4 * 2 and shapes["A"] == 3


def test_forced_cholesky_at_large_p_warns_with_the_cost():
    prob = _tiny("squared", 1, "l2", sizes=(200, 200), hidden=(100, 80), d=20)
    assert prob.n_params > 10_000
    V = prob.model.w0.expand(2, -1).clone()
    with pytest.warns(UserWarning, match=r"^solver = 'cholesky' is predicted to take ~\d.* s "
                                         r"per local step \(P = 10261.*use solver = 'auto' "
                                         r"or 'cg'$"):
        PL(solver="cholesky").init_memory(prob, V)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        PL().init_memory(prob, V)                     # auto: cg, no warning
        PL(solver="cg").init_memory(prob, V)
        PL(solver="cholesky").init_memory(_tiny(), _tiny().model.w0.expand(3, -1))


def test_summary_names_the_solver():
    base = ["run.iterations=2", "run.eval_every=2", "run.progress=false",
            "run.reference=false"]

    def run(*extra):
        return dcnn.run_experiment(load_config(None, base + list(extra)), out=None,
                                   verbose=False).summary["solver"]
    assert run() in ("cholesky", "woodbury", "cg")
    assert run("algorithm.solver='cg'") == "cg"
    assert run("algorithm.surrogate='fl'") is None


@pytest.mark.mpi
def test_uneven_groups_over_ranks_take_the_one_process_path(tmp_path, mpi):
    """3 agents on 2 ranks (groups of 2 and 1, shards of unequal length): the path is the
    one a single process takes, by the global shapes."""
    args = ["-m", "dcnn", "run", "--set", "run.agents=3", "--set", "data.name='digits'",
            "--set", "run.iterations=2", "--set", "run.reference=false", "--quiet"]
    res = mpi(2, [*args, "--out", str(tmp_path / "mpi")], timeout=120)
    assert res.returncode == 0, res.stderr[-3000:]
    cfg = load_config(None, ["run.agents=3", "data.name='digits'", "run.iterations=2",
                             "run.reference=false", "run.progress=false"])
    one = dcnn.run_experiment(cfg, out=None, verbose=False).summary
    summary = json.loads((tmp_path / "mpi" / "summary.json").read_text())
    assert summary["ranks"] == 2 and summary["solver"] == one["solver"] is not None


def test_bench_solver_quick_gives_rows(tmp_path, capsys):
    rows = bench_solver(QUICK_SOLVER_CASES, reps=1)
    assert len(rows) == len(QUICK_SOLVER_CASES)
    for row in rows:
        assert row["auto"] in ("cholesky", "woodbury", "cg")
        assert all(isinstance(row[f"{s}_ms"], float) for s in ("cholesky", "woodbury", "cg"))
        assert row["auto/best"] >= 1.0 and row["max_abs_diff"] < 1e-5
    _print(rows, str(tmp_path / "solver.json"))
    assert json.loads((tmp_path / "solver.json").read_text()) == rows
    assert capsys.readouterr().out.startswith("| case | loss | P |")


def test_closed_form_jacobians_move_the_choice_where_the_benchmark_did():
    """An MLP's Jacobians and jvp/vjp in closed form cost a tenth of vmap's fixed cost: on the
    two cross-entropy shapes where ``dcnn bench solver`` measured Newton-CG 3-4x faster than
    the formed path "auto" took with vmap's constants (P = 134, K = 1340: 4.8 vs 14.6 ms;
    P = 1250, K = 120: 5.6 vs 20.5 ms), the closed-form constants pick CG; a model without the
    closed form keeps the formed path."""
    for shape in (dict(A=2, K=1340, P=134, O=10, loss="cross_entropy"),
                  dict(A=2, K=120, P=1250, O=10, loss="cross_entropy")):
        assert choose_solver(**shape) in ("cholesky", "woodbury")
        assert choose_solver(**shape, closed_form=True) == "cg"
    # problem_shapes reads it off the problem: an MLP has the closed form, a CNN does not
    assert problem_shapes(_tiny())["closed_form"] is True
    from dcnn.problems import FlatModel, LocalProblems
    conv = torch.nn.Sequential(torch.nn.Unflatten(1, (1, 3)), torch.nn.Conv1d(1, 2, 2),
                               torch.nn.Flatten(), torch.nn.Linear(4, 1)).double()
    tiny = _tiny()
    cnn = LocalProblems(model=FlatModel(conv), shards=[(tiny.X[0], tiny.T[0][:, :1])],
                        loss="squared", task="regression", n_total=tiny.X.shape[1],
                        regularizer=tiny.regularizer)
    assert problem_shapes(cnn)["closed_form"] is False


def test_a_direct_solve_within_the_margin_is_preferred_to_cg():
    """Within DIRECT_MARGIN (10 %) of CG's prediction the exact direct solve is taken (the
    parallel experiment's shape: 7.05 ms Woodbury vs 6.99 ms CG predicted, 7.2 vs 7.3 ms
    measured); past it, CG."""
    from dcnn.surrogates.costs import DIRECT_MARGIN
    shape = dict(A=8, K=57, P=1057, O=1, loss="squared", closed_form=True)
    costs = step_costs(**shape)
    assert costs["cg"] < costs["woodbury"] <= DIRECT_MARGIN * costs["cg"]
    assert choose_solver(**shape) == "woodbury"
    big = dict(shape, P=20_000)
    costs = step_costs(**big)
    assert costs["woodbury"] > DIRECT_MARGIN * costs["cg"] and choose_solver(**big) == "cg"
