"""User files: .csv and .npz round trips, the task rule on file targets, and every error case."""
import numpy as np
import pytest

from dcnn.data import load_dataset
from dcnn.data.files import read_data_file
from dcnn.errors import DataError, DataWarning

from functools import partial

from conftest import error_of as _error_of

error_of = partial(_error_of, kind=DataError)  # the data layer raises DataError


def sample(n=30, d=3, seed=0):
    """Features whose first column is the row id, so a split can be put back in order."""
    rng = np.random.default_rng(seed)
    X = np.column_stack([np.arange(n, dtype=float), rng.normal(size=(n, d - 1))])
    return X, rng.integers(0, 3, size=n)


def pooled(ds):
    X = np.vstack([ds.X_train, ds.X_test])
    y = np.concatenate([ds.y_train, ds.y_test])
    order = np.argsort(X[:, 0])
    return X[order], y[order]


@pytest.mark.parametrize("header", [True, False])
def test_csv_round_trip(tmp_path, header):
    X, y = sample()
    path = tmp_path / "data.csv"
    np.savetxt(path, np.column_stack([X, y]), delimiter=",", fmt="%.17g",
               header="id,a,b,label" if header else "", comments="")
    ds = load_dataset(str(path), standardize=False, seed=1)
    assert ds.task == "multiclass" and ds.n_classes == 3 and ds.n_train + ds.n_test == 30
    Xs, ys = pooled(ds)
    np.testing.assert_array_equal(Xs, X)
    np.testing.assert_array_equal(ds.classes[ys], y)


def test_csv_target_column_blank_lines_and_bom(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("\ufefflabel, x1 ,x2\n\n1, 0.5, 2\n0,1.5,3\n\n1,2.5,4\n0,3.5,5\n\n",
                    encoding="utf-8")
    raw = read_data_file(path, target_column=0)
    np.testing.assert_array_equal(raw.X, [[0.5, 2], [1.5, 3], [2.5, 4], [3.5, 5]])
    np.testing.assert_array_equal(raw.y, [1, 0, 1, 0])
    assert load_dataset(path, target_column=0, test_fraction=0.5).task == "binary"


def test_npz_round_trip_without_test_part(tmp_path):
    X, y = sample(seed=2)
    path = tmp_path / "data.npz"
    np.savez(path, X=X, y=y + 10)
    ds = load_dataset(str(path), standardize=False)
    Xs, ys = pooled(ds)
    np.testing.assert_array_equal(Xs, X)
    np.testing.assert_array_equal(ds.classes, [10, 11, 12])
    np.testing.assert_array_equal(ds.classes[ys], y + 10)


def test_npz_test_part_is_kept_and_scaled_with_train_statistics(tmp_path):
    rng = np.random.default_rng(3)
    X, Xt = rng.normal(3, 2, size=(40, 2)), rng.normal(size=(7, 2))
    y, yt = rng.normal(size=(40, 2)), rng.normal(size=(7, 2))
    path = tmp_path / "data.npz"
    np.savez(path, X=X, y=y, X_test=Xt, y_test=yt)
    ds = load_dataset(str(path), test_fraction=0)
    assert ds.task == "regression" and ds.n_outputs == 2 and (ds.n_train, ds.n_test) == (40, 7)
    np.testing.assert_allclose(ds.X_test, (Xt - X.mean(0)) / X.std(0))
    np.testing.assert_allclose(ds.y_train, (y - y.mean(0)) / y.std(0))
    np.testing.assert_allclose(ds.y_test, (yt - y.mean(0)) / y.std(0))


@pytest.mark.parametrize("y, task, n_classes", [
    (np.array([0, 1] * 10), "binary", 2),
    (np.array([0.0, 1.0, 2.0, 3.0] * 5), "multiclass", 4),     # integer-valued floats
    (np.arange(60) % 51, "regression", 0),                   # more than 50 distinct values
    (np.linspace(0, 1, 20), "regression", 0),                # non-integer
    (np.array([True, False] * 10), "binary", 2),
])
def test_auto_task(tmp_path, y, task, n_classes):
    path = tmp_path / "data.npz"
    np.savez(path, X=np.arange(len(y), dtype=float), y=y)
    ds = load_dataset(path, test_fraction=0.25)
    assert (ds.task, ds.n_classes) == (task, n_classes)


def test_explicit_task_must_fit_the_labels(tmp_path):
    path = tmp_path / "data.npz"
    np.savez(path, X=np.zeros((20, 1)), y=np.arange(20) % 3)
    error_of(lambda: load_dataset(path, task="binary"), "exactly 2", "has 3", "'multiclass'")
    np.savez(path, X=np.zeros((20, 1)), y=np.linspace(0, 1, 20))
    error_of(lambda: load_dataset(path, task="multiclass"), "non-integer", "'regression'")
    np.savez(path, X=np.zeros((20, 1)), y=np.zeros((20, 2)))
    error_of(lambda: load_dataset(path, task="binary"), "one target column", "2")
    np.savez(path, X=np.zeros((20, 1)), y=np.ones(20))
    error_of(lambda: load_dataset(path, task="binary"), "has 1")


CSV_ERRORS = [
    ("", ("empty",)),
    ("\n\n", ("empty",)),
    ("a,b,y\n", ("0 data row", "after its header")),
    ("1,2,0\n", ("1 data row",)),
    ("1,2,0\n3,4,1\n5,6\n", ("row 3 has 2 values but row 1 has 3",)),
    ("a,b,y\n1,2,0\n3,x7,1\n", ("'x7'", "row 3, column 2")),
    ("1,2,0\n3,,1\n", ("empty cell", "row 2, column 2")),
    ("1,2,0\n3,4,1\n5,nan,0\n", ("NaN or inf", "row 3, column 2")),
    ("1,2,0\n3,4,1\n5,6,inf\n", ("NaN or inf", "row 3, column 3")),
    ("1;2;0\n3;4;1\n", ("single column", "';'")),
    ("1,2,0\n3,4;5,1\n", ("'4;5'", "row 2, column 2", "';'")),
]


@pytest.mark.parametrize("text, fragments", CSV_ERRORS)
def test_csv_errors(tmp_path, text, fragments):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    error_of(lambda: load_dataset(str(path)), "bad.csv", *fragments)


def test_csv_unreadable_and_bad_target_column(tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes(b"caf\xe9,1\n1,2\n3,4\n")
    error_of(lambda: load_dataset(path), "latin.csv", "UTF-8")
    path = tmp_path / "ok.csv"
    path.write_text("1,2,0\n3,4,1\n")
    error_of(lambda: load_dataset(path, target_column=3), "target_column 3", "3 columns")
    error_of(lambda: load_dataset(path, target_column=1.0), "target_column", "1.0")


def test_file_errors(tmp_path):
    error_of(lambda: load_dataset(str(tmp_path / "nope.csv")), "nope.csv", "does not exist")
    error_of(lambda: load_dataset(str(tmp_path / "data.txt")), "data.txt", "'.txt'")
    (tmp_path / "folder.csv").mkdir()
    error_of(lambda: load_dataset(tmp_path / "folder.csv"), "folder.csv", "not a regular file")


def npz(tmp_path, **arrays):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    return path


def test_npz_errors(tmp_path):
    X, y = np.zeros((10, 2)), np.zeros(10)
    error_of(lambda: load_dataset(npz(tmp_path, y=y)), "bad.npz", "no array 'X'", "it has: y")
    error_of(lambda: load_dataset(npz(tmp_path, X=X)), "no array 'y'")
    error_of(lambda: load_dataset(npz(tmp_path, X=X, y=y[:9])), "10 rows in X but 9 in y")
    error_of(lambda: load_dataset(npz(tmp_path, X=X[:1], y=y[:1])), "1 training sample")
    error_of(lambda: load_dataset(npz(tmp_path, X=X, y=y, X_test=X)), "'X_test' but no 'y_test'")
    error_of(lambda: load_dataset(npz(tmp_path, X=X, y=y, X_test=X[:, :1], y_test=y)),
             "1 columns in X_test but 2 in X")
    bad = X.copy()
    bad[4, 1] = np.nan
    error_of(lambda: load_dataset(npz(tmp_path, X=bad, y=y)), "NaN or inf in X at row 4, column 1")
    error_of(lambda: load_dataset(npz(tmp_path, X=X, y=np.array(["a"] * 10))), "dtype <U1")
    error_of(lambda: load_dataset(npz(tmp_path, X=np.zeros((10, 2, 2)), y=y)), "(10, 2, 2)")


def test_npz_unreadable(tmp_path):
    path = tmp_path / "junk.npz"
    path.write_bytes(b"this is not a zip archive")
    error_of(lambda: load_dataset(path), "junk.npz", "not an .npz (zip) archive", "np.savez")
    path = tmp_path / "single.npz"
    with open(path, "wb") as fh:
        np.save(fh, np.zeros(3))
    error_of(lambda: load_dataset(path), "single.npz", "single .npy array")
    path = tmp_path / "objects.npz"
    np.savez(path, X=np.array([[1, "a"]], dtype=object), y=np.zeros(1))
    error_of(lambda: load_dataset(path), "objects.npz", "cannot be read", "Object arrays")


def test_a_column_too_large_to_standardise_is_refused_not_zeroed(tmp_path):
    """Values near 1e308 overflow the mean or spread: refused in one line naming the column
    (they used to become zeros, and the run trained on nothing at chance accuracy)."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3))
    X[:, 2] *= 1e307
    path = tmp_path / "huge.csv"
    np.savetxt(path, np.column_stack([X, np.arange(40) % 2]), delimiter=",")
    error_of(lambda: load_dataset(str(path)), "huge.csv' features: column 2 cannot be "
             "standardised", "data.standardize = false")
    raw = load_dataset(str(path), standardize=False)      # the way out it names
    assert np.isfinite(raw.X_train).all() and np.abs(raw.X_train[:, 2]).max() > 1e306


def test_a_constant_column_becomes_zeros_with_a_warning(tmp_path, capsys):
    """A feature that never changes on the training part is kept (as zeros after scaling, so
    the input width stays that of the file) and named in one warning; the command prints it
    as one line ``dcnn: warning: ...``."""
    rng = np.random.default_rng(0)
    X = np.column_stack([rng.normal(size=40), np.full(40, 7.0), rng.normal(size=40)])
    path = tmp_path / "flat.csv"
    np.savetxt(path, np.column_stack([X, np.arange(40) % 2]), delimiter=",")
    with pytest.warns(DataWarning, match=r"flat.csv' features: 1 of 3 columns are constant "
                      r"on the training part \(index 1, from 0\)"):
        ds = load_dataset(str(path))
    assert ds.X_train.shape[1] == 3 and np.all(ds.X_train[:, 1] == 0)
    assert np.all(ds.X_test[:, 1] == 0) and np.abs(ds.X_train[:, 0]).max() > 0
    from dcnn.cli import main
    assert main(["run", "--set", f"data.name='{path}'", "--set", "run.iterations=2",
                 "--set", "run.reference=false", "--set", "run.agents=2", "--quiet",
                 "--out", str(tmp_path / "run")]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert [x for x in err if "constant" in x] == [
        f"dcnn: warning: '{path}' features: 1 of 3 columns are constant on the training part "
        "(index 1, from 0); they become zeros and carry no information"], err
