"""The contract every registered method meets, shared by the in-process test and the MPI
script: ridge regression (linear model, squared loss + l2, diabetes over 6 agents), a strongly
convex problem with a closed-form optimum, over a time-varying graph.

Each case names the method, its graph and step, the rounds, and the relative objective gap
it must reach. Exact methods (tracking, EXTRA, push-sum, centralized) must reach 1e-6;
DGD reaches the optimum only with a diminishing step (slowly: O(s[n]) behind it; 5e-3 after
3000 rounds; its constant-step fixed point is checked in closed form in test_baselines.py) and
D-PSGD stays in a noise neighbourhood of the optimum with its constant step.
"""

from dcnn.config import load_config
from dcnn.data import load_dataset
from dcnn.runner import run_experiment

from oracles import ridge_optimum

LAM = 1e-2
BASE = ["run.progress=false", "run.reference=false", "data.name='diabetes'",
        "model.hidden=[]", f"model.lam={LAM}", "run.agents=6"]
TIME_VARYING = ["topology.graph='erdos_renyi'", "topology.dynamic='link_failure'"]
DIGRAPH = ["topology.graph='random_digraph'", "topology.dynamic='link_failure'"]
STATIC = ["topology.graph='erdos_renyi'", "topology.dynamic='static'"]

# name: (config overrides, rounds, relative gap to reach)
CASES = {
    # a constant step: linear convergence to the optimum (the diminishing default gets there
    # sublinearly, 4e-6 after 2000 rounds with tau = "auto")
    "next-pl": (["algorithm.name='next'", "algorithm.surrogate='pl'",
                 "algorithm.schedule='constant'", *TIME_VARYING], 1000, 1e-6),
    "next-fl": (["algorithm.name='next'", "algorithm.surrogate='fl'",
                 "algorithm.schedule='constant'", *TIME_VARYING], 3000, 1e-6),
    "sonata-pl": (["algorithm.name='sonata'", "algorithm.surrogate='pl'",
                   "algorithm.schedule='constant'", *DIGRAPH], 1000, 1e-6),
    "sonata-fl": (["algorithm.name='sonata'", "algorithm.surrogate='fl'",
                   "algorithm.schedule='constant'", *DIGRAPH], 2000, 1e-6),
    "gt": (["algorithm.name='gt'", "algorithm.alpha0=0.5", *TIME_VARYING], 3000, 1e-6),
    # EXTRA's correction assumes one fixed W: its case runs on a static graph
    "extra": (["algorithm.name='extra'", "algorithm.alpha0=1.0", *STATIC], 1500, 1e-6),
    "push-diging": (["algorithm.name='push-diging'", "algorithm.alpha0=1.0", *DIGRAPH],
                    1500, 1e-6),
    # DGD: diminishing step s[n] = lr / (n + 1)^0.6, exact only in the limit
    "dgd": (["algorithm.name='dgd'", "algorithm.schedule='polynomial'",
             "algorithm.power=0.6", "algorithm.alpha0=1.0", *TIME_VARYING], 3000, 5e-3),
    # D-PSGD: constant step, batches of 16: a noise neighbourhood, not the optimum
    "dsgd": (["algorithm.name='dsgd'", "algorithm.alpha0=0.25", *TIME_VARYING], 1500, 2e-2),
    "centralized-lbfgs": (["algorithm.name='centralized'", "algorithm.optimizer='lbfgs'"],
                          60, 1e-12),
    "centralized-gd": (["algorithm.name='centralized'", "algorithm.optimizer='gd'",
                        "algorithm.alpha0=1.0"], 1500, 1e-6),
    "centralized-adam": (["algorithm.name='centralized'", "algorithm.optimizer='adam'"],
                         1500, 1e-6),
    # the engines take centralized gradient descent's steps (with a world of R processes)
    "ddp": (["algorithm.name='ddp'", "algorithm.alpha0=1.0"], 1500, 1e-6),
    "pipeline": (["algorithm.name='pipeline'", "algorithm.alpha0=1.0"], 1500, 1e-6),
    "tensor-parallel": (["algorithm.name='tensor-parallel'", "algorithm.alpha0=1.0"], 1500,
                        1e-6),
    "ptd-p": (["algorithm.name='ptd-p'", "algorithm.alpha0=1.0"], 1500, 1e-6),
    # one block (one chunk): ordinary backprop, i.e. gradient descent on U
    "local-parallel": (["algorithm.name='local-parallel'", "algorithm.stages=1",
                        "algorithm.alpha0=1.0"], 1500, 1e-6),
}
# a linear model has one Linear layer: no pipeline of two stages and no second block for local
# parallelism on a second rank (refused; see the engine tests)
NOT_ON_TWO_RANKS = ("pipeline", "ptd-p", "local-parallel")
# under mpiexec each case runs its first MPI_ROUNDS rounds (or all, if fewer) and must follow
# the in-process trajectory there to rounding (evaluated every MPI_ROUNDS rounds in both)
MPI_ROUNDS = 200
# methods that cannot train the ridge model, and why (each has its own oracle tests)
NO_RIDGE_CASE = {
    "sil": "needs classes (codes per class) and a model split at a hidden layer",
    "sequence-parallel": "splits a transformer's tokens; a linear model has no sequence",
    "codistillation": "each model minimises its own block's loss plus distillation, not U",
}


def optimum() -> float:
    return ridge_optimum(load_dataset("diabetes", seed=0), LAM)


def run_case(name: str, network=None, rounds: int | None = None):
    """``(relative gap, RunResult)`` of case ``name`` on ``network`` (default in-process)
    after ``rounds`` rounds (default: the case's own)."""
    overrides, full, _ = CASES[name]
    rounds = full if rounds is None else rounds
    cfg = load_config(overrides=[*BASE, *overrides, f"run.iterations={rounds}",
                                 f"run.eval_every={min(rounds, MPI_ROUNDS)}"])
    res = run_experiment(cfg, out=None, network=network, verbose=False)
    opt = optimum()
    return (res.history.last["objective"] - opt) / opt, res


def contract_overrides(name: str) -> list[str]:
    """A graph the registered method ``name`` supports (its ``Supports``): time-varying
    undirected if it can, else directed, else static."""
    from dcnn.methods import get_method
    s = get_method(name).supports
    if not s.topology or (s.undirected and s.time_varying):
        return TIME_VARYING
    if s.directed and s.time_varying:
        return DIGRAPH
    return STATIC


def contract_check(name: str, *, overrides=(), rounds: int = 1000, network=None):
    """``(relative gap, RunResult)`` of any registered method (a plugin's too) on the ridge
    problem over a graph it supports, after checking what every method must deliver: a finite
    History with every column at iterations 0, ..., ``rounds``, and a final objective below
    the start."""
    cfg = load_config(overrides=[*BASE, *contract_overrides(name), f"algorithm.name='{name}'",
                                 *overrides, f"run.iterations={rounds}",
                                 f"run.eval_every={rounds // 4}"])
    res = run_experiment(cfg, out=None, network=network, verbose=False)
    its = res.history.column("iteration")
    assert its[0] == 0 and its[-1] == rounds, its
    for rec in res.history.records:
        for key in ("objective", "grad_norm", "consensus_error", "test_metric",
                    "bytes_per_agent", "time_s"):
            assert rec[key] == rec[key] and abs(rec[key]) < float("inf"), (name, key, rec)
    assert res.history.last["objective"] < res.history.records[0]["objective"]
    opt = optimum()
    return (res.history.last["objective"] - opt) / opt, res
