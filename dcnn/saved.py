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
            "classes": _listed(dataset.classes) if dataset.task != "regression" else None,
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
        try:
            template.load_state_dict(state)
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[-1].strip()
            raise ConfigError(f"{path} does not fit the model ({first}); give the model "
                              "the run trained") from None
        return template.to(dtype).eval()

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
    """Predictions of the run in ``directory`` for the samples of ``data`` (``.csv`` or
    ``.npz``): a file of the run's features alone, or with the target (the run's
    ``data.target_column``, or ``target_column``), in which case the score is returned too
    (else ``None``). ``out``: also write them as a CSV with one column ``prediction``."""
    from .data.files import read_data_file
    run = load_run(directory)
    n = run.preprocessing["n_features"]
    path = Path(data)
    if path.suffix.lower() == ".csv" and _columns(path) == n:
        X, y = _features_only(path), None
    else:
        column = run.config.get("data", {}).get("target_column", -1) \
            if target_column is None else target_column
        raw = read_data_file(path, target_column=int(column))
        X, y = raw.X, raw.y
    pred = run.predict(X)
    if out is not None:
        target = Path(out)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp")
        rows = pred.reshape(len(pred), -1)
        with open(tmp, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["prediction"] if rows.shape[1] == 1 else
                       [f"prediction_{k}" for k in range(rows.shape[1])])
            w.writerows(rows.tolist())
        os.replace(tmp, target)
    return pred, None if y is None else run.score(X, y)


def _columns(path: Path) -> int | None:
    with open(path, newline="") as fh:
        for row in csv.reader(fh):
            if row and not row[0].lstrip().startswith("#"):
                return len(row)
    return None


def _features_only(path: Path) -> np.ndarray:
    rows = []
    with open(path, newline="") as fh:
        for k, row in enumerate(csv.reader(fh)):
            if not row or row[0].lstrip().startswith("#"):
                continue
            try:
                rows.append([float(v) for v in row])
            except ValueError:
                if rows or k > 0:
                    raise DataError(f"{path} row {k + 1} has a non-numeric value; give "
                                    "numbers only (a header is allowed on the first row)")
    if not rows:
        raise DataError(f"{path} has no samples; give one sample per row")
    return np.asarray(rows, dtype=np.float64)
