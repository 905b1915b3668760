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
import importlib
import os
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import crossent

torch: Any
try:
    torch = importlib.import_module("torch")
except ImportError:  # torch is optional
    torch = None

MAX_N = int(float(os.environ.get("CROSSENT_BENCH_MAX", "1e7")))
SIZES = [n for n in (10**5, 10**6, 10**7) if n <= MAX_N]
DTYPES = ["float32", "float64"]
CLASSES = 10

Pair = tuple[Any, Any]


@functools.lru_cache(maxsize=2)
def data(n: int, dtype: str) -> tuple[Any, Any, Any, Any]:
    rng = np.random.default_rng(0)
    x = rng.normal(0.0, 3.0, size=n).astype(dtype)
    y = (rng.uniform(size=n) < 0.5).astype(dtype)
    logits = x.reshape(-1, CLASSES)
    labels = rng.integers(0, CLASSES, size=n // CLASSES)
    return x, y, logits, labels


def numpy_binary(x: Any, y: Any) -> Pair:
    s = 1.0 / (1.0 + np.exp(-x))
    return s - y, s * (1.0 - s)


def numpy_softmax(logits: Any, labels: Any) -> Pair:
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    p = e / e.sum(axis=1, keepdims=True)
    g = p.copy()
    g[np.arange(len(labels)), labels] -= 1.0
    return g, p * (1.0 - p)


def torch_binary(x: Any, y: Any) -> Pair:
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    s = torch.sigmoid(xt)
    return (s - yt).numpy(), (s * (1 - s)).numpy()


def torch_softmax(logits: Any, labels: Any) -> Pair:
    p = torch.softmax(torch.from_numpy(logits), dim=1)
    g = p.clone()
    g[torch.arange(len(labels)), torch.from_numpy(labels)] -= 1.0
    return g.numpy(), (p * (1 - p)).numpy()


LIBS: dict[str, dict[str, Callable[[Any, Any], Pair]]] = {
    "bce_with_logits_grad": {
        "crossent": crossent.binary_cross_entropy_with_logits_grad,
        "numpy": numpy_binary,
    },
    "softmax_cross_entropy_grad": {
        "crossent": lambda x, t: crossent.softmax_cross_entropy_grad(x, t, reduction="sum"),
        "numpy": numpy_softmax,
    },
}
if torch is not None:
    LIBS["bce_with_logits_grad"]["torch"] = torch_binary
    LIBS["softmax_cross_entropy_grad"]["torch"] = torch_softmax


@pytest.mark.parametrize("n", SIZES, ids=lambda n: f"n=1e{len(str(n)) - 1}")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("lib", ["crossent", "numpy", "torch"])
@pytest.mark.parametrize("op", list(LIBS))
def test_grad(benchmark: Any, op: str, lib: str, dtype: str, n: int) -> None:
    if lib not in LIBS[op]:
        pytest.skip(f"{lib} is not installed")
    x, y, logits, labels = data(n, dtype)
    a, b = (x, y) if op == "bce_with_logits_grad" else (logits, labels)
    benchmark.group = f"{op} {dtype} n={n:.0e}"
    benchmark.extra_info.update(op=op, lib=lib, dtype=dtype, n=n)
    g, h = benchmark(LIBS[op][lib], a, b)
    # Every column computes the same arrays (the float64 NumPy closed form as reference).
    g_ref, h_ref = LIBS[op]["numpy"](a.astype(np.float64), b)
    tol = 1e-5 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(g, g_ref, rtol=tol, atol=tol)
    np.testing.assert_allclose(h, h_ref, rtol=tol, atol=tol)
