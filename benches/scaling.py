"""Thread scaling of crossent next to the memory floor and PyTorch, in one process.

For each thread count, times (median of ``--reps``) binary cross-entropy and BCE-with-logits
over ``--n`` float32 values, the read floor (NumPy summing the same inputs in that many Python
threads; NumPy releases the GIL in reductions) and PyTorch's BCE with ``torch.set_num_threads``.

    python benches/scaling.py --threads 1,2,4,8,16 --n 1e8
"""

from __future__ import annotations

import argparse
import importlib
import os
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

import crossent


def median_time(fn: Callable[[], Any], reps: int) -> float:
    fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def read_floor(arrays: list[Any], threads: int) -> Callable[[], float]:
    """Reads every input byte once, split over `threads` threads."""
    pool = ThreadPoolExecutor(threads)
    parts = [
        (a, slice(i * len(a) // threads, (i + 1) * len(a) // threads))
        for a in arrays
        for i in range(threads)
    ]

    def run() -> float:
        return sum(pool.map(lambda ps: float(ps[0][ps[1]].sum()), parts))

    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", default="1,2,4,8,16")
    ap.add_argument("--n", type=float, default=1e8)
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    n = int(args.n)
    rng = np.random.default_rng(0)
    p = rng.uniform(0.001, 0.999, size=n).astype(np.float32)
    y = (rng.uniform(size=n) < 0.5).astype(np.float32)
    x = np.log(p / (1 - p))
    torch: Any
    try:
        torch = importlib.import_module("torch")
    except ImportError:
        torch = None
    torch_bce: Callable[[], Any] | None = None
    if torch is not None:
        tp, ty = torch.from_numpy(p), torch.from_numpy(y)
        torch_bce = lambda: torch.nn.functional.binary_cross_entropy(tp, ty).item()  # noqa: E731
    print(f"# {os.cpu_count()} CPUs, n = {n:.0e} float32, median of {args.reps}; Melem/s")
    print()
    cols = [
        "threads",
        "bce",
        "× 1 thread",
        "bce_with_logits",
        "× 1 thread",
        "read floor",
        "× 1 thread",
        "bce / floor time",
    ]
    if torch_bce is not None:
        cols += ["torch bce"]
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    first: dict[str, float] = {}
    for t in (int(v) for v in args.threads.split(",")):
        crossent.set_num_threads(t)
        rate = {
            "bce": n / median_time(lambda: crossent.binary_cross_entropy(p, y), args.reps),
            "logits": n
            / median_time(lambda: crossent.binary_cross_entropy_with_logits(x, y), args.reps),
            "floor": n / median_time(read_floor([p, y], t), args.reps),
        }
        first = first or dict(rate)
        row = [str(t)]
        for key in ("bce", "logits", "floor"):
            row += [f"{rate[key] / 1e6:.0f}", f"{rate[key] / first[key]:.1f}"]
        row.append(f"{rate['floor'] / rate['bce']:.2f}")
        if torch_bce is not None:
            torch.set_num_threads(t)
            row.append(f"{n / median_time(torch_bce, max(1, args.reps // 2)) / 1e6:.0f}")
        print("| " + " | ".join(row) + " |", flush=True)


if __name__ == "__main__":
    main()
