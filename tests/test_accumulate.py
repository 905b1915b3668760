"""Streaming accumulators: same bits as one call when batches are cut at block boundaries,
1e-12 relative otherwise; merge, reset, pickling, bad input."""

from __future__ import annotations

import copy
import itertools
import pickle
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import crossent
from crossent import (
    BLOCK,
    BinaryCrossEntropyAccumulator,
    BinaryCrossEntropyWithLogitsAccumulator,
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
    for bad in [(), ("mean", 1.0, 0.0, 3), (("mean", 1.0, 0.0, -3), None), "x"]:
        with pytest.raises(ValueError, match="state"):
            acc.__setstate__(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="'reduction'"):
        acc.__setstate__((("median", 1.0, 0.0, 3), None))
    assert acc.count == 0


def test_repr_names_the_state() -> None:
    acc = BinaryCrossEntropyWithLogitsAccumulator(pos_weight=[2.0, 1.0])
    acc.update([[0.0, 1.0]], [[1, 0]])
    r = repr(acc)
    assert r.startswith("BinaryCrossEntropyWithLogitsAccumulator(reduction='mean'")
    assert "pos_weight=[2.0, 1.0]" in r and "count=2" in r
