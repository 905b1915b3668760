"""The README's half-precision figures: peak memory of a float16 mean, and the mean's accuracy.

    python benches/half_accuracy.py                # 10^8 values
    python benches/half_accuracy.py --size 1e6     # a smoke run

Peak resident memory growth of ``binary_cross_entropy(x, y)`` over float16 ``x`` and ``y``
(Linux ``/proc``), and the relative error of the mean binary cross-entropy against a float64
reference computed from the same (exactly widened) values, for crossent and for PyTorch CPU's
``torch.nn.functional.binary_cross_entropy`` on float16 and bfloat16 tensors (where torch and
ml_dtypes are installed).
"""

from __future__ import annotations

import argparse
import gc
import math
import os
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np

import crossent


def _status(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


def peak_growth_kib(x: np.ndarray, y: np.ndarray) -> int:
    """Peak resident growth (KiB) of one mean over ``x`` and ``y``, after a warm-up call."""
    crossent.binary_cross_entropy(x[:1000], y[:1000])
    gc.collect()
    before = _status("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # the peak starts again from the current resident size
    crossent.binary_cross_entropy(x, y)
    return _status("VmHWM") - before


def reference_mean(x: np.ndarray, y: np.ndarray, chunk: int = 1 << 22) -> float:
    """The float64 mean BCE of the widened values, in float64 chunks (math.fsum of the sums),
    with PyTorch's clamp of each log at -100."""
    sums = []
    for i in range(0, x.size, chunk):
        p = x[i : i + chunk].astype(np.float64)
        t = y[i : i + chunk].astype(np.float64)
        with np.errstate(divide="ignore"):  # log(0) = -inf, clamped to -100
            log_p, log_q = np.maximum(np.log(p), -100), np.maximum(np.log1p(-p), -100)
        sums.append(math.fsum(-(t * log_p + (1 - t) * log_q)))
    return math.fsum(sums) / x.size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=float, default=1e8)
    n = int(parser.parse_args().size)
    rng = np.random.default_rng(0)
    p = rng.uniform(0.0, 1.0, n).astype(np.float32)
    t = (rng.uniform(size=n) < p).astype(np.float32)
    del rng
    x16, y16 = p.astype(np.float16), t.astype(np.float16)
    print(f"n = {n:.0e}: probabilities uniform in [0, 1], labels drawn from them")
    print(f"peak RSS growth, mean over float16 input and target: {peak_growth_kib(x16, y16)} KiB")
    del x16, y16
    dtypes: list[tuple[str, np.dtype[Any]]] = [("float16", np.dtype(np.float16))]
    try:
        import ml_dtypes

        dtypes.append(("bfloat16", np.dtype(ml_dtypes.bfloat16)))
    except ImportError:
        pass
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        torch = None
    peer = f"PyTorch {torch.__version__.split('+')[0]} CPU" if torch is not None else "PyTorch"
    print()
    print(f"| dtype | crossent | {peer} |")
    print("|---|---|---|")
    for name, dtype in dtypes:
        x, y = p.astype(dtype), t.astype(dtype)
        ref = reference_mean(x, y)
        got = crossent.binary_cross_entropy(x, y)
        theirs = "not installed"
        if torch is not None:
            tdtype = getattr(torch, name)
            tx = torch.from_numpy(x.view(np.int16)).view(tdtype)
            ty = torch.from_numpy(y.view(np.int16)).view(tdtype)
            tgot = float(F.binary_cross_entropy(tx, ty))
            theirs = f"{abs(tgot - ref) / ref:.1e}"
        print(f"| {name} | {abs(got - ref) / ref:.1e} | {theirs} |")
        del x, y


if __name__ == "__main__":
    main()
