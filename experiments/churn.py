"""Churn of codistillation: how often two retrains with different seeds disagree.

Anil et al. (ICLR 2018) report that codistilled models are more reproducible: two retrains
that differ only in their random seed (initial weights, batch order) disagree on fewer test
predictions. This script trains, for each of several training seeds, on the same data, split
and shards (``run.seed`` of the config fixes those):

- ``codistillation``: ``algorithm.models`` models on disjoint blocks of the shards, distilling
  with the config's ``burn_in``, ``exchange_every`` and ``distill_weight``;
- ``independent``: the same models with ``distill_weight = 0`` (no distillation);
- ``ddp``: one model on all shards (data parallel, the synchronous baseline);

all with Adam at dcnn's automatic rate (0.02), and writes, per method, the mean test accuracy
of the delivered model (model 0), the churn (fraction of test samples on which two retrains
predict different classes, averaged over the pairs of seeds) and the bytes sent per worker, to
``OUT/churn.csv`` and ``OUT/churn.json``. In one process the models share the process
(nothing is sent); under ``mpiexec -n 2`` each model has its rank and the exchanges are
measured (rank 0 writes).

    [mpiexec -n 2] python experiments/churn.py [--config experiments/schemes/digits.toml]
        [--seeds 3] [--iterations 400] [--out runs/churn]
"""
from __future__ import annotations

import argparse
import csv
import itertools
import json
from pathlib import Path

import torch

from dcnn.baselines import train_engine
from dcnn.comm import launched_by_mpi
from dcnn.baselines import churn, train_codistillation
from dcnn.algorithms.steps import ADAM_LR
from dcnn.config import load_config
from dcnn.data import encode_targets, load_dataset, partition
from dcnn.problems import FlatModel, make_regularizer, mlp

METHODS = ("codistillation", "independent", "ddp")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="experiments/schemes/digits.toml")
    ap.add_argument("--seeds", type=int, default=3, help="training seeds (retrains)")
    ap.add_argument("--iterations", type=int, default=None, help="default: the config's")
    ap.add_argument("--out", default="runs/churn")
    args = ap.parse_args()
    cfg = load_config(args.config)
    r, d, m, a = cfg.run, cfg.data, cfg.model, cfg.algorithm
    iterations = args.iterations or r.iterations
    ds = load_dataset(d.name, test_fraction=d.test_fraction, seed=r.seed, task=d.task)
    T = encode_targets(ds.y_train, task=ds.task, n_classes=ds.n_classes)
    parts = partition(ds.y_train, r.agents, kind=d.partition, seed=r.seed, task=ds.task)
    shards = [(ds.X_train[p], T[p]) for p in parts]
    test = (ds.X_test, encode_targets(ds.y_test, task=ds.task, n_classes=ds.n_classes))
    common = dict(shards=shards, test=test, loss=m.loss, task=ds.task,
                  regularizer=make_regularizer(m.regularizer, lam=m.lam, l1_ratio=m.l1_ratio),
                  iterations=iterations, optimizer="adam", lr=ADAM_LR,
                  eval_every=iterations)
    codist = dict(models=a.models, burn_in=a.burn_in, exchange_every=a.exchange_every)
    keys_of = {"codistillation": dict(codist, distill_weight=a.distill_weight),
               "independent": dict(codist, distill_weight=0.0), "ddp": None}
    # one output: the class is the sign of the logit (cross-entropy) or output > 0.5 (squared)
    threshold = 0.5 if m.loss == "squared" else 0.0
    rows = []
    for name in METHODS:
        keys = keys_of[name]
        preds, accs, sent = [], [], []
        for seed in range(args.seeds):
            module = mlp(n_inputs=ds.n_features, hidden=m.hidden, n_outputs=T.shape[1],
                         activation=m.activation, seed=seed)
            if keys is None:
                hist, info = train_engine(method="ddp", module=module, seed=seed, **common)
                sent.append(iterations * info["bytes_per_step"])
            else:
                hist, info = train_codistillation(module=module, seed=seed, **keys, **common)
                sent.append(info["bytes_sent"])
            with torch.no_grad():
                out = FlatModel(module).apply(info["final_params"],
                                              torch.as_tensor(ds.X_test))
            preds.append(out.numpy())
            accs.append(hist.last["test_metric"])
        pairs = [churn(p, q, task=ds.task, threshold=threshold)
                 for p, q in itertools.combinations(preds, 2)]
        rows.append({"method": name, "seeds": args.seeds, "iterations": iterations,
                     "test_accuracy_mean": sum(accs) / len(accs),
                     "test_accuracy_min": min(accs), "test_accuracy_max": max(accs),
                     "churn_percent": 100 * sum(pairs) / len(pairs),
                     "bytes_per_worker": max(sent)})
    if launched_by_mpi():
        from mpi4py import MPI
        if MPI.COMM_WORLD.rank != 0:
            return
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "churn.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    (out / "churn.json").write_text(json.dumps(rows, indent=2))
    for row in rows:
        print(f"{row['method']:>15}: test accuracy {row['test_accuracy_mean']:.2f} % "
              f"({row['test_accuracy_min']:.2f}-{row['test_accuracy_max']:.2f}), churn "
              f"{row['churn_percent']:.2f} %, {row['bytes_per_worker'] / 1e3:.1f} KB sent "
              f"per worker")


if __name__ == "__main__":
    main()
