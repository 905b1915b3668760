"""The ``crossent`` polars expression namespace: every loss against a float64 NumPy
reference computed per group (and a pandas ``groupby`` one), in ``select``,
``with_columns``, ``group_by(...).agg(...)``, ``over(...)`` and lazy frames; nulls and bad
values raise naming the argument; the columns are read in place."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import numpy as np
import pytest

import crossent

pl = pytest.importorskip("polars")
import crossent.polars as cpl  # noqa: E402

ROWS = 5000
GROUPS = 7


def ns(expr: Any) -> Any:
    """The expression's ``crossent`` namespace (registered at run time, so typed Any)."""
    return expr.crossent


def frame(dtype: Any = np.float64, seed: int = 0) -> Any:
    rng = np.random.default_rng(seed)
    return pl.DataFrame(
        {
            "g": rng.integers(0, GROUPS, ROWS),
            "p": rng.uniform(0.001, 0.999, ROWS).astype(dtype),
            "x": rng.normal(0, 3, ROWS).astype(dtype),
            "y": (rng.random(ROWS) < 0.4).astype(np.int64),
            "w": rng.uniform(0.5, 2.0, ROWS).astype(dtype),
        }
    )


def bce_ref(p: Any, y: Any, w: Any = None) -> Any:
    """Per-element float64 binary cross-entropy (log clamped at -100, as PyTorch)."""
    p = p.astype(np.float64)
    loss = -(y * np.maximum(np.log(p), -100) + (1 - y) * np.maximum(np.log1p(-p), -100))
    return loss if w is None else loss * w


def logits_ref(x: Any, y: Any, w: Any = None, pw: float = 1.0) -> Any:
    x = x.astype(np.float64)
    log_sig = np.minimum(x, 0) - np.log1p(np.exp(-np.abs(x)))
    loss = (1 - y) * x - (1 + (pw - 1) * y) * log_sig
    return loss if w is None else loss * w


def per_group(df: Any, values: Any, how: str = "mean") -> dict[int, float]:
    g = df["g"].to_numpy()
    return {int(k): float(getattr(values[g == k], how)()) for k in np.unique(g)}


def by_group(out: Any, column: str) -> dict[int, float]:
    return dict(zip(out["g"].to_list(), out[column].to_list(), strict=True))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_bce_group_by_against_float64_reference(dtype: Any, reduction: str) -> None:
    df = frame(dtype)
    loss = ns(pl.col("p")).binary_cross_entropy(pl.col("y"), weight="w", reduction=reduction)
    out = df.group_by("g").agg(loss.alias("loss"))
    ref = per_group(
        df, bce_ref(df["p"].to_numpy(), df["y"].to_numpy(), df["w"].to_numpy()), reduction
    )
    got = by_group(out, "loss")
    tol = 1e-6 if dtype == np.float32 else 1e-13
    assert got == pytest.approx(ref, rel=tol)
    # The same as pandas' groupby over a float64 loss column.
    pd = pytest.importorskip("pandas")
    frame_pd = pd.DataFrame(
        {
            "g": df["g"].to_numpy(),
            "l": bce_ref(df["p"].to_numpy(), df["y"].to_numpy(), df["w"].to_numpy()),
        }
    )
    pandas = getattr(frame_pd.groupby("g")["l"], reduction)().to_dict()
    assert got == pytest.approx(pandas, rel=tol)


def test_bce_with_logits_everywhere() -> None:
    df = frame(seed=1)
    x, y, w = (df[c].to_numpy() for c in ("x", "y", "w"))
    loss = ns(pl.col("x")).binary_cross_entropy_with_logits("y", weight="w", pos_weight=2.5)
    elem = logits_ref(x, y, w, 2.5)
    # select: the whole column, crossent's own mean to rounding.
    whole = df.select(loss).item()
    assert whole == pytest.approx(float(elem.mean()), rel=1e-13)
    assert whole == pytest.approx(
        crossent.binary_cross_entropy_with_logits(x, y, weight=w, pos_weight=np.array([2.5])),
        rel=1e-14,
    )
    # with_columns, reduction="none": one loss per row, crossent's own bits.
    none = ns(pl.col("x")).binary_cross_entropy_with_logits(
        "y", weight="w", pos_weight=2.5, reduction="none"
    )
    rows = df.with_columns(none.alias("l"))["l"].to_numpy()
    np.testing.assert_array_equal(
        rows,
        crossent.binary_cross_entropy_with_logits(
            x, y, weight=w, pos_weight=np.array([2.5]), reduction="none"
        ),
    )
    # (The textbook formula of the reference cancels for small losses: absolute tolerance.)
    np.testing.assert_allclose(rows, elem, rtol=1e-13, atol=1e-14)
    # over: each row gets its group's mean.
    over = df.with_columns(loss.over("g").alias("m"))
    ref = per_group(df, elem)
    for g, m in zip(over["g"].to_list(), over["m"].to_list(), strict=True):
        assert m == pytest.approx(ref[g], rel=1e-13)
    # lazy: the same per-group means.
    lazy = df.lazy().group_by("g").agg(loss.alias("m")).collect()
    assert by_group(lazy, "m") == pytest.approx(ref, rel=1e-13)


def test_softmax_cross_entropy_per_group() -> None:
    rng = np.random.default_rng(2)
    n, c = 3000, 5
    logits = rng.normal(size=(n, c))
    labels = rng.integers(0, c, n)
    labels[::11] = -100
    g = rng.integers(0, GROUPS, n)
    weight = np.linspace(0.5, 2.0, c)
    df = pl.DataFrame({"g": g, "logits": logits, "y": labels})
    assert df.schema["logits"] == pl.Array(pl.Float64, c)
    loss = ns(pl.col("logits")).softmax_cross_entropy("y", weight=weight)
    got = by_group(df.group_by("g").agg(loss.alias("l")), "l")
    # float64 reference: weighted mean over the rows not ignored (PyTorch's definition).
    lse = np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1)) + logits.max(1)
    kept = labels != -100
    nll = np.zeros(n)
    nll[kept] = (lse - logits[np.arange(n), np.where(kept, labels, 0)])[kept]
    wy = np.where(kept, weight[np.where(kept, labels, 0)], 0.0)
    ref = {int(k): float((wy * nll)[g == k].sum() / wy[g == k].sum()) for k in np.unique(g)}
    assert got == pytest.approx(ref, rel=1e-12)
    # Each group's result is crossent's own call on that group, to rounding.
    for k, v in got.items():
        own = crossent.softmax_cross_entropy(logits[g == k], labels[g == k], weight=weight)
        assert v == pytest.approx(own, rel=1e-13)
    # reduction="none" is crossent's per-row loss.
    rows = df.select(ns(pl.col("logits")).softmax_cross_entropy("y", reduction="none"))
    np.testing.assert_array_equal(
        rows.to_series().to_numpy(),
        crossent.softmax_cross_entropy(logits, labels, reduction="none"),
    )


def nan_frame(seed: int) -> Any:
    """A frame with NaN in the probabilities, logits, float targets and weights; group 3 is
    made entirely of NaN probabilities and logits."""
    rng = np.random.default_rng(seed)
    df = frame(seed=seed)
    p, x, w = (df[c].to_numpy().copy() for c in ("p", "x", "w"))
    yf = rng.uniform(0, 1, ROWS)
    for a in (p, x, yf, w):
        a[rng.random(ROWS) < 0.03] = np.nan
    g = df["g"].to_numpy()
    p[g == 3] = x[g == 3] = np.nan
    return df.with_columns(p=p, x=x, w=w, yf=yf)


@pytest.mark.parametrize("logits", [False, True], ids=["probabilities", "logits"])
@pytest.mark.parametrize("target", ["y", "yf"])
def test_bce_nan_policy_against_the_numpy_call(logits: bool, target: str) -> None:
    df = nan_frame(5)
    col = "x" if logits else "p"
    fn = crossent.binary_cross_entropy_with_logits if logits else crossent.binary_cross_entropy
    fixed: dict[str, Any] = {"pos_weight": 2.5} if logits else {}
    call: dict[str, Any] = {"pos_weight": np.array([2.5])} if logits else {}
    method = getattr(ns(pl.col(col)), fn.__name__)
    v, y, w, g = (df[c].to_numpy() for c in (col, target, "w", "g"))
    for reduction in ("mean", "sum"):
        loss = method(target, weight="w", reduction=reduction, nan_policy="omit", **fixed)
        got = by_group(df.group_by("g").agg(loss.alias("l")), "l")
        for k in range(GROUPS):
            m = g == k
            want = fn(v[m], y[m], weight=w[m], reduction=reduction, nan_policy="omit", **call)
            if k == 3 and reduction == "mean":
                assert np.isnan(got[k]) and np.isnan(want)
            else:
                assert got[k] == pytest.approx(want, rel=1e-13), (k, reduction)
        # A float64 reference over the rows without NaN.
        keep = ~(np.isnan(v) | np.isnan(y.astype(np.float64)) | np.isnan(w))
        elem = logits_ref(v, y, w, 2.5) if logits else bce_ref(v, y, w)
        whole = df.select(loss).item()
        want_whole = getattr(elem[keep], reduction)()
        assert whole == pytest.approx(want_whole, rel=1e-12)
        lazy = df.lazy().select(loss).collect().item()
        assert lazy == pytest.approx(whole, rel=1e-15)
    # over: each row gets its group's mean; "none" is the NumPy call's (NaN where left out).
    mean = method(target, weight="w", nan_policy="omit", **fixed)
    over = df.with_columns(mean.over("g").alias("m"))["m"].to_numpy()
    for k in range(GROUPS):
        want = fn(v[g == k], y[g == k], weight=w[g == k], nan_policy="omit", **call)
        np.testing.assert_allclose(over[g == k], np.full((g == k).sum(), want), rtol=1e-13)
    none = method(target, weight="w", reduction="none", nan_policy="omit", **fixed)
    np.testing.assert_array_equal(
        df.select(none).to_series().to_numpy(),
        fn(v, y, weight=w, reduction="none", nan_policy="omit", **call),
    )
    # "raise": the function's error, naming the argument and the position in the batch.
    # (polars re-raises the error with its message only.)
    first = int(np.flatnonzero(np.isnan(v))[0])
    at = rf"'input' must hold no NaN \(nan_policy='raise'\); found NaN at index \({first},\)"
    with pytest.raises(crossent.DomainError, match=at):
        df.select(method(target, nan_policy="raise", **fixed))
    clean = df.filter(pl.col(col).is_not_nan() & pl.col("w").is_not_nan())
    for policy in ("omit", "raise"):
        got = clean.select(method("y", weight="w", nan_policy=policy, **fixed)).item()
        assert got == clean.select(method("y", weight="w", **fixed)).item()
    # Checked when the expression is built, as the functions check it.
    with pytest.raises(ValueError, match="'nan_policy' must be 'propagate', 'omit' or 'raise'"):
        method("y", nan_policy="ignore")


def test_softmax_nan_policy_against_the_numpy_call() -> None:
    rng = np.random.default_rng(6)
    n, c = 3000, 5
    logits = rng.normal(size=(n, c))
    logits[rng.random(n) < 0.05, 2] = np.nan
    labels = rng.integers(0, c, n)
    labels[::11] = -100
    g = rng.integers(0, GROUPS, n)
    logits[g == 4, 0] = np.nan  # a group made entirely of NaN rows
    weight = np.linspace(0.5, 2.0, c)
    df = pl.DataFrame({"g": g, "logits": logits, "y": labels})
    for reduction in ("mean", "sum"):
        loss = ns(pl.col("logits")).softmax_cross_entropy(
            "y", weight=weight, reduction=reduction, nan_policy="omit"
        )
        got = by_group(df.group_by("g").agg(loss.alias("l")), "l")
        for k in range(GROUPS):
            m = g == k
            want = crossent.softmax_cross_entropy(
                logits[m], labels[m], weight=weight, reduction=reduction, nan_policy="omit"
            )
            if k == 4 and reduction == "mean":
                assert np.isnan(got[k]) and np.isnan(want)
            else:
                assert got[k] == pytest.approx(want, rel=1e-13), (k, reduction)
        whole = crossent.softmax_cross_entropy(
            logits, labels, weight=weight, reduction=reduction, nan_policy="omit"
        )
        assert df.select(loss).item() == pytest.approx(whole, rel=1e-13)
    # Class probabilities, NaN in the target too: the mean is over the rows kept.
    t = rng.dirichlet(np.ones(c), n)
    t[7, 1] = np.nan
    dp = pl.DataFrame({"logits": logits, "t": t})
    loss = ns(pl.col("logits")).softmax_cross_entropy("t", nan_policy="omit")
    want = crossent.softmax_cross_entropy(logits, t, nan_policy="omit")
    assert dp.select(loss).item() == pytest.approx(want, rel=1e-13)
    none = ns(pl.col("logits")).softmax_cross_entropy("y", reduction="none", nan_policy="omit")
    np.testing.assert_array_equal(
        df.select(none).to_series().to_numpy(),
        crossent.softmax_cross_entropy(logits, labels, reduction="none", nan_policy="omit"),
    )
    r, k = np.argwhere(np.isnan(logits))[0]
    at = rf"'logits' must hold no NaN \(nan_policy='raise'\); found NaN at index \({r}, {k}\)"
    with pytest.raises(crossent.DomainError, match=at):
        df.select(ns(pl.col("logits")).softmax_cross_entropy("y", nan_policy="raise"))
    with pytest.raises(TypeError, match="'nan_policy' must be"):
        ns(pl.col("logits")).softmax_cross_entropy("y", nan_policy=None)


def test_row_divergences() -> None:
    rng = np.random.default_rng(3)
    p = rng.uniform(0.01, 1, (400, 6)).astype(np.float32)
    q = rng.uniform(0.01, 1, (400, 6)).astype(np.float32)
    df = pl.DataFrame({"p": p, "q": q})
    for name in ("cross_entropy", "kl_divergence", "jensen_shannon"):
        got = df.select(getattr(ns(pl.col("p")), name)("q")).to_series().to_numpy()
        np.testing.assert_array_equal(got, getattr(crossent, name)(p, q, axis=-1))
    got = df.select(ns(pl.col("p")).entropy(base=2.0)).to_series().to_numpy()
    pn = p.astype(np.float64) / p.sum(1, keepdims=True)
    np.testing.assert_allclose(got, -(pn * np.log2(pn)).sum(1), rtol=1e-5)


def test_columns_are_read_in_place() -> None:
    s = pl.Series(np.linspace(0.1, 0.9, 1000))
    view = cpl._array(s, "input")
    assert np.shares_memory(view, s.to_numpy())
    assert view.base is not None and not view.flags.owndata
    rows = pl.Series(np.ones((10, 3))).cast(pl.Array(pl.Float64, 3))
    assert cpl._array(rows, "logits").shape == (10, 3)


def test_chunked_frames() -> None:
    """A frame of several chunks: each chunked batch goes to crossent as it is (an Arrow
    stream, read chunk by chunk)."""
    df = frame(seed=4)
    two = pl.concat([df[:1234], df[1234:]], rechunk=False)
    assert two["p"].n_chunks() == 2
    for reduction in ("none", "sum"):
        loss = ns(pl.col("p")).binary_cross_entropy("y", reduction=reduction)
        np.testing.assert_array_equal(
            two.select(loss).to_series().to_numpy(), df.select(loss).to_series().to_numpy()
        )


def test_errors_name_the_argument() -> None:
    df = pl.DataFrame({"p": [0.5, 0.3, 0.2], "y": [1, None, 1]})
    with pytest.raises(ValueError, match="'target' holds a null at position 1"):
        df.select(ns(pl.col("p")).binary_cross_entropy("y"))
    bad = pl.DataFrame({"p": [0.5, 1.5], "y": [1, 0]})
    with pytest.raises(ValueError, match=r"'input' must hold probabilities in \[0, 1\]"):
        bad.select(ns(pl.col("p")).binary_cross_entropy("y"))
    with pytest.raises(ValueError, match="'reduction' must be"):
        ns(pl.col("p")).binary_cross_entropy("y", reduction="avg")


def test_module_examples() -> None:
    import doctest

    results = doctest.testmod(cpl, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert results.failed == 0 and results.attempted > 0


def test_import_error_without_polars() -> None:
    code = (
        "import sys; sys.modules['polars'] = None\n"
        "try:\n    import crossent.polars\nexcept ImportError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "crossent.polars needs polars" in out.stdout
