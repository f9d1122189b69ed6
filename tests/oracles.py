"""Shared test problems and closed-form oracles (imported by the test modules)."""
import numpy as np
import torch

from dcnn.problems import FlatModel, LocalProblems, make_regularizer, mlp


def ridge_optimum(ds, lam):
    """Closed form of (1/M)||y - [X 1] theta||^2 + lam ||theta||^2."""
    Xa = np.hstack([ds.X_train, np.ones((ds.n_train, 1))])
    y = ds.y_train.reshape(-1)
    M = len(y)
    theta = np.linalg.solve(Xa.T @ Xa / M + lam * np.eye(Xa.shape[1]), Xa.T @ y / M)
    return np.sum((y - Xa @ theta) ** 2) / M + lam * theta @ theta


def tiny_problem(loss="squared", O=2, reg="l2", lam=0.1, sizes=(6, 9, 7), hidden=(4,), d=3,
                 seed=0):
    """A few agents with uneven random shards of a small MLP (every loss and task)."""
    rng = np.random.default_rng(seed)
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
    model = FlatModel(mlp(n_inputs=d, hidden=hidden, n_outputs=O, seed=seed))
    return LocalProblems(model=model, shards=shards, loss=loss, task=task,
                         n_total=sum(sizes), regularizer=make_regularizer(reg, lam=lam))


def random_point(problem, seed=0):
    """A point ``V``, its gradients and an arbitrary ``pi~`` (as NEXT would pass them)."""
    g = torch.Generator().manual_seed(seed)
    V = problem.model.w0 + 0.3 * torch.randn(problem.n_agents, problem.n_params, generator=g,
                                             dtype=torch.float64)
    Pi = 0.05 * torch.randn(V.shape, generator=g, dtype=torch.float64)
    return V, problem.gradients(V), Pi
