"""DDP on R ranks = one process doing full-batch steps on the union of the shards."""
import os
import shutil
import subprocess
import sys

import pytest
import torch
from _engine_cases import (ddp_minibatch_oracle, gd_oracle, l2, module, parse, pooled_problem,
                           shards)

from conftest import ROOT

from dcnn.comm import agent_blocks


@pytest.mark.mpi
@pytest.mark.parametrize("ranks", [2, 4])
def test_ddp_equals_full_batch_steps(mpi, ranks):
    res = mpi(ranks, ["tests/baselines/_ddp_script.py"], timeout=120)
    assert res.returncode == 0, res.stderr[-3000:]
    out = parse(res.stdout)
    assert set(out) == {"sgd", "adam", "minibatch"}, res.stdout[-2000:]
    w0 = pooled_problem(module([4]), shards(), l2()).model.w0
    oracles = {
        "sgd": gd_oracle(module([4]), shards(), l2(), steps=5, lr=0.1),
        "adam": gd_oracle(module([4]), shards(), l2(), steps=5, lr=0.05, optimizer="adam"),
        "minibatch": ddp_minibatch_oracle(module([4]), shards(), l2(), ranks=ranks, steps=4,
                                          lr=0.1, batch_size=3, seed=7),
    }
    P = len(w0)
    for case, recs in out.items():
        assert len(recs) == ranks
        first = recs[0]
        w = torch.tensor(first["params"], dtype=torch.float64)
        assert float((w - w0).abs().max()) > 1e-3, case          # it trained
        assert float((w - oracles[case]).abs().max()) <= 1e-10, case
        # replicas and Histories identical on every rank
        for rec in recs[1:]:
            assert rec["params"] == first["params"]
            for col in ("objective", "bytes", "time_s", "iteration"):
                assert rec[col] == first[col], (case, col)
        assert first["agents_per_rank"] == [list(range(lo, hi))
                                            for lo, hi in agent_blocks(len(shards()), ranks)]
        assert first["world_size"] == ranks
        # computed bytes: one ring all-reduce of P float64 gradient entries per step
        per_step = 2 * (ranks - 1) / ranks * P * 8
        assert first["bytes"] == [t * per_step for t in first["iteration"]]
    assert out["sgd"][0]["objective"][-1] < out["sgd"][0]["objective"][0]


@pytest.mark.mpi
def test_torchrun_launch_forms_the_same_world(tmp_path):
    """torchrun (env:// rendezvous) instead of mpiexec: same DDP steps."""
    exe = shutil.which("torchrun", path=os.path.dirname(sys.executable))
    if exe is None:
        pytest.skip("torchrun is not installed next to this python")
    cmd = [exe, "--standalone", "--nproc_per_node", "2", "tests/baselines/_torchrun_script.py"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=ROOT,
                             env=env)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"torchrun did not finish in 120 s: {exc.stderr}")
    assert res.returncode == 0, res.stderr[-3000:]
    recs = parse(res.stdout)["torchrun"]
    assert [r["launcher"] for r in recs] == ["torchrun", "torchrun"]
    ref = gd_oracle(module([4]), shards(), l2(), steps=3, lr=0.1)
    for rec in recs:
        assert float((torch.tensor(rec["params"], dtype=torch.float64) - ref)
                     .abs().max()) <= 1e-10
