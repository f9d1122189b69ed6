"""A finished run read back, and its trained network used on new samples.

Every run with an output folder ``DIR`` writes, beside ``history.csv``, ``summary.json``,
``config.json`` and ``curves.png``:

- ``model.pt``: the ``state_dict`` of the trained network at ``w_bar``, the parameters the
  History's train and test metrics are measured at (the one-loop methods: the mean of the
  agents' final iterates; the parallel trainers: their final parameters). It holds tensors
  only and is read with ``torch.load(..., weights_only=True)``: no pickled objects.
- ``preprocessing.json``: what turns a raw sample into the network's input and its output
  into a prediction: the task and loss, the original class labels, and the training
  statistics the features (and regression targets) were standardised with.

:func:`load_run` returns a :class:`SavedRun`: ``history`` (a pandas DataFrame when pandas is
installed, else a list of dicts), ``summary``, ``config``, ``module()`` (the network with the
trained weights) and ``predict(X)`` (raw features in, labels or targets in the data's own
units out)::

    run = dcnn.load_run("runs/default")
    run.predict(X_new)            # class labels as in the data file, or real targets

``dcnn predict DIR data.csv`` does the same from the shell.
"""
from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .errors import ConfigError, DataError

__all__ = ["MODEL_FILE", "PREPROCESSING_FILE", "preprocessing_of", "model_files",
           "Predictor", "SavedRun", "load_run", "predict_file"]

MODEL_FILE, PREPROCESSING_FILE = "model.pt", "preprocessing.json"
FORMAT = 1


def _listed(a) -> list | None:
    return None if a is None else np.asarray(a, dtype=np.float64).tolist()


def preprocessing_of(dataset, *, loss: str, dtype: torch.dtype) -> dict:
    """The ``preprocessing.json`` of a run on ``dataset`` (a :class:`dcnn.data.Dataset`)."""
    return {"format": FORMAT, "task": dataset.task, "loss": loss,
            "dtype": str(dtype).removeprefix("torch."),
            "n_features": int(dataset.n_features), "n_outputs": int(dataset.n_outputs),
            "target_ndim": int(dataset.y_train.ndim),
            "classes": None if dataset.task == "regression" else _listed(
                dataset.classes if len(dataset.classes) else np.arange(dataset.n_classes)),
            "x_mean": _listed(dataset.x_mean), "x_scale": _listed(dataset.x_scale),
            "y_mean": _listed(dataset.y_mean), "y_scale": _listed(dataset.y_scale)}


def model_files(*, module: nn.Module, preprocessing: dict) -> dict:
    """``{file name: write(path)}`` of ``model.pt`` (``module``'s ``state_dict``) and
    ``preprocessing.json``, for :func:`dcnn.report.write_report` to write with the report."""
    state = {k: v.detach().clone() for k, v in module.state_dict().items()}
    text = json.dumps(preprocessing, indent=1) + "\n"
    return {MODEL_FILE: lambda path: torch.save(state, path),
            PREPROCESSING_FILE: lambda path: Path(path).write_text(text)}


def _read_json(path: Path, what: str) -> dict:
    if not path.is_file():
        raise ConfigError(f"{path} is missing: {path.parent} is not a finished dcnn run "
                          f"folder ({what}); give the --out folder of a run that ended")
    try:
        out = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path} cannot be read as JSON ({exc}); run the experiment "
                          "again") from None
    if not isinstance(out, dict):
        raise ConfigError(f"{path} is not a JSON object; run the experiment again")
    return out


def _history(path: Path):
    if not path.is_file():
        raise ConfigError(f"{path} is missing: {path.parent} is not a finished dcnn run "
                          "folder; give the --out folder of a run that ended")
    try:
        import pandas
    except ImportError:
        with open(path, newline="") as fh:
            return [{k: float(v) if v not in ("", "nan") else float("nan")
                     for k, v in row.items()} for row in csv.DictReader(fh)]
    return pandas.read_csv(path)


@dataclass(frozen=True)
class Predictor:
    """A trained network with its ``preprocessing.json`` contents: raw samples in,
    predictions in the data's own labels or units out (what :class:`SavedRun` and
    :class:`dcnn.runner.RunResult` hand out)."""

    module: nn.Module
    preprocessing: dict

    def outputs(self, X) -> torch.Tensor:
        """The network's raw outputs ``(M, O)`` on raw features ``X`` ``(M, d)``, scaled as
        the training data were."""
        p = self.preprocessing
        X = np.asarray(X, dtype=np.float64)
        if X.ndim == 1 and p["n_features"] > 1:
            X = X[None]
        if X.ndim != 2 or X.shape[1] != p["n_features"]:
            raise DataError(f"X has shape {X.shape}; the run's model takes "
                            f"{p['n_features']} features per sample: give (M, "
                            f"{p['n_features']})")
        if not np.isfinite(X).all():
            raise DataError("X holds NaN or inf; give finite features")
        if p["x_mean"] is not None:
            X = (X - np.asarray(p["x_mean"])) / np.asarray(p["x_scale"])
        with torch.no_grad():
            out = self.module(torch.as_tensor(X, dtype=getattr(torch, p["dtype"])))
        return out.reshape(len(X), -1)

    def predict(self, X) -> np.ndarray:
        """Predictions for raw features ``X`` ``(M, d)``: class labels as the data give them
        (binary: the output above 0, or 0.5 for the squared loss; multiclass: the largest
        output), or regression targets in the data's units."""
        p = self.preprocessing
        out = self.outputs(X).double().numpy()
        if p["task"] == "regression":
            if p["y_mean"] is not None:
                out = out * np.asarray(p["y_scale"]) + np.asarray(p["y_mean"])
            return out[:, 0] if p["target_ndim"] == 1 else out
        classes = np.asarray(p["classes"])
        if p["task"] == "binary":
            index = (out[:, 0] > (0.5 if p["loss"] == "squared" else 0.0)).astype(int)
        else:
            index = out.argmax(axis=1)
        labels = classes[index]
        return labels.astype(np.int64) if np.all(labels == np.round(labels)) else labels

    def score(self, X, y) -> float:
        """Accuracy in percent (classification) or the mean squared error in the units of
        the standardised targets, as the History's ``test_metric`` reports it."""
        pred = self.predict(X)
        y = np.asarray(y)
        if self.preprocessing["task"] != "regression":
            return 100.0 * float(np.mean(pred == y.reshape(pred.shape)))
        scale = np.asarray(self.preprocessing["y_scale"] or 1.0)
        err = (pred - y.reshape(pred.shape)) / (scale if pred.ndim == 1 else scale[None])
        return float(np.mean(err ** 2))


@dataclass(frozen=True)
class SavedRun:
    """A run folder read back (see the module docstring)."""

    directory: Path
    history: object
    summary: dict
    config: dict
    preprocessing: dict

    def module(self, template: nn.Module | None = None) -> nn.Module:
        """The trained network: the config's model (``mlp``, ``cnn``, ``transformer`` or a
        ``file.py:Name``) rebuilt, or your ``template`` (a model given as a Python object),
        with ``model.pt``'s weights loaded (``weights_only=True``)."""
        from .config import load_config
        from .prepare import make_model
        p = self.preprocessing
        dtype = getattr(torch, p["dtype"])
        if template is None:
            name = str(self.config.get("model", {}).get("name", ""))
            if name.startswith("<python>"):
                raise ConfigError(f"this run's model was a Python object ({name}); give one "
                                  "of the same architecture: load_run(DIR).module(my_model)")
            cfg = load_config(None, model=self.config.get("model", {}))
            template = make_model(cfg.model, n_inputs=p["n_features"],
                                  n_outputs=p["n_outputs"], seed=0, dtype=dtype)
        elif not isinstance(template, nn.Module):
            raise ConfigError(f"template must be an nn.Module, got {type(template).__name__}")
        path = self.directory / MODEL_FILE
        if not path.is_file():
            raise ConfigError(f"{path} is missing; runs made before dcnn saved models have "
                              "none: run the experiment again")
        state = torch.load(path, map_location="cpu", weights_only=True)
        template = template.to(dtype)           # the saved precision, not the template's
        try:
            template.load_state_dict(state)
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[-1].strip()
            raise ConfigError(f"{path} does not fit the model ({first}); give the model "
                              "the run trained") from None
        return template.eval()

    def predictor(self, module: nn.Module | None = None) -> Predictor:
        """:meth:`module` (or ``module``, a template to load into) with the preprocessing."""
        return Predictor(self.module(module), self.preprocessing)

    def predict(self, X, *, module: nn.Module | None = None) -> np.ndarray:
        """:meth:`Predictor.predict` of :meth:`predictor`."""
        return self.predictor(module).predict(X)

    def score(self, X, y, *, module: nn.Module | None = None) -> float:
        """:meth:`Predictor.score` of :meth:`predictor`."""
        return self.predictor(module).score(X, y)


def load_run(directory: str | Path) -> SavedRun:
    """The finished run in ``directory`` (a ``dcnn run --out`` folder), read back.

    Raises :class:`~dcnn.errors.ConfigError` naming the missing or unreadable file."""
    d = Path(directory)
    if not d.is_dir():
        raise ConfigError(f"run folder {d} does not exist; give the --out folder of a dcnn run")
    if (d / "compare.json").is_file() and not (d / "summary.json").exists():
        runs = sorted(str(p.parent) for p in d.glob("**/summary.json"))
        raise ConfigError(f"{d} is a dcnn compare folder, not one run; give one of its runs"
                          + (f", e.g. {runs[0]}" if runs else " (it holds no finished run)"))
    summary = _read_json(d / "summary.json", "no summary.json")
    config = _read_json(d / "config.json", "no config.json")
    pre = _read_json(d / PREPROCESSING_FILE,
                     "no preprocessing.json: made before dcnn saved models, or unfinished")
    if pre.get("format") != FORMAT:
        raise ConfigError(f"{d / PREPROCESSING_FILE} has format {pre.get('format')!r}, this "
                          f"dcnn reads {FORMAT}; run the experiment again")
    return SavedRun(directory=d, history=_history(d / "history.csv"), summary=summary,
                    config=config, preprocessing=pre)


def predict_file(directory: str | Path, data: str | Path, *, out: str | Path | None = None,
                 target_column: int | None = None) -> tuple[np.ndarray, float | None]:
    """Predictions of the run in ``directory`` for the samples of ``data``: a ``.csv`` of the
    run's ``d`` features per row (a header row allowed), or of ``d + 1`` columns with the
    target (at the run's ``data.target_column``, or ``target_column``); or an ``.npz`` with
    ``X`` (and optionally ``y``). With targets the score is returned too (else ``None``).
    ``out``: also write the predictions there, as a CSV with one column ``prediction``."""
    run = load_run(directory)
    n = run.preprocessing["n_features"]
    path = Path(data)
    if out is not None and Path(out).is_dir():
        raise DataError(f"--out {out} is a folder; give a file name such as "
                        f"{Path(out) / 'predictions.csv'}")
    if not path.is_file():
        raise DataError(f"data file '{path}' does not exist; give a .csv or .npz of samples")
    if path.suffix.lower() == ".npz":
        X, y = _npz_samples(path)
    elif path.suffix.lower() == ".csv":
        table = _csv_numbers(path)
        if table.shape[1] == n:
            X, y = table, None
        elif table.shape[1] == n + 1:
            column = run.config.get("data", {}).get("target_column", -1) \
                if target_column is None else target_column
            column = int(column) % table.shape[1]
            X, y = np.delete(table, column, axis=1), table[:, column]
        else:
            raise DataError(f"'{path}' has {table.shape[1]} columns but the run's model takes "
                            f"{n} features; give {n} columns (or {n + 1} with the target)")
    else:
        raise DataError(f"data file '{path}' has extension '{path.suffix}'; give a .csv or "
                        ".npz file")
    pred = run.predict(X)
    if out is not None:
        target = Path(out)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp")
        rows = pred.reshape(len(pred), -1)
        try:
            with open(tmp, "w", newline="") as fh:
                w = csv.writer(fh)
                w.writerow(["prediction"] if rows.shape[1] == 1 else
                           [f"prediction_{k}" for k in range(rows.shape[1])])
                w.writerows(rows.tolist())
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
    return pred, None if y is None else run.score(X, y)


def _npz_samples(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(f"'{path}' cannot be read as an .npz of numeric arrays ({exc}); save "
                        "the samples with np.savez(path, X=X)") from None
    if "X" not in arrays:
        have = ", ".join(sorted(arrays)) or "none"
        raise DataError(f"'{path}' has no array 'X' (it has: {have}); save the samples with "
                        "np.savez(path, X=X) (and y=y to score them)")
    return arrays["X"], arrays.get("y")


def _csv_numbers(path: Path) -> np.ndarray:
    """The numbers of a CSV (a UTF-8 byte-order mark and one header row allowed: a first
    row none of whose cells is a number), or a one-line error naming the bad row."""
    rows, width = [], None
    with open(path, newline="", encoding="utf-8-sig") as fh:
        for k, row in enumerate(csv.reader(fh), start=1):
            cells = [c.strip() for c in row]
            if not any(cells) or cells[0].startswith("#"):
                continue
            numbers = []
            for c in cells:
                try:
                    numbers.append(float(c))
                except ValueError:
                    numbers.append(None)
            if not rows and width is None and all(v is None for v in numbers):
                width = len(cells)                       # the header
                continue
            if any(v is None for v in numbers):
                bad = cells[numbers.index(None)]
                raise DataError(f"'{path}' row {k} has a value that is not a number "
                                f"({bad!r}); give numbers only (one header row allowed)")
            if rows and len(numbers) != len(rows[0]):
                raise DataError(f"'{path}' row {k} has {len(numbers)} values where the rows "
                                f"before have {len(rows[0])}; give every row the same columns")
            rows.append(numbers)
    if not rows:
        raise DataError(f"'{path}' has no samples; give one sample per row")
    return np.asarray(rows, dtype=np.float64)
