"""The maths of codistillation's targets, and how alike two models' predictions are.

:func:`distillation_target` is the teachers' averaged prediction a model distils towards
(:mod:`dcnn.baselines.schemes.codistillation`); :func:`churn` is the prediction disagreement
of two models or two retrains (Anil et al., ICLR 2018); :func:`checksum` tells
parameter vectors apart in the traces; :func:`final_metrics` reports every model's metrics and
the disagreement of models 0 and 1.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ...errors import ConfigError
from ...problems import FlatModel
from ..runtime.checks import TASKS

__all__ = ["distillation_target", "checksum", "predicted_classes", "churn", "final_metrics"]


def distillation_target(outputs: Sequence[torch.Tensor], *, loss: str) -> torch.Tensor:
    """The teachers' averaged prediction ``p = mean_j s(f_j)``: probabilities (sigmoid for
    one output, softmax for several) for ``cross_entropy``, raw outputs for ``squared``."""
    if loss == "squared":
        preds = list(outputs)
    elif outputs[0].shape[-1] == 1:
        preds = [torch.sigmoid(o) for o in outputs]
    else:
        preds = [torch.softmax(o, dim=-1) for o in outputs]
    return torch.stack(preds).mean(0)


def checksum(w: torch.Tensor) -> float:
    """``sum_i w_i (1 + i/P)``: one number that tells parameter vectors (and permutations of
    them) apart, for the traces."""
    w = w.detach().reshape(-1).to(device="cpu", dtype=torch.float64)
    ramp = 1.0 + torch.arange(len(w), dtype=torch.float64) / max(len(w), 1)
    return float((w * ramp).sum())


def _as_array(a) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().numpy()
    return np.asarray(a)


def predicted_classes(outputs, *, threshold: float = 0.0) -> np.ndarray:
    """Class labels from predictions: a 1-D array is taken as labels already; ``(M, 1)``
    outputs give ``out > threshold`` (0 for logits, 0.5 for squared-loss outputs); ``(M, O)``
    outputs give the argmax."""
    out = _as_array(outputs)
    if out.ndim == 1:
        return out
    if out.ndim != 2:
        raise ConfigError(f"predictions must be labels (M,) or outputs (M, O), got shape "
                          f"{out.shape}")
    if out.shape[1] == 1:
        return (out[:, 0] > threshold).astype(np.int64)
    return out.argmax(1)


def churn(pred_a, pred_b, *, task: str, threshold: float = 0.0) -> float:
    """Prediction disagreement of two models (or two retrains) on the same samples.

    Classification: the fraction of samples whose predicted classes differ
    (:func:`predicted_classes`); regression: the RMS difference of the predictions.

    >>> churn([0, 1, 2, 1], [0, 2, 2, 1], task="multiclass")
    0.25
    >>> churn([[1.0], [2.0]], [[1.0], [4.0]], task="regression") == 2 ** 0.5
    True
    """
    if task not in TASKS:
        raise ConfigError(f"task {task!r} is unknown; choose one of: {', '.join(TASKS)}")
    a, b = _as_array(pred_a), _as_array(pred_b)
    if a.shape != b.shape or a.size == 0:
        raise ConfigError(f"churn needs two non-empty predictions of the same shape, got "
                          f"{a.shape} and {b.shape}")
    if task == "regression":
        return float(np.sqrt(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)))
    return float(np.mean(predicted_classes(a, threshold=threshold)
                         != predicted_classes(b, threshold=threshold)))


def final_metrics(final: list[torch.Tensor], flat: FlatModel, *, metrics, loss, task, test,
                   pooled) -> dict:
    """Every model's final metrics, and the disagreement of models 0 and 1 (on the test set,
    else on the training set)."""
    recs = [metrics(w) for w in final]
    X = (test if test is not None else pooled)[0]
    x = torch.as_tensor(np.asarray(X), dtype=flat.dtype)
    with torch.no_grad():
        outs = [flat.apply(w, x) for w in final[:2]]
    return {"final_test_metric_per_model": [r.get("test_metric") for r in recs],
            "final_train_metric_per_model": [r["train_metric"] for r in recs],
            "final_objective_per_model": [r["objective"] for r in recs],
            "disagreement": churn(outs[0], outs[1], task=task,
                                  threshold=0.5 if loss == "squared" else 0.0),
            "disagreement_on": "test" if test is not None else "train"}
