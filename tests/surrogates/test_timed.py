"""The local solver's time (dcnn.surrogates.timed and the runner's ``local_solve_*``).

Oracles: a timed surrogate changes nothing -- NEXT with ``Timed(PL)`` ends bitwise equal, in
every state field, to NEXT with the bare ``PL``; the stopwatch counts one call per iteration;
the run's summary holds the solver's seconds, which lie inside the loop's time."""
import copy
import pickle

import pytest
import torch

import dcnn
from dcnn.algorithms import Diminishing, Next, run_loop
from dcnn.comm import LocalNetwork
from dcnn.config import load_config
from dcnn.metrics import History
from dcnn.runner import local_solve_time
from dcnn.surrogates import PL
from dcnn.surrogates.timed import Stopwatch, Timed
from dcnn.topology import make_topology

from oracles import tiny_problem


def _run(surrogate, prob, iterations=6):
    topo = make_topology(graph="ring", n=3, dynamic="link_failure", seed=0, p_fail=0.3)
    return run_loop(Next(surrogate, Diminishing(0.5)), problem=prob, network=LocalNetwork(3),
                    topology=topo, X0=prob.model.w0.expand(3, -1).clone(),
                    iterations=iterations, eval_every=3)


def test_a_timed_surrogate_changes_nothing_and_counts_every_local_step():
    prob = tiny_problem(loss="cross_entropy")
    bare, _ = _run(PL(tau=2.0), prob)
    timed = Timed(PL(tau=2.0))
    state, _ = _run(timed, prob)
    for key, value in vars(bare).items():
        got = getattr(state, key)
        assert torch.equal(value, got) if isinstance(value, torch.Tensor) else value == got, key
    assert timed.watch.calls == 6 and timed.watch.seconds > 0


def test_timed_forwards_the_surrogate_and_survives_copy_and_pickle():
    timed = Timed(PL(tau=2.0, solver="cg"))
    assert (timed.name, timed.tau, timed.solver) == ("pl", 2.0, "cg")
    for twin in (copy.copy(timed), copy.deepcopy(timed), pickle.loads(pickle.dumps(timed))):
        assert twin.solver == "cg" and isinstance(twin.watch, Stopwatch)
    with pytest.raises(AttributeError, match="nothing"):
        timed.nothing


def test_the_summary_holds_the_local_solver_time_inside_the_loop():
    base = ["run.iterations=20", "run.eval_every=10", "run.reference=false"]
    res = dcnn.run_experiment(load_config(None, base + ["algorithm.name='next-pl'"]),
                              out=None, verbose=False)
    s = res.summary
    assert s["solver"] in ("cholesky", "woodbury", "cg")
    assert 0 < s["local_solve_s"] <= s["wall_time_s"]
    assert 0 < s["local_solve_share"] <= 1
    gt = dcnn.run_experiment(load_config(None, base + ["algorithm.name='gt'"]), out=None,
                             verbose=False)
    assert "local_solve_s" not in gt.summary        # no local solver


def test_the_share_counts_only_this_session_of_a_resumed_run():
    history = History()
    history.append({"time_s": 5.0})
    watch = Stopwatch(seconds=1.5, calls=10)
    assert local_solve_time(watch, history=history, resumed=2.0) == {
        "local_solve_s": 1.5, "local_solve_share": 0.5}
    assert local_solve_time(watch, history=history, resumed=5.0)["local_solve_share"] is None
    assert local_solve_time(None, history=history) is None
