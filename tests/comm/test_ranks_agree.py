"""Ranks started with different settings are refused before any work, in one line that names
the ranks and what differs: the config (compared key by key with rank 0's) and the data and
initial model (their sha256), under mpiexec with one command line per rank."""
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import mpiexec_path

RUN = ["-m", "dcnn", "run", "--set", "run.iterations=3", "--set", "run.reference=false",
       "--set", "run.agents=4", "--quiet", "--out", "out"]


def _two_ranks(tmp_path, first: list[str], second: list[str]):
    """``mpiexec -n 1 python RUN first : -n 1 python RUN second`` in ``tmp_path``."""
    cmd = [mpiexec_path(), "-n", "1", sys.executable, *RUN, *first, ":", "-n", "1",
           sys.executable, *RUN, *second]
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=tmp_path,
                              env={**os.environ, "OMP_NUM_THREADS": "1"})
    except subprocess.TimeoutExpired:
        pytest.fail("ranks with different settings did not stop within 120 s")


def _write_csv(path, seed):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(60, 3))
    np.savetxt(path, np.column_stack([X, (X[:, 0] > 0).astype(int)]), delimiter=",")


@pytest.mark.mpi
@pytest.mark.parametrize("case", ["config", "data"])
def test_ranks_with_other_settings_are_refused_in_one_line(tmp_path, case):
    if case == "config":
        res = _two_ranks(tmp_path, ["--set", "model.lam=0.001"],
                         ["--set", "model.lam=0.01", "--set", "run.seed=3"])
        expected = "rank 1 has another config than rank 0 (model.lam, run.seed); start every"
    else:     # same shapes, other values: only the data's sha256 can tell
        _write_csv(tmp_path / "a.csv", 0)
        _write_csv(tmp_path / "b.csv", 1)
        res = _two_ranks(tmp_path, ["--set", "data.name='a.csv'"],
                         ["--set", "data.name='b.csv'"])
        expected = ("rank 1 has another data or initial model (their sha256) than rank 0 "
                    "(data); give every rank the same data")
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("dcnn: error:")]
    assert res.returncode != 0 and "Traceback" not in res.stderr, res.stderr[-3000:]
    assert len(errors) == 1, res.stderr[-3000:]
    assert "the ranks disagree: " + expected in errors[0], errors[0]
    assert not (tmp_path / "out").exists()


class _FakeRanks:
    """Three ranks' all-reduce seen from rank 1: the table as the other ranks fill it."""
    size, rank = 3, 1

    def allreduce(self, x, op="sum"):
        import torch
        assert op == "sum"
        out = x.clone()
        for r, name in ((0, b"node-a"), (2, "n\u00f6de-\u00e9".encode())):
            out[r, :len(name)] += torch.tensor(list(name), dtype=x.dtype)
        return out


def test_rank_hosts_maps_every_host_to_its_ranks(monkeypatch):
    import socket
    from dcnn.comm.agree import rank_hosts
    monkeypatch.setattr(socket, "gethostname", lambda: "node-a")
    assert rank_hosts(_FakeRanks()) == {"node-a": [0, 1], "n\u00f6de-\u00e9": [2]}
    monkeypatch.setattr(socket, "gethostname", lambda: "x" * 100)    # cut at 64 bytes
    assert rank_hosts(_FakeRanks())["x" * 64] == [1]
