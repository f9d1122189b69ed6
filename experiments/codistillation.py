"""Codistillation in its regime: past the batch size where data parallelism stops paying.

Anil et al. (ICLR 2018) claim that once synchronous data-parallel SGD no longer reaches its
target in fewer steps when the batch grows, codistillation (``n`` models on disjoint data,
each distilling towards the others' stale predictions) still does; that it reaches most of an
ensemble's benefit at the cost of one model; and that codistilled models are more
reproducible (lower churn). This script measures the three, in one process, on one config
(``run.seed`` fixes the data, split and shards; training seeds draw the initial weights and
the batches: ``0..S-1`` for every method, ``0..nS-1`` for the ensembles' members):

1. **Batch-size sweep** of data-parallel training (``ddp``, one model, batch ``B`` per step):
   for every ``B`` and every Adam rate of ``--lrs``, the steps to the target test accuracy
   (the first evaluation at or above ``--target``), over the seeds. Each ``B`` keeps its best
   rate (fewest mean steps among the rates every seed reached the target with; none: the best
   final accuracy). ``B*`` = the smallest ``B`` whose steps are within ``--tolerance`` of the
   fewest over the sweep: where a larger batch stops paying.
2. At ``B*``, for each ``n`` of ``--models``, with their rates tuned on the same grid:
   ``codistillation`` (``n`` models, batch ``B*`` each on its ``1/n`` of the shards, the
   config's ``burn_in``, ``exchange_every``, ``distill_weight``; model 0 is delivered) against
   the same ``n`` models with ``distill_weight = 0`` (**independent**: what the split of the
   data alone does), ``ddp`` at the same total batch ``n B*`` and an **ensemble** of ``n``
   data-parallel models trained apart at ``B*`` on all the data (different seeds, averaged
   probabilities; ``n`` times the inference cost). A batch is capped by the samples a model
   holds. Churn: the share of test samples on which two retrains (different training seeds)
   predict different classes, averaged over the pairs of retrains. The rates are chosen and
   the figures reported on the same seeds and test set, alike for every method.

Writes ``OUT/sweep.csv`` (every run, with its role), ``OUT/codistillation.csv`` / ``.json`` (the tables'
rows) and ``OUT/codistillation.md`` (the tables and the verdict; ``--into FILE`` also puts it
between ``<!-- study codistillation -->`` markers of FILE).

    python experiments/codistillation.py [--config experiments/schemes/mnist1d_codistill.toml]
        [--batches 32,64,128,256,512,1024,2048,4000] [--lrs 0.01,0.03,0.1] [--seeds 3]
        [--models 2,4] [--target 55] [--out runs/codistillation] [--into experiments/README.md]
"""
from __future__ import annotations

import argparse
import csv
import itertools
import json
import warnings
from pathlib import Path

import numpy as np
import torch

from dcnn.baselines import churn, train_codistillation, train_engine
from dcnn.config import load_config
from dcnn.data import encode_targets, load_dataset, partition
from dcnn.errors import DcnnError
from dcnn.problems import FlatModel, make_regularizer, mlp
from dcnn.study import into_readme


def _floats(s: str) -> list[float]:
    return [float(x) for x in s.split(",") if x]


def _ints(s: str) -> list[int]:
    return [int(x) for x in s.split(",") if x]


class Setup:
    """The config's data, shards and model; :meth:`train` runs one method at one setting."""

    def __init__(self, *, path: str, iterations: int | None):
        cfg = load_config(path)
        self.cfg = cfg
        r, d, m = cfg.run, cfg.data, cfg.model
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = load_dataset(d.name, test_fraction=d.test_fraction, seed=r.seed, task=d.task)
        if ds.task != "multiclass":
            raise SystemExit(f"error: {path}: churn and ensembles need a multiclass dataset, "
                             f"got {d.name!r} ({ds.task}); use e.g. data.name = 'mnist1d'")
        self.ds, self.n_train = ds, len(ds.y_train)
        T = encode_targets(ds.y_train, task=ds.task, n_classes=ds.n_classes)
        parts = partition(ds.y_train, r.agents, kind=d.partition, seed=r.seed, task=ds.task)
        self.common = dict(
            shards=[(ds.X_train[p], T[p]) for p in parts],
            test=(ds.X_test, encode_targets(ds.y_test, task=ds.task, n_classes=ds.n_classes)),
            loss=m.loss, task=ds.task, optimizer=cfg.algorithm.optimizer,
            regularizer=make_regularizer(m.regularizer, lam=m.lam, l1_ratio=m.l1_ratio),
            iterations=iterations or r.iterations, eval_every=r.eval_every)
        self.iterations = self.common["iterations"]

    def module(self, seed: int) -> torch.nn.Module:
        m = self.cfg.model
        return mlp(n_inputs=self.ds.n_features, hidden=m.hidden, n_outputs=self.ds.n_classes,
                   activation=m.activation, seed=seed)

    def rows_per_model(self, models: int) -> int:
        """The training samples each of ``models`` models holds (the whole set for one)."""
        return self.n_train // models

    def train(self, *, models: int, batch: int, lr: float, seed: int, target: float,
              alpha: float) -> dict:
        """One run: ``models = 1`` is data-parallel training at ``batch`` per step; more is
        codistillation with ``batch`` per model and distillation weight ``alpha`` (0:
        independent models). Returns steps to target (None: not reached), the final test
        accuracy and the delivered model's test outputs."""
        module = self.module(seed)
        if models == 1:
            hist, info = train_engine(method="ddp", module=module, batch_size=batch, lr=lr,
                                      seed=seed, **self.common)
        else:
            a = self.cfg.algorithm
            hist, info = train_codistillation(module=module, batch_size=batch, lr=lr, seed=seed,
                                              models=models, burn_in=a.burn_in,
                                              exchange_every=a.exchange_every,
                                              distill_weight=alpha, **self.common)
        hit = [r["iteration"] for r in hist.records if r["test_metric"] >= target]
        with torch.no_grad():
            out = FlatModel(module).apply(info["final_params"], torch.as_tensor(self.ds.X_test))
        return {"steps": hit[0] if hit else None, "accuracy": hist.last["test_metric"],
                "probs": torch.softmax(out, dim=-1).numpy()}


def best_rate(runs: dict[float, list[dict]]) -> float:
    """The rate with the fewest mean steps among those every seed reached the target with;
    if none did, the one with the best mean final accuracy."""
    full = {lr: rs for lr, rs in runs.items() if all(r["steps"] is not None for r in rs)}
    if full:
        return min(full, key=lambda lr: (np.mean([r["steps"] for r in full[lr]]), -lr))
    return max(runs, key=lambda lr: np.mean([r["accuracy"] for r in runs[lr]]))


def _accuracy(probs: np.ndarray, y: np.ndarray) -> float:
    return 100.0 * float(np.mean(np.argmax(probs, axis=1) == y))


def _churn(preds: list[np.ndarray]) -> float:
    pairs = [churn(p, q, task="multiclass") for p, q in itertools.combinations(preds, 2)]
    return 100.0 * float(np.mean(pairs))


def summarise(name: str, *, n: int, models: int, batch: int, total: int, lr: float | None,
              runs: list[dict], grid: list[float]) -> dict:
    """One table row: ``n`` = the comparison's number of models, ``models`` = the models
    this method trains together, ``batch`` per model and ``total`` per step (both as run:
    capped by the samples a model holds)."""
    steps = [r["steps"] for r in runs]
    reached = [s for s in steps if s is not None]
    accs = [r["accuracy"] for r in runs]
    return {"method": name, "n": n, "models": models, "batch_per_model": batch,
            "total_batch": total,
            "lr": lr, "lr_at_grid_end": lr is not None and lr in (min(grid), max(grid)),
            "seeds": len(runs), "reached": len(reached),
            "steps_mean": float(np.mean(reached)) if len(reached) == len(runs) else None,
            "steps_min": min(reached) if reached else None,
            "steps_max": max(reached) if reached else None,
            "accuracy_mean": float(np.mean(accs)), "accuracy_min": min(accs),
            "accuracy_max": max(accs),
            "churn_percent": _churn([r["probs"] for r in runs]) if len(runs) > 1 else None}


def _steps_cell(r: dict) -> str:
    if r["method"].startswith("ensemble"):
        return "not measured"        # the members' steps are ddp's at B*
    if r["steps_mean"] is None:
        return f"{r['reached']}/{r['seeds']} reached"
    return f"{r['steps_mean']:.0f} ({r['steps_min']}-{r['steps_max']})"


def markdown(sweep: list[dict], rows: list[dict], *, b_star: int, args, setup: Setup) -> str:
    lines = [f"Batch-size sweep of data-parallel training (one model, Adam, rate tuned per "
             f"batch on {args.lrs}; {args.seeds} seeds; steps to {args.target:g} % test "
             f"accuracy, evaluated every {setup.common['eval_every']} steps, at most "
             f"{setup.iterations}; mean (min-max)):", "",
             "| batch | best rate | steps to target | final test accuracy |", "|---|---|---|---|"]
    for r in sweep:
        end = " (grid end)" if r["lr_at_grid_end"] else ""
        lines.append(f"| {r['total_batch']} | {r['lr']:g}{end} | {_steps_cell(r)} | "
                     f"{r['accuracy_mean']:.1f} % ({r['accuracy_min']:.1f}-"
                     f"{r['accuracy_max']:.1f}) |")
    lines += ["", f"B* = {b_star}: the smallest batch within {100 * args.tolerance:g} % of the "
              "fewest steps" + (" (the largest of the sweep: data parallelism had not "
                                "stopped paying)" if b_star == max(r["total_batch"] for r in sweep)
                                else "")
              + f". Then n models at B* each ({setup.n_train} training samples: a batch is "
              "capped by the samples a model holds, codistilled and independent models hold "
              "1/n of them, ensemble members and ddp all):", "",
              "| method | total batch | rate | steps to target | final test accuracy | churn |",
              "|---|---|---|---|---|---|"]
    for r in rows:
        rate = "-" if r["lr"] is None else f"{r['lr']:g}"
        end = " (grid end)" if r["lr_at_grid_end"] else ""
        lines.append(f"| {r['method']} | {r['total_batch']} | {rate}{end} | {_steps_cell(r)} | "
                     f"{r['accuracy_mean']:.1f} % ({r['accuracy_min']:.1f}-"
                     f"{r['accuracy_max']:.1f}) | {r['churn_percent']:.2f} % |")
    regime = b_star < max(r["total_batch"] for r in sweep)
    return "\n".join(lines) + "\n\n" + verdict(rows, regime=regime) + "\n"


def verdict(rows: list[dict], *, regime: bool = True) -> str:
    """One sentence per n: codistillation's steps against data parallelism at the same total
    batch, its accuracy against the ensemble's and the independent models', its churn against
    all three; first, whether B* is past where data parallelism stopped paying."""
    out = [] if regime else [
        "- B* is the largest batch of the sweep: data parallelism still paid there, so this is "
        "not the regime of the paper's claim (extend --batches)."]
    by = {(r["method"].split(" ")[0], r["n"]): r for r in rows}
    for n in sorted({r["n"] for r in rows}):
        c, d, e, i = (by[(k, n)] for k in ("codistillation", "ddp", "ensemble", "independent"))
        if c["steps_mean"] is not None and d["steps_mean"] is not None:
            ratio = d["steps_mean"] / c["steps_mean"]
            speed = (f"{c['steps_mean']:.0f} steps to the target against ddp's "
                     f"{d['steps_mean']:.0f} at the same total batch "
                     f"({ratio:.2f}x: {'faster' if ratio > 1 else 'not faster'})")
        else:
            speed = (f"the target on {c['reached']}/{c['seeds']} seeds against ddp's "
                     f"{d['reached']}/{d['seeds']} at the same total batch")
        out.append(f"- n = {n}: codistillation {speed}; test accuracy "
                   f"{c['accuracy_mean']:.1f} % against the ensemble's "
                   f"{e['accuracy_mean']:.1f} %, ddp's {d['accuracy_mean']:.1f} % and the "
                   f"independent models' {i['accuracy_mean']:.1f} %; churn "
                   f"{c['churn_percent']:.2f} % against {e['churn_percent']:.2f} % (ensemble), "
                   f"{d['churn_percent']:.2f} % (ddp) and {i['churn_percent']:.2f} % "
                   "(independent).")
    return "\n".join(out)


def plot(sweep: list[dict], rows: list[dict], path: Path) -> None:
    """Steps to target against the total batch: data parallelism's sweep (min-max bars) and
    codistillation's points."""
    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    extra = {r["total_batch"]: r for r in rows if r["method"].startswith("ddp")}
    ddp = sorted({**extra, **{r["total_batch"]: r for r in sweep}}.values(),
                 key=lambda r: r["total_batch"])
    for label, rs, style in (("ddp (one model)", ddp, "o-"),
                             ("codistillation", [r for r in rows if r["method"].startswith(
                                 "codistillation")], "s")):
        rs = [r for r in rs if r["steps_mean"] is not None]
        if not rs:
            continue
        x = [r["total_batch"] for r in rs]
        y = [r["steps_mean"] for r in rs]
        err = [[m - r["steps_min"] for m, r in zip(y, rs)],
               [r["steps_max"] - m for m, r in zip(y, rs)]]
        ax.errorbar(x, y, yerr=err, fmt=style, capsize=3, label=label)
        if label == "codistillation":
            for r in rs:
                ax.annotate(f"n = {r['models']}", (r["total_batch"], r["steps_mean"]),
                            textcoords="offset points", xytext=(5, 5))
    ax.set_xscale("log", base=2)
    ax.set_xlabel("total batch per step (samples)")
    ax.set_ylabel("steps to the target test accuracy")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="experiments/schemes/mnist1d_codistill.toml")
    ap.add_argument("--batches", type=_ints,
                    default=[32, 64, 128, 256, 512, 1024, 2048, 4000])
    ap.add_argument("--lrs", type=_floats, default=[0.01, 0.03, 0.1])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--models", type=_ints, default=[2, 4])
    ap.add_argument("--target", type=float, default=55.0, help="test accuracy in %%")
    ap.add_argument("--tolerance", type=float, default=0.1)
    ap.add_argument("--iterations", type=int, default=None, help="default: the config's")
    ap.add_argument("--out", default="runs/codistillation")
    ap.add_argument("--into", default=None, help="a Markdown file with the study markers")
    args = ap.parse_args()
    for name, vals in (("batches", args.batches), ("lrs", args.lrs), ("models", args.models)):
        if not vals or min(vals) <= 0:
            ap.error(f"--{name} {vals}: give positive values, e.g. --{name} "
                     f"{ap.get_default(name)[0]},{ap.get_default(name)[1]}")
    if args.iterations is not None and args.iterations < 1:
        ap.error(f"--iterations {args.iterations}: give at least 1 (or leave it out: the "
                 "config's run.iterations)")
    if args.tolerance < 0:
        ap.error(f"--tolerance {args.tolerance}: give a share >= 0, e.g. 0.1")
    if args.seeds < 2 or min(args.models) < 2:
        ap.error(f"--seeds {args.seeds} --models {args.models}: churn needs 2 seeds or more "
                 "and codistillation 2 models or more")
    try:
        if args.into:           # fail before the hours of runs
            from dcnn.study import check_markers
            check_markers(Path(args.into), "codistillation")
        setup = Setup(path=args.config, iterations=args.iterations)
    except DcnnError as exc:
        raise SystemExit(f"error: {exc}")
    if max(args.models) > setup.cfg.run.agents:
        ap.error(f"--models {args.models}: at most run.agents = {setup.cfg.run.agents} models "
                 "(each holds a block of the agents' shards)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    seeds = range(args.seeds)
    cache: dict[tuple, dict] = {}
    log = []
    alpha = setup.cfg.algorithm.distill_weight

    def run(models: int, batch: int, lr: float, seed: int, *, weight: float = alpha,
            role: str = "sweep") -> dict:
        key = (models, batch, lr, seed, weight)
        if key not in cache:
            cache[key] = setup.train(models=models, batch=batch, lr=lr, seed=seed,
                                     target=args.target, alpha=weight)
            r = cache[key]
            method = "ddp" if models == 1 else ("codistillation" if weight else "independent")
            log.append({"method": method, "role": role, "models": models,
                        "batch_per_model": batch, "lr": lr, "seed": seed,
                        "steps_to_target": r["steps"], "final_test_accuracy": r["accuracy"]})
            print(f"{method} n={models} B={batch} lr={lr:g} seed={seed}: "
                  f"steps {r['steps']}, accuracy {r['accuracy']:.1f} %", flush=True)
        return cache[key]

    def tuned(models: int, batch: int, **kw) -> tuple[float, list[dict]]:
        grid = {lr: [run(models, batch, lr, s, **kw) for s in seeds] for lr in args.lrs}
        lr = best_rate(grid)
        return lr, grid[lr]

    def capped(models: int, batch: int) -> int:
        return min(batch, setup.rows_per_model(models))

    sweep = []
    for b in sorted({capped(1, b) for b in args.batches}):
        lr, runs = tuned(1, b)
        sweep.append(summarise("ddp", n=1, models=1, batch=b, total=b, lr=lr, runs=runs,
                               grid=args.lrs))
    done = [r for r in sweep if r["steps_mean"] is not None]
    if not done:
        raise SystemExit(f"error: no batch size reached {args.target:g} % on every seed in "
                         f"{setup.iterations} steps; lower --target or raise --iterations")
    fewest = min(r["steps_mean"] for r in done)
    b_star = min(r["total_batch"] for r in done
                 if r["steps_mean"] <= (1 + args.tolerance) * fewest)
    lr_star, _ = tuned(1, b_star)
    y = setup.ds.y_test
    rows = []
    for n in args.models:
        b = capped(n, b_star)
        for name, weight in (("codistillation", alpha), ("independent", 0.0)):
            lr, runs = tuned(n, b_star, weight=weight, role=f"{name} n={n}")
            rows.append(summarise(f"{name} ({n} models" + (", alpha 0)" if not weight else ")"),
                                  n=n, models=n, batch=b, total=n * b, lr=lr, runs=runs,
                                  grid=args.lrs))
        total = capped(1, n * b_star)
        lr, runs = tuned(1, total, role=f"ddp n={n}")
        rows.append(summarise(f"ddp (batch {n} B*)", n=n, models=1, batch=total, total=total,
                              lr=lr, runs=runs, grid=args.lrs))
        # ensembles of n models trained apart at B* on all the data (ddp's rate there), one
        # ensemble per retrain: training seeds k n .. k n + n - 1 for retrain k
        ens = []
        for k in seeds:
            members = [run(1, b_star, lr_star, k * n + j, role=f"ensemble n={n}")
                       for j in range(n)]
            probs = np.mean([m["probs"] for m in members], axis=0)
            ens.append({"steps": None, "accuracy": _accuracy(probs, y), "probs": probs})
        rows.append(summarise(f"ensemble ({n} models)", n=n, models=n, batch=b_star,
                              total=n * b_star, lr=lr_star, runs=ens, grid=args.lrs))
    with open(out / "sweep.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(log[0]))
        w.writeheader()
        w.writerows(log)
    table = sweep + rows
    with open(out / "codistillation.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(table[0]))
        w.writeheader()
        w.writerows(table)
    (out / "codistillation.json").write_text(json.dumps(
        {"b_star": b_star, "target": args.target, "sweep": sweep, "rows": rows}, indent=2))
    md = markdown(sweep, rows, b_star=b_star, args=args, setup=setup)
    (out / "codistillation.md").write_text(md)
    plot(sweep, rows, out / "codistillation.png")
    print(md)
    if args.into:
        into_readme(md, args.into, "codistillation")


if __name__ == "__main__":
    main()
