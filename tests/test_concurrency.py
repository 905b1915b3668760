"""Threads and processes: concurrent calls give the single-threaded bits, a fork()ed child
(as DataLoader workers are) computes without deadlock, and set_num_threads is safe while
other threads compute."""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from registry import FLOATS, FUNCS, Func, full_args

import crossent

# Large enough to run on the pool (crossent keeps smaller work on the calling thread).
SHAPE = (400, 300)


def workload() -> list[tuple[Func, dict[str, Any], dict[str, Any]]]:
    """(function, arguments, keywords) for every function, dtype and result kind."""
    calls = []
    for i, f in enumerate(FUNCS):
        for dtype in FLOATS:
            args = full_args(f, np.random.default_rng(i), SHAPE, dtype)
            for extra in ({}, f.none()):
                calls.append((f, args, extra))
    return calls


def bits(result: Any) -> bytes:
    return np.asarray(result, dtype=np.float64).tobytes()


def run_concurrently(
    calls: list[tuple[Func, dict[str, Any], dict[str, Any]]],
    expected: list[bytes],
    seconds: float,
    also: Callable[[threading.Event], None] | None = None,
) -> None:
    errors: list[str] = []
    stop = threading.Event()

    def worker(k: int) -> None:
        i = k
        while not stop.is_set():
            f, args, extra = calls[i % len(calls)]
            got = bits(f.call(args, **extra))
            if got != expected[i % len(calls)]:
                errors.append(f"{f.name} {extra} differs")
            i += 3

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    if also is not None:
        threads.append(threading.Thread(target=also, args=(stop,)))
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join(timeout=60)
        assert not t.is_alive(), "a thread hangs"
    assert not errors, errors[:5]


def test_eight_threads_get_the_single_threaded_bits(threads: None) -> None:
    calls = workload()
    crossent.set_num_threads(1)
    expected = [bits(f.call(args, **extra)) for f, args, extra in calls]
    crossent.set_num_threads(2)
    run_concurrently(calls, expected, seconds=2.0)


def test_set_num_threads_while_computing(threads: None) -> None:
    """Calls already running finish on the pool they started with; every result keeps its
    bits whatever the count when it started."""
    calls = workload()
    crossent.set_num_threads(2)
    expected = [bits(f.call(args, **extra)) for f, args, extra in calls]

    def toggle(stop: threading.Event) -> None:
        counts = [1, 2, 3, 7, 2]
        k = 0
        while not stop.is_set():
            crossent.set_num_threads(counts[k % len(counts)])
            k += 1
            time.sleep(0.002)

    run_concurrently(calls, expected, seconds=2.0, also=toggle)


def _forked_result(target: Callable[[Any], None], timeout: float, label: str = "") -> Any:
    """Runs `target(queue)` in a fork()ed child and returns what it put on the queue; fails
    the test if the child hangs or does not exit cleanly."""
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=target, args=(queue,))
    child.start()
    child.join(timeout=timeout)
    if child.is_alive():
        child.kill()
        pytest.fail(f"the forked child hangs{label}")
    assert child.exitcode == 0
    return queue.get(timeout=5)


@contextlib.contextmanager
def _computing_threads(x: np.ndarray, y: np.ndarray) -> Iterator[None]:
    """Three threads calling crossent on `(x, y)` over and over while the block runs."""
    stop = threading.Event()

    def busy() -> None:
        while not stop.is_set():
            crossent.binary_cross_entropy_with_logits(x, y, reduction="none")

    workers = [threading.Thread(target=busy) for _ in range(3)]
    for w in workers:
        w.start()
    try:
        yield
    finally:
        stop.set()
        for w in workers:
            w.join()


def _child(queue: Any) -> None:
    x = np.linspace(-3, 3, 300_000)
    y = (np.arange(300_000) % 2).astype(np.uint8)
    queue.put(
        (
            crossent.binary_cross_entropy_with_logits(x, y),
            float(np.sum(crossent.entropy(np.abs(x).reshape(300, 1000)))),
        )
    )


@pytest.mark.filterwarnings("ignore:.*multi-threaded.*fork:DeprecationWarning")
def test_forked_child_computes_after_the_parent_used_its_pool(threads: None) -> None:
    """Threads do not survive fork(): a child that waited on the parent's pool would hang.
    The child must build its own pool and finish."""
    crossent.set_num_threads(2)
    x = np.linspace(-3, 3, 300_000)
    y = (np.arange(300_000) % 2).astype(np.uint8)
    expected = (
        crossent.binary_cross_entropy_with_logits(x, y),  # the parent's pool now exists
        float(np.sum(crossent.entropy(np.abs(x).reshape(300, 1000)))),
    )
    for _ in range(3):
        assert _forked_result(_child, timeout=60) == expected


@pytest.mark.filterwarnings("ignore:.*multi-threaded.*fork:DeprecationWarning")
def test_fork_while_other_threads_compute(threads: None) -> None:
    """A fork taken while other threads are inside crossent (their pool busy) still gives a
    child that computes."""
    crossent.set_num_threads(2)
    x = np.linspace(-3, 3, 300_000)
    y = (np.arange(300_000) % 2).astype(np.uint8)
    with _computing_threads(x, y):
        for _ in range(3):
            _forked_result(_child, timeout=60)


def _small_child(queue: Any) -> None:
    x = np.linspace(-3, 3, 100_000)
    queue.put(crossent.binary_cross_entropy_with_logits(x, (x > 0).astype(np.uint8)))


@pytest.mark.filterwarnings("ignore:.*multi-threaded.*fork:DeprecationWarning")
def test_fork_while_a_pool_is_being_built(threads: None) -> None:
    """A fork taken while another thread builds crossent's pool (after set_num_threads
    changed its size) gives a child that computes: the lock around the pool is not inherited
    held. Before it was fork-safe, about 1 fork in 130 of this loop left the child hanging."""
    x = np.linspace(-3, 3, 100_000)
    y = (x > 0).astype(np.uint8)
    for i in range(200):
        crossent.set_num_threads(2 + i % 2)  # the next parallel call builds a pool
        with _computing_threads(x, y):
            _forked_result(_small_child, timeout=10, label=f" (fork {i})")


# --- the memory of a running call ----------------------------------------------------------


class _Interface:
    """An object that only hands out an array interface: NumPy wraps it without knowing the
    array it came from."""

    def __init__(self, a: np.ndarray) -> None:
        self.keep = a
        self.__array_interface__ = dict(a.__array_interface__)


def _aliases(o: np.ndarray, path: Path) -> dict[str, np.ndarray]:
    """`o`'s memory (float64, 1-d, mapped from `path`) through every kind of object: views,
    and aliases that NumPy's base-object tracking does not connect to `o`."""
    n = o.size
    return {
        "itself": o,
        "slice": o[n // 2 :],
        "view(dtype)": o.view(np.int64).view(np.float64),
        "reshape": o.reshape(2, -1)[1],
        "frombuffer": np.frombuffer(o.data, dtype=np.float64),
        "memoryview": np.asarray(o.data),
        "bytes, one element on": np.frombuffer(o.data.cast("B")[8:], dtype=np.float64),
        "ctypes": np.ctypeslib.as_array((ctypes.c_double * n).from_address(o.ctypes.data)),
        "__array_interface__": np.asarray(_Interface(o)),
        "another map of its file": np.memmap(path, dtype=np.float64, mode="r+"),
        "a read-only map of its file": np.memmap(path, dtype=np.float64, mode="r"),
    }


class _LongCall:
    """A softmax cross-entropy call over a broadcast row of many classes: reads `row`, writes
    the small `out` (a memory map), and takes about `seconds` (calibrated on this machine)."""

    def __init__(self, path: Path, seconds: float = 1.5) -> None:
        rng = np.random.default_rng(0)
        self.row = rng.standard_normal(1 << 20)
        rows = 16
        start = time.perf_counter()
        self._call(rows, np.empty(rows))
        elapsed = time.perf_counter() - start
        rows = int(min(max(rows * seconds / max(elapsed, 1e-6), 64), 1 << 16)) // 2 * 2
        self.out = np.memmap(path, dtype=np.float64, mode="w+", shape=(rows,))
        self.expected = float(np.log(np.exp(self.row - self.row.max()).sum()) + self.row.max())
        self.expected -= self.row[0]

    def _call(self, rows: int, out: np.ndarray) -> None:
        logits = np.broadcast_to(self.row, (rows, self.row.size))
        crossent.softmax_cross_entropy(
            logits, np.zeros(rows, dtype=np.int64), reduction="none", out=out
        )

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self._call, args=(self.out.size, self.out), daemon=True)
        thread.start()
        time.sleep(0.1)  # well inside the call
        return thread


def _read(a: np.ndarray) -> Any:
    return crossent.entropy(a, axis=None)


def _write(a: np.ndarray) -> Any:
    n = a.size
    return crossent.binary_cross_entropy(np.full(n, 0.5), np.zeros(n), reduction="none", out=a)


def test_out_of_a_running_call_is_not_shared_through_any_alias(
    threads: None, tmp_path: Path
) -> None:
    """While a call writes `out`, another call may neither read nor write any byte of it,
    through whatever object it reaches that memory: the same array, views, `frombuffer`, a
    memoryview, ctypes, an array interface, a second map of its file. Unrelated arrays
    compute meanwhile, and every alias works once the call is over."""
    crossent.set_num_threads(2)
    long = _LongCall(tmp_path / "out.bin")
    aliases = _aliases(long.out, tmp_path / "out.bin")
    thread = long.start()
    try:
        for name, alias in aliases.items():
            with pytest.raises(ValueError, match="running in another thread writes") as info:
                _read(alias)
            assert "'p'" in str(info.value), (name, info.value)
            if alias.flags.writeable:
                with pytest.raises(ValueError, match="running in another thread writes") as info:
                    _write(alias)
                assert "'out'" in str(info.value), (name, info.value)
        free = np.full(100, 0.5)
        assert _read(free) == pytest.approx(np.log(100))
        still_running = thread.is_alive()
    finally:
        thread.join()
    assert still_running, "the long call ended before the checks did"
    np.testing.assert_allclose(long.out, long.expected, rtol=1e-9)
    for name, alias in aliases.items():
        assert np.isfinite(_read(alias)), name
        if alias.flags.writeable:
            _write(alias)


def test_input_of_a_running_call_is_not_written_through_any_alias(
    threads: None, tmp_path: Path
) -> None:
    """While a call reads an array, another call may read it (through any object) but not
    write it as its `out`."""
    crossent.set_num_threads(2)
    long = _LongCall(tmp_path / "out.bin")
    row = long.row
    aliases = {
        "itself": row,
        "frombuffer": np.frombuffer(row.data, dtype=np.float64),
        "memoryview": np.asarray(row.data),
        "ctypes": np.ctypeslib.as_array((ctypes.c_double * row.size).from_address(row.ctypes.data)),
        "__array_interface__": np.asarray(_Interface(row)),
    }
    thread = long.start()
    try:
        for name, alias in aliases.items():
            with pytest.raises(ValueError, match="running in another thread reads") as info:
                _write(alias[1000:2000])
            assert "'out'" in str(info.value), (name, info.value)
            assert crossent.softmax_cross_entropy(alias[None, :8], np.zeros(1, np.int64)) > 0
        still_running = thread.is_alive()
    finally:
        thread.join()
    assert still_running, "the long call ended before the checks did"


def _use_in_child(out: np.ndarray, acc: Any) -> Callable[[Any], None]:
    def child(queue: Any) -> None:
        n = out.size
        written = crossent.binary_cross_entropy(
            np.full(n, 0.5), np.zeros(n), reduction="none", out=out
        )
        before = acc.count
        acc.update(np.full(4, 0.5), np.zeros(4))
        queue.put((float(written.sum()), float(_read(out)), before, acc.count, acc.result()))

    return child


@pytest.mark.filterwarnings("ignore:.*multi-threaded.*fork:DeprecationWarning")
def test_fork_while_a_thread_writes_out_and_updates_an_accumulator(
    threads: None, tmp_path: Path
) -> None:
    """A child forked while one thread writes an array as `out` and another updates an
    accumulator: the threads do not exist in the child, nor do their claims. The child uses
    that array as `out` and as input, and the accumulator (which holds the state from before
    the interrupted update)."""
    crossent.set_num_threads(2)
    long = _LongCall(tmp_path / "out.bin")
    out = np.empty(long.out.size)
    n = 1 << 31
    acc = crossent.BinaryCrossEntropyAccumulator()
    acc.update(np.full(6, 0.5), np.zeros(6))
    updating = threading.Thread(
        target=acc.update,
        args=(np.broadcast_to(np.float64(0.5), (n,)), np.broadcast_to(np.float64(0.0), (n,))),
        daemon=True,
    )
    writing = threading.Thread(target=long._call, args=(out.size, out), daemon=True)
    writing.start()
    updating.start()
    time.sleep(0.1)
    try:
        still_running = writing.is_alive() and updating.is_alive()
        got = _forked_result(_use_in_child(out, acc), timeout=60)
    finally:
        writing.join()
        updating.join()
    assert still_running, "the calls ended before the fork"
    written, entropy, before, after, result = got
    assert written == pytest.approx(out.size * np.log(2))
    assert entropy == pytest.approx(np.log(out.size))
    assert (before, after) == (6, 10)
    assert result == pytest.approx(np.log(2))
    assert acc.count == 6 + n
