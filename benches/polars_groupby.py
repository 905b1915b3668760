"""Per-segment binary cross-entropy in polars: ``group_by("segment").agg(loss)``.

Compares, in one run on the same frame (10^7 rows, float32 probabilities, uint8 labels):

- ``crossent.polars``: ``pl.col("p").crossent.binary_cross_entropy(pl.col("y"))`` (one
  crossent call per batch for the per-row losses, polars' per-group float64 mean);
- ``map_groups``: crossent called once per group through ``pl.map_groups`` (crossent's own
  reduction, one Python call per group);
- pure polars: the same loss written as a polars expression (log clamped at -100).

Run with a release build of crossent::

    OPENBLAS_NUM_THREADS=1 python benches/polars_groupby.py [--rows 10000000] [--repeat 3]

It prints a Markdown table of median wall times (seconds) and the ratio to pure polars.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import numpy as np
import polars as pl

import crossent
import crossent.polars  # registers the namespace


def frame(rows: int, segments: int, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    return pl.DataFrame(
        {
            "segment": rng.integers(0, segments, rows, dtype=np.int32),
            "p": rng.uniform(0.001, 0.999, rows).astype(np.float32),
            "y": (rng.random(rows) < 0.3).astype(np.uint8),
        }
    )


def namespace_loss() -> pl.Expr:
    expr: Any = pl.col("p")
    loss: pl.Expr = expr.crossent.binary_cross_entropy(pl.col("y"))
    return loss


def map_groups_loss() -> pl.Expr:
    def one(s: Sequence[pl.Series]) -> float:
        return float(crossent.binary_cross_entropy(s[0].to_numpy(), s[1].to_numpy()))

    return pl.map_groups([pl.col("p"), pl.col("y")], one, pl.Float64, returns_scalar=True)


def polars_loss() -> pl.Expr:
    p = pl.col("p").cast(pl.Float64)
    y = pl.col("y").cast(pl.Float64)
    per_row = -(y * p.log().clip(lower_bound=-100) + (1 - y) * (-p).log1p().clip(lower_bound=-100))
    return per_row.mean()


def per_segment(df: pl.DataFrame, loss: pl.Expr) -> pl.DataFrame:
    return df.group_by("segment").agg(loss.alias("loss")).sort("segment")


def timed(run: Callable[[], pl.DataFrame], repeat: int) -> tuple[float, pl.DataFrame]:
    times = []
    out = run()  # warm-up (and the result to compare)
    for _ in range(repeat):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--segments", type=int, nargs="+", default=[1_000, 1_000_000])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--map-groups-repeat",
        type=int,
        default=1,
        help="repetitions of the (slow) per-group map_groups variant",
    )
    args = parser.parse_args()
    print(
        f"rows={args.rows}, crossent threads={crossent.get_num_threads()}, "
        f"polars threads={pl.thread_pool_size()}, polars {pl.__version__}, "
        f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')}"
    )
    print()
    print(
        "| segments | crossent.polars (s) | map_groups (s) | pure polars (s) | "
        "crossent.polars / polars | max rel. diff |"
    )
    print("|---:|---:|---:|---:|---:|---:|")
    for segments in args.segments:
        df = frame(args.rows, segments)
        variants = {
            "namespace": (namespace_loss(), args.repeat),
            "map_groups": (map_groups_loss(), args.map_groups_repeat),
            "polars": (polars_loss(), args.repeat),
        }
        results: dict[str, tuple[float, pl.DataFrame]] = {}
        for name, (loss, repeat) in variants.items():
            results[name] = timed(partial(per_segment, df, loss), repeat)
        ref = results["polars"][1]["loss"].to_numpy()
        diff = max(
            float(np.max(np.abs(results[n][1]["loss"].to_numpy() - ref) / np.abs(ref)))
            for n in ("namespace", "map_groups")
        )
        t = {n: r[0] for n, r in results.items()}
        print(
            f"| {segments:,} | {t['namespace']:.3f} | {t['map_groups']:.3f} | "
            f"{t['polars']:.3f} | {t['namespace'] / t['polars']:.2f} | {diff:.1e} |"
        )


if __name__ == "__main__":
    main()
