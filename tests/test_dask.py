"""crossent.dask: lazy results equal to the in-memory ones, on any scheduler, including a
dask.distributed LocalCluster with worker processes."""

from __future__ import annotations

import doctest
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
import dask  # noqa: E402

import crossent  # noqa: E402
import crossent.dask as cd  # noqa: E402

rng = np.random.default_rng(11)
P = rng.uniform(0.01, 0.99, (600, 23))
Q = rng.uniform(0.01, 0.99, (600, 23))
Y = (rng.random((600, 23)) < P).astype(np.uint8)
X = rng.standard_normal((600, 23)) * 3
W = rng.uniform(0.5, 2, 23)
LABELS = rng.integers(0, 23, 600)
LABELS[::9] = -100
CHUNKINGS = [(600, 23), (100, 23), (128, 7), (37, 5)]


def close(a: Any, b: Any) -> None:
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-12, atol=0)


def stored(a: np.ndarray, chunks: Any) -> Any:
    """A Dask array whose chunks are contiguous, as chunks loaded from storage are (slices of
    an in-memory array would be strided views, and the memory layout of a chunk may change
    the last bit of its sum)."""
    return da.from_array(a, chunks=chunks).map_blocks(np.ascontiguousarray, dtype=a.dtype)


def cases(chunks: tuple[int, int]) -> Iterator[tuple[str, Any, Any]]:
    """(name, lazy result, in-memory result) for every function and reduction."""
    p, q, y, x = (stored(a, chunks) for a in (P, Q, Y, X))
    labels = stored(LABELS, chunks[0])
    for red in ("mean", "sum", "none"):
        yield (
            f"bce {red}",
            cd.binary_cross_entropy(p, y, weight=W, reduction=red),
            crossent.binary_cross_entropy(P, Y, weight=W, reduction=red),
        )
        yield (
            f"bce_logits {red}",
            cd.binary_cross_entropy_with_logits(x, y, pos_weight=W, reduction=red),
            crossent.binary_cross_entropy_with_logits(X, Y, pos_weight=W, reduction=red),
        )
        yield (
            f"softmax labels {red}",
            cd.softmax_cross_entropy(x, labels, weight=W, label_smoothing=0.05, reduction=red),
            crossent.softmax_cross_entropy(
                X, LABELS, weight=W, label_smoothing=0.05, reduction=red
            ),
        )
        yield (
            f"softmax probs {red}",
            cd.softmax_cross_entropy(x, p, axis=0, reduction=red),
            crossent.softmax_cross_entropy(X, P, axis=0, reduction=red),
        )
    for name in ("entropy", "cross_entropy", "kl_divergence", "jensen_shannon"):
        lazy = (p,) if name == "entropy" else (p, q)
        eager = (P,) if name == "entropy" else (P, Q)
        for axis in (0, -1, None):
            for base in (None, 2.0):
                yield (
                    f"{name} axis={axis} base={base}",
                    getattr(cd, name)(*lazy, axis=axis, base=base),
                    getattr(crossent, name)(*eager, axis=axis, base=base),
                )
        yield (
            f"{name} unnormalised",
            getattr(cd, name)(*lazy, axis=None, normalize=False),
            getattr(crossent, name)(*eager, axis=None, normalize=False),
        )


@pytest.mark.parametrize("chunks", CHUNKINGS)
def test_equals_in_memory(chunks: tuple[int, int]) -> None:
    for name, lazy, eager in cases(chunks):
        assert isinstance(lazy, da.Array), name
        got = lazy.compute(scheduler="threads")
        assert np.shape(got) == np.shape(eager), name
        try:
            close(got, eager)
        except AssertionError as e:
            raise AssertionError(name) from e


def test_same_bits_on_every_local_scheduler() -> None:
    names, lazies, _ = zip(*cases((128, 7)), strict=True)
    # One compute per scheduler: the process pool starts once.
    results = [dask.compute(*lazies, scheduler=s) for s in ("sync", "threads", "processes")]
    for other in results[1:]:
        for name, r, r0 in zip(names, other, results[0], strict=True):
            assert np.array_equal(r, r0, equal_nan=True), name


def test_single_chunk_is_the_in_memory_call() -> None:
    # One chunk: one accumulator update over the whole array, the bits of one call.
    p, y = da.from_array(P, chunks=P.shape), da.from_array(Y, chunks=Y.shape)
    assert cd.binary_cross_entropy(p, y).compute() == crossent.binary_cross_entropy(P, Y)


def test_single_chunk_softmax_and_divergences_are_the_in_memory_call() -> None:
    # One chunk: one accumulator update, finished as one call finishes.
    x, labels = da.from_array(X, chunks=X.shape), da.from_array(LABELS, chunks=LABELS.shape)
    got = cd.softmax_cross_entropy(x, labels, weight=W, label_smoothing=0.1).compute()
    assert got == crossent.softmax_cross_entropy(X, LABELS, weight=W, label_smoothing=0.1)
    p, q = da.from_array(P, chunks=P.shape), da.from_array(Q, chunks=Q.shape)
    assert cd.entropy(p, axis=None, base=2).compute() == crossent.entropy(P, axis=None, base=2)
    for name in ("cross_entropy", "kl_divergence"):
        got = getattr(cd, name)(p, q, axis=None).compute()
        assert got == getattr(crossent, name)(P, Q, axis=None), name
    got = cd.jensen_shannon(p, q, axis=None, normalize=False).compute()
    assert got == crossent.jensen_shannon(P, Q, axis=None, normalize=False)


def test_parameters_are_checked_when_the_graph_is_built() -> None:
    x, p = da.from_array(X, chunks=100), da.from_array(P, chunks=100)
    with pytest.raises(ValueError, match="'label_smoothing'"):
        cd.softmax_cross_entropy(x, LABELS, label_smoothing=1.5)
    with pytest.raises(ValueError, match="'base'"):
        cd.entropy(p, axis=None, base=-2.0)
    with pytest.raises(ValueError, match="'base'"):
        cd.jensen_shannon(p, p, axis=None, base=1.0)
    with pytest.raises(ValueError, match="'reduction'"):
        cd.binary_cross_entropy_with_logits(x, Y, reduction="avg")


def test_scalar_and_one_row_inputs() -> None:
    assert cd.binary_cross_entropy(da.asarray(0.25), da.asarray(1.0)).compute() == pytest.approx(
        -np.log(0.25), rel=1e-15
    )
    logits = da.from_array(X[0], chunks=5)
    got = cd.softmax_cross_entropy(logits, np.int64(3)).compute()
    assert got == pytest.approx(crossent.softmax_cross_entropy(X[0], np.int64(3)), rel=1e-14)


def test_bad_input() -> None:
    p = da.from_array(P, chunks=100)
    with pytest.raises(ValueError, match="'target'"):
        cd.binary_cross_entropy(p, Y[:10])
    with pytest.raises(ValueError, match="'weight'"):
        cd.binary_cross_entropy(p, Y, weight=np.ones(5))
    with pytest.raises(ValueError, match="'reduction'"):
        cd.binary_cross_entropy(p, Y, reduction="median")
    with pytest.raises(ValueError, match="'axis'"):
        cd.softmax_cross_entropy(p, LABELS, axis=2)
    with pytest.raises(ValueError, match="'target'"):
        cd.softmax_cross_entropy(p, LABELS[:5])
    bad = P.copy()
    bad[450, 3] = 1.5
    lazy = cd.binary_cross_entropy(da.from_array(bad, chunks=100), Y)  # lazy: no error yet
    with pytest.raises(ValueError, match="'input'"):
        lazy.compute()


def test_docstring_examples() -> None:
    results = doctest.testmod(cd, optionflags=doctest.ELLIPSIS)
    assert results.failed == 0 and results.attempted > 10


@pytest.fixture(scope="module")
def cluster_client() -> Iterator[Any]:
    distributed = pytest.importorskip("distributed")
    with (
        dask.config.set({"distributed.worker.daemon": False}),
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client


def test_local_cluster_with_worker_processes(cluster_client: Any) -> None:
    pids = set(cluster_client.run(lambda: __import__("os").getpid()).values())
    assert len(pids) == 2 and all(pid != __import__("os").getpid() for pid in pids)
    names, lazies, eagers = zip(*cases((128, 7)), strict=True)
    got = cluster_client.gather(cluster_client.compute(list(lazies)))
    local = dask.compute(*lazies, scheduler="threads")
    for name, g, eager, loc in zip(names, got, eagers, local, strict=True):
        try:
            close(g, eager)
        except AssertionError as e:
            raise AssertionError(name) from e
        # The same bits as the local threaded scheduler: merges run in chunk order.
        assert np.array_equal(g, loc), name
