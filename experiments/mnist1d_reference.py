"""Centralized reference accuracies on MNIST-1D, to show the workload is the real one.

Trains, in one process with plain PyTorch, the three baselines of the MNIST-1D paper
(Greydanus & Kobak, "Scaling Down Deep Learning with MNIST-1D", ICML 2024, arXiv 2011.14439)
built by dcnn's own builders on dcnn's own ``load_dataset("mnist1d")`` (4000 train / 1000
test), and prints their test accuracies next to the published ones:

- logistic regression: ``dcnn.mlp(hidden=[])`` (a linear layer, softmax cross-entropy);
- MLP: ``dcnn.mlp(hidden=[100, 100], activation="relu")``;
- CNN: ``dcnn.cnn(activation="relu")`` (3 conv layers of 25 channels, kernels 5/3/3,
  stride 2, padding 1, linear head; 5,210 parameters).

Training follows the paper's code: Adam, learning rate 1e-2, no weight decay, mini-batches
of 100 (here a fresh seeded permutation of the training set every epoch), 6000 steps,
float32; the accuracy reported is that of the final model. Each model is trained twice: on
dcnn's features (standardised per column with the training statistics, what every dcnn run
sees) and on the package's own scaling (one global mean and standard deviation), to show
what the standardisation changes.

    python experiments/mnist1d_reference.py            # about a minute on one core
    python experiments/mnist1d_reference.py --seeds 0 1 2
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F

from dcnn import cnn, mlp
from dcnn.data import load_dataset

PUBLISHED = {"logistic regression": 32.0, "MLP [100, 100]": 68.0, "CNN [25, 25, 25]": 94.0}


def build(name: str, *, n_inputs: int, n_outputs: int, seed: int) -> torch.nn.Module:
    kw = dict(n_inputs=n_inputs, n_outputs=n_outputs, seed=seed, dtype=torch.float32)
    if name == "logistic regression":
        return mlp(hidden=[], **kw)
    if name == "MLP [100, 100]":
        return mlp(hidden=[100, 100], activation="relu", **kw)
    return cnn(channels=[25, 25, 25], kernel=[5, 3, 3], stride=2, padding=1,
               activation="relu", **kw)


def accuracy(model: torch.nn.Module, X: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return 100.0 * float((model(X).argmax(1) == y).float().mean())


def train(model: torch.nn.Module, X: torch.Tensor, y: torch.Tensor, *, steps: int,
          batch: int, lr: float, seed: int) -> torch.nn.Module:
    """Adam on the mean cross-entropy of mini-batches, a seeded permutation per epoch."""
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(seed)
    order, pos = torch.randperm(len(X), generator=gen), 0
    for _ in range(steps):
        if pos + batch > len(X):
            order, pos = torch.randperm(len(X), generator=gen), 0
        idx = order[pos:pos + batch]
        pos += batch
        loss = F.cross_entropy(model(X[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model


def tensors(ds) -> tuple:
    return (torch.as_tensor(ds.X_train, dtype=torch.float32), torch.as_tensor(ds.y_train),
            torch.as_tensor(ds.X_test, dtype=torch.float32), torch.as_tensor(ds.y_test))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=6000)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--lr", type=float, default=1e-2)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    # the package scales every feature by one global mean and std already; dcnn's pipeline
    # standardises each column with the training part's statistics on top
    data = {"dcnn": tensors(load_dataset("mnist1d")),
            "package": tensors(load_dataset("mnist1d", standardize=False))}
    rows = []
    for name, published in PUBLISHED.items():
        accs, n_params = {k: [] for k in data}, 0
        for kind, (Xtr, ytr, Xte, yte) in data.items():
            for seed in args.seeds:
                model = build(name, n_inputs=Xtr.shape[1], n_outputs=10, seed=seed)
                n_params = sum(p.numel() for p in model.parameters())
                train(model, Xtr, ytr, steps=args.steps, batch=args.batch, lr=args.lr,
                      seed=seed)
                accs[kind].append(accuracy(model, Xte, yte))
        rows.append((name, n_params, accs, published))
    seeds = ", ".join(map(str, args.seeds))
    print(f"MNIST-1D test accuracy (%, 4000 train / 1000 test), Adam lr {args.lr:g}, batch "
          f"{args.batch}, {args.steps} steps, float32, seeds {seeds}"
          + (" (mean, min-max)" if len(args.seeds) > 1 else "") + "\n")
    print("| model | parameters | dcnn features (per-column standardised) | package "
          "scaling (global) | published |")
    print("|---|---|---|---|---|")
    for name, n_params, accs, published in rows:
        cells = [_cell(accs[k]) for k in data]
        print(f"| {name} | {n_params:,} | {cells[0]} | {cells[1]} | {published:.0f} |")
    print(f"\n{time.perf_counter() - t0:.0f} s on {args.threads} thread(s)")


def _cell(values: list) -> str:
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{np.mean(values):.1f} ({min(values):.1f}-{max(values):.1f})"


if __name__ == "__main__":
    main()
