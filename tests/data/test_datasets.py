"""Bundled datasets, the task rule, the seeded split and standardisation with train statistics."""
import math

import numpy as np
import pytest

from dcnn.data import BUNDLED, TASKS, Dataset, load_dataset
from dcnn.errors import DataError

from functools import partial

from conftest import error_of as _error_of

error_of = partial(_error_of, kind=DataError)  # the data layer raises DataError

# name: (task, n_classes, n_features, n_samples)
EXPECTED = {"digits": ("multiclass", 10, 64, 1797), "breast_cancer": ("binary", 2, 30, 569),
            "wine": ("multiclass", 3, 13, 178), "iris": ("multiclass", 3, 4, 150),
            "diabetes": ("regression", 0, 10, 442),
            "mnist1d": ("multiclass", 10, 40, 5000)}  # its own 80/20 split (test_mnist1d.py)


def test_registry_is_complete():
    assert set(BUNDLED) == set(EXPECTED)
    assert TASKS == ("regression", "binary", "multiclass")


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_dataset_contract(name):
    task, n_classes, d, n = EXPECTED[name]
    ds = load_dataset(name)
    assert (ds.name, ds.task, ds.n_classes, ds.n_features) == (name, task, n_classes, d)
    assert ds.n_test == math.ceil(0.2 * n) and ds.n_train + ds.n_test == n
    for X, y in ((ds.X_train, ds.y_train), (ds.X_test, ds.y_test)):
        assert X.dtype == np.float64 and X.shape[1] == d and len(y) == len(X)
    if task == "regression":
        assert ds.y_train.dtype == np.float64 and ds.n_outputs == 1 and len(ds.classes) == 0
    else:
        assert ds.y_train.dtype == np.int64
        assert set(np.unique(np.concatenate([ds.y_train, ds.y_test]))) == set(range(n_classes))
        assert len(ds.classes) == n_classes
        assert ds.n_outputs == (1 if task == "binary" else n_classes)
    assert f"n_classes={n_classes}" in repr(ds)


@pytest.mark.parametrize("name", ["wine", "diabetes", "digits"])
def test_standardised_with_train_statistics(name):
    ds = load_dataset(name, seed=3)
    raw = load_dataset(name, seed=3, standardize=False)
    mean, std = raw.X_train.mean(0), raw.X_train.std(0)
    varying = std > 0
    np.testing.assert_allclose(ds.X_train.mean(0), 0, atol=1e-10)
    np.testing.assert_allclose(ds.X_train.std(0)[varying], 1, rtol=1e-10)
    np.testing.assert_allclose(ds.X_train[:, ~varying], 0, atol=1e-12)  # constant -> scale 1
    scale = np.where(varying, std, 1.0)
    np.testing.assert_allclose(ds.X_test, (raw.X_test - mean) / scale, atol=1e-12)
    if ds.task == "regression":
        ym, ys = raw.y_train.mean(), raw.y_train.std()
        np.testing.assert_allclose(ds.y_train, (raw.y_train - ym) / ys, atol=1e-12)
        np.testing.assert_allclose(ds.y_test, (raw.y_test - ym) / ys, atol=1e-12)
    else:
        np.testing.assert_array_equal(ds.y_test, raw.y_test)


def test_split_is_seeded():
    a, b, c = (load_dataset("iris", seed=s) for s in (7, 7, 8))
    np.testing.assert_array_equal(a.X_train, b.X_train)
    np.testing.assert_array_equal(a.y_test, b.y_test)
    assert not np.array_equal(a.X_test, c.X_test)


def test_split_is_stratified_and_sized():
    ds = load_dataset("breast_cancer", test_fraction=0.3, seed=1)
    assert ds.n_test == math.ceil(0.3 * 569)
    assert abs(ds.y_train.mean() - ds.y_test.mean()) < 0.01


def test_explicit_task_override():
    ds = load_dataset("digits", task="regression")
    assert ds.task == "regression" and ds.n_classes == 0 and ds.y_train.dtype == np.float64
    error_of(lambda: load_dataset("iris", task="binary"), "'binary'", "3", "multiclass")
    many = load_dataset("diabetes", task="multiclass")  # integer-valued: explicit task allowed
    assert many.n_classes == len(many.classes) > 50


@pytest.mark.parametrize("name, suggestion", [("iriss", "'iris'"),
                                              ("breast-cancer", "'breast_cancer'"),
                                              ("Digits", "'digits'")])
def test_unknown_name_suggests_the_closest(name, suggestion):
    error_of(lambda: load_dataset(name), f"'{name}'", f"did you mean {suggestion}")


@pytest.mark.parametrize("kwargs, fragment", [
    ({"test_fraction": 1.0}, "test_fraction"), ({"test_fraction": -0.1}, "-0.1"),
    ({"test_fraction": 0}, "own test part"), ({"test_fraction": "0.2"}, "'0.2'"),
    ({"seed": -1}, "seed"), ({"seed": 1.5}, "1.5"), ({"seed": True}, "True"),
    ({"task": "multi"}, "did you mean 'multiclass'"), ({"standardize": "yes"}, "'yes'"),
])
def test_bad_options(kwargs, fragment):
    error_of(lambda: load_dataset("iris", **kwargs), fragment)


def test_test_fraction_leaving_no_training_sample(tmp_path):
    path = tmp_path / "two.csv"
    path.write_text("1,0\n2,1\n")
    error_of(lambda: load_dataset(str(path), test_fraction=0.6), "no training sample", "0.6")


def test_dataset_checks_its_fields():
    X, y = np.zeros((4, 2)), np.array([0, 1, 0, 1])
    ds = Dataset("t", "binary", X, y, X[:2], y[:2], 2)
    assert (ds.n_train, ds.n_test, ds.n_outputs) == (4, 2, 1)
    error_of(lambda: Dataset("t", "ranking", X, y, X, y, 2), "'ranking'")
    error_of(lambda: Dataset("t", "binary", X, y, X, y, 3), "n_classes 3")
    error_of(lambda: Dataset("t", "binary", X, y[:3], X, y, 2), "train part")
