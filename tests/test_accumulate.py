"""Streaming accumulators: same bits as one call when batches are cut at block boundaries,
1e-12 relative otherwise; merge, reset, pickling, bad input."""

from __future__ import annotations

import copy
import itertools
import math
import pickle
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import reference as ref
import scipy.spatial.distance
import scipy.special
import scipy.stats
from hypothesis import given, settings
from hypothesis import strategies as st

import crossent
from crossent import (
    BLOCK,
    CHUNK,
    BinaryCrossEntropyAccumulator,
    BinaryCrossEntropyWithLogitsAccumulator,
    CrossEntropyAccumulator,
    EntropyAccumulator,
    JensenShannonAccumulator,
    KLDivergenceAccumulator,
    SoftmaxCrossEntropyAccumulator,
)

ACCUMULATORS: list[tuple[type[Any], Any]] = [
    (BinaryCrossEntropyAccumulator, crossent.binary_cross_entropy),
    (BinaryCrossEntropyWithLogitsAccumulator, crossent.binary_cross_entropy_with_logits),
]


def data(n: int, dtype: Any, logits: bool, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    if logits:
        x = (rng.standard_normal(n) * 4).astype(dtype)
    else:
        x = rng.uniform(0, 1, n).astype(dtype)
    y = rng.uniform(0, 1, n).astype(dtype)  # soft targets: no fast path hides anything
    return x, y


def reference(x: np.ndarray, y: np.ndarray, logits: bool, w: Any = 1.0) -> np.ndarray:
    """Per-element torch formulas in float64, written independently of the library."""
    x, y = x.astype(np.float64), y.astype(np.float64)
    if logits:
        return np.asarray(w * (np.maximum(x, 0) - x * y + np.log1p(np.exp(-np.abs(x)))))
    lp = np.maximum(np.log(x), -100)
    lq = np.maximum(np.log1p(-x), -100)
    return np.asarray(-w * (y * lp + (1 - y) * lq))


@pytest.mark.parametrize(("cls", "fn"), ACCUMULATORS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_block_aligned_batches_give_identical_bits(
    cls: type[Any], fn: Any, dtype: Any, threads: int
) -> None:
    logits = cls is BinaryCrossEntropyWithLogitsAccumulator
    n = 7 * BLOCK + 123
    x, y = data(n, dtype, logits)
    w = np.linspace(0.5, 2, n).astype(dtype)
    before = crossent.get_num_threads()
    try:
        crossent.set_num_threads(threads)
        whole = fn(x, y, weight=w)
        whole_sum = fn(x, y, weight=w, reduction="sum")
        acc = cls()
        acc_sum = cls(reduction="sum")
        # Irregular batch sizes, each a whole number of blocks (the last takes the rest).
        cuts = [0, BLOCK, BLOCK, 4 * BLOCK, 6 * BLOCK, n]
        for a, b in itertools.pairwise(cuts):
            acc.update(x[a:b], y[a:b], weight=w[a:b])
            acc_sum.update(x[a:b], y[a:b], weight=w[a:b])
    finally:
        crossent.set_num_threads(before)
    assert acc.count == n
    assert acc.result() == whole  # the very same bits
    assert acc_sum.result() == whole_sum
    assert acc.sum == whole_sum
    exact = reference(x, y, logits, w.astype(np.float64)).mean()
    assert acc.result() == pytest.approx(exact, rel=1e-5 if dtype == np.float32 else 1e-12)


def test_two_dimensional_batches_of_rows() -> None:
    # Rows of 512: 64 rows make one block; batches of 128 rows are block-aligned.
    x, y = data(512 * 1000, np.float64, logits=True, seed=3)
    x, y = x.reshape(1000, 512), y.reshape(1000, 512)
    pw = np.linspace(0.5, 3, 512)
    acc = BinaryCrossEntropyWithLogitsAccumulator(pos_weight=pw)
    for r in range(0, 1000, 128):
        acc.update(x[r : r + 128], y[r : r + 128])
    assert acc.result() == crossent.binary_cross_entropy_with_logits(x, y, pos_weight=pw)


@settings(max_examples=40, deadline=None)
@given(
    cuts=st.lists(st.integers(0, 3 * BLOCK + 999), max_size=6),
    logits=st.booleans(),
    dtype=st.sampled_from([np.float32, np.float64]),
    hard=st.booleans(),
)
def test_any_cut_agrees_to_1e_12(cuts: list[int], logits: bool, dtype: Any, hard: bool) -> None:
    n = 3 * BLOCK + 1000
    x, y = data(n, dtype, logits, seed=len(cuts))
    if hard:
        y = (y > 0.5).astype(np.int8)
    cls, fn = ACCUMULATORS[logits]
    acc = cls()
    edges = [0, *sorted(cuts), n]
    for a, b in itertools.pairwise(edges):
        acc.update(x[a:b], y[a:b])
    whole = fn(x, y)
    assert acc.count == n
    assert abs(acc.result() - whole) <= 1e-12 * abs(whole)


@pytest.mark.parametrize(("cls", "fn"), ACCUMULATORS)
def test_merge_reset_and_empty(cls: type[Any], fn: Any) -> None:
    logits = cls is BinaryCrossEntropyWithLogitsAccumulator
    x, y = data(10_000, np.float64, logits)
    a, b = cls(), cls()
    a.update(x[:3000], y[:3000])
    b.update(x[3000:], y[3000:])
    a.merge(b)
    assert a.count == 10_000 and b.count == 7000
    assert a.result() == pytest.approx(fn(x, y), rel=1e-12)
    assert b.result() == pytest.approx(fn(x[3000:], y[3000:]), rel=1e-15)
    # Merging with itself counts its elements twice: the mean stays, the sum doubles.
    s = a.sum
    a.merge(a)
    assert (a.count, a.sum) == (20_000, 2 * s)
    a.reset()
    assert a.count == 0 and a.sum == 0.0
    assert np.isnan(a.result())
    assert np.isnan(fn(x[:0], y[:0]))  # the same convention as an empty array
    assert cls(reduction="sum").result() == 0.0
    a.update(x[:0], y[:0])
    assert a.count == 0


@pytest.mark.parametrize(("cls", "fn"), ACCUMULATORS)
def test_pickle_and_copy_are_exact(cls: type[Any], fn: Any) -> None:
    logits = cls is BinaryCrossEntropyWithLogitsAccumulator
    x, y = data(5 * BLOCK, np.float32, logits)
    kwargs: dict[str, Any] = {"reduction": "sum"}
    if logits:
        kwargs["pos_weight"] = [1.5]
    acc = cls(**kwargs)
    acc.update(x[: 2 * BLOCK], y[: 2 * BLOCK])
    for clone in (
        pickle.loads(pickle.dumps(acc)),
        pickle.loads(pickle.dumps(acc, protocol=2)),
        copy.copy(acc),
        copy.deepcopy(acc),
    ):
        assert type(clone) is cls
        assert (clone.count, clone.sum, clone.reduction) == (acc.count, acc.sum, "sum")
        # A restored accumulator continues exactly where the original was.
        clone.update(x[2 * BLOCK :], y[2 * BLOCK :])
        if logits:
            np.testing.assert_array_equal(clone.pos_weight, [1.5])
            assert clone.result() == fn(x, y, pos_weight=[1.5], reduction="sum")
        else:
            assert clone.result() == fn(x, y, reduction="sum")
    assert acc.count == 2 * BLOCK  # the original is untouched


def test_update_with_bad_batch_leaves_state_unchanged() -> None:
    acc = BinaryCrossEntropyAccumulator()
    acc.update([0.2, 0.7], [0, 1])
    state = (acc.count, acc.sum)
    with pytest.raises(ValueError, match="'input'"):
        acc.update([0.2, 1.5], [0, 1])
    with pytest.raises(ValueError, match="'target'"):
        acc.update([0.2, 0.5], [0, 2])
    with pytest.raises(ValueError, match="'target'"):
        acc.update([0.2, 0.5], [0, 1, 1])
    with pytest.raises(ValueError, match="'weight'"):
        acc.update([0.2, 0.5], [0, 1], weight=[1.0, 2.0, 3.0])
    with pytest.raises(TypeError, match="'input'"):
        acc.update(np.array([1, 0], dtype=np.complex128), [0, 1])
    assert (acc.count, acc.sum) == state


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="'reduction'"):
        BinaryCrossEntropyAccumulator(reduction="none")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        BinaryCrossEntropyAccumulator("mean")  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="'pos_weight'"):
        BinaryCrossEntropyWithLogitsAccumulator(pos_weight=np.array(["a"]))
    acc = BinaryCrossEntropyAccumulator()
    with pytest.raises(TypeError, match="'other'"):
        acc.merge(BinaryCrossEntropyWithLogitsAccumulator())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="'other'"):
        acc.merge(1.0)  # type: ignore[arg-type]
    acc.update([0.5, 0.25], [1, 0])
    before = (acc.count, acc.sum)
    for bad in [
        (),
        ("mean", 1.0, 0.0, 3),
        (1.0, 0.0, -3, 0.0, 0.0),
        (1.0, 0.0, 3.5, 0.0, 0.0),
        ("1.0", 0.0, 3, 0.0, 0.0),
        (1.0, 0.0, 3, 0.0, 0.0, 0.0),
        [1.0, 0.0, 3, 0.0, 0.0],
        "x",
    ]:
        with pytest.raises(ValueError, match="'state'"):
            acc.__setstate__(bad)  # type: ignore[arg-type]
    assert (acc.count, acc.sum) == before
    # The pickled parameters are the constructor's keyword arguments: unpickling validates
    # them as a constructor call does.
    reduced: Any = acc.__reduce__()
    rebuild, (cls, args, params), state = reduced
    assert params == {"reduction": "mean", "n_groups": None}
    assert state == (acc.sum, 0.0, 2, 0.0, 0.0)
    with pytest.raises(ValueError, match="'reduction'"):
        rebuild(cls, args, {"reduction": "median"})


def test_repr_names_the_state() -> None:
    acc = BinaryCrossEntropyWithLogitsAccumulator(pos_weight=[2.0, 1.0])
    acc.update([[0.0, 1.0]], [[1, 0]])
    r = repr(acc)
    assert r.startswith("BinaryCrossEntropyWithLogitsAccumulator(reduction='mean'")
    assert "pos_weight=[2.0, 1.0]" in r and "count=2" in r


# --- softmax cross-entropy, and the divergences of the whole array ---------------------------
#
# Where a call cuts its work (see crossent.BLOCK and crossent.CHUNK):
# - softmax cross-entropy over rows of C classes merges the rows' losses in blocks of
#   max(1, CHUNK // C) rows: batches of whole blocks give the bits of one call (with more
#   than CHUNK classes a block is one row, so any cut between rows does);
# - a divergence over the whole array (axis=None) reduces it in chunks of CHUNK elements of
#   its C order: batches of whole chunks give the bits of one call.
# Other cuts change the order of the additions only: 1e-12 relative.


@dataclass(frozen=True)
class Stream:
    """An accumulator fed batches cut along axis 0 of its arrays, and what it must equal."""

    name: str
    make: Callable[[], Any]
    # data(rng, dtype): the whole arrays; batches are cut along their axis 0.
    data: Callable[[np.random.Generator, Any], tuple[np.ndarray, ...]]
    # One call on the whole arrays: the bits that batches of whole units give.
    call: Callable[..., Any]
    # The same value from an independent float64 formula (SciPy, NumPy).
    reference: Callable[..., float]
    # Items along axis 0 in one of the call's blocks (softmax) or chunks (divergences).
    unit: int


W10 = np.linspace(0.5, 2.0, 10)


def _logits_and_labels(
    rows: int, classes: int, ignore: int
) -> Callable[[np.random.Generator, Any], tuple[np.ndarray, ...]]:
    def data(rng: np.random.Generator, dtype: Any) -> tuple[np.ndarray, ...]:
        x = (rng.standard_normal((rows, classes)) * 3).astype(dtype)
        y = rng.integers(0, classes, rows)
        y[3::7] = ignore
        return x, y

    return data


def _logits_and_probabilities(rows: int, classes: int) -> Any:
    def data(rng: np.random.Generator, dtype: Any) -> tuple[np.ndarray, ...]:
        x = (rng.standard_normal((rows, classes)) * 3).astype(dtype)
        t = rng.dirichlet(np.ones(classes), rows).astype(dtype)
        return x, t

    return data


def _softmax_mean(weight: Any = None, ignore_index: int = -100, eps: float = 0.0) -> Any:
    """PyTorch's mean from the float64 per-row reference: over sum(weight[y]) of the rows
    not ignored (class indices), over the rows (probabilities)."""

    def mean(x: np.ndarray, y: np.ndarray) -> float:
        loss = ref.softmax_cross_entropy(
            x, y, weight=weight, ignore_index=ignore_index, label_smoothing=eps
        )
        if y.dtype.kind == "f":
            return float(loss.sum() / len(loss))
        w = np.ones(x.shape[-1]) if weight is None else np.asarray(weight)
        return float(loss.sum() / w[y[y != ignore_index]].sum())

    return mean


def _distribution(shape: tuple[int, ...], q: bool, normalised: bool = False) -> Any:
    def data(rng: np.random.Generator, dtype: Any) -> tuple[np.ndarray, ...]:
        arrays: list[np.ndarray] = []
        for _ in range(2 if q else 1):
            a = rng.uniform(0, 1, shape)
            a[rng.uniform(0, 1, shape) < 0.05] = 0.0  # 0 ln 0 = 0
            if q and arrays:
                a += 1e-3  # q > 0 wherever p > 0: a finite divergence
            arrays.append((a / a.sum() if normalised else a).astype(dtype))
        return tuple(arrays)

    return data


def _f64(*arrays: np.ndarray) -> list[np.ndarray]:
    return [np.asarray(a, dtype=np.float64).ravel() for a in arrays]


def _scipy_entropy(p: np.ndarray) -> float:
    return float(scipy.stats.entropy(*_f64(p), base=2))


def _scipy_cross_entropy(p: np.ndarray, q: np.ndarray) -> float:
    p64, q64 = _f64(p, q)
    return float(scipy.stats.entropy(p64) + scipy.stats.entropy(p64, q64))


def _scipy_kl(p: np.ndarray, q: np.ndarray) -> float:
    return float(scipy.stats.entropy(*_f64(p, q)))


def _rel_entr_sum(p: np.ndarray, q: np.ndarray) -> float:
    return float(scipy.special.rel_entr(*_f64(p, q)).sum() / math.log(10))


def _js_unnormalised(p: np.ndarray, q: np.ndarray) -> float:
    p64, q64 = _f64(p, q)
    m = (p64 + q64) / 2
    return float((scipy.special.rel_entr(p64, m) + scipy.special.rel_entr(q64, m)).sum() / 2)


STREAMS = [
    Stream(
        "softmax labels, C=10",
        lambda: SoftmaxCrossEntropyAccumulator(weight=W10, ignore_index=-1, label_smoothing=0.1),
        _logits_and_labels(5 * (CHUNK // 10) + 17, 10, ignore=-1),
        lambda x, y: crossent.softmax_cross_entropy(
            x, y, weight=W10, ignore_index=-1, label_smoothing=0.1
        ),
        _softmax_mean(W10, -1, 0.1),
        CHUNK // 10,
    ),
    Stream(
        "softmax probabilities, C=1000",
        lambda: SoftmaxCrossEntropyAccumulator(label_smoothing=0.05),
        _logits_and_probabilities(5 * (CHUNK // 1000) + 7, 1000),
        lambda x, t: crossent.softmax_cross_entropy(x, t, label_smoothing=0.05),
        _softmax_mean(eps=0.05),
        CHUNK // 1000,
    ),
    Stream(
        "softmax labels, more than CHUNK classes",
        lambda: SoftmaxCrossEntropyAccumulator(),
        _logits_and_labels(6, CHUNK + 7232, ignore=-100),
        lambda x, y: crossent.softmax_cross_entropy(x, y),
        _softmax_mean(),
        1,
    ),
    Stream(
        "entropy, 1-D",
        lambda: EntropyAccumulator(base=2),
        _distribution((3 * CHUNK + 1000,), q=False),
        lambda p: crossent.entropy(p, axis=None, base=2),
        _scipy_entropy,
        CHUNK,
    ),
    Stream(
        "cross_entropy, rows of 64",
        lambda: CrossEntropyAccumulator(),
        _distribution((3 * (CHUNK // 64) + 100, 64), q=True),
        lambda p, q: crossent.cross_entropy(p, q, axis=None),
        _scipy_cross_entropy,
        CHUNK // 64,
    ),
    Stream(
        "kl_divergence, 1-D",
        lambda: KLDivergenceAccumulator(),
        _distribution((3 * CHUNK + 1000,), q=True),
        lambda p, q: crossent.kl_divergence(p, q, axis=None),
        _scipy_kl,
        CHUNK,
    ),
    Stream(
        "kl_divergence unnormalised, 3-D",
        lambda: KLDivergenceAccumulator(normalize=False, base=10),
        _distribution((3 * (CHUNK // 128) + 50, 8, 16), q=True),
        lambda p, q: crossent.kl_divergence(p, q, axis=None, normalize=False, base=10),
        _rel_entr_sum,
        CHUNK // 128,
    ),
    Stream(
        "jensen_shannon unnormalised, 1-D",
        lambda: JensenShannonAccumulator(normalize=False),
        _distribution((3 * CHUNK + 1000,), q=True, normalised=True),
        lambda p, q: crossent.jensen_shannon(p, q, axis=None, normalize=False),
        _js_unnormalised,
        CHUNK,
    ),
]
STREAM_IDS = [c.name for c in STREAMS]


def streamed(case: Stream, arrays: tuple[np.ndarray, ...], edges: list[int]) -> Any:
    """A new accumulator fed the batches between consecutive `edges` (along axis 0)."""
    acc = case.make()
    for a, b in itertools.pairwise(edges):
        acc.update(*(x[a:b] for x in arrays))
    return acc


def aligned_edges(case: Stream, n: int) -> list[int]:
    """Cuts at whole units, one batch empty, the last batch taking the rest."""
    return [k * case.unit for k in (0, 1, 1, 3, 4) if k * case.unit <= n] + [n]


@pytest.mark.parametrize("case", STREAMS, ids=STREAM_IDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_threads", [1, 3])
def test_streams_cut_at_whole_units_give_identical_bits(
    case: Stream, dtype: Any, n_threads: int, threads: None
) -> None:
    arrays = case.data(np.random.default_rng(5), dtype)
    n = len(arrays[0])
    crossent.set_num_threads(n_threads)
    acc = streamed(case, arrays, aligned_edges(case, n))
    whole = case.call(*arrays)
    assert acc.result() == whole  # the very same bits
    assert acc.count == streamed(case, arrays, [0, n]).count
    # An independent float64 formula on the same values.
    rtol = 2e-5 if dtype == np.float32 and case.name.startswith("softmax") else 1e-12
    assert acc.result() == pytest.approx(case.reference(*arrays), rel=rtol)


@settings(max_examples=40, deadline=None)
@given(
    case=st.sampled_from(STREAMS),
    cuts=st.lists(st.floats(0, 1), max_size=6),
    dtype=st.sampled_from([np.float32, np.float64]),
)
def test_streams_cut_anywhere_agree_to_1e_12(case: Stream, cuts: list[float], dtype: Any) -> None:
    arrays = case.data(np.random.default_rng(len(cuts)), dtype)
    n = len(arrays[0])
    acc = streamed(case, arrays, [0, *sorted(int(c * n) for c in cuts), n])
    whole = case.call(*arrays)
    assert abs(acc.result() - whole) <= 1e-12 * abs(whole)


@pytest.mark.parametrize("case", STREAMS, ids=STREAM_IDS)
def test_streams_merge_pickle_and_reset(case: Stream) -> None:
    arrays = case.data(np.random.default_rng(9), np.float64)
    n = len(arrays[0])
    whole = case.call(*arrays)
    first, rest = n // 3, [x[n // 3 :] for x in arrays]
    a, b = streamed(case, arrays, [0, first]), streamed(case, arrays, [first, n])
    a.merge(b)
    assert a.count == streamed(case, arrays, [0, n]).count
    assert a.result() == pytest.approx(whole, rel=1e-12)
    assert b.result() == case.call(*rest)  # `other` is left as it was
    with pytest.raises(TypeError, match="'other'"):
        a.merge(BinaryCrossEntropyAccumulator())

    # A restored accumulator continues exactly where the original was.
    cut = case.unit
    acc = streamed(case, arrays, [0, cut])
    for clone in (
        *(pickle.loads(pickle.dumps(acc, protocol=p)) for p in range(pickle.HIGHEST_PROTOCOL + 1)),
        copy.copy(acc),
        copy.deepcopy(acc),
    ):
        assert type(clone) is type(acc) and repr(clone) == repr(acc)
        assert (clone.count, clone.sum, clone.result()) == (acc.count, acc.sum, acc.result())
        clone.update(*(x[cut:] for x in arrays))
        assert clone.result() == whole
    assert acc.count == streamed(case, arrays, [0, cut]).count  # the original is untouched

    # Nothing seen: the result of a call on empty arrays (NaN mean, 0 divergence).
    a.reset()
    a.update(*(x[:0] for x in arrays))
    assert (a.count, a.sum) == (0, 0.0)
    np.testing.assert_equal(a.result(), case.call(*(x[:0] for x in arrays)))


def test_softmax_sum_weight_sum_and_parameters() -> None:
    rng = np.random.default_rng(2)
    x = rng.standard_normal((500, 10))
    y = rng.integers(0, 10, 500)
    y[::5] = -100
    w = W10.copy()
    acc = SoftmaxCrossEntropyAccumulator(weight=w, reduction="sum")
    w[0] = 99.0  # the accumulator keeps its own copy
    acc.update(x[:200], y[:200])
    acc.update(x[200:], y[200:])
    per_row = ref.softmax_cross_entropy(x, y, weight=W10)
    assert acc.result() == pytest.approx(per_row.sum(), rel=1e-12)
    assert acc.count == np.count_nonzero(y != -100)
    assert acc.weight_sum == pytest.approx(W10[y[y != -100]].sum(), rel=1e-15)
    assert acc.result() == pytest.approx(
        crossent.softmax_cross_entropy(x, y, weight=W10, reduction="sum"), rel=1e-12
    )
    assert (acc.reduction, acc.axis, acc.ignore_index, acc.label_smoothing) == ("sum", -1, -100, 0)
    fixed = acc.weight
    assert fixed is not None
    np.testing.assert_array_equal(fixed, W10)
    with pytest.raises(ValueError, match="read-only"):
        fixed[0] = 2.0
    # The class axis anywhere: axis=0 of the transposed logits, read in place.
    t = SoftmaxCrossEntropyAccumulator(axis=0)
    t.update(x.T, np.where(y == -100, 0, y))
    assert t.result() == crossent.softmax_cross_entropy(x, np.where(y == -100, 0, y))
    assert "SoftmaxCrossEntropyAccumulator(reduction='sum', axis=-1, weight=[0.5," in repr(acc)


def test_jensen_shannon_accumulates_only_without_normalisation() -> None:
    with pytest.raises(ValueError, match="'normalize' must be False"):
        JensenShannonAccumulator()  # the default, as for jensen_shannon
    with pytest.raises(ValueError, match="'normalize' must be False"):
        JensenShannonAccumulator(normalize=True)
    rng = np.random.default_rng(4)
    p, q = rng.dirichlet(np.ones(1000)), rng.dirichlet(np.ones(1000))
    acc = JensenShannonAccumulator(base=2, normalize=False)
    acc.update(p[:400], q[:400])
    acc.update(p[400:], q[400:])
    # For normalised distributions it is the Jensen-Shannon divergence.
    expected = scipy.spatial.distance.jensenshannon(p, q, base=2) ** 2
    assert acc.result() == pytest.approx(expected, rel=1e-12)
    assert (acc.base, acc.normalize) == (2.0, False)


def test_divergence_accumulators_broadcast_and_name_parameters() -> None:
    p = np.array([[1.0, 2.0], [3.0, 4.0]])
    q = np.array([0.5, 1.5])  # broadcast against p, as the functions do
    acc = KLDivergenceAccumulator(base=2)
    acc.update(p, q)
    assert acc.result() == crossent.kl_divergence(p, q, axis=None, base=2)
    assert acc.count == 4 and (acc.base, acc.normalize) == (2.0, True)
    assert repr(acc) == (
        f"KLDivergenceAccumulator(base=2.0, normalize=True) <count=4, sum={acc.sum!r}>"
    )
    entropy = EntropyAccumulator(normalize=False)
    assert repr(entropy) == "EntropyAccumulator(normalize=False) <count=0, sum=0.0>"
    with pytest.raises(ValueError, match="'base'"):
        EntropyAccumulator(base=1.0)
    with pytest.raises(TypeError, match="'normalize'"):
        CrossEntropyAccumulator(normalize=1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="'other'"):
        entropy.merge(acc)  # type: ignore[arg-type]


# --- merge: only accumulators of one loss ------------------------------------------------------


def _feed(acc: Any) -> Any:
    """`acc` after one small batch of valid data for its class (and parameters)."""
    if isinstance(acc, BinaryCrossEntropyAccumulator):
        acc.update([0.9, 0.2], [1, 0])
    elif isinstance(acc, BinaryCrossEntropyWithLogitsAccumulator):
        acc.update([2.0, -1.0], [1, 0])
    elif isinstance(acc, SoftmaxCrossEntropyAccumulator):
        logits = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]])
        acc.update(logits if acc.axis == -1 else logits.T, [0, 2])
    elif isinstance(acc, EntropyAccumulator):
        acc.update([1.0, 2.0, 3.0])
    else:
        acc.update([1.0, 2.0, 3.0], [3.0, 2.0, 1.0])
    return acc


# (class, this accumulator's parameters, other's parameters, the error message)
MISMATCHED_MERGES: list[tuple[type[Any], dict[str, Any], dict[str, Any], str]] = [
    (
        BinaryCrossEntropyAccumulator,
        {},
        {"reduction": "sum"},
        "'reduction' differs ('mean' here, 'sum' in 'other')",
    ),
    (
        BinaryCrossEntropyWithLogitsAccumulator,
        {"pos_weight": [2.0]},
        {},
        "'pos_weight' differs ([2.0] here, None in 'other')",
    ),
    (
        BinaryCrossEntropyWithLogitsAccumulator,
        {"pos_weight": [2.0, 1.0]},
        {"pos_weight": [1.0, 2.0]},
        "'pos_weight' differs ([2.0, 1.0] here, [1.0, 2.0] in 'other')",
    ),
    (
        SoftmaxCrossEntropyAccumulator,
        {"weight": [1.0, 2.0, 0.5]},
        {"weight": [1.0, 2.0, 0.25]},
        "'weight' differs ([1.0, 2.0, 0.5] here, [1.0, 2.0, 0.25] in 'other')",
    ),
    (
        SoftmaxCrossEntropyAccumulator,
        {"label_smoothing": 0.1},
        {},
        "'label_smoothing' differs (0.1 here, 0.0 in 'other')",
    ),
    (
        SoftmaxCrossEntropyAccumulator,
        {"ignore_index": -1},
        {},
        "'ignore_index' differs (-1 here, -100 in 'other')",
    ),
    (
        SoftmaxCrossEntropyAccumulator,
        {"axis": 0},
        {},
        "'axis' differs (0 here, -1 in 'other')",
    ),
    (
        EntropyAccumulator,
        {},
        {"normalize": False},
        "'normalize' differs (True here, False in 'other')",
    ),
    (
        CrossEntropyAccumulator,
        {"base": 2},
        {"base": 10},
        "'base' differs (2.0 here, 10.0 in 'other')",
    ),
    (
        KLDivergenceAccumulator,
        {"normalize": False},
        {},
        "'normalize' differs (False here, True in 'other')",
    ),
    (
        JensenShannonAccumulator,
        {"normalize": False},
        {"normalize": False, "base": 2},
        "'base' differs (None here, 2.0 in 'other')",
    ),
]


@pytest.mark.parametrize(
    ("cls", "mine", "theirs", "message"),
    MISMATCHED_MERGES,
    ids=[c.__name__ + "-" + m.split()[0].strip("'") for c, _, _, m in MISMATCHED_MERGES],
)
def test_merge_refuses_other_parameters(
    cls: type[Any], mine: dict[str, Any], theirs: dict[str, Any], message: str
) -> None:
    a, b = _feed(cls(**mine)), _feed(cls(**theirs))
    before = [(acc.count, acc.sum) for acc in (a, b)]
    with pytest.raises(ValueError, match=re.escape(f"cannot merge: {message}")):
        a.merge(b)
    assert [(acc.count, acc.sum) for acc in (a, b)] == before  # neither has changed


@pytest.mark.parametrize(
    ("cls", "params", "same"),
    [
        (
            BinaryCrossEntropyWithLogitsAccumulator,
            {"pos_weight": [2, 1]},
            {"pos_weight": [2.0, 1.0]},
        ),
        (
            SoftmaxCrossEntropyAccumulator,
            {"weight": np.array([1.0, np.nan, 0.5])},
            {"weight": [1.0, np.nan, 0.5]},
        ),
        (SoftmaxCrossEntropyAccumulator, {"label_smoothing": 0}, {"label_smoothing": 0.0}),
        (EntropyAccumulator, {"base": 2}, {"base": 2.0}),
    ],
)
def test_merge_compares_parameters_by_value(
    cls: type[Any], params: dict[str, Any], same: dict[str, Any]
) -> None:
    # Equal values from other objects, other dtypes, or a pickled copy are the same loss.
    a = _feed(cls(**params))
    for b in (_feed(cls(**same)), pickle.loads(pickle.dumps(_feed(cls(**params))))):
        # The folded partial (as pickling stores it: the sum first): merging adds another
        # accumulator's, which saw the same data (a divergence's terms are taken against the
        # same reference exponent then).
        count, total = a.count, a.__reduce__()[2][0]
        a.merge(b)
        assert (a.count, a.__reduce__()[2][0]) == (count + b.count, total + b.__reduce__()[2][0])


# --- threads -------------------------------------------------------------------------------


def _bce_case(logits: bool) -> Stream:
    cls = BinaryCrossEntropyWithLogitsAccumulator if logits else BinaryCrossEntropyAccumulator
    fn = crossent.binary_cross_entropy_with_logits if logits else crossent.binary_cross_entropy
    name = cls.__name__
    return Stream(
        name,
        cls,
        lambda rng, dtype: data(12 * BLOCK + 77, dtype, logits, seed=int(rng.integers(99))),
        fn,
        lambda x, y: float(reference(x, y, logits).mean()),
        BLOCK,
    )


# Every accumulator class, with batches large enough that `update` releases the GIL.
SHARED_CASES = [_bce_case(False), _bce_case(True), *STREAMS]


@pytest.mark.parametrize("case", SHARED_CASES, ids=[c.name for c in SHARED_CASES])
def test_one_accumulator_shared_by_many_threads(case: Stream, threads: None) -> None:
    """Threads hammer one accumulator with update, merge, result, count, sum, repr, pickling
    and copies while others update and reset a second one: nothing raises, and the shared
    one ends with every batch counted once (the result of one call on everything, to
    1e-12: only the order of the batches differs)."""
    crossent.set_num_threads(2)
    arrays = case.data(np.random.default_rng(11), np.float64)
    n = len(arrays[0])
    edges = np.linspace(0, n, 13).astype(int).tolist()
    batches = [tuple(x[a:b] for x in arrays) for a, b in itertools.pairwise(edges)]
    shared, scratch = case.make(), case.make()
    errors: list[BaseException] = []
    done = [False]

    def run(body: Callable[[], None]) -> None:
        try:
            body()
        except BaseException as e:
            errors.append(e)

    def feeder(k: int) -> None:
        for i in range(k, len(batches), 4):
            if i % 2:
                part = case.make()
                part.update(*batches[i])
                shared.merge(part)
            else:
                shared.update(*batches[i])
            shared.result()
            pickle.loads(pickle.dumps(shared))
            copy.deepcopy(shared)

    def reader() -> None:
        while not done[0]:
            assert 0 <= shared.count <= ref_count
            shared.sum  # noqa: B018 - reading is the test
            repr(shared)
            shared.result()

    def churner() -> None:
        while not done[0]:
            scratch.update(*batches[0])
            scratch.result()
            scratch.reset()
            scratch.merge(scratch)

    ref_count = streamed(case, arrays, [0, n]).count
    feeders = [
        threading.Thread(target=run, args=(lambda k=k: feeder(k),), daemon=True) for k in range(4)
    ]
    others = [
        threading.Thread(target=run, args=(body,), daemon=True)
        for body in (reader, churner, reader)
    ]
    for t in feeders + others:
        t.start()
    for t in feeders:
        t.join(timeout=120)
    done[0] = True
    for t in others:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in feeders + others), "a thread hangs"
    assert not errors, [f"{type(e).__name__}: {e}" for e in errors[:3]]
    whole = case.call(*arrays)
    assert shared.count == ref_count
    assert abs(shared.result() - whole) <= 1e-12 * abs(whole)
    # The scratch accumulator is whole too: reset, then one batch, gives that batch's bits.
    scratch.reset()
    scratch.update(*batches[1])
    assert scratch.result() == streamed(case, arrays, [edges[1], edges[2]]).result()


def test_accumulator_used_from_inside_its_own_update_names_itself() -> None:
    """A batch whose conversion calls back into the accumulator being updated (an
    `__array__` method): a RuntimeError naming the class (not a hang), and the state is
    unchanged."""
    acc = BinaryCrossEntropyAccumulator()
    acc.update(np.full(3, 0.5), np.zeros(3))

    class Sneaky:
        def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
            acc.result()
            return np.full(3, 0.5)

    # The RuntimeError reaches the caller as the cause of the conversion's TypeError.
    with pytest.raises(TypeError, match="'input'") as info:
        acc.update(Sneaky(), np.zeros(3))
    cause = info.value.__cause__
    assert isinstance(cause, RuntimeError), cause
    assert "BinaryCrossEntropyAccumulator" in str(cause), cause
    assert acc.count == 3
    assert acc.result() == pytest.approx(math.log(2))


def test_result_waits_for_a_running_update(threads: None) -> None:
    """`result()` while another thread's long `update` runs waits for it (it does not raise,
    nor see half a batch), and other Python threads keep running meanwhile (the wait does
    not hold the GIL)."""
    crossent.set_num_threads(2)
    n = 2**30
    x = np.broadcast_to(np.float64(0.25), (n,))
    y = np.broadcast_to(np.float64(1.0), (n,))
    acc = BinaryCrossEntropyAccumulator(reduction="sum")
    acc.update(x[:10], y[:10])
    worker = threading.Thread(target=acc.update, args=(x, y), daemon=True)
    ticks = [0]
    stop = threading.Event()

    def tick() -> None:
        while not stop.is_set():
            ticks[0] += 1
            time.sleep(0.001)

    ticker = threading.Thread(target=tick, daemon=True)
    ticker.start()
    worker.start()
    try:
        time.sleep(0.05)
        seen = [acc.result() for _ in range(3)]
    finally:
        worker.join()
        stop.set()
        ticker.join()
    per = -math.log(0.25)
    # (2^30 equal terms summed in float64 blocks: about 1e-12 relative.)
    before, after = pytest.approx(10 * per, rel=1e-9), pytest.approx((n + 10) * per, rel=1e-9)
    assert all(s == before or s == after for s in seen), seen
    assert acc.count == n + 10
    assert ticks[0] > 0


class _SlowArray:
    """An array-like whose conversion signals `converting`, then takes `seconds` (releasing
    the GIL): an `update` given it is certainly in progress meanwhile."""

    def __init__(self, a: np.ndarray, seconds: float = 0.2) -> None:
        self.a, self.seconds = a, seconds
        self.converting = threading.Event()

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        self.converting.set()
        time.sleep(self.seconds)
        return self.a


@pytest.mark.parametrize("case", SHARED_CASES, ids=[c.name for c in SHARED_CASES])
def test_every_method_waits_for_an_update_in_progress(case: Stream) -> None:
    """While one thread is inside `update`, every method called from another thread waits
    for it instead of raising, and then sees the whole batch: `result`, `count`, `sum`,
    `repr`, pickling, `merge` (both ways), another `update`, and `reset`."""
    arrays = case.data(np.random.default_rng(12), np.float64)
    n = len(arrays[0])
    third = [tuple(x[a:b] for x in arrays) for a, b in ((0, n // 3), (n // 3, n // 2), (n // 2, n))]
    acc, other = case.make(), case.make()
    other.update(*third[2])

    def in_update(body: Callable[[], Any]) -> Any:
        slow = _SlowArray(third[0][0])
        worker = threading.Thread(target=acc.update, args=(slow, *third[0][1:]), daemon=True)
        worker.start()
        try:
            assert slow.converting.wait(10)
            return body()
        finally:
            worker.join()

    # Each in_update adds the first third to `acc` before `body` can run.
    first = streamed(case, arrays, [0, n // 3])
    c0, c2 = first.count, streamed(case, arrays, [n // 2, n]).count
    assert in_update(acc.result) == first.result()
    assert in_update(lambda: acc.count) == 2 * c0
    assert in_update(lambda: acc.sum) == pytest.approx(3 * first.sum, rel=1e-12)
    assert f"count={4 * c0}" in in_update(lambda: repr(acc))
    assert pickle.loads(in_update(lambda: pickle.dumps(acc))).count == 5 * c0
    in_update(lambda: acc.merge(other))
    assert acc.count == 6 * c0 + c2
    in_update(lambda: other.merge(acc))
    assert other.count == 7 * c0 + 2 * c2
    in_update(lambda: acc.update(*third[1]))
    in_update(acc.reset)
    assert acc.count == 0
