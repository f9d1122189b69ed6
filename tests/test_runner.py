"""run_experiment from Python: float32 follows float64; the resolved config round-trips."""
import pytest

import dcnn
from dcnn.config import load_config


def _cfg(**run):
    cfg = load_config(None, [f"run.{k}={v}" for k, v in
                             {"iterations": 30, "eval_every": 10, "progress": "false",
                              **run}.items()])
    return cfg


def test_float32_follows_float64():
    r64 = dcnn.run_experiment(_cfg(), out=None, verbose=False)
    r32 = dcnn.run_experiment(_cfg(dtype="float32"), out=None, verbose=False)
    assert r32.state.X.dtype.is_floating_point and str(r32.state.X.dtype) == "torch.float32"
    f64, f32 = r64.summary["final"], r32.summary["final"]
    # same initial point (drawn in float64, then rounded); single-precision rounding
    # (~1e-7 relative) stays small along 30 iterations (measured <= 2e-7)
    assert f32["objective"] == pytest.approx(f64["objective"], rel=1e-5)
    assert abs(f32["test_metric"] - f64["test_metric"]) <= 1.0


@pytest.mark.slow
@pytest.mark.parametrize("surrogate", ["pl", "fl"])
@pytest.mark.parametrize("name", ["breast_cancer", "digits", "wine", "iris", "diabetes"])
def test_auto_tau_converges_on_every_bundled_dataset(name, surrogate):
    """A user who sets nothing but the dataset gets a decreasing, consensual run (tau auto).
    Measured at 300 iterations (the default): the objective ends within 1.2-1.6x of the
    centralized optimum with PL and 1.8-4.8x with FL on all five datasets; 40 iterations
    keep the test short."""
    cfg = load_config(None, [f"data.name='{name}'", f"algorithm.surrogate='{surrogate}'",
                             "run.iterations=40", "run.eval_every=10", "run.progress=false",
                             "run.reference=false"])
    res = dcnn.run_experiment(cfg, out=None, verbose=False)
    U = res.history.column("objective")
    assert res.summary["tau"] > 0
    assert all(b <= a * (1 + 1e-9) for a, b in zip(U, U[1:])), U
    assert U[-1] < 0.6 * U[0], U
    assert res.summary["final"]["consensus_error"] < 1e-2 * U[-1]


def test_default_toml_spells_out_the_defaults():
    """experiments/default.toml is what `dcnn run` does with no arguments."""
    from conftest import ROOT
    from dcnn.config import resolve
    assert resolve(load_config(ROOT / "experiments" / "default.toml")) == resolve(load_config())


def test_batch_size_config_reaches_the_algorithm():
    """algorithm.batch_size: a batch as large as every shard is the deterministic run;
    a small one changes the trajectory (and is reported in summary.json)."""
    base = ["run.iterations=5", "run.eval_every=5", "run.progress=false", "run.reference=false",
            "algorithm.surrogate='fl'"]
    runs = {b: dcnn.run_experiment(load_config(None, base + [f"algorithm.batch_size={b}"]),
                                   out=None, verbose=False) for b in (0, 1000, 8)}
    assert runs[0].summary["batch_size"] is None and runs[8].summary["batch_size"] == 8
    assert runs[0].state.X.equal(runs[1000].state.X)
    assert not runs[0].state.X.equal(runs[8].state.X)


def test_block_threads_config_reaches_the_surrogate():
    """algorithm.threads/blocks: 2 threads give the 1-thread block-Jacobi trajectory exactly;
    blocking changes the trajectory compared with the unblocked default."""
    base = ["run.iterations=5", "run.eval_every=5", "run.progress=false", "run.reference=false"]
    blocked = ["algorithm.blocks='neuron'", "algorithm.block_fraction=1.0"]
    runs = {c: dcnn.run_experiment(load_config(None, base + blocked + [f"algorithm.threads={c}"]),
                                   out=None, verbose=False) for c in (1, 2)}
    plain = dcnn.run_experiment(load_config(None, base), out=None, verbose=False)
    assert runs[1].state.X.equal(runs[2].state.X)
    assert not runs[1].state.X.equal(plain.state.X)


def test_one_torch_thread_per_rank_unless_told_otherwise(monkeypatch):
    import torch

    from dcnn.runner import configure_threads
    before = torch.get_num_threads()
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("MPI_LOCALNRANKS", raising=False)
    monkeypatch.delenv("OMPI_COMM_WORLD_LOCAL_SIZE", raising=False)
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    try:
        assert configure_threads(0, ranks=1) == 1                     # the default
        assert configure_threads(3, ranks=2) == 3                     # run.threads
        assert configure_threads(0, ranks=2, fill_cores=True) == 4    # the benchmarks'
        torch.set_num_threads(2)
        monkeypatch.setenv("OMP_NUM_THREADS", "2")
        assert configure_threads(0, ranks=1) == 2                     # left as OMP says
    finally:
        torch.set_num_threads(before)


def test_callbacks_add_columns_and_stop_the_run(tmp_path):
    seen = []

    def mine(state, record):
        record["norm"] = float(state.X.norm())
        seen.append(record["iteration"])
        return record["iteration"] >= 20                       # stop after the 3rd evaluation

    res = dcnn.run_experiment(_cfg(iterations=50, reference="false"), out=tmp_path / "r",
                              verbose=False, callbacks=[mine, lambda s, r: False])
    assert seen == [0, 10, 20] and res.history.column("iteration") == [0, 10, 20]
    assert all(n > 0 for n in res.history.column("norm"))
    header = (tmp_path / "r" / "history.csv").read_text().splitlines()[0].split(",")
    assert header[-1] == "norm" and "test_metric" in header
    with pytest.raises(dcnn.ConfigError, match="sequence of functions"):
        dcnn.run_experiment(_cfg(), out=None, verbose=False, callbacks=[42])
    with pytest.raises(dcnn.ConfigError, match="parallel trainer"):
        cfg = _cfg(reference="false")
        cfg.algorithm.name = "ddp"
        dcnn.run_experiment(cfg, out=None, verbose=False, callbacks=[mine])
