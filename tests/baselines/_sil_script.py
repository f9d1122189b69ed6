"""SIL cases shared by tests/baselines/test_sil.py and, run as a script under mpiexec, one
launch that checks them all: rank 0 prints one JSON line per case with every rank's record
(the code table, the History columns, the final parameters, info), or ``{case: message}`` for
the misconfigurations (``errors``)."""
import numpy as np
import torch

from dcnn.problems import make_regularizer, mlp

COLUMNS = ("iteration", "objective", "grad_norm", "train_metric", "test_metric")
TABLE = dict(n_classes=3, dims=[4, 5, 3], seed=11)


def class_shards(*, task="multiclass", sizes=(9, 11, 10), d=3, seed=0):
    """Agents' shards of a separable problem: the class is the sign pattern of two
    projections (binary: one)."""
    rng = np.random.default_rng(seed)
    out = []
    for m in sizes:
        X = rng.normal(size=(m, d))
        if task == "binary":
            out.append((X, (X[:, :1] + 0.5 * X[:, 1:2] > 0).astype(float)))
        else:
            y = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0.3).astype(int)
            out.append((X, np.eye(3)[y]))
    return out


def case_kwargs(case):
    """The keyword arguments of ``train_sil`` for one case (identical in every process)."""
    if case == "train":        # training phase only, mini-batches, l2, auto stages
        return dict(module=mlp(n_inputs=3, hidden=[6, 5], n_outputs=3), shards=class_shards(),
                    test=class_shards(sizes=(12,), seed=5)[0], loss="cross_entropy",
                    task="multiclass", regularizer=make_regularizer("l2", lam=0.01),
                    iterations=6, eval_every=2, lr=0.2, batch_size=8, seed=3, noise=0.2)
    if case == "recovery":     # 3 parts on 2 ranks ([0, 1], [2]), Adam, 3 recovery steps
        return dict(module=mlp(n_inputs=3, hidden=[6, 5, 4], n_outputs=1),
                    shards=class_shards(task="binary"), loss="cross_entropy", task="binary",
                    iterations=6, eval_every=2, optimizer="adam", lr=0.05, batch_size=7,
                    seed=1, stages=3, recovery=3)
    if case == "elastic":      # full batch, l1 prox with SGD, 2 recovery steps, squared loss
        return dict(module=mlp(n_inputs=3, hidden=[6, 5], n_outputs=3), shards=class_shards(),
                    loss="squared", task="multiclass",
                    regularizer=make_regularizer("elastic_net", lam=0.02), iterations=5,
                    eval_every=2, lr=0.1, stages=2, recovery=2, seed=4)
    raise KeyError(case)


CASES = ("train", "recovery", "elastic")


def main(what):
    from _engine_cases import emit

    from dcnn.baselines import process_group
    from dcnn.baselines.schemes.sil import code_table, train_sil
    from dcnn.errors import ConfigError

    with process_group() as world:
        if what == "all":
            table = code_table(**TABLE)
            emit(rank=world.rank, case="codes", table=[c.tolist() for c in table],
                 checksum=float(sum(c.sum() for c in table)))
            for case in CASES:
                hist, info = train_sil(**case_kwargs(case))
                emit(rank=world.rank, case=case, params=info.pop("final_params"),
                     **{c: hist.column(c) for c in (*COLUMNS, "bytes_per_agent")}, info=info)
            errors = {"recovery": dict(recovery=9)}
        else:   # world-dependent misconfigurations (3 ranks)
            errors = {"ranks": dict(stages=2),
                      "auto": dict(stages=0, module=mlp(n_inputs=3, hidden=[6], n_outputs=3))}
        messages = {}
        for case, kw in errors.items():
            args = {**case_kwargs("train"), "iterations": 2, **kw}
            try:
                train_sil(**args)
                messages[case] = None
            except ConfigError as exc:
                messages[case] = str(exc)
        emit(rank=world.rank, case="errors", messages=messages)


if __name__ == "__main__":
    import sys

    torch.set_num_threads(1)
    main(sys.argv[1] if len(sys.argv) > 1 else "all")
