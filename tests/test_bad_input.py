"""The bad-input suite (issue 7): bad input, wherever it enters, ends fast with ONE line that
names the bad value and the fix, a non-zero exit status, and no earlier output touched.

Every case runs in a scratch folder that already holds an earlier run's output (``prev/``,
given as ``--out``/``out=``, with a sentinel file) and a ``runs/`` folder; afterwards the
folder must be byte-identical (nothing overwritten or lost, no new run folder). Routes:

* ``CLI``: the ``dcnn`` command in a subprocess (``python -m dcnn ... --out prev --quiet``):
  stderr is exactly one line ``dcnn: error: ...`` (no traceback), stdout empty, exit
  status 2, under ``CLI_WALL`` seconds of wall time and ``CLI_CPU`` of its own CPU time (the
  load-independent bound: a failing command imports torch, ~3 s, and does nothing else
  heavy). The subprocesses run two at a time.
* ``MAIN``: the same command lines through :func:`dcnn.cli.main` in this process (torch is
  imported once, so these cost milliseconds): return code 2, one stderr line.
* ``API``: the Python entry points (``load_config``, ``load_dataset``, ``partition``,
  ``FlatModel``, ``LocalProblems``, ``local_problems``, ``run_experiment``, the topology and
  network checks): the exception type, a one-line message naming the value, under
  ``API_BOUND`` seconds.
* ``MPI``: ``mpiexec -n 2``: the line is printed once and the job ends non-zero, in time.

A case whose fix lies in a module this suite's author does not own is a strict xfail whose
reason names the fix; it turns into a failure (XPASS) once the fix lands, to drop the mark.
"""
from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np
import pytest
import torch

import dcnn
from dcnn.cli import main
from dcnn.config import load_config
from dcnn.data import load_dataset, partition
from dcnn.errors import (CommError, ConfigError, DataError, DcnnError, TopologyError)
from dcnn.problems import FlatModel, LocalProblems, make_regularizer, mlp

from conftest import ROOT, run_mpi

CLI_WALL = 60.0     # s from launch to exit of one `dcnn` subprocess failing on bad input
CLI_CPU = 15.0      # s of CPU it may use: the load-independent "did no real work" bound
API_BOUND = 10.0    # s for one in-process call (command line or Python API) to raise
MPI_BOUND = 60.0    # s for `mpiexec -n 2` to end the whole job
HANG = 120.0        # s after which a subprocess counts as hung (the test fails, never hangs)
TAIL = ("--out", "prev", "--quiet")

EARLIER = {         # an earlier run's output: every case must leave it byte-identical
    "prev/sentinel.txt": "earlier run: must survive a failed run\n",
    "prev/summary.json": '{"final": {"objective": 0.25}}\n',
    "prev/history.csv": "iteration,objective\n0,1.0\n10,0.25\n",
    "prev/config.json": '{"run": {"agents": 8}}\n',
    "runs/20240101-000000-breast_cancer-next/summary.json": "{}\n",
}


# --------------------------------------------------------------------------- the cases
def text(s: str):
    return lambda p: p.write_text(s)


def raw(b: bytes):
    return lambda p: p.write_bytes(b)


def arrays(**named):
    return lambda p: np.savez(p, **named)


def folder():
    return lambda p: p.mkdir()


def csv_rows(rows) -> str:
    return "".join(",".join(str(v) for v in row) + "\n" for row in rows)


# 12 samples, 2 features, labels 0/1 alternating: fine on its own
GOOD = [(i, (i * 7) % 5, i % 2) for i in range(12)]


@dataclass(frozen=True)
class Case:
    id: str
    needles: tuple                    # fragments the one error line must hold
    argv: tuple = ()                  # CLI / MAIN: the arguments after `dcnn`
    call: Callable | None = None      # API: call(folder) must raise `kind`
    kind: type = DcnnError
    files: tuple = ()                 # (name, writer) made in the folder before the run
    xfail: str = ""                   # the fix needed elsewhere (strict xfail)


def _params(cases):
    return [pytest.param(c, id=c.id, marks=[pytest.mark.xfail(strict=True, reason=c.xfail)]
                         if c.xfail else []) for c in cases]


CLI_CASES = [
    Case("config-unknown-key", ("unknown config key 'algorithm.alhpa0'",
                                "did you mean 'algorithm.alpha0'"),
         argv=("run", "--set", "algorithm.alhpa0=0.5")),
    Case("config-tau-zero", ("algorithm.tau must be > 0", "got 0.0"),
         argv=("run", "--set", "algorithm.tau=0")),
    Case("config-toml-syntax", ("bad.toml", "is not valid TOML", "line 2"),
         argv=("run", "bad.toml"), files=(("bad.toml", text("[run]\nagents = = 4\n")),)),
    Case("csv-ragged-row", ("ragged.csv", "row 3 has 2 values but row 1 has 3"),
         argv=("run", "--set", "data.name='ragged.csv'"),
         files=(("ragged.csv", text("1,2,0\n3,4,1\n5,6\n7,8,0\n")),)),
    Case("npz-missing-arrays", ("arrays.npz", "no array 'X'", "it has: features, labels"),
         argv=("run", "--set", "data.name='arrays.npz'"),
         files=(("arrays.npz", arrays(features=np.ones((6, 2)), labels=np.arange(6) % 2)),)),
    Case("more-agents-than-samples", ("cannot give each of 12 agents", "9 training samples"),
         argv=("run", "--set", "data.name='good.csv'", "--set", "run.agents=12"),
         files=(("good.csv", text(csv_rows(GOOD))),)),
    Case("loss-does-not-fit-task", ("model.loss 'cross_entropy'", "classification",
                                    "'squared'"),
         argv=("run", "--set", "data.name='diabetes'", "--set", "model.loss='cross_entropy'")),
    Case("compare-unknown-method", ("method 'nope' is unknown",),
         argv=("compare", "--methods", "next-pl,nope")),
]

MAIN_CASES = [
    Case("main-string-for-int", ("run.agents must be an integer", "got '4'",
                                 "e.g. run.agents = 8"),
         argv=("run", "--set", "run.agents='4'")),
    # refused by the loop's compatibility check, after the data and model are built: still
    # before anything is written (config.json of the earlier run survives)
    Case("main-static-only-method-on-time-varying-graph", ("needs a static graph",),
         argv=("run", "--set", "algorithm.name='extra'", "--set", "run.reference=false")),
    Case("main-list-for-float", ("model.lam must be a number", "got [1, 2]"),
         argv=("run", "--set", "model.lam=[1, 2]")),
    Case("main-alpha0-above-one", ("algorithm.alpha0 must be in (0, 1]", "got 1.5"),
         argv=("run", "--set", "algorithm.alpha0=1.5")),
    Case("main-negative-lam", ("model.lam must be >= 0", "got -0.1"),
         argv=("run", "--set", "model.lam=-0.1")),
    Case("main-blowup-below-one", ("run.blowup must be 0 (off) or a finite number > 1", "got 0.5"),
         argv=("run", "--set", "run.blowup=0.5")),
    Case("main-infinite-tau", ("algorithm.tau must be a finite number", "inf"),
         argv=("run", "--set", "algorithm.tau=inf")),
    Case("main-unknown-section", ("unknown config section 'algo'", "did you mean 'algorithm'"),
         argv=("run", "--set", "algo.name='next'")),
    Case("main-unknown-choice", ("model.activation = 'tanhh'", "did you mean 'tanh'"),
         argv=("run", "--set", "model.activation='tanhh'")),
    Case("main-missing-config-file", ("nope.toml", "does not exist"), argv=("run", "nope.toml")),
    Case("main-config-key-outside-section", ("flat.toml", "'agents'", "under [run]"),
         argv=("run", "flat.toml"), files=(("flat.toml", text("agents = 4\n")),)),
    Case("main-config-file-unknown-key", ("keys.toml", "'run.agnets'", "'run.agents'"),
         argv=("run", "keys.toml"), files=(("keys.toml", text("[run]\nagnets = 4\n")),)),
    Case("main-csv-non-numeric", ("word.csv", "non-numeric value 'abc'", "row 3, column 1"),
         argv=("run", "--set", "data.name='word.csv'"),
         files=(("word.csv", text("1,2,0\n3,4,1\nabc,6,0\n7,8,1\n")),)),
    Case("main-csv-empty", ("empty.csv", "is empty"),
         argv=("run", "--set", "data.name='empty.csv'"), files=(("empty.csv", text("")),)),
    Case("main-data-file-is-a-directory", ("dir.csv", "not a regular file"),
         argv=("run", "--set", "data.name='dir.csv'"), files=(("dir.csv", folder()),)),
    Case("main-data-file-missing", ("gone.npz", "does not exist"),
         argv=("run", "--set", "data.name='gone.npz'")),
    Case("main-target-column-out-of-range", ("target_column 7", "3 columns"),
         argv=("run", "--set", "data.name='good.csv'", "--set", "data.target_column=7"),
         files=(("good.csv", text(csv_rows(GOOD))),)),
    Case("main-non-integer-labels", ("task 'binary' needs integer labels", "0.5"),
         argv=("run", "--set", "data.name='half.csv'", "--set", "data.task='binary'"),
         files=(("half.csv", text(csv_rows((i, i % 3, 0.5 * (i % 3)) for i in range(8)))),)),
    Case("main-constant-target", ("const.csv", "is 3 for every sample", "target_column"),
         argv=("run", "--set", "data.name='const.csv'"),
         files=(("const.csv", text(csv_rows((i, i % 3, 3) for i in range(8)))),)),
    Case("main-test-fraction-leaves-no-training", ("test_fraction 0.95", "no training sample"),
         argv=("run", "--set", "data.name='good.csv'", "--set", "data.test_fraction=0.95"),
         files=(("good.csv", text(csv_rows(GOOD))),)),
    Case("main-test-labels-unseen-in-training", ("own.npz", "y_test", "label 2"),
         argv=("run", "--set", "data.name='own.npz'"),
         files=(("own.npz", arrays(X=np.arange(12.0).reshape(6, 2), y=np.arange(6) % 2,
                                   X_test=np.ones((2, 2)), y_test=np.array([2, 1]))),)),
    Case("main-dirichlet-leaves-agent-empty", ("beta 0.0001", "without samples",
                                               "larger beta or fewer agents"),
         argv=("run", "--set", "data.partition='dirichlet'", "--set", "data.beta=0.0001")),
    Case("main-dirichlet-on-regression", ("partition 'dirichlet'", "'iid'"),
         argv=("run", "--set", "data.name='diabetes'", "--set", "data.partition='dirichlet'")),
    Case("main-csv-nan", ("nan.csv", "NaN or inf at row 3, column 2"),
         argv=("run", "--set", "data.name='nan.csv'"),
         files=(("nan.csv", text("a,b,y\n1,2,0\n3,nan,1\n5,6,0\n7,8,1\n")),)),
    Case("main-multiclass-single-class", ("task 'multiclass'", "at least 2 distinct labels",
                                     "has 1 (3)"),
         argv=("run", "--set", "data.name='one.csv'", "--set", "data.task='multiclass'"),
         files=(("one.csv", text(csv_rows((i, i + 1, 3) for i in range(8)))),)),
    Case("main-topology-unknown-graph", ("'rign'", "ring"),
         argv=("run", "--set", "topology.graph='rign'")),
    Case("main-compare-binary-data-file", ("blob.csv", "is not UTF-8"),
         argv=("compare", "--methods", "next-pl,gt", "--set", "data.name='blob.csv'"),
         files=(("blob.csv", raw(bytes(range(256)) * 8)),)),
    Case("main-csv-non-numeric-column-named", ("head.csv", "'x' at row 3, column 2 ('b')"),
         argv=("run", "--set", "data.name='head.csv'"),
         files=(("head.csv", text("a,b,y\n1,2,0\n3,x,1\n5,6,0\n7,8,1\n")),)),
    Case("main-standardisation-overflows", ("big.csv", "column 0 cannot be standardised in "
                                            "float64", "data.standardize = false"),
         argv=("run", "--set", "data.name='big.csv'"),
         files=(("big.csv", text(csv_rows((f"1.{i}e308", i, i % 2) for i in range(8)))),)),
    Case("main-comm-timeout-zero", ("run.comm_timeout must be > 0", "got 0.0"),
         argv=("run", "--set", "run.comm_timeout=0")),
    Case("main-backend-unknown", ("run.backend = 'gpu'", "auto, local, mpi"),
         argv=("run", "--set", "run.backend='gpu'")),
    Case("main-checkpoint-every-negative", ("run.checkpoint_every must be >= 0", "got -1"),
         argv=("run", "--set", "run.checkpoint_every=-1")),
    Case("main-seed-negative", ("run.seed must be in [0, 2**32)", "got -1"),
         argv=("run", "--set", "run.seed=-1")),
    Case("main-study-unknown", ("study 'nosuch'", "experiments/studies/"),
         argv=("study", "nosuch")),
    Case("main-compare-no-seeds", ("--seeds must be a positive integer", "got 0"),
         argv=("compare", "--methods", "next-pl,gt", "--seeds", "0")),
    Case("main-compare-link-malformed", ("--link 'latency=abc'", "needs latency and bandwidth"),
         argv=("compare", "--methods", "next-pl,gt", "--link", "latency=abc")),
    Case("main-compare-method-twice", ("lists a method twice", "next-pl,next-pl"),
         argv=("compare", "--methods", "next-pl,next-pl")),
    Case("main-compare-out-is-a-file", ("--out prev", "is a file, not a folder"),
         argv=("compare", "--methods", "next-pl,gt"), files=(("prev", None),)),
    Case("main-out-is-a-file", ("--out", "prev"),
         argv=("run", "--set", "run.agents=2", "--set", "run.iterations=2",
               "--set", "run.reference=false", "--set", "algorithm.tau=1.0"),
         files=(("prev", None),)),
]

rng = np.random.default_rng(0)
X20 = rng.normal(size=(20, 4))
BIN = (X20[:, :1] > 0).astype(float)
ONE_HOT = np.eye(10)[np.arange(20) % 10]
REG = make_regularizer("l2", lam=1e-3)


def loop(**kw):
    """``run_loop`` of GT on two agents of the 4-feature binary problem, with ``kw``."""
    prob = problems(torch.nn.Linear(4, 1), BIN, "binary")
    args = dict(problem=prob, network=dcnn.LocalNetwork(2), topology=np.full((2, 2), 0.5),
                X0=prob.model.w0.expand(2, -1).clone(), iterations=2)
    return dcnn.run_loop(dcnn.GradientTracking(dcnn.Constant(0.5)), **{**args, **kw})


T4 = torch.zeros(3, 4, dtype=torch.float64)


def full_disk(fn):
    """``fn()`` while every file system reports 0.5 MB free."""
    from unittest import mock
    usage = shutil._ntuple_diskusage(2**30, 2**30 - 2**19, 2**19)
    with mock.patch("dcnn.runner.shutil.disk_usage", return_value=usage):
        return fn()


def problems(module, T, task, *, loss="squared", X=X20):
    model = module if not isinstance(module, torch.nn.Module) else FlatModel(module)
    return LocalProblems(model=model, shards=[(X[:10], T[:10]), (X[10:], T[10:])], loss=loss,
                         task=task, n_total=len(X), regularizer=REG)


class TupleOut(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(4, 1, dtype=torch.float64)

    def forward(self, x):
        return self.lin(x), x


def experiment(folder, *sets):
    cfg = load_config(overrides=["run.iterations=2", "run.reference=false", *sets])
    return dcnn.run_experiment(cfg, out=folder / "prev", verbose=False)


API_CASES = [
    Case("api-config-path-not-a-path", ("config path must be a string", "123"),
         call=lambda f: load_config(123), kind=ConfigError),
    Case("api-config-overrides-a-string", ("overrides must be a list", "'run.agents=4'"),
         call=lambda f: load_config(overrides="run.agents=4"), kind=ConfigError),
    Case("api-config-section-wrong-type", ("algorithm.tau must be > 0", "-1"),
         call=lambda f: load_config(algorithm={"tau": -1}), kind=ConfigError),
    Case("api-config-directory", ("is a directory",),
         call=lambda f: load_config(f / "prev"), kind=ConfigError),
    Case("api-csv-unclosed-quote", ("quote.csv", "spanning several lines", "row 2, column 3"),
         call=lambda f: load_dataset("quote.csv"), kind=DataError,
         files=(("quote.csv", text('1,2,0\n3,4,"1\n5,6,0\n7,8,1\n')),)),
    Case("api-npz-not-numbers", ("words.npz", "dtype <U"),
         call=lambda f: load_dataset("words.npz"), kind=DataError,
         files=(("words.npz", arrays(X=np.array([["a"], ["b"], ["c"]]), y=np.arange(3))),)),
    Case("api-npz-not-a-zip", ("junk.npz", "not an .npz (zip) archive", "np.savez"),
         call=lambda f: load_dataset("junk.npz"), kind=DataError,
         files=(("junk.npz", raw(b"PK? no, just text")),)),
    Case("api-partition-more-agents", ("10 agents", "5 training samples"),
         call=lambda f: partition(np.arange(5) % 2, 10, task="binary"), kind=DataError),
    Case("api-partition-dirichlet-empty", ("beta 0.0001", "without samples"),
         call=lambda f: partition(np.arange(40) % 2, 10, kind="dirichlet", beta=1e-4,
                                  task="binary"), kind=DataError),
    Case("api-model-3-outputs-for-binary", ("task 'binary' needs 1 output", "gives 3"),
         call=lambda f: problems(torch.nn.Linear(4, 3), BIN, "binary"), kind=DataError),
    Case("api-model-1-output-for-10-classes", ("needs 10 outputs", "gives 1"),
         call=lambda f: problems(torch.nn.Linear(4, 1), ONE_HOT, "multiclass"),
         kind=DataError),
    Case("api-model-wrong-input-width", ("fails on inputs of shape (2, 4)", "(samples, 4)"),
         call=lambda f: problems(torch.nn.Linear(5, 1), BIN, "binary"), kind=DataError),
    Case("api-model-returns-tuple", ("returns a tuple",),
         call=lambda f: problems(TupleOut(), BIN, "binary"), kind=DataError),
    Case("api-model-not-a-module", ("must be a torch.nn.Module", "function"),
         call=lambda f: FlatModel(lambda x: x), kind=ConfigError),
    Case("api-module-not-wrapped", ("must be a dcnn.FlatModel", "Linear", "FlatModel(module)"),
         call=lambda f: LocalProblems(model=torch.nn.Linear(4, 1), shards=[(X20, BIN)],
                                      loss="squared", task="binary", n_total=20,
                                      regularizer=REG), kind=ConfigError),
    Case("api-labels-not-one-hot", ("one-hot", "got 1 column", "encode_targets"),
         call=lambda f: problems(torch.nn.Linear(4, 10), np.arange(20) % 10, "multiclass"),
         kind=DataError),
    Case("api-binary-targets-plus-minus-one", ("values in [-1, 1]", "0/1 labels"),
         call=lambda f: problems(torch.nn.Linear(4, 1), 2 * BIN - 1, "binary"),
         kind=DataError),
    Case("api-mlp-hidden-not-a-list", ("hidden must be a list", "'10'"),
         call=lambda f: mlp(n_inputs=4, hidden="10", n_outputs=1), kind=ConfigError),
    Case("api-regularizer-lam-not-a-number", ("model.lam must be a finite number", "'x'"),
         call=lambda f: make_regularizer("l2", lam="x"), kind=ConfigError),
    Case("api-run-experiment-bad-csv", ("ragged.csv", "row 2 has 1 values"),
         call=lambda f: experiment(f, "data.name='ragged.csv'"), kind=DataError,
         files=(("ragged.csv", text("1,2,0\n3\n5,6,0\n")),)),
    Case("api-run-experiment-empty-shards", ("cannot give each of 16 agents",),
         call=lambda f: experiment(f, "data.name='good.csv'", "run.agents=16"), kind=DataError,
         files=(("good.csv", text(csv_rows(GOOD))),)),
    Case("api-weights-not-stochastic", ("not doubly stochastic", "row 0 sums to"),
         call=lambda f: dcnn.topology.check_doubly_stochastic(np.array([[0.7, 0.5],
                                                                         [0.5, 0.5]])),
         kind=TopologyError),
    Case("api-weights-agent-count-mismatch", ("(4, 4)", "4 agents"),
         call=lambda f: dcnn.LocalNetwork(4).mix(torch.zeros(4, 3, dtype=torch.float64),
                                                 np.eye(3)), kind=CommError),
    Case("api-weights-self-loop-missing", ("no self loop at agent 0", "W[0, 0] = 0"),
         call=lambda f: dcnn.topology.check_doubly_stochastic(np.array([[0.0, 1.0],
                                                                         [1.0, 0.0]])),
         kind=TopologyError),
    Case("api-local-problems-shard-count", ("1 shards for 2 agents",),
         call=lambda f: dcnn.local_problems(
             model=FlatModel(torch.nn.Linear(4, 1)), X=X20, T=BIN, parts=[np.arange(20)],
             network=dcnn.LocalNetwork(2), loss="squared", task="binary", regularizer=REG),
         kind=DataError),
    Case("api-local-problems-index-out-of-range", ("part 1", "20 samples"),
         call=lambda f: dcnn.local_problems(
             model=FlatModel(torch.nn.Linear(4, 1)), X=X20, T=BIN,
             parts=[np.arange(10), np.arange(15, 26)], network=dcnn.LocalNetwork(2),
             loss="squared", task="binary", regularizer=REG),
         kind=DataError),
    Case("api-loop-eval-every-zero", ("eval_every = 0 must be an integer >= 1",),
         call=lambda f: loop(eval_every=0), kind=ConfigError),
    Case("api-loop-fractional-iterations", ("iterations = 2.5 must be an integer >= 0",),
         call=lambda f: loop(iterations=2.5), kind=ConfigError),
    Case("api-loop-negative-iterations", ("iterations = -3 must be an integer >= 0",),
         call=lambda f: loop(iterations=-3), kind=ConfigError),
    Case("api-loop-test-rows-differ", ("(X (3, 4)", "T (2, 1)", "does not fit the problem"),
         call=lambda f: loop(test=(T4, T4[:2, :1])), kind=ConfigError),
    Case("api-loop-test-as-numpy", ("test must be a pair of torch tensors", "n x 4"),
         call=lambda f: loop(test=(T4.numpy(), T4[:, :1].numpy())), kind=ConfigError),
    Case("api-pl-negative-tau", ("tau must be a finite number > 0", "got -1"),
         call=lambda f: dcnn.PL(tau=-1), kind=ConfigError),
    Case("api-fl-negative-tau", ("tau must be a finite number > 0", "got -1"),
         call=lambda f: dcnn.FL(tau=-1), kind=ConfigError),
    Case("api-diminishing-alpha0-above-one", ("alpha0 must lie in (0, 1]", "got 5"),
         call=lambda f: dcnn.Diminishing(alpha0=5), kind=ConfigError),
    Case("api-constant-step-above-one", ("alpha0 must lie in (0, 1]", "got 2.0"),
         call=lambda f: dcnn.Constant(2.0), kind=ConfigError),
    Case("api-loop-x0-numpy", ("X0 must be a torch tensor of shape (2, 5)", "ndarray"),
         call=lambda f: loop(X0=np.zeros((2, 5))), kind=ConfigError),
    Case("api-loop-x0-float32", ("X0 must have the model's dtype torch.float64",
                                 "torch.float32"),
         call=lambda f: loop(X0=torch.zeros(2, 5)), kind=ConfigError),
    Case("api-loop-x0-wrong-shape", ("X0 must have shape (2, 5)", "got (8, 5)"),
         call=lambda f: loop(X0=torch.zeros(8, 5, dtype=torch.float64)), kind=ConfigError),
    Case("api-loop-x0-nan", ("X0 holds NaN or inf",),
         call=lambda f: loop(X0=torch.full((2, 5), math.nan, dtype=torch.float64)),
         kind=ConfigError),
    Case("api-loop-network-not-a-network", ("network must be a dcnn Network", "'local'"),
         call=lambda f: loop(network="local"), kind=ConfigError),
    Case("api-loop-problem-not-a-problem", ("problem must be a dcnn LocalProblems",
                                            "NoneType"),
         call=lambda f: loop(problem=None), kind=ConfigError),
    Case("api-loop-progress-not-bool", ("progress = 'yes' must be True or False",),
         call=lambda f: loop(progress="yes"), kind=ConfigError),
    Case("api-agent-mean-wrong-rows", ("one row per agent of this process (3)", "(2, 3)"),
         call=lambda f: dcnn.LocalNetwork(3).agent_mean(torch.ones(2, 3)), kind=CommError),
    Case("api-run-experiment-disk-full", ("--out", "0.5 MB free", "free disk space"),
         call=lambda f: full_disk(lambda: dcnn.run_experiment(
             load_config(overrides=["run.iterations=2", "run.reference=false"]),
             out=f / "new", verbose=False)), kind=ConfigError),
    Case("api-run-experiment-not-a-config", ("Config", "load_config"),
         call=lambda f: dcnn.run_experiment({"run": {"agents": 4}}, out=f / "prev"),
         kind=ConfigError),
]

MPI_CASES = [
    Case("mpi-config-tau-zero", ("algorithm.tau must be > 0", "got 0.0"),
         argv=("-m", "dcnn", "run", "--set", "algorithm.tau=0", *TAIL)),
    Case("mpi-agent-count-differs-across-ranks", ("rank 0 has 4", "rank 1 has 5"),
         argv=(str(ROOT / "tests" / "_bad_input_mpi.py"), "agents", "--out", "prev")),
    Case("mpi-one-rank-fails-alone-before-any-collective",
         ("[rank 1] algorithm.tau must be > 0", "got 0.0"),
         argv=(str(ROOT / "tests" / "_bad_input_mpi.py"), "tau", "--out", "prev")),
    Case("mpi-local-backend-under-mpiexec", ("run.backend = 'local' under mpiexec with 2 "
                                            "processes", "set run.backend = 'auto'"),
         argv=("-m", "dcnn", "run", "--set", "run.backend='local'", *TAIL)),
]


# ------------------------------------------------------------------------ the machinery
def snapshot(root: Path) -> dict:
    """Every path under ``root`` and the bytes of every file."""
    return {str(p.relative_to(root)): p.read_bytes() if p.is_file() else None
            for p in sorted(root.rglob("*"))}


def prepare(root: Path, case: Case) -> dict:
    """Write the earlier output and the case's files into ``root``; the snapshot of it."""
    for name, content in EARLIER.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(content)
    for name, writer in case.files:
        if writer is None:          # the name must be a plain file (not the earlier folder)
            for p in sorted((root / name).rglob("*"), reverse=True):
                p.unlink() if p.is_file() else p.rmdir()
            (root / name).rmdir()
            (root / name).write_text("a file where a folder is expected\n")
        else:
            writer(root / name)
    return snapshot(root)


class Outcome(NamedTuple):
    rc: int
    stderr: str
    elapsed: float
    before: dict
    after: dict
    stdout: str = ""
    cpu: float = 0.0


def _env() -> dict:
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path}


def run_cli(case: Case, root: Path) -> Outcome:
    """``python -m dcnn ARGS --out prev --quiet`` in ``root``: exit status, output, wall and
    CPU seconds (the child's own, from ``wait4``: comparable on a busy machine)."""
    before = prepare(root, case)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "dcnn", *case.argv, *TAIL], cwd=root,
                                stdout=out, stderr=err, env=_env())
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            elapsed = time.perf_counter() - t0
            if pid:
                break
            if elapsed > HANG:
                proc.kill()
                proc.wait()
                return Outcome(-1, f"HUNG for {HANG} s", elapsed, before, snapshot(root))
            time.sleep(0.02)
        proc.returncode = os.waitstatus_to_exitcode(status)   # reaped here, not by Popen
        out.seek(0)
        err.seek(0)
        return Outcome(proc.returncode, err.read().decode(errors="replace"), elapsed, before,
                       snapshot(root), out.read().decode(errors="replace"),
                       usage.ru_utime + usage.ru_stime)


def assert_one_line_failure(case: Case, out: Outcome, bound: float) -> None:
    lines = out.stderr.strip().splitlines()
    assert out.rc == 2, f"exit status {out.rc}, stderr:\n{out.stderr[-3000:]}"
    assert "Traceback" not in out.stderr, out.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith("dcnn: error: "), out.stderr[-3000:]
    for needle in case.needles:
        assert needle in lines[0], (needle, lines[0])
    assert not out.stdout.strip(), out.stdout[-3000:]
    assert out.elapsed < bound, f"took {out.elapsed:.1f} s (bound {bound} s)"
    assert out.cpu < CLI_CPU, f"used {out.cpu:.1f} s of CPU (bound {CLI_CPU} s)"
    assert out.after == out.before, "the folder changed: earlier output overwritten or lost, " \
        "or a new run folder appeared"


@pytest.fixture(scope="module")
def cli_outcomes(tmp_path_factory) -> dict:
    """Every CLI case, two subprocesses at a time (each in its own folder)."""
    def one(case):
        return case.id, run_cli(case, tmp_path_factory.mktemp(case.id))
    with ThreadPoolExecutor(max_workers=2) as pool:
        outcomes = dict(pool.map(one, CLI_CASES))
    print("\n".join(f"dcnn {' '.join(c.argv)[:60]:60s} {outcomes[c.id].elapsed:5.1f} s wall "
                    f"{outcomes[c.id].cpu:4.1f} s cpu" for c in CLI_CASES))
    return outcomes


# ------------------------------------------------------------------------------ the tests
def test_the_suite_is_large_enough():
    assert len(CLI_CASES) + len(MAIN_CASES) + len(API_CASES) + len(MPI_CASES) >= 25
    assert len(CLI_CASES) >= 8 and len(MPI_CASES) >= 1


@pytest.mark.parametrize("case", _params(CLI_CASES))
def test_cli(case, cli_outcomes):
    assert_one_line_failure(case, cli_outcomes[case.id], CLI_WALL)


@pytest.mark.parametrize("case", _params(MAIN_CASES))
def test_main(case, tmp_path, monkeypatch, capsys):
    before = prepare(tmp_path, case)
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    t0 = time.perf_counter()
    rc = main([*case.argv, *TAIL])
    elapsed = time.perf_counter() - t0
    out = Outcome(rc, capsys.readouterr().err, elapsed, before, snapshot(tmp_path))
    assert_one_line_failure(case, out, API_BOUND)


@pytest.mark.parametrize("case", _params(API_CASES))
def test_api(case, tmp_path, monkeypatch):
    before = prepare(tmp_path, case)
    monkeypatch.chdir(tmp_path)
    t0 = time.perf_counter()
    with pytest.raises(case.kind) as info:
        case.call(tmp_path)
    elapsed = time.perf_counter() - t0
    msg = str(info.value)
    assert isinstance(info.value, DcnnError)
    assert msg and "\n" not in msg, msg
    for needle in case.needles:
        assert needle in msg, (needle, msg)
    assert elapsed < API_BOUND, f"took {elapsed:.1f} s"
    assert snapshot(tmp_path) == before


@pytest.mark.mpi
@pytest.mark.parametrize("case", _params(MPI_CASES))
def test_mpi(case, tmp_path):
    before = prepare(tmp_path, case)
    t0 = time.perf_counter()
    res = run_mpi(2, list(case.argv), timeout=HANG, cwd=tmp_path, env=_env())
    elapsed = time.perf_counter() - t0
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("dcnn: error:")]
    assert res.returncode != 0, res.stderr[-3000:]
    assert "Traceback" not in res.stderr, res.stderr[-3000:]
    assert len(errors) == 1, res.stderr[-3000:]          # printed once, by one rank
    for needle in case.needles:
        assert needle in errors[0], (needle, errors[0])
    assert elapsed < MPI_BOUND, f"took {elapsed:.1f} s"
    assert snapshot(tmp_path) == before


def test_config_choices_mirror_the_registries():
    """config.py lists some choices itself (to fail before importing heavy modules): they
    must be the registries' own."""
    from dcnn.config import _CHOICES
    from dcnn.data import PARTITIONS, TASKS
    from dcnn.problems import ACTIVATIONS, LOSSES, REGULARIZERS
    from dcnn.problems.losses import TASKS as LOSS_TASKS
    assert _CHOICES[("data", "partition")] == PARTITIONS
    assert _CHOICES[("data", "task")] == ("auto", *TASKS)
    assert LOSS_TASKS == TASKS
    assert _CHOICES[("model", "activation")] == tuple(ACTIVATIONS)
    assert _CHOICES[("model", "loss")] == LOSSES
    assert _CHOICES[("model", "regularizer")] == REGULARIZERS
