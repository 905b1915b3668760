"""Per-group binary cross-entropy: ``groups=`` against pandas and polars, in one run.

On the same data (10^7 float32 probabilities, uint8 labels, int32 group codes; G = 10^3 and
10^6 groups), with 2 threads for crossent and polars (pandas' groupby is single-threaded):

- crossent: ``binary_cross_entropy(p, y, groups=codes)``, the loss and the per-group mean in
  one pass;
- pandas: ``DataFrame.groupby("g")["loss"].mean()`` over a loss column computed beforehand
  (not timed): only the grouping, which is the target's measure;
- polars: ``df.group_by("g").agg(loss)``, the loss written as a polars expression (log
  clamped at -100, as PyTorch), computed and grouped by polars;
- polars with ``crossent.polars``: ``df.group_by("g").agg(pl.col("p").crossent
  .binary_cross_entropy(pl.col("y")))``, the loss computed by crossent and grouped by polars.

Run with a release build of crossent::

    OPENBLAS_NUM_THREADS=1 python benches/groups.py [--rows 10000000] [--repeat 5]

It prints a Markdown table of the median wall time of each (seconds), each peer's time over
crossent's (above 1: crossent is faster), the largest relative difference between the
results, and the load average of the host.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("POLARS_MAX_THREADS", "2")

import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import polars as pl

import crossent
import crossent.polars  # registers pl.Expr.crossent


def timed(run: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    out = run()  # warm-up, and the result compared
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def polars_loss() -> pl.Expr:
    p = pl.col("p").cast(pl.Float64)
    y = pl.col("y").cast(pl.Float64)
    per_row = -(y * p.log().clip(lower_bound=-100) + (1 - y) * (-p).log1p().clip(lower_bound=-100))
    return per_row.mean().alias("loss")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    crossent.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    n = args.rows
    p = rng.uniform(0.001, 0.999, n).astype(np.float32)
    y = (rng.random(n) < 0.3).astype(np.uint8)
    print(
        f"rows={n} threads={args.threads} (polars: {pl.thread_pool_size()}) "
        f"load average before: {os.getloadavg()[0]:.2f}"
    )
    print(
        "| G | crossent (s) | pandas groupby (s) | polars expression (s) | "
        "polars + crossent.polars (s) | × pandas | × polars | × polars + crossent.polars "
        "| max rel diff |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for g in (1_000, 1_000_000):
        codes = rng.integers(0, g, n, dtype=np.int32)
        loss = crossent.binary_cross_entropy(p, y, reduction="none")
        frame = pd.DataFrame({"g": codes, "loss": loss})
        df = pl.DataFrame({"g": codes, "p": p, "y": y})

        def ours_run(c: Any = codes) -> Any:
            return crossent.binary_cross_entropy(p, y, groups=c)

        def pandas_run(f: Any = frame) -> Any:
            return f.groupby("g")["loss"].mean()

        def polars_run(d: Any = df) -> Any:
            return d.group_by("g").agg(polars_loss()).sort("g")

        def namespace_run(d: Any = df) -> Any:
            ns: Any = pl.col("p")
            loss = ns.crossent.binary_cross_entropy(pl.col("y")).alias("loss")
            return d.group_by("g").agg(loss).sort("g")

        t_ce, ours = timed(ours_run, args.repeat)
        t_pd, theirs = timed(pandas_run, args.repeat)
        t_pl, pol = timed(polars_run, args.repeat)
        t_ns, ns = timed(namespace_run, args.repeat)
        want = theirs.reindex(range(g)).to_numpy(np.float64)
        diff = float(np.nanmax(np.abs(ours - want) / np.abs(want)))
        for frame_out in (pol, ns):
            vals = np.full(g, np.nan)
            vals[frame_out["g"].to_numpy()] = frame_out["loss"].to_numpy()
            diff = max(diff, float(np.nanmax(np.abs(ours - vals) / np.abs(vals))))
        print(
            f"| 10^{round(np.log10(g))} | {t_ce:.4f} | {t_pd:.4f} | {t_pl:.4f} | {t_ns:.4f} | "
            f"{t_pd / t_ce:.1f}x | {t_pl / t_ce:.1f}x | {t_ns / t_ce:.1f}x | {diff:.1e} |"
        )
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
