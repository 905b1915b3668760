"""Per-group losses (`groups=`, `n_groups=`) against a float64 pandas `groupby` reference."""

from __future__ import annotations

import itertools
import pickle
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
import pytest

import crossent

F64 = npt.NDArray[np.float64]

CODE_DTYPES = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")
RTOL = {np.float32: 2e-5, np.float64: 1e-12}


def grouped_ref(loss: F64, codes: Any, n: int, reduction: str, weight: Any = None) -> Any:
    """The float64 pandas reference: each group's mean (over `weight` when given) or sum."""
    frame = pd.DataFrame({"loss": np.asarray(loss, np.float64).ravel(), "g": np.ravel(codes)})
    if reduction == "sum":
        out = frame.groupby("g")["loss"].sum().reindex(range(n), fill_value=0.0)
        return out.to_numpy(np.float64)
    if weight is None:
        out = frame.groupby("g")["loss"].mean().reindex(range(n))
        return out.to_numpy(np.float64)
    frame["w"] = np.asarray(weight, np.float64).ravel()
    sums = frame.groupby("g")[["loss", "w"]].sum().reindex(range(n))
    return (sums["loss"] / sums["w"]).to_numpy(np.float64)


def bce_f64(p: Any, y: Any, w: Any = None) -> Any:
    p, y = np.asarray(p, np.float64), np.asarray(y, np.float64)
    loss = -(y * np.maximum(np.log(p), -100) + (1 - y) * np.maximum(np.log1p(-p), -100))
    return loss if w is None else loss * np.asarray(w, np.float64)


def logits_f64(x: Any, y: Any, w: Any = None, c: Any = None) -> Any:
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    c = 1.0 if c is None else np.asarray(c, np.float64)
    log_sig = np.minimum(x, 0) - np.log1p(np.exp(-np.abs(x)))
    loss = (1 - y) * x - (1 + (c - 1) * y) * log_sig
    return loss if w is None else loss * np.asarray(w, np.float64)


def close(got: Any, want: Any, rtol: float) -> None:
    assert got.dtype == np.float64
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=rtol, atol=0, equal_nan=True)


def same_bits(a: Any, b: Any) -> bool:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return bool(a.shape == b.shape and a.tobytes() == b.tobytes())


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20261207)


# --- binary cross-entropy ------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("target", ["soft", "hard"])
def test_bce_per_group_matches_pandas(
    rng: np.random.Generator, dtype: Any, reduction: Literal["mean", "sum"], target: str
) -> None:
    n, g = 50_000, 37
    p = rng.uniform(0.001, 0.999, n).astype(dtype)
    y = rng.uniform(0, 1, n).astype(dtype) if target == "soft" else rng.integers(0, 2, n) > 0
    w = rng.uniform(0.5, 2.0, n).astype(dtype)
    codes = rng.integers(0, g, n)
    codes[codes == 5] = 6  # group 5 stays empty
    got = crossent.binary_cross_entropy(p, y, weight=w, groups=codes, reduction=reduction)
    want = grouped_ref(bce_f64(p, y, w.astype(dtype)), codes, g, reduction)
    close(got, want, RTOL[dtype])
    if reduction == "mean":
        assert np.isnan(got[5])
    else:
        assert got[5] == 0.0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_logits_with_weight_and_pos_weight_match_pandas(
    rng: np.random.Generator, dtype: Any
) -> None:
    shape, g = (3000, 4), 11
    x = rng.normal(0, 4, shape).astype(dtype)
    y = rng.uniform(0, 1, shape).astype(dtype)
    w = rng.uniform(0.1, 3, shape[1]).astype(dtype)
    c = rng.uniform(0.5, 4, shape[1]).astype(dtype)
    codes = rng.integers(0, g, shape).astype(np.int16)
    for reduction in ("mean", "sum"):
        got = crossent.binary_cross_entropy_with_logits(
            x, y, weight=w, pos_weight=c, groups=codes, reduction=reduction
        )
        want = grouped_ref(logits_f64(x, y, np.broadcast_to(w, shape), c), codes, g, reduction)
        close(got, want, RTOL[dtype])


def test_groups_broadcast_per_row(rng: np.random.Generator) -> None:
    x = rng.normal(size=(500, 3))
    y = rng.integers(0, 2, (500, 3)).astype(np.uint8)
    rows = rng.integers(0, 4, 500)
    got = crossent.binary_cross_entropy_with_logits(x, y, groups=rows[:, None])
    want = grouped_ref(logits_f64(x, y), np.repeat(rows, 3), 4, "mean")
    close(got, want, 1e-12)


@pytest.mark.parametrize("code_dtype", CODE_DTYPES)
def test_every_integer_code_dtype_gives_the_same_bits(
    rng: np.random.Generator, code_dtype: str
) -> None:
    p = rng.uniform(size=20_000)
    y = rng.uniform(size=20_000)
    codes = rng.integers(0, 100, 20_000)
    want = crossent.binary_cross_entropy(p, y, groups=codes)
    got = crossent.binary_cross_entropy(p, y, groups=codes.astype(code_dtype))
    assert same_bits(got, want)
    close(got, grouped_ref(bce_f64(p, y), codes, 100, "mean"), 1e-12)


def test_strided_inputs_and_codes(rng: np.random.Generator) -> None:
    p = rng.uniform(size=(300, 40))
    y = rng.uniform(size=(300, 40))
    codes = rng.integers(0, 9, (300, 40)).astype(np.int32)
    # Every other row and column, a Fortran-ordered copy, and reversed strides.
    views: list[Callable[[Any], Any]] = [
        lambda a: a[::2, ::3],
        lambda a: np.asfortranarray(a),
        lambda a: a[::-1, ::-2],
        lambda a: a.T,
    ]
    for view in views:
        got = crossent.binary_cross_entropy(view(p), view(y), groups=view(codes), n_groups=9)
        want = grouped_ref(bce_f64(view(p), view(y)), view(codes), 9, "mean")
        close(got, want, 1e-12)
        # The same as a contiguous copy of every operand.
        copy = crossent.binary_cross_entropy(
            np.ascontiguousarray(view(p)),
            np.ascontiguousarray(view(y)),
            groups=np.ascontiguousarray(view(codes)),
            n_groups=9,
        )
        close(got, copy, 1e-13)


def test_codes_read_in_place_from_a_view_with_odd_strides(rng: np.random.Generator) -> None:
    raw = rng.integers(0, 5, 3 * 4000).astype(np.int64)
    codes = raw[::3]  # a strided view: read in place
    p = rng.uniform(size=4000)
    y = rng.uniform(size=4000)
    got = crossent.binary_cross_entropy(p, y, groups=codes, reduction="sum")
    close(got, grouped_ref(bce_f64(p, y), codes, 5, "sum"), 1e-12)


def test_n_groups_gives_empty_groups_and_defaults_to_max_plus_one() -> None:
    p = np.array([0.9, 0.2, 0.6, 0.7])
    y = np.array([1.0, 0.0, 1.0, 1.0])
    codes = np.array([0, 2, 2, 0])
    got = crossent.binary_cross_entropy(p, y, groups=codes)
    assert got.shape == (3,) and np.isnan(got[1])
    got = crossent.binary_cross_entropy(p, y, groups=codes, n_groups=5, reduction="sum")
    assert got.shape == (5,)
    assert list(got[[1, 3, 4]]) == [0.0, 0.0, 0.0]
    close(got, grouped_ref(bce_f64(p, y), codes, 5, "sum"), 1e-15)
    empty = crossent.binary_cross_entropy(np.zeros(0), np.zeros(0), groups=np.zeros(0, int))
    assert empty.shape == (0,) and empty.dtype == np.float64
    empty = crossent.binary_cross_entropy(
        np.zeros(0), np.zeros(0), groups=np.zeros(0, int), n_groups=2
    )
    assert np.isnan(empty).all() and empty.shape == (2,)


@pytest.mark.parametrize(
    ("codes", "n_groups", "index"),
    [
        ([0, 1, -1, 2, 0, 1], None, (2,)),
        ([0, 1, 3, 2, 0, 1], 3, (2,)),
        ([[0, 1, 2], [0, 7, -1]], 3, (1, 1)),
    ],
)
def test_code_out_of_range_names_groups_and_position(
    codes: Any, n_groups: int | None, index: tuple[int, ...]
) -> None:
    codes = np.array(codes)
    p = np.full(codes.shape, 0.5)
    for code_dtype in ("int8", "int64"):
        with pytest.raises(ValueError, match=r"'groups'.*at index") as e:
            crossent.binary_cross_entropy(p, p, groups=codes.astype(code_dtype), n_groups=n_groups)
        assert isinstance(e.value, crossent.DomainError)
        assert e.value.argument == "groups"
        assert e.value.index == index
        assert e.value.value == codes[index]


@pytest.mark.parametrize("code_dtype", CODE_DTYPES)
@pytest.mark.parametrize("step", [1, 3])
def test_codes_out_of_range_are_found_however_they_narrow(code_dtype: str, step: int) -> None:
    """Codes are narrowed to 32 bits inside the kernel: a negative code, or one that wraps to
    a valid group once its high bits are dropped (2**32 + 1), is still refused at its first
    position, with the code as given, contiguous or strided, and whether n_groups is given."""
    info = np.iinfo(code_dtype)
    bad = [v for v in (-1, info.min, 2**32 + 1, info.max) if info.min <= v <= info.max]
    n = 3000
    for value in bad:
        for n_groups in (None, 4):
            limit = 2**32 - 1 if n_groups is None else n_groups
            if 0 <= value < limit:
                continue
            codes = np.zeros(n * step, code_dtype)
            codes[: n * step : step] = np.arange(n) % 4
            at = 1234
            codes[at * step] = value
            codes[(at + 500) * step] = value
            p = np.full(n, 0.5, np.float32)
            with pytest.raises(crossent.DomainError) as e:
                crossent.binary_cross_entropy(p, p, groups=codes[::step], n_groups=n_groups)
            assert (e.value.argument, e.value.index, e.value.value) == ("groups", (at,), value)


def test_code_out_of_range_in_a_long_parallel_call(threads: None) -> None:
    crossent.set_num_threads(2)
    codes = np.zeros(300_000, np.int32)
    codes[123_457] = 4
    x = np.zeros(300_000)
    with pytest.raises(ValueError, match=r"'groups'.*found 4 at index \(123457,\)"):
        crossent.binary_cross_entropy_with_logits(x, x, groups=codes, n_groups=4)


def test_bad_arguments_are_refused() -> None:
    p = np.full(4, 0.5)
    codes = np.array([0, 1, 0, 1])
    bce = crossent.binary_cross_entropy
    with pytest.raises(ValueError, match="reduction='none'"):
        bce(p, p, groups=codes, reduction="none")
    with pytest.raises(ValueError, match="'out'"):
        bce(p, p, groups=codes, out=np.empty(4))
    with pytest.raises(ValueError, match="'n_groups' is only used with 'groups'"):
        bce(p, p, n_groups=3)
    with pytest.raises(TypeError, match=r"'groups'.*integer"):
        bce(p, p, groups=codes.astype(float))
    with pytest.raises(TypeError, match=r"'groups'.*integer"):
        bce(p, p, groups=codes.astype(bool))
    with pytest.raises(ValueError, match="'groups' must have the shape"):
        bce(p, p, groups=codes[:3])
    with pytest.raises(TypeError, match="'n_groups'"):
        bce(p, p, groups=codes, n_groups=2.0)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="'n_groups'"):
        bce(p, p, groups=codes, n_groups=True)
    with pytest.raises(ValueError, match="'n_groups'"):
        bce(p, p, groups=codes, n_groups=-1)
    with pytest.raises(ValueError, match="'n_groups'"):
        bce(p, p, groups=codes, n_groups=2**40)
    # Domain errors of the loss itself are still reported.
    with pytest.raises(ValueError, match="'input'"):
        bce(np.array([0.5, 2.0, 0.5, 0.5]), p, groups=codes)
    with pytest.raises(ValueError, match="'target'"):
        bce(p, np.array([0, 1, 2, 0]), groups=codes)


def test_same_bits_for_one_and_two_threads(rng: np.random.Generator, threads: None) -> None:
    n = 400_000
    p = rng.uniform(size=n).astype(np.float32)
    y = rng.uniform(size=n).astype(np.float32)
    for g in (3, 1000, 200_000):
        codes = rng.integers(0, g, n)
        crossent.set_num_threads(1)
        one = crossent.binary_cross_entropy(p, y, groups=codes)
        crossent.set_num_threads(2)
        two = crossent.binary_cross_entropy(p, y, groups=codes)
        assert same_bits(one, two), g
        close(two, grouped_ref(bce_f64(p, y), codes, g, "mean"), 2e-5)


# --- accumulators ----------------------------------------------------------------------------


def test_accumulator_over_block_batches_has_the_bits_of_one_call(
    rng: np.random.Generator,
) -> None:
    n, g = 5 * crossent.BLOCK + 123, 50
    x = rng.normal(size=n)
    y = rng.uniform(size=n)
    codes = rng.integers(0, g, n).astype(np.uint16)
    want = crossent.binary_cross_entropy_with_logits(x, y, pos_weight=[2.0], groups=codes)
    total = crossent.binary_cross_entropy_with_logits(x, y, pos_weight=[2.0], reduction="sum")
    acc = crossent.BinaryCrossEntropyWithLogitsAccumulator(pos_weight=[2.0])
    cuts = [0, crossent.BLOCK, 3 * crossent.BLOCK, n]
    for a, b in itertools.pairwise(cuts):
        acc.update(x[a:b], y[a:b], groups=codes[a:b])
    assert same_bits(acc.result(), want)
    assert acc.count == n
    assert acc.sum == total
    counts = acc.counts
    assert counts is not None and counts.dtype == np.int64
    np.testing.assert_array_equal(counts, np.bincount(codes, minlength=g))
    # Cut anywhere: the same to rounding.
    acc = crossent.BinaryCrossEntropyWithLogitsAccumulator(pos_weight=[2.0])
    for a, b in zip([0, 7, 1000, 30_000], [7, 1000, 30_000, n], strict=False):
        acc.update(x[a:b], y[a:b], groups=codes[a:b])
    close(acc.result(), want, 1e-12)


def test_accumulator_grows_with_codes_or_keeps_n_groups(rng: np.random.Generator) -> None:
    p = rng.uniform(size=600)
    y = rng.uniform(size=600)
    codes = np.concatenate([rng.integers(0, 3, 300), rng.integers(0, 8, 300)])
    acc = crossent.BinaryCrossEntropyAccumulator(reduction="sum")
    acc.update(p[:300], y[:300], groups=codes[:300])
    assert np.shape(acc.result()) == (3,)
    acc.update(p[300:], y[300:], groups=codes[300:])
    close(acc.result(), grouped_ref(bce_f64(p, y), codes, 8, "sum"), 1e-12)
    fixed = crossent.BinaryCrossEntropyAccumulator(n_groups=10)
    assert fixed.n_groups == 10
    assert np.isnan(fixed.result()).all() and np.shape(fixed.result()) == (10,)
    fixed.update(p, y, groups=codes)
    close(fixed.result(), grouped_ref(bce_f64(p, y), codes, 10, "mean"), 1e-12)
    before = fixed.result()
    with pytest.raises(ValueError, match=r"'groups'.*at index \(1,\)"):
        fixed.update(p[:3], y[:3], groups=[1, 10, 2])
    assert same_bits(fixed.result(), before)
    with pytest.raises(ValueError, match="every update needs 'groups'"):
        fixed.update(p, y)


def test_accumulator_refuses_mixing_grouped_and_ungrouped(rng: np.random.Generator) -> None:
    p = rng.uniform(size=10)
    codes = np.arange(10) % 2
    acc = crossent.BinaryCrossEntropyAccumulator()
    acc.update(p, p)
    with pytest.raises(ValueError, match="cannot be mixed"):
        acc.update(p, p, groups=codes)
    acc.reset()
    acc.update(p, p, groups=codes)
    with pytest.raises(ValueError, match="needs 'groups'"):
        acc.update(p, p)
    plain = crossent.BinaryCrossEntropyAccumulator()
    plain.update(p, p)
    with pytest.raises(ValueError, match="grouped accumulator with an ungrouped"):
        acc.merge(plain)
    with pytest.raises(ValueError, match="grouped accumulator with an ungrouped"):
        plain.merge(acc)
    with pytest.raises(ValueError, match="'n_groups' differs"):
        acc.merge(crossent.BinaryCrossEntropyAccumulator(n_groups=2))


def test_accumulator_pickles_and_merges(rng: np.random.Generator) -> None:
    p = rng.uniform(size=3000)
    y = rng.uniform(size=3000)
    codes = rng.integers(0, 20, 3000)
    a = crossent.BinaryCrossEntropyAccumulator()
    a.update(p[:1000], y[:1000], groups=codes[:1000])
    copy = pickle.loads(pickle.dumps(a))
    assert same_bits(copy.result(), a.result())
    np.testing.assert_array_equal(copy.counts, a.counts)
    assert copy.count == a.count and copy.sum == a.sum
    b = crossent.BinaryCrossEntropyAccumulator()
    b.update(p[1000:], y[1000:], groups=codes[1000:])
    a.merge(b)
    close(a.result(), crossent.binary_cross_entropy(p, y, groups=codes), 1e-12)
    np.testing.assert_array_equal(a.counts, np.bincount(codes))
    # An ungrouped accumulator still pickles as before.
    plain = crossent.BinaryCrossEntropyAccumulator()
    plain.update(p, y)
    assert pickle.loads(pickle.dumps(plain)).result() == plain.result()
    assert plain.counts is None


# --- softmax cross-entropy -----------------------------------------------------------------


def softmax_rows_f64(
    x: Any, y: Any, w: Any = None, eps: float = 0.0, ignore: int = -100
) -> tuple[F64, F64]:
    """Per-row loss and mean weight (PyTorch's), class indices along the last axis."""
    x = np.asarray(x, np.float64)
    c = x.shape[-1]
    w = np.ones(c) if w is None else np.asarray(w, np.float64)
    m = x.max(axis=-1, keepdims=True)
    lse = (m + np.log(np.exp(x - m).sum(axis=-1, keepdims=True)))[..., 0]
    y = np.asarray(y)
    keep = y != ignore
    safe = np.where(keep, y, 0)
    xy = np.take_along_axis(x, safe[..., None], axis=-1)[..., 0]
    wy = w[safe]
    loss = (1 - eps) * wy * (lse - xy) + eps / c * ((lse[..., None] - x) * w).sum(axis=-1)
    return np.where(keep, loss, 0.0), np.where(keep, wy, 0.0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_softmax_with_weight_ignore_index_and_smoothing_matches_pandas(
    rng: np.random.Generator, dtype: Any, reduction: Literal["mean", "sum"]
) -> None:
    rows, c, g = 20_000, 7, 13
    x = rng.normal(0, 3, (rows, c)).astype(dtype)
    y = rng.integers(0, c, rows)
    y[rng.random(rows) < 0.1] = -100
    w = rng.uniform(0.2, 3.0, c)
    codes = rng.integers(0, g, rows).astype(np.uint8)
    codes[codes == 4] = 3  # group 4 stays empty
    got = crossent.softmax_cross_entropy(
        x, y, weight=w, label_smoothing=0.1, groups=codes, n_groups=g, reduction=reduction
    )
    loss, wy = softmax_rows_f64(x, y, w.astype(dtype), 0.1)
    kept = y != -100
    if reduction == "sum":
        want = grouped_ref(loss, codes, g, "sum")
    else:
        want = grouped_ref(loss[kept], codes[kept], g, "mean", weight=wy[kept])
    close(got, want, RTOL[dtype] * 5)
    acc = crossent.SoftmaxCrossEntropyAccumulator(
        weight=w, label_smoothing=0.1, reduction=reduction, n_groups=g
    )
    acc.update(x[:5000], y[:5000], groups=codes[:5000])
    acc.update(x[5000:], y[5000:], groups=codes[5000:])
    close(acc.result(), got, 1e-12)
    np.testing.assert_array_equal(acc.counts, np.bincount(codes[kept], minlength=g))


def test_softmax_class_axis_strided_and_probabilities(rng: np.random.Generator) -> None:
    # Classes along axis 0 of a (C, rows) array: rows are strided, codes per row.
    x = rng.normal(size=(5, 3000))
    y = rng.integers(0, 5, 3000)
    codes = rng.integers(0, 6, 6000)[::2]
    got = crossent.softmax_cross_entropy(x, y, axis=0, groups=codes)
    loss, _ = softmax_rows_f64(x.T, y)
    close(got, grouped_ref(loss, codes, 6, "mean"), 1e-12)
    # Class probabilities: the mean is over rows.
    t = rng.dirichlet(np.ones(5), 3000)
    got = crossent.softmax_cross_entropy(x.T, t, groups=codes, reduction="mean")
    lse = np.log(np.exp(x.T).sum(axis=1))
    prob_loss = (t * (lse[:, None] - x.T)).sum(axis=1)
    close(got, grouped_ref(prob_loss, codes, 6, "mean"), 1e-12)
    # Rows of more than one chunk of classes.
    wide = rng.normal(size=(6, crossent.CHUNK + 5))
    labels = rng.integers(0, wide.shape[1], 6)
    wcodes = np.array([1, 0, 1, 1, 0, 2])
    got = crossent.softmax_cross_entropy(wide, labels, groups=wcodes, reduction="sum")
    loss, _ = softmax_rows_f64(wide, labels)
    close(got, grouped_ref(loss, wcodes, 3, "sum"), 1e-12)


def test_softmax_errors_name_their_argument(rng: np.random.Generator) -> None:
    x = rng.normal(size=(6, 3))
    y = np.array([0, 1, 2, 0, 1, 2])
    with pytest.raises(ValueError, match=r"'groups'.*found -2 at index \(4,\)"):
        crossent.softmax_cross_entropy(x, y, groups=[0, 1, 0, 1, -2, 0])
    with pytest.raises(ValueError, match=r"'groups' must have the shape of the rows"):
        crossent.softmax_cross_entropy(x, y, groups=np.zeros((6, 3), int))
    with pytest.raises(ValueError, match=r"'target'"):
        crossent.softmax_cross_entropy(x, y + 1, groups=np.zeros(6, int))
    # An ignored row's code is still checked.
    with pytest.raises(ValueError, match=r"'groups'.*at index \(1,\)"):
        crossent.softmax_cross_entropy(
            x, np.array([0, -100, 2, 0, 1, 2]), groups=[0, 5, 0, 0, 0, 0], n_groups=2
        )


def test_softmax_same_bits_for_one_and_two_threads(rng: np.random.Generator, threads: None) -> None:
    x = rng.normal(size=(100_000, 10)).astype(np.float32)
    y = rng.integers(0, 10, 100_000)
    codes = rng.integers(0, 5000, 100_000)
    crossent.set_num_threads(1)
    one = crossent.softmax_cross_entropy(x, y, groups=codes)
    crossent.set_num_threads(2)
    two = crossent.softmax_cross_entropy(x, y, groups=codes)
    assert same_bits(one, two)


# --- log_loss --------------------------------------------------------------------------------


def test_log_loss_with_labels_and_weights_matches_pandas(rng: np.random.Generator) -> None:
    n, g = 5000, 9
    names = np.array(["ant", "bee", "cat", "dog"])
    y = names[rng.integers(0, 4, n)]
    p = rng.dirichlet(np.ones(4), n)
    w = rng.uniform(0, 2, n)
    codes = rng.integers(0, g, n).astype(np.int64)
    got = crossent.log_loss(y, p, sample_weight=w, groups=codes)
    col = np.searchsorted(names, y)
    eps = np.finfo(np.float64).eps
    loss = -np.log(np.clip(p[np.arange(n), col], eps, 1 - eps))
    close(got, grouped_ref(loss * w, codes, g, "mean", weight=w), 1e-12)
    got = crossent.log_loss(y, p, sample_weight=w, groups=codes, normalize=False, n_groups=11)
    close(got, grouped_ref(loss * w, codes, 11, "sum"), 1e-12)
    # Binary, 1-D y_pred, float32.
    yb = rng.integers(0, 2, n)
    pb = rng.uniform(0.01, 0.99, n).astype(np.float32)
    got = crossent.log_loss(yb, pb, groups=codes)
    pos = np.where(yb == 1, pb.astype(np.float64), 1 - pb.astype(np.float64))
    close(got, grouped_ref(-np.log(pos), codes, g, "mean"), 1e-6)


def test_log_loss_accumulator_and_errors(rng: np.random.Generator) -> None:
    n = 3000
    y = rng.integers(0, 3, n)
    p = rng.dirichlet(np.ones(3), n)
    codes = rng.integers(0, 4, n).astype(np.uint32)
    want = crossent.log_loss(y, p, groups=codes, labels=[0, 1, 2])
    acc = crossent.LogLossAccumulator(labels=[0, 1, 2])
    for a, b in ((0, 1000), (1000, 1001), (1001, n)):
        acc.update(y[a:b], p[a:b], groups=codes[a:b])
    close(acc.result(), want, 1e-12)
    np.testing.assert_array_equal(acc.counts, np.bincount(codes))
    copy = pickle.loads(pickle.dumps(acc))
    assert same_bits(copy.result(), acc.result())
    with pytest.raises(ValueError, match=r"'groups'.*found 9 at index \(2,\)"):
        crossent.log_loss(y[:4], p[:4], groups=[0, 1, 9, 1], n_groups=4, labels=[0, 1, 2])
    with pytest.raises(ValueError, match=r"'groups' must hold one code per row"):
        crossent.log_loss(y, p, groups=codes[:10])
    with pytest.raises(ValueError, match="'n_groups' is only used with 'groups'"):
        crossent.log_loss(y, p, n_groups=3)  # type: ignore[call-overload]


# --- dask ----------------------------------------------------------------------------------


def test_dask_functions_take_groups_chunked_like_their_operands(
    rng: np.random.Generator,
) -> None:
    da = pytest.importorskip("dask.array")
    import crossent.dask as cd

    n, g = 10_000, 17
    p = rng.uniform(0.01, 0.99, n)
    y = rng.uniform(size=n)
    codes = rng.integers(0, g, n)
    lazy = cd.binary_cross_entropy(
        da.from_array(p, chunks=3000),
        da.from_array(y, chunks=3000),
        groups=da.from_array(codes, chunks=1000),
    )
    close(lazy.compute(), crossent.binary_cross_entropy(p, y, groups=codes), 1e-12)
    lazy = cd.binary_cross_entropy_with_logits(
        da.from_array(p, chunks=2500),
        y,
        pos_weight=[2.0],
        groups=codes,
        n_groups=20,
        reduction="sum",
    )
    assert lazy.shape == (20,)
    want = crossent.binary_cross_entropy_with_logits(
        p, y, pos_weight=[2.0], groups=codes, n_groups=20, reduction="sum"
    )
    close(lazy.compute(), want, 1e-12)

    x = rng.normal(size=(4000, 5))
    labels = rng.integers(0, 5, 4000)
    lazy = cd.softmax_cross_entropy(
        da.from_array(x, chunks=(1000, 5)), labels, groups=da.from_array(codes[:4000], chunks=700)
    )
    close(lazy.compute(), crossent.softmax_cross_entropy(x, labels, groups=codes[:4000]), 1e-12)
    probs = rng.dirichlet(np.ones(5), 4000)
    lazy = cd.log_loss(
        da.from_array(labels, chunks=900),
        da.from_array(probs, chunks=(1500, 5)),
        labels=[0, 1, 2, 3, 4],
        groups=codes[:4000],
    )
    close(lazy.compute(), crossent.log_loss(labels, probs, groups=codes[:4000]), 1e-12)

    bad = codes.copy()
    bad[7777] = -1
    with pytest.raises(ValueError, match=r"'groups'.*at index \(7777,\)"):
        cd.binary_cross_entropy(da.from_array(p, chunks=3000), y, groups=bad).compute()
    with pytest.raises(ValueError, match="reduction='none'"):
        cd.binary_cross_entropy(p, y, groups=codes, reduction="none")


def test_each_group_is_the_sequential_sum_of_its_losses(
    rng: np.random.Generator, threads: None
) -> None:
    # np.add.at adds unbuffered, in index order: the element-order sum promised per group.
    n = 300_000
    x = rng.normal(size=n).astype(np.float32)
    y = rng.uniform(size=n).astype(np.float32)
    codes = rng.integers(0, 777, n).astype(np.int16)
    losses = crossent.binary_cross_entropy_with_logits(x, y, reduction="none")
    want = np.zeros(777)
    np.add.at(want, codes, losses.astype(np.float64))
    for threads_ in (1, 2):
        crossent.set_num_threads(threads_)
        got = crossent.binary_cross_entropy_with_logits(x, y, groups=codes, reduction="sum")
        assert same_bits(got, want)
    rows = rng.normal(size=(50_000, 4))
    labels = rng.integers(0, 4, 50_000)
    row_codes = rng.integers(0, 99, 50_000)
    per_row = crossent.softmax_cross_entropy(rows, labels, reduction="none")
    want = np.zeros(99)
    np.add.at(want, row_codes, per_row)
    got = crossent.softmax_cross_entropy(rows, labels, groups=row_codes, reduction="sum")
    assert same_bits(got, want)
