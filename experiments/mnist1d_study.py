"""NEXT against the decentralized baselines on MNIST-1D: 16 agents, iid and Dirichlet(0.5)
shards, Erdos-Renyi with 30 % link failures, the MLP 40-100-100-10 and the MNIST-1D CNN.

    python experiments/mnist1d_study.py --out runs/mnist1d-study
    python experiments/mnist1d_study.py --models mlp --partitions iid --rounds 20 --out x

Each row is one ``dcnn compare experiments/compare/mnist1d.toml`` (every method at its
defaults: ``tau``/``lr`` "auto", ``alpha0 = 0.5``); the table gives each method's final test
accuracy and the rounds, MB sent per agent and loop seconds until the network-average model
first reaches the centralized test accuracy minus 2 points (the centralized reference:
L-BFGS-B on the pooled data, the same model and regulariser). Written to ``OUT/table.md``.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

from dcnn.compare import run_compare
from dcnn.config import load_config

HERE = Path(__file__).resolve().parent
MODELS = {"mlp": [], "cnn": ['model.name="cnn"']}
PARTITIONS = {"iid": ['data.partition="iid"'],
              "dirichlet": ['data.partition="dirichlet"', "data.beta=0.5"]}
METHODS = "next-pl,next-fl,gt,dsgd,dgd,centralized-gd"
POINTS = 2.0


def first_reach(history: Path, target: float) -> dict | None:
    """The first evaluation whose test accuracy is at least ``target``, or ``None``."""
    with history.open() as fh:
        for rec in csv.DictReader(fh):
            if float(rec["test_metric"]) >= target:
                return {"round": int(rec["iteration"]),
                        "mb": float(rec["bytes_per_agent"]) / 1e6,
                        "s": float(rec["time_s"])}
    return None


def study_row(model: str, partition: str, *, rounds: int, methods: str, out: Path,
              extra: list[str]) -> list[dict]:
    cfg = load_config(HERE / "compare" / "mnist1d.toml",
                      [*MODELS[model], *PARTITIONS[partition], f"run.iterations={rounds}",
                       *extra])
    folder = out / f"{model}-{partition}"
    run_compare(cfg, methods=methods, out=folder, verbose=False)
    summary = json.loads((folder / "compare.json").read_text())
    central = summary["centralized"]["test_metric"]
    rows = []
    status = {r["method"]: r["status"] for r in summary["rows"]}
    for method in summary["methods"]:
        if status[method] != "ok":   # diverged: no summary, a row that says so
            rows.append({"model": model, "partition": partition, "method": method,
                         "status": status[method], "centralized": central})
            continue
        s = json.loads((folder / method / "summary.json").read_text())
        hit = first_reach(folder / method / "history.csv", central - POINTS)
        rows.append({"model": model, "partition": partition, "method": method,
                     "status": "ok", "test": s["final"]["test_metric"], "centralized": central,
                     "tau_or_lr": s.get("tau") or s.get("lr"), "hit": hit,
                     "loop_s": s["wall_time_s"]})
    return rows


def table(rows: list[dict]) -> str:
    lines = [f"| model | shards | method | final test acc. (%) | rounds to centralized - "
             f"{POINTS:g} | MB / agent to it | loop s to it | loop s (all rounds) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r["status"] != "ok":
            lines.append(f"| {r['model']} | {r['partition']} | {r['method']} | **{r['status']}** "
                         f"(centralized {r['centralized']:.1f}) | - | - | - | - |")
            continue
        hit = r["hit"]
        reach = (f"{hit['round']} | {hit['mb']:.2f} | {hit['s']:.1f}" if hit
                 else "not reached | - | -")
        lines.append(f"| {r['model']} | {r['partition']} | {r['method']} | {r['test']:.1f} "
                     f"(centralized {r['centralized']:.1f}) | {reach} | {r['loop_s']:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--partitions", default=",".join(PARTITIONS))
    p.add_argument("--methods", default=METHODS)
    p.add_argument("--rounds", type=int, default=300)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="an extra config override for every row (e.g. data.samples=1000)")
    a = p.parse_args(argv)
    out = Path(a.out)
    rows = []
    for model in a.models.split(","):
        for partition in a.partitions.split(","):
            rows += study_row(model, partition, rounds=a.rounds, methods=a.methods, out=out,
                              extra=a.set)
            print(f"{model} {partition}: done", flush=True)
    text = table(rows)
    (out / "table.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
