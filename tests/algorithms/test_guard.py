"""The divergence guard over MPI, whose verdict on a state is read one step later (overlapping
that step) and at once before evaluations, checkpoints and the end.

Oracle: one process, where the verdict is immediate. An iterate made NaN on one rank only, at
an iteration between evaluations, at one, and at the last: every rank stops with the one
process's message (same agent, quantity and iteration), the saved last finite state equals
the one process's, and no process ever steps from a non-finite state (the step raises if it
does, as a local solve on NaN would)."""
import numpy as np
import pytest

from dcnn.checkpoint import read_checkpoint

from conftest import ROOT


@pytest.mark.mpi
@pytest.mark.parametrize("at,agent,ranks", [(5, 2, 2), (6, 3, 2), (9, 1, 2), (1, 0, 2),
                                            (4, 2, 3)])
def test_a_nan_on_one_rank_stops_every_rank_where_one_process_stops(mpi, tmp_path, at, agent,
                                                                    ranks):
    res = mpi(ranks, [str(ROOT / "tests" / "algorithms" / "_guard_script.py"), str(at),
                      str(agent), str(tmp_path)], timeout=120,
              env={"PYTHONPATH": str(ROOT / "tests")})
    assert res.returncode == 0, res.stderr[-3000:]
    local = (tmp_path / "msg-local.txt").read_text()
    assert f"agent {agent}: iterate w is not finite (nan) at iteration {at}" in local, local
    for r in range(ranks):
        assert (tmp_path / f"msg-{r}.txt").read_text() == local
    mine, theirs = read_checkpoint(tmp_path / "mpi"), read_checkpoint(tmp_path / "local")
    assert mine.iteration == theirs.iteration == at - 1
    for name in ("X", "Y", "G"):
        assert np.abs(mine.arrays[name] - theirs.arrays[name]).max() <= 1e-12, name
