"""The benchmarks at tiny sizes, for their own checks and their rows (timings are not
asserted): ``dcnn bench stacked --model cnn``, ``dcnn bench scaling`` and its solver label,
``dcnn bench mix``, ``dcnn bench bubbles`` and ``dcnn bench ptdp`` under mpiexec."""
import csv
import json

import pytest
import torch

from dcnn.bench import bench_stacked, pl_solver_label
from dcnn.cli import main
from dcnn.problems import FlatModel, LocalProblems, make_regularizer, mlp
from dcnn.surrogates import PL


@pytest.fixture
def keep_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)        # the benchmark's main sets the process's threads


def test_stacked_cnn_and_its_per_agent_loop_compute_the_same_iterates():
    (row,) = bench_stacked((3,), model="cnn", m=4, seconds=0.0)
    assert (row["model"], row["agents"], row["params"]) == ("cnn", 3, 5210)
    assert row["max_abs_diff_3_its"] <= 1e-10 and row["speedup"] > 0


def test_scaling_quick_writes_one_row_per_case(tmp_path, keep_threads, capsys):
    out = tmp_path / "scaling.csv"
    assert main(["bench", "scaling", "--quick", "--agents", "2", "--out", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert [(r["sweep"], r["model"], r["agents"]) for r in rows] == \
        [("P", "mlp P~1e3", "8"), ("P", "mlp P~1e4", "8"), ("agents", "cnn", "2")]
    # the cost model of dcnn.surrogates.costs: a direct solve for the P ~ 1e3 MLP, CG from
    # P ~ 1e4 (closed-form products; measured 1.6x faster there, experiments/README), and
    # Newton-CG for the CNN (forming its Jacobian costs more than the products)
    assert [r["solver"] for r in rows] == ["woodbury", "cg", "newton/cg"]
    assert [int(r["params"]) for r in rows] == [881, 10261, 5210]
    assert all(float(r["s_per_it"]) > 0 and float(r["tau_auto_s"]) > 0 for r in rows)
    assert "s_per_it" in capsys.readouterr().out


def test_solver_label_follows_the_pl_choice():
    def problem(m, loss):
        X = torch.randn(2 * m, 3, dtype=torch.float64)
        T = (X[:, :1] > 0).to(X.dtype)
        return LocalProblems(model=FlatModel(mlp(n_inputs=3, hidden=[2], n_outputs=1)),
                             shards=[(X[:m], T[:m]), (X[m:], T[m:])], loss=loss,
                             task="binary", n_total=2 * m,
                             regularizer=make_regularizer("l2", lam=1e-3))
    few, many = problem(4, "squared"), problem(20, "cross_entropy")     # P = 11
    assert pl_solver_label(PL(), few) == "woodbury"
    assert pl_solver_label(PL(), many) == "newton/cholesky"
    assert pl_solver_label(PL(solver="cg"), many) == "newton/cg"
    assert pl_solver_label(PL(solver="woodbury"), problem(20, "squared")) == "woodbury"


def test_agents_option_refuses_what_is_not_a_count(capsys):
    with pytest.raises(SystemExit):
        main(["bench", "stacked", "--agents", "8,0"])
    assert "not a list of agent counts" in capsys.readouterr().err


def test_mix_under_mpiexec_writes_one_row_per_size(mpi, tmp_path):
    """``dcnn bench mix``: the network's exchange beside the raw MPI one, one row per vector
    size, on rank 0 only."""
    out = tmp_path / "mix.json"
    res = mpi(2, ["-m", "dcnn", "bench", "mix", "--quick", "--out", str(out)], timeout=90)
    assert res.returncode == 0, res.stderr[-2000:]
    rows = json.loads(out.read_text())
    assert [(r["ranks"], r["P"]) for r in rows] == [(2, 1_000), (2, 10_000)]
    assert all(r["mix_ms"] > 0 and r["raw_ms"] > 0 and r["raw_sum_ms"] > 0 for r in rows)
    # the network's exchange computes what the hand-written one computes
    assert all(r["max_difference"] <= 1e-15 for r in rows)
    assert res.stdout.count("| 2 | ") == 2          # rank 0 alone prints the table


def test_bubbles_under_mpiexec_measure_every_schedule(mpi, tmp_path):
    """``dcnn bench bubbles --quick`` on 2 ranks: a row per schedule and micro-batch count
    with the measured bubble beside the formula, and 1F1B's refusal of m < stages as a row."""
    from dcnn.baselines import bubble_fraction
    out = tmp_path / "bubbles.json"
    res = mpi(2, ["-m", "dcnn", "bench", "bubbles", "--quick", "--out", str(out)], timeout=90)
    assert res.returncode == 0, res.stderr[-2000:]
    rows = {(r["schedule"], r["m"]): r for r in json.loads(out.read_text())}
    assert list(rows) == [(s, m) for s in ("gpipe", "1f1b", "interleaved") for m in (1, 2)]
    assert rows["1f1b", 1]["note"] == "pipeline: schedule '1f1b' needs microbatches >= " \
        "stages (2), got 1"
    for (schedule, m), r in rows.items():
        if (schedule, m) == ("1f1b", 1):
            continue
        v = 2 if schedule == "interleaved" else 1
        assert r["stages"] == 2 * v and r["ranks"] == 2
        assert r["bubble_theory"] == bubble_fraction(ranks=2, microbatches=m, virtual_stages=v)
        assert 0.0 < r["bubble_measured"] < 1.0 and r["ms_per_step"] > 0
        assert r["note"].startswith("per rank ")


def test_local_window_under_mpiexec_times_each_mode_and_window(mpi, tmp_path):
    """``dcnn bench local-window --quick`` on 2 ranks: one row per mode and window (one unit
    or chunk per rank), times measured, the speed-up relative to window 1."""
    out = tmp_path / "window.json"
    res = mpi(2, ["-m", "dcnn", "bench", "local-window", "--quick", "--out", str(out)],
              timeout=90)
    assert res.returncode == 0, res.stderr[-2000:]
    rows = json.loads(out.read_text())
    assert [(r["mode"], r["window"]) for r in rows] == [
        (m, w) for m in ("greedy", "overlapping", "chunked") for w in (1, 4)]
    for base, other in zip(rows[::2], rows[1::2]):
        assert base["units"] == other["units"] == 2 and base["ranks"] == 2
        assert base["speedup"] == 1.0 and base["ms_per_tick"] > 0
        assert other["speedup"] == pytest.approx(base["ms_per_tick"] / other["ms_per_tick"])


def test_ptdp_under_mpiexec_runs_every_grid_with_bytes_by_axis(mpi, tmp_path):
    """``dcnn bench ptdp --quick`` on 2 ranks: a row per (dp, tp, pp) of 2 ranks, the bytes by
    axis as the scheme gives them (8 Linear layers 8 wide, float32, 16 samples)."""
    out = tmp_path / "ptdp.json"
    res = mpi(2, ["-m", "dcnn", "bench", "ptdp", "--quick", "--out", str(out)], timeout=90)
    assert res.returncode == 0, res.stderr[-2000:]
    rows = {(r["dp"], r["tp"], r["pp"]): r for r in json.loads(out.read_text())}
    assert list(rows) == [(1, 1, 2), (1, 2, 1), (2, 1, 1)]
    params = 8 * (8 * 8 + 8)
    # pure data parallelism: a ring all-reduce of every parameter, 2 (R-1)/R P 4 bytes
    assert rows[2, 1, 1]["MB_dp"] == pytest.approx(params * 4 / 1e6)
    assert rows[2, 1, 1]["MB_pp"] == rows[2, 1, 1]["MB_tp"] == 0
    # pipeline of 4 stages (interleaved) on 2 ranks: 3 cuts 8 wide, 16 samples forward and
    # back, averaged over the 2 ranks
    assert rows[1, 1, 2]["MB_pp"] == pytest.approx(2 * 16 * 8 * 3 * 4 / 2 / 1e6)
    assert rows[1, 2, 1]["MB_tp"] > 0 and rows[1, 2, 1]["MB_dp"] == 0
    for r in rows.values():
        assert r["MB_total"] == pytest.approx(r["MB_pp"] + r["MB_tp"] + r["MB_dp"])
        assert r["ms_per_step"] > 0 and r["note"] == ""


def test_ptdp_of_the_transformer_under_mpiexec(mpi, tmp_path):
    """``dcnn bench ptdp --model transformer --quick`` on 2 ranks: the transformer (16 tokens,
    width 32, float32, 16 samples, 1F1B, 4 micro-batches) at every (dp, tp, pp) of 2 ranks,
    with the bytes the scheme gives: a cut carries a sample's 16 x 32 activations, tensor
    parallelism runs 6 all-reduces of them, data parallelism one of the parameters."""
    from dcnn.problems import transformer
    out = tmp_path / "ptdp.json"
    res = mpi(2, ["-m", "dcnn", "bench", "ptdp", "--model", "transformer", "--quick",
                  "--out", str(out)], timeout=90)
    assert res.returncode == 0, res.stderr[-2000:]
    rows = {(r["dp"], r["tp"], r["pp"]): r for r in json.loads(out.read_text())}
    assert list(rows) == [(1, 1, 2), (1, 2, 1), (2, 1, 1)]
    params = sum(p.numel() for p in transformer(n_inputs=256, n_outputs=10, tokens=16,
                                                d_model=32, heads=2, ffn=128).parameters())
    act = 16 * 16 * 32                      # samples x tokens x width
    assert rows[1, 1, 2]["stages"] == 2
    assert rows[1, 1, 2]["MB_pp"] == pytest.approx(2 * act * 4 / 2 / 1e6)    # one cut
    assert rows[1, 2, 1]["MB_tp"] == pytest.approx(6 * act * 4 / 1e6)
    assert rows[2, 1, 1]["MB_dp"] == pytest.approx(params * 4 / 1e6)
    for r in rows.values():
        assert r["MB_total"] == pytest.approx(r["MB_pp"] + r["MB_tp"] + r["MB_dp"])
        assert r["ms_per_step"] > 0 and r["note"] == ""


def test_split_memory_under_mpiexec_measures_each_worker(mpi, tmp_path):
    """``dcnn bench split-memory --quick`` on 2 ranks: one round of the unsplit model, SIL
    and the pipeline, one row per rank, each with a measured peak; SIL sends nothing while it
    trains, the pipeline sends its cut's activations and gradients."""
    from dcnn.baselines.schemes.sil_codes import memory_bytes, part_specs
    out = tmp_path / "memory.json"
    res = mpi(2, ["-m", "dcnn", "bench", "split-memory", "--quick", "--out", str(out)],
              timeout=90)
    assert res.returncode == 0, res.stderr[-2000:]
    rows = json.loads(out.read_text())
    assert [(r["round"], r["method"], r["rank"]) for r in rows] == [
        (1, m, r) for m in ("unsplit", "sil", "pipeline-gpipe") for r in (0, 1)]
    whole = memory_bytes(part_specs(mlp(n_inputs=32, hidden=[64] * 5, n_outputs=10), 1),
                         batch=64, optimizer="adam", itemsize=4)["total"]
    for r in rows:
        assert r["peak_rss_growth_MB"] > 0 and r["batch"] == 64 and r["ranks"] == 2
        if r["method"] == "unsplit":
            assert r["computed_MB"] == pytest.approx(whole / 1e6) and r["sent_MB"] == 0
        elif r["method"] == "sil":
            assert 0 < r["computed_MB"] < whole / 1e6 and r["sent_MB"] == 0
        else:
            # 2 steps, 64 samples 64 wide at the one cut, forward and back, float32
            assert r["sent_MB"] == pytest.approx(2 * 2 * 64 * 64 * 4 / 2 / 1e6)


def test_agent_loop_takes_the_same_steps_as_the_stacked_backend(tmp_path, keep_threads):
    out = tmp_path / "agent-loop.csv"
    assert main(["bench", "agent-loop", "--quick", "--agents", "3,5", "--out", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert [int(r["agents"]) for r in rows] == [3, 5]
    assert all(float(r["max_iterate_difference"]) <= 1e-12 for r in rows)
    assert all(float(r["speed-up"]) > 0 for r in rows)


@pytest.mark.mpi
def test_disropt_style_gt_and_dcnn_take_the_same_steps(tmp_path):
    from conftest import run_mpi
    out = tmp_path / "disropt.csv"
    res = run_mpi(2, ["-m", "dcnn", "bench", "disropt", "--quick", "--out", str(out)],
                  timeout=180)
    assert res.returncode == 0, res.stderr[-2000:]
    (row,) = list(csv.DictReader(out.open()))
    assert (row["ranks"], row["d"], row["iterations"]) == ("2", "4", "200")
    assert float(row["max_iterate_difference"]) <= 1e-12
    # 200 steps of 0.05 on a problem with curvature ~ 1: near the closed-form optimum
    assert float(row["dcnn_error"]) < 1e-3 and float(row["disropt_style_error"]) < 1e-3
