"""Threads and processes: concurrent calls give the single-threaded bits, a fork()ed child
(as DataLoader workers are) computes without deadlock, and set_num_threads is safe while
other threads compute."""

from __future__ import annotations

import contextlib
import multiprocessing
import threading
import time
from collections.abc import Callable, Iterator
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
