"""Codistillation cases shared by the tests; run under ``mpiexec -n R`` it trains every case
of world size R (and the misconfigurations) in one launch, and rank 0 prints one JSON line per
case with every rank's History columns, info and traces."""
import numpy as np
import torch

from _engine_cases import module, shards

from dcnn.problems import make_regularizer, mlp


def _test_set(n=15, d=3, O=2, seed=1):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)), rng.normal(size=(n, O))


def _classes(sizes, *, O, seed):
    """Labelled shards (one-hot for O > 1, 0/1 for one output) and a test set."""
    rng = np.random.default_rng(seed)

    def draw(m):
        X = rng.normal(size=(m, 3))
        y = (X @ rng.normal(size=(3, max(O, 2)))).argmax(1)
        return X, (np.eye(O)[y] if O > 1 else y[:, None].astype(np.float64))
    return [draw(m) for m in sizes], draw(12)


def case(name):
    """Keyword arguments of ``train_codistillation`` for case ``name`` (float64, tiny)."""
    common = dict(iterations=12, eval_every=4, burn_in=3, exchange_every=4, trace=True)
    if name == "reg":          # regression, elastic net (l2 grad + l1 prox), full batch
        return dict(common, module=module([4]), shards=shards(), test=_test_set(),
                    regularizer=make_regularizer("elastic_net", lam=0.02), lr=0.1,
                    distill_weight=0.5)
    if name == "multi-mb":     # softmax, soft targets, Adam, mini-batches of 3 rows
        sh, te = _classes((5, 7, 6, 8), O=3, seed=2)
        return dict(common, module=mlp(n_inputs=3, hidden=[4], n_outputs=3, seed=1),
                    shards=sh, test=te, loss="cross_entropy", task="multiclass",
                    optimizer="adam", lr=0.05, batch_size=3, seed=7, distill_weight=1.0)
    if name == "binary4":      # 4 models (one output, sigmoid teachers), 2 teachers each
        sh, te = _classes((5, 7, 6, 8), O=1, seed=3)
        return dict(common, module=mlp(n_inputs=3, hidden=[4], n_outputs=1, seed=2),
                    shards=sh, test=te, loss="cross_entropy", task="binary", models=4,
                    regularizer=make_regularizer("l2", lam=0.01), lr=0.5,
                    distill_weight=2.0, burn_in=0, exchange_every=5)
    raise KeyError(name)


CASES = {2: ["reg", "multi-mb", "binary4"], 4: ["reg", "binary4"]}
# world size -> {label: (kwargs overrides that must fail identically on every rank)}
ERRORS = {2: {"models-vs-ranks": dict(models=3)},
          4: {"models-vs-ranks": dict(models=3),
              "group-too-large": dict(shards=shards()[:3])}}
INFO_KEYS = ("world_size", "launcher", "models", "ranks_per_model", "models_per_rank",
             "exchanges", "exchange_bytes", "bytes_sent", "final_test_metric_per_model",
             "final_train_metric_per_model", "disagreement", "teacher_trace",
             "exchange_trace", "final_checksums", "time_s")
COLUMNS = ("iteration", "objective", "grad_norm", "train_metric", "test_metric",
           "sparsity", "bytes_per_agent", "time_s")


def summary(hist, info):
    out = {k: info[k] for k in INFO_KEYS}
    out["params"] = info["final_params"].tolist()
    out.update({c: hist.column(c) for c in COLUMNS})
    return out


if __name__ == "__main__":
    from _engine_cases import emit

    from dcnn.baselines import process_group
    from dcnn.baselines.schemes.codistillation import train_codistillation
    from dcnn.errors import ConfigError

    torch.set_num_threads(1)
    with process_group() as world:    # one group for every case (the trainer reuses it)
        for name in CASES[world.size]:
            hist, info = train_codistillation(**case(name))
            emit(rank=world.rank, case=name, **summary(hist, info))
        messages = {}
        for label, over in ERRORS[world.size].items():
            try:
                train_codistillation(**{**case("reg"), **over})
                messages[label] = None
            except ConfigError as exc:
                messages[label] = str(exc)
        emit(rank=world.rank, case="errors", messages=messages)
