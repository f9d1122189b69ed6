"""The centralized reference is solved once per distinct problem: a second run of the same
problem reuses it (in memory, and from ``DCNN_CACHE`` in another process), bit for bit; any
change of data, model, loss or regulariser solves again; a model given as a Python object is
never cached; a broken cache file is ignored and rewritten."""
import json

import numpy as np
import pytest
import torch

import dcnn.runner
from dcnn import reference_cache
from dcnn.config import load_config
from dcnn.runner import run_experiment

BASE = ["run.progress=false", "run.iterations=2", "run.agents=2", "data.name='diabetes'",
        "model.hidden=[4]"]


@pytest.fixture
def solves(monkeypatch, tmp_path):
    """Counts the reference solves; an empty cache in memory and in ``tmp_path/cache``."""
    monkeypatch.setattr(reference_cache, "_MEMORY", type(reference_cache._MEMORY)())
    monkeypatch.setenv("DCNN_CACHE", str(tmp_path / "cache"))
    calls = []
    real = dcnn.runner.centralized_reference

    def counted(*args, **kw):
        calls.append(1)
        return real(*args, **kw)
    monkeypatch.setattr(dcnn.runner, "centralized_reference", counted)
    return calls


def _ref(*overrides, **kw):
    cfg = load_config(overrides=[*BASE, *overrides])
    return run_experiment(cfg, out=None, verbose=False, **kw).summary["centralized"]


def test_the_same_problem_is_solved_once_and_reused_exactly(solves, tmp_path):
    first = _ref()
    assert _ref() == first and len(solves) == 1
    # another process: only the file in DCNN_CACHE is left
    reference_cache._MEMORY.clear()
    assert _ref() == first and len(solves) == 1
    (path,) = (tmp_path / "cache" / "reference").glob("*.json")
    # the algorithm's own settings do not change the reference
    assert _ref("algorithm.surrogate='fl'", "run.iterations=3") == first
    assert len(solves) == 1
    # a broken file: solved again, and rewritten
    reference_cache._MEMORY.clear()
    path.write_text("{not json")
    assert _ref() == first and len(solves) == 2
    assert json.loads(path.read_text())["objective"] == first["objective"]


@pytest.mark.parametrize("change", ["model.lam=0.05", "data.test_fraction=0.3", "model.activation='relu'",
                                    "model.hidden=[5]", "model.regularizer='l1'",
                                    "run.seed=4", "data.name='breast_cancer'"])
def test_any_change_of_the_problem_solves_again(solves, change):
    first = _ref()
    other = _ref(change)
    assert len(solves) == 2 and other != first, change


def test_a_model_given_as_an_object_is_never_cached(solves):
    def module():
        torch.manual_seed(0)
        return torch.nn.Sequential(torch.nn.Linear(10, 3), torch.nn.Tanh(),
                                   torch.nn.Linear(3, 1)).double()
    a = _ref(model=module())
    b = _ref(model=module())
    assert a == b and len(solves) == 2


def test_the_same_arrays_as_another_task_solve_again(solves):
    """The same arrays (labels 0.0/1.0 both times), read once as regression and once as
    classification: other targets and another metric, so another reference (the task and the
    encoded targets are part of the key, the arrays alone are not enough)."""
    from dcnn.data import Dataset
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 3))
    y = (X[:, 0] > 0).astype(np.int64)
    as_task = {t: Dataset(name="xy", task=t, X_train=X[:48], X_test=X[48:],
                          y_train=y[:48].astype(float), y_test=y[48:].astype(float),
                          n_classes=0 if t == "regression" else 2,
                          classes=np.empty(0) if t == "regression" else np.array([0, 1]))
               for t in ("regression", "binary")}
    a = _ref("data.task='auto'", data=as_task["regression"])
    b = _ref("data.task='auto'", data=as_task["binary"])
    assert len(solves) == 2 and a["test_metric"] != b["test_metric"]


def test_the_cache_folder_is_dcnn_cache_else_the_users_cache(monkeypatch, tmp_path):
    from pathlib import Path

    from dcnn.cache import cache_folder
    monkeypatch.setenv("DCNN_CACHE", str(tmp_path / "c"))
    assert cache_folder() == tmp_path / "c"
    monkeypatch.setenv("DCNN_CACHE", "")
    assert cache_folder() is None                                  # switched off
    monkeypatch.delenv("DCNN_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_folder() == tmp_path / "xdg" / "dcnn"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_folder() == Path(tmp_path / "home" / ".cache" / "dcnn")


@pytest.mark.parametrize("regularizer", ["l2", "l1"])     # L-BFGS-B and FISTA
def test_the_time_budget_stops_the_solve_and_says_so(solves, regularizer, tmp_path):
    """A budget too short for the solve stops it after its first iteration: the reference is
    marked, the log warns, and a later run with more time solves it again (to the unlimited
    solve's optimum), while a run with no more time reuses the stopped one."""
    reg = f"model.regularizer='{regularizer}'"
    import logging
    lines = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: lines.append(record.getMessage())
    logging.getLogger("dcnn").addHandler(handler)        # the user's handler gets the log
    try:
        cfg = load_config(overrides=[*BASE, reg, "run.reference_budget=1e-9"])
        short = run_experiment(cfg, out=None).summary["centralized"]
    finally:
        logging.getLogger("dcnn").removeHandler(handler)
    assert short["stopped_at_budget"] and short["iterations"] == 1
    assert any("stopped at its time budget" in line for line in lines), lines
    assert _ref(reg, "run.reference_budget=1e-9") == short and len(solves) == 1   # reused
    # in this process only: a reference stopped by the clock never reaches the cache folder
    assert not list((tmp_path / "cache").glob("reference/*.json"))
    full = _ref(reg, "run.reference_budget=0")                       # no limit: solved again
    assert len(solves) == 2 and not full["stopped_at_budget"] and full["budget_s"] is None
    assert len(list((tmp_path / "cache").glob("reference/*.json"))) == 1
    assert full["iterations"] > 10 and full["objective"] < short["objective"]
    assert _ref(reg, "run.reference_budget=1e-9") == full and len(solves) == 2   # converged


def test_a_bad_budget_is_refused():
    from dcnn.errors import ConfigError
    with pytest.raises(ConfigError, match=r"run.reference_budget must be >= 0"):
        load_config(overrides=["run.reference_budget=-1"])
    from dcnn.reference import centralized_reference
    with pytest.raises(ValueError, match="budget must be a number of seconds > 0"):
        centralized_reference(None, budget=0)
