"""Where sequence parallelism pays: ring attention over R ranks against full attention.

One forward + backward of multi-head attention (float32, batch 1, 4 heads of width 32) for a
synthetic sequence of each length ``L``: full attention of the whole sequence on one rank
against ring attention with the sequence split over the ``R`` ranks of the launch (K/V blocks
passed around the ring, online softmax; :func:`dcnn.baselines.bench_ring`). Writes one row
per length to ``--out`` (CSV; rank 0) and prints them: the measured times (median of
``--repeats``, the slowest rank for the ring), the bytes each rank sent (measured) and the
score memory one rank holds at once (computed: ``heads (L/R)^2`` floats against
``heads L^2``).

    mpiexec -n 2 python experiments/ring_attention.py --out runs/ring-2.csv
"""
from __future__ import annotations

import argparse
import csv
from pathlib import Path

from dcnn.baselines import bench_ring, process_group


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lengths", default="256,512,1024,2048,4096",
                    help="comma-separated sequence lengths (multiples of the ranks)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default="runs/ring.csv")
    args = ap.parse_args()
    lengths = [int(v) for v in args.lengths.split(",")]
    with process_group() as world:
        rows = bench_ring(lengths=lengths, repeats=args.repeats)
        rank, size = world.rank, world.size
    if rank != 0:
        return
    for row in rows:
        row["ranks"] = size
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    for row in rows:
        print(f"L = {row['length']:>5}: ring {1e3 * row['ring_time_s']:8.1f} ms, full "
              f"{1e3 * row['full_time_s']:8.1f} ms, scores per rank "
              f"{row['attention_memory_per_rank'] / 2**20:7.1f} MiB (full "
              f"{row['attention_memory_full'] / 2**20:7.1f} MiB), sent "
              f"{row['bytes_per_rank'] / 2**20:6.2f} MiB per rank")


if __name__ == "__main__":
    main()
