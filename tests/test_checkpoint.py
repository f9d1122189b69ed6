"""Checkpoints and exact resume (dcnn.checkpoint, ``dcnn run --resume``).

Oracles: a run interrupted at a checkpoint and resumed ends bitwise equal (float64) to the
uninterrupted run, for every method of the one loop (including the surrogate's warm starts
and the random block choice, which are state fields like any other) and after a SIGKILL, in one process and under ``mpiexec -n 2``;
resumed on 4 ranks what 2 ranks wrote, it agrees with the 2-rank run to 1e-10 (the tolerance
between rank counts). A tampered, truncated or foreign checkpoint is refused with one line
naming the file; nothing in it is unpickled; a crash while writing keeps the last good one.
"""
import csv
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from dcnn.algorithms import (Centralized, Constant, Dgd, Diminishing, Extra, GradientTracking,
                             Next, PushDiging, Scaled, Sonata, run_loop)
from dcnn.checkpoint import MANIFEST, Checkpointer, read_checkpoint
from dcnn.comm import LocalNetwork
from dcnn.config import load_config
from dcnn.errors import CheckpointError, ConfigError
from dcnn.surrogates import FL, PL, make_blocked
from dcnn.topology import make_topology

from conftest import ROOT, error_of, mpiexec_path
from oracles import tiny_problem

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
TIMES = ("time_s", "eval_time_s")


# ---- every method of the one loop, in process ------------------------------------------------

def _algo(name, prob):
    lr = Scaled(Constant(1.0), 0.2)
    return {
        "next-pl": lambda: Next(PL(tau=2.0), Diminishing(0.5)),
        # tau raised during the run (at iteration 2, to 0.053): the raised value is state
        "next-pl-raised-tau": lambda: Next(PL(tau=0.01), Diminishing(0.5), adapt_tau=True),
        "next-fl-batches": lambda: Next(FL(tau=4.0), Constant(0.5), batch_size=4, seed=3),
        "next-pl-blocks": lambda: Next(make_blocked(PL(tau=2.0), model=prob.model,
                                                    blocks="neuron", block_fraction=0.5,
                                                    seed=1), Diminishing(0.5)),
        "sonata-pl": lambda: Sonata(PL(tau=2.0), Diminishing(0.5), batch_size=5),
        # tau = "auto" and mini-batches of unequal weight (one view per agent) with a random
        # half of the blocks: the memory's rows are split over the views and joined again
        "sonata-pl-auto-batches-blocks": lambda: Sonata(
            make_blocked(PL(tau="auto"), model=prob.model, blocks="neuron",
                         block_fraction=0.5, seed=2), Diminishing(0.5), batch_size=4, seed=1),
        "gt-auto-lr": lambda: GradientTracking(Scaled(Constant(0.5), "auto")),
        "dgd": lambda: Dgd(lr),
        "dsgd": lambda: Dgd(lr, name="dsgd", batch_size=4, seed=2),
        "gt": lambda: GradientTracking(lr),
        "extra": lambda: Extra(lr),
        "push-diging": lambda: PushDiging(lr),
        "centralized-lbfgs": lambda: Centralized(lr, optimizer="lbfgs"),
        "centralized-adam": lambda: Centralized(Scaled(Constant(1.0), 0.05), optimizer="adam"),
    }[name]()


# cross-entropy: PL solves by Newton, warm-started from the last answer (memory to save)
LOSS = {"next-pl": "cross_entropy", "next-pl-raised-tau": "cross_entropy",
        "next-pl-blocks": "cross_entropy", "sonata-pl": "cross_entropy",
        "sonata-pl-auto-batches-blocks": "cross_entropy"}
GRAPH = {"sonata-pl": ("directed_ring", "link_failure"),
         "sonata-pl-auto-batches-blocks": ("directed_ring", "link_failure"),
         "push-diging": ("directed_ring", "link_failure"), "extra": ("ring", "static")}


def _loop(name, *, iterations, out=None, every=0, resume=None):
    prob = tiny_problem(loss=LOSS.get(name, "squared"), sizes=(6, 9, 7, 8))
    graph, dynamic = GRAPH.get(name, ("ring", "link_failure"))
    topo = make_topology(graph=graph, n=4, dynamic=dynamic, seed=0,
                         **({"p_fail": 0.3} if dynamic == "link_failure" else {}))
    cp = None if out is None else Checkpointer(out, every=every, config={"case": name},
                                               info={})
    return run_loop(_algo(name, prob), problem=prob, network=LocalNetwork(4), topology=topo,
                    X0=prob.model.w0.expand(4, -1).clone(), iterations=iterations,
                    eval_every=3, checkpoints=cp, resume=resume)


def _fields(state):
    return {k: v for k, v in vars(state).items()}


def _equal(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return a.dtype == b.dtype and a.shape == b.shape and bool(a.equal(b))
    if isinstance(a, (tuple, list)):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    return a == b


def _without_times(records):
    """The records as exact text (``repr``: every digit; NaN equal to NaN), times left out."""
    return [{k: repr(v) for k, v in r.items() if k not in TIMES} for r in records]


@pytest.mark.parametrize("name", ["next-pl", "next-pl-raised-tau", "next-fl-batches",
                                  "next-pl-blocks", "sonata-pl", "sonata-pl-auto-batches-blocks", "dgd", "dsgd", "gt",
                                  "gt-auto-lr", "extra", "push-diging", "centralized-lbfgs",
                                  "centralized-adam"])
def test_every_loop_method_resumes_bitwise(tmp_path, name):
    """Stopped at iteration 5 (a checkpoint) and resumed to 9: every field of the final state
    and every History record equal the uninterrupted run's, bit for bit."""
    ref_state, ref_hist = _loop(name, iterations=9)
    _loop(name, iterations=5, out=tmp_path, every=5)
    ckpt = read_checkpoint(tmp_path)
    assert ckpt.iteration == 5
    state, hist = _loop(name, iterations=9, out=tmp_path, every=5, resume=ckpt)
    ref, got = _fields(ref_state), _fields(state)
    assert ref.keys() == got.keys()
    for key in ref:
        assert _equal(ref[key], got[key]), (name, key)
    # the interrupted run recorded its last iteration (5) besides the common 0, 3, 6, 9
    records = [r for r in hist.records if r["iteration"] != 5]
    assert _without_times(records) == _without_times(ref_hist.records)


def test_the_surrogate_memory_is_what_makes_it_exact(tmp_path):
    """Control for the test above: the warm starts are plain state fields of the checkpoint
    (no surrogate-specific part), and resumed with them cleared the PL run drifts."""
    ref_state, _ = _loop("next-pl", iterations=9)
    _loop("next-pl", iterations=5, out=tmp_path, every=5)
    ckpt = read_checkpoint(tmp_path)
    assert "surrogate" not in ckpt.manifest
    fields = ckpt.manifest["fields"]
    assert fields["warm"]["kind"] == fields["has_warm"]["kind"] == "rows"
    assert fields["calls"]["kind"] == "int" and fields["tau"]["kind"] == "float"
    assert ckpt.arrays["has_warm"].all() and int(ckpt.arrays["calls"]) == 5
    assert ckpt.arrays["warm"].shape == ckpt.arrays["X"].shape
    same, _ = _loop("next-pl", iterations=9, resume=read_checkpoint(tmp_path))
    assert same.X.equal(ref_state.X)
    ckpt.arrays["has_warm"] = np.zeros_like(ckpt.arrays["has_warm"])
    state, _ = _loop("next-pl", iterations=9, resume=ckpt)
    assert not state.X.equal(ref_state.X)


# ---- safe files ---------------------------------------------------------------------------

@pytest.fixture
def saved(tmp_path):
    _loop("gt", iterations=4, out=tmp_path / "checkpoint", every=2)
    return tmp_path / "checkpoint"


def _state_file(folder: Path) -> Path:
    return folder / json.loads((folder / MANIFEST).read_text())["state_file"]


def _rewrite_npz(folder: Path, change) -> None:
    """Rewrite the npz with ``change(arrays)`` applied and a manifest checksum that fits it
    (a careful forger: only the content checks can catch it)."""
    import hashlib
    path = _state_file(folder)
    with np.load(path, allow_pickle=True) as npz:
        arrays = {k: npz[k] for k in npz.files}
    change(arrays)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    path.write_bytes(buf.getvalue())
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["state_sha256"] = hashlib.sha256(buf.getvalue()).hexdigest()
    (folder / MANIFEST).write_text(json.dumps(manifest))


def test_an_older_format_version_is_refused(saved):
    manifest = json.loads((saved / MANIFEST).read_text())
    manifest["version"] = 1
    (saved / MANIFEST).write_text(json.dumps(manifest))
    error_of(lambda: read_checkpoint(saved), "format version 1", "reads version 2",
             kind=CheckpointError)


def test_a_flipped_byte_or_a_truncated_file_is_refused(saved):
    path = _state_file(saved)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 1
    path.write_bytes(bytes(data))
    error_of(lambda: read_checkpoint(saved), path.name, "sha256", "start the run again",
             kind=CheckpointError)
    path.write_bytes(bytes(data[:100]))
    error_of(lambda: read_checkpoint(saved), path.name, "sha256", kind=CheckpointError)


def test_an_edited_or_broken_manifest_is_refused(saved):
    text = (saved / MANIFEST).read_text()
    manifest = json.loads(text)
    manifest["iteration"] = 3
    (saved / MANIFEST).write_text(json.dumps(manifest))
    error_of(lambda: read_checkpoint(saved), MANIFEST, "was edited", kind=CheckpointError)
    (saved / MANIFEST).write_text(text[: len(text) // 2])
    error_of(lambda: read_checkpoint(saved), MANIFEST, "not valid JSON", kind=CheckpointError)
    (saved / MANIFEST).unlink()
    error_of(lambda: read_checkpoint(saved), "no checkpoint", "checkpoint_every",
             kind=CheckpointError)


def test_a_missing_field_or_a_shape_that_does_not_fit_is_refused(saved):
    _rewrite_npz(saved, lambda a: a.pop("Y"))
    error_of(lambda: read_checkpoint(saved), "lacks the field 'Y'", kind=CheckpointError)
    _rewrite_npz(saved, lambda a: a.update(Y=np.zeros((4, 3))))
    error_of(lambda: read_checkpoint(saved), "field 'Y'", "float64 [4, 3]",
             kind=CheckpointError)


def test_a_pickled_object_is_never_unpickled(saved, tmp_path):
    sentinel = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (sentinel,))

    def plant(arrays):
        obj = np.empty(1, dtype=object)
        obj[0] = Payload()
        arrays["X"] = obj
    _rewrite_npz(saved, plant)
    error_of(lambda: read_checkpoint(saved), "pickled object", kind=CheckpointError)
    assert not sentinel.exists()


def test_a_crash_while_writing_keeps_the_last_good_checkpoint(saved, monkeypatch):
    """The manifest's rename is the commit: a write that dies before it (here: the rename
    fails) leaves the previous checkpoint intact and readable."""
    before = read_checkpoint(saved)
    real = os.replace

    def crash(src, dst):
        if str(dst).endswith(MANIFEST):
            raise OSError(28, "No space left on device")
        return real(src, dst)
    monkeypatch.setattr(os, "replace", crash)
    error_of(lambda: _loop("gt", iterations=6, out=saved, every=3), "No space left",
             "free disk space", kind=CheckpointError)
    monkeypatch.setattr(os, "replace", real)
    after = read_checkpoint(saved)
    assert after.iteration == before.iteration == 4
    assert after.manifest == before.manifest
    assert all(np.array_equal(after.arrays[k], before.arrays[k]) for k in before.arrays)


# ---- the command: resume after SIGKILL ----------------------------------------------------

RUN = ["run.iterations=60", "run.eval_every=10", "run.reference=false", "run.threads=1",
       "model.loss='cross_entropy'", "run.checkpoint_every=10"]


def _sets(items):
    return [x for item in items for x in ("--set", item)]


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (from /proc), children first."""
    parent = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parent[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    out, frontier = [], [pid]
    while frontier:
        kids = [p for p, pp in parent.items() if pp in frontier]
        out += kids
        frontier = kids
    return out


def _iteration(folder: Path) -> int:
    try:
        return json.loads((folder / "checkpoint" / MANIFEST).read_text())["iteration"]
    except (OSError, ValueError, KeyError):
        return -1


def _kill_after_checkpoint(cmd: list[str], out: Path, *, at: int, victim) -> int:
    """Start ``cmd``, SIGKILL ``victim(proc)`` as soon as the checkpoint of iteration >= ``at``
    is in ``out``; returns the iteration of the checkpoint seen at the kill."""
    proc = subprocess.Popen(cmd, cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while (seen := _iteration(out)) < at:
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"no checkpoint of iteration {at} before the run ended or 120 s "
                            f"passed: {proc.stderr.read()[-2000:]}")
            time.sleep(0.01)
        os.kill(victim(proc), signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode != 0, "the job was meant to die"
    return seen


def _history(folder: Path) -> list[dict]:
    with (folder / "history.csv").open() as fh:
        return [{k: v for k, v in row.items() if k not in TIMES} for row in csv.DictReader(fh)]


def _final_arrays(folder: Path) -> dict:
    ckpt = read_checkpoint(folder / "checkpoint")
    assert ckpt.iteration == 60
    return ckpt.arrays


def _assert_same_run(a: Path, b: Path) -> None:
    assert _history(a) == _history(b)          # every digit of every record
    x, y = _final_arrays(a), _final_arrays(b)
    assert x.keys() == y.keys()
    for k in x:
        assert np.array_equal(x[k], y[k]), k


def test_kill_and_resume_in_one_process(tmp_path):
    """`dcnn run` killed (SIGKILL) after the checkpoint of iteration >= 20, then
    `dcnn run --resume DIR`: history.csv and the final state equal the uninterrupted run's."""
    from dcnn.cli import main
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "dcnn", "run", *_sets(RUN), "--quiet", "--out", str(out)]
    seen = _kill_after_checkpoint(cmd, out, at=20, victim=lambda proc: proc.pid)
    assert 20 <= seen < 60
    assert not (out / "history.csv").exists()
    assert main(["run", "--resume", str(out), "--quiet"]) == 0
    assert main(["run", *_sets(RUN), "--quiet", "--out", str(tmp_path / "ref")]) == 0
    _assert_same_run(out, tmp_path / "ref")
    # a resume may extend the run, not change it
    with pytest.raises(ConfigError, match="algorithm.alpha0"):
        from dcnn.runner import resume_experiment
        resume_experiment(out, overrides=["algorithm.alpha0=0.1"], verbose=False)
    # DIR/config.json that no longer fits the checkpoint
    cfg = json.loads((out / "config.json").read_text())
    cfg["model"]["lam"] = 0.5
    (out / "config.json").write_text(json.dumps(cfg))
    error_of(lambda: resume_experiment(out, verbose=False), "config.json", "model.lam",
             kind=CheckpointError)


@pytest.mark.mpi
def test_kill_a_rank_and_resume_under_mpiexec_on_2_and_4_ranks(tmp_path):
    """`mpiexec -n 2 dcnn run` with one rank SIGKILLed after the checkpoint of iteration
    >= 20; resumed on 2 ranks it ends bitwise equal to the uninterrupted 2-rank run, and
    resumed on 4 ranks (8 agents) within 1e-10 of it."""
    exe = mpiexec_path()
    if exe is None:
        pytest.fail("mpiexec not found: install the 'mpi' extra")
    killed = tmp_path / "killed"
    cmd = [exe, "-n", "2", sys.executable, "-m", "dcnn", "run", *_sets(RUN), "--quiet",
           "--out", str(killed)]

    def a_rank(proc):
        ranks = [p for p in _descendants(proc.pid)
                 if "dcnn" in Path(f"/proc/{p}/cmdline").read_bytes().decode(errors="ignore")]
        assert len(ranks) == 2, ranks
        return ranks[-1]
    seen = _kill_after_checkpoint(cmd, killed, at=20, victim=a_rank)
    assert 20 <= seen < 60
    four = tmp_path / "four"
    shutil.copytree(killed, four)
    script = str(ROOT / "tests" / "_checkpoint_script.py")
    # the uninterrupted 2-rank run and the 2-rank resume, then the 4-rank resume, in parallel
    jobs = [subprocess.Popen([exe, "-n", "2", sys.executable, script, str(tmp_path / "ref"),
                              str(killed), *RUN], cwd=ROOT, env=ENV, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True),
            subprocess.Popen([exe, "-n", "4", sys.executable, "-m", "dcnn", "run", "--resume",
                              str(four), "--quiet"], cwd=ROOT, env=ENV,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)]
    try:
        logs = [job.communicate(timeout=240)[0] for job in jobs]
    finally:
        for job in jobs:
            if job.poll() is None:
                job.kill()
                job.wait()
    assert [job.returncode for job in jobs] == [0, 0], "\n".join(x[-3000:] for x in logs)
    _assert_same_run(killed, tmp_path / "ref")
    ref, got = _history(tmp_path / "ref"), _history(four)
    assert [r["iteration"] for r in got] == [r["iteration"] for r in ref]
    for r, g in zip(ref, got):
        for k in ("objective", "grad_norm", "consensus_error", "train_metric"):
            assert abs(float(g[k]) - float(r[k])) <= 1e-10 * max(1.0, abs(float(r[k]))), k
    x, y = _final_arrays(tmp_path / "ref"), _final_arrays(four)
    assert np.abs(x["X"] - y["X"]).max() <= 1e-10
    summary = json.loads((four / "summary.json").read_text())
    assert summary["ranks"] == 4 and summary["iterations"] == 60
    # the divergence guard stops both ranks at the same iteration, with the same message
    messages = [(tmp_path / f"diverged-r{r}.txt").read_text() for r in (0, 1)]
    assert messages[0] == messages[1], messages
    assert "is not finite" in messages[0] and "checkpoint" in messages[0]


def test_engine_methods_refuse_checkpoints():
    from dcnn.runner import run_experiment
    cfg = load_config(overrides=["algorithm.name='ddp'", "run.checkpoint_every=5",
                                 "run.progress=false"])
    error_of(lambda: run_experiment(cfg, out=None, verbose=False), "'ddp'",
             "run.checkpoint_every = 0", kind=ConfigError)


def test_a_missing_run_folder_is_refused(tmp_path):
    from dcnn.runner import resume_experiment
    error_of(lambda: resume_experiment(tmp_path / "nope", verbose=False), "config.json",
             "--out folder", kind=CheckpointError)

