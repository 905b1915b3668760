"""`sample_weight=` (scikit-learn's weighted mean) on binary and softmax cross-entropy, their
accumulators, `groups=` and `crossent.dask`, against float64 references: `numpy.average` of
the per-element (per-row) losses of PyTorch's formulas, and scikit-learn's `log_loss` where
it is installed."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import reference

import crossent

F64 = npt.NDArray[np.float64]
RNG = np.random.default_rng(20261207)


def _average(losses: F64, sw: Any) -> float:
    """`numpy.average` of `losses` with `sw` broadcast to them: the scikit-learn mean."""
    return float(np.average(losses, weights=np.broadcast_to(np.asarray(sw, float), losses.shape)))


def _rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-300)


def _bce_case(
    shape: tuple[int, ...], dtype: Any, logits: bool
) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
    if logits:
        x = RNG.normal(0.0, 3.0, shape).astype(dtype)
    else:
        x = RNG.uniform(0.01, 0.99, shape).astype(dtype)
    y = (RNG.uniform(size=shape) < 0.4).astype(dtype)
    return x, y


def _bce_ref(x: Any, y: Any, logits: bool, **kw: Any) -> F64:
    if logits:
        return reference.bce_with_logits(x, y, kw.get("weight"), kw.get("pos_weight"))
    return reference.bce(x, y, kw.get("weight"))


_BCE = [
    pytest.param(crossent.binary_cross_entropy, False, id="probabilities"),
    pytest.param(crossent.binary_cross_entropy_with_logits, True, id="logits"),
]
_TOL = {np.float32: 2e-6, np.float64: 1e-12}


@pytest.mark.parametrize(("fn", "logits"), _BCE)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    ("shape", "sw_shape"),
    [
        ((100_003,), (100_003,)),  # several blocks, one weight per element
        ((300, 7), (300, 1)),  # one weight per row, broadcast over the columns
        ((300, 7), (7,)),  # one per column
        ((5, 40, 3), ()),  # one scalar weight: the plain mean
    ],
)
def test_bce_mean_sum_none_match_numpy_average(
    fn: Any, logits: bool, dtype: Any, shape: tuple[int, ...], sw_shape: tuple[int, ...]
) -> None:
    x, y = _bce_case(shape, dtype, logits)
    sw = RNG.uniform(0.0, 3.0, sw_shape)
    losses = _bce_ref(x, y, logits)
    tol = _TOL[dtype]
    mean = fn(x, y, sample_weight=sw)
    assert _rel(mean, _average(losses, sw)) <= tol
    total = fn(x, y, sample_weight=sw, reduction="sum")
    assert _rel(total, float((losses * np.broadcast_to(sw, shape)).sum())) <= tol
    per = fn(x, y, sample_weight=sw, reduction="none")
    assert per.dtype == dtype and per.shape == shape
    # PyTorch's logits formula, the reference, loses |x| / loss ulp where crossent does not:
    # the tolerance follows the largest loss.
    scale = float(np.abs(losses * sw).max())
    np.testing.assert_allclose(per, losses * sw, rtol=10 * tol, atol=tol * scale)
    # Each element is the plain call's loss times its weight, rounded once in the input's dtype.
    plain = fn(x, y, reduction="none")
    np.testing.assert_array_equal(per, plain * np.asarray(sw, dtype))
    # float32 weights read in the input's precision, as `weight` is; integers converted.
    assert _rel(fn(x, y, sample_weight=sw.astype(np.float32)), mean) <= 1e-6
    ints = np.broadcast_to(np.arange(1, 4), shape[-1:]) if shape[-1] % 3 == 0 else None
    if ints is not None:
        assert _rel(fn(x, y, sample_weight=ints), _average(losses, ints)) <= tol


@pytest.mark.parametrize(("fn", "logits"), _BCE)
def test_bce_weight_and_sample_weight_side_by_side(fn: Any, logits: bool) -> None:
    """PyTorch's `weight` scales the losses and keeps the count as denominator; the sample
    weights multiply them too and become the denominator."""
    x, y = _bce_case((400, 5), np.float64, logits)
    w = RNG.uniform(0.5, 2.0, 5)
    sw = RNG.uniform(0.0, 2.0, (400, 1))
    kw: dict[str, Any] = {"weight": w}
    if logits:
        kw["pos_weight"] = RNG.uniform(0.5, 3.0, 5)
    scaled = _bce_ref(x, y, logits, **kw)
    assert _rel(fn(x, y, **kw), float(scaled.mean())) <= 1e-12
    assert _rel(fn(x, y, sample_weight=sw, **kw), _average(scaled, sw)) <= 1e-12
    # Weights of one are PyTorch's mean without sample weights.
    assert _rel(fn(x, y, sample_weight=np.ones(1), **kw), fn(x, y, **kw)) <= 1e-15


def test_bce_without_sample_weight_is_unchanged_and_ones_match() -> None:
    """A call without sample weights is the plain call; weights of 1 give its sum exactly
    (multiplying by 1 is exact)."""
    x, y = _bce_case((50_000,), np.float32, False)
    plain = crossent.binary_cross_entropy(x, y, reduction="sum")
    ones = crossent.binary_cross_entropy(x, y, reduction="sum", sample_weight=np.ones(1))
    assert ones == plain


def test_sklearn_log_loss_binary_and_multiclass() -> None:
    metrics = pytest.importorskip("sklearn.metrics")
    p = RNG.uniform(0.02, 0.98, 1000)
    y = (RNG.uniform(size=1000) < p).astype(np.int64)
    sw = RNG.uniform(0.0, 4.0, 1000)
    want = metrics.log_loss(y, p, sample_weight=sw)
    assert _rel(crossent.binary_cross_entropy(p, y, sample_weight=sw), want) <= 1e-12
    logit = np.log(p / (1 - p))
    got = crossent.binary_cross_entropy_with_logits(logit, y, sample_weight=sw)
    assert _rel(got, want) <= 1e-10
    # Multi-class: the softmax probabilities' log loss is softmax cross-entropy.
    x = RNG.normal(0.0, 2.0, (1000, 4))
    labels = RNG.integers(0, 4, 1000)
    probs = np.exp(x - x.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    want = metrics.log_loss(labels, probs, sample_weight=sw, labels=np.arange(4))
    assert _rel(crossent.softmax_cross_entropy(x, labels, sample_weight=sw), want) <= 1e-10
    assert _rel(crossent.log_loss(labels, probs, sample_weight=sw), want) <= 1e-12


def _softmax_case(rows: int, classes: int, dtype: Any) -> tuple[Any, Any]:
    x = RNG.normal(0.0, 3.0, (rows, classes)).astype(dtype)
    labels = RNG.integers(0, classes, rows)
    labels[::7] = -100
    return x, labels


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_softmax_labels_class_weight_and_ignored_rows(dtype: Any, smoothing: float) -> None:
    """Class weights scale each row's loss; the mean divides by the sample weights of the
    rows not ignored (PyTorch's divides by Σ w[y])."""
    x, labels = _softmax_case(3001, 6, dtype)
    w = RNG.uniform(0.5, 3.0, 6)
    sw = RNG.uniform(0.0, 2.0, 3001)
    kw: dict[str, Any] = {"weight": w, "label_smoothing": smoothing}
    rows = reference.softmax_cross_entropy(x, labels, **kw)
    kept = labels != -100
    tol = _TOL[dtype]
    want = _average(rows[kept], sw[kept])
    assert _rel(crossent.softmax_cross_entropy(x, labels, sample_weight=sw, **kw), want) <= tol
    pytorch = rows[kept].sum() / w[labels[kept]].sum()
    assert _rel(crossent.softmax_cross_entropy(x, labels, **kw), pytorch) <= tol
    total = crossent.softmax_cross_entropy(x, labels, sample_weight=sw, reduction="sum", **kw)
    assert _rel(total, float((rows * sw)[kept].sum())) <= tol
    per = crossent.softmax_cross_entropy(x, labels, sample_weight=sw, reduction="none", **kw)
    np.testing.assert_allclose(per, np.where(kept, rows * sw, 0.0), rtol=10 * tol, atol=1e-300)


def test_softmax_probabilities_axis_and_broadcast() -> None:
    """Class probabilities along axis 1 of a 3-d array; one weight per row broadcast from
    (n, 1) over the rows' shape (n, k)."""
    x = RNG.normal(0.0, 2.0, (20, 5, 3))
    t = RNG.dirichlet(np.ones(5), (20, 3)).transpose(0, 2, 1)
    sw = RNG.uniform(0.0, 2.0, (20, 1))
    rows = reference.softmax_cross_entropy(np.moveaxis(x, 1, -1), np.moveaxis(t, 1, -1))
    got = crossent.softmax_cross_entropy(x, t, axis=1, sample_weight=sw)
    assert _rel(got, _average(rows, sw)) <= 1e-12
    per = crossent.softmax_cross_entropy(x, t, axis=1, sample_weight=sw, reduction="none")
    np.testing.assert_allclose(per, rows * sw, rtol=1e-12)


@pytest.mark.parametrize(
    "call",
    [
        lambda sw: crossent.binary_cross_entropy([0.2, 0.7], [0, 1], sample_weight=sw),
        lambda sw: crossent.binary_cross_entropy_with_logits([0.2, 0.7], [0, 1], sample_weight=sw),
        lambda sw: crossent.softmax_cross_entropy(
            [[0.2, 0.7], [1.0, 0.0]], [0, 1], sample_weight=sw
        ),
    ],
    ids=["bce", "logits", "softmax"],
)
def test_zero_sum_is_nan_and_nan_propagates(call: Any) -> None:
    with np.errstate(all="raise"):
        assert np.isnan(call(np.zeros(2)))
        assert np.isnan(call(np.array([1.0, np.nan])))
    # An infinite weight: inf / inf, as numpy.average.
    assert np.isnan(call(np.array([1.0, np.inf])))


def test_softmax_all_rows_ignored_or_zero_weighted_is_nan() -> None:
    x = np.zeros((3, 2))
    assert np.isnan(crossent.softmax_cross_entropy(x, [-100] * 3, sample_weight=np.ones(3)))
    # Only ignored rows weigh: nothing is counted.
    got = crossent.softmax_cross_entropy(x, [0, -100, -100], sample_weight=[0.0, 5.0, 5.0])
    assert np.isnan(got)


@pytest.mark.parametrize(
    ("call", "where"),
    [
        (
            lambda: crossent.binary_cross_entropy(
                np.full((3, 70_000), 0.5), np.zeros((3, 70_000)), sample_weight=_neg((3, 70_000))
            ),
            (2, 65_000),
        ),
        (
            lambda: crossent.binary_cross_entropy_with_logits(
                np.zeros((3, 4)), np.zeros((3, 4)), sample_weight=_neg((3, 1), at=(1, 0))
            ),
            (1, 0),
        ),
        (
            lambda: crossent.softmax_cross_entropy(
                np.zeros((5, 3)), np.zeros(5, np.int64), sample_weight=_neg((5,), at=(3,))
            ),
            (3,),
        ),
    ],
    ids=["bce", "logits-broadcast", "softmax"],
)
def test_negative_weight_is_a_domain_error_with_its_position(call: Any, where: Any) -> None:
    with pytest.raises(crossent.DomainError, match="'sample_weight' must hold non-negative") as e:
        call()
    assert e.value.argument == "sample_weight"
    assert e.value.index == where
    assert e.value.value == -1.0


def _neg(shape: tuple[int, ...], at: tuple[int, ...] = (2, 65_000)) -> F64:
    """Ones, with -1 at `at` and -2 at the last position after it (the first is reported)."""
    sw = np.ones(shape)
    if np.ravel_multi_index(at, shape) < sw.size - 1:
        sw.flat[-1] = -2.0
    sw[at] = -1.0
    return sw


def test_log_loss_and_the_others_name_bad_weights_alike() -> None:
    """log_loss (scikit-learn's rules) and the losses name the argument, its position and
    value the same way for a negative weight."""
    errors = []
    calls: tuple[Callable[[], Any], ...] = (
        lambda: crossent.log_loss([0, 1, 1], [0.2, 0.8, 0.6], sample_weight=[1.0, -1.0, 1.0]),
        lambda: crossent.binary_cross_entropy(
            [0.2, 0.8, 0.6], [0, 1, 1], sample_weight=[1.0, -1.0, 1.0]
        ),
    )
    for call in calls:
        with pytest.raises(crossent.DomainError) as e:
            call()
        errors.append((e.value.argument, e.value.index, e.value.value))
    assert errors[0] == errors[1] == ("sample_weight", (1,), -1.0)


def test_grouped_log_loss_bad_weight_is_not_a_memory_error() -> None:
    """The log loss's weight flag shared its bit with the per-group state's out-of-memory
    flag: a negative weight with groups= raised MemoryError."""
    with pytest.raises(crossent.DomainError) as e:
        crossent.log_loss(
            [0, 1, 1], [0.2, 0.8, 0.6], sample_weight=[1.0, -1.0, 1.0], groups=[0, 1, 0]
        )
    assert e.value.argument == "sample_weight"


@pytest.mark.parametrize(("fn", "logits"), _BCE)
def test_bce_groups_divide_by_each_groups_weight(fn: Any, logits: bool) -> None:
    x, y = _bce_case((20_011,), np.float64, logits)
    sw = RNG.uniform(0.0, 2.0, 20_011)
    codes = RNG.integers(0, 7, 20_011)
    losses = _bce_ref(x, y, logits)
    got = fn(x, y, sample_weight=sw, groups=codes)
    want = np.bincount(codes, losses * sw) / np.bincount(codes, sw)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    sums = fn(x, y, sample_weight=sw, groups=codes, reduction="sum", n_groups=9)
    np.testing.assert_allclose(sums[:7], np.bincount(codes, losses * sw), rtol=1e-12)
    assert sums[7] == sums[8] == 0.0


def test_softmax_groups_with_pandas_reference() -> None:
    pd = pytest.importorskip("pandas")
    x, labels = _softmax_case(5000, 4, np.float64)
    w = RNG.uniform(0.5, 2.0, 4)
    sw = RNG.uniform(0.0, 2.0, 5000)
    codes = RNG.integers(0, 5, 5000)
    rows = reference.softmax_cross_entropy(x, labels, weight=w)
    kept = labels != -100
    frame = pd.DataFrame({"g": codes[kept], "l": (rows * sw)[kept], "sw": sw[kept]})
    sums = frame.groupby("g").sum()
    got = crossent.softmax_cross_entropy(x, labels, weight=w, sample_weight=sw, groups=codes)
    np.testing.assert_allclose(got, (sums["l"] / sums["sw"]).to_numpy(), rtol=1e-12)


@pytest.mark.parametrize("grouped", [False, True])
def test_accumulators_over_batches_match_one_call(grouped: bool) -> None:
    x, y = _bce_case((3 * crossent.BLOCK + 5,), np.float64, True)
    sw = RNG.uniform(0.0, 2.0, x.shape)
    codes = RNG.integers(0, 3, x.shape)
    kw: dict[str, Any] = {"groups": codes} if grouped else {}
    acc = crossent.BinaryCrossEntropyWithLogitsAccumulator(pos_weight=[1.5])
    for start in range(0, x.size, crossent.BLOCK):
        part = slice(start, start + crossent.BLOCK)
        extra = {"groups": codes[part]} if grouped else {}
        acc.update(x[part], y[part], sample_weight=sw[part], **extra)
    want = crossent.binary_cross_entropy_with_logits(x, y, pos_weight=[1.5], sample_weight=sw, **kw)
    np.testing.assert_array_equal(acc.result(), want)
    copy = pickle.loads(pickle.dumps(acc))
    np.testing.assert_array_equal(copy.result(), want)
    # A merge of two halves is the whole.
    a, b = crossent.BinaryCrossEntropyWithLogitsAccumulator(pos_weight=[1.5]), copy
    b.reset()
    half = x.size // 2
    ea = {"groups": codes[:half]} if grouped else {}
    eb = {"groups": codes[half:]} if grouped else {}
    a.update(x[:half], y[:half], sample_weight=sw[:half], **ea)
    b.update(x[half:], y[half:], sample_weight=sw[half:], **eb)
    a.merge(b)
    np.testing.assert_allclose(a.result(), want, rtol=1e-12)


def test_softmax_and_bce_accumulators_divide_by_the_sample_weights() -> None:
    x, labels = _softmax_case(1000, 5, np.float32)
    w = np.array([1.0, 2.0, 3.0, 0.5, 1.0])
    sw = RNG.uniform(0.0, 2.0, 1000).astype(np.float32)
    acc = crossent.SoftmaxCrossEntropyAccumulator(weight=w)
    for i in range(0, 1000, 300):
        acc.update(x[i : i + 300], labels[i : i + 300], sample_weight=sw[i : i + 300])
    want = crossent.softmax_cross_entropy(x, labels, weight=w, sample_weight=sw)
    assert _rel(float(acc.result()), want) <= 1e-12
    assert _rel(acc.weight_sum, float(sw[labels != -100].astype(float).sum())) <= 1e-12
    p, t = _bce_case((999,), np.float32, False)
    bce = crossent.BinaryCrossEntropyAccumulator()
    bce.update(p[:500], t[:500], sample_weight=sw[:500])
    bce.update(p[500:], t[500:], sample_weight=sw[500:999])
    want = crossent.binary_cross_entropy(p, t, sample_weight=sw[:999])
    assert _rel(float(bce.result()), want) <= 1e-12


def test_accumulators_refuse_mixed_batches_and_states() -> None:
    """With and without sample weights the means divide by different sums: one accumulator
    takes one kind of batch, and merges only states of that kind."""
    p, t = np.array([0.2, 0.9]), np.array([0.0, 1.0])
    acc = crossent.BinaryCrossEntropyAccumulator()
    acc.update(p, t, sample_weight=[1.0, 2.0])
    with pytest.raises(ValueError, match="sample_weight"):
        acc.update(p, t)
    plain = crossent.BinaryCrossEntropyAccumulator()
    plain.update(p, t)
    with pytest.raises(ValueError, match="sample_weight"):
        plain.update(p, t, sample_weight=[1.0, 1.0])
    with pytest.raises(ValueError, match="sample_weight"):
        acc.merge(plain)
    before = acc.result()
    acc.merge(crossent.BinaryCrossEntropyAccumulator())  # an empty state is of either kind
    assert acc.result() == before
    plain.reset()
    plain.update(p, t, sample_weight=[1.0, 2.0])
    assert plain.result() == before
    soft = crossent.SoftmaxCrossEntropyAccumulator()
    soft.update(np.zeros((2, 3)), [0, 1])
    with pytest.raises(ValueError, match="sample_weight"):
        soft.update(np.zeros((2, 3)), [0, 1], sample_weight=[1.0, 1.0])


def test_pickled_state_keeps_its_kind() -> None:
    acc = crossent.SoftmaxCrossEntropyAccumulator(weight=[1.0, 3.0])
    acc.update(np.array([[0.0, 1.0], [2.0, 0.5]]), [1, 0], sample_weight=[2.0, 0.5])
    copy = pickle.loads(pickle.dumps(acc))
    assert copy.result() == acc.result()
    with pytest.raises(ValueError, match="sample_weight"):
        copy.update(np.zeros((1, 2)), [0])


def test_dask_matches_the_in_memory_call() -> None:
    da = pytest.importorskip("dask.array")
    import crossent.dask

    x, y = _bce_case((1000, 6), np.float64, False)
    sw = RNG.uniform(0.0, 2.0, (1000, 1))
    lazy = crossent.dask.binary_cross_entropy(
        da.from_array(x, chunks=(137, 3)), y, sample_weight=da.from_array(sw, chunks=(300, 1))
    )
    want = crossent.binary_cross_entropy(x, y, sample_weight=sw)
    assert _rel(float(lazy.compute()), want) <= 1e-12
    logits, labels = _softmax_case(1000, 4, np.float64)
    rsw = RNG.uniform(0.0, 2.0, 1000)
    lazy = crossent.dask.softmax_cross_entropy(
        da.from_array(logits, chunks=(250, 4)),
        labels,
        weight=[1.0, 2.0, 1.0, 0.5],
        sample_weight=rsw,
    )
    want = crossent.softmax_cross_entropy(
        logits, labels, weight=[1.0, 2.0, 1.0, 0.5], sample_weight=rsw
    )
    assert _rel(float(lazy.compute()), want) <= 1e-12
    per = crossent.dask.softmax_cross_entropy(
        da.from_array(logits, chunks=(250, 4)), labels, sample_weight=rsw, reduction="none"
    ).compute()
    np.testing.assert_allclose(
        per, crossent.softmax_cross_entropy(logits, labels, sample_weight=rsw, reduction="none")
    )
    grouped = crossent.dask.binary_cross_entropy(
        da.from_array(x, chunks=(137, 3)), y, sample_weight=sw, groups=np.arange(6) % 2, n_groups=2
    ).compute()
    np.testing.assert_allclose(
        grouped,
        crossent.binary_cross_entropy(x, y, sample_weight=sw, groups=np.arange(6) % 2),
        rtol=1e-12,
    )
    bad = sw.copy()
    bad[640, 0] = -1.0
    with pytest.raises(crossent.DomainError) as e:
        crossent.dask.binary_cross_entropy(
            da.from_array(x, chunks=(137, 3)), y, sample_weight=da.from_array(bad, chunks=100)
        ).compute()
    assert (e.value.argument, e.value.index) == ("sample_weight", (640, 0))


def test_arrow_chunked_columns_stream_with_sample_weight() -> None:
    """A chunked Arrow column is folded batch by batch, its sample weights cut alongside."""
    pa = pytest.importorskip("pyarrow")
    p, y = _bce_case((3000,), np.float64, False)
    sw = RNG.uniform(0.0, 2.0, 3000)
    column = pa.chunked_array([p[:1234], p[1234:]])
    want = crossent.binary_cross_entropy(p, y, sample_weight=sw)
    assert _rel(crossent.binary_cross_entropy(column, y, sample_weight=sw), want) <= 1e-12
    weights = pa.chunked_array([sw[:100], sw[100:]])
    assert _rel(crossent.binary_cross_entropy(p, y, sample_weight=weights), want) <= 1e-12
    x, labels = _softmax_case(500, 3, np.float64)
    rsw = RNG.uniform(0.0, 2.0, 500)
    rows = pa.chunked_array([labels[:200], labels[200:]])
    want = crossent.softmax_cross_entropy(x, labels, sample_weight=rsw)
    assert _rel(crossent.softmax_cross_entropy(x, rows, sample_weight=rsw), want) <= 1e-12
