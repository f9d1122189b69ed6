"""NEXT with nothing set (tau and step "auto") on a grid of architectures, datasets, agent
counts and graphs: the final objective against the centralized one, and divergences.

    python experiments/arch_grid.py --out runs/arch-grid            # the whole grid
    python experiments/arch_grid.py --quick --out runs/arch-grid-q  # a few rounds, small grid

Each run is ``dcnn run`` with the dataset, the model and the graph of its row and nothing
else set (squared loss for binary sets, cross-entropy for multiclass ones, l2 1e-3); the
centralized objective is the runner's own reference (L-BFGS-B on the pooled data, solved once
per dataset and model). Results go to ``OUT/runs.jsonl`` (one line per run, appended, so an
interrupted grid continues where it stopped) and ``OUT/table.md``.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

from dcnn.config import load_config
from dcnn.errors import DcnnError
from dcnn.runner import run_experiment

# label -> model settings (TOML values); widths 10-256, depth 1-4, tanh and relu
ARCHS = {
    "mlp-10-tanh": {"model.hidden": "[10]"},
    "mlp-256-relu": {"model.hidden": "[256]", "model.activation": '"relu"'},
    "mlp-32x2-relu": {"model.hidden": "[32, 32]", "model.activation": '"relu"'},
    "mlp-16x3-tanh": {"model.hidden": "[16, 16, 16]"},
    "mlp-64x4-tanh": {"model.hidden": "[64, 64, 64, 64]"},
    "mlp-100x2-relu": {"model.hidden": "[100, 100]", "model.activation": '"relu"'},
    "cnn": {"model.name": '"cnn"', "model.activation": '"relu"'},
    "transformer": {"model.name": '"transformer"'},
}
DATASETS = {
    "breast_cancer": {"model.loss": '"squared"'},
    "wine": {"model.loss": '"cross_entropy"'},
    "digits": {"model.loss": '"cross_entropy"'},
    "mnist1d": {"model.loss": '"cross_entropy"'},
}
# the transformer reads the features as tokens: a count that divides them
TOKENS = {"breast_cancer": 6, "wine": 13, "digits": 8, "mnist1d": 8}
GRAPHS = {
    "ring": {"topology.graph": '"ring"', "topology.dynamic": '"static"'},
    "er-fail": {"topology.graph": '"erdos_renyi"', "topology.dynamic": '"link_failure"'},
}
SURROGATES = ("pl", "fl")


def settings(arch: str, dataset: str, agents: int, graph: str, surrogate: str, *,
             rounds: int, samples: int | None) -> list[str]:
    s = {"data.name": f'"{dataset}"', "run.agents": agents, "run.iterations": rounds,
         "run.eval_every": max(rounds // 6, 1), "run.progress": "false",
         "algorithm.surrogate": f'"{surrogate}"', **ARCHS[arch], **DATASETS[dataset],
         **GRAPHS[graph]}
    if arch == "transformer":
        s["model.tokens"] = TOKENS[dataset]
    if dataset == "mnist1d" and samples:
        s["data.samples"] = samples
    return [f"{k}={v}" for k, v in s.items()]


def run_one(row: dict, *, rounds: int, samples: int | None, references: dict) -> dict:
    overrides = settings(row["arch"], row["dataset"], row["agents"], row["graph"],
                         row["surrogate"], rounds=rounds, samples=samples)
    cfg = load_config(None, overrides)
    key = (row["arch"], row["dataset"])
    start = time.perf_counter()
    try:
        res = run_experiment(cfg, out=None, verbose=False, reference=references.get(key))
    except DcnnError as err:  # a divergence (or a model that does not fit the data)
        return {**row, "status": type(err).__name__, "error": str(err).splitlines()[0],
                "seconds": time.perf_counter() - start}
    references[key] = res.summary["centralized"]
    objective = res.history.last["objective"]
    central = res.summary["centralized"]["objective"]
    u0 = res.history.records[0]["objective"]
    # the runner's guard stops only on non-finite values; a finite blow-up counts here too
    status = "ok" if math.isfinite(objective) and objective <= 100 * u0 else "diverged"
    return {**row, "status": status, "error": f"objective {objective:.3g} (start {u0:.3g})",
            "objective": objective, "centralized": central,
            "ratio": objective / central, "tau": res.summary["tau"],
            "tau_final": res.summary["tau_final"],
            "objective_0": u0,
            "test": res.history.last["test_metric"],
            "centralized_test": res.summary["centralized"]["test_metric"],
            "seconds": time.perf_counter() - start}


def gap_left(r: dict) -> float:
    """``(U - U*) / (U[0] - U*)``: the share of the initial gap to the centralized objective
    still left (0 = there, 1 = no progress)."""
    return (r["objective"] - r["centralized"]) / (r["objective_0"] - r["centralized"])


def _tau(r: dict) -> str:
    """``tau`` at the start, and where the run raised it, at the end."""
    end = r.get("tau_final")
    return f"{r['tau']:.3g}" if end in (None, r["tau"]) else f"{r['tau']:.3g} -> {end:.3g}"


def table(rows: list[dict], bound: float) -> str:
    lines = ["| model | dataset | agents | graph | surrogate | tau (start -> end) | "
             "objective / centralized | gap left | test / centralized test (%) | s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r["status"] != "ok":
            lines.append(f"| {r['arch']} | {r['dataset']} | {r['agents']} | {r['graph']} | "
                         f"{r['surrogate']} | - | **{r['status']}**: {r['error']} | - | - | "
                         f"{r['seconds']:.0f} |")
            continue
        mark = "" if r["ratio"] <= bound else " **over**"
        lines.append(f"| {r['arch']} | {r['dataset']} | {r['agents']} | {r['graph']} | "
                     f"{r['surrogate']} | {_tau(r)} | {r['ratio']:.3f}{mark} | "
                     f"{gap_left(r):.3f} | {r['test']:.1f} / {r['centralized_test']:.1f} | "
                     f"{r['seconds']:.0f} |")
    ok = [r for r in rows if r["status"] == "ok"]
    bad = [r for r in rows if r["status"] != "ok"]
    worst = max((r["ratio"] for r in ok), default=math.nan)
    worst_gap = max((gap_left(r) for r in ok), default=math.nan)
    lines += ["", f"{len(rows)} runs: {len(bad)} failed, worst objective / centralized "
              f"{worst:.3f} ({sum(r['ratio'] > bound for r in ok)} over {bound}), worst gap "
              f"left {worst_gap:.3f}."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--rounds", type=int, default=300)
    p.add_argument("--bound", type=float, default=1.5)
    p.add_argument("--samples", type=int, default=None, help="MNIST-1D samples (default 5000)")
    p.add_argument("--archs", default=",".join(ARCHS))
    p.add_argument("--datasets", default=",".join(DATASETS))
    p.add_argument("--agents", default="8,32")
    p.add_argument("--graphs", default=",".join(GRAPHS))
    p.add_argument("--surrogates", default=",".join(SURROGATES))
    p.add_argument("--quick", action="store_true",
                   help="5 rounds, MNIST-1D at 500 samples (a smoke test of the grid)")
    a = p.parse_args(argv)
    if a.quick:
        a.rounds, a.samples = 5, a.samples or 500
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    log = out / "runs.jsonl"
    done = {}
    if log.exists():
        for line in log.read_text().splitlines():
            r = json.loads(line)
            done[(r["arch"], r["dataset"], r["agents"], r["graph"], r["surrogate"])] = r
    references: dict = {}
    rows = []
    grid = [(arch, ds, int(n), g, s) for ds in a.datasets.split(",")
            for arch in a.archs.split(",") for n in a.agents.split(",")
            for g in a.graphs.split(",") for s in a.surrogates.split(",")]
    for k, key in enumerate(grid, 1):
        if key in done:
            rows.append(done[key])
            continue
        row = dict(zip(("arch", "dataset", "agents", "graph", "surrogate"), key))
        r = run_one(row, rounds=a.rounds, samples=a.samples, references=references)
        rows.append(r)
        with log.open("a") as fh:
            fh.write(json.dumps(r) + "\n")
        shown = f"{r['ratio']:.3f}" if r["status"] == "ok" else r["status"]
        print(f"[{k}/{len(grid)}] {' '.join(map(str, key))}: {shown} ({r['seconds']:.1f} s)",
              flush=True)
    (out / "table.md").write_text(table(rows, a.bound))
    print(table(rows, a.bound))
    return 0 if all(r["status"] == "ok" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
