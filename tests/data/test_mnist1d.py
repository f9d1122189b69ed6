"""MNIST-1D, generated locally by the mnist1d package: deterministic, the published 4000/1000
split of 40 features and 10 classes, sized by ``samples``, without touching the network or
the caller's global random generators."""
import random
import socket

import numpy as np
import pytest

import dcnn
from dcnn.config import load_config
from dcnn.data import datasets, load_dataset
from dcnn.errors import ConfigError, DataError

from conftest import error_of


@pytest.fixture
def fresh(monkeypatch):
    """Generate anew (not from the in-process cache, nor from the suite's DCNN_CACHE folder)
    in every load of the test."""
    monkeypatch.setenv("DCNN_CACHE", "")          # no disk cache
    datasets._mnist1d.cache_clear()
    yield lambda **kw: (datasets._mnist1d.cache_clear(), load_dataset("mnist1d", **kw))[1]
    datasets._mnist1d.cache_clear()


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """Every attempt to look up a host or open a connection is refused and recorded (the package's downloader
    swallows exceptions, so a refusal alone could go unnoticed); the working directory is an
    empty folder, where the package's downloader would leave its pickle."""
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("network access refused by the test")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)    # name lookups come first
    monkeypatch.chdir(tmp_path)
    yield attempts
    assert not attempts, f"network access attempted: {attempts}"
    assert not list(tmp_path.iterdir()), "files written in the working directory"


def test_default_is_the_published_split_and_deterministic(fresh, offline):
    a, b = fresh(), fresh()
    assert (a.task, a.n_classes, a.n_train, a.n_test, a.n_features) == \
        ("multiclass", 10, 4000, 1000, 40)
    for part in ("X_train", "y_train", "X_test", "y_test"):
        x, y = getattr(a, part), getattr(b, part)
        assert x.dtype == y.dtype and x.tobytes() == y.tobytes(), part
    assert set(np.unique(a.y_train)) == set(np.unique(a.y_test)) == set(range(10))
    assert np.array_equal(a.classes, np.arange(10))


def test_the_run_seed_and_test_fraction_leave_the_data_alone(fresh):
    a = fresh(standardize=False)
    b = load_dataset("mnist1d", standardize=False, seed=5, test_fraction=0.5)
    np.testing.assert_array_equal(a.X_train, b.X_train)
    np.testing.assert_array_equal(a.y_test, b.y_test)


def test_standardised_with_training_statistics(fresh):
    raw, ds = fresh(standardize=False), load_dataset("mnist1d")
    mean, std = raw.X_train.mean(0), raw.X_train.std(0)
    np.testing.assert_allclose(ds.X_train, (raw.X_train - mean) / std, atol=1e-12)
    np.testing.assert_allclose(ds.X_test, (raw.X_test - mean) / std, atol=1e-12)


@pytest.mark.parametrize("samples, n_train, n_test", [(200, 160, 40), (1230, 984, 246)])
def test_samples_sizes_it(fresh, samples, n_train, n_test):
    ds = fresh(samples=samples)
    assert (ds.n_train, ds.n_test, ds.n_classes) == (n_train, n_test, 10)


def test_global_random_state_is_left_untouched(fresh):
    np.random.seed(123)
    random.seed(456)
    np_before, py_before = np.random.get_state(), random.getstate()
    fresh(samples=100)
    np_after = np.random.get_state()
    assert np_after[0] == np_before[0] and np.array_equal(np_after[1], np_before[1])
    assert np_after[2:] == np_before[2:]
    assert random.getstate() == py_before


@pytest.mark.parametrize("samples", [0, 90, 105, 200.0, True, "5000"])
def test_bad_samples(samples):
    error_of(lambda: load_dataset("mnist1d", samples=samples), "samples", "multiple of 10",
             kind=DataError)


def test_samples_belongs_to_mnist1d_only():
    error_of(lambda: load_dataset("iris", samples=200), "samples=200", "'mnist1d' only",
             "'iris'", kind=DataError)


@pytest.mark.parametrize("overrides, fragment", [
    (["data.name='iris'", "data.samples=200"], "data.name is 'iris'"),
    (["data.samples=300"], "data.name is 'breast_cancer'"),
])
def test_config_refuses_samples_for_other_data(overrides, fragment):
    cfg = load_config(None, overrides + ["run.progress=false"])
    error_of(lambda: dcnn.run_experiment(cfg, out=None, verbose=False),
             "data.samples", "'mnist1d' only", fragment, "remove data.samples",
             kind=ConfigError)


def test_config_refuses_samples_with_python_data():
    cfg = load_config(None, ["data.samples=300", "run.progress=false"])
    X = np.random.default_rng(0).normal(size=(20, 3))
    error_of(lambda: dcnn.run_experiment(cfg, data=(X, (X[:, 0] > 0).astype(int)), out=None,
                                         verbose=False),
             "data.samples = 300", "Python objects", kind=ConfigError)


@pytest.mark.parametrize("value", [5, 95, 1001])
def test_config_checks_samples(value):
    error_of(lambda: load_config(None, [f"data.samples={value}"]), "data.samples",
             "multiple of 10", str(value), kind=ConfigError)


def test_the_disk_cache_returns_the_generated_arrays_and_survives_a_bad_file(monkeypatch,
                                                                             tmp_path, fresh):
    """With DCNN_CACHE set, a later process reads what the first generated (bit for bit); a
    truncated cache file is generated again and rewritten; without it nothing is written."""
    monkeypatch.setenv("DCNN_CACHE", str(tmp_path))
    first = fresh(samples=200)
    (path,) = (tmp_path / "mnist1d").glob("v1-200-*.npz")
    calls = []
    real = datasets._generate_mnist1d
    monkeypatch.setattr(datasets, "_generate_mnist1d", lambda n: calls.append(n) or real(n))
    again = fresh(samples=200)
    assert calls == []                                      # read, not generated
    for a, b in ((first.X_train, again.X_train), (first.y_test, again.y_test)):
        assert np.array_equal(a, b)
    path.write_bytes(path.read_bytes()[:100])               # a torn write
    third = fresh(samples=200)
    assert calls == [200] and np.array_equal(third.X_train, first.X_train)
    assert np.load(path)["x"].shape[0] + np.load(path)["x_test"].shape[0] == 200
    monkeypatch.setenv("DCNN_CACHE", "")
    fresh(samples=300)
    assert not list((tmp_path / "mnist1d").glob("*-300-*"))
