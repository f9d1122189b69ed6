"""Shared test problems and closed-form oracles (imported by the test modules)."""
import numpy as np
import torch

from dcnn.data import encode_targets, load_dataset, partition
from dcnn.problems import FlatModel, LocalProblems, make_regularizer, mlp


def ridge_optimum(ds, lam):
    """Closed form of (1/M)||y - [X 1] theta||^2 + lam ||theta||^2."""
    Xa = np.hstack([ds.X_train, np.ones((ds.n_train, 1))])
    y = ds.y_train.reshape(-1)
    M = len(y)
    theta = np.linalg.solve(Xa.T @ Xa / M + lam * np.eye(Xa.shape[1]), Xa.T @ y / M)
    return np.sum((y - Xa @ theta) ** 2) / M + lam * theta @ theta


def random_shards(rng, sizes, *, d=3, loss="squared", O=2):
    """Uneven random shards ``(X, T)`` for every loss: Gaussian targets, 0/1 or one-hot."""
    shards = []
    for m in sizes:
        X = rng.normal(size=(m, d))
        if loss == "squared":
            T = rng.normal(size=(m, O))
        elif O == 1:
            T = rng.integers(0, 2, size=(m, 1)).astype(float)
        else:
            T = np.eye(O)[rng.integers(0, O, size=m)]
        shards.append((X, T))
    task = "regression" if loss == "squared" else ("binary" if O == 1 else "multiclass")
    return shards, task


def tiny_problem(loss="squared", O=2, reg="l2", lam=0.1, sizes=(6, 9, 7), hidden=(4,), d=3,
                 seed=0):
    """A few agents with uneven random shards of a small MLP (every loss and task)."""
    shards, task = random_shards(np.random.default_rng(seed), sizes, d=d, loss=loss, O=O)
    model = FlatModel(mlp(n_inputs=d, hidden=hidden, n_outputs=O, seed=seed))
    return LocalProblems(model=model, shards=shards, loss=loss, task=task,
                         n_total=sum(sizes), regularizer=make_regularizer(reg, lam=lam))


def diabetes_problem(n_agents=6, hidden=(5,), lam=1e-2, seed=0):
    """The bundled diabetes data split iid over agents, squared loss + l2; and the dataset."""
    ds = load_dataset("diabetes", seed=seed)
    T = encode_targets(ds.y_train, task=ds.task, n_classes=ds.n_classes)
    parts = partition(ds.y_train, n_agents, kind="iid", seed=seed, task=ds.task)
    model = FlatModel(mlp(n_inputs=ds.n_features, hidden=hidden, n_outputs=T.shape[1],
                          seed=seed))
    prob = LocalProblems(model=model, shards=[(ds.X_train[p], T[p]) for p in parts],
                         loss="squared", task=ds.task, n_total=len(T),
                         regularizer=make_regularizer("l2", lam=lam))
    return prob, ds


def random_point(problem, seed=0):
    """A point ``V``, its gradients and an arbitrary ``pi~`` (as NEXT would pass them)."""
    g = torch.Generator().manual_seed(seed)
    V = problem.model.w0 + 0.3 * torch.randn(problem.n_agents, problem.n_params, generator=g,
                                             dtype=torch.float64)
    Pi = 0.05 * torch.randn(V.shape, generator=g, dtype=torch.float64)
    return V, problem.gradients(V), Pi
