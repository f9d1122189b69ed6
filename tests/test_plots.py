"""The run's figure, read from the figure objects: log axes that start at the data (not at the
1e-32 of a consensus error that is zero at iteration 0), the stationarity measure named,
accuracy in %, the agents' band drawn and visible."""
import math

import matplotlib.pyplot as plt
import pytest

from dcnn.metrics import History
from dcnn.report import history_figure, log_values


def _history(consensus):
    h = History()
    for k, c in enumerate(consensus):
        h.append({"iteration": 10 * k, "objective": 1.0 / (k + 1), "grad_norm": 0.5 / (k + 1),
                  "consensus_error": c, "test_metric": 60.0 + k, "agent_test_min": 58.0 + k,
                  "agent_test_max": 61.0 + k})
    return h


def test_zero_consensus_at_the_start_does_not_stretch_the_log_axis():
    fig = history_figure(_history([0.0, 1e-33, 3e-4, 1e-5, 2e-6]), metric_name="accuracy")
    try:
        obj, grad, cons, test = fig.axes
        assert cons.get_yscale() == "log"
        low, high = cons.get_ylim()
        assert 1e-7 <= low <= 2e-6 and 3e-4 <= high < 1e-2       # the data's decades only
        assert "||grad U(w_bar)||" in grad.get_ylabel()
        assert test.get_ylabel() == "test accuracy (%)" and test.get_yscale() == "linear"
        # the band between the agents' min and max is filled and outlined
        assert len(test.collections) == 1
        ys = [line.get_ydata() for line in test.get_lines()]
        assert [58.0, 59.0, 60.0, 61.0, 62.0] in [list(y) for y in ys]
        assert [61.0, 62.0, 63.0, 64.0, 65.0] in [list(y) for y in ys]
    finally:
        plt.close(fig)


def test_with_l1_the_prox_gradient_norm_is_named_and_mse_has_no_percent():
    fig = history_figure(_history([0.0] * 3), metric_name="mse", l1=True)
    try:
        _, grad, cons, test = fig.axes
        assert "prox" in grad.get_ylabel() and test.get_ylabel() == "test mse"
        assert cons.get_yscale() == "linear"        # nothing positive to put on a log axis
    finally:
        plt.close(fig)


@pytest.mark.parametrize("ys,want", [([0.0, 1e-30, 1e-3], [None, None, 1e-3]),
                                     ([float("inf"), 2.0, -1.0], [None, 2.0, None])])
def test_log_values_drop_what_a_log_axis_cannot_show(ys, want):
    got = log_values(ys)
    assert [None if math.isnan(g) else g for g in got] == want


def test_the_comparison_figure_keeps_methods_apart_and_leaves_out_zero_bytes():
    from dcnn.compare_tables import compare_figure

    def run(name, bytes_per_round):
        h = History()
        for k in range(4):
            h.append({"iteration": 10 * k, "objective": 1.0 / (k + 1), "time_s": 0.1 * k,
                      "bytes_per_agent": bytes_per_round * k, "consensus_error": 1e-3 / (k + 1),
                      "test_metric": 70.0 + k})
        return h
    fig = compare_figure({"next-pl": run("next-pl", 1e5), "gt": run("gt", 2e5),
                          "ddp": run("ddp", 0.0)}, metric="accuracy",
                         reference={"objective": 0.1, "test_metric": 75.0}, title="t",
                         headline="verdict (test accuracy target 74): least rounds: gt 30")
    try:
        rounds, mb = fig.axes[0], fig.axes[1]
        styles = {(ln.get_color(), ln.get_linestyle(), ln.get_marker())
                  for ln in rounds.get_lines() if ln.get_label() in ("next-pl", "gt", "ddp")}
        assert len(styles) == 3                              # three distinct styles
        drawn = {ln.get_label() for ln in mb.get_lines()}
        assert "ddp" not in drawn and {"next-pl", "gt"} <= drawn
        assert any("ddp" in t.get_text() for t in mb.texts)  # named instead of drawn at 0
        assert fig.axes[4].get_ylabel() == "test accuracy (%)"
        assert "least rounds: gt" in fig._suptitle.get_text()
    finally:
        plt.close(fig)
