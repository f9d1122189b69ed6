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
