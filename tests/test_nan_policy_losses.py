"""``nan_policy=`` on binary cross-entropy (probabilities and logits), softmax cross-entropy,
their accumulators and ``crossent.dask``, against float64 NumPy references computed on the
elements (rows) without NaN, with ``sample_weight`` and PyTorch's weights."""

from __future__ import annotations

import itertools
import pickle
from typing import Any

import numpy as np
import pytest
from support import threads

import crossent

F64 = np.float64
N = crossent.BLOCK * 3 + 101  # several blocks of the flat reduction, and a partial one


def with_nan(a: np.ndarray, rng: np.random.Generator, rate: float) -> np.ndarray:
    a = np.array(a, copy=True)
    a[rng.uniform(size=a.shape) < rate] = np.nan
    return a


# --- binary cross-entropy ---------------------------------------------------------------------


def bce_losses(logits: bool, x: Any, y: Any, w: Any = None, pw: Any = None) -> np.ndarray:
    """PyTorch's per-element losses, in float64."""
    x, y = np.asarray(x, F64), np.asarray(y, F64)
    with np.errstate(all="ignore"):
        if logits:
            c = 1.0 if pw is None else np.asarray(pw, F64)
            log_sig = np.minimum(x, 0) - np.log1p(np.exp(-np.abs(x)))
            loss = (1 - y) * x - (1 + (c - 1) * y) * log_sig
        else:
            loss = -(y * np.maximum(np.log(x), -100) + (1 - y) * np.maximum(np.log1p(-x), -100))
    out: np.ndarray = loss if w is None else loss * np.asarray(w, F64)
    return out


def bce_omitted(logits: bool, x: Any, y: Any, w: Any, pw: Any, sw: Any, reduction: str) -> float:
    """The float64 reference of ``nan_policy="omit"``: the mean (or sum) over the elements
    none of whose operands is NaN; with ``sw``, ``sum(sw * loss) / sum(sw)`` over them."""
    shape = np.shape(x)
    ops = [np.broadcast_to(np.asarray(a, F64), shape) for a in (x, y, w, pw, sw) if a is not None]
    keep = ~np.logical_or.reduce([np.isnan(a) for a in ops])
    b = [None if a is None else np.broadcast_to(np.asarray(a, F64), shape)[keep] for a in (w, pw)]
    loss = bce_losses(logits, np.asarray(x, F64)[keep], np.asarray(y, F64)[keep], *b)
    if sw is not None:
        s = np.broadcast_to(np.asarray(sw, F64), shape)[keep]
        loss = loss * s
        return float(loss.sum() if reduction == "sum" else loss.sum() / s.sum())
    return float(loss.sum() if reduction == "sum" else loss.sum() / keep.sum())


def bce_operands(
    rng: np.random.Generator, logits: bool, target: str, dtype: Any, rate: float
) -> dict[str, Any]:
    shape = (3, N // 3)
    x = rng.standard_normal(shape) * 3 if logits else rng.uniform(0.01, 0.99, shape)
    if target == "soft":
        y: np.ndarray = rng.uniform(0, 1, shape)
    elif target == "hard-float":
        y = (rng.uniform(size=shape) < 0.5).astype(F64)
    else:
        y = (rng.uniform(size=shape) < 0.5).astype(target)
    ops: dict[str, Any] = {"input": with_nan(x, rng, rate).astype(dtype)}
    ops["target"] = with_nan(y, rng, rate).astype(dtype) if y.dtype.kind == "f" else y
    ops["weight"] = with_nan(rng.uniform(0.5, 2.0, shape[1]), rng, rate)  # broadcast
    ops["sample_weight"] = with_nan(rng.uniform(0.0, 3.0, shape), rng, rate)
    if logits:
        ops["pos_weight"] = with_nan(rng.uniform(0.5, 3.0, shape[1]), rng, rate)
    return ops


BCE: dict[str, tuple[Any, bool]] = {
    "probabilities": (crossent.binary_cross_entropy, False),
    "logits": (crossent.binary_cross_entropy_with_logits, True),
}


@pytest.mark.parametrize("name", list(BCE))
@pytest.mark.parametrize("target", ["soft", "hard-float", "uint8", "bool"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bce_omit_matches_float64_reference_on_the_kept_elements(
    name: str, target: str, dtype: Any
) -> None:
    fn, logits = BCE[name]
    rng = np.random.default_rng(10)
    ops = bce_operands(rng, logits, target, dtype, 0.01)
    x, y = ops.pop("input"), ops.pop("target")
    rtol = 2e-6 if dtype == np.float32 else 1e-12
    # Every combination of the optional operands (each holding NaN of its own).
    names = list(ops)
    for mask in range(1 << len(names)):
        kw = {k: ops[k] for i, k in enumerate(names) if mask >> i & 1}
        for reduction in ("mean", "sum"):
            want = bce_omitted(
                logits,
                x,
                y,
                kw.get("weight"),
                kw.get("pos_weight"),
                kw.get("sample_weight"),
                reduction,
            )
            got = []
            for n in (1, 2, 3):
                with threads(n):
                    got.append(fn(x, y, reduction=reduction, nan_policy="omit", **kw))
            assert got[0] == pytest.approx(want, rel=rtol), (kw.keys(), reduction)
            # Any thread count: the same bits.
            assert got[1] == got[0] and got[2] == got[0]
        # "none": the losses of the plain call, NaN where an element is left out.
        plain = fn(x, y, reduction="none", **kw)
        omit = fn(x, y, reduction="none", nan_policy="omit", **kw)
        # Equal values, NaN at the same places (a NaN's sign bit is not part of the promise).
        np.testing.assert_array_equal(plain, omit)
        assert np.isnan(fn(x, y, **kw))  # propagate (the default)


@pytest.mark.parametrize("name", list(BCE))
def test_bce_omit_without_nan_is_the_plain_call(name: str) -> None:
    fn, logits = BCE[name]
    rng = np.random.default_rng(11)
    ops = bce_operands(rng, logits, "soft", np.float32, 0.0)
    x, y = ops.pop("input"), ops.pop("target")
    ops.pop("sample_weight")
    for policy in ("omit", "raise"):
        for reduction in ("mean", "sum"):
            assert fn(x, y, reduction=reduction, nan_policy=policy, **ops) == fn(
                x, y, reduction=reduction, **ops
            )


def test_bce_omit_on_strided_views_and_scalars() -> None:
    rng = np.random.default_rng(12)
    base = with_nan(rng.uniform(0.05, 0.95, (40, 30)), rng, 0.1)
    y = with_nan(rng.uniform(0, 1, (30, 40)), rng, 0.1)
    x = base.T[::2]  # a transposed, strided view
    t = np.asfortranarray(y)[::2]  # another layout
    assert x.shape == t.shape
    got = crossent.binary_cross_entropy(x, t, nan_policy="omit")
    assert got == pytest.approx(bce_omitted(False, x, t, None, None, None, "mean"), rel=1e-12)
    # A single NaN element: nothing kept, so the mean is 0/0 (as an empty input's).
    assert np.isnan(crossent.binary_cross_entropy(np.nan, 1.0, nan_policy="omit"))
    assert crossent.binary_cross_entropy(np.nan, 1.0, reduction="sum", nan_policy="omit") == 0.0
    # All elements dropped by their sample weights: their sum is 0 too.
    sw = np.full(3, np.nan)
    p = np.array([0.5, 0.2, 0.9])
    assert np.isnan(crossent.binary_cross_entropy(p, p, sample_weight=sw, nan_policy="omit"))


@pytest.mark.parametrize("name", list(BCE))
def test_bce_raise_names_first_operand_and_position(name: str) -> None:
    fn, logits = BCE[name]
    rng = np.random.default_rng(13)
    ops = bce_operands(rng, logits, "soft", np.float64, 0.0)
    x, y = ops.pop("input"), ops.pop("target")
    order = ["input", "target", "weight", *(["pos_weight"] if logits else []), "sample_weight"]
    at = {"input": (2, 8000), "target": (1, 77), "weight": (5,), "pos_weight": (6,)}
    at["sample_weight"] = (0, 3)
    for first in range(len(order)):
        # A NaN in this operand and every later one: this one is named.
        args = {"input": x.copy(), "target": y.copy(), **{k: v.copy() for k, v in ops.items()}}
        for k in order[first:]:
            args[k][at[k]] = np.nan
        for n in (1, 3):
            rest = {k: v for k, v in args.items() if k not in ("input", "target")}
            with threads(n), pytest.raises(crossent.DomainError) as info:
                fn(args["input"], args["target"], nan_policy="raise", **rest)
            e = info.value
            assert (e.argument, e.index) == (order[first], at[order[first]])
            assert isinstance(e.value, float) and np.isnan(e.value)
            assert "nan_policy='raise'" in str(e)
    # The first position in C order, within the named operand.
    bad = x.copy()
    bad[2, 5] = bad[1, 8000] = np.nan
    with pytest.raises(crossent.DomainError) as info:
        fn(bad, y, reduction="none", nan_policy="raise")
    assert info.value.index == (1, 8000)


@pytest.mark.parametrize("name", list(BCE))
def test_bce_accumulators_follow_nan_policy(name: str) -> None:
    fn, logits = BCE[name]
    cls = (
        crossent.BinaryCrossEntropyWithLogitsAccumulator
        if logits
        else crossent.BinaryCrossEntropyAccumulator
    )
    rng = np.random.default_rng(14)
    ops = bce_operands(rng, logits, "soft", np.float32, 0.02)
    x, y, sw = ops.pop("input").ravel(), ops.pop("target").ravel(), ops.pop("sample_weight")
    sw = sw.ravel()
    fixed: dict[str, Any] = {"pos_weight": [1.5]} if logits else {}
    whole = fn(x, y, sample_weight=sw, nan_policy="omit", **fixed)
    acc = cls(nan_policy="omit", **fixed)
    assert acc.nan_policy == "omit" and "nan_policy='omit'" in repr(acc)
    cuts = [0, crossent.BLOCK, 3 * crossent.BLOCK, x.size]
    for lo, hi in itertools.pairwise(cuts):
        acc.update(x[lo:hi], y[lo:hi], sample_weight=sw[lo:hi])
    # Cut at whole blocks: the bits of one call; count and the weights' sum of those kept.
    assert acc.result() == whole
    keep = ~(np.isnan(x) | np.isnan(y) | np.isnan(sw))
    assert acc.count == int(keep.sum())
    back = pickle.loads(pickle.dumps(acc))
    assert (back.nan_policy, back.result(), back.count) == ("omit", whole, acc.count)
    # raise: the batch is refused, the state unchanged.
    strict = cls(nan_policy="raise", **fixed)
    clean = ~(np.isnan(x) | np.isnan(y) | np.isnan(sw))
    strict.update(x[clean][:100], y[clean][:100])
    before = (strict.result(), strict.count)
    with pytest.raises(crossent.DomainError) as info:
        strict.update(x[:5000], y[:5000])
    assert info.value.argument in ("input", "target")
    assert (strict.result(), strict.count) == before
    assert cls().nan_policy == "propagate"


def test_bce_groups_take_a_nan_policy() -> None:
    """Per group, "omit" leaves the element out of its group and "raise" raises, in a call and
    in an accumulator (tests/test_groups_nan_policy.py covers it in full)."""
    p, y = np.array([0.5, np.nan, 0.2]), np.array([1.0, 0.0, 0.0])
    got = crossent.binary_cross_entropy(p, y, groups=[0, 1, 0], nan_policy="omit")
    assert got[0] == crossent.binary_cross_entropy(p[[0, 2]], y[[0, 2]]) and np.isnan(got[1])
    acc = crossent.BinaryCrossEntropyAccumulator(nan_policy="raise")
    with pytest.raises(crossent.DomainError, match="nan_policy='raise'"):
        acc.update(p, y, groups=[0, 1, 0])
    assert acc.count == 0


# --- softmax cross-entropy --------------------------------------------------------------------


def softmax_rows(
    x: np.ndarray,
    t: np.ndarray,
    w: Any = None,
    eps: float = 0.0,
    ignore: int = -100,
    sw: Any = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-row losses and the mean's denominators (PyTorch's, or ``sw``), in float64; rows of
    class indices equal to ``ignore`` give (0, 0)."""
    x = np.asarray(x, F64)
    rows, c = x.shape
    with np.errstate(all="ignore"):
        m = np.max(x, axis=1, keepdims=True)
        nll = m + np.log(np.exp(x - m).sum(axis=1, keepdims=True)) - x
    wc = np.ones(c) if w is None else np.asarray(w, F64)
    if t.dtype.kind == "f":
        tp = (1 - eps) * np.asarray(t, F64) + eps / c
        loss = (wc * tp * nll).sum(axis=1)
        den = np.ones(rows)
    else:
        valid = t != ignore
        yy = np.where(valid, t, 0)
        picked = nll[np.arange(rows), yy]
        loss = (1 - eps) * wc[yy] * picked + eps / c * (wc * nll).sum(axis=1)
        loss, den = np.where(valid, loss, 0.0), np.where(valid, wc[yy], 0.0)
    if sw is not None:
        s = np.broadcast_to(np.asarray(sw, F64), (rows,))
        loss, den = loss * s, np.where(den != 0, s, 0.0) if t.dtype.kind != "f" else s
    return loss, den


@pytest.mark.parametrize("target", ["labels", "probabilities"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("classes", [7, 5000], ids=["short-rows", "rows-over-a-tile"])
def test_softmax_omit_leaves_nan_rows_out_as_ignored_rows(
    target: str, dtype: Any, classes: int
) -> None:
    rng = np.random.default_rng(20)
    rows = 300 if classes < 100 else 12
    x = rng.standard_normal((rows, classes)) * 3
    # NaN logits in some rows, at any class (late in a long row too).
    for r in range(0, rows, 5):
        x[r, rng.integers(classes)] = np.nan
    x = x.astype(dtype)
    t: np.ndarray
    if target == "labels":
        t = rng.integers(0, classes, rows)
        t[1::7] = -100  # ignored rows, one of them with NaN logits too
        x[8, 0] = np.nan
        t[8] = -100
    else:
        u = rng.uniform(0.05, 1, (rows, classes))
        u /= u.sum(axis=1, keepdims=True)
        u[3, 1] = np.nan
        t = u.astype(dtype)
    w = rng.uniform(0.5, 2.0, classes)
    sw = with_nan(rng.uniform(0, 2, rows), rng, 0.05)
    rtol = 2e-6 if dtype == np.float32 else 1e-12
    nan_row = np.isnan(x).any(axis=1)
    if target == "probabilities":
        nan_row |= np.isnan(t).any(axis=1)
    cases: list[dict[str, Any]] = [
        {},
        {"weight": w},
        {"label_smoothing": 0.1},
        {"sample_weight": sw},
    ]
    for kw in cases:
        drop = nan_row | (np.isnan(sw) if "sample_weight" in kw else False)
        keep = ~drop
        loss, den = softmax_rows(
            x[keep],
            t[keep],
            kw.get("weight"),
            kw.get("label_smoothing", 0.0),
            sw=sw[keep] if "sample_weight" in kw else None,
        )
        for n in (1, 3):
            with threads(n):
                mean = crossent.softmax_cross_entropy(x, t, nan_policy="omit", **kw)
                total = crossent.softmax_cross_entropy(
                    x, t, reduction="sum", nan_policy="omit", **kw
                )
            assert mean == pytest.approx(loss.sum() / den.sum(), rel=rtol), kw
            assert total == pytest.approx(loss.sum(), rel=rtol), kw
        # "none": the plain call's losses, NaN on the rows left out.
        plain = crossent.softmax_cross_entropy(x, t, reduction="none", **kw)
        omit = crossent.softmax_cross_entropy(x, t, reduction="none", nan_policy="omit", **kw)
        # Equal values, NaN at the same places (a NaN's sign bit is not part of the promise).
        np.testing.assert_array_equal(plain, omit)
        # (An ignored row's loss stays 0, as in PyTorch.)
        counted = drop if target == "probabilities" else drop & (t != -100)
        assert np.isnan(omit[counted]).all() and counted.any()
        assert np.isnan(crossent.softmax_cross_entropy(x, t, **kw))


def test_softmax_omit_along_another_axis_and_all_rows_dropped() -> None:
    rng = np.random.default_rng(21)
    x = rng.standard_normal((4, 5, 6))
    x[1, 2, 3] = np.nan
    y = rng.integers(0, 5, (4, 6))
    got = crossent.softmax_cross_entropy(x, y, axis=1, nan_policy="omit")
    xr = np.moveaxis(x, 1, -1).reshape(-1, 5)
    keep = ~np.isnan(xr).any(axis=1)
    loss, den = softmax_rows(xr[keep], y.reshape(-1)[keep])
    assert got == pytest.approx(loss.sum() / den.sum(), rel=1e-12)
    # Every row left out: the mean is 0/0, as for rows all ignored.
    nan_rows = np.full((2, 3), np.nan)
    assert np.isnan(crossent.softmax_cross_entropy(nan_rows, [0, 1], nan_policy="omit"))


@pytest.mark.parametrize("target", ["labels", "probabilities"])
def test_softmax_raise_names_argument_and_first_position(target: str) -> None:
    rng = np.random.default_rng(22)
    x = rng.standard_normal((50, 2000))
    t: np.ndarray = (
        rng.integers(0, 2000, 50) if target == "labels" else rng.dirichlet(np.ones(2000), 50)
    )
    sw, w = rng.uniform(0, 1, 50), rng.uniform(0.5, 1.5, 2000)

    def check(arg: str, index: tuple[int, ...], **kw: Any) -> None:
        for n in (1, 3):
            rest = {k: v for k, v in kw.items() if k not in ("x", "t")}
            with threads(n), pytest.raises(crossent.DomainError) as info:
                crossent.softmax_cross_entropy(
                    kw.get("x", x), kw.get("t", t), nan_policy="raise", **rest
                )
            assert (info.value.argument, info.value.index) == (arg, index)
            assert "nan_policy='raise'" in str(info.value)

    bx = x.copy()
    bx[40, 3] = bx[7, 1999] = np.nan
    check("logits", (7, 1999), x=bx, sample_weight=sw)
    bsw = sw.copy()
    bsw[33] = np.nan
    check("sample_weight", (33,), sample_weight=bsw)
    bw = w.copy()
    bw[1234] = np.nan
    check("weight", (1234,), weight=bw)
    if target == "probabilities":
        bt = t.copy()
        bt[20, 1500] = np.nan
        check("target", (20, 1500), t=bt, sample_weight=bsw)
    else:
        # An ignored row's NaN raises too.
        ig = t.copy()
        ig[7] = -100
        check("logits", (7, 1999), x=bx, t=ig)
    # Without NaN, "raise" and "omit" give the plain call's bits.
    for policy in ("raise", "omit"):
        assert crossent.softmax_cross_entropy(
            x, t, weight=w, sample_weight=sw, nan_policy=policy
        ) == crossent.softmax_cross_entropy(x, t, weight=w, sample_weight=sw)


def test_softmax_accumulator_follows_nan_policy() -> None:
    rng = np.random.default_rng(23)
    x = rng.standard_normal((4000, 9))
    x[rng.uniform(size=4000) < 0.05, 4] = np.nan
    y = rng.integers(0, 9, 4000)
    y[::11] = -100
    w = rng.uniform(0.5, 2, 9)
    whole = crossent.softmax_cross_entropy(x, y, weight=w, nan_policy="omit")
    acc = crossent.SoftmaxCrossEntropyAccumulator(weight=w, nan_policy="omit")
    step = max(1, crossent.CHUNK // 9)
    for lo in range(0, 4000, step):
        acc.update(x[lo : lo + step], y[lo : lo + step])
    assert acc.result() == whole
    keep = ~np.isnan(x).any(axis=1) & (y != -100)
    assert acc.count == int(keep.sum())
    assert acc.weight_sum == pytest.approx(w[y[keep]].sum(), rel=1e-12)
    back = pickle.loads(pickle.dumps(acc))
    assert (back.nan_policy, back.result()) == ("omit", whole)
    strict = crossent.SoftmaxCrossEntropyAccumulator(nan_policy="raise")
    with pytest.raises(crossent.DomainError):
        strict.update(x, y)
    assert strict.count == 0


# --- dask -------------------------------------------------------------------------------------


def test_dask_losses_take_nan_policy() -> None:
    da = pytest.importorskip("dask.array")
    import crossent.dask

    rng = np.random.default_rng(30)
    p = with_nan(rng.uniform(0.05, 0.95, (40, 30)), rng, 0.05)
    y = with_nan(rng.uniform(0, 1, (40, 30)), rng, 0.05)
    sw = with_nan(rng.uniform(0, 2, (40, 30)), rng, 0.05)
    lp, ly, lsw = (da.from_array(a, chunks=(7, 11)) for a in (p, y, sw))
    pairs: list[tuple[Any, Any]] = [
        (crossent.binary_cross_entropy, crossent.dask.binary_cross_entropy),
        (crossent.binary_cross_entropy_with_logits, crossent.dask.binary_cross_entropy_with_logits),
    ]
    for fn, lazy_fn in pairs:
        for reduction in ("mean", "sum"):
            got = lazy_fn(lp, ly, sample_weight=lsw, reduction=reduction, nan_policy="omit")
            want = fn(p, y, sample_weight=sw, reduction=reduction, nan_policy="omit")
            assert float(got.compute()) == pytest.approx(want, rel=1e-12)
        none = lazy_fn(lp, ly, reduction="none", nan_policy="omit").compute()
        np.testing.assert_array_equal(none, fn(p, y, reduction="none"))
        # raise: the position in the whole array, whichever chunk holds it.
        one = np.where(np.isnan(p), 0.5, p)
        one[22, 13] = np.nan
        clean_y = da.from_array(np.where(np.isnan(y), 0.0, y), chunks=(7, 11))
        with pytest.raises(crossent.DomainError) as info:
            lazy_fn(da.from_array(one, chunks=(7, 11)), clean_y, nan_policy="raise").compute()
        assert (info.value.argument, info.value.index) == ("input", (22, 13))
        # Per group too (tests/test_groups_nan_policy.py covers it in full).
        codes = rng.integers(0, 4, (40, 30))
        lg = da.from_array(codes, chunks=(7, 11))
        got = lazy_fn(lp, ly, sample_weight=lsw, groups=lg, nan_policy="omit").compute()
        want = fn(p, y, sample_weight=sw, groups=codes, nan_policy="omit")
        np.testing.assert_allclose(got, want, rtol=1e-12)
    x = rng.standard_normal((40, 6))
    x[[3, 17, 30], [1, 5, 0]] = np.nan
    labels = rng.integers(0, 6, 40)
    lx, ll = da.from_array(x, chunks=(9, 6)), da.from_array(labels, chunks=9)
    got = crossent.dask.softmax_cross_entropy(lx, ll, nan_policy="omit").compute()
    assert float(got) == pytest.approx(
        crossent.softmax_cross_entropy(x, labels, nan_policy="omit"), rel=1e-12
    )
    one = np.where(np.isnan(x), 0.0, x)
    one[30, 5] = np.nan
    with pytest.raises(crossent.DomainError) as info:
        lazy = da.from_array(one, chunks=(9, 6))
        crossent.dask.softmax_cross_entropy(lazy, ll, nan_policy="raise").compute()
    assert (info.value.argument, info.value.index) == ("logits", (30, 5))
    with pytest.raises(ValueError, match="'nan_policy' must be 'propagate', 'omit' or 'raise'"):
        unknown: Any = "ignore"
        crossent.dask.softmax_cross_entropy(lx, ll, nan_policy=unknown)


def test_arrow_streams_take_nan_policy() -> None:
    pa = pytest.importorskip("pyarrow")
    rng = np.random.default_rng(31)
    n = 2 * crossent.BLOCK + 300
    p = with_nan(rng.uniform(0.05, 0.95, n), rng, 0.01)
    y = (rng.uniform(size=n) < 0.5).astype(np.float64)
    cut = crossent.BLOCK + 17  # a chunk boundary inside a block
    chunked = pa.chunked_array([p[:cut], p[cut:]])
    for reduction in ("mean", "sum"):
        want = crossent.binary_cross_entropy(p, y, reduction=reduction, nan_policy="omit")
        got = crossent.binary_cross_entropy(chunked, y, reduction=reduction, nan_policy="omit")
        assert got == want  # the bits of one call
    with pytest.raises(crossent.DomainError) as info:
        crossent.binary_cross_entropy(chunked, y, nan_policy="raise")
    assert info.value.index == (int(np.argmax(np.isnan(p))),)
    x = rng.standard_normal((500, 4))
    x[[10, 400], [2, 0]] = np.nan
    labels = rng.integers(0, 4, 500)
    rows = pa.chunked_array(
        [
            pa.array(list(x[:250]), pa.list_(pa.float64(), 4)),
            pa.array(list(x[250:]), pa.list_(pa.float64(), 4)),
        ]
    )
    want = crossent.softmax_cross_entropy(x, labels, nan_policy="omit")
    assert crossent.softmax_cross_entropy(rows, labels, nan_policy="omit") == pytest.approx(
        want, rel=1e-12
    )
    # Per group too (tests/test_groups_nan_policy.py covers it in full).
    codes = rng.integers(0, 5, n)
    per_group = crossent.binary_cross_entropy(chunked, y, groups=codes, nan_policy="omit")
    want_groups = crossent.binary_cross_entropy(p, y, groups=codes, nan_policy="omit")
    np.testing.assert_array_equal(per_group, want_groups)


def test_arrow_float_nulls_follow_nan_policy() -> None:
    pa = pytest.importorskip("pyarrow")
    p = pa.array([0.5, None, 0.25, 0.9])
    y = np.array([1.0, 1.0, 0.0, 1.0])
    kept = np.array([0.5, 0.25, 0.9]), np.array([1.0, 0.0, 1.0])
    got = crossent.binary_cross_entropy(p, y, nan_policy="omit")
    assert got == crossent.binary_cross_entropy(*kept)
    assert np.isnan(crossent.binary_cross_entropy(p, y))
    with pytest.raises(crossent.DomainError) as info:
        crossent.binary_cross_entropy(p, y, nan_policy="raise")
    assert (info.value.argument, info.value.index) == ("input", (1,))
    q = pa.chunked_array([[0.2, None], [0.3, 0.5]])
    want = crossent.entropy(np.array([0.2, 0.3, 0.5]), axis=None)
    assert crossent.entropy(q, axis=None, nan_policy="omit") == pytest.approx(want, rel=1e-14)
