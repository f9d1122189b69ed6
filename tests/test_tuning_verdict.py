"""The pure parts of a tuned, seeded comparison: grid parsing, the choice among grid points,
the folding of seeds into means and spreads, and the verdict."""
import math

import pytest

from dcnn.errors import ConfigError
from dcnn.tuning import Grid, choose, split_grid
from dcnn.verdict import aggregate, format_verdict, verdict

from conftest import error_of


def test_a_grid_is_split_from_the_method_spec():
    assert split_grid("gt") == ("gt", None)
    assert split_grid("gt:alpha0=0.25") == ("gt:alpha0=0.25", None)
    base, grid = split_grid("dgd:alpha0=0.1|0.25|1:schedule=constant")
    assert base == "dgd:schedule=constant"
    assert grid == Grid("alpha0", (0.1, 0.25, 1))
    assert split_grid("next-pl:surrogate=fl|pl")[1].values == ("fl", "pl")


@pytest.mark.parametrize("spec,fragment", [
    ("gt:alpha0=0.1|0.2:lr=1|2", "grids over several keys (alpha0, lr)"),
    ("gt:alpha0=0.1||0.2", "is not key=value|value"),
    ("gt:alpha0|0.2", "is not key=value|value"),
    ("gt:alpha0=0.1|0.1", "lists a value twice"),
])
def test_a_bad_grid_is_refused_with_one_line(spec, fragment):
    error_of(lambda: split_grid(spec), fragment, kind=ConfigError)


def test_relative_factors_must_be_positive_numbers():
    error_of(lambda: Grid("lr", (0.5, -1.0), relative=True), "positive numbers",
             kind=ConfigError)
    error_of(lambda: Grid("lr", ()), "is empty", kind=ConfigError)


def _pt(obj, rounds=None, status="ok"):
    return {"status": status, "final_objective": obj, "objective_rounds": rounds}


def test_the_choice_is_the_lowest_final_objective_of_the_points_that_ran():
    assert choose([_pt(0.3), _pt(0.1), _pt(0.2)]) == 1
    # a diverged point never wins, whatever its number
    assert choose([_pt(0.3), _pt(None, status="diverged"), _pt(float("nan"))]) == 0
    assert choose([_pt(None, status="diverged"), _pt(None, status="skipped")]) is None
    assert choose([]) is None


def test_a_tie_goes_to_the_fewest_rounds_to_the_objective_target_then_the_first():
    assert choose([_pt(0.1, 50), _pt(0.1 * (1 + 1e-12), 20), _pt(0.1, None)]) == 1
    assert choose([_pt(0.1, None), _pt(0.1, None)]) == 0
    # a real difference is not a tie, whatever the rounds
    assert choose([_pt(0.1, 50), _pt(0.1 * (1 + 1e-6), 20)]) == 0


FIG = ("final_objective", "test_rounds", "test_bytes_per_agent", "test_time_s",
       "objective_rounds", "objective_bytes_per_agent", "objective_time_s")


def _row(m, obj, rounds=None, status="ok", t=1.0):
    r = {"method": m, "status": status, "final_objective": obj, "test_rounds": rounds,
         "test_bytes_per_agent": None if rounds is None else 100.0 * rounds,
         "test_time_s": None if rounds is None else t,
         "objective_rounds": None, "objective_bytes_per_agent": None, "objective_time_s": None}
    if status != "ok":
        r = {k: (None if k in FIG else v) for k, v in r.items()}
    return r


def test_seeds_fold_into_means_with_their_spread():
    seeds = [[_row("a", 1.0, 10), _row("b", 2.0, None)],
             [_row("a", 3.0, 30), _row("b", 4.0, 40)],
             [_row("a", 2.0, 20), _row("b", 6.0, 50, status="diverged")]]
    a, b = aggregate(seeds, figures=FIG)
    assert (a["status"], a["seeds"]) == ("ok", 3)
    assert a["final_objective"] == pytest.approx(2.0)
    assert (a["final_objective_min"], a["final_objective_max"]) == (1.0, 3.0)
    assert a["test_rounds"] == 20 and a["test_reached"] == 3
    # b: diverged once, reached the target on one of the others: no mean to the target
    assert b["status"] == "diverged on 1 of 3 seeds"
    assert b["final_objective"] == pytest.approx(3.0)           # over the seeds that ran
    assert b["test_rounds"] is None and b["test_reached"] == 1
    assert (b["test_rounds_min"], b["test_rounds_max"]) == (40, 40)
    # one seed: the row itself
    (one,) = aggregate([[_row("a", 1.5, 10)]], figures=FIG)
    assert one["final_objective"] == 1.5 and one["test_rounds"] == 10
    with pytest.raises(ValueError):
        aggregate([[_row("a", 1.0)], [_row("b", 1.0)]], figures=FIG)


def test_the_verdict_names_the_best_and_every_ratio_and_leaves_the_reference_out():
    rows = [_row("next-pl", 1.0, 20, t=2.0), _row("gt", 1.0, 50, t=1.0),
            _row("dgd", 1.0, None), _row("centralized", 1.0, 5, t=0.1),
            _row("extra", None, None, status="diverged")]
    v = verdict(rows, targets={"test": 90.0, "objective": None},
                contenders=["next-pl", "gt", "dgd", "extra"])
    assert v["objective"] is None
    t = v["test"]
    assert t["reached"] == ["next-pl", "gt"] and t["not_reached"] == ["dgd", "extra"]
    assert t["by"]["rounds"]["best"] == ["next-pl"] and t["by"]["rounds"]["value"] == 20
    assert t["by"]["rounds"]["runner_up"] == "gt"
    assert t["by"]["rounds"]["ratio_to_runner_up"] == pytest.approx(2.5)
    assert t["by"]["time_s"]["best"] == ["gt"]
    assert t["by"]["time_s"]["ratios"] == {"next-pl": pytest.approx(2.0)}
    line = format_verdict(v, metric="accuracy", seeds=3)
    assert "least rounds: next-pl 20 (gt 2.5x)" in line
    assert "least loop time: gt 1 s (next-pl 2x)" in line
    assert "not reached: dgd, extra" in line and "mean of 3 seeds" in line
    assert "centralized" not in line


def test_a_tie_is_reported_as_one_and_nothing_reached_is_said_plainly():
    rows = [_row("a", 1.0, 20), _row("b", 1.0, 20)]
    v = verdict(rows, targets={"test": 1.0, "objective": 2.0}, contenders=["a", "b"])
    assert v["test"]["by"]["rounds"]["best"] == ["a", "b"]
    assert v["test"]["by"]["rounds"]["runner_up"] is None
    line = format_verdict(v, metric="mse")
    assert "a and b (tie) 20" in line
    assert "verdict (objective target 2): no method reached it" in line
    # a best figure of 0 (no bytes) makes every other one infinitely larger, not an error
    rows = [_row("a", 1.0, 20), _row("b", 1.0, 30)]
    rows[0]["test_bytes_per_agent"] = 0.0
    v = verdict(rows, targets={"test": 1.0}, contenders=["a", "b"])
    assert math.isinf(v["test"]["by"]["bytes_per_agent"]["ratios"]["b"])


def _fake(objective):
    """A run's result as ``dcnn.compare._tune`` reads it: a History and a summary."""
    from types import SimpleNamespace

    from dcnn.metrics import History
    h = History()
    for t, obj in ((0, 1.0), (10, objective)):
        h.append({"iteration": t, "objective": obj, "test_metric": 50.0, "consensus_error": 0.0,
                  "bytes_per_agent": 0.0, "time_s": 0.0, "exchanges": 0, "busiest_bytes": 0})
    return SimpleNamespace(history=h, summary={"centralized": {"objective": 0.1,
                                                                "test_metric": 90.0},
                                               "task": "classification"})


def _tune_with(grid, outcome):
    """``_tune`` on ``grid`` with runs whose outcome is ``outcome(value)`` (an objective, or
    None: diverged) on two seeds."""
    from dcnn.compare import _tune
    from dcnn.config import load_config
    seen = []

    def run(c):
        seen.append(c)
        v = c.algorithm.explicit.get(grid.key, "default")
        obj = outcome(2.0 if v == "default" else v)
        return [("diverged", "NaN")] if obj is None else [("ok", _fake(obj))] * 2
    cfg = load_config(overrides=["run.iterations=20", "run.checkpoint_every=5"])
    record = _tune("gt", cfg, grid, rounds=10, run=run, log=lambda m: None, gap=0.01,
                   auto=lambda c, key: 2.0)
    return record, seen


def test_a_grid_where_every_point_diverges_is_reported_not_fatal():
    record, seen = _tune_with(Grid("lr", (0.25, 0.5, 1.0, 2.0, 4.0), relative=True),
                              lambda v: None)
    assert record["chosen"] is None and record["setting"] is None
    assert [p["status"] for p in record["points"]] == ["diverged"] * 5     # not extended
    # tuning runs keep no checkpoints (they have no folder) and run the tuning rounds
    assert all(c.run.checkpoint_every == 0 and c.run.iterations == 10 for c in seen)


def test_a_best_end_extends_the_grid_until_it_stops_improving():
    # better with larger steps up to lr = 16 (factor 8), diverged past it
    record, _ = _tune_with(Grid("lr", (0.25, 0.5, 1.0, 2.0, 4.0), relative=True),
                           lambda v: None if v > 16 else 1.0 / v)
    factors = [p["factor"] for p in record["points"]]
    assert factors == [0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0]
    assert record["chosen"] == pytest.approx(16.0) and not record["at_edge"]
    # a best interior point: nothing added; factor 1 is the default itself (no key set)
    record, _ = _tune_with(Grid("lr", (0.25, 0.5, 1.0, 2.0, 4.0), relative=True),
                           lambda v: (v - 2.0) ** 2 + 0.2)
    assert len(record["points"]) == 5 and record["setting"] == {}
    assert record["points"][2]["default"]
    # still improving after EXTEND more points: the choice is flagged as an end of the grid
    record, _ = _tune_with(Grid("lr", (0.25, 0.5, 1.0), relative=True), lambda v: 1.0 / v)
    assert len(record["points"]) == 3 + 4 and record["at_edge"]


def test_a_grid_of_mixed_values_is_tuned_without_an_order():
    record, _ = _tune_with(Grid("lr", (0.1, "auto", 0.2)),
                           lambda v: 0.5 if v == "auto" else v)
    assert record["chosen"] == 0.1 and not record["at_edge"]
