"""``crossent bench``: times every crossent function against NumPy, SciPy and PyTorch CPU.

Data are generated (fixed seed). Each library computes the same quantity on the same arrays;
the table reports the median time per call, the throughput in millions of input elements per
second, and each peer's time divided by crossent's (``x3.0`` = crossent is 3 times faster),
all measured in the same run. Every peer's result is also checked against crossent's: a
disagreement is flagged in the table (``!``) and on stderr.

Functions are found by name in the ``crossent`` module, so each one is benchmarked as soon as
it exists.
"""

from __future__ import annotations

import argparse
import importlib
import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from crossent import _peers
from crossent.cli.errors import CliError
from crossent.cli.names import names
from crossent.cli.output import atomic_output, check_output
from crossent.cli.progress import Progress
from crossent.cli.report import Row, fmt_size, machine, plot, skipped_note, table

DESCRIPTION = __doc__.split("\n\n")[0] if __doc__ else ""

#: The peer libraries, each timed where installed, with the formulas of :mod:`crossent._peers`.
PEERS = _peers.LIBRARIES
DEFAULT_SIZES = (10**3, 10**4, 10**5, 10**6, 10**7)
QUICK_SIZES = (10**3, 10**5, 10**6)
DTYPES = ("float32", "float64")

Thunk = _peers.Thunk
Data = tuple[Any, ...]


# --------------------------------------------------------------------------------------------
# The cases: the functions and their data
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One crossent function, timed with its peers' formulas (:mod:`crossent._peers`).

    ``rows``: the function works along the last axis of a (rows, classes) array.
    ``make(rng, shape, dtype)`` returns the arrays.
    """

    name: str
    rows: bool
    make: Callable[[np.random.Generator, tuple[int, ...], np.dtype[Any]], Data]


def _probs(rng: np.random.Generator, shape: tuple[int, ...], dtype: np.dtype[Any]) -> Any:
    return rng.uniform(1e-3, 1 - 1e-3, shape).astype(dtype)


def _labels01(rng: np.random.Generator, shape: tuple[int, ...], dtype: np.dtype[Any]) -> Any:
    return (rng.random(shape) < 0.5).astype(dtype)


def _bce_make(rng: np.random.Generator, shape: tuple[int, ...], dtype: np.dtype[Any]) -> Data:
    return _probs(rng, shape, dtype), _labels01(rng, shape, dtype)


def _logits_make(rng: np.random.Generator, shape: tuple[int, ...], dtype: np.dtype[Any]) -> Data:
    return (rng.standard_normal(shape) * 3).astype(dtype), _labels01(rng, shape, dtype)


def _dist_make(rng: np.random.Generator, shape: tuple[int, ...], dtype: np.dtype[Any]) -> Data:
    # Unnormalised positive weights: every library normalises each row itself.
    return (rng.random(shape) + 1e-3).astype(dtype), (rng.random(shape) + 1e-3).astype(dtype)


def _dist1_make(rng: np.random.Generator, shape: tuple[int, ...], dtype: np.dtype[Any]) -> Data:
    return ((rng.random(shape) + 1e-3).astype(dtype),)


def _softmax_make(rng: np.random.Generator, shape: tuple[int, ...], dtype: np.dtype[Any]) -> Data:
    logits = (rng.standard_normal(shape) * 3).astype(dtype)
    labels = rng.integers(0, shape[-1], shape[:-1], dtype=np.int64)
    return logits, labels


CASES = (
    Case("binary_cross_entropy", False, _bce_make),
    Case("binary_cross_entropy_with_logits", False, _logits_make),
    Case("entropy", True, _dist1_make),
    Case("kl_divergence", True, _dist_make),
    Case("cross_entropy", True, _dist_make),
    Case("jensen_shannon", True, _dist_make),
    Case("softmax_cross_entropy", True, _softmax_make),
)
CASE_NAMES = tuple(c.name for c in CASES)


# --------------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------------


def measure(
    thunks: dict[str, Thunk], *, min_time: float, min_samples: int, max_samples: int
) -> dict[str, float]:
    """Median seconds per call of each thunk.

    Each thunk gets one warm-up call, which also sets how many calls make one sample (about a
    millisecond's worth). Samples are then taken round-robin, one per library per round, so
    that a slow spell of a shared machine hits every library alike; at least ``min_samples``
    rounds, then more until each library has spent ``min_time`` seconds or ``max_samples``
    rounds have run.
    """
    calls: dict[str, int] = {}
    for lib, thunk in thunks.items():
        t0 = time.perf_counter()
        thunk()
        first = time.perf_counter() - t0
        calls[lib] = max(1, int(1e-3 / first)) if first > 0 else 1000
    samples: dict[str, list[float]] = {lib: [] for lib in thunks}
    spent = dict.fromkeys(thunks, 0.0)
    rounds = 0
    while rounds < min_samples or (
        rounds < max_samples and min(spent.values(), default=min_time) < min_time
    ):
        for lib, thunk in thunks.items():
            k = calls[lib]
            t0 = time.perf_counter()
            for _ in range(k):
                thunk()
            dt = time.perf_counter() - t0
            spent[lib] += dt
            samples[lib].append(dt / k)
        rounds += 1
    return {lib: statistics.median(ts) for lib, ts in samples.items()}


def _agree(a: Any, b: Any, dtype: np.dtype[Any]) -> bool:
    """Do two results agree to within the input dtype's accuracy?"""
    rtol = 1e-3 if dtype == np.float32 else 1e-7
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return a.shape == b.shape and bool(np.allclose(a, b, rtol=rtol, atol=rtol * 1e-3))


def _shape(case: Case, n: int, classes: int) -> tuple[int, ...]:
    if not case.rows:
        return (n,)
    c = min(classes, n)
    return (max(1, n // c), c)


def run(
    *,
    functions: list[str],
    sizes: list[int],
    dtypes: list[str],
    peers: list[str],
    classes: int,
    min_time: float,
    min_samples: int,
    max_samples: int,
    progress: Progress | None = None,
    warn: Callable[[str], None] = lambda s: None,
) -> tuple[list[Row], list[str]]:
    """Times every (function, dtype, size); returns the rows and the peers actually used."""
    import crossent

    tables = _peers.installed(["crossent", *peers])  # a peer not installed is left out
    libs = [lib for lib in ("crossent", *peers) if lib in tables]
    cases = [c for c in CASES if c.name in functions and hasattr(crossent, c.name)]
    rng = np.random.default_rng(20261127)
    jobs = [(c, dt, n) for c in cases for dt in dtypes for n in sizes]
    # Progress is weighted by element count, the best guess at time spent.
    total = sum(math.prod(_shape(c, n, classes)) * len(libs) for c, _, n in jobs)
    if progress is not None:
        progress.total = max(float(total), 1.0)
    done = 0.0
    rows: list[Row] = []
    for case, dt, n in jobs:
        dtype = np.dtype(dt)
        shape = _shape(case, n, classes)
        try:
            data = case.make(rng, shape, dtype)
        except MemoryError:
            raise CliError(
                f"not enough memory for the {dt} data of {case.name} at size {n:.3g} "
                f"({fmt_size(shape)} elements): choose smaller --sizes"
            ) from None
        thunks: dict[str, Thunk] = {}
        mismatch: set[str] = set()
        reference: Any = None
        for lib in libs:
            thunk = _peers.prepare(tables[lib], lib, case.name, *data)
            if thunk is None:
                continue
            try:
                result = thunk()
            except MemoryError:
                raise CliError(
                    f"not enough memory for {lib}'s {case.name} on {dt} data at size {n:.3g}: "
                    "choose smaller --sizes, or leave that peer out (--peers)"
                ) from None
            if lib == "crossent":
                reference = result
            elif not _agree(result, reference, dtype):
                mismatch.add(lib)
                warn(
                    f"{case.name} {dt} n={n}: {lib} gives {_short(result)}, "
                    f"crossent {_short(reference)}"
                )
            thunks[lib] = thunk
        if progress is not None:
            progress.update(done, f"{case.name} {dt} {fmt_size(shape)}")
        times = measure(thunks, min_time=min_time, min_samples=min_samples, max_samples=max_samples)
        done += math.prod(shape) * len(libs)
        rows.append(Row(case.name, dt, shape, times, mismatch))
        del data
    if progress is not None:
        progress.update(total, "done")
        progress.close()
    return rows, libs[1:]


def _short(x: Any) -> str:
    a = np.asarray(x)
    return f"{float(a):.9g}" if a.ndim == 0 else f"array{a.shape}[0]={a.flat[0]:.9g}"


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def _parse_count(text: str) -> int:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value) or value < 1 or value != int(value) or value > 1e10:
        raise argparse.ArgumentTypeError(f"not a positive whole number up to 1e10: {text!r}")
    return int(value)


def _list_of(parse: Callable[[str], Any], allowed: tuple[str, ...] | None = None) -> Any:
    def parse_list(text: str) -> list[Any]:
        items = [t.strip() for t in text.split(",") if t.strip()]
        if not items:
            raise argparse.ArgumentTypeError("empty list")
        out = []
        for t in items:
            if allowed is not None and t not in allowed:
                raise argparse.ArgumentTypeError(
                    f"unknown value {t!r} (choose from {', '.join(allowed)})"
                )
            out.append(parse(t))
        return out

    return parse_list


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--sizes",
        type=_list_of(_parse_count),
        metavar="N,N,...",
        help="element counts, e.g. 1e3,1e5,1e7 (default 1e3..1e7; --quick: 1e3,1e5,1e6)",
    )
    p.add_argument(
        "--dtypes",
        type=_list_of(str, DTYPES),
        metavar="DTYPE,...",
        help="float32 and/or float64 (default both)",
    )
    p.add_argument(
        "--functions",
        type=_list_of(names(CASE_NAMES).__getitem__, tuple(names(CASE_NAMES))),
        metavar="NAME,...",
        help="functions to time, by name or alias (bce, bce_logits, kl, js, softmax_ce); "
        "default: every crossent function available",
    )
    p.add_argument(
        "--peers",
        type=_list_of(str, PEERS),
        metavar="LIB,...",
        help="peer libraries among numpy, scipy, torch (default: those installed)",
    )
    p.add_argument(
        "--classes",
        type=_parse_count,
        default=1000,
        metavar="C",
        help="row length for the per-distribution functions: an n-element case is "
        "(n // C) rows of C (default 1000)",
    )
    p.add_argument(
        "--threads", type=_parse_count, metavar="T", help="crossent thread count (default: all)"
    )
    p.add_argument(
        "--min-time",
        type=float,
        default=None,
        metavar="S",
        help="seconds spent timing each library per case (default 0.3; --quick: 0.05)",
    )
    p.add_argument("--quick", action="store_true", help="fewer sizes and samples: a smoke run")
    p.add_argument(
        "--plot",
        metavar="OUT.png",
        help="also draw throughput against size on log axes (needs matplotlib)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(run=main)


def main(args: argparse.Namespace) -> int:
    import crossent

    if args.plot is not None:
        try:
            importlib.import_module("matplotlib")
        except ImportError:
            raise CliError(
                "--plot needs matplotlib, which is not installed (pip install matplotlib)"
            ) from None
        # Checked before the (long) run, not after it.
        check_output("--plot", args.plot, [])
        folder = os.path.dirname(os.path.realpath(args.plot))
        if not os.path.isdir(folder):
            raise CliError(f"--plot {args.plot}: no such directory {folder}")
    if args.min_time is not None and not (0 <= args.min_time <= 600):
        raise CliError(f"--min-time must be between 0 and 600 seconds, got {args.min_time}")
    if args.threads is not None:
        crossent.set_num_threads(args.threads)
    functions = args.functions or list(CASE_NAMES)
    missing = [f for f in functions if not hasattr(crossent, f)]
    if args.functions and missing:
        raise CliError(f"this crossent has no {', '.join(missing)}")
    sizes = args.sizes or list(QUICK_SIZES if args.quick else DEFAULT_SIZES)
    min_time = args.min_time if args.min_time is not None else (0.05 if args.quick else 0.3)

    def warn(msg: str) -> None:
        sys.stderr.write(f"\nwarning: results differ: {msg}\n")

    progress = Progress(1, label="bench", enabled=not args.quiet, delay=0.5)
    rows, peers = run(
        functions=functions,
        sizes=sizes,
        dtypes=args.dtypes or list(DTYPES),
        peers=args.peers or list(PEERS),
        classes=args.classes,
        min_time=min_time,
        min_samples=3 if args.quick else 5,
        max_samples=50 if args.quick else 200,
        progress=progress,
        warn=warn,
    )
    out = sys.stdout
    out.write(f"Machine: {machine()}\n\n")
    out.write(table(rows, peers) + "\n\n")
    out.write(
        "Median time per call; Melem/s = input elements per second; "
        "<peer>/crossent = peer's time over crossent's (>1: crossent faster). "
        "Per-distribution functions: rows x classes, along the last axis.\n"
    )
    note = skipped_note([p for p in (args.peers or list(PEERS)) if p not in peers])
    if note:
        out.write(note + "\n")
    out.flush()
    if args.plot is not None:
        # Drawn under a temporary name beside the destination, renamed over it once complete.
        fmt = os.path.splitext(args.plot)[1][1:].lower() or "png"
        try:
            with atomic_output("--plot", args.plot) as tmp:
                plot(rows, peers, tmp, fmt)
        except OSError as e:
            raise CliError(f"cannot write --plot {args.plot}: {e.strerror or e}") from None
        sys.stderr.write(f"plot written to {args.plot}\n")
    return 0
