"""The tables of experiments/arch_grid.py and experiments/mnist1d_study.py say "diverged" for
a run that blew up (the README test runs both scripts only on runs that converge)."""
import importlib.util

from conftest import ROOT


def _script(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "experiments" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_arch_grid_table_counts_a_finite_blow_up_as_a_failure():
    grid = _script("arch_grid")
    base = {"arch": "cnn", "dataset": "wine", "agents": 8, "graph": "ring", "surrogate": "pl",
            "tau": 0.3, "centralized": 0.01, "objective_0": 1.0, "test": 90.0,
            "centralized_test": 100.0, "seconds": 1.0}
    ok = {**base, "status": "ok", "objective": 0.02, "ratio": 2.0}
    bad = {**base, "status": "diverged", "objective": 3e266, "ratio": 3e268,
           "error": "objective 3e+266 (start 1)"}
    text = grid.table([ok, bad], 1.5)
    assert "**diverged**: objective 3e+266 (start 1)" in text
    assert "2 runs: 1 failed, worst objective / centralized 2.000" in text


def test_mnist1d_study_table_has_a_row_for_a_diverged_method():
    study = _script("mnist1d_study")
    ok = {"model": "mlp", "partition": "iid", "method": "gt", "status": "ok", "test": 60.0,
          "centralized": 62.0, "hit": {"round": 160, "mb": 1.5, "s": 3.6}, "loop_s": 6.8}
    bad = {"model": "mlp", "partition": "iid", "method": "next-pl", "status": "diverged",
           "centralized": 62.0}
    lines = study.table([ok, bad]).splitlines()
    assert lines[2] == "| mlp | iid | gt | 60.0 (centralized 62.0) | 160 | 1.50 | 3.6 | 6.8 |"
    assert lines[3] == "| mlp | iid | next-pl | **diverged** (centralized 62.0) | - | - | - | - |"


def test_codistillation_best_rate_prefers_every_seed_reaching_then_fewest_steps():
    codist = _script("codistillation")
    runs = {0.01: [{"steps": 100, "accuracy": 60.0}, {"steps": None, "accuracy": 50.0}],
            0.003: [{"steps": 300, "accuracy": 58.0}, {"steps": 200, "accuracy": 57.0}],
            0.001: [{"steps": 400, "accuracy": 59.0}, {"steps": 500, "accuracy": 59.0}]}
    assert codist.best_rate(runs) == 0.003
    none = {lr: [{"steps": None, "accuracy": a}] for lr, a in ((0.01, 40.0), (0.1, 45.0))}
    assert codist.best_rate(none) == 0.1


def test_local_parallel_frontier_keeps_exactly_the_undominated_points():
    lp = _script("local_parallel")
    rows = [{"ticks_mean": 1.0, "flops_total": t, "flops_critical": c}
            for t, c in ((1, 9), (2, 5), (3, 5), (4, 1), (5, 2))]
    rows.append({"ticks_mean": None, "flops_total": None, "flops_critical": None})
    lp.frontier(rows)
    assert [r["on_frontier"] for r in rows] == [True, True, False, True, False, False]


def test_local_parallel_compute_counts_the_fill_and_the_workers():
    """Backprop: every tick one whole step (total on B samples, critical on one worker's b);
    greedy: tick t runs units 0..t only, the critical path takes the largest active unit."""
    from dcnn.baselines.schemes.local_units import plan_units, unit_flops
    from dcnn.problems import mlp
    lp = _script("local_parallel")
    net = mlp(n_inputs=6, hidden=[5, 4, 3], n_outputs=2)
    (one,) = plan_units(net, stages=4, local_mode="chunked", chunk=4)
    total, crit = lp.tick_flops(net, method="backprop", stages=4, chunk=2, batch=32,
                                worker_batch=8, ticks=5)
    assert (total, crit) == (5 * unit_flops(net, one, batch=32, local_mode="chunked"),
                             5 * unit_flops(net, one, batch=8, local_mode="chunked"))
    specs = plan_units(net, stages=4, local_mode="greedy")
    cost = [unit_flops(net, s, batch=8, local_mode="greedy") for s in specs]
    total, crit = lp.tick_flops(net, method="greedy", stages=4, chunk=2, batch=8,
                                worker_batch=8, ticks=3)
    assert total == 3 * cost[0] + 2 * cost[1] + cost[2]
    assert crit == cost[0] + max(cost[:2]) + max(cost[:3])


def test_codistillation_study_tables_follow_from_its_runs(tmp_path):
    """A short sweep with --into: the table between the markers is the run's, B* is the
    smallest batch within the tolerance of the fewest steps, each row's steps are the mean
    of its best rate's runs in sweep.csv, churn and accuracies are percentages."""
    import csv
    import json
    import subprocess
    import sys
    readme = tmp_path / "R.md"
    readme.write_text("top\n<!-- study codistillation -->\nSTALE\n<!-- /study codistillation -->\n"
                      "end\n")
    res = subprocess.run([sys.executable, "experiments/codistillation.py", "--batches", "16,64",
                          "--lrs", "0.03", "--seeds", "2", "--models", "2",
                          "--iterations", "40", "--target", "25", "--out", str(tmp_path / "o"),
                          "--into", str(readme)], cwd=ROOT, capture_output=True, text=True,
                         timeout=300, env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stderr[-2000:]
    out = json.loads((tmp_path / "o" / "codistillation.json").read_text())
    md = (tmp_path / "o" / "codistillation.md").read_text()
    text = readme.read_text()
    assert text.startswith("top\n") and text.endswith("end\n") and "STALE" not in text
    assert md.strip() in text and (tmp_path / "o" / "codistillation.png").stat().st_size > 0
    runs = list(csv.DictReader(open(tmp_path / "o" / "sweep.csv")))
    sweep = out["sweep"]
    done = [r for r in sweep if r["steps_mean"] is not None]
    fewest = min(r["steps_mean"] for r in done)
    assert out["b_star"] == min(r["total_batch"] for r in done
                                if r["steps_mean"] <= 1.1 * fewest)
    for r in sweep + [r for r in out["rows"] if not r["method"].startswith("ensemble")]:
        mine = [float(q["steps_to_target"]) for q in runs
                if q["method"] == r["method"].split(" ")[0]
                and int(q["batch_per_model"]) == r["batch_per_model"]
                and int(q["models"]) == r["models"] and float(q["lr"]) == r["lr"]
                and int(q["seed"]) < r["seeds"]    # seeds past them: the ensembles' members
                and q["steps_to_target"]]
        if r["steps_mean"] is not None:
            assert len(mine) == r["seeds"] and abs(sum(mine) / len(mine) - r["steps_mean"]) < 1e-9
    assert [r["method"] for r in out["rows"]] == [
        "codistillation (2 models)", "independent (2 models, alpha 0)", "ddp (batch 2 B*)",
        "ensemble (2 models)"]
    assert [r["models"] for r in out["rows"]] == [2, 2, 1, 2]
    for r in sweep + out["rows"]:
        assert 0 <= r["accuracy_min"] <= r["accuracy_mean"] <= r["accuracy_max"] <= 100
    for r in out["rows"]:
        assert 0 <= r["churn_percent"] <= 100
    assert "- n = 2: codistillation" in md


def test_local_parallel_compute_counts_the_overlap_from_its_third_tick():
    """Overlapping: unit u (not the last) also recomputes and back-propagates the forward of
    tick t-2 from tick u+2 on."""
    from dcnn.baselines.schemes.local_units import plan_units, unit_flops
    from dcnn.problems import mlp
    lp = _script("local_parallel")
    net = mlp(n_inputs=6, hidden=[5, 4], n_outputs=2)
    specs = plan_units(net, stages=3, local_mode="overlapping")

    def c(u, overlap=False):
        return unit_flops(net, specs[u], batch=4, local_mode="overlapping", overlap=overlap)

    total, crit = lp.tick_flops(net, method="overlapping", stages=3, chunk=2, batch=4,
                                worker_batch=4, ticks=4)
    ticks = [[c(0)], [c(0), c(1)], [c(0, True), c(1), c(2)], [c(0, True), c(1, True), c(2)]]
    assert c(0, True) > c(0)
    assert total == sum(map(sum, ticks)) and crit == sum(map(max, ticks))
