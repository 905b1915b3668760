"""Gradients for boosting: crossent's ``(grad, hess)`` against the closed forms a custom
XGBoost/LightGBM objective writes in NumPy, and the same in PyTorch (when installed).

Run (timings, then a Markdown table of medians and ratios):

    python -m pytest benches/bench_grad.py --benchmark-json=grad.json
    python benches/summarize.py grad.json

Binary: 10^5 to 10^7 logits. Softmax: rows of 10 classes, same element counts.
``CROSSENT_BENCH_MAX=1e5`` stops earlier (CI's smoke run).
"""

from __future__ import annotations

import functools
import os
from typing import Any

import numpy as np
import pytest

from crossent import _peers

#: crossent and the peer formulas of the libraries installed (crossent._peers, as in
#: `crossent bench`): the closed forms a custom objective writes.
LIBS = _peers.installed(("crossent", "numpy", "torch"))
OPS = {
    "bce_with_logits_grad": "binary_cross_entropy_with_logits_grad",
    "softmax_cross_entropy_grad": "softmax_cross_entropy_grad",
}

MAX_N = int(float(os.environ.get("CROSSENT_BENCH_MAX", "1e7")))
SIZES = [n for n in (10**5, 10**6, 10**7) if n <= MAX_N]
DTYPES = ["float32", "float64"]
CLASSES = 10


@functools.lru_cache(maxsize=2)
def data(n: int, dtype: str) -> tuple[Any, Any, Any, Any]:
    rng = np.random.default_rng(0)
    x = rng.normal(0.0, 3.0, size=n).astype(dtype)
    y = (rng.uniform(size=n) < 0.5).astype(dtype)
    logits = x.reshape(-1, CLASSES)
    labels = rng.integers(0, CLASSES, size=n // CLASSES)
    return x, y, logits, labels


@pytest.mark.parametrize("n", SIZES, ids=lambda n: f"n=1e{len(str(n)) - 1}")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("lib", ["crossent", "numpy", "torch"])
@pytest.mark.parametrize("op", list(OPS))
def test_grad(benchmark: Any, op: str, lib: str, dtype: str, n: int) -> None:
    if lib not in LIBS:
        pytest.skip(f"{lib} is not installed")
    x, y, logits, labels = data(n, dtype)
    a, b = (x, y) if op == "bce_with_logits_grad" else (logits, labels)
    benchmark.group = f"{op} {dtype} n={n:.0e}"
    benchmark.extra_info.update(op=op, lib=lib, dtype=dtype, n=n)
    # crossent's default reduction of the gradients is "sum": per element, unscaled.
    g, h = benchmark(_peers.prepare(LIBS[lib], lib, OPS[op], a, b))
    # Every column computes the same arrays (the float64 NumPy closed form as reference).
    g_ref, h_ref = LIBS["numpy"][OPS[op]](a.astype(np.float64), b)
    tol = 1e-5 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(g, g_ref, rtol=tol, atol=tol)
    np.testing.assert_allclose(h, h_ref, rtol=tol, atol=tol)
