"""``dcnn compare`` end to end: one table consistent with the per-method summaries, the
same numbers under ``mpiexec -n 2``, identical shards and graphs for every method, and bad
input refused with one line before anything runs."""
import csv
import json
import math

import pytest

from dcnn.compare import DEFAULT_METHODS, DEFAULT_METHODS_DIRECTED, ROW_KEYS, run_compare
from dcnn.config import load_config
from dcnn.errors import ConfigError, LaunchError

from conftest import error_of, run_mpi
from test_cli import dcnn

METHODS = "next-pl,gt,dgd,centralized"
SMALL = ["--set", "run.iterations=40", "--set", "run.eval_every=5", "--set", "run.agents=4",
         "--quiet"]


def _rows(path):
    with open(path) as fh:
        return {r["method"]: r for r in csv.DictReader(fh)}


def _num(x):
    return None if x == "" else float(x)


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    out = tmp_path_factory.mktemp("cmp") / "cmp"
    res, _ = dcnn("compare", "--methods", METHODS, *SMALL, "--out", str(out), timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    return out


def test_compare_writes_table_plot_and_one_folder_per_method(compared):
    for name in ("compare.csv", "compare.json", "compare.md", "compare.png"):
        assert (compared / name).is_file()
    rows = _rows(compared / "compare.csv")
    assert list(rows) == METHODS.split(",")
    assert list(next(iter(rows.values()))) == list(ROW_KEYS)
    for m in rows:
        for name in ("history.csv", "summary.json", "curves.png", "config.json"):
            assert (compared / m / name).is_file(), (m, name)


def test_markdown_table_has_the_csv_figures(compared):
    rows = _rows(compared / "compare.csv")
    md = [line.split(" | ") for line in (compared / "compare.md").read_text().splitlines()
          if line.startswith("| ") and not line.startswith("| method")]
    assert [cells[0][2:] for cells in md] == list(rows)
    for cells in md:
        row = rows[cells[0][2:]]
        assert float(cells[1]) == pytest.approx(float(row["final_objective"]), rel=1e-3)
        test = cells[3].split(" / ")
        if row["test_rounds"]:
            assert int(test[0]) == int(row["test_rounds"])
            assert float(test[1]) == pytest.approx(float(row["test_bytes_per_agent"]) / 1e6,
                                                   rel=1e-2)
        else:
            assert test == ["not reached"]


def test_table_agrees_with_every_method_summary(compared):
    rows = _rows(compared / "compare.csv")
    meta = json.loads((compared / "compare.json").read_text())
    ref = meta["centralized"]
    for m, row in rows.items():
        s = json.loads((compared / m / "summary.json").read_text())
        assert s["centralized"] == ref                  # one reference for all
        assert float(row["final_objective"]) == s["final"]["objective"]
        assert float(row["final_test_metric"]) == s["final"]["test_metric"]
        assert float(row["final_consensus_error"]) == s["final"]["consensus_error"]
        assert float(row["bytes_per_agent"]) == s["bytes_sent_per_agent"]
        assert math.isclose(float(row["objective_gap"]),
                            (s["final"]["objective"] - ref["objective"]) / ref["objective"])
        hit = s["to_target"]                            # the summary's own test target
        if hit is None:
            assert row["test_rounds"] == ""
        else:
            assert int(row["test_rounds"]) == hit["iteration"]
            assert float(row["test_bytes_per_agent"]) == hit["bytes_per_agent"]
        # the objective target: the first evaluation at or below it, from history.csv
        with open(compared / m / "history.csv") as fh:
            hist = list(csv.DictReader(fh))
        first = next((h for h in hist if float(h["objective"]) <= meta["targets"]["objective"]),
                     None)
        assert _num(row["objective_rounds"]) == (None if first is None
                                                 else float(first["iteration"]))


def test_every_method_saw_the_same_problem_and_graph(compared):
    configs = [json.loads((compared / m / "config.json").read_text())
               for m in METHODS.split(",")]
    for c in configs[1:]:
        for section in ("run", "data", "model", "topology"):
            keep = {k: v for k, v in c[section].items() if k not in ("progress", "reference")}
            base = {k: v for k, v in configs[0][section].items()
                    if k not in ("progress", "reference")}
            assert keep == base, section
    starts = [json.loads((compared / m / "summary.json").read_text()) for m in METHODS.split(",")]
    hist0 = []
    for m in METHODS.split(","):
        with open(compared / m / "history.csv") as fh:
            hist0.append(next(csv.DictReader(fh)))
    assert len({h["objective"] for h in hist0}) == 1      # same w[0], same data
    assert starts[-1]["bytes_sent_per_agent"] == 0         # centralized sends nothing


@pytest.mark.mpi
@pytest.mark.slow
def test_same_table_under_mpiexec_2(compared, tmp_path):
    out = tmp_path / "cmp2"
    res = run_mpi(2, ["-m", "dcnn", "compare", "--methods", METHODS, *SMALL, "--out", str(out)],
                  timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    one, two = _rows(compared / "compare.csv"), _rows(out / "compare.csv")
    for m in one:
        for k in ("final_objective", "final_test_metric", "bytes_per_agent", "test_rounds"):
            a, b = _num(one[m][k]), _num(two[m][k])
            assert (a is None and b is None) or math.isclose(a, b, rel_tol=1e-9), (m, k, a, b)
        # the modelled link's counters come from the global graph: the same on every launch
        hist = []
        for folder in (compared, out):
            with open(folder / m / "history.csv") as fh:
                hist.append([(r["exchanges"], r["busiest_bytes"]) for r in csv.DictReader(fh)])
        assert hist[0] == hist[1], m


def test_default_methods_skip_what_the_graph_does_not_allow():
    cfg = load_config(overrides=["run.iterations=2", "run.eval_every=1", "run.agents=3",
                                 "run.progress=false", "run.reference=false"])
    res = run_compare(cfg, out=None, verbose=False)
    assert list(res.histories) == [m for m in DEFAULT_METHODS if m != "extra"]
    cfg.topology.graph = "random_digraph"
    res = run_compare(cfg, out=None, verbose=False)
    assert list(res.histories) == list(DEFAULT_METHODS_DIRECTED)


@pytest.mark.parametrize("args,fragments", [
    (["--methods", "next-pl,gtt"], ("method 'gtt' is unknown", "did you mean 'gt'")),
    (["--methods", "gt,gt"], ("lists a method twice",)),
    (["--methods", "next-pl,extra"], ("method 'extra' needs a static graph",
                                      "drop it from --methods")),
    (["--methods", "gt", "--set", "topology.graph='directed_ring'"],
     ("method 'gt' needs an undirected graph",)),
    (["--methods", "gt", "--gap", "0"], ("--gap must lie in (0, 1)",)),
    (["--methods", "gt", "--seeds", "0"], ("--seeds must be a positive integer",)),
    (["--methods", "gt", "--tune", "--tune-rounds", "0"],
     ("--tune-rounds must be a positive integer",)),
    (["--methods", "next-pl,gt:alpha0=0.5|2"], ("algorithm.alpha0 must be in (0, 1], got 2",)),
    (["--methods", "gt:alpha0=0.5|1:lr=1|2"], ("grids over several keys",)),
    (["--methods", "gt:alpha0=0.5|0.5"], ("lists a value twice",)),
    (["--methods", "gt:tau=1|2"], ("'gt' has no option 'tau'",)),
    (["--methods", "gt", "--tune-factors", "1,2"], ("add --tune",)),
])
def test_bad_input_fails_with_one_line_before_running(args, fragments, tmp_path):
    out = tmp_path / "never"
    res, seconds = dcnn("compare", *args, "--out", str(out), "--quiet", timeout=60)
    assert res.returncode == 2
    lines = [x for x in res.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("dcnn: error: "), res.stderr
    for f in fragments:
        assert f in lines[0], (f, lines[0])
    assert not out.exists()


def test_python_api_refuses_an_unknown_method():
    cfg = load_config(overrides=["run.progress=false"])
    error_of(lambda: run_compare(cfg, methods=["nxt-pl"], out=None, verbose=False),
             "did you mean 'next-pl'", kind=ConfigError)


def test_a_diverging_method_is_reported_and_the_others_still_run(tmp_path):
    # run.blowup = 0: the guard stops only NaN/inf, so that compare's own rule (a final
    # objective above 100 times the start) is what catches lr = 1000 (with the default bound
    # the guard stops it at its first evaluation)
    cfg = load_config(overrides=["run.iterations=30", "run.eval_every=10", "run.agents=4",
                                 "run.progress=false", "run.blowup=0"])
    # lr = 1e8: NaN within 30 rounds; lr = 1000: finite (~1e289) but 1e289 times the start
    res = run_compare(cfg, methods=["gt:lr=1e8", "gt:lr=1000", "next-pl",
                                    "dgd:schedule=constant:alpha0=0.2"],
                      out=tmp_path, verbose=False)
    status = {r["method"]: r["status"] for r in res.rows}
    assert status == {"gt:lr=1e8": "diverged", "gt:lr=1000": "diverged", "next-pl": "ok",
                      "dgd:schedule=constant:alpha0=0.2": "ok"}
    assert res.histories["gt:lr=1e8"] is None and res.histories["gt:lr=1000"] is not None
    assert res.summaries["dgd:schedule=constant:alpha0=0.2"]["schedule"] == "constant"
    assert res.summaries["dgd:schedule=constant:alpha0=0.2"]["alpha0"] == 0.2
    assert (tmp_path / "compare.png").is_file()
    assert "diverged" in (tmp_path / "compare.csv").read_text()


def test_a_method_that_does_not_fit_the_launch_is_skipped_and_the_others_still_run(tmp_path):
    # chunked local parallelism needs 2 x 2 blocks; the default MLP has 2 Linear layers
    cfg = load_config(overrides=["run.iterations=20", "run.eval_every=10", "run.agents=4",
                                 "run.progress=false"])
    chunked = "local-parallel:local_mode=chunked"
    res = run_compare(cfg, methods=["next-pl", chunked, "ddp"], out=tmp_path, verbose=False)
    assert [r["method"] for r in res.rows] == ["next-pl", "ddp"]
    assert all(r["status"] == "ok" for r in res.rows)
    saved = json.loads((tmp_path / "compare.json").read_text())
    assert saved["methods"] == ["next-pl", "ddp"]
    assert "4 blocks but the MLP has 2 Linear layers" in saved["skipped"][chunked]
    assert chunked not in _rows(tmp_path / "compare.csv")
    # nothing fits: one line naming why, no table
    error_of(lambda: run_compare(cfg, methods=[chunked], out=None, verbose=False),
             "no method fits this launch", "4 blocks", kind=LaunchError)


@pytest.mark.mpi
def test_a_method_that_does_not_fit_the_ranks_is_skipped_under_mpiexec_2(tmp_path):
    # 3 models cannot be placed on 2 ranks (the same check and message on both ranks)
    out = tmp_path / "cmp"
    res = run_mpi(2, ["-m", "dcnn", "compare", "--methods", "gt,codistillation:models=3,dgd",
                      "--set", "run.iterations=10", "--set", "run.eval_every=5",
                      "--set", "run.agents=4", "--set", "run.reference=false", "--quiet",
                      "--out", str(out)], timeout=180)
    assert res.returncode == 0, res.stderr[-3000:]
    assert list(_rows(out / "compare.csv")) == ["gt", "dgd"]
    skipped = json.loads((out / "compare.json").read_text())["skipped"]
    assert "3 models do not fit 2 ranks" in skipped["codistillation:models=3"]


TUNED = "next-fl,gt:lr=0.05|0.2|0.8,centralized"


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    out = tmp_path_factory.mktemp("tuned") / "cmp"
    res, _ = dcnn("compare", "--methods", TUNED, "--tune", "--tune-rounds", "15", "--seeds",
                  "2", "--link", "lan", "--link", "latency=1ms,bandwidth=10Mbit", "--set", "run.iterations=30", "--set", "run.eval_every=5", "--set",
                  "run.agents=4", "--set", "run.progress=false", "--out", str(out),
                  timeout=400)
    assert res.returncode == 0, res.stderr[-3000:]
    return out, res.stdout


def test_tuning_keeps_the_grid_point_with_the_lowest_training_objective(tuned):
    out, _ = tuned
    meta = json.loads((out / "compare.json").read_text())
    tuning = meta["tuning"]
    assert set(tuning) == {"next-fl", "gt", "centralized"}
    # centralized L-BFGS resolves no step: not tuned, run as it is
    assert tuning["centralized"]["setting"] == {} and "not tuned" in tuning["centralized"]["note"]
    gt = tuning["gt"]
    assert [p["value"] for p in gt["points"]] == [0.05, 0.2, 0.8]   # the grid as given
    for name in ("next-fl", "gt"):
        t = tuning[name]
        ok = [p for p in t["points"] if p["status"] == "ok"]
        best = min(ok, key=lambda p: p["final_objective"])
        assert t["chosen"] == best["value"]
        assert all(p["final_objective"] >= best["final_objective"] for p in ok)
    # NEXT's default grid: factors of its automatic tau, the factor 1 is the default run
    fl = tuning["next-fl"]
    factors = [p["factor"] for p in fl["points"]]
    assert factors[:5] == [0.25, 0.5, 1.0, 2.0, 4.0]
    auto = fl["points"][2]["value"]
    for p in fl["points"]:
        assert p["value"] == pytest.approx(p["factor"] * auto)
    # extended past an end only while that end was the best
    if len(factors) > 5:
        assert factors[5] in (0.125, 8.0)
    # the chosen setting is what every seed ran
    rows = _rows(out / "compare.csv")
    for name, key in (("gt", "lr"), ("next-fl", "tau")):
        chosen = tuning[name]["setting"]
        for seed in (0, 1):
            cfg = json.loads((out / name / f"seed-{seed}" / "config.json").read_text())
            assert cfg["algorithm"].get(key, "auto") == chosen.get(key, "auto")
        assert rows[name]["setting"] == ("" if not chosen else f"{key}={chosen[key]:.4g}")


def test_seeded_rows_are_the_means_of_the_seeds_with_their_spread(tuned):
    out, _ = tuned
    meta = json.loads((out / "compare.json").read_text())
    assert meta["seeds"] == [0, 1]
    rows = _rows(out / "compare.csv")
    by_seed = meta["rows_by_seed"]
    starts = set()
    for m, row in rows.items():
        assert row["seeds"] == "2"
        vals = [r["final_objective"] for s in ("0", "1") for r in by_seed[s] if r["method"] == m]
        assert float(row["final_objective"]) == pytest.approx(sum(vals) / 2, rel=1e-12)
        assert float(row["final_objective_min"]) == min(vals)
        assert float(row["final_objective_max"]) == max(vals)
        for seed in (0, 1):
            with open(out / m / f"seed-{seed}" / "history.csv") as fh:
                first = next(csv.DictReader(fh))
            starts.add((seed, first["objective"]))
    # every method starts from its seed's w[0]; the two seeds differ
    assert len({o for _, o in starts}) == 2 and len(starts) == 2


def test_the_verdict_names_the_best_of_the_table(tuned):
    out, stdout = tuned
    meta = json.loads((out / "compare.json").read_text())
    rows = {r["method"]: r for r in meta["rows"]}
    assert "verdict (" in stdout and "verdict (" in (out / "compare.md").read_text()
    for target, entry in meta["verdict"].items():
        if entry is None:
            continue
        assert "centralized" not in entry["reached"] + entry["not_reached"]
        for measure, by in entry["by"].items():
            if by is None:
                continue
            figures = {m: rows[m][f"{target}_{measure}"] for m in entry["reached"]}
            low = min(figures.values())
            assert by["value"] == low and sorted(by["best"]) == sorted(
                m for m, v in figures.items() if v == low)
            for m, ratio in by["ratios"].items():
                assert ratio == pytest.approx(figures[m] / low)
        for m in entry["not_reached"]:
            assert rows[m]["status"] != "ok" or rows[m][f"{target}_rounds"] is None


def test_modelled_link_times_follow_the_formula_from_the_counted_parts(tuned):
    out, stdout = tuned
    meta = json.loads((out / "compare.json").read_text())
    links = meta["links"]
    assert [x["name"] for x in links] == ["lan", "1ms-10Mbit/s"]
    rows = _rows(out / "compare.csv")
    checked = 0
    for m, row in rows.items():
        for t in ("test", "objective"):
            for x in links:
                got = _num(row[f"{t}_time_on_{x['name']}"])
                if row[f"{t}_rounds"] == "":
                    assert got is None
                    continue
                c, e, b = (float(row[f"{t}_{k}"]) for k in ("compute_s", "exchanges",
                                                            "busiest_bytes"))
                assert got == pytest.approx(c + x["latency"] * e + b / x["bandwidth"])
                checked += 1
        # the parts: one agent's share of the loop time (4 agents on one process), and on
        # the pooled reference no traffic at all
        if row["test_rounds"] and m != "centralized":
            assert float(row["test_compute_s"]) == pytest.approx(float(row["test_time_s"]) / 4)
            assert float(row["test_exchanges"]) > 0 and float(row["test_busiest_bytes"]) > 0
        if m == "centralized" and row["test_rounds"]:
            assert float(row["test_exchanges"]) == 0 == float(row["test_busiest_bytes"])
    assert checked
    assert (out / "compare_link.png").is_file()
    assert "time on lan" in stdout or "no method reached" in stdout
    assert "Modelled seconds" in (out / "compare.md").read_text()
