"""The ``dcnn`` command end to end: a run writes its files; bad input fails fast with one
line; MPI runs spread agents over ranks."""
import json
import os
import subprocess
import sys
import time

import pytest

from dcnn import __version__

from conftest import ROOT, run_mpi

SMALL = ["--set", "run.iterations=10", "--set", "run.eval_every=5", "--quiet"]


def dcnn(*args, timeout=120, cwd=None):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    try:
        res = subprocess.run([sys.executable, "-m", "dcnn", *args], capture_output=True,
                             text=True, timeout=timeout, cwd=cwd or ROOT, env=env)
    except subprocess.TimeoutExpired:
        pytest.fail(f"dcnn {' '.join(args)} hung for {timeout} s")
    return res, time.perf_counter() - t0


def test_run_writes_history_summary_plot_and_config(tmp_path):
    out = tmp_path / "run"
    res, _ = dcnn("run", *SMALL, "--out", str(out))
    assert res.returncode == 0, res.stderr
    for name in ("history.csv", "summary.json", "curves.png", "config.json"):
        assert (out / name).is_file(), name
    s = json.loads((out / "summary.json").read_text())
    for key in ("algorithm", "agents", "ranks", "iterations", "metric_name", "final",
                "centralized", "bytes_sent_per_agent", "wall_time_s"):
        assert key in s
    assert set(s["final"]) >= {"objective", "grad_norm", "consensus_error", "train_metric",
                               "test_metric"}
    assert set(s["centralized"]) >= {"objective", "test_metric"}
    assert s["iterations"] == 10 and s["agents"] == 8 and s["ranks"] == 1
    # the history's last row is the summary's final state
    import csv
    rows = list(csv.DictReader((out / "history.csv").open()))
    assert [int(r["iteration"]) for r in rows] == [0, 5, 10]
    assert float(rows[-1]["objective"]) == pytest.approx(s["final"]["objective"], rel=1e-12)
    # rounds to "centralized minus one point": the first row that reaches it, or none
    target = s["centralized"]["test_metric"] - 1.0
    hits = [r for r in rows if float(r["test_metric"]) >= target]
    assert (s["to_target"] is None) == (not hits)
    if hits:
        assert s["to_target"]["iteration"] == int(hits[0]["iteration"])
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["run"]["iterations"] == 10 and cfg["algorithm"]["surrogate"] == "pl"


def test_info():
    res, _ = dcnn("info")
    assert res.returncode == 0
    assert "torch" in res.stdout and "MPI" in res.stdout.upper()
    lines = {ln.split()[0]: ln for ln in res.stdout.splitlines()}
    from dcnn.methods import method_names
    assert all(m in lines["methods"] for m in method_names())
    assert "mnist1d" in lines["datasets"] and "transformer" in lines["models"]
    version, _ = dcnn("--version")
    assert version.returncode == 0 and version.stdout.strip() == f"dcnn {__version__}"


def _nan_csv(tmp_path):
    p = tmp_path / "bad.csv"
    rows = ["a,b,y", "1,2,0", "3,nan,1", "4,5,0", "6,7,1"]
    p.write_text("\n".join(rows) + "\n")
    return p


BAD = [
    (["--set", "run.agnets=4"], "did you mean 'run.agents'"),
    (["--set", "run.agents='many'"], "run.agents must be an integer"),
    (["--set", "algorithm.tau=-1"], "algorithm.tau must be > 0"),
    (["--set", "data.name='digitz'"], "digits"),
    (["--set", "topology.graph='rng'"], "ring"),
    (["--set", "data.name='no/such/file.csv'"], "does not exist"),
    (["--set", "topology.dynamic='link_failure'", "--set", "topology.p_fail=0.97",
      "--set", "topology.B=1", "--set", "topology.graph='ring'"], "B-connected"),
    (["--set", "model.loss='cross_entropy'", "--set", "data.name='diabetes'"],
     "classification"),
    (["no_such_config.toml"], "does not exist"),
]


@pytest.mark.parametrize("args,needle", BAD, ids=[b[1][:20] for b in BAD])
def test_bad_input_fails_with_one_line(tmp_path, args, needle):
    out = tmp_path / "out"
    res, dt = dcnn("run", *args, "--quiet", "--out", str(out), timeout=60)
    assert res.returncode == 2, res.stderr
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("dcnn: error:")]
    assert len(errors) == 1, res.stderr
    assert needle in errors[0], errors[0]
    assert "Traceback" not in res.stderr
    assert not out.exists()  # nothing written on failure
    assert dt < 60


def test_nan_in_data_file(tmp_path):
    res, _ = dcnn("run", "--set", f"data.name='{_nan_csv(tmp_path)}'", "--quiet",
                  "--out", str(tmp_path / "o"), timeout=60)
    assert res.returncode == 2
    err = [ln for ln in res.stderr.splitlines() if ln.startswith("dcnn: error:")]
    assert len(err) == 1 and ("NaN" in err[0] or "nan" in err[0]), res.stderr


@pytest.mark.mpi
def test_more_ranks_than_agents_fails_fast():
    t0 = time.perf_counter()
    res = run_mpi(3, ["-m", "dcnn", "run", "--set", "run.agents=2", "--quiet"], timeout=60)
    assert res.returncode != 0
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("dcnn: error:")]
    assert len(errors) == 1, res.stderr
    assert "3 ranks but only 2 agents" in errors[0]
    assert time.perf_counter() - t0 < 60


@pytest.mark.mpi
@pytest.mark.parametrize("extra", [
    [],
    ["--set", "algorithm.name='sonata'", "--set", "topology.graph='random_digraph'"],
], ids=["next-undirected", "sonata-directed"])
def test_mpi_cli_run_matches_in_process(tmp_path, extra):
    args = [*SMALL, "--set", "algorithm.tau=1.0", *extra]
    res = run_mpi(2, ["-m", "dcnn", "run", *args, "--out", str(tmp_path / "mpi")],
                  timeout=120)
    assert res.returncode == 0, res.stderr[-3000:]
    local, _ = dcnn("run", *args, "--out", str(tmp_path / "one"))
    assert local.returncode == 0, local.stderr[-3000:]
    a = json.loads((tmp_path / "mpi" / "summary.json").read_text())
    b = json.loads((tmp_path / "one" / "summary.json").read_text())
    assert a["ranks"] == 2 and b["ranks"] == 1
    # every rank's host, gathered (both ranks run here)
    import socket
    host = socket.gethostname()
    assert a["hosts"] == {host: [0, 1]} and b["hosts"] == {host: [0]}
    assert a["algorithm"] == b["algorithm"] == ("sonata" if extra else "next")
    assert a["solver"] == b["solver"] is not None
    assert abs(a["final"]["objective"] - b["final"]["objective"]) <= 1e-10
    assert a["bytes_sent_per_agent"] == b["bytes_sent_per_agent"]
    # the saved model is w_bar over every rank's agents: the same as in one process
    import torch
    sa, sb = (torch.load(tmp_path / d / "model.pt", weights_only=True) for d in ("mpi", "one"))
    assert list(sa) == list(sb)
    assert max(float((sa[k] - sb[k]).abs().max()) for k in sa) <= 1e-10


@pytest.mark.slow
@pytest.mark.parametrize("reg", ["l2", "l1"])
@pytest.mark.parametrize("loss", ["squared", "cross_entropy"])
@pytest.mark.parametrize("surrogate", ["fl", "pl"])
def test_every_surrogate_loss_regulariser_combination(tmp_path, surrogate, loss, reg):
    """`dcnn run` on the default MLP and data, 150 rounds: within 2 points of the centralized
    reference's test accuracy (same model, loss and regulariser); l1 gives exact zeros."""
    res, _ = dcnn("run", "--set", f"algorithm.surrogate='{surrogate}'", "--set",
                  f"model.loss='{loss}'", "--set", f"model.regularizer='{reg}'", "--set",
                  "run.iterations=150", "--quiet", "--out", str(tmp_path), timeout=280)
    assert res.returncode == 0, res.stderr[-3000:]
    s = json.loads((tmp_path / "summary.json").read_text())
    assert abs(s["final"]["test_metric"] - s["centralized"]["test_metric"]) <= 2.0
    assert (s["final"]["sparsity"] > 0) == (reg == "l1")


@pytest.mark.mpi
def test_under_torchrun_rank_0_alone_reports_and_the_loop_methods_refuse(tmp_path):
    """DDP under torchrun: one table, one folder, the summary counts both processes; NEXT
    (whose agents live on MPI ranks) refuses in one line naming mpiexec instead of running a
    whole copy per process."""
    import shutil
    exe = shutil.which("torchrun", path=os.path.dirname(sys.executable))
    if exe is None:
        pytest.skip("torchrun is not installed next to this python")

    def launch(*args):
        cmd = [exe, "--standalone", "--nproc_per_node", "2", "-m", "dcnn", "run",
               *SMALL[:-1], "--set", "run.reference=false", "--set", "run.progress=false",
               *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=tmp_path,
                              env={**os.environ, "OMP_NUM_THREADS": "1"})

    res = launch("--set", "algorithm.name='ddp'", "--out", str(tmp_path / "ddp"))
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.count("test accuracy") == 1                # rank 0 alone prints
    assert res.stderr.count("dcnn: results in") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ddp"]
    s = json.loads((tmp_path / "ddp" / "summary.json").read_text())
    assert s["ranks"] == 2 and s["engine"]["world_size"] == 2
    assert s["engine"]["launcher"] == "torchrun"
    res = launch("--out", str(tmp_path / "next"))
    assert res.returncode != 0
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("dcnn: error:")]
    assert len(errors) == 1 and "mpiexec -n 2" in errors[0]      # said once, by rank 0
    assert not (tmp_path / "next").exists()


@pytest.mark.parametrize("command", [["compare", "--methods", "next-pl,ddp"],
                                     ["study", "breast_cancer"]])
def test_compare_and_study_refuse_torchrun_in_one_line(command, monkeypatch, capsys):
    from dcnn.cli import main
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(command) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "mpiexec -n 2" in err[0] and command[0] in err[0]
    monkeypatch.setenv("RANK", "1")                  # the other process fails silently
    assert main(command) == 2 and capsys.readouterr().err == ""


def test_no_reference_skips_the_reference(tmp_path):
    from dcnn.cli import main
    out = tmp_path / "r"
    assert main(["run", "--set", "run.iterations=5", "--set", "run.eval_every=5",
                 "--no-reference", "--quiet", "--out", str(out)]) == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["centralized"] is None and s["to_target"] is None
    assert json.loads((out / "config.json").read_text())["run"]["reference"] is False


def test_help_and_version_do_not_import_torch():
    code = ("import sys, contextlib, io\nfrom dcnn.cli import main\n"
            "for argv in (['--help'], ['--version'], ['run', '--help']):\n"
            "    with contextlib.redirect_stdout(io.StringIO()):\n"
            "        try:\n            main(argv)\n        except SystemExit:\n            pass\n"
            "print('torch' in sys.modules)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0 and res.stdout.strip() == "False", res.stderr[-2000:]
