"""Datasets: a bundled set or a user's file, labelled, split and standardised.

:func:`load_dataset` is the one entry point and a straight pipeline of small steps::

    raw arrays (bundled loader or dcnn.data.files) -> task and labels -> seeded split
    -> standardise with training statistics -> Dataset

The bundled sets are scikit-learn's small ones and MNIST-1D (Greydanus & Kobak, ICML 2024,
arXiv 2011.14439), generated on the spot by the ``mnist1d`` package with the package's own
train/test split. Classification labels become ``0..C-1`` (the original values are kept in
``Dataset.classes``); regression targets stay real and, like the features, are standardised
with the training part's mean and standard deviation, which the test part reuses.
"""
from __future__ import annotations

import difflib
import functools
import math
import numbers
import os
import random
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DataError, DataWarning
from .files import SUFFIXES, RawData, check_pair, read_data_file

__all__ = ["TASKS", "BUNDLED", "Dataset", "load_dataset", "dataset_from_arrays"]

TASKS = ("regression", "binary", "multiclass")
_BUNDLED_TASKS = {"digits": "multiclass", "breast_cancer": "binary", "wine": "multiclass",
                  "iris": "multiclass", "diabetes": "regression", "mnist1d": "multiclass"}
BUNDLED = tuple(_BUNDLED_TASKS)
MNIST1D_SAMPLES = 5000  # the package's default size: 4000 training and 1000 test samples
_MAX_AUTO_CLASSES = 50  # "auto" reads at most this many distinct integer targets as classes


@dataclass(frozen=True, eq=False)
class Dataset:
    """A train/test pair of a task, ready for training.

    ``X_*`` are ``(M, d)`` float64. ``y_*`` are ``(M,)`` int64 labels ``0..C-1`` for
    ``"binary"``/``"multiclass"`` and ``(M,)`` or ``(M, k)`` float64 for ``"regression"``.
    ``classes`` holds the sorted original label values (empty for regression).
    ``x_mean``/``x_scale`` (and ``y_mean``/``y_scale`` for regression) are the training
    statistics the parts were standardised with (``None``: not standardised), so new raw
    samples can be scaled alike: ``(x - x_mean) / x_scale``.
    """

    name: str
    task: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    n_classes: int
    classes: np.ndarray = field(default_factory=lambda: np.empty(0))
    x_mean: np.ndarray | None = None
    x_scale: np.ndarray | None = None
    y_mean: np.ndarray | None = None
    y_scale: np.ndarray | None = None

    def __post_init__(self):
        if self.task not in TASKS:
            raise DataError(f"task {self.task!r} is not one of {', '.join(TASKS)}")
        for part in ("train", "test"):
            X, y = getattr(self, f"X_{part}"), getattr(self, f"y_{part}")
            if X.ndim != 2 or len(X) != len(y) or X.shape[1] != self.X_train.shape[1]:
                raise DataError(f"{part} part of dataset '{self.name}' has X of shape "
                                f"{X.shape} and y of shape {y.shape}; give (M, "
                                f"{self.X_train.shape[1]}) features and one target per row")
        if self.task == "regression":
            ok, want = self.n_classes == 0, "0"
        elif self.task == "binary":
            ok, want = self.n_classes == 2, "2"
        else:
            ok, want = self.n_classes >= 2, "the number of classes (>= 2)"
        if not ok or (len(self.classes) and len(self.classes) != self.n_classes):
            raise DataError(f"n_classes {self.n_classes} does not fit task '{self.task}' with "
                            f"{len(self.classes)} listed classes; use {want}")

    @property
    def n_features(self) -> int:
        return self.X_train.shape[1]

    @property
    def n_outputs(self) -> int:
        """Model outputs: k (or 1) for regression, 1 for binary, C for multiclass."""
        if self.task == "regression":
            return 1 if self.y_train.ndim == 1 else self.y_train.shape[1]
        return 1 if self.task == "binary" else self.n_classes

    @property
    def n_train(self) -> int:
        return len(self.X_train)

    @property
    def n_test(self) -> int:
        return len(self.X_test)

    def __repr__(self) -> str:
        return (f"Dataset(name={self.name!r}, task={self.task!r}, n_train={self.n_train}, "
                f"n_test={self.n_test}, n_features={self.n_features}, "
                f"n_classes={self.n_classes})")


def load_dataset(name: str, *, test_fraction: float = 0.2, seed: int = 0, task: str = "auto",
                 standardize: bool = True, target_column: int = -1,
                 samples: int = MNIST1D_SAMPLES) -> Dataset:
    """Load a bundled dataset or a ``.npz``/``.csv`` file, split and standardised.

    Args:
        name: one of :data:`BUNDLED` or a path ending in ``.npz`` or ``.csv`` (see
            :mod:`dcnn.data.files` for the formats).
        test_fraction: share of samples held out, in ``(0, 1)``; ignored (and may be 0)
            when the file carries its own ``X_test``/``y_test``, and for ``"mnist1d"``.
        seed: seed of the split (stratified by label for classification when every class
            has at least 2 samples); ``"mnist1d"`` has its own split and ignores it.
        task: ``"auto"`` or one of :data:`TASKS`. ``"auto"`` picks classification when the
            target is integer-valued with at most 50 distinct values (2 -> ``"binary"``),
            else ``"regression"``; bundled sets have fixed tasks.
        standardize: scale features (and regression targets) to zero mean and unit standard
            deviation with the training statistics; a constant column keeps scale 1.
        target_column: index of the target column of a ``.csv`` (default: the last).
        samples: size of ``"mnist1d"`` (only): a multiple of 10 (``samples / 10`` per class),
            at least 100; the first 80 % train, the rest test (the package's split). The
            data do not follow ``seed``: they are always drawn with the package's seed 42,
            so the default 5000 are the published MNIST-1D (4000 train / 1000 test).

    >>> ds = load_dataset("iris", seed=0)
    >>> ds.task, ds.n_classes, ds.n_train, ds.n_test, ds.n_features
    ('multiclass', 3, 120, 30, 4)
    """
    _check_options(name, test_fraction, seed, task, standardize)
    label = os.fspath(name)
    _check_samples(samples, label)
    raw, fixed_task = _read_raw(label, target_column, samples)
    return _prepare(raw, label, fixed_task if task == "auto" else task,
                    test_fraction=test_fraction, seed=seed, standardize=standardize,
                    target_column=target_column)


def dataset_from_arrays(X, y, *, X_test=None, y_test=None, name: str = "arrays",
                        test_fraction: float = 0.2, seed: int = 0, task: str = "auto",
                        standardize: bool = True) -> Dataset:
    """A :class:`Dataset` from your own arrays, through the same steps as
    :func:`load_dataset`: ``X`` ``(M, d)`` features, ``y`` ``(M,)`` labels or targets (or
    ``(M, k)`` regression targets); a seeded split unless ``X_test``/``y_test`` are given.

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> ds = dataset_from_arrays(rng.normal(size=(50, 3)), rng.integers(0, 2, 50))
    >>> ds.task, ds.n_train, ds.n_test
    ('binary', 40, 10)
    """
    _check_options(name, test_fraction, seed, task, standardize)
    if (X_test is None) != (y_test is None):
        raise DataError("give both X_test and y_test, or neither")
    X, y = check_pair("data arrays", X, y)
    if X_test is not None:
        X_test, y_test = check_pair("data arrays", X_test, y_test, "X_test", "y_test")
        if len(X_test) == 0:
            raise DataError("X_test is empty; give at least one test sample, or leave "
                            "X_test and y_test out (a seeded test_fraction is held out)")
        if X_test.shape[1] != X.shape[1] or y_test.shape[1:] != y.shape[1:]:
            raise DataError(f"X_test/y_test have shapes {X_test.shape}/{y_test.shape} but "
                            f"X/y have {X.shape}/{y.shape}; give the test part the same "
                            "features and target layout")
    if len(X) < 2:
        raise DataError(f"data arrays have {len(X)} sample(s); give at least 2")
    return _prepare(RawData(X, y, X_test, y_test), name, task, test_fraction=test_fraction,
                    seed=seed, standardize=standardize, target_column=-1)


def _prepare(raw: RawData, label: str, task: str, *, test_fraction: float, seed: int,
             standardize: bool, target_column: int) -> Dataset:
    """Task and labels -> seeded split (unless given) -> standardisation -> Dataset."""
    has_test = raw.X_test is not None
    if test_fraction == 0 and not has_test:
        raise DataError(f"test_fraction 0 needs a file with its own test part (X_test and "
                        f"y_test in a .npz), which '{label}' lacks; use a value such as 0.2")
    y_all = raw.y if not has_test else np.concatenate([raw.y, raw.y_test])
    task, y_all, classes = _resolve_task(y_all, task, label)
    _check_varies(raw.y, label, target_column)
    if has_test:
        X_tr, X_te = raw.X, raw.X_test
        y_tr, y_te = y_all[:len(raw.X)], y_all[len(raw.X):]
    else:
        tr, te = _split(len(raw.X), test_fraction, seed,
                        None if task == "regression" else y_all, label)
        X_tr, X_te, y_tr, y_te = raw.X[tr], raw.X[te], y_all[tr], y_all[te]
    if task != "regression":
        _check_classes_trained(y_tr, y_te, classes, label, has_test)
    stats = {}
    if standardize:
        X_tr, X_te, stats["x_mean"], stats["x_scale"] = _standardize(
            X_tr, X_te, what=f"'{label}' features")
        if task == "regression":
            y_tr, y_te, stats["y_mean"], stats["y_scale"] = _standardize(
                y_tr, y_te, what=f"'{label}' targets")
    return Dataset(name=label, task=task, X_train=X_tr, y_train=y_tr, X_test=X_te, y_test=y_te,
                   n_classes=0 if task == "regression" else len(classes), classes=classes,
                   **stats)


# ------------------------------------------------------------------------------ the steps
def _read_raw(name: str, target_column: int, samples: int) -> tuple[RawData, str]:
    """Raw arrays of ``name`` and its task (``"auto"`` for files)."""
    if name == "mnist1d":
        return RawData(*(a.copy() for a in _mnist1d(int(samples)))), _BUNDLED_TASKS[name]
    if name in _BUNDLED_TASKS:
        # scikit-learn is imported on use: a command that fails on its input before touching
        # a bundled set or a split does not pay for it
        from sklearn import datasets as skd
        bunch = getattr(skd, f"load_{name}")()
        y = bunch.target
        y = y.astype(np.int64) if np.issubdtype(y.dtype, np.integer) else y.astype(np.float64)
        return RawData(bunch.data.astype(np.float64), y, None, None), _BUNDLED_TASKS[name]
    if Path(name).suffix or os.sep in name or "/" in name or os.path.exists(name):
        return read_data_file(name, target_column=target_column), "auto"
    raise DataError(f"unknown dataset '{name}'{_did_you_mean(name, BUNDLED)}; give one of "
                    f"{', '.join(BUNDLED)} or a path ending in {' or '.join(SUFFIXES)}")


@functools.lru_cache(maxsize=1)
def _mnist1d(samples: int) -> RawData:
    """MNIST-1D of ``samples`` samples as the ``mnist1d`` package generates it (no download),
    with its train/test split, from its seed 42 (cached for the process: 50,000 samples take
    about 10 s; and in the cache folder's ``mnist1d/`` (:func:`dcnn.cache.cache_folder`) for
    later processes, keyed by the sample count and the package's version). The package reseeds the
    global ``numpy`` and ``random`` generators; their states are put back, so loading it
    leaves a caller's global randomness untouched."""
    from importlib.metadata import version
    from ..cache import cache_folder
    cache = cache_folder()
    # v1: the arrays as make_dataset returns them (bump if their post-processing here changes)
    path = (cache / "mnist1d" / f"v1-{samples}-{version('mnist1d')}.npz") if cache else None
    if path is not None and path.is_file():
        try:
            with np.load(path) as z:
                raw = RawData(z["x"], z["y"], z["x_test"], z["y_test"])
            if len(raw.y) + len(raw.y_test) == samples:
                return raw
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            pass                       # unreadable: generated again and rewritten
    raw = _generate_mnist1d(samples)
    if path is not None:
        tmp = path.with_suffix(f".{os.getpid()}.npz")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            np.savez(tmp, x=raw.X, y=raw.y, x_test=raw.X_test, y_test=raw.y_test)
            os.replace(tmp, path)      # atomic: a concurrent reader sees all or nothing
        except OSError:                # a cache that cannot be written is no cache
            tmp.unlink(missing_ok=True)
    return raw


def _generate_mnist1d(samples: int) -> RawData:
    from mnist1d.data import get_dataset_args, make_dataset
    args = get_dataset_args()
    args.num_samples = samples
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        data = make_dataset(args)
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    return RawData(data["x"].astype(np.float64), data["y"].astype(np.int64),
                   data["x_test"].astype(np.float64), data["y_test"].astype(np.int64))


def _resolve_task(y: np.ndarray, task: str, name: str) -> tuple[str, np.ndarray, np.ndarray]:
    """The task, the targets for it (labels 0..C-1 for classification) and the classes."""
    flat = y[:, 0] if y.ndim == 2 and y.shape[1] == 1 else y
    if task == "auto":
        task = _infer_task(flat)
    if task == "regression":
        return task, y.astype(np.float64), np.empty(0)
    if flat.ndim != 1:
        raise DataError(f"task '{task}' needs one target column but '{name}' has "
                        f"{y.shape[1]}; use task 'regression'")
    if not _integer_valued(flat):
        example = flat[flat != np.round(flat)][0]
        raise DataError(f"task '{task}' needs integer labels but '{name}' has non-integer "
                        f"targets such as {example:g}; use task 'regression' or 'auto'")
    classes = np.unique(flat)
    if len(classes) < 2 or (task == "binary" and len(classes) != 2):
        shown = ", ".join(f"{c:g}" for c in classes[:5]) + (", ..." if len(classes) > 5 else "")
        fix = "use task 'multiclass' or 'auto'" if len(classes) > 2 else \
            "give data with at least 2 classes (check target_column)"
        raise DataError(f"task '{task}' needs {'exactly' if task == 'binary' else 'at least'} 2 "
                        f"distinct labels but '{name}' has {len(classes)} ({shown}); {fix}")
    return task, np.searchsorted(classes, flat).astype(np.int64), classes


def _check_varies(y: np.ndarray, name: str, target_column: int) -> None:
    """Refuse a training target that takes one value only: every task would learn a constant
    (and "auto" would silently call it regression)."""
    flat = y.reshape(len(y), -1)
    if len(flat) and bool(np.all(flat == flat[0])):
        shown = ", ".join(f"{v:g}" for v in flat[0][:3])
        where = f"column {target_column} of " if Path(name).suffix.lower() == ".csv" else ""
        raise DataError(f"the target ({where}'{name}') is {shown} for every sample; "
                        "there is nothing to learn: check data.target_column or give targets "
                        "that vary")


def _check_classes_trained(y_tr: np.ndarray, y_te: np.ndarray, classes: np.ndarray,
                           name: str, has_test: bool) -> None:
    """A file's own test part may only hold labels its training part has (a label only the
    test part has is usually a mismatch between the two, e.g. labels 1..10 against 0..9);
    a split of our own must leave at least 2 classes to learn from."""
    seen = np.unique(y_tr)
    missing = np.setdiff1d(np.unique(y_te), seen)
    if has_test and len(missing):
        raise DataError(f"y_test of '{name}' has label {classes[missing[0]]:g}, which y (the "
                        "training part) never has; give both parts the same label values")
    if len(seen) < 2:
        raise DataError(f"the training part of '{name}' holds only label {classes[seen[0]]:g} "
                        f"after the split (label {classes[missing[0]]:g} went to the test "
                        "part); give at least 2 samples of every class, or try another seed or "
                        "a smaller test_fraction")


def _infer_task(y: np.ndarray) -> str:
    if y.ndim != 1 or not _integer_valued(y):
        return "regression"
    k = len(np.unique(y))
    if k == 2:
        return "binary"
    return "multiclass" if 2 < k <= _MAX_AUTO_CLASSES else "regression"


def _integer_valued(y: np.ndarray) -> bool:
    return np.issubdtype(y.dtype, np.integer) or bool(np.all(y == np.round(y)))


def _split(n: int, test_fraction: float, seed: int, labels: np.ndarray | None, name: str):
    """Seeded train/test indices; stratified by ``labels`` where every class allows it."""
    from sklearn.model_selection import train_test_split
    n_test = math.ceil(test_fraction * n)
    if n_test >= n:
        raise DataError(f"test_fraction {test_fraction} leaves no training sample of the "
                        f"{n} in '{name}'; use a smaller test_fraction")
    stratify = None
    if labels is not None:
        counts = np.bincount(labels)
        counts = counts[counts > 0]
        if counts.min() >= 2 and min(n_test, n - n_test) >= len(counts):
            stratify = labels
    return train_test_split(np.arange(n), test_size=n_test, random_state=seed,
                            stratify=stratify)


def _standardize(train: np.ndarray, test: np.ndarray, *, what: str
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Both parts scaled by the training mean and standard deviation (per column), and the
    mean and scale themselves; a column
    whose mean or spread overflows (values near 1e308) is refused, not turned into zeros; a
    constant feature column becomes zeros with a :class:`~dcnn.errors.DataWarning`."""
    with np.errstate(over="ignore", invalid="ignore"):
        mean = train.mean(axis=0)
        std = train.std(axis=0)
        # a column constant up to rounding keeps scale 1 rather than amplifying round-off
        varies = std > 1e-12 * np.maximum(np.abs(mean), 1.0)
        scale = np.where(varies, std, 1.0)
        out = (train - mean) / scale, (test - mean) / scale
    bad = ~(np.isfinite(mean) & np.isfinite(scale))
    if np.any(bad):
        cols = np.flatnonzero(np.atleast_1d(bad))
        big = float(np.abs(train[:, cols] if train.ndim > 1 else train).max())
        raise DataError(f"{what}: column{'s' if len(cols) > 1 else ''} "
                        f"{', '.join(map(str, cols[:5]))} cannot be standardised in float64 "
                        f"(values up to {big:.3g}: the mean or spread overflows); rescale "
                        "them, or set data.standardize = false")
    constant = np.flatnonzero(~np.atleast_1d(varies))
    if train.ndim > 1 and len(constant):
        shown = ", ".join(map(str, constant[:8])) + (", ..." if len(constant) > 8 else "")
        warnings.warn(f"{what}: {len(constant)} of {train.shape[1]} columns are constant on the "
                      f"training part (index{'es' if len(constant) > 1 else ''} {shown}, from 0); "
                      "they become zeros and carry no information", DataWarning, stacklevel=3)
    return out[0], out[1], np.asarray(mean, dtype=np.float64), np.asarray(scale, np.float64)


# ----------------------------------------------------------------------------- validation
def _check_options(name, test_fraction, seed, task, standardize) -> None:
    if not isinstance(name, (str, os.PathLike)):
        raise DataError(f"dataset name must be a string, got {name!r}; give one of "
                        f"{', '.join(BUNDLED)} or a .npz/.csv path")
    if not isinstance(test_fraction, numbers.Real) or isinstance(test_fraction, bool) \
            or not 0 <= test_fraction < 1:
        raise DataError(f"test_fraction must be a number in (0, 1), got {test_fraction!r}; "
                        "use e.g. 0.2")
    if not isinstance(seed, numbers.Integral) or isinstance(seed, bool) \
            or not 0 <= seed < 2**32:
        raise DataError(f"seed must be an integer in [0, 2**32), got {seed!r}; use e.g. 0")
    if task != "auto" and task not in TASKS:
        raise DataError(f"unknown task {task!r}{_did_you_mean(str(task), ('auto',) + TASKS)}; "
                        f"use 'auto' or one of {', '.join(TASKS)}")
    if not isinstance(standardize, (bool, np.bool_)):
        raise DataError(f"standardize must be True or False, got {standardize!r}")


def _check_samples(samples, name: str) -> None:
    """``samples`` sizes MNIST-1D only: a multiple of 10 (the package makes ``samples // 10``
    per class) and at least 100, so that the 80/20 split trains on every class."""
    if isinstance(samples, bool) or not isinstance(samples, numbers.Integral) \
            or samples < 100 or samples % 10:
        raise DataError(f"samples must be a multiple of 10 and at least 100 (MNIST-1D makes "
                        f"samples/10 per class), got {samples!r}; use e.g. 5000")
    if name != "mnist1d" and samples != MNIST1D_SAMPLES:
        raise DataError(f"samples={samples} applies to 'mnist1d' only, not '{name}'; "
                        "leave samples out")


def _did_you_mean(value: str, valid) -> str:
    close = difflib.get_close_matches(value, list(valid), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""
