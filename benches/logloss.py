"""crossent.log_loss next to sklearn.metrics.log_loss: median time and peak memory.

Each library runs in its own subprocess on the same data (float32 probabilities whose rows sum
to one, int64 labels 0..K-1, made from one seed), so that one library's peak cannot hide in
the other's: the peak resident growth is measured from the resident size after the data is
made (``/proc/self/clear_refs`` resets the high-water mark; Linux only). Both values are
printed, so the table also shows that they agree. Set ``OPENBLAS_NUM_THREADS=1``.

    OPENBLAS_NUM_THREADS=1 python benches/logloss.py                 # 3e5 x 355 and 1e6 x 10
    OPENBLAS_NUM_THREADS=1 python benches/logloss.py --shapes 1e5x100 --reps 5
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import textwrap

CHILD = textwrap.dedent(
    """
    import gc, json, statistics, sys, time, warnings
    import numpy as np

    lib, n, k, reps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    if lib == "crossent":
        from crossent import log_loss
    else:
        from sklearn.metrics import log_loss

    def status(key):
        for line in open("/proc/self/status"):
            if line.startswith(key + ":"):
                return int(line.split()[1])
        raise KeyError(key)

    rng = np.random.default_rng(0)
    p = np.empty((n, k), dtype=np.float32)
    for start in range(0, n, 1 << 16):  # made in slices: no float64 temporary of p's size
        part = rng.random((min(1 << 16, n - start), k), dtype=np.float32) + np.float32(0.01)
        p[start : start + part.shape[0]] = part / part.sum(axis=1, keepdims=True)
    y = rng.integers(0, k, n)
    y[:k] = np.arange(k)  # every class present
    log_loss(y[:1000], p[:1000], labels=np.arange(k))  # warm up: imports, pool
    gc.collect()
    before = status("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    times, value = [], None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(reps):
            start = time.perf_counter()
            value = float(log_loss(y, p))
            times.append(time.perf_counter() - start)
    peak = status("VmHWM") - before
    print(json.dumps({"median_s": statistics.median(times), "peak_kib": peak, "value": value}))
    """
)


def run(lib: str, n: int, k: int, reps: int) -> dict[str, float] | str:
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, lib, str(n), str(k), str(reps)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1:] or [f"exit {proc.returncode}"]
        return f"failed: {tail[0]}"
    out: dict[str, float] = json.loads(proc.stdout)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shapes", default="3e5x355,1e6x10", help="n x k, comma separated")
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    results = []
    for shape in args.shapes.split(","):
        n_s, k_s = shape.lower().split("x")
        n, k = int(float(n_s)), int(float(k_s))
        row: dict[str, object] = {"n": n, "k": k}
        for lib in ("crossent", "sklearn"):
            row[lib] = run(lib, n, k, args.reps)
        results.append(row)
        c, s = row["crossent"], row["sklearn"]
        print(f"{n} x {k} float32 (y_pred {n * k * 4 / 2**20:.0f} MiB), median of {args.reps}:")
        for lib, r in (("crossent", c), ("sklearn", s)):
            if isinstance(r, dict):
                ms, mib = r["median_s"] * 1e3, r["peak_kib"] / 1024
                print(f"  {lib:9s} {ms:9.1f} ms  peak +{mib:8.1f} MiB  value {r['value']!r}")
            else:
                print(f"  {lib:9s} {r}")
        if isinstance(c, dict) and isinstance(s, dict):
            print(f"  speed-up {s['median_s'] / c['median_s']:.1f}x")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
