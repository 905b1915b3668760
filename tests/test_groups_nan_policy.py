"""``groups=`` with ``nan_policy=``: each group's loss is that of the ungrouped call over the
group's members. Under ``"omit"`` an element (a row for softmax cross-entropy) with a NaN
operand leaves its group's sum, count and weight sum; under ``"raise"`` the first NaN raises
as in the ungrouped call. References: a float64 NumPy formula over the elements without NaN,
grouped by pandas (``numpy.average`` per group with ``sample_weight``); and the property that
omitting is exactly (bit for bit) the grouped call over the elements kept."""

from __future__ import annotations

import itertools
import pickle
from typing import Any

import numpy as np
import pandas as pd
import pytest
from support import same_bits, threads

import crossent

F64 = np.float64
N = 2 * crossent.BLOCK + 777  # two blocks of the flat reduction and a partial one
G = 17


def with_nan(a: np.ndarray, rng: np.random.Generator, rate: float) -> np.ndarray:
    a = np.array(a, dtype=F64, copy=True)
    a[rng.uniform(size=a.shape) < rate] = np.nan
    return a


def pandas_groups(
    loss: np.ndarray, codes: np.ndarray, n: int, reduction: str, sw: Any = None
) -> Any:
    """Each group's sum, mean, or with `sw` its ``numpy.average(loss, weights=sw)`` (the
    mean of scikit-learn's ``sample_weight``: sum(sw * loss) / sum(sw)), over
    the rows given (float64), by pandas ``groupby``; a group with no row gives NaN (a mean)
    or 0 (a sum)."""
    frame = pd.DataFrame({"loss": np.asarray(loss, F64), "g": np.asarray(codes)})
    by = frame.groupby("g")
    if reduction == "sum":
        return by["loss"].sum().reindex(range(n), fill_value=0.0).to_numpy(F64)
    if sw is None:
        return by["loss"].mean().reindex(range(n)).to_numpy(F64)
    frame["sw"] = np.asarray(sw, F64)
    out = pd.Series(
        {g: np.average(f["loss"], weights=f["sw"]) for g, f in frame.groupby("g")}, dtype=F64
    )
    return out.reindex(range(n)).to_numpy(F64)


# --- binary cross-entropy ---------------------------------------------------------------------


def bce_f64(logits: bool, x: Any, y: Any, w: Any = None, pw: Any = None) -> Any:
    """PyTorch's per-element losses, in float64."""
    x, y = np.asarray(x, F64), np.asarray(y, F64)
    if logits:
        c = 1.0 if pw is None else np.asarray(pw, F64)
        log_sig = np.minimum(x, 0) - np.log1p(np.exp(-np.abs(x)))
        loss = (1 - y) * x - (1 + (c - 1) * y) * log_sig
    else:
        loss = -(y * np.maximum(np.log(x), -100) + (1 - y) * np.maximum(np.log1p(-x), -100))
    return loss if w is None else loss * np.asarray(w, F64)


BCE: dict[str, tuple[Any, Any, bool]] = {
    "probabilities": (
        crossent.binary_cross_entropy,
        crossent.BinaryCrossEntropyAccumulator,
        False,
    ),
    "logits": (
        crossent.binary_cross_entropy_with_logits,
        crossent.BinaryCrossEntropyWithLogitsAccumulator,
        True,
    ),
}


def bce_data(
    seed: int, logits: bool, target: str, dtype: Any, rate: float = 0.01
) -> tuple[dict[str, Any], np.ndarray]:
    """Operands of shape (3, N // 3), each with NaN of its own (`weight` and `pos_weight` one
    per column, broadcast), and group codes; group 4 is made entirely of NaN inputs and the
    largest group (G - 1) is held by NaN inputs only."""
    rng = np.random.default_rng(seed)
    shape = (3, N // 3)
    x = rng.standard_normal(shape) * 3 if logits else rng.uniform(0.01, 0.99, shape)
    if target == "soft":
        y: np.ndarray = with_nan(rng.uniform(0, 1, shape), rng, rate)
    elif target == "hard-float":
        y = with_nan((rng.uniform(size=shape) < 0.5).astype(F64), rng, rate)
    else:
        y = (rng.uniform(size=shape) < 0.5).astype(target)
    codes = rng.integers(0, G - 1, shape)
    x = with_nan(x, rng, rate)
    x[codes == 4] = np.nan
    codes[0, -5:] = G - 1
    x[0, -5:] = np.nan
    ops: dict[str, Any] = {
        "input": x.astype(dtype),
        "target": y.astype(dtype) if y.dtype.kind == "f" else y,
        "weight": with_nan(rng.uniform(0.5, 2.0, shape[1]), rng, rate).astype(dtype),
        "sample_weight": with_nan(rng.uniform(0.1, 3.0, shape), rng, rate).astype(dtype),
    }
    if logits:
        ops["pos_weight"] = with_nan(rng.uniform(0.5, 3.0, shape[1]), rng, rate).astype(dtype)
    return ops, codes


def bce_kept(ops: dict[str, Any], kw: dict[str, Any]) -> np.ndarray:
    """Where no operand of the call (input, target and those in `kw`) is NaN."""
    shape = np.shape(ops["input"])
    arrays = [ops["input"], ops["target"], *kw.values()]
    nan = [np.isnan(np.broadcast_to(np.asarray(a, F64), shape)) for a in arrays]
    keep: np.ndarray = ~np.logical_or.reduce(nan)
    return keep


def full(a: Any, shape: tuple[int, ...], keep: np.ndarray) -> np.ndarray:
    """`a` broadcast to `shape`, at the elements kept (a 1-D array)."""
    out: np.ndarray = np.broadcast_to(a, shape)[keep]
    return out


@pytest.mark.parametrize("name", list(BCE))
@pytest.mark.parametrize("target", ["soft", "hard-float", "uint8"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bce_omit_per_group_matches_pandas_on_the_elements_kept(
    name: str, target: str, dtype: Any
) -> None:
    fn, _, logits = BCE[name]
    ops, codes = bce_data(1, logits, target, dtype)
    x, y = ops["input"], ops["target"]
    shape = x.shape
    rtol = 2e-5 if dtype == np.float32 else 1e-12
    optional = [k for k in ops if k not in ("input", "target")]
    # Every combination of the optional operands (each holding NaN of its own).
    for mask in range(1 << len(optional)):
        kw = {k: ops[k] for i, k in enumerate(optional) if mask >> i & 1}
        keep = bce_kept(ops, kw)
        w, pw = (full(kw[k], shape, keep) if k in kw else None for k in ("weight", "pos_weight"))
        loss = bce_f64(logits, x[keep], y[keep], w, pw)
        sw = full(kw["sample_weight"], shape, keep) if "sample_weight" in kw else None
        for reduction in ("mean", "sum"):
            if reduction == "sum" and sw is not None:
                want = pandas_groups(loss * sw, codes[keep], G, "sum")
            else:
                want = pandas_groups(loss, codes[keep], G, reduction, sw)
            for n in (1, 2):
                with threads(n):
                    got = fn(x, y, groups=codes, reduction=reduction, nan_policy="omit", **kw)
                np.testing.assert_allclose(got, want, rtol=rtol, atol=0, err_msg=f"{kw} {n}")
            # The groups left with nothing: NaN for a mean (0/0), 0 for a sum, as the
            # ungrouped call on an empty selection.
            for g in (4, G - 1):
                assert np.isnan(got[g]) if reduction == "mean" else got[g] == 0.0


@pytest.mark.parametrize("name", list(BCE))
@pytest.mark.parametrize("target", ["soft", "hard-float", "bool"])
def test_bce_omit_is_the_grouped_call_on_the_elements_kept_bit_for_bit(
    name: str, target: str
) -> None:
    """Each group sums its elements in element order: leaving one out is exactly the call
    without it, for any thread count; and each group is the ungrouped "omit" call over the
    group's members (to rounding: the ungrouped call sums in lanes)."""
    fn, _, logits = BCE[name]
    ops, codes = bce_data(2, logits, target, np.float32)
    x, y = ops["input"], ops["target"]
    kw = {k: v for k, v in ops.items() if k not in ("input", "target")}
    keep = bce_kept(ops, kw)
    kept = {k: full(v, x.shape, keep) for k, v in kw.items()}
    for reduction in ("mean", "sum"):
        want = fn(x[keep], y[keep], groups=codes[keep], n_groups=G, reduction=reduction, **kept)
        for n in (1, 2):
            with threads(n):
                got = fn(x, y, groups=codes, reduction=reduction, nan_policy="omit", **kw)
            assert same_bits(got, want), (reduction, n)
        for g in (0, 7, 15):
            member = codes == g
            one = fn(
                x[member],
                y[member],
                reduction=reduction,
                nan_policy="omit",
                **{k: full(v, x.shape, member) for k, v in kw.items()},
            )
            assert got[g] == pytest.approx(one, rel=1e-12)


@pytest.mark.parametrize("name", list(BCE))
def test_bce_raise_per_group_names_argument_and_first_position(name: str) -> None:
    fn, acc_type, logits = BCE[name]
    ops, codes = bce_data(3, logits, "soft", np.float64, rate=0.0)
    ops["input"] = np.where(np.isnan(ops["input"]), 0.5, ops["input"])
    kw = {k: v for k, v in ops.items() if k not in ("input", "target")}
    x, y = ops["input"], ops["target"]
    clean = fn(x, y, groups=codes, **kw)
    # Without NaN, "raise" and "omit" give the bits of "propagate".
    for policy in ("raise", "omit"):
        assert same_bits(fn(x, y, groups=codes, nan_policy=policy, **kw), clean)
    for arg in ops:
        bad = {k: np.array(v, copy=True) for k, v in ops.items()}
        a = bad[arg]
        at = (a.ndim - 1) * (1,) + (a.shape[-1] - 3,)
        a[at] = np.nan
        a[(a.ndim - 1) * (2,) + (a.shape[-1] - 1,)] = np.nan  # later in the flat order
        bx, by = bad.pop("input"), bad.pop("target")
        for n in (1, 2):
            with threads(n), pytest.raises(crossent.DomainError) as info:
                fn(bx, by, groups=codes, nan_policy="raise", **bad)
            assert (info.value.argument, info.value.index) == (arg, at)
            assert "nan_policy='raise'" in str(info.value)
        with pytest.raises(crossent.DomainError) as plain:
            fn(bx, by, nan_policy="raise", **bad)
        assert str(plain.value) == str(info.value)
        # An accumulator raises too, and is left as it was (pos_weight is fixed in it).
        if arg == "pos_weight":
            continue
        fixed = {"pos_weight": bad.pop("pos_weight")} if logits else {}
        acc = acc_type(nan_policy="raise", **fixed)
        acc.update(x, y, groups=codes, **{k: ops[k] for k in bad})
        before = acc.result()
        with pytest.raises(crossent.DomainError) as info:
            acc.update(bx, by, groups=codes, **bad)
        assert (info.value.argument, info.value.index) == (arg, at)
        assert same_bits(acc.result(), before)


@pytest.mark.parametrize("name", list(BCE))
def test_bce_accumulators_omit_per_group(name: str) -> None:
    """Batches cut anywhere give the bits of one call; `counts` are the elements kept; merge
    adds the states; pickling keeps `nan_policy` and the state."""
    fn, acc_type, logits = BCE[name]
    ops, codes = bce_data(4, logits, "soft", np.float32)
    fixed = {"pos_weight": np.float32(1.5)} if logits else {}
    # Flat operands, each element with its own weight and sample weight.
    cf = codes.ravel()
    x, y, sw = (ops[k].ravel() for k in ("input", "target", "sample_weight"))
    w = np.broadcast_to(ops["weight"], ops["input"].shape).ravel()
    whole = fn(x, y, weight=w, sample_weight=sw, groups=cf, nan_policy="omit", **fixed)
    acc = acc_type(nan_policy="omit", **fixed)
    assert acc.nan_policy == "omit"
    for a, b in itertools.pairwise([0, 1, 999, crossent.BLOCK + 5, x.size]):
        acc.update(x[a:b], y[a:b], weight=w[a:b], sample_weight=sw[a:b], groups=cf[a:b])
    assert same_bits(acc.result(), whole)
    keep = bce_kept({"input": x, "target": y}, {"weight": w, "sample_weight": sw})
    np.testing.assert_array_equal(acc.counts, np.bincount(cf[keep], minlength=G))
    assert np.isnan(acc.result()[4]) and np.isnan(acc.result()[G - 1])
    back = pickle.loads(pickle.dumps(acc))
    assert back.nan_policy == "omit" and "nan_policy='omit'" in repr(back)
    assert same_bits(back.result(), whole)
    # Merged states: the same per-group sums, added in another order.
    half = x.size // 2
    first, second = acc_type(nan_policy="omit", **fixed), acc_type(nan_policy="omit", **fixed)
    for part, sl in ((first, slice(None, half)), (second, slice(half, None))):
        part.update(x[sl], y[sl], weight=w[sl], sample_weight=sw[sl], groups=cf[sl])
    first.merge(second)
    np.testing.assert_allclose(first.result(), whole, rtol=1e-12)
    np.testing.assert_array_equal(first.counts, acc.counts)
    # A fixed number of groups from the start: the same bits.
    fixed_n = acc_type(nan_policy="omit", n_groups=G, **fixed)
    fixed_n.update(x, y, weight=w, sample_weight=sw, groups=cf)
    assert same_bits(fixed_n.result(), whole)


# --- softmax cross-entropy --------------------------------------------------------------------


def softmax_f64(
    x: np.ndarray, t: np.ndarray, w: Any = None, eps: float = 0.0, ignore: int = -100
) -> tuple[np.ndarray, np.ndarray]:
    """Per-row losses and PyTorch's mean denominators (w[y], 0 for an ignored row; 1 per row
    for probabilities), in float64, classes along the last axis."""
    x = np.asarray(x, F64)
    rows, c = x.shape
    m = np.max(x, axis=1, keepdims=True)
    nll = m + np.log(np.exp(x - m).sum(axis=1, keepdims=True)) - x
    wc = np.ones(c) if w is None else np.asarray(w, F64)
    if t.dtype.kind == "f":
        tp = (1 - eps) * np.asarray(t, F64) + eps / c
        return (wc * tp * nll).sum(axis=1), np.ones(rows)
    valid = t != ignore
    yy = np.where(valid, t, 0)
    loss = (1 - eps) * wc[yy] * nll[np.arange(rows), yy] + eps / c * (wc * nll).sum(axis=1)
    return np.where(valid, loss, 0.0), np.where(valid, wc[yy], 0.0)


def softmax_data(
    seed: int, classes: int, rows: int, target: str, dtype: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Logits with NaN in some rows, a target (labels with ignored rows, or probabilities with
    NaN of their own), sample weights with NaN, and codes: group 2 is made entirely of NaN
    rows, the largest group (G - 1) of ignored or NaN rows only."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, classes)) * 3
    for r in range(0, rows, 7):
        x[r, rng.integers(classes)] = np.nan
    codes = rng.integers(0, G - 1, rows)
    x[codes == 2, 0] = np.nan
    codes[-3:] = G - 1
    x[-1, -1] = np.nan
    t: np.ndarray
    if target == "labels":
        t = rng.integers(0, classes, rows)
        t[1::9] = -100
        t[-3:-1] = -100
    else:
        u = rng.uniform(0.05, 1, (rows, classes))
        t = with_nan(u / u.sum(axis=1, keepdims=True), rng, 0.2 / classes).astype(dtype)
        t[-3:-1, 0] = np.nan
    sw = with_nan(rng.uniform(0.1, 2, rows), rng, 0.05)
    return x.astype(dtype), t, sw, codes


@pytest.mark.parametrize("target", ["labels", "probabilities"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "classes", [7, crossent.CHUNK + 9], ids=["short-rows", "rows-over-a-chunk"]
)
def test_softmax_omit_per_group_matches_pandas(target: str, dtype: Any, classes: int) -> None:
    rows = 3000 if classes < 100 else 40
    x, t, sw, codes = softmax_data(5, classes, rows, target, dtype)
    w = np.random.default_rng(6).uniform(0.5, 2.0, classes)
    rtol = 2e-5 if dtype == np.float32 else 1e-11
    nan_row = np.isnan(x).any(axis=1)
    if target == "probabilities":
        nan_row |= np.isnan(t).any(axis=1)
    cases: list[dict[str, Any]] = [
        {},
        {"weight": w},
        {"label_smoothing": 0.1, "weight": w},
        {"sample_weight": sw, "weight": w},
    ]
    for kw in cases:
        keep = ~(nan_row | (np.isnan(sw) if "sample_weight" in kw else False))
        loss, den = softmax_f64(x[keep], t[keep], kw.get("weight"), kw.get("label_smoothing", 0))
        counted = den != 0  # not ignored
        if "sample_weight" in kw:
            mean = pandas_groups(loss[counted], codes[keep][counted], G, "mean", sw[keep][counted])
            loss = loss * sw[keep]
        else:
            # PyTorch's mean: sum(loss) / sum(w[y]) over the rows counted.
            s = pandas_groups(loss, codes[keep], G, "sum")
            with np.errstate(invalid="ignore"):  # 0/0 for the groups left with nothing
                mean = s / pandas_groups(den, codes[keep], G, "sum")
        total = pandas_groups(loss, codes[keep], G, "sum")
        for n in (1, 2):
            with threads(n):
                got = np.asarray(
                    crossent.softmax_cross_entropy(x, t, groups=codes, nan_policy="omit", **kw)
                )
                got_sum = np.asarray(
                    crossent.softmax_cross_entropy(
                        x, t, groups=codes, reduction="sum", nan_policy="omit", **kw
                    )
                )
            np.testing.assert_allclose(got, mean, rtol=rtol, atol=0, err_msg=str(kw))
            np.testing.assert_allclose(got_sum, total, rtol=rtol, atol=1e-300, err_msg=str(kw))
        assert got.shape == (G,) and np.isnan(got[2]) and np.isnan(got[G - 1])
        assert got_sum[2] == 0.0 and got_sum[G - 1] == 0.0
        # Bit for bit the grouped call on the rows kept.
        want = crossent.softmax_cross_entropy(
            x[keep],
            t[keep],
            groups=codes[keep],
            n_groups=G,
            **{k: (v[keep] if k == "sample_weight" else v) for k, v in kw.items()},
        )
        assert same_bits(got, want), kw


def test_softmax_groups_exist_for_their_codes_whatever_the_rows_hold() -> None:
    """The number of groups is the largest code + 1, also when that group's rows are all
    ignored or all NaN (its mean is then 0/0), as for binary cross-entropy."""
    x = np.array([[1.0, 2.0], [0.5, 0.1], [3.0, np.nan]])
    got = crossent.softmax_cross_entropy(x[:2], [1, -100], groups=[0, 1])
    assert got.shape == (2,) and np.isnan(got[1])
    got = crossent.softmax_cross_entropy(x, [1, 0, 0], groups=[0, 0, 2], nan_policy="omit")
    assert got.shape == (3,) and np.isnan(got[1:]).all()
    acc = crossent.SoftmaxCrossEntropyAccumulator(nan_policy="omit", reduction="sum")
    acc.update(x, [1, 0, 0], groups=[0, 0, 2])
    np.testing.assert_array_equal(acc.counts, [2, 0, 0])
    assert np.asarray(acc.result())[2] == 0.0
    wide = np.zeros((2, crossent.CHUNK + 1))
    wide[1, 5] = np.nan
    got = crossent.softmax_cross_entropy(wide, [0, 1], groups=[0, 1], nan_policy="omit")
    assert got.shape == (2,) and np.isnan(got[1]) and np.isfinite(got[0])


@pytest.mark.parametrize("target", ["labels", "probabilities"])
def test_softmax_raise_per_group_names_argument_and_first_position(target: str) -> None:
    x, t, sw, codes = softmax_data(7, 6, 2000, target, np.float64)
    x = np.where(np.isnan(x), 0.0, x)
    if target == "probabilities":
        t = np.where(np.isnan(t), 0.1, t)
    sw = np.where(np.isnan(sw), 1.0, sw)
    w = np.linspace(0.5, 1.5, 6)

    def check(arg: str, index: tuple[int, ...], **kw: Any) -> None:
        xx, tt = kw.pop("x", x), kw.pop("t", t)
        for n in (1, 2):
            with threads(n), pytest.raises(crossent.DomainError) as info:
                crossent.softmax_cross_entropy(xx, tt, groups=codes, nan_policy="raise", **kw)
            assert (info.value.argument, info.value.index) == (arg, index)
        with pytest.raises(crossent.DomainError) as plain:
            crossent.softmax_cross_entropy(xx, tt, nan_policy="raise", **kw)
        assert str(plain.value) == str(info.value)

    bx = x.copy()
    bx[1500, 2] = bx[40, 5] = np.nan
    check("logits", (40, 5), x=bx, sample_weight=sw)
    bsw = sw.copy()
    bsw[33] = np.nan
    check("sample_weight", (33,), sample_weight=bsw, weight=w)
    bw = w.copy()
    bw[4] = np.nan
    check("weight", (4,), weight=bw)
    if target == "probabilities":
        bt = t.copy()
        bt[20, 1] = np.nan
        check("target", (20, 1), t=bt, sample_weight=bsw)
    clean = crossent.softmax_cross_entropy(x, t, groups=codes, weight=w, sample_weight=sw)
    for policy in ("raise", "omit"):
        got = crossent.softmax_cross_entropy(
            x, t, groups=codes, weight=w, sample_weight=sw, nan_policy=policy
        )
        assert same_bits(got, clean)


def test_softmax_accumulator_omit_per_group() -> None:
    """Batches cut anywhere give the bits of one call (NaN logits and NaN sample weights left
    out); `counts` are the rows kept; merge adds the states; pickling keeps `nan_policy`."""
    x, t, sw, codes = softmax_data(8, 9, 5000, "labels", np.float32)
    w = np.random.default_rng(9).uniform(0.5, 2.0, 9)
    kw: dict[str, Any] = {"weight": w, "nan_policy": "omit"}
    whole = crossent.softmax_cross_entropy(x, t, sample_weight=sw, groups=codes, **kw)
    acc = crossent.SoftmaxCrossEntropyAccumulator(**kw)
    for a, b in itertools.pairwise([0, 13, 2000, 5000]):
        acc.update(x[a:b], t[a:b], sample_weight=sw[a:b], groups=codes[a:b])
    assert same_bits(acc.result(), whole)
    keep = ~np.isnan(x).any(axis=1) & ~np.isnan(sw) & (t != -100)
    np.testing.assert_array_equal(acc.counts, np.bincount(codes[keep], minlength=G))
    back = pickle.loads(pickle.dumps(acc))
    assert back.nan_policy == "omit" and same_bits(back.result(), whole)
    other = crossent.SoftmaxCrossEntropyAccumulator(**kw)
    other.update(x[:2500], t[:2500], sample_weight=sw[:2500], groups=codes[:2500])
    rest = crossent.SoftmaxCrossEntropyAccumulator(**kw)
    rest.update(x[2500:], t[2500:], sample_weight=sw[2500:], groups=codes[2500:])
    other.merge(rest)
    np.testing.assert_allclose(other.result(), whole, rtol=1e-12)
    np.testing.assert_array_equal(other.counts, acc.counts)
    strict = crossent.SoftmaxCrossEntropyAccumulator(nan_policy="raise", n_groups=G)
    with pytest.raises(crossent.DomainError):
        strict.update(x, t, groups=codes)
    assert strict.count == 0 and not np.asarray(strict.counts).any()


# --- Arrow streams and dask -------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 2])
def test_chunked_arrow_streams_with_nulls_follow_nan_policy(n: int) -> None:
    """A null in a chunked float column is read as NaN, so that `nan_policy` decides, with the
    bits of the NumPy call holding NaN there; "raise" names the position in the whole column."""
    pa = pytest.importorskip("pyarrow")
    rng = np.random.default_rng(10)
    p = rng.uniform(0.01, 0.99, N)
    y = (rng.random(N) < 0.5).astype(np.uint8)
    sw = rng.uniform(0.1, 2.0, N)
    codes = rng.integers(0, G, N)
    nulls = rng.random(N) < 0.01
    nulls[crossent.BLOCK + 3] = True
    cuts = [0, 100, crossent.BLOCK, crossent.BLOCK + 50, N]

    def chunked(a: np.ndarray, mask: Any = None) -> Any:
        return pa.chunked_array(
            [
                pa.array(a[s:e], mask=None if mask is None else mask[s:e])
                for s, e in itertools.pairwise(cuts)
            ]
        )

    with_nan = np.where(nulls, np.nan, p)
    with threads(n):
        cases: list[dict[str, Any]] = [{}, {"sample_weight": sw}]
        for kw in cases:
            got = crossent.binary_cross_entropy(
                chunked(p, nulls), y, groups=chunked(codes), nan_policy="omit", **kw
            )
            want = crossent.binary_cross_entropy(with_nan, y, groups=codes, nan_policy="omit", **kw)
            assert same_bits(got, want)
        keep = ~nulls
        np.testing.assert_allclose(
            got,
            pandas_groups(bce_f64(False, p[keep], y[keep]), codes[keep], G, "mean", sw[keep]),
            rtol=1e-12,
        )
        logits = crossent.binary_cross_entropy_with_logits(
            chunked(p, nulls), y, groups=chunked(codes), nan_policy="omit"
        )
        assert same_bits(
            logits,
            crossent.binary_cross_entropy_with_logits(with_nan, y, groups=codes, nan_policy="omit"),
        )
        first = int(np.flatnonzero(nulls)[0])
        with pytest.raises(crossent.DomainError) as info:
            crossent.binary_cross_entropy(
                chunked(p, nulls), y, groups=chunked(codes), nan_policy="raise"
            )
        assert (info.value.argument, info.value.index) == ("input", (first,))
        later = np.zeros(N, bool)
        later[crossent.BLOCK + 60] = True
        with pytest.raises(crossent.DomainError) as info:
            crossent.binary_cross_entropy(
                chunked(p, later), y, groups=chunked(codes), nan_policy="raise"
            )
        assert (info.value.argument, info.value.index) == ("input", (crossent.BLOCK + 60,))
    # Softmax rows as fixed-size lists, a null row read as NaN.
    c = 4
    rows = 3000
    x = rng.normal(0, 2, (rows, c))
    labels = rng.integers(0, c, rows)
    rcodes = rng.integers(0, G, rows)
    null_rows = rng.random(rows) < 0.02
    bounds = [0, 700, rows]
    fsl = pa.chunked_array(
        [
            pa.FixedSizeListArray.from_arrays(
                pa.array(x[s:e].ravel()), c, mask=pa.array(null_rows[s:e])
            )
            for s, e in itertools.pairwise(bounds)
        ]
    )
    got = crossent.softmax_cross_entropy(fsl, labels, groups=rcodes, nan_policy="omit")
    xn = np.where(null_rows[:, None], np.nan, x)
    assert same_bits(
        got, crossent.softmax_cross_entropy(xn, labels, groups=rcodes, nan_policy="omit")
    )


def test_dask_groups_take_nan_policy() -> None:
    da = pytest.importorskip("dask.array")
    import crossent.dask

    ops, codes = bce_data(11, True, "soft", np.float64)
    x, y, sw = ops["input"], ops["target"], ops["sample_weight"]
    chunks = (1, 1000)
    lx, ly, lsw, lg = (da.from_array(a, chunks=chunks) for a in (x, y, sw, codes))
    for reduction in ("mean", "sum"):
        got = crossent.dask.binary_cross_entropy_with_logits(
            lx, ly, sample_weight=lsw, groups=lg, reduction=reduction, nan_policy="omit"
        ).compute()
        want = crossent.binary_cross_entropy_with_logits(
            x, y, sample_weight=sw, groups=codes, reduction=reduction, nan_policy="omit"
        )
        np.testing.assert_allclose(got, want, rtol=1e-12)
    with pytest.raises(crossent.DomainError):
        crossent.dask.binary_cross_entropy_with_logits(
            lx, ly, groups=lg, nan_policy="raise"
        ).compute()
    sx, st, ssw, scodes = softmax_data(12, 5, 2000, "labels", np.float64)
    got = crossent.dask.softmax_cross_entropy(
        da.from_array(sx, chunks=(500, 5)),
        da.from_array(st, chunks=500),
        sample_weight=da.from_array(ssw, chunks=500),
        groups=da.from_array(scodes, chunks=500),
        nan_policy="omit",
    ).compute()
    want = crossent.softmax_cross_entropy(
        sx, st, sample_weight=ssw, groups=scodes, nan_policy="omit"
    )
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_a_wrong_nan_policy_with_groups_is_still_refused() -> None:
    drop: Any = "drop"
    none: Any = None
    with pytest.raises(ValueError, match="'nan_policy' must be 'propagate', 'omit' or 'raise'"):
        crossent.binary_cross_entropy([0.5], [1.0], groups=[0], nan_policy=drop)
    with pytest.raises(TypeError, match="'nan_policy' must be"):
        crossent.softmax_cross_entropy([[0.5, 1.0]], [1], groups=[0], nan_policy=none)
