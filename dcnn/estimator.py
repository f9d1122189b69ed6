"""scikit-learn estimators around one decentralized run: :class:`DecentralizedClassifier` and
:class:`DecentralizedRegressor`.

``fit(X, y)`` trains ``method`` over ``agents`` agents in this process (the same pipeline as
``dcnn run``: the data standardised, split over the agents, the model trained by the one loop
or a parallel trainer) and keeps the network at the agents' average ``w_bar``; ``predict``,
``predict_proba`` (the cross-entropy loss: a sigmoid or softmax of the outputs) and ``score``
(scikit-learn's: accuracy, R^2) use it on raw samples. ``history_`` is the run's
:class:`dcnn.metrics.History` (its test metric is measured on the training data: ``fit``
holds nothing out). Any label values work (they are encoded as ``0..C-1`` and decoded back).

>>> import numpy as np
>>> from dcnn.estimator import DecentralizedClassifier
>>> rng = np.random.default_rng(0)
>>> X = rng.normal(size=(80, 3)); y = np.where(X[:, 0] > 0, "yes", "no")
>>> clf = DecentralizedClassifier(iterations=30).fit(X, y)
>>> clf.classes_.tolist(), clf.score(X, y) > 0.9
(['no', 'yes'], True)
"""
from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

__all__ = ["DecentralizedClassifier", "DecentralizedRegressor"]


class _Decentralized(BaseEstimator):
    """What the two estimators share: the run's settings and its fit."""

    _task: str

    def __init__(self, method: str = "next-pl", *, model=None, agents: int = 4,
                 iterations: int = 100, graph: str | None = None, loss: str | None = None,
                 regularizer: str | None = None, lam: float | None = None, seed: int = 0,
                 settings: dict | None = None):
        self.method, self.model, self.agents, self.iterations = method, model, agents, iterations
        self.graph, self.loss, self.regularizer, self.lam = graph, loss, regularizer, lam
        self.seed, self.settings = seed, settings

    def _fit(self, X, y, task: str, loss: str | None):
        from .experiment import Experiment
        settings = {"run.reference": False, "run.eval_every": max(1, self.iterations),
                    "data.task": task, **(self.settings or {})}
        exp = Experiment(model=self.model, X=X, y=y, X_test=X, y_test=y, method=self.method,
                         agents=self.agents, iterations=self.iterations, seed=self.seed,
                         graph=self.graph, loss=loss, regularizer=self.regularizer,
                         lam=self.lam, settings=settings)
        res = exp.run()
        self.predictor_, self.history_ = res.predictor, res.history
        return self

    def _outputs(self, X) -> np.ndarray:
        check_is_fitted(self, "predictor_")
        X = validate_data(self, X, reset=False)
        return self.predictor_.outputs(X).double().numpy()


class DecentralizedClassifier(ClassifierMixin, _Decentralized):
    """A classifier trained by a decentralized method (see the module docstring); ``loss``
    defaults to ``"cross_entropy"``."""

    def fit(self, X, y):
        X, y = validate_data(self, X, y)
        check_classification_targets(y)
        self.classes_, index = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError(f"y has {len(self.classes_)} class; give at least 2")
        task = "binary" if len(self.classes_) == 2 else "multiclass"
        return self._fit(X, index, task, self.loss or "cross_entropy")

    def decision_function(self, X) -> np.ndarray:
        """The network's outputs: one score per sample (binary) or per class."""
        out = self._outputs(X)
        return out[:, 0] if out.shape[1] == 1 else out

    def predict(self, X) -> np.ndarray:
        out = self._outputs(X)
        if out.shape[1] == 1:
            squared = self.predictor_.preprocessing["loss"] == "squared"
            index = (out[:, 0] > (0.5 if squared else 0.0)).astype(int)
        else:
            index = out.argmax(axis=1)
        return self.classes_[index]

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities (the cross-entropy loss only: a squared-loss network's outputs
        are not probabilities)."""
        out = self._outputs(X)
        if self.predictor_.preprocessing["loss"] != "cross_entropy":
            raise ValueError("predict_proba needs loss='cross_entropy'; this classifier was "
                             "fitted with the squared loss (use predict or "
                             "decision_function)")
        if out.shape[1] == 1:
            p = 1.0 / (1.0 + np.exp(-out[:, 0]))
            return np.stack([1.0 - p, p], axis=1)
        e = np.exp(out - out.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)


class DecentralizedRegressor(RegressorMixin, _Decentralized):
    """A regressor trained by a decentralized method (see the module docstring); the squared
    loss; targets of one or several columns, in their own units."""

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True          # (M, k) targets are trained as such
        return tags

    def fit(self, X, y):
        X, y = validate_data(self, X, y, y_numeric=True, multi_output=True)
        return self._fit(X, np.asarray(y, dtype=np.float64), "regression", self.loss)

    def predict(self, X) -> np.ndarray:
        check_is_fitted(self, "predictor_")
        X = validate_data(self, X, reset=False)
        return self.predictor_.predict(X)
