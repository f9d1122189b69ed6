"""A run's output folder is transactional: a run into the folder of a finished run keeps its
checkpoints in ``OUT.partial`` and replaces the result only when it finishes, so a run that
fails leaves the earlier result byte for byte as it was (and says where its own state is); an
unusable ``--out`` is refused in one line before any work."""
import json
import time

import pytest

import dcnn.runner
from dcnn.cli import main

SHORT = ["--set", "run.iterations=6", "--set", "run.eval_every=3", "--set", "run.agents=4",
         "--set", "run.reference=false", "--set", "run.progress=false", "--quiet"]
BLOWS_UP = ["--set", "algorithm.name='dgd'", "--set", "algorithm.lr=100"]


def _files(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def test_a_failed_run_leaves_the_earlier_result_byte_for_byte(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", *SHORT, "--out", str(out)]) == 0
    before = _files(out)
    assert set(map(str, before)) == {"history.csv", "summary.json", "curves.png",
                                     "config.json", "model.pt", "preprocessing.json"}
    capsys.readouterr()
    assert main(["run", *SHORT, *BLOWS_UP, "--set", "run.iterations=40", "--out",
                 str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    stage = tmp_path / "run.partial"
    assert len(err) == 1 and "the objective grew to" in err[0]
    assert f"is in {stage / 'checkpoint'}" in err[0]
    assert _files(out) == before                     # the earlier result, untouched
    assert (stage / "checkpoint" / "manifest.json").is_file()
    # the next run into the folder is told about the partial state, before any work
    assert main(["run", *SHORT, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith(f"{stage} holds the partial state of an earlier run into it that did "
                        f"not finish; continue it with --resume {stage}, or delete it")
    assert _files(out) == before


def test_a_finished_rerun_replaces_the_result_and_keeps_its_checkpoint(tmp_path):
    out = tmp_path / "run"
    assert main(["run", *SHORT, "--out", str(out)]) == 0
    first = (out / "summary.json").read_bytes()
    assert main(["run", *SHORT, "--set", "run.seed=1", "--set", "run.checkpoint_every=3",
                 "--out", str(out)]) == 0
    assert (out / "summary.json").read_bytes() != first
    assert (out / "checkpoint" / "manifest.json").is_file()   # it can be extended (--resume)
    assert not (tmp_path / "run.partial").exists()
    assert main(["run", "--resume", str(out), "--set", "run.iterations=9", "--quiet"]) == 0


@pytest.mark.parametrize("where", ["through-a-file", "a-file"])
def test_an_unusable_out_is_refused_in_one_line_before_any_work(tmp_path, capsys, where):
    (tmp_path / "f").write_text("keep")
    out = tmp_path / "f" / "run" if where == "through-a-file" else tmp_path / "f"
    t0 = time.perf_counter()
    assert main(["run", *SHORT, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and ("is a file" in err), err
    assert time.perf_counter() - t0 < 10
    assert (tmp_path / "f").read_text() == "keep"


def test_resuming_the_partial_state_finishes_into_the_folder(tmp_path, monkeypatch, capsys):
    out, stage = tmp_path / "run", tmp_path / "run.partial"
    assert main(["run", *SHORT, "--out", str(out)]) == 0
    before = _files(out)

    def crash(*args, **kw):
        raise OSError("disk gone")
    monkeypatch.setattr(dcnn.runner, "summarize", crash)    # fails after its checkpoints
    assert main(["run", *SHORT, "--set", "run.seed=1", "--set", "run.checkpoint_every=3",
                 "--out", str(out)]) != 0
    monkeypatch.undo()
    assert _files(out) == before and (stage / "checkpoint" / "manifest.json").is_file()
    assert main(["run", "--resume", str(stage), "--set", "run.iterations=9", "--quiet"]) == 0
    assert not stage.exists() and (out / "checkpoint" / "manifest.json").is_file()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["iterations"] == 9 and _files(out) != before


def test_out_dot_works_again_and_again(tmp_path, monkeypatch):
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    assert main(["run", *SHORT, "--out", "."]) == 0
    assert main(["run", *SHORT, "--set", "run.seed=2", "--out", "."]) == 0
    assert (here / "summary.json").is_file() and not (tmp_path / "here.partial").exists()


def test_the_log_goes_through_logging_and_verbose_adds_timings(tmp_path, capsys):
    import logging
    args = ["run", *SHORT[:-1], "--out", str(tmp_path / "a")]
    assert main(args) == 0
    plain = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("dcnn: ")]
    assert plain and not any(ln.startswith("dcnn: training:") for ln in plain)
    assert main([*args, "--verbose"]) == 0
    err = capsys.readouterr().err
    assert "dcnn: training: " in err and " s in the loop" in err
    # a handler of the user's takes the lines instead of dcnn's own printing
    caught = []
    handler = logging.Handler()
    handler.emit = lambda record: caught.append(record.getMessage())
    logger = logging.getLogger("dcnn")
    logger.addHandler(handler)
    try:
        assert main(args) == 0
    finally:
        logger.removeHandler(handler)
    assert any(m.startswith("results in ") for m in caught)
    assert "dcnn: results in" not in capsys.readouterr().err
