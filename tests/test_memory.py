"""Memory: repeated calls (successful or failing) leave the resident set flat, and a slow
test runs binary cross-entropy on more than 2^31 elements (no 32-bit index anywhere)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from registry import FLOATS, FUNCS, full_args

import crossent

STATUS = Path("/proc/self/status")


def rss_kib() -> int:
    for line in STATUS.read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def one_round(calls: list[tuple[Any, dict[str, Any], dict[str, Any]]]) -> int:
    done = 0
    for f, args, extra in calls:
        try:
            f.call(args, **extra)
        except (ValueError, TypeError):
            pass
        done += 1
    return done


@pytest.mark.skipif(not STATUS.exists(), reason="reads /proc/self/status")
def test_rss_stays_flat_over_100k_calls_including_errors() -> None:
    calls: list[tuple[Any, dict[str, Any], dict[str, Any]]] = []
    for i, f in enumerate(FUNCS):
        for dtype in FLOATS:
            args = full_args(f, np.random.default_rng(i), (8, 16), dtype)
            calls.append((f, args, {}))
            calls.append((f, args, f.none()))
            out = np.empty(f.out_shape(args), dtype=dtype)
            calls.append((f, args, {"out": out, **f.none()}))
            # error paths: a bad dtype, a bad shape, a bad out, a value outside the domain
            first = f.positional[0]
            calls.append((f, {**args, first: np.asarray(args[first]).astype(complex)}, {}))
            calls.append((f, {**args, first: np.asarray(args[first])[:3]}, {}))
            bad_out: dict[str, Any] = {"out": np.empty(3, dtype=dtype), **f.none()}
            calls.append((f, args, bad_out))
            for arg, values in f.domain.items():
                bad = np.array(args[arg], copy=True)
                bad.flat[5] = values[0]
                calls.append((f, {**args, arg: bad}, {}))
    total = 0
    while total < 10_000:  # warm up: caches, the pool, NumPy's allocator
        total += one_round(calls)
    before = rss_kib()
    total = 0
    while total < 100_000:
        total += one_round(calls)
    grown = rss_kib() - before
    assert grown < 4 * 1024, f"RSS grew by {grown} KiB over {total} calls"


@pytest.mark.slow
def test_bce_over_more_than_2_31_elements() -> None:
    """2^31 + 2^20 elements: a float32 input broadcast from one row (zero stride) and a real
    uint8 target of 2.1 GB; the result and the position of a bad label past 2^31 must be
    right (a 32-bit flat index would wrap)."""
    cols = 1 << 20
    rows = (1 << 11) + 1
    rng = np.random.default_rng(0)
    row = rng.uniform(0.01, 0.99, size=cols).astype(np.float32)
    x = np.broadcast_to(row, (rows, cols))
    y = np.empty((rows, cols), dtype=np.uint8)
    for r in range(rows):
        y[r] = (rng.integers(0, 2, size=cols)).astype(np.uint8)
    assert x.size > 2**31
    # Chunked float64 reference, one row at a time.
    log_p = np.log(row.astype(np.float64))
    log_q = np.log1p(-row.astype(np.float64))
    total = 0.0
    for r in range(rows):
        total -= float(np.where(y[r] == 1, log_p, log_q).sum())
    got = crossent.binary_cross_entropy(x, y, reduction="sum")
    assert got == pytest.approx(total, rel=1e-9)
    assert crossent.binary_cross_entropy(x, y) == pytest.approx(total / x.size, rel=1e-9)
    y[rows - 1, 7] = 2
    with pytest.raises(ValueError, match=rf"\({rows - 1}, 7\)"):
        crossent.binary_cross_entropy(x, y)
