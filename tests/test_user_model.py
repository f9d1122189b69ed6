"""Your own model and data everywhere: a two-branch nn.Module from a file and a CSV through
the CLI, run_experiment, run_compare and dcnn.Experiment, in one process and under
``mpiexec -n 2``; the Python arrays give the CSV's numbers exactly."""
import json
import sys

import numpy as np
import pytest
import torch

import dcnn
from dcnn.config import load_config
from dcnn.errors import ConfigError, DataError
from dcnn.problems.user_model import build_module

from conftest import ROOT, error_of, run_mpi
from test_cli import dcnn as dcnn_cli

sys.path.insert(0, str(ROOT / "tests"))
from _user_model import TwoBranch, n_params, two_branch  # noqa: E402

MODEL = f"{ROOT / 'tests' / '_user_model.py'}:TwoBranch"
SMALL = ["run.agents=4", "run.iterations=10", "run.eval_every=5", "run.progress=false",
         "run.reference=false"]


@pytest.fixture(scope="module")
def csv_file(tmp_path_factory):
    """Two classes in 3 features, 80 rows, written with every digit (CSV = arrays exactly)."""
    rng = np.random.default_rng(3)
    X = rng.normal(size=(80, 3))
    y = (X[:, 0] - 0.5 * X[:, 2] > 0).astype(int)
    path = tmp_path_factory.mktemp("data") / "two.csv"
    rows = ["a,b,c,label"] + [",".join(repr(float(v)) for v in x) + f",{t}"
                              for x, t in zip(X, y)]
    path.write_text("\n".join(rows) + "\n")
    return path, X, y


def _cli_summary(tmp_path, csv, *extra, n=None):
    out = tmp_path / "run"
    sets = [f"data.name='{csv}'", f"model.name='{MODEL}'", *SMALL, *extra]
    args = ["run", *[x for s in sets for x in ("--set", s)], "--out", str(out), "--quiet"]
    if n is None:
        res, _ = dcnn_cli(*args, timeout=240)
    else:
        res = run_mpi(n, ["-m", "dcnn", *args], timeout=240)
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads((out / "summary.json").read_text())


def test_cli_runs_a_model_from_a_file_on_a_csv(tmp_path, csv_file):
    csv, X, y = csv_file
    s = _cli_summary(tmp_path, csv)
    assert s["parameters"] == n_params(3, 1)          # the two branches, binary task
    assert s["dataset"] == str(csv) and s["task"] == "binary"
    # the Python API with the same arrays and the class itself gives the same numbers
    res = dcnn.run_experiment(load_config(overrides=SMALL), out=None, verbose=False,
                              model=TwoBranch, data=(X, y))
    assert res.summary["parameters"] == s["parameters"]
    assert res.summary["final"]["objective"] == pytest.approx(s["final"]["objective"],
                                                              rel=1e-12)
    # a factory function builds the same seeded weights as the class
    fac = dcnn.run_experiment(load_config(overrides=SMALL), out=None, verbose=False,
                              model=two_branch, data=(X, y))
    assert fac.state.X.equal(res.state.X)


@pytest.mark.mpi
@pytest.mark.slow
def test_cli_under_mpiexec_2_agrees_with_one_process(tmp_path, csv_file):
    csv, _, _ = csv_file
    one = _cli_summary(tmp_path / "one", csv)
    two = _cli_summary(tmp_path / "two", csv, n=2)
    assert two["ranks"] == 2
    assert two["final"]["objective"] == pytest.approx(one["final"]["objective"], rel=1e-10)


@pytest.mark.mpi
@pytest.mark.slow
def test_python_api_under_mpiexec_2_agrees_with_one_process(csv_file):
    csv, X, y = csv_file
    res = run_mpi(2, ["tests/_user_model_script.py", str(csv)], timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    line = next(x for x in res.stdout.splitlines() if x.startswith("RESULT "))
    got = json.loads(line[len("RESULT "):])
    cfg = load_config(overrides=SMALL)
    one = dcnn.run_experiment(cfg, out=None, verbose=False, model=TwoBranch, data=(X, y))
    assert got["run"] == pytest.approx(one.history.last["objective"], rel=1e-10)
    cmp = dcnn.run_compare(cfg, methods=["next-pl", "gt"], out=None, verbose=False,
                           model=TwoBranch, data=(X, y))
    for m, h in cmp.histories.items():
        assert got["compare"][m] == pytest.approx(h.last["objective"], rel=1e-10), m


def test_run_compare_takes_the_model_and_data(tmp_path, csv_file):
    _, X, y = csv_file
    res = dcnn.run_compare(load_config(overrides=SMALL), methods=["next-pl", "gt", "dgd"],
                           out=tmp_path / "cmp", verbose=False, model=TwoBranch, data=(X, y))
    assert [r["method"] for r in res.rows] == ["next-pl", "gt", "dgd"]
    assert all(r["status"] == "ok" for r in res.rows)
    starts = {h.records[0]["objective"] for h in res.histories.values()}
    assert len(starts) == 1                       # the same initial point for every method
    assert (tmp_path / "cmp" / "compare.csv").is_file()


def test_cli_compare_takes_a_model_file(tmp_path, csv_file):
    csv, _, _ = csv_file
    out = tmp_path / "cmp"
    sets = [f"data.name='{csv}'", f"model.name='{MODEL}'", *SMALL]
    res, _ = dcnn_cli("compare", "--methods", "next-fl,gt", *[x for s in sets
                                                                for x in ("--set", s)],
                      "--out", str(out), "--quiet", timeout=240)
    assert res.returncode == 0, res.stderr[-3000:]
    assert (out / "compare.csv").read_text().count("\n") == 3


def test_experiment_runs_and_compares(csv_file):
    _, X, y = csv_file
    exp = dcnn.Experiment(model=TwoBranch, X=X, y=y, agents=4, iterations=10, eval_every=5)
    res = exp.run()
    direct = dcnn.run_experiment(load_config(overrides=SMALL), out=None, verbose=False,
                                 model=TwoBranch, data=(X, y))
    assert res.state.X.equal(direct.state.X)
    cmp = exp.compare(["next-pl", "gt:alpha0=0.25"])
    assert list(cmp.histories) == ["next-pl", "gt:alpha0=0.25"]
    # an nn.Module instance is copied, never trained in place
    module = TwoBranch(3, 1)
    before = [p.detach().clone() for p in module.parameters()]
    dcnn.Experiment(model=module, X=X, y=y, agents=4, iterations=5).run()
    assert all(torch.equal(a, b) for a, b in zip(before, module.parameters()))


@pytest.mark.parametrize("kwargs,fragments", [
    (dict(agents=0), ("agents must be >= 1", "got 0")),
    (dict(graph="rong"), ("graph = 'rong'", "did you mean 'ring'")),
    (dict(method="nxt-pl"), ("method", "'nxt-pl' is unknown", "next-pl")),
    (dict(settings={"algorithm.tau": -1}), ("algorithm.tau must be > 0",)),
    (dict(settings={"tau": 1}), ("settings key 'tau'", "section.key")),
    (dict(X=np.zeros((4, 2))), ("give both X and y",)),
])
def test_experiment_refuses_bad_arguments_in_one_line(kwargs, fragments):
    error_of(lambda: dcnn.Experiment(**kwargs), *fragments, kind=ConfigError)


@pytest.mark.parametrize("model,fragments", [
    ("tests/nope.py:Net", ("does not exist", "nope.py")),
    (f"{ROOT / 'tests' / '_user_model.py'}:Missing", ("has no 'Missing'", "TwoBranch")),
    ("no_such_module_xyz:Net", ("cannot be imported",)),
    (lambda n_inputs, n_outputs: 3, ("built a int", "nn.Module")),
    (lambda n_inputs: torch.nn.Linear(n_inputs, 7), None),
    (42, ("must be an nn.Module",)),
])
def test_bad_user_models_are_refused_in_one_line(model, fragments, csv_file):
    _, X, y = csv_file
    if fragments is None:        # 7 outputs for a binary task: the loss names the mismatch
        with pytest.raises(DataError):
            dcnn.run_experiment(load_config(overrides=SMALL), out=None, verbose=False,
                                model=model, data=(X, y))
        return
    error_of(lambda: build_module(model, n_inputs=3, n_outputs=1), *fragments,
             kind=ConfigError)


def test_model_name_refuses_what_is_neither_builtin_nor_a_reference():
    error_of(lambda: load_config(overrides=["model.name='mpl'"]), "did you mean 'mlp'",
             "file.py:ClassOrFactory", kind=ConfigError)


@pytest.mark.parametrize("data,fragments", [
    ((np.zeros((5, 2)), np.zeros(4)), ("5 rows in X but 4 in y",)),
    ((np.array([[1.0, np.nan]] * 6), np.arange(6) % 2), ("NaN or inf in X",)),
    ((np.array([["a", "b"]] * 6), np.arange(6) % 2), ("dtype", "real numbers")),
    ("iris", ("data must be",)),
])
def test_bad_arrays_are_refused_in_one_line(data, fragments):
    error_of(lambda: dcnn.run_experiment(load_config(overrides=SMALL), out=None,
                                         verbose=False, data=data), *fragments, kind=DataError)


def test_python_data_and_model_are_recorded_and_resumed_only_with_them(tmp_path, csv_file):
    """config.json marks a model or data given as Python objects; a resume must get them
    again, and the checkpoint's sha256 of both must match."""
    _, X, y = csv_file
    cfg = load_config(overrides=[*SMALL, "run.checkpoint_every=5", "run.iterations=5"])
    out = tmp_path / "run"
    dcnn.run_experiment(cfg, out=out, verbose=False, model=TwoBranch, data=(X, y))
    saved = json.loads((out / "config.json").read_text())
    assert saved["data"]["name"] == "<python arrays>"
    assert saved["model"]["name"] == "<python>:TwoBranch"
    more = ["run.iterations=10"]
    error_of(lambda: dcnn.resume_experiment(out, overrides=more, verbose=False,
                                            model=TwoBranch),
             "were Python arrays", "data=", kind=DataError)
    error_of(lambda: dcnn.resume_experiment(out, overrides=more, verbose=False, data=(X, y)),
             "was a Python object", "model=", kind=ConfigError)
    from dcnn.errors import CheckpointError
    error_of(lambda: dcnn.resume_experiment(out, overrides=more, verbose=False,
                                            model=TwoBranch, data=(X, 1 - y)),
             "other data", kind=CheckpointError)
    res = dcnn.resume_experiment(out, overrides=more, verbose=False, model=TwoBranch,
                                 data=(X, y))
    full = dcnn.run_experiment(load_config(overrides=SMALL), out=None, verbose=False,
                               model=TwoBranch, data=(X, y))
    assert res.state.X.equal(full.state.X)                 # bitwise the uninterrupted run


def test_a_model_file_is_recorded_by_its_absolute_path(tmp_path, csv_file, monkeypatch):
    csv, _, _ = csv_file
    monkeypatch.chdir(ROOT)
    cfg = load_config(overrides=[*SMALL, f"data.name='{csv}'",
                                 "model.name='tests/_user_model.py:TwoBranch'"])
    dcnn.run_experiment(cfg, out=tmp_path / "run", verbose=False)
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["model"]["name"] == MODEL


def test_a_model_that_is_not_a_pure_function_is_refused_in_one_line(csv_file):
    _, X, y = csv_file
    bn = lambda n_inputs, n_outputs: torch.nn.Sequential(  # noqa: E731
        torch.nn.Linear(n_inputs, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, n_outputs))
    error_of(lambda: dcnn.run_experiment(load_config(overrides=SMALL), out=None,
                                         verbose=False, model=bn, data=(X, y)),
             "pure function", "model.eval()", kind=ConfigError)


def test_empty_test_arrays_are_refused(csv_file):
    _, X, y = csv_file
    from dcnn.data import dataset_from_arrays
    error_of(lambda: dataset_from_arrays(X, y, X_test=X[:0], y_test=y[:0]),
             "X_test is empty", kind=DataError)
