"""Binary cross-entropy: crossent against NumPy and PyTorch (when installed), same data.

Run (timings, then a Markdown table of medians and ratios):

    python -m pytest benches/bench_bce.py --benchmark-json=bce.json
    python benches/summarize.py bce.json

Sizes up to 10^8 by default (about 3 GB of RAM for NumPy's temporaries); set
``CROSSENT_BENCH_MAX=1e7`` to stop earlier.
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
LIBS = _peers.installed(("crossent", "numpy", "torch"))

# Largest N benchmarked; CI's smoke run sets it low (`CROSSENT_BENCH_MAX=1e5`).
MAX_N = int(float(os.environ.get("CROSSENT_BENCH_MAX", "1e8")))
SIZES = [n for n in (10**3, 10**5, 10**6, 10**7, 10**8) if n <= MAX_N]
DTYPES = ["float32", "float64"]


@functools.lru_cache(maxsize=2)
def data(n: int, dtype: str) -> tuple[Any, Any, Any]:
    rng = np.random.default_rng(0)
    p = rng.uniform(0.001, 0.999, size=n).astype(dtype)
    x = rng.normal(0.0, 3.0, size=n).astype(dtype)
    y = (rng.uniform(size=n) < 0.5).astype(dtype)
    return p, x, y


OPS = {"bce": "binary_cross_entropy", "bce_with_logits": "binary_cross_entropy_with_logits"}


@pytest.mark.parametrize("n", SIZES, ids=lambda n: f"n=1e{len(str(n)) - 1}")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("lib", ["crossent", "numpy", "torch"])
@pytest.mark.parametrize("op", list(OPS))
def test_bce(benchmark: Any, op: str, lib: str, dtype: str, n: int) -> None:
    if lib not in LIBS:
        pytest.skip(f"{lib} is not installed")
    p, x, y = data(n, dtype)
    inp = p if op == "bce" else x
    fn = OPS[op]
    benchmark.group = f"{op} {dtype} n={n:.0e}"
    benchmark.extra_info.update(op=op, lib=lib, dtype=dtype, n=n)
    result = float(benchmark(_peers.prepare(LIBS[lib], lib, fn, inp, y)))
    # Every column computes the same number (NumPy's formula in float64 as the reference).
    expected = float(LIBS["numpy"][fn](inp.astype(np.float64), y.astype(np.float64)))
    assert result == pytest.approx(expected, rel=1e-4 if dtype == "float32" else 1e-10)
