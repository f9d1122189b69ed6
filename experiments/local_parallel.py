"""Local parallelism in its regime: compute and critical path to a target loss, by batch size.

Laskin et al. (arXiv 2012.03837) claim that local updates (greedy, overlapping, chunked
blocks trained on auxiliary losses, pipelined without a flush) keep buying speed past the
batch size where data parallelism stops paying, at a cost in total compute: they extend the
compute-efficiency frontier. This script runs, in one process, on one config (``run.seed``
fixes the data; training seeds ``0..S-1`` the initial weights and batches), for every batch
``B`` of ``--batches`` and every Adam rate of ``--lrs``:

- ``backprop``: one unit (the whole MLP, exact backprop);
- ``greedy`` / ``overlapping``: one unit per block (``--stages`` blocks of Linear layers);
- ``chunked``: units of ``--chunk`` blocks;

and records the ticks to the target training objective (the first evaluation at or below
``--target``; the delivered model: the MLP without heads). Each (method, ``B``) keeps its best
rate (fewest mean ticks among those every seed reached the target with; rates chosen and
figures reported on the same seeds, alike for every method).

Time is modelled as Laskin et al. do, with weak scaling: every worker processes
``--worker-batch`` samples (default: the smallest batch), so backprop runs data-parallel over
``B / b`` workers and a local method over ``U B / b`` (``U`` units per replica, one per
worker). Adding workers to backprop past the batch where the ticks stop falling buys nothing;
the local methods cut each worker's share of a tick instead.

Compute is counted from the layer shapes (:func:`dcnn.baselines.schemes.local_units.unit_flops`:
matrix-multiply FLOPs of forward, backward and heads, equal to PyTorch's ``FlopCounterMode``
count in the tests; the pipeline's fill ticks count only their active units). The **critical
path** is the FLOPs of the busiest worker summed over the ticks to the target: a whole
backprop step on ``b`` samples, or the largest active unit on ``b`` samples (communication and
the gradient all-reduce are not counted for any method). The frontier is the set of (method,
``B``) points no other point beats on both total compute and critical path.

Writes ``OUT/sweep.csv`` (every run), ``OUT/local_parallel.csv`` / ``.json``,
``OUT/local_parallel.png`` (critical path against total compute, batch sizes marked) and
``OUT/local_parallel.md`` (``--into FILE``: also between ``<!-- study local-parallel -->``
markers of FILE).

    python experiments/local_parallel.py [--config experiments/schemes/mnist1d_local.toml]
        [--batches 64,256,1024,4000] [--lrs 0.003,0.01,0.03] [--seeds 3] [--target 0.6]
        [--out runs/local-parallel] [--into experiments/README.md]
"""
from __future__ import annotations

import argparse
import csv
import json
import warnings
from pathlib import Path

import numpy as np

from dcnn.baselines import train_local_parallel
from dcnn.baselines.schemes.local_units import plan_units, resolve_stages, unit_flops
from dcnn.config import load_config
from dcnn.data import encode_targets, load_dataset
from dcnn.errors import DcnnError
from dcnn.problems import make_regularizer, mlp
from dcnn.study import check_markers, into_readme

METHODS = ("backprop", "greedy", "overlapping", "chunked")


def _list(kind):
    return lambda s: [kind(x) for x in s.split(",") if x]


def tick_flops(module, *, method: str, stages: int, chunk: int, batch: int,
               worker_batch: int, ticks: int) -> tuple[int, int]:
    """(total FLOPs on ``batch`` samples per tick, the busiest worker's FLOPs on its
    ``worker_batch`` samples) summed over the first ``ticks`` ticks (module docstring)."""
    mode, k = ("chunked", stages) if method == "backprop" else (method, chunk)
    specs = plan_units(module, stages=stages, local_mode=mode, chunk=k)
    U = len(specs)
    total = busiest = 0
    for t in range(ticks):
        def cost(s, b):
            return unit_flops(module, s, batch=b, local_mode=mode,
                              overlap=mode == "overlapping" and s.index + 1 < U
                              and t >= s.index + 2)
        active = [s for s in specs if t >= s.index]
        total += sum(cost(s, batch) for s in active)
        busiest += max(cost(s, worker_batch) for s in active)
    return total, busiest


def frontier(rows: list[dict]) -> None:
    """Mark the rows no other row beats on both total FLOPs and critical path."""
    done = [r for r in rows if r["ticks_mean"] is not None]
    for r in rows:
        r["on_frontier"] = r in done and not any(
            q["flops_total"] <= r["flops_total"] and q["flops_critical"] <= r["flops_critical"]
            and (q["flops_total"], q["flops_critical"]) != (r["flops_total"], r["flops_critical"])
            for q in done)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="experiments/schemes/mnist1d_local.toml")
    ap.add_argument("--batches", type=_list(int), default=[64, 256, 1024, 4000])
    ap.add_argument("--lrs", type=_list(float), default=[0.003, 0.01, 0.03])
    ap.add_argument("--methods", type=_list(str), default=list(METHODS))
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--stages", type=int, default=4)
    ap.add_argument("--chunk", type=int, default=2)
    ap.add_argument("--worker-batch", type=int, default=0,
                    help="samples per worker (default: the smallest batch)")
    ap.add_argument("--target", type=float, default=0.6, help="training objective")
    ap.add_argument("--iterations", type=int, default=None, help="default: the config's")
    ap.add_argument("--out", default="runs/local-parallel")
    ap.add_argument("--into", default=None, help="a Markdown file with the study markers")
    args = ap.parse_args()
    bad = [m for m in args.methods if m not in METHODS]
    if (bad or not args.methods or not args.batches or min(args.batches) <= 0 or not args.lrs
            or min(args.lrs) <= 0):
        ap.error(f"--methods {args.methods} --batches {args.batches} --lrs {args.lrs}: "
                 f"methods among {','.join(METHODS)}, positive batches and rates")
    if args.seeds < 1 or args.worker_batch < 0 or (args.iterations is not None
                                                   and args.iterations < 1):
        ap.error(f"--seeds {args.seeds} --worker-batch {args.worker_batch} --iterations "
                 f"{args.iterations}: give seeds >= 1, a worker batch >= 0 (0: the smallest "
                 "batch) and iterations >= 1")
    worker_batch = args.worker_batch or min(args.batches)
    if worker_batch > min(args.batches):
        ap.error(f"--worker-batch {worker_batch}: at most the smallest batch "
                 f"({min(args.batches)}), so that every batch has whole workers")
    try:                          # every refusal before the first of the runs
        if args.into:
            check_markers(Path(args.into), "local-parallel")
        cfg = load_config(args.config)
        r, d, m = cfg.run, cfg.data, cfg.model
        for method in args.methods:
            resolve_stages(args.stages, local_mode="chunked" if method == "backprop" else method,
                           chunk=args.stages if method == "backprop" else args.chunk, ranks=1,
                           n_linear=len(m.hidden) + 1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = load_dataset(d.name, test_fraction=d.test_fraction, seed=r.seed, task=d.task)
    except DcnnError as exc:
        raise SystemExit(f"error: {exc}")
    iterations = args.iterations or r.iterations
    common = dict(shards=[(ds.X_train, encode_targets(ds.y_train, task=ds.task,
                                                      n_classes=ds.n_classes))],
                  loss=m.loss, task=ds.task, optimizer=cfg.algorithm.optimizer,
                  regularizer=make_regularizer(m.regularizer, lam=m.lam, l1_ratio=m.l1_ratio),
                  iterations=iterations, eval_every=r.eval_every, stages=args.stages)

    def module(seed):
        return mlp(n_inputs=ds.n_features, hidden=m.hidden,
                   n_outputs=max(ds.n_classes, 1) if ds.task == "multiclass" else 1,
                   activation=m.activation, seed=seed)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log, rows = [], []
    for method in args.methods:
        mode, chunk = ("chunked", args.stages) if method == "backprop" else (method, args.chunk)
        for batch in args.batches:
            runs = {}
            for lr in args.lrs:
                for seed in range(args.seeds):
                    hist, _ = train_local_parallel(module=module(seed), batch_size=batch,
                                                   lr=lr, seed=seed, local_mode=mode,
                                                   chunk=chunk, **common)
                    hit = [q["iteration"] for q in hist.records
                           if q["objective"] <= args.target]
                    runs.setdefault(lr, []).append(hit[0] if hit else None)
                    log.append({"method": method, "batch": batch, "lr": lr, "seed": seed,
                                "ticks_to_target": runs[lr][-1],
                                "final_objective": hist.last["objective"]})
                    print(f"{method} B={batch} lr={lr:g} seed={seed}: ticks {runs[lr][-1]}, "
                          f"objective {hist.last['objective']:.3f}", flush=True)
            full = {lr: t for lr, t in runs.items() if None not in t}
            lr = min(full, key=lambda k: (np.mean(full[k]), -k)) if full else None
            ticks = float(np.mean(full[lr])) if full else None
            total, critical = (tick_flops(module(0), method=method, stages=args.stages,
                                          chunk=chunk, batch=min(batch, len(ds.y_train)),
                                          worker_batch=worker_batch, ticks=round(ticks))
                               if full else (None, None))
            units = 1 if method == "backprop" else args.stages // (chunk if mode == "chunked"
                                                                   else 1)
            rows.append({"method": method, "batch": batch, "lr": lr,
                         "lr_at_grid_end": lr in (min(args.lrs), max(args.lrs)) if full else None,
                         "seeds": args.seeds,
                         "reached": max(sum(t is not None for t in v) for v in runs.values()),
                         "ticks_mean": ticks,
                         "ticks_min": min(full[lr]) if full else None,
                         "ticks_max": max(full[lr]) if full else None,
                         "workers": units * -(-min(batch, len(ds.y_train)) // worker_batch),
                         "flops_total": total, "flops_critical": critical})
    frontier(rows)
    with open(out / "sweep.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(log[0]))
        w.writeheader()
        w.writerows(log)
    with open(out / "local_parallel.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    (out / "local_parallel.json").write_text(json.dumps(
        {"target": args.target, "stages": args.stages, "rows": rows}, indent=2))
    md = markdown(rows, args=args, eval_every=r.eval_every, iterations=iterations,
                  worker_batch=worker_batch)
    (out / "local_parallel.md").write_text(md)
    plot(rows, out / "local_parallel.png")
    print(md)
    if args.into:
        into_readme(md, args.into, "local-parallel")


def plot(rows: list[dict], path: Path) -> None:
    """Critical path against total compute, one line per method over the batch sizes;
    frontier points ringed."""
    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, ax = plt.subplots(figsize=(6, 4))
    for method, marker in zip(METHODS, "osd^"):
        rs = [r for r in rows if r["method"] == method and r["ticks_mean"] is not None]
        if not rs:
            continue
        x = [r["flops_total"] / 1e9 for r in rs]
        y = [r["flops_critical"] / 1e9 for r in rs]
        ax.plot(x, y, marker=marker, label=method)
        for r, xi, yi in zip(rs, x, y):
            ax.annotate(str(r["batch"]), (xi, yi), textcoords="offset points", xytext=(4, 4),
                        fontsize=7)
    front = [r for r in rows if r["on_frontier"]]
    ax.scatter([r["flops_total"] / 1e9 for r in front],
               [r["flops_critical"] / 1e9 for r in front], s=160, facecolors="none",
               edgecolors="k", label="frontier")
    ax.set_xscale("log")
    ax.set_yscale("log")
    for axis in (ax.xaxis, ax.yaxis):          # decades only: minor labels overlap
        axis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("total compute to target (GFLOP)")
    ax.set_ylabel("critical path to target (GFLOP, busiest worker)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def markdown(rows: list[dict], *, args, eval_every: int, iterations: int,
             worker_batch: int) -> str:
    lines = [f"Ticks, total compute and critical path (the busiest worker, {worker_batch} "
             f"samples per worker) to a "
             f"training objective of {args.target:g}; Adam rate tuned per (method, batch) on "
             f"{args.lrs}; {args.seeds} seeds, mean (min-max); evaluated every {eval_every} "
             f"ticks, at most {iterations}; GFLOP = 1e9 matrix-multiply FLOPs; * = on the "
             "frontier:", "",
             "| method | batch | workers | rate | ticks to target | total GFLOP | "
             "critical-path GFLOP |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        if r["ticks_mean"] is None:
            lines.append(f"| {r['method']} | {r['batch']} | {r['workers']} | - | "
                         f"{r['reached']}/{r['seeds']} reached | - | - |")
            continue
        star = " *" if r["on_frontier"] else ""
        end = " (grid end)" if r["lr_at_grid_end"] else ""
        lines.append(f"| {r['method']}{star} | {r['batch']} | {r['workers']} | {r['lr']:g}{end} | "
                     f"{r['ticks_mean']:.0f} ({r['ticks_min']}-{r['ticks_max']}) | "
                     f"{r['flops_total'] / 1e9:.2f} | {r['flops_critical'] / 1e9:.2f} |")
    return "\n".join(lines) + "\n\n" + verdict(rows) + "\n"


def verdict(rows: list[dict]) -> str:
    """Which methods are on the frontier, and the fastest critical path of each method."""
    front = [f"{r['method']} at B = {r['batch']}" for r in rows if r["on_frontier"]]
    best = {}
    for r in rows:
        if r["ticks_mean"] is not None and (r["method"] not in best or
                                            r["flops_critical"] < best[r["method"]]["flops_critical"]):
            best[r["method"]] = r
    parts = [f"{k} {v['flops_critical'] / 1e9:.2f} GFLOP (B = {v['batch']}, "
             f"{v['flops_total'] / 1e9:.2f} in total)" for k, v in best.items()]
    return (f"- Frontier: {', '.join(front) or 'none'}.\n"
            f"- Shortest critical path of each method: {'; '.join(parts) or 'none'}.")


if __name__ == "__main__":
    main()
