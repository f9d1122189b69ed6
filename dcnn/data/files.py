"""Reading a user's data file: ``.npz`` (arrays ``X``, ``y``, optionally ``X_test``,
``y_test``) or numeric ``.csv`` (optional header row, the target in one column).

The reader only returns raw arrays (:class:`RawData`); choosing the task, splitting and
standardising is :mod:`dcnn.data.datasets`' job. Every problem with a file is a one-line
:class:`~dcnn.errors.DataError` naming the file, the place and the fix. Places in a ``.csv``
are counted from 1, as an editor shows them: ``row`` is the line of the file (the header is
row 1) and ``column`` the position in that line. Places in a ``.npz`` are 0-based array
indices.
"""
from __future__ import annotations

import csv
import os
import zipfile
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..errors import DataError

__all__ = ["SUFFIXES", "RawData", "read_data_file", "check_pair"]

SUFFIXES = (".npz", ".csv")
_SAVE_HINT = "save it with np.savez(path, X=X, y=y) (optionally X_test=..., y_test=...)"


class RawData(NamedTuple):
    """Arrays as read from a file, before any task, split or scaling."""

    X: np.ndarray                 # (M, d) float64
    y: np.ndarray                 # (M,) or (M, k); int64 when stored as integers, else float64
    X_test: np.ndarray | None     # the file's own test part, or None
    y_test: np.ndarray | None


def read_data_file(path: str | os.PathLike, *, target_column: int = -1) -> RawData:
    """Read ``path`` (``.npz`` or ``.csv``) into :class:`RawData`.

    ``target_column`` is the Python index (negative counts from the end) of the target
    column in a ``.csv``; a ``.npz`` names its target array ``y`` and ignores it.
    Raises :class:`~dcnn.errors.DataError` for a missing, unreadable or malformed file, a
    non-numeric value, a NaN or inf, fewer than 2 samples, or mismatched arrays.
    """
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in SUFFIXES:
        raise DataError(f"data file '{p}' has unsupported extension '{p.suffix}'; give a .npz "
                        "or .csv file, or a bundled dataset name")
    if not p.exists():
        raise DataError(f"data file '{p}' does not exist; give an existing .npz or .csv path "
                        "in data.name")
    if not p.is_file():
        raise DataError(f"data file '{p}' is not a regular file; give the path of a .npz or "
                        ".csv file")
    raw = _read_npz(p) if suffix == ".npz" else _read_csv(p, target_column)
    if len(raw.X) < 2:
        raise DataError(f"data file '{p}' has {len(raw.X)} training sample(s); at least 2 are "
                        "needed, one per row")
    return raw


# ----------------------------------------------------------------------------------- .csv
def _read_csv(p: Path, target_column: int) -> RawData:
    rows = _csv_rows(p)
    if not rows:
        raise DataError(f"data file '{p}' is empty; give one sample per row with the target "
                        "in one column")
    for line, row in rows:
        for j, cell in enumerate(row):
            if "\n" in cell or "\r" in cell:
                raise DataError(f"data file '{p}' has a quoted value spanning several lines "
                                f"from row {line}, column {j + 1}; close the '\"' or remove it")
    first_line, first = rows[0]
    width = len(first)
    for line, row in rows:
        if len(row) != width:
            raise DataError(f"data file '{p}' row {line} has {len(row)} values but row "
                            f"{first_line} has {width}; give every row the same number of "
                            "comma-separated values")
    if width < 2:
        raise DataError(f"data file '{p}' has a single column{_separator_hint(first[0])}; it "
                        "needs feature columns and a target column separated by commas")
    col = _target_index(p, target_column, width)
    has_header = not all(_is_number(cell) for cell in first)
    data = rows[1:] if has_header else rows
    if len(data) < 2:
        raise DataError(f"data file '{p}' has {len(data)} data row(s)"
                        f"{' after its header' if has_header else ''}; at least 2 samples are "
                        "needed, one per row")
    values = _parse_cells(p, data, header=first if has_header else None)
    bad = np.argwhere(~np.isfinite(values))
    if len(bad):
        i, j = bad[0]
        raise DataError(f"data file '{p}' has a NaN or inf at row {data[i][0]}, column {j + 1}; "
                        "clean the file or drop the row")
    y = values[:, col]
    X = np.delete(values, col, axis=1)
    return RawData(X, _as_target(y), None, None)


def _csv_rows(p: Path) -> list[tuple[int, list[str]]]:
    """Non-blank rows of ``p`` with the 1-based line numbers they start on."""
    try:
        with p.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            rows, start = [], 1
            for row in reader:            # a quoted value may span lines: keep the first
                if any(c.strip() for c in row):
                    rows.append((start, row))
                start = reader.line_num + 1
            return rows
    except UnicodeDecodeError as exc:
        raise DataError(f"data file '{p}' is not UTF-8 text (byte {exc.start}: {exc.reason}); "
                        "save it as a UTF-8 .csv") from None
    except csv.Error as exc:
        raise DataError(f"data file '{p}' is not a readable .csv ({_one_line(exc)}); save it "
                        "as plain comma-separated numbers") from None
    except OSError as exc:
        raise DataError(f"data file '{p}' cannot be read ({exc.strerror}); check that it is "
                        "readable") from None


def _parse_cells(p: Path, data: list[tuple[int, list[str]]], *,
                 header: list[str] | None = None) -> np.ndarray:
    try:
        return np.array([row for _, row in data], dtype=np.float64)
    except ValueError:
        pass  # locate the offending cell for the message
    for line, row in data:
        for j, cell in enumerate(row):
            if not _is_number(cell):
                what = "an empty cell" if not cell.strip() else f"a non-numeric value '{cell}'"
                name = f" ('{header[j].strip()}')" if header and j < len(header) else ""
                raise DataError(f"data file '{p}' has {what} at row {line}, column {j + 1}"
                                f"{name}{_separator_hint(cell)}; give numbers only (a header is "
                                "allowed in row 1)")
    raise DataError(f"data file '{p}' cannot be parsed as numbers; give numbers only")


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _separator_hint(cell: str) -> str:
    for sep, name in ((";", "';'"), ("\t", "tabs"), ("|", "'|'")):
        if sep in cell:
            return f" (it looks separated by {name}; use commas)"
    return ""


def _target_index(p: Path, target_column: int, width: int) -> int:
    if not isinstance(target_column, (int, np.integer)) or isinstance(target_column, bool):
        raise DataError(f"target_column must be an integer column index, got "
                        f"{target_column!r}; use -1 for the last column")
    if not -width <= target_column < width:
        raise DataError(f"target_column {target_column} is out of range for data file '{p}' "
                        f"with {width} columns; use -1 (the last) or an index from 0 to "
                        f"{width - 1}")
    return int(target_column) % width


# ----------------------------------------------------------------------------------- .npz
def _read_npz(p: Path) -> RawData:
    if not zipfile.is_zipfile(p):
        try:
            with p.open("rb") as fh:
                single = fh.read(6) == b"\x93NUMPY"
        except OSError as exc:
            raise DataError(f"data file '{p}' cannot be read ({exc.strerror}); check that it "
                            "is readable") from None
        what = "holds a single .npy array" if single else "is not an .npz (zip) archive"
        raise DataError(f"data file '{p}' {what}; {_SAVE_HINT}")
    try:
        with np.load(p, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"data file '{p}' cannot be read as an .npz archive of numeric arrays "
                        f"({_one_line(exc)}); {_SAVE_HINT}") from None
    for key in ("X", "y"):
        if key not in arrays:
            have = ", ".join(sorted(arrays)) or "none"
            raise DataError(f"data file '{p}' has no array '{key}' (it has: {have}); "
                            f"{_SAVE_HINT}")
    if ("X_test" in arrays) != ("y_test" in arrays):
        given, missing = ("X_test", "y_test") if "X_test" in arrays else ("y_test", "X_test")
        raise DataError(f"data file '{p}' has '{given}' but no '{missing}'; give both or "
                        "neither")
    X, y = check_pair(f"data file '{p}'", arrays["X"], arrays["y"], "X", "y")
    if "X_test" not in arrays:
        return RawData(X, y, None, None)
    X_test, y_test = check_pair(f"data file '{p}'", arrays["X_test"], arrays["y_test"],
                                "X_test", "y_test")
    if len(X_test) == 0:
        raise DataError(f"data file '{p}' has an empty X_test; give at least one test sample "
                        "or leave X_test and y_test out")
    if X_test.shape[1] != X.shape[1]:
        raise DataError(f"data file '{p}' has {X_test.shape[1]} columns in X_test but "
                        f"{X.shape[1]} in X; give the test part the same features")
    if y_test.shape[1:] != y.shape[1:]:
        raise DataError(f"data file '{p}' has y_test of shape {y_test.shape} but y of shape "
                        f"{y.shape}; give the test targets the same layout")
    return RawData(X, y, X_test, y_test)


def check_pair(where: str, X, y, xk: str = "X", yk: str = "y") -> tuple[np.ndarray, np.ndarray]:
    """``(X, y)`` as float64 features and targets, or a DataError naming ``where`` (e.g.
    ``data file 'a.npz'``), the array and the fix: real numbers, ``X`` 2-D (1-D is one
    feature), ``y`` 1-D or 2-D, one target per row, no NaN or inf."""
    X, y = np.asarray(X), np.asarray(y)
    for key, arr in ((xk, X), (yk, y)):
        if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_) \
                or np.issubdtype(arr.dtype, np.complexfloating):
            raise DataError(f"{where} has {key} of dtype {arr.dtype}; give real "
                            "numbers (float or int arrays)")
    if X.ndim == 1:
        X = X.reshape(-1, 1)
    if X.ndim != 2 or X.shape[1] == 0:
        raise DataError(f"{where} has {xk} of shape {X.shape}; give a (samples, "
                        "features) array with at least one feature")
    if y.ndim not in (1, 2):
        raise DataError(f"{where} has {yk} of shape {y.shape}; give a (samples,) or "
                        "(samples, outputs) array")
    if len(X) != len(y):
        raise DataError(f"{where} has {len(X)} rows in {xk} but {len(y)} in {yk}; give "
                        "one target per sample")
    X = X.astype(np.float64)
    y = _as_target(y)
    for key, arr in ((xk, X), (yk, y)):
        if arr.size == 0:
            continue
        bad = np.argwhere(~np.isfinite(arr.reshape(len(arr), -1)))
        if len(bad):
            i, j = bad[0]
            raise DataError(f"{where} has a NaN or inf in {key} at row {i}, column {j} "
                            "(0-based); remove or impute those values first")
    return X, y


def _as_target(y: np.ndarray) -> np.ndarray:
    """Integers (and booleans) stay integers, so task inference can see them."""
    if np.issubdtype(y.dtype, np.integer) or y.dtype == np.bool_:
        return y.astype(np.int64)
    return y.astype(np.float64)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())
