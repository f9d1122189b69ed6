"""TensorBoard scalars: what the event file holds is the run's History (read back with
TensorBoard's own reader), written by rank 0 alone under mpiexec, with one-line errors."""
import csv
import sys

import pytest

from conftest import run_mpi
from test_cli import dcnn

pytest.importorskip("tensorboard")   # the test extra installs it
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

ARGS = ["--set", "run.iterations=20", "--set", "run.agents=4", "--set", "run.eval_every=5",
        "--no-reference", "--quiet"]


def _scalars(folder) -> dict:
    ea = EventAccumulator(str(folder))
    ea.Reload()
    return {tag: [(e.step, e.value) for e in ea.Scalars(tag)] for tag in ea.Tags()["scalars"]}


def _history(folder) -> list[dict]:
    return list(csv.DictReader(open(folder / "history.csv")))


def test_the_event_file_holds_the_history(tmp_path):
    res, _ = dcnn("run", *ARGS, "--out", str(tmp_path / "run"),
                  "--tensorboard", str(tmp_path / "tb"))
    assert res.returncode == 0, res.stderr[-2000:]
    scalars, rows = _scalars(tmp_path / "tb"), _history(tmp_path / "run")
    assert [s for s, _ in scalars["objective"]] == [int(r["iteration"]) for r in rows] \
        == [0, 5, 10, 15, 20]
    for tag in ("objective", "consensus_error", "test_metric", "bytes_per_agent"):
        # TensorBoard keeps float32
        assert [v for _, v in scalars[tag]] == pytest.approx(
            [float(r[tag]) for r in rows], rel=1e-6, abs=1e-12), tag


@pytest.mark.mpi
def test_under_mpiexec_rank_0_alone_writes(tmp_path):
    res = run_mpi(2, ["-m", "dcnn", "run", *ARGS, "--out", str(tmp_path / "run"),
                      "--tensorboard", str(tmp_path / "tb")], timeout=180)
    assert res.returncode == 0, res.stderr[-2000:]
    assert len(list((tmp_path / "tb").iterdir())) == 1          # one event file
    scalars, rows = _scalars(tmp_path / "tb"), _history(tmp_path / "run")
    assert len(scalars["objective"]) == len(rows) == 5


def test_bad_input_is_one_line(tmp_path, monkeypatch):
    from dcnn.errors import ConfigError
    from dcnn.tensorboard import TensorBoard
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="is a file; give a folder"):
        TensorBoard(tmp_path / "file")
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)   # not installed
    with pytest.raises(ConfigError, match="needs the tensorboard package; pip install"):
        TensorBoard(tmp_path / "tb")
    # a parallel trainer has no loop to call back from: refused in one line, exit status 2
    res, _ = dcnn("run", *ARGS, "--set", "algorithm.name='ddp'", "--out", str(tmp_path / "d"),
                  "--tensorboard", str(tmp_path / "tb2"))
    assert res.returncode == 2
    assert not (tmp_path / "tb2").exists() and not (tmp_path / "d").exists()   # nothing written
    assert res.stderr.strip().splitlines()[-1].startswith("dcnn: error: callbacks (and "
                                                          "--tensorboard) run in the one loop")
