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
import importlib
import os
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import crossent

scipy_stats: Any
scipy_special: Any
jensenshannon: Any
try:
    scipy_stats = importlib.import_module("scipy.stats")
    scipy_special = importlib.import_module("scipy.special")
    jensenshannon = importlib.import_module("scipy.spatial.distance").jensenshannon
except ImportError:  # SciPy is optional here
    scipy_stats = scipy_special = jensenshannon = None

torch: Any
try:
    torch = importlib.import_module("torch")
except ImportError:  # torch is optional
    torch = None

N = min(10**7, int(float(os.environ.get("CROSSENT_BENCH_MAX", "1e7"))))
SHAPES = [(N // 1000, 1000), (N // 10, 10), (10, N // 10)]
DTYPES = ["float32", "float64"]

Fn = Callable[..., Any]


@functools.lru_cache(maxsize=2)
def data(rows: int, classes: int, dtype: str) -> tuple[Any, Any, Any, Any]:
    rng = np.random.default_rng(0)
    p = rng.uniform(0.0, 1.0, size=(rows, classes)).astype(dtype)
    q = rng.uniform(0.01, 1.0, size=(rows, classes)).astype(dtype)
    x = rng.normal(0.0, 3.0, size=(rows, classes)).astype(dtype)
    y = rng.integers(0, classes, size=rows)
    return p, q, x, y


def normalized(a: Any) -> Any:
    return a / a.sum(-1, keepdims=True)


# --- NumPy: the straightforward formulas (SciPy's where SciPy has the function) ------------


def numpy_cross_entropy(p: Any, q: Any) -> Any:
    a, b = normalized(p), normalized(q)
    return -(a * np.log(b)).sum(-1)


def numpy_softmax_ce(x: Any, y: Any) -> float:
    m = x.max(-1, keepdims=True)
    lse = m[:, 0] + np.log(np.exp(x - m).sum(-1))
    return float(np.mean(lse - x[np.arange(len(y)), y]))


# --- torch -------------------------------------------------------------------------------


def torch_entropy(p: Any) -> Any:
    t = torch.from_numpy(p)
    return torch.special.entr(t / t.sum(-1, keepdim=True)).sum(-1).numpy()


def torch_kl(p: Any, q: Any) -> Any:
    a, b = torch.from_numpy(p), torch.from_numpy(q)
    a, b = a / a.sum(-1, keepdim=True), b / b.sum(-1, keepdim=True)
    return torch.nn.functional.kl_div(b.log(), a, reduction="none").sum(-1).numpy()


def torch_cross_entropy(p: Any, q: Any) -> Any:
    a, b = torch.from_numpy(p), torch.from_numpy(q)
    a, b = a / a.sum(-1, keepdim=True), b / b.sum(-1, keepdim=True)
    return -(a * b.log()).sum(-1).numpy()


def torch_js(p: Any, q: Any) -> Any:
    kl_div = torch.nn.functional.kl_div
    a, b = torch.from_numpy(p), torch.from_numpy(q)
    a, b = a / a.sum(-1, keepdim=True), b / b.sum(-1, keepdim=True)
    log_m = ((a + b) / 2).log()
    return (
        (0.5 * (kl_div(log_m, a, reduction="none") + kl_div(log_m, b, reduction="none")))
        .sum(-1)
        .numpy()
    )


def torch_softmax_ce(x: Any, y: Any) -> float:
    return float(torch.nn.functional.cross_entropy(torch.from_numpy(x), torch.from_numpy(y)))


LIBS: dict[str, dict[str, Fn]] = {
    "entropy": {"crossent": crossent.entropy},
    "kl_divergence": {"crossent": crossent.kl_divergence},
    "cross_entropy": {"crossent": crossent.cross_entropy, "numpy": numpy_cross_entropy},
    "jensen_shannon": {"crossent": crossent.jensen_shannon},
    "softmax_cross_entropy": {
        "crossent": crossent.softmax_cross_entropy,
        "numpy": numpy_softmax_ce,
    },
}
if scipy_stats is not None:
    LIBS["entropy"]["scipy"] = lambda p: scipy_stats.entropy(p, axis=-1)
    LIBS["kl_divergence"]["scipy"] = lambda p, q: scipy_stats.entropy(p, q, axis=-1)
    LIBS["jensen_shannon"]["scipy"] = lambda p, q: jensenshannon(p, q, axis=-1) ** 2
if torch is not None:
    LIBS["entropy"]["torch"] = torch_entropy
    LIBS["kl_divergence"]["torch"] = torch_kl
    LIBS["cross_entropy"]["torch"] = torch_cross_entropy
    LIBS["jensen_shannon"]["torch"] = torch_js
    LIBS["softmax_cross_entropy"]["torch"] = torch_softmax_ce


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("lib", ["crossent", "scipy", "numpy", "torch"])
@pytest.mark.parametrize("op", list(LIBS))
def test_family(benchmark: Any, op: str, lib: str, dtype: str, shape: tuple[int, int]) -> None:
    if lib not in LIBS[op]:
        pytest.skip(f"no {lib} column for {op}")
    rows, classes = shape
    p, q, x, y = data(rows, classes, dtype)
    args = (x, y) if op == "softmax_cross_entropy" else (p,) if op == "entropy" else (p, q)
    benchmark.group = f"{op} {dtype} {rows}x{classes}"
    benchmark.extra_info.update(op=f"{op} {rows}×{classes}", lib=lib, dtype=dtype, n=rows * classes)
    result = benchmark(LIBS[op][lib], *args)
    # Every column computes the same numbers (checked against crossent on float64 data).
    expected = LIBS[op]["crossent"](*(a.astype(np.float64) if a is not y else a for a in args))
    rtol = 1e-4 if dtype == "float32" else 1e-9
    np.testing.assert_allclose(result, expected, rtol=rtol, atol=rtol * 1e-3)
