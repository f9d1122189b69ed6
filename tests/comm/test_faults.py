"""No hangs: a failing or stuck rank ends the whole job within seconds, with one message.

The multi-rank cases run ``_faults_script.py`` under mpiexec (one launch each, under a hard
timeout); the script prints ``INJECT <unix time>`` on the faulty rank just before the fault,
and the tests time the job's end from there. The pieces behind them (polling, messages,
validation) are tested in-process first.
"""
import math
import os
import re
import subprocess
import sys
import threading
import time

import pytest
import torch

from conftest import ROOT, error_of, mpiexec_path
from dcnn.comm import LocalNetwork, make_network
from dcnn.comm.faults import (agent_count_mismatch, agents_label, check_timeout, ranks_label,
                              wait_until)
from dcnn.errors import CommError

SCRIPT = "tests/comm/_faults_script.py"
MESSAGE = "injected failure on rank {rank} at iteration {k}"


class FakeClock:
    """A clock that ``sleep`` advances; ``now`` also moves by ``tick`` per reading."""

    def __init__(self, tick=0.0):
        self.now, self.tick, self.sleeps = 0.0, tick, []

    def clock(self):
        self.now += self.tick
        return self.now

    def sleep(self, s):
        self.sleeps.append(s)
        self.now += s


def test_wait_until_spins_then_sleeps_with_a_capped_backoff_and_times_out():
    fake = FakeClock(tick=1e-3)
    calls = []
    ok = wait_until(lambda: calls.append(1) and False, timeout=0.5, spin=0.01,
                    max_sleep=0.004, clock=fake.clock, sleep=fake.sleep)
    assert ok is False
    assert 0.5 <= fake.now < 0.52                      # gave up at the deadline, not later
    assert fake.sleeps[0] == 5e-5 and max(fake.sleeps) == 0.004
    assert sorted(fake.sleeps[:7]) == fake.sleeps[:7]  # growing, then capped
    # about 10 busy polls before the first sleep (1 ms per clock reading, 10 ms of spinning)
    assert 8 <= len(calls) - len(fake.sleeps) <= 14


def test_wait_until_returns_as_soon_as_done():
    fake = FakeClock(tick=1e-3)
    answers = iter([False] * 30 + [True])
    assert wait_until(lambda: next(answers), timeout=10, spin=0.005, clock=fake.clock,
                      sleep=fake.sleep)
    assert fake.now < 0.1
    # done at once: no clock reading, no sleep
    fake = FakeClock()
    assert wait_until(lambda: True, timeout=1e-9, clock=fake.clock, sleep=fake.sleep)
    assert fake.now == 0 and not fake.sleeps
    # math.inf: never times out
    answers = iter([False] * 200 + [True])
    assert wait_until(lambda: next(answers), timeout=math.inf, spin=0, clock=fake.clock,
                      sleep=fake.sleep)


def test_messages_name_agents_and_ranks():
    assert agents_label(0, 4) == "agents 0-3" and agents_label(5, 6) == "agent 5"
    assert ranks_label([2]) == "rank 2" and ranks_label([3, 1, 2]) == "ranks 1-3"
    assert ranks_label([0, 2, 5]) == "ranks 0, 2, 5"
    assert agent_count_mismatch([8, 8, 8]) is None
    assert agent_count_mismatch([8, 6]) == (
        "ranks disagree on the number of agents: rank 0 has 8, rank 1 has 6; start every "
        "rank with the same run.agents")
    assert agent_count_mismatch([8, 8, 6, 8]) == (
        "ranks disagree on the number of agents: ranks 0, 1, 3 have 8, rank 2 has 6; start "
        "every rank with the same run.agents")


def test_timeout_is_validated_and_local_network_ignores_it():
    assert check_timeout(2) == 2.0 and check_timeout(math.inf) == math.inf
    for bad in (0, -1, float("nan"), "soon", None):
        error_of(lambda: check_timeout(bad), "run.comm_timeout", kind=CommError)
    error_of(lambda: make_network(4, backend="local", timeout=0), "comm timeout = 0",
             kind=CommError)
    net = make_network(4, backend="local", timeout=0.5)
    assert isinstance(net, LocalNetwork)
    x = torch.ones(4, 2)
    assert net.allreduce(x, timeout=1.0) is x and net.broadcast(3, timeout=1.0) == 3
    assert net.allgather_rows(x, timeout=1.0) is x
    net.barrier(timeout=1.0)


def _run(mpi, n, mode, k, rank, timeout_s=None):
    args = [SCRIPT, mode, str(k), str(rank)] + ([str(timeout_s)] if timeout_s else [])
    res = mpi(n, args, timeout=90)
    end = time.time()
    out = res.stdout + res.stderr
    m = re.search(r"INJECT (\S+)", out)
    after = end - float(m.group(1)) if m else None
    return res, out, after


def _assert_ends_once(res, out, after, message, *, n_max=10.0):
    assert res.returncode != 0, out[-3000:]
    assert after is not None, out[-3000:]
    assert after < n_max, (after, out[-3000:])            # the job ended within seconds
    assert out.count(message) == 1, out[-3000:]            # printed once, by one rank
    assert "FINISHED" not in out


@pytest.mark.mpi
def test_exception_on_one_rank_ends_the_cli_job(mpi):
    """``dcnn run`` (the CLI path): rank 1 raises at iteration 3 of 2 ranks."""
    res, out, after = _run(mpi, 2, "raise-cli", 3, 1)
    msg = MESSAGE.format(rank=1, k=3)
    assert res.returncode != 0, out[-3000:]
    assert after is not None and after < 10.0, (after, out[-3000:])
    errors = [line for line in out.splitlines() if line.startswith("dcnn: error:")]
    assert errors == [f"dcnn: error: [rank 1] unexpected RuntimeError: {msg}"], out[-3000:]


@pytest.mark.mpi
def test_exception_on_one_rank_ends_the_library_job(mpi):
    """No CLI: the MPI network's abort hook ends 3 ranks when rank 2 raises at iteration 2."""
    res, out, after = _run(mpi, 3, "raise-lib", 2, 2)
    _assert_ends_once(res, out, after, MESSAGE.format(rank=2, k=2))
    assert out.count("dcnn: rank 2 of 3 failed; ending the job (MPI_Abort)") == 1
    assert "of 3 failed" not in out.replace("rank 2 of 3 failed", "")


@pytest.mark.mpi
def test_agent_count_mismatch_across_ranks_is_refused(mpi):
    res = mpi(2, [SCRIPT, "agents", "0", "0"], timeout=60)
    out = res.stdout + res.stderr
    assert res.returncode != 0 and "NOT REFUSED" not in out, out[-3000:]
    # every rank raised it; rank 0 alone printed it before ending the job
    assert out.count("ranks disagree on the number of agents: rank 0 has 8, rank 1 has 6; "
                     "start every rank with the same run.agents") == 1, out[-3000:]


# ---- a stopped rank (SIGSTOP) in every kind of wait ------------------------------------------

def _start(n, args, env=None, *, cwd):
    """``mpiexec -n n python SCRIPT args`` started in ``cwd`` (where a run's automatic
    ``runs/`` folder goes)."""
    return subprocess.Popen([mpiexec_path(), "-n", str(n), sys.executable,
                             str(ROOT / SCRIPT), *args], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})


def _finish_all(procs: dict, *, timeout=90) -> dict:
    """{name: (exit status, output, seconds from INJECT to the job's end)}, every job waited
    for side by side (a thread each), so each end time is its own."""
    results = {}

    def wait(name, proc):
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
            out = f"DID NOT END IN {timeout} s\n" + out
        end = time.time()
        m = re.search(r"INJECT (\S+)", out)
        results[name] = (proc.returncode, out, end - float(m.group(1)) if m else None)

    threads = [threading.Thread(target=wait, args=item) for item in procs.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


OPS = ("mix", "allreduce", "allgather_rows", "broadcast", "barrier", "on_root")


@pytest.mark.mpi
def test_a_stopped_rank_ends_the_job_in_every_kind_of_wait(tmp_path):
    """Rank 0 stops itself (SIGSTOP): inside an ``on_root`` work while rank 1 waits in each
    kind of collective of the network, and inside ``dcnn run`` while it solves the centralized
    reference, writes a checkpoint, reads one to resume or writes the results. Each wait of
    rank 1 ends after 2 s (``run.comm_timeout``) with one line naming rank 0 (and what it was
    doing); the command ends the job with exit status 2. Work taking 3x the timeout in
    ``on_root`` (heartbeats) ends nothing. The five jobs run side by side (they mostly
    wait)."""
    from dcnn.cli import main
    written = tmp_path / "written"
    args = ["run", "--quiet", "--out", str(written)]
    for kv in ("run.agents=4", "run.iterations=8", "run.eval_every=4", "run.reference=false",
               "run.progress=false", "algorithm.name=dgd", "model.hidden=[4]",
               "run.checkpoint_every=4"):
        args += ["--set", kv]
    assert main(args) == 0
    procs = {"each": _start(2, ["stop-each", "0", "0", "2"], cwd=tmp_path),
             # the reference is solved, not read from a cache
             "stop-reference": _start(2, ["stop-reference", "0", "0", "2"],
                                      {"DCNN_CACHE": ""}, cwd=tmp_path),
             "stop-write": _start(2, ["stop-write", "0", "0", "2", str(tmp_path / "new")],
                                  cwd=tmp_path),
             "stop-read": _start(2, ["stop-read", "0", "0", "2", str(written)],
                                 cwd=tmp_path),
             "stop-results": _start(2, ["stop-results", "0", "0", "2",
                                        str(tmp_path / "results")], cwd=tmp_path)}
    results = _finish_all(procs)
    heard = ("rank 1 heard nothing for 2.0 s from rank 0 (agents 0-1) while it was {}; that "
             "rank failed or is stuck (stopped, dead or out of memory)")
    code, out, after = results.pop("each")
    assert code != 0 and "RETURNED" not in out, out[-3000:]
    waits = dict((m.group(1), (float(m.group(2)), m.group(3)))
                 for m in re.finditer(r"^(\w+) WAITED (\S+) (.*)$", out, re.M))
    assert sorted(waits) == sorted(OPS), out[-3000:]
    for op, (seconds, line) in waits.items():
        assert 2.0 <= seconds < 6.0, (op, seconds, out[-3000:])
        if op == "on_root":
            assert line == heard.format("testing")
        elif op == "mix":
            assert line == ("rank 1 waited 2.0 s for rank 0 (agents 0-1) in mix at call 1; "
                            "that rank failed or is stuck; raise run.comm_timeout if it is "
                            "only slow")
        else:
            assert line.startswith(f"rank 1 waited 2.0 s in {op} ") and line.endswith(
                "for rank 0 (it failed or is stuck); raise run.comm_timeout if it is only "
                "slow"), line
    doing = {"stop-reference": "solving the centralized reference",
             "stop-write": f"writing a checkpoint into {tmp_path / 'new' / 'checkpoint'}",
             "stop-read": f"reading the checkpoint in {written / 'checkpoint'}",
             "stop-results": f"writing the results into {tmp_path / 'results'}"}
    for name, (code, out, after) in results.items():
        errors = [x for x in out.splitlines() if x.startswith("dcnn: error:")]
        assert code == 2 and errors == [f"dcnn: error: [rank 1] {heard.format(doing[name])}"], \
            (name, out[-3000:])
        assert after is not None and 2.0 <= after < 15.0, (name, after, out[-3000:])
