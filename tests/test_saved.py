"""A run folder read back: ``model.pt`` + ``preprocessing.json`` predict on raw samples what the
History measured (the oracle: ``score`` on the raw test part equals the run's own
``test_metric``), for a loop method and a parallel trainer, classification with the data's
own labels and regression in the data's units; ``dcnn predict``; bad input in one line."""
import json

import numpy as np
import pytest
import torch

import dcnn
from conftest import error_of
from dcnn import load_config, load_run, run_experiment
from dcnn.cli import main
from dcnn.data import load_dataset
from dcnn.errors import ConfigError, DataError


def _run(tmp_path, name="run", *, arrays=None, net=None, **sections):
    sections.setdefault("run", {})
    sections["run"] = {"agents": 4, "iterations": 20, "eval_every": 10, "reference": False,
                       "progress": False, **sections["run"]}
    cfg = load_config(None, **sections)
    res = run_experiment(cfg, out=tmp_path / name, verbose=False, data=arrays, model=net)
    return res, load_run(tmp_path / name)


def _raw_test(name, cfg_seed=0):
    """The run's test part before standardisation (the split does not depend on it)."""
    ds = load_dataset(name, seed=cfg_seed, standardize=False)
    y = ds.y_test if ds.task == "regression" else ds.classes[ds.y_test]
    return ds.X_test, y


@pytest.mark.parametrize("data,algorithm,loss", [
    ("iris", "next", "squared"),                      # multiclass, the one loop
    ("breast_cancer", "ddp", "cross_entropy"),        # binary (logit > 0), a trainer
    ("diabetes", "gt", "squared"),                    # regression, in the data's units
])
def test_the_saved_model_predicts_what_the_history_measured(tmp_path, data, algorithm, loss):
    res, run = _run(tmp_path, data={"name": data}, algorithm={"name": algorithm},
                    model={"loss": loss})
    X, y = _raw_test(data)
    score = run.score(X, y)
    assert score == pytest.approx(res.history.last["test_metric"], rel=1e-9, abs=1e-9)
    assert run.summary["final"]["test_metric"] == pytest.approx(score, rel=1e-9, abs=1e-9)
    pred = run.predict(X)
    assert pred.shape == (len(X),)
    assert np.array_equal(res.predict(X), pred)        # the result in memory says the same
    if data != "diabetes":
        assert set(np.unique(pred)) <= set(np.unique(y))
    else:        # real targets in the data's units, not standardised ones
        assert abs(pred.mean() - y.mean()) < y.std()
        assert pred.std() > 0.1 * y.std()
    rows = run.history
    n = len(rows)
    assert n == len(res.history) == 3
    last = rows.iloc[-1] if hasattr(rows, "iloc") else rows[-1]
    assert float(last["test_metric"]) == pytest.approx(res.history.last["test_metric"])
    assert run.config["algorithm"]["name"] == algorithm
    assert run.summary["dcnn_version"] == dcnn.__version__ and run.summary["command"]
    # the weights are plain tensors, read with weights_only=True
    state = torch.load(tmp_path / "run" / "model.pt", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())


def test_own_labels_and_own_model_come_back(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 3))
    y = np.where(X[:, 0] + 0.3 * X[:, 1] > 0, 7, 3)          # labels 3 and 7, not 0 / 1
    Xt = rng.normal(size=(40, 3))
    yt = np.where(Xt[:, 0] + 0.3 * Xt[:, 1] > 0, 7, 3)

    class Net(torch.nn.Module):
        def __init__(self, n_inputs, n_outputs):
            super().__init__()
            self.lin = torch.nn.Linear(n_inputs, n_outputs, dtype=torch.float64)

        def forward(self, x):
            return self.lin(x)

    res, run = _run(tmp_path, arrays=(X, y, Xt, yt), net=Net(3, 1), run={"iterations": 30})
    error_of(run.module, "Python object", "load_run(DIR).module(my_model)", kind=ConfigError)
    net = run.module(Net(3, 1))
    pred = run.predict(Xt, module=net)
    assert set(np.unique(pred)) <= {3, 7} and pred.dtype == np.int64
    assert run.score(Xt, yt, module=net) == pytest.approx(res.history.last["test_metric"])
    assert res.history.last["test_metric"] > 80


def test_dcnn_predict_reads_a_csv_with_or_without_targets(tmp_path, capsys):
    _run(tmp_path, data={"name": "iris"})
    X, y = _raw_test("iris")
    np.savetxt(tmp_path / "features.csv", X, delimiter=",")
    np.savetxt(tmp_path / "labelled.csv", np.c_[X, y], delimiter=",")
    capsys.readouterr()
    assert main(["predict", str(tmp_path / "run"), str(tmp_path / "features.csv")]) == 0
    out = capsys.readouterr()
    printed = [int(v) for v in out.out.split()]
    want = load_run(tmp_path / "run").predict(X)
    assert printed == want.tolist() and "30 predictions" in out.err
    assert main(["predict", str(tmp_path / "run"), str(tmp_path / "labelled.csv"), "--out",
                 str(tmp_path / "pred.csv")]) == 0
    line = capsys.readouterr().out
    score = load_run(tmp_path / "run").summary["final"]["test_metric"]
    assert f"accuracy on the file's targets: {score:.6g}" in line
    rows = (tmp_path / "pred.csv").read_text().split()
    assert rows[0] == "prediction" and [int(v) for v in rows[1:]] == want.tolist()


def test_bad_input_is_named(tmp_path, capsys):
    error_of(lambda: load_run(tmp_path / "nope"), "does not exist", kind=ConfigError)
    _run(tmp_path, data={"name": "iris"})
    run = load_run(tmp_path / "run")
    error_of(lambda: run.predict(np.zeros((2, 3))), "shape (2, 3)", "4 features",
             kind=DataError)
    error_of(lambda: run.predict(np.full((1, 4), np.nan)), "NaN", kind=DataError)
    (tmp_path / "run" / "model.pt").unlink()
    error_of(run.module, "model.pt is missing", kind=ConfigError)
    (tmp_path / "run" / "preprocessing.json").write_text(json.dumps({"format": 99}))
    error_of(lambda: load_run(tmp_path / "run"), "format 99", kind=ConfigError)
    assert main(["predict", str(tmp_path / "nope"), str(tmp_path / "x.csv")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("dcnn: error: run folder")


def test_predict_files_of_every_shape(tmp_path):
    from dcnn.saved import predict_file
    _run(tmp_path, data={"name": "iris"})
    run, (X, y) = load_run(tmp_path / "run"), _raw_test("iris")
    want = run.predict(X)
    rows = "\n".join(",".join(f"{v:.17g}" for v in x) for x in X)
    # a byte-order mark (as Excel writes it) and a header: every sample kept
    (tmp_path / "bom.csv").write_bytes(b"\xef\xbb\xbf" + ("a,b,c,d\n" + rows).encode())
    (tmp_path / "plain.csv").write_bytes(b"\xef\xbb\xbf" + rows.encode())
    for name in ("bom.csv", "plain.csv"):
        pred, score = predict_file(tmp_path / "run", tmp_path / name)
        assert pred.tolist() == want.tolist() and score is None
    np.savez(tmp_path / "x.npz", X=X)
    np.savez(tmp_path / "xy.npz", X=X[:1], y=y[:1])                # one sample is enough
    assert predict_file(tmp_path / "run", tmp_path / "x.npz")[0].tolist() == want.tolist()
    assert predict_file(tmp_path / "run", tmp_path / "xy.npz")[1] in (0.0, 100.0)
    (tmp_path / "ragged.csv").write_text("1,2,3,4\n1,2,3\n")
    error_of(lambda: predict_file(tmp_path / "run", tmp_path / "ragged.csv"), "row 2",
             "3 values", kind=DataError)
    (tmp_path / "na.csv").write_text("1,2,3,4\n1,NA,3,4\n")
    error_of(lambda: predict_file(tmp_path / "run", tmp_path / "na.csv"), "row 2", "'NA'",
             kind=DataError)
    (tmp_path / "wide.csv").write_text("1,2,3,4,5,6\n")
    error_of(lambda: predict_file(tmp_path / "run", tmp_path / "wide.csv"), "6 columns",
             "4 features", kind=DataError)
    np.savez(tmp_path / "noX.npz", y=y)
    error_of(lambda: predict_file(tmp_path / "run", tmp_path / "noX.npz"), "no array 'X'",
             "np.savez(path, X=X)", kind=DataError)
    error_of(lambda: predict_file(tmp_path / "run", tmp_path / "x.npz", out=tmp_path),
             "is a folder", kind=DataError)


def test_a_dataset_object_without_class_labels_predicts_indices(tmp_path):
    from dcnn.data import Dataset
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 2))
    y = (X[:, 0] > 0).astype(np.int64)
    ds = Dataset(name="mine", task="binary", X_train=X[:40], y_train=y[:40], X_test=X[40:],
                 y_test=y[40:], n_classes=2)
    res, run = _run(tmp_path, arrays=ds)
    assert set(run.predict(X).tolist()) <= {0, 1}
    assert run.score(X[40:], y[40:]) == pytest.approx(res.history.last["test_metric"])


def test_a_compare_folder_names_one_of_its_runs(tmp_path):
    """`dcnn predict` / load_run on a `dcnn compare --out` folder: one line naming a run in
    it, not "summary.json is missing"."""
    (tmp_path / "compare.json").write_text("{}")
    error_of(lambda: load_run(tmp_path), "compare folder", "no finished run", kind=ConfigError)
    for m in ("next-pl", "gt"):
        (tmp_path / m).mkdir()
        (tmp_path / m / "summary.json").write_text("{}")
    error_of(lambda: load_run(tmp_path), "compare folder", str(tmp_path / "gt"),
             kind=ConfigError)
