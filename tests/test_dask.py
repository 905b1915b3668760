"""crossent.dask: lazy results equal to the in-memory ones, on any scheduler, including a
dask.distributed LocalCluster with worker processes."""

from __future__ import annotations

import doctest
import re
from collections.abc import Callable, Iterator
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


# --------------------------------------------------------------------------------------------
# Arguments of every shape, as in memory
# --------------------------------------------------------------------------------------------

S = (12, 6)
_r = np.random.default_rng(29)
SP = _r.uniform(0.05, 0.95, S)
SY = (_r.random(S) < 0.5).astype(np.float64)
SX = _r.standard_normal(S)
SQ = _r.uniform(0.05, 0.95, S)
# Shapes a broadcast operand of S may have, and some it may not.
SHAPES = [(), (1,), (6,), (1, 1), (1, 6), (12, 1), (12, 6), (12,), (2, 6), (1, 12, 6), (5,)]


def _value(shape: tuple[int, ...]) -> np.ndarray:
    return np.random.default_rng(len(shape) * 31 + sum(shape)).uniform(0.5, 2.0, shape)


def _as_dask(a: Any, chunks: Any) -> Any:
    return da.from_array(a, chunks=chunks) if isinstance(a, np.ndarray) and a.ndim else a


def _shape_cases() -> Iterator[tuple[str, Any, Any]]:
    """(name, in-memory call, Dask call) for scalars and broadcast operands of every shape."""
    for red in ("mean", "sum", "none"):
        for scalar in (0.25, np.float64(0.25), np.array(0.25)):
            for kind in ("python", "dask"):

                def wrap(v: Any, kind: str = kind) -> Any:
                    return da.asarray(v) if kind == "dask" else v

                yield (
                    f"bce {type(scalar).__name__} {kind} {red}",
                    lambda s=scalar, r=red: crossent.binary_cross_entropy(s, 1.0, reduction=r),
                    lambda s=scalar, r=red, w=wrap: cd.binary_cross_entropy(
                        w(s), w(1.0), reduction=r
                    ),
                )
                yield (
                    f"bce_logits {type(scalar).__name__} {kind} {red}",
                    lambda s=scalar, r=red: crossent.binary_cross_entropy_with_logits(
                        s, 0, weight=2.0, pos_weight=3.0, reduction=r
                    ),
                    lambda s=scalar, r=red, w=wrap: cd.binary_cross_entropy_with_logits(
                        w(s), w(0), weight=w(2.0), pos_weight=3.0, reduction=r
                    ),
                )
        for shape in SHAPES:
            v = _value(shape)
            yield (
                f"bce weight {shape} {red}",
                lambda v=v, r=red: crossent.binary_cross_entropy(SP, SY, weight=v, reduction=r),
                lambda v=v, r=red: cd.binary_cross_entropy(
                    da.from_array(SP, chunks=(5, 4)), SY, weight=_as_dask(v, 1), reduction=r
                ),
            )
            yield (
                f"bce_logits pos_weight {shape} {red}",
                lambda v=v, r=red: crossent.binary_cross_entropy_with_logits(
                    SX, SY, pos_weight=v, reduction=r
                ),
                lambda v=v, r=red: cd.binary_cross_entropy_with_logits(
                    da.from_array(SX, chunks=(5, 4)), SY, pos_weight=v, reduction=r
                ),
            )
    for name in ("cross_entropy", "kl_divergence", "jensen_shannon"):
        for shape in SHAPES:
            q = _value(shape)
            for axis in (0, -1, None):
                yield (
                    f"{name} q {shape} axis={axis}",
                    lambda n=name, q=q, a=axis: getattr(crossent, n)(SP, q, axis=a),
                    lambda n=name, q=q, a=axis: getattr(cd, n)(
                        da.from_array(SP, chunks=(5, 4)), _as_dask(q, 1), axis=a
                    ),
                )


SHAPE_CASES = list(_shape_cases())


@pytest.mark.parametrize("case", range(len(SHAPE_CASES)), ids=[c[0] for c in SHAPE_CASES])
def test_argument_shapes_match_in_memory(case: int) -> None:
    _, eager, lazy = SHAPE_CASES[case]
    try:
        want = eager()
    except (ValueError, TypeError) as e:
        # Refused in memory: refused when the graph is built, with the same kind of error.
        with pytest.raises(type(e)):
            lazy()
        return
    got = lazy()  # builds the graph
    assert isinstance(got, da.Array)
    value = got.compute(scheduler="sync")
    assert np.shape(value) == np.shape(want)
    close(value, want)


def test_unknown_chunk_sizes_are_refused_when_the_graph_is_built() -> None:
    def unknown(a: np.ndarray) -> Any:
        """``a``'s first column where P's is above 0.5: chunks of unknown size."""
        keep = da.from_array(P[:, 0], chunks=100) > 0.5
        return da.from_array(a[:, 0], chunks=100)[keep]

    def known(a: np.ndarray) -> Any:
        return unknown(a).compute_chunk_sizes()

    assert any(np.isnan(c) for c in unknown(P).chunks[0])
    assert not any(np.isnan(c) for c in known(P).chunks[0])
    calls: dict[str, Callable[[], Any]] = {
        "input": lambda: cd.binary_cross_entropy(unknown(P), known(Y)),
        "target": lambda: cd.binary_cross_entropy_with_logits(known(X), unknown(Y)),
        "weight": lambda: cd.binary_cross_entropy(known(P), known(Y), weight=unknown(Q)),
        "logits": lambda: cd.softmax_cross_entropy(unknown(X), np.int64(0)),
        "p": lambda: cd.entropy(unknown(P), axis=None),
        "q": lambda: cd.jensen_shannon(known(P), unknown(Q), axis=None),
    }
    for name, call in calls.items():
        with pytest.raises(ValueError, match=f"'{name}' has chunks of unknown size.*compute_chunk"):
            call()
    # With the sizes computed, the result is the in-memory one.
    pk, qk = known(P), known(Q)
    close(
        cd.jensen_shannon(pk, qk, axis=None).compute(),
        crossent.jensen_shannon(pk.compute(), qk.compute(), axis=None),
    )


# --------------------------------------------------------------------------------------------
# Errors name the position in the whole array, as in memory
# --------------------------------------------------------------------------------------------

_INDEX = re.compile(r"^'(\w+)'.*at index (\([\d, ]*\))$")


def _where(e: BaseException) -> tuple[str, str]:
    m = _INDEX.match(str(e))
    assert m, str(e)
    return m.group(1), m.group(2)


def _position_cases() -> Iterator[tuple[str, Any, Any, str]]:
    """(name, in-memory call, Dask call, the bad value as given) with a bad value in a later
    chunk than the first along both axes."""
    chunks = (128, 7)
    at = (450, 17)
    bad_p, bad_y, bad_soft = P.copy(), Y.copy(), P.copy()
    bad_p[at], bad_y[at], bad_soft[at] = 1.5, 2, -0.5
    bad_labels = LABELS.copy()
    bad_labels[at[0]] = 23

    def d(a: np.ndarray) -> Any:
        return stored(a, chunks if a.ndim == 2 else chunks[0])

    for red in ("mean", "sum", "none"):
        yield (
            f"bce input {red}",
            lambda r=red: crossent.binary_cross_entropy(bad_p, Y, reduction=r),
            lambda r=red: cd.binary_cross_entropy(d(bad_p), d(Y), reduction=r),
            "1.5",
        )
        yield (
            f"bce target {red}",
            lambda r=red: crossent.binary_cross_entropy(P, bad_y, weight=W, reduction=r),
            lambda r=red: cd.binary_cross_entropy(d(P), d(bad_y), weight=W, reduction=r),
            "2",
        )
        yield (
            f"bce_logits target {red}",
            lambda r=red: crossent.binary_cross_entropy_with_logits(
                X, bad_y, pos_weight=W, reduction=r
            ),
            lambda r=red: cd.binary_cross_entropy_with_logits(
                d(X), d(bad_y), pos_weight=W, reduction=r
            ),
            "2",
        )
        for ax, labels in ((-1, bad_labels), (0, bad_labels[:23])):
            xs = X if ax == -1 else X[:, :23]
            yield (
                f"softmax labels axis={ax} {red}",
                lambda r=red, a=ax, x=xs, t=labels: crossent.softmax_cross_entropy(
                    x, t, axis=a, reduction=r
                ),
                lambda r=red, a=ax, x=xs, t=labels: cd.softmax_cross_entropy(
                    stored(x, chunks), stored(t, 5), axis=a, reduction=r
                ),
                "23",
            )
        for ax in (0, -1):
            yield (
                f"softmax probabilities axis={ax} {red}",
                lambda r=red, a=ax: crossent.softmax_cross_entropy(
                    X, bad_soft, axis=a, reduction=r
                ),
                lambda r=red, a=ax: cd.softmax_cross_entropy(
                    d(X), d(bad_soft), axis=a, reduction=r
                ),
                "-0.5",
            )
    for name in ("entropy", "cross_entropy", "kl_divergence", "jensen_shannon"):
        axis: int | None
        for axis in (0, -1, None):
            for normalize in (True, False):
                for which in ("p", "q")[: 1 if name == "entropy" else 2]:
                    p, q = (bad_soft, Q) if which == "p" else (P, bad_soft)
                    eager = (p,) if name == "entropy" else (p, q)
                    yield (
                        f"{name} {which} axis={axis} normalize={normalize}",
                        lambda n=name, e=eager, a=axis, z=normalize: getattr(crossent, n)(
                            *e, axis=a, normalize=z
                        ),
                        lambda n=name, e=eager, a=axis, z=normalize: getattr(cd, n)(
                            *(d(v) for v in e), axis=a, normalize=z
                        ),
                        "-0.5",
                    )


POSITION_CASES = list(_position_cases())


@pytest.mark.parametrize("case", range(len(POSITION_CASES)), ids=[c[0] for c in POSITION_CASES])
def test_errors_give_the_position_in_the_whole_array(case: int) -> None:
    _, eager, lazy, value = POSITION_CASES[case]
    try:
        want = eager()
    except ValueError as e:
        expected = _where(e)
        assert isinstance(e, crossent.DomainError)
        attributes = (e.argument, e.index, e.value)
    else:
        # Accepted in memory: accepted here too, with the same result.
        close(lazy().compute(scheduler="sync"), want)
        return
    graph = lazy()  # the values are only read when computed
    with pytest.raises(crossent.DomainError) as caught:
        graph.compute(scheduler="sync")
    assert _where(caught.value) == expected
    assert f"found {value} " in str(caught.value)  # the value as given, not as normalised
    got = caught.value
    assert (got.argument, got.index, got.value) == attributes


@pytest.mark.parametrize("arg", ["p", "q"])
def test_normalised_jensen_shannon_refuses_an_all_negative_distribution(arg: str) -> None:
    """The whole-array normalised Jensen-Shannon normalises in the graph: values that are all
    negative have a negative total, and dividing by it made them positive, so nothing was
    refused. The user's own values are checked, as in memory."""
    good = np.full(12, 0.5)
    p, q = (-good, good) if arg == "p" else (good, -good)
    with pytest.raises(ValueError, match=f"'{arg}'"):
        crossent.jensen_shannon(p, q, axis=None)
    expr = cd.jensen_shannon(da.from_array(p, chunks=5), da.from_array(q, chunks=5), axis=None)
    with pytest.raises(ValueError, match=rf"'{arg}' must hold non-negative values; found -0\.5"):
        expr.compute(scheduler="sync")


@pytest.mark.parametrize("name", ["entropy", "cross_entropy", "kl_divergence", "jensen_shannon"])
@pytest.mark.parametrize("axis", [0, 1, -1, None])
def test_divergences_keepdims(name: str, axis: int | None) -> None:
    p = rng.uniform(0.01, 0.99, (6, 8, 5))
    q = rng.uniform(0.01, 0.99, (8, 5))  # broadcast against p
    args = (p,) if name == "entropy" else (p, q)
    lazy = getattr(cd, name)(*(da.from_array(a, chunks=3) for a in args), axis=axis, keepdims=True)
    want = getattr(crossent, name)(*args, axis=axis, keepdims=True)
    assert lazy.shape == want.shape
    got = lazy.compute()
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)
    with pytest.raises(TypeError, match="'keepdims' must be True or False"):
        getattr(cd, name)(*args, axis=axis, keepdims=1)


@pytest.mark.parametrize("axis", [0, -1])
def test_softmax_keepdims(axis: int) -> None:
    x = X[:60, :7]
    y = LABELS[:60] % 7 if axis == -1 else LABELS[:7] % 60
    lazy = cd.softmax_cross_entropy(
        da.from_array(x, chunks=(16, 7)), y, axis=axis, reduction="none", keepdims=True
    )
    want = crossent.softmax_cross_entropy(x, y, axis=axis, reduction="none", keepdims=True)
    assert lazy.shape == want.shape
    np.testing.assert_allclose(lazy.compute(), want, rtol=1e-12)
    with pytest.raises(ValueError, match="'keepdims' is only used with reduction='none'"):
        cd.softmax_cross_entropy(x, y, axis=axis, keepdims=True)
