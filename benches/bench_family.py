"""Entropy, KL, cross-entropy, Jensen-Shannon and softmax cross-entropy: crossent against
SciPy/NumPy and PyTorch (when installed), on the same data, per row of (rows x classes).

Run (timings, then a Markdown table of medians and ratios):

    python -m pytest benches/bench_family.py --benchmark-json=family.json
    python benches/summarize.py family.json

Shapes (rows x classes) = (10^4 x 10^3), (10^6 x 10) and (10 x 10^6), 10^7 elements each;
``CROSSENT_BENCH_MAX=1e5`` shrinks them to that many elements (CI's smoke run).
"""

from __future__ import annotations

import functools
import os
from typing import Any

import numpy as np
import pytest

from crossent import _peers

#: crossent and the peer formulas of the libraries installed (crossent._peers, as in
#: `crossent bench`).
LIBS = _peers.installed(("crossent", "scipy", "numpy", "torch"))
OPS = ("entropy", "kl_divergence", "cross_entropy", "jensen_shannon", "softmax_cross_entropy")

N = min(10**7, int(float(os.environ.get("CROSSENT_BENCH_MAX", "1e7"))))
SHAPES = [(N // 1000, 1000), (N // 10, 10), (10, N // 10)]
DTYPES = ["float32", "float64"]


@functools.lru_cache(maxsize=2)
def data(rows: int, classes: int, dtype: str) -> tuple[Any, Any, Any, Any]:
    rng = np.random.default_rng(0)
    p = rng.uniform(0.0, 1.0, size=(rows, classes)).astype(dtype)
    q = rng.uniform(0.01, 1.0, size=(rows, classes)).astype(dtype)
    x = rng.normal(0.0, 3.0, size=(rows, classes)).astype(dtype)
    y = rng.integers(0, classes, size=rows)
    return p, q, x, y


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("lib", ["crossent", "scipy", "numpy", "torch"])
@pytest.mark.parametrize("op", OPS)
def test_family(benchmark: Any, op: str, lib: str, dtype: str, shape: tuple[int, int]) -> None:
    if op not in LIBS.get(lib, {}):
        pytest.skip(f"no {lib} column for {op}")
    rows, classes = shape
    p, q, x, y = data(rows, classes, dtype)
    args = (x, y) if op == "softmax_cross_entropy" else (p,) if op == "entropy" else (p, q)
    benchmark.group = f"{op} {dtype} {rows}x{classes}"
    benchmark.extra_info.update(op=f"{op} {rows}×{classes}", lib=lib, dtype=dtype, n=rows * classes)
    result = benchmark(_peers.prepare(LIBS[lib], lib, op, *args))
    # Every column computes the same numbers (checked against crossent on float64 data).
    expected = LIBS["crossent"][op](*(a.astype(np.float64) if a is not y else a for a in args))
    rtol = 1e-4 if dtype == "float32" else 1e-9
    np.testing.assert_allclose(result, expected, rtol=rtol, atol=rtol * 1e-3)
