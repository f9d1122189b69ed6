"""Rounds to the "centralized minus one point" target, read off a History."""
from dcnn.metrics import History, rounds_to_target, target_metric


def _history(metrics):
    h = History()
    for k, m in enumerate(metrics):
        h.append({"iteration": 10 * k, "test_metric": m, "bytes_per_agent": 100.0 * k,
                  "time_s": 0.5 * k})
    return h


def test_accuracy_target_is_first_evaluation_at_or_above():
    target = target_metric(98.0, "binary")
    assert target == 97.0
    hit = rounds_to_target(_history([50.0, 96.9, 97.0, 99.0]), target=target, task="binary")
    assert hit == {"target": 97.0, "iteration": 20, "bytes_per_agent": 200.0, "time_s": 1.0}
    assert rounds_to_target(_history([50.0, 96.0]), target=target, task="binary") is None


def test_mse_target_is_first_evaluation_at_or_below():
    target = target_metric(0.5, "regression")
    assert abs(target - 0.51) < 1e-15
    hit = rounds_to_target(_history([2.0, 0.6, 0.505]), target=target, task="regression")
    assert hit["iteration"] == 20
