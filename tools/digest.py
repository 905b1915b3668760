"""Digest of every public function's output over a fixed grid of shapes, dtypes and layouts.

A refactor or a speed change that must not move a single bit is checked by writing the digest
before and comparing after::

    python tools/digest.py --write before.json     # on the old build
    python tools/digest.py --compare before.json   # on the new build: lists each case that moved

Each case hashes the exact bytes of the result (scalars as float64), for one and for two threads.
The inputs are seeded, so the grid is the same on every run and every machine.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any, Literal

import numpy as np

import crossent as ce

Case = tuple[str, Callable[[], Any]]
_GRAD_REDUCTIONS: tuple[Literal["mean", "sum"], ...] = ("mean", "sum")


def _bytes(result: Any) -> bytes:
    if isinstance(result, tuple):
        return b"".join(_bytes(r) for r in result)
    return np.ascontiguousarray(np.asarray(result, dtype=None)).tobytes()


def _prob(rng: np.random.Generator, shape: tuple[int, ...], dtype: str) -> np.ndarray:
    return rng.uniform(0.0, 1.0, shape).astype(dtype)


def _layouts(a: np.ndarray) -> Iterator[tuple[str, np.ndarray]]:
    yield "c", a
    if a.ndim >= 2:
        yield "f", np.asfortranarray(a)
    yield "step2", np.repeat(a, 2, axis=-1)[..., ::2]


def _binary_cases() -> Iterator[Case]:
    for dtype in ("float32", "float64"):
        for n in (1, 7, 1000, 70_001):
            rng = np.random.default_rng(n)
            p = _prob(rng, (n,), dtype)
            y = (rng.uniform(size=n) < 0.5).astype(dtype)
            x = rng.normal(0.0, 4.0, n).astype(dtype)
            w = rng.uniform(0.0, 2.0, n).astype(dtype)
            for red in ("mean", "sum", "none"):
                key = f"{dtype}/n={n}/{red}"
                yield (
                    f"bce/{key}",
                    partial(ce.binary_cross_entropy, p, y, reduction=red),
                )
                yield (
                    f"bce_w/{key}",
                    partial(ce.binary_cross_entropy, p, y, weight=w, reduction=red),
                )
                yield (
                    f"logits/{key}",
                    partial(ce.binary_cross_entropy_with_logits, x, y, reduction=red),
                )
                yield (
                    f"logits_pw/{key}",
                    partial(
                        ce.binary_cross_entropy_with_logits,
                        x,
                        y,
                        weight=w,
                        pos_weight=np.asarray([1.5], dtype=x.dtype),
                        reduction=red,
                    ),
                )
            for red in _GRAD_REDUCTIONS:
                yield (
                    f"logits_grad/{dtype}/n={n}/{red}",
                    partial(
                        ce.binary_cross_entropy_with_logits_grad, x, y, weight=w, reduction=red
                    ),
                )
        rng = np.random.default_rng(5)
        m = _prob(rng, (300, 40), dtype)
        t = (rng.uniform(size=(300, 40)) < 0.3).astype(np.uint8)
        for name, view in _layouts(m):
            yield f"bce_layout/{dtype}/{name}", partial(ce.binary_cross_entropy, view, t)
            yield (
                f"bce_bcast/{dtype}/{name}",
                partial(ce.binary_cross_entropy, view, t, weight=view[:1], reduction="none"),
            )


def _entropy(p: np.ndarray, q: np.ndarray, **kwargs: Any) -> Any:
    return ce.entropy(p, **kwargs)


def _row_cases() -> Iterator[Case]:
    functions: dict[str, Callable[..., Any]] = {
        "entropy": _entropy,
        "cross_entropy": ce.cross_entropy,
        "kl": ce.kl_divergence,
        "js": ce.jensen_shannon,
    }
    for dtype in ("float32", "float64"):
        for shape in ((1, 1), (3, 10), (100, 10), (50, 1000), (2, 70_000), (7, 3, 33)):
            rng = np.random.default_rng(sum(shape))
            p = _prob(rng, shape, dtype)
            q = _prob(rng, shape, dtype)
            for name, f in functions.items():
                for axis in (-1, 0, None):
                    for norm in (True, False):
                        for lname, pv in _layouts(p):
                            key = f"{name}/{dtype}/{shape}/axis={axis}/norm={norm}/{lname}"
                            yield (
                                key,
                                partial(f, pv, q, axis=axis, normalize=norm),
                            )
                yield (
                    f"{name}/{dtype}/{shape}/base2/bcast",
                    partial(f, p, q[..., :1, :] if q.ndim > 1 else q, base=2.0),
                )


def _softmax_cases() -> Iterator[Case]:
    for dtype in ("float32", "float64"):
        for rows, k in ((1, 2), (5, 10), (300, 10), (40, 1000), (2, 70_000)):
            rng = np.random.default_rng(rows * k)
            x = rng.normal(0.0, 3.0, (rows, k)).astype(dtype)
            y = rng.integers(0, k, rows)
            y[::7] = -100
            soft = _prob(rng, (rows, k), dtype)
            cw = rng.uniform(0.5, 2.0, k).astype(dtype)
            for lname, xv in _layouts(x):
                for red in ("mean", "sum", "none"):
                    key = f"{dtype}/{rows}x{k}/{lname}/{red}"
                    yield (
                        f"softmax/{key}",
                        partial(ce.softmax_cross_entropy, xv, y, reduction=red),
                    )
                    yield (
                        f"softmax_w_ls/{key}",
                        partial(
                            ce.softmax_cross_entropy,
                            xv,
                            y,
                            weight=cw,
                            label_smoothing=0.1,
                            reduction=red,
                        ),
                    )
                    yield (
                        f"softmax_soft/{key}",
                        partial(ce.softmax_cross_entropy, xv, soft, reduction=red),
                    )
                for red in _GRAD_REDUCTIONS:
                    yield (
                        f"softmax_grad/{dtype}/{rows}x{k}/{lname}/{red}",
                        partial(
                            ce.softmax_cross_entropy_grad,
                            xv,
                            y,
                            weight=cw,
                            label_smoothing=0.05,
                            reduction=red,
                        ),
                    )
            yield (
                f"softmax_axis0/{dtype}/{rows}x{k}",
                partial(ce.softmax_cross_entropy, x.T, soft.T, axis=0, reduction="none"),
            )


def _accumulator_cases() -> Iterator[Case]:
    rng = np.random.default_rng(11)
    p = _prob(rng, (900, 12), "float32")
    q = _prob(rng, (900, 12), "float32")
    y = (rng.uniform(size=(900, 12)) < 0.5).astype(np.float32)
    x = rng.normal(0.0, 3.0, (900, 12)).astype(np.float32)
    labels = rng.integers(0, 12, 900)

    def batches(acc: Any, *arrays: np.ndarray) -> float:
        for lo in range(0, 900, 250):
            acc.update(*(a[lo : lo + 250] for a in arrays))
        return float(acc.result())

    yield "acc/bce", lambda: batches(ce.BinaryCrossEntropyAccumulator(), p, y)
    yield "acc/logits", lambda: batches(ce.BinaryCrossEntropyWithLogitsAccumulator(), x, y)
    yield "acc/softmax", lambda: batches(ce.SoftmaxCrossEntropyAccumulator(), x, labels)
    yield "acc/entropy", lambda: batches(ce.EntropyAccumulator(), p)
    yield "acc/cross_entropy", lambda: batches(ce.CrossEntropyAccumulator(), p, q)
    yield "acc/kl", lambda: batches(ce.KLDivergenceAccumulator(), p, q)
    yield "acc/js", lambda: batches(ce.JensenShannonAccumulator(normalize=False), p, q)


def digest() -> dict[str, str]:
    out: dict[str, str] = {}
    before = ce.get_num_threads()
    try:
        for threads in (1, 2):
            ce.set_num_threads(threads)
            for group in (_binary_cases, _row_cases, _softmax_cases, _accumulator_cases):
                for key, call in group():
                    out[f"{key}/t={threads}"] = hashlib.sha256(_bytes(call())).hexdigest()[:16]
    finally:
        ce.set_num_threads(before)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--write", metavar="JSON", help="write the digest of this build")
    group.add_argument("--compare", metavar="JSON", help="compare this build with a written digest")
    args = parser.parse_args(argv)
    now = digest()
    if args.write:
        with open(args.write, "w") as f:
            json.dump(now, f, indent=0, sort_keys=True)
        print(f"{len(now)} cases written")
        return 0
    with open(args.compare) as f:
        then = json.load(f)
    moved = sorted(k for k in then.keys() & now.keys() if then[k] != now[k])
    missing = sorted(then.keys() - now.keys())
    for key in moved:
        print(f"moved: {key}")
    for key in missing:
        print(f"missing: {key}")
    print(f"{len(now)} cases, {len(moved)} moved, {len(missing)} missing")
    return 1 if moved or missing else 0


if __name__ == "__main__":
    sys.exit(main())
