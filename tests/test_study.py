"""Studies as data: every study file loads, each runs end to end shortened (a few rounds, one
seed, a small grid), its written tables have the expected structure, and its verdicts name
the best of its own numbers; bad study files are refused in one line before anything runs."""
import csv
import json
import shutil

import pytest

from dcnn.errors import ConfigError
from dcnn.study import STUDY_DIR, into_readme, load_study, run_study

from conftest import ROOT, error_of
from test_cli import dcnn

STUDIES = sorted(p.stem for p in (ROOT / STUDY_DIR).glob("*.toml"))
# every method at its defaults here; the command-line test below tunes on a grid of two
SHORT = dict(seeds=1, rounds=3, tune=False)
# the MNIST-1D study's models on 5000 samples take minutes for their references alone
SMALL = {"mnist1d": ["data.samples=500", "model.hidden=[16]", "run.eval_every=2"]}


def test_the_bundled_studies_are_there_and_load():
    assert {"baselines", "mnist1d", "agents", "density", "failures", "paper"} <= set(STUDIES)
    for name in STUDIES:
        study = load_study(ROOT / STUDY_DIR / f"{name}.toml")
        assert study.cases and study.methods and study.title


def _verdict_is_the_best_of_its_rows(case: dict) -> None:
    rows = {r["method"]: r for r in case["rows"]}
    for target, entry in case["verdict"].items():
        if entry is None:
            continue
        for measure, by in entry["by"].items():
            if by is None:
                continue
            figures = {m: rows[m][f"{target}_{measure}"] for m in entry["reached"]}
            assert by["value"] == min(figures.values())
            assert set(by["best"]) == {m for m, v in figures.items() if v == by["value"]}


@pytest.mark.parametrize("name", STUDIES)
def test_every_study_runs_shortened_and_its_verdicts_match_its_tables(name, tmp_path):
    study = load_study(ROOT / STUDY_DIR / f"{name}.toml")
    first = study.cases[0].name
    out = tmp_path / name
    result = run_study(study, out=out, only=[first], overrides=SMALL.get(name, []),
                       verbose=False, **SHORT)
    assert list(result["cases"]) == [first]
    case = result["cases"][first]
    _verdict_is_the_best_of_its_rows(case)
    ran = [r["method"] for r in case["rows"]]
    assert set(ran) | set(case["left_out"]) == set(study.cases[0].methods or study.methods)
    md = (out / "study.md").read_text()
    assert md.startswith(f"### {study.title}") and f"| {first} |" in md
    assert "--rounds 3" in md                      # a shortened run says so
    with open(out / "study.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["method"] for r in rows] == ran and {r["case"] for r in rows} == {first}
    assert (out / first / "compare.json").is_file()


def test_a_whole_study_through_the_command_line_into_a_readme(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- study failures -->\nSTALE-TABLE\n<!-- /study failures -->"
                      "\nend\n")
    out = tmp_path / "out"
    res, _ = dcnn("study", "failures", "--cases", "p_fail-0.0,p_fail-0.7", "--seeds", "1",
                  "--rounds", "6", "--tune-rounds", "2", "--tune-factors", "1,2", "--out",
                  str(out), "--into", str(readme), "--quiet", cwd=ROOT, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    study = load_study(ROOT / STUDY_DIR / "failures.toml")
    meta = json.loads((out / "study.json").read_text())
    assert list(meta["cases"]) == ["p_fail-0.0", "p_fail-0.7"]
    for case in meta["cases"].values():
        _verdict_is_the_best_of_its_rows(case)
    assert "--cases p_fail-0.0,p_fail-0.7" in (out / "study.md").read_text()
    text = readme.read_text()
    assert text.startswith("intro\n<!-- study failures -->\n### ") and text.endswith(
        "<!-- /study failures -->\nend\n")
    assert "STALE-TABLE" not in text and text.count("| p_fail-") == 2      # summary rows
    assert "#### p_fail-0.0\n" in text and "#### p_fail-0.7\n" in text
    # the summary table has a row per case and a column per method
    head = next(x for x in text.splitlines() if x.startswith("| case |"))
    assert [c.strip() for c in head.strip("|").split("|")] == ["case", *study.methods]


@pytest.mark.parametrize("body,fragment", [
    ("[study]\ntitle='t'\nmethods=['gt']\n", "needs a [study] table and at least one [[case]]"),
    ("[study]\ntitle='t'\nmethods=['gt']\nseeds=0\n[[case]]\nname='a'\n",
     "study.seeds must be a positive integer"),
    ("[study]\ntitle='t'\nmethods=['gt']\ncolour=1\n[[case]]\nname='a'\n",
     "[study] has no key 'colour'"),
    ("[study]\ntitle='t'\nmethods=['gt']\n[[case]]\nname='a'\n[[case]]\nname='a'\n",
     "case name 'a' must be a new"),
    ("[study]\ntitle='t'\nmethods=['gt']\n[[case]]\nname='a'\nconfig='nope.toml'\n",
     "names config 'nope.toml', which is not a file"),
    ("[study]\ntitle='t'\nmethods=['gt']\n[[case]]\nname='a'\nset=['run.agents=0']\n",
     "case 'a': run.agents"),
    ("[study]\ntitle='t'\nmethods=['gt']\nlinks=['lam']\n[[case]]\nname='a'\n",
     "--link 'lam' is not a preset"),
])
def test_a_bad_study_file_is_refused_in_one_line(body, fragment, tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(body)
    error_of(lambda: load_study(path), fragment, kind=ConfigError)


def test_a_bad_into_file_fails_before_anything_runs(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("no markers here\n")
    res, seconds = dcnn("study", "failures", "--into", str(readme), "--out",
                        str(tmp_path / "never"), "--quiet", cwd=ROOT, timeout=60)
    assert res.returncode == 2 and "needs one '<!-- study failures -->' line" in res.stderr
    assert not (tmp_path / "never").exists() and readme.read_text() == "no markers here\n"
    error_of(lambda: into_readme("x", readme, "failures"), "needs one", kind=ConfigError)
    error_of(lambda: load_study("no-such-study"), "is not in", kind=ConfigError)
    shutil.rmtree(tmp_path / "never", ignore_errors=True)


@pytest.mark.parametrize("name", STUDIES)
def test_the_experiments_readme_holds_each_study_as_written_by_its_run(name):
    """Its block is the placeholder or the study.md of a full run (every case, no
    shortening), so no table there is typed by hand."""
    text = (ROOT / "experiments" / "README.md").read_text()
    start, end = f"<!-- study {name} -->\n", f"<!-- /study {name} -->"
    assert text.count(start) == 1 and text.count(end) == 1
    block = text.split(start, 1)[1].split(end, 1)[0]
    if block.startswith("Not run yet"):
        return
    study = load_study(ROOT / STUDY_DIR / f"{name}.toml")
    assert block.startswith(f"### {study.title}\n")
    assert f"`dcnn study experiments/studies/{name}.toml` (" in block      # not shortened
    lines = block.splitlines()
    head = next(k for k, x in enumerate(lines) if x.startswith("| case |"))
    summary = lines[head + 2:lines.index("", head)]
    assert [x.split(" | ")[0][2:] for x in summary] == [c.name for c in study.cases]
    for case in study.cases:
        assert f"#### {case.name}\n" in block


def test_a_case_where_every_method_diverges_is_recorded_and_the_rest_still_run(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text("[study]\ntitle='t'\nmethods=['gt:lr=1e8']\nset=['run.agents=4', "
                    "'run.eval_every=10']\n[[case]]\nname='blows-up'\n[[case]]\nname='fine'\n"
                    "methods=['gt']\n")
    result = run_study(path, out=tmp_path / "out", rounds=30, verbose=False)
    assert "every method diverged" in result["cases"]["blows-up"]["error"]
    assert [r["method"] for r in result["cases"]["fine"]["rows"]] == ["gt"]
    md = (tmp_path / "out" / "study.md").read_text()
    assert "#### blows-up\n\nFailed: every method diverged" in md
    saved = json.loads((tmp_path / "out" / "study.json").read_text())
    assert set(saved["cases"]) == {"blows-up", "fine"}
    error_of(lambda: run_study(path, out=tmp_path / "x", seeds=0, verbose=False),
             "--seeds must be a positive integer", kind=ConfigError)
    assert not (tmp_path / "x").exists()


def test_resume_keeps_the_finished_cases_and_runs_the_others(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text("[study]\ntitle='t'\nmethods=['gt']\nset=['run.agents=4', "
                    "'run.eval_every=10']\n[[case]]\nname='a'\n[[case]]\nname='b'\n"
                    "methods=['dgd']\n")
    out = tmp_path / "out"
    run_study(path, out=out, rounds=20, only=["a"], verbose=False)
    first = json.loads((out / "study.json").read_text())["cases"]["a"]
    stamp = (out / "a" / "compare.json").stat().st_mtime_ns
    # --cases b with --resume: a is kept (in the study's order), b runs
    both = run_study(path, out=out, rounds=20, only=["b"], resume=True, verbose=False)
    assert both["cases"]["a"] == first                              # kept as written
    assert (out / "a" / "compare.json").stat().st_mtime_ns == stamp  # not run again
    assert [r["method"] for r in both["cases"]["b"]["rows"]] == ["dgd"]
    assert list(json.loads((out / "study.json").read_text())["cases"]) == ["a", "b"]
    assert "#### a\n" in (out / "study.md").read_text()
    # the study file edited since: the case whose plan changed runs again, the other is kept
    path.write_text(path.read_text().replace("methods=['dgd']", "methods=['gt']"))
    again = run_study(path, out=out, rounds=20, resume=True, verbose=False)
    assert again["cases"]["a"] == first
    assert [r["method"] for r in again["cases"]["b"]["rows"]] == ["gt"]
    # other options than the folder's: refused in one line, the folder left as it was
    before = (out / "study.json").read_bytes()
    error_of(lambda: run_study(path, out=out, rounds=30, resume=True, verbose=False),
             "--resume: ", kind=ConfigError)
    assert (out / "study.json").read_bytes() == before
