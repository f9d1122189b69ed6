"""The scikit-learn estimators: scikit-learn's own estimator checks pass, and the fitted
network predicts what the run measured (its History's metric, on the training data that
fit evaluates on, equals the estimator's accuracy)."""
import warnings

import numpy as np
import pytest

from dcnn.estimator import DecentralizedClassifier, DecentralizedRegressor


@pytest.mark.parametrize("estimator", [DecentralizedClassifier(iterations=5),
                                       DecentralizedRegressor(iterations=5)],
                         ids=["classifier", "regressor"])
def test_scikit_learns_estimator_checks_pass(estimator):
    from sklearn.utils.estimator_checks import check_estimator
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = check_estimator(estimator, on_fail=None)
    failed = [(r["check_name"], str(r["exception"])[:200]) for r in results
              if r["status"] == "failed"]
    assert len(results) > 40 and not failed, failed


def test_the_classifier_predicts_what_its_run_measured():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(150, 4))
    y = np.array(["a", "b", "c"])[np.argmax(X[:, :3] + 0.3 * rng.normal(size=(150, 3)), 1)]
    clf = DecentralizedClassifier("gt", agents=5, iterations=60).fit(X, y)
    assert clf.classes_.tolist() == ["a", "b", "c"]
    assert 100 * clf.score(X, y) == pytest.approx(clf.history_.last["test_metric"])
    assert clf.score(X, y) > 0.8
    proba = clf.predict_proba(X)
    assert np.allclose(proba.sum(axis=1), 1.0)
    assert np.array_equal(clf.classes_[proba.argmax(axis=1)], clf.predict(X))
    squared = DecentralizedClassifier(iterations=5, loss="squared").fit(X, y)
    with pytest.raises(ValueError, match="cross_entropy"):
        squared.predict_proba(X)


def test_the_regressor_keeps_the_targets_units_and_columns():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(120, 3))
    Y = np.c_[100 + 20 * X[:, 0], -5 * X[:, 1] + X[:, 2]]      # two columns, far from 0 / 1
    reg = DecentralizedRegressor(agents=4, iterations=80).fit(X, Y)
    pred = reg.predict(X)
    assert pred.shape == Y.shape and reg.score(X, Y) > 0.9
    assert abs(pred[:, 0].mean() - 100) < 5
    one = DecentralizedRegressor(iterations=5).fit(X, Y[:, 0])
    assert one.predict(X).shape == (120,)


def test_the_docstring_example_runs():
    import doctest

    import dcnn.estimator
    result = doctest.testmod(dcnn.estimator)
    assert result.attempted > 0 and result.failed == 0
