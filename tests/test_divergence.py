"""The divergence guard of the one loop: a blow-up stops the run within one iteration, names
the agent and the quantity, and leaves the last finite state as a checkpoint.

Oracle: the same run replayed step by step without the guard; the first iteration whose
state holds a NaN/inf, and its lowest offending agent and field, are what the message says,
and the saved checkpoint is bitwise the replay's state one iteration earlier.
"""
import re

import pytest
import torch

from dcnn.algorithms import Constant, GradientTracking, Next, Scaled, run_loop
from dcnn.checkpoint import Checkpointer, read_checkpoint
from dcnn.comm import LocalNetwork
from dcnn.errors import ConfigError, DivergenceError
from dcnn.surrogates import FL
from dcnn.topology import make_topology

from oracles import tiny_problem

N = 4
FIELDS = {"X": "iterate w", "Y": "tracker y", "G": "stored local gradient"}
MESSAGE = re.compile(r"agent (\d+): (.+) is not finite \((nan|inf)\) at iteration (\d+); the "
                     r"last finite state \(iteration (\d+)\) is in (.+); lower "
                     r"algorithm\.alpha0 \(or algorithm\.lr\), or raise algorithm\.tau$")


def _setup(lr):
    prob = tiny_problem(sizes=(6, 9, 7, 8), hidden=())      # linear: growth is geometric
    topo = make_topology(graph="ring", n=N, dynamic="link_failure", p_fail=0.3, seed=0)
    return prob, topo, GradientTracking(Scaled(Constant(1.0), lr)), \
        prob.model.w0.expand(N, -1).clone()


def _replay(prob, topo, algo, X0, iterations):
    """Every state of the unguarded run up to the first that is not finite."""
    net = LocalNetwork(N)
    states = [algo.init(prob, net, X0)]
    for t in range(iterations):
        states.append(algo.step(states[-1], prob, net, topo.weights(t)))
        if not all(torch.isfinite(getattr(states[-1], f)).all() for f in FIELDS):
            return states
    pytest.fail("the step size was meant to blow up")


def test_a_step_size_that_blows_up_stops_within_one_iteration_with_the_last_finite_state_saved(
        tmp_path):
    prob, topo, algo, X0 = _setup(lr=1e8)
    states = _replay(prob, topo, algo, X0, 200)
    bad, last = states[-1], states[-2]
    agent, field = next((a, f) for a in range(N) for f in FIELDS
                        if not torch.isfinite(getattr(bad, f)[a]).all())
    with pytest.raises(DivergenceError) as info:
        # evaluations far apart: only the per-iteration guard can catch it in time
        run_loop(algo, problem=prob, network=LocalNetwork(N), topology=topo, X0=X0,
                 iterations=200, eval_every=1000,
                 checkpoints=Checkpointer(tmp_path, every=0, config={}, info={}))
    msg = str(info.value)
    assert "\n" not in msg
    m = MESSAGE.match(msg)
    assert m, msg
    assert (int(m[1]), m[2], int(m[4]), int(m[5])) == (agent, FIELDS[field], bad.t, last.t)
    assert m[3] == ("nan" if torch.isnan(getattr(bad, field)[agent]).any() else "inf")
    ckpt = read_checkpoint(tmp_path)
    assert ckpt.iteration == last.t and ckpt.manifest["reason"] == "divergence"
    for f in ("X", "Y", "G"):
        saved = torch.from_numpy(ckpt.arrays[f])
        assert torch.isfinite(saved).all() and saved.equal(getattr(last, f)), f


def test_an_objective_that_overflows_is_caught_at_the_evaluation(tmp_path):
    """Iterates near 1e160 are finite, their squared loss is not: the evaluation's check
    stops the run and saves the state of the iteration before (the bound on growth off: it
    would stop it earlier, see below)."""
    prob, topo, algo, X0 = _setup(lr=1e8)
    states = _replay(prob, topo, algo, X0, 200)
    with pytest.raises(DivergenceError, match=r"the objective is not finite \((nan|inf)\) at "
                                              r"iteration (\d+); the last finite state") as info:
        run_loop(algo, problem=prob, network=LocalNetwork(N), topology=topo, X0=X0,
                 iterations=200, eval_every=1, blowup=0,
                 checkpoints=Checkpointer(tmp_path, every=0, config={}, info={}))
    t = int(re.search(r"at iteration (\d+)", str(info.value))[1])
    assert t < states[-1].t          # before the iterates themselves overflow
    ckpt = read_checkpoint(tmp_path)
    assert ckpt.iteration == t - 1
    assert torch.from_numpy(ckpt.arrays["X"]).equal(states[t - 1].X)


def test_without_an_output_folder_the_message_says_nothing_was_saved():
    prob, topo, _, X0 = _setup(lr=1.0)
    with pytest.raises(DivergenceError, match="was not saved"):
        run_loop(Next(FL(tau=1e-9), Constant(1.0)), problem=prob, network=LocalNetwork(N),
                 topology=topo, X0=X0, iterations=200, eval_every=1000)


def test_dcnn_run_stops_with_one_line_and_the_checkpoint(tmp_path, capsys):
    """Through the command: exit status 2, one line naming agent, quantity and iteration;
    config.json and the checkpoint are there, the report of a finished run is not."""
    from dcnn.cli import main
    out = tmp_path / "run"
    code = main(["run", "--set", "algorithm.name='gt'", "--set", "algorithm.lr=1e8",
                 "--set", "run.iterations=60", "--set", "run.eval_every=60", "--set",
                 "run.reference=false", "--set", "run.agents=4", "--quiet",
                 "--out", str(out)])
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert code == 2 and len(err) == 1, err
    assert re.match(r"dcnn: error: agent \d+: .+ is not finite \((nan|inf)\) at iteration "
                    r"\d+; the last finite state \(iteration \d+\) is in .*checkpoint", err[0])
    ckpt = read_checkpoint(out / "checkpoint")
    assert (out / "config.json").is_file() and not (out / "summary.json").exists()
    assert all(torch.isfinite(torch.from_numpy(ckpt.arrays[f])).all() for f in ("X", "Y", "G"))
    assert ckpt.manifest["config"]["run"]["agents"] == 4


def test_a_finite_blow_up_is_stopped_at_the_first_evaluation_past_the_bound(tmp_path):
    """GT at twice its stable step grows geometrically but stays finite for hundreds of
    rounds: without the bound it runs to the end (objective ~1e70); with run.blowup the run
    stops at the first evaluation whose objective passes blowup x (|U_0| + 1)."""
    prob, topo, algo, X0 = _setup(lr=2.0)
    _, free = run_loop(algo, problem=prob, network=LocalNetwork(N), topology=topo, X0=X0,
                       iterations=100, eval_every=5, blowup=0)
    U = free.column("objective")
    assert all(u == u and abs(u) < float("inf") for u in U) and U[-1] > 1e60
    first = next(r["iteration"] for r in free.records
                 if r["objective"] > 1e6 * (abs(U[0]) + 1))
    with pytest.raises(DivergenceError) as info:
        run_loop(algo, problem=prob, network=LocalNetwork(N), topology=topo, X0=X0,
                 iterations=100, eval_every=5, blowup=1e6,
                 checkpoints=Checkpointer(tmp_path, every=0, config={}, info={}))
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith("the objective grew to ")
    assert f"past run.blowup = 1e+06 x (|U_0| + 1) with U_0 = {U[0]:.4g} at iteration " \
           f"{first};" in msg
    assert f"(iteration {first - 1}) is in {tmp_path}" in msg


@pytest.mark.parametrize("blowup", [0.5, 1, -3, "big", True])
def test_a_bad_blowup_is_refused_in_one_line(blowup):
    prob, topo, algo, X0 = _setup(lr=0.5)
    with pytest.raises(ConfigError) as info:
        run_loop(algo, problem=prob, network=LocalNetwork(N), topology=topo, X0=X0,
                 iterations=2, blowup=blowup)
    assert "\n" not in str(info.value) and str(info.value).startswith(f"blowup = {blowup!r}")
