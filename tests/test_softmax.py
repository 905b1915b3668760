"""softmax_cross_entropy against a float64 NumPy reference of PyTorch's formulas, and torch."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import crossent
from crossent import _peers

LABEL_DTYPES = [np.int64, np.int32, np.int16, np.int8, np.uint8, np.uint16, np.uint32]


def reference(
    logits: Any,
    target: Any,
    axis: int,
    weight: Any,
    ignore_index: int,
    eps: float,
    reduction: str,
) -> Any:
    """torch.nn.functional.cross_entropy: the NumPy formula of crossent._peers, in float64."""
    x = np.moveaxis(np.asarray(logits, dtype=np.float64), axis, -1)
    t = np.asarray(target)
    t = t.astype(np.int64) if np.issubdtype(t.dtype, np.integer) else np.moveaxis(t, axis, -1)
    w = None if weight is None else np.asarray(weight, dtype=np.float64)
    with np.errstate(all="ignore"):
        return _peers.formulas("numpy")["softmax_cross_entropy"](
            x, t, weight=w, ignore_index=ignore_index, label_smoothing=eps, reduction=reduction
        )


def torch_reference(
    logits: Any, target: Any, axis: int, weight: Any, ignore_index: int, eps: float, reduction: str
) -> Any:
    torch = pytest.importorskip("torch")
    cls = min(1, logits.ndim - 1)
    x = torch.from_numpy(np.moveaxis(logits, axis, cls).copy())
    if np.issubdtype(target.dtype, np.integer):
        t = torch.from_numpy(np.asarray(target).astype(np.int64))
    else:
        t = torch.from_numpy(np.moveaxis(target, axis, cls).copy())
        ignore_index = -100  # torch refuses any other with probabilities (and ignores it)
    w = None if weight is None else torch.from_numpy(np.asarray(weight, dtype=logits.dtype))
    r = torch.nn.functional.cross_entropy(
        x, t, weight=w, ignore_index=ignore_index, label_smoothing=eps, reduction=reduction
    )
    # torch's "none" shape (N, d1, ...) is the rows' shape: the others keep their order.
    return r.numpy()


@st.composite
def cases(draw: st.DrawFn) -> dict[str, Any]:
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=6))
    axis = draw(st.integers(-len(shape), len(shape) - 1))
    c = shape[axis]
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    scale = draw(st.sampled_from([1.0, 30.0, 1e4]))
    logits = (rng.standard_normal(shape) * scale).astype(dtype)
    layout = draw(st.sampled_from(["C", "F", "step", "neg"]))
    if layout == "F":
        logits = np.asfortranarray(logits)
    elif layout == "step":
        logits = np.repeat(logits, 2, axis=0)[::2]
    elif layout == "neg":
        logits = logits[..., ::-1]
    rows_shape = tuple(n for d, n in enumerate(shape) if d != axis % len(shape))
    ignore_index = draw(st.sampled_from([-100, 0, 3]))
    if draw(st.booleans()):
        label_dtype = draw(st.sampled_from(LABEL_DTYPES))
        labels = rng.integers(0, c, size=rows_shape)
        if ignore_index == -100 and label_dtype in (np.int64, np.int32, np.int16, np.int8):
            labels[rng.random(rows_shape) < 0.2] = -100
        target: Any = labels.astype(label_dtype)
    else:
        target = rng.random(shape).astype(dtype)
        if draw(st.booleans()):
            target /= target.sum(axis=axis, keepdims=True)
        # A class index to ignore means nothing for probabilities: only values naming no
        # class are accepted (as PyTorch; test_bad_input checks the refusal).
        ignore_index = min(ignore_index, -1)
    weight = None if draw(st.booleans()) else rng.random(c) + 0.1
    return {
        "logits": logits,
        "target": target,
        "axis": axis,
        "weight": weight,
        "ignore_index": ignore_index,
        "eps": draw(st.sampled_from([0.0, 0.1, 1.0])),
        "reduction": draw(st.sampled_from(["mean", "sum", "none"])),
    }


def run(case: dict[str, Any]) -> Any:
    return crossent.softmax_cross_entropy(
        case["logits"],
        case["target"],
        axis=case["axis"],
        weight=case["weight"],
        ignore_index=case["ignore_index"],
        label_smoothing=case["eps"],
        reduction=case["reduction"],
    )


def args(case: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(
        case[k] for k in ("logits", "target", "axis", "weight", "ignore_index", "eps", "reduction")
    )


@settings(max_examples=300, deadline=None)
@given(case=cases())
def test_matches_reference(case: dict[str, Any]) -> None:
    got = run(case)
    want = reference(*args(case))
    scale = float(np.abs(case["logits"]).max(initial=1.0))
    rtol = 1e-12 if case["logits"].dtype == np.float64 else 1e-6
    if case["reduction"] == "none":
        assert isinstance(got, np.ndarray)
        assert got.dtype == case["logits"].dtype and got.shape == want.shape
    else:
        assert isinstance(got, float)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * scale)


@settings(max_examples=150, deadline=None)
@given(case=cases())
def test_matches_torch(case: dict[str, Any]) -> None:
    # Random exploration where torch is installed; tests/test_golden.py checks a fixed sample
    # of the same space (tests/golden/cases.py) in every run.
    pytest.importorskip("torch")
    if case["logits"].dtype == np.float32:
        # torch computes float32 in float32: compare against its float64 result.
        case = {**case, "logits": case["logits"].astype(np.float64)}
        if not np.issubdtype(case["target"].dtype, np.integer):
            case["target"] = case["target"].astype(np.float64)
    got = run(case)
    want = torch_reference(*args(case))
    scale = float(np.abs(case["logits"]).max(initial=1.0))
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12 * scale)


def test_edge_cases() -> None:
    x = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 0.0]])
    # Logits of ±1e4 stay exact: the true class has loss 0, the other 2e4.
    np.testing.assert_array_equal(
        crossent.softmax_cross_entropy(x, [0, 0], reduction="none"), [0.0, 2e4]
    )
    # One class: the loss is 0.
    assert crossent.softmax_cross_entropy(np.ones((4, 1)), np.zeros(4, dtype=np.int64)) == 0.0
    # Every row ignored: mean is NaN (as torch), sum is 0.
    labels = np.full(2, -100)
    assert math.isnan(crossent.softmax_cross_entropy(x, labels))
    assert crossent.softmax_cross_entropy(x, labels, reduction="sum") == 0.0
    # Empty input: mean NaN, sum 0, none empty.
    e = np.zeros((0, 5))
    assert math.isnan(crossent.softmax_cross_entropy(e, np.zeros(0, dtype=np.int64)))
    assert crossent.softmax_cross_entropy(e, np.zeros(0, dtype=np.int64), reduction="sum") == 0.0
    # NaN stays in its row; an ignored row is 0 even if its logits are NaN.
    x = np.array([[0.0, np.nan], [1.0, 2.0], [np.nan, 0.0]])
    got = crossent.softmax_cross_entropy(x, [0, 1, -100], reduction="none")
    assert math.isnan(got[0]) and np.isfinite(got[1]) and got[2] == 0.0
    # -inf logits are impossible classes; +inf gives NaN as in torch.
    assert crossent.softmax_cross_entropy([-np.inf, 0.0, 0.0], np.int64(1)) == pytest.approx(
        math.log(2), rel=1e-15
    )
    assert math.isnan(crossent.softmax_cross_entropy([np.inf, 0.0], np.int64(0)))
    # 1-D logits with a scalar label; "none" gives a 0-d array.
    one = crossent.softmax_cross_entropy([0.0, 0.0], 1, reduction="none")
    assert isinstance(one, np.ndarray) and one.shape == ()


def test_out_is_written_in_place() -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 5, 6)).astype(np.float32)
    y = rng.integers(0, 5, (4, 6))
    out = np.zeros((6, 4), dtype=np.float32).T
    assert crossent.softmax_cross_entropy(x, y, axis=1, reduction="none", out=out) is out
    np.testing.assert_array_equal(
        out, crossent.softmax_cross_entropy(np.ascontiguousarray(x), y, axis=1, reduction="none")
    )


@pytest.mark.parametrize(
    ("shape", "axis", "soft"),
    [((100_000, 10), -1, False), ((1000, 1000), 0, True), ((3, 300_000), -1, False)],
)
def test_same_bits_for_any_thread_count(
    shape: tuple[int, int], axis: int, soft: bool, threads: None
) -> None:
    rng = np.random.default_rng(2)
    x = rng.standard_normal(shape).astype(np.float32) * 4
    rows = shape[1 - axis % 2]
    c = shape[axis]
    y: Any = rng.random(shape).astype(np.float32) if soft else rng.integers(0, c, rows)
    w = rng.random(c) + 0.5
    results = []
    for n in (1, 2, 3, 7):
        crossent.set_num_threads(n)
        mean = crossent.softmax_cross_entropy(x, y, axis=axis, weight=w, label_smoothing=0.1)
        none = crossent.softmax_cross_entropy(x, y, axis=axis, reduction="none")
        results.append((np.float64(mean).tobytes(), none.tobytes()))
    assert all(r == results[0] for r in results)


def test_bad_input() -> None:
    x = np.zeros((3, 4))
    y = np.array([0, 1, 2])
    f = crossent.softmax_cross_entropy
    with pytest.raises(
        ValueError, match=r"'target' must hold class indices in \[0, 4\) .* found 7 at index \(2,\)"
    ):
        f(x, np.array([0, 1, 7]))
    with pytest.raises(ValueError, match=r"found -1 at index \(0,\)"):
        f(x, np.array([-1, 1, 2]))
    with pytest.raises(ValueError, match="'target' of class indices must have the shape"):
        f(x, np.array([0, 1]))
    with pytest.raises(ValueError, match="'target' of class probabilities must have the shape"):
        f(x, np.zeros((3, 5)))
    neg = np.full((3, 4), 0.25)
    neg[1, 3] = -0.5
    with pytest.raises(
        ValueError,
        match=r"'target' must hold non-negative probabilities; found -0.5 at index \(1, 3\)",
    ):
        f(x, neg)
    with pytest.raises(TypeError, match="'target'"):
        f(x, np.array([True, False, True]))
    with pytest.raises(TypeError, match="'logits'"):
        f(x.astype(np.complex64), y)
    with pytest.raises(ValueError, match="'weight' must have shape \\(4,\\)"):
        f(x, y, weight=np.ones(3))
    with pytest.raises(TypeError, match="'weight'"):
        f(x, y, weight=np.array(["a"] * 4))
    for eps in (-0.1, 1.5, math.nan):
        with pytest.raises(ValueError, match="'label_smoothing'"):
            f(x, y, label_smoothing=eps)
    with pytest.raises(ValueError, match="'reduction'"):
        f(x, y, reduction="avg")
    with pytest.raises(ValueError, match="'axis'"):
        f(x, y, axis=2)
    with pytest.raises(ValueError, match="'axis'"):
        f(np.float64(1.0), 0)
    with pytest.raises(ValueError, match="'out' is only used with reduction='none'"):
        f(x, y, out=np.zeros(3))
    with pytest.raises(ValueError, match="'out' must have shape \\(3,\\)"):
        f(x, y, reduction="none", out=np.zeros(4))
    with pytest.raises(TypeError, match="'out' must have dtype float64"):
        f(x, y, reduction="none", out=np.zeros(3, dtype=np.float32))


def test_does_not_copy_the_input() -> None:
    """Peak RSS grows by less than 1 MiB over a 10^7-element float32 input, in any layout."""
    script = textwrap.dedent(
        """
        import resource, numpy as np, crossent
        def peak():
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        rng = np.random.default_rng(0)
        x = rng.random((10_000, 1_000), dtype=np.float32)
        t = rng.random((10_000, 1_000), dtype=np.float32)
        y = rng.integers(0, 1_000, 10_000)
        yt = rng.integers(0, 10_000, 1_000)
        out = np.zeros(10_000, dtype=np.float32)
        crossent.softmax_cross_entropy(x[:2], y[:2])
        before = peak()
        crossent.softmax_cross_entropy(x, y)
        crossent.softmax_cross_entropy(x, t, label_smoothing=0.1)
        crossent.softmax_cross_entropy(x, y, reduction="none", out=out)
        crossent.softmax_cross_entropy(x, yt, axis=0)
        crossent.softmax_cross_entropy(x.T, y, axis=0)
        print(peak() - before)
        """
    )
    grown = int(subprocess.check_output([sys.executable, "-c", script], text=True))
    assert grown < 1 << 20, f"peak RSS grew by {grown} bytes"


# --------------------------------------------------------------------------------------------
# Accuracy against 50-digit references: large offsets, confident rows, ties
# --------------------------------------------------------------------------------------------


def _exact_rows(x: Any, t: Any, w: Any, eps: float) -> tuple[Any, Any, Any, Any]:
    """For each row of logits `x` (the given values, exactly), with one-hot or probability
    targets `t` and class weights `w`: PyTorch's loss `Σ w t' (lse - x)`, its gradient
    `A p - w t'` (`A = Σ w t'`), the softmax `p`, and `g = Σ_c p_c |x_c - max|` (how much the
    rounding of `x - max` may move `ln Σ e^x`), in 50-digit arithmetic."""
    mpmath = pytest.importorskip("mpmath")
    rows, c = x.shape
    loss, grad, prob, spread = (
        np.zeros(rows),
        np.zeros((rows, c)),
        np.zeros((rows, c)),
        np.zeros(rows),
    )
    with mpmath.workdps(50):
        for r in range(rows):
            xs = [mpmath.mpf(v) for v in x[r].tolist()]
            m = max(xs)
            terms = [mpmath.exp(v - m) for v in xs]
            total = mpmath.fsum(terms)
            lse = m + mpmath.log(total)
            ts = [(1 - eps) * mpmath.mpf(v) + mpmath.mpf(eps) / c for v in t[r].tolist()]
            ws = [mpmath.mpf(v) for v in w.tolist()]
            a = mpmath.fsum(wi * ti for wi, ti in zip(ws, ts, strict=True))
            loss[r] = float(
                mpmath.fsum(wi * ti * (lse - v) for wi, ti, v in zip(ws, ts, xs, strict=True))
            )
            ps = [e / total for e in terms]
            prob[r] = [float(p) for p in ps]
            grad[r] = [float(a * p - wi * ti) for p, wi, ti in zip(ps, ws, ts, strict=True)]
            spread[r] = float(mpmath.fsum(p * (m - v) for p, v in zip(ps, xs, strict=True)))
    return loss, grad, prob, spread


def _accuracy_rows(dtype: Any, seed: int) -> tuple[Any, Any]:
    """Rows of 6 logits: random ones shifted by offsets up to 1e8 (1e4 for float32),
    confident ones (the label far above the rest: losses from 1e-10 to 1e-3) and ties of a
    large maximum [m, m, 0, ...]; and a label per row."""
    rng = np.random.default_rng(seed)
    offsets = [0.0, 1e2, 1e4] + ([1e6, 1e8] if dtype == np.float64 else [])
    rows, labels = [], []
    for off in offsets:
        for _ in range(6):
            x = rng.normal(0, 3, 6) + off
            rows.append(x)
            labels.append(int(rng.integers(0, 6)))
        for gap in (7.0, 10.0, 15.0, 23.0):
            x = rng.normal(0, 1, 6) + off
            y = int(rng.integers(0, 6))
            x[y] = np.max(x) + gap
            rows.append(x)
            labels.append(y)
    for m in (1.0, 1e3, 1e8, 1e20, 1e30):
        rows.append(np.array([m, m, 0.0, -1.0, 0.5, 0.25]))
        labels.append(int(rng.integers(0, 2)))
    return np.array(rows).astype(dtype), np.array(labels)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "variant", ["labels", "smoothing", "weights", "probabilities", "soft_smoothing"]
)
def test_loss_and_gradient_error_follows_the_loss_not_the_logits(dtype: Any, variant: str) -> None:
    """Loss within 4 eps of itself, plus what the rounding of `x - max` in the exponentials
    may cost (`Σ w t' · Σ p |x - max|` eps), whatever common offset the logits have and however
    confident the row: PyTorch's, and the `lse - x` form's, error is eps times the logits' size,
    and `ln(1 + 1e-10)` rounds. The gradient likewise, per element: within 4 eps of the terms it
    is formed from (`A p` and `w t'`, or for a class at the maximum `A - w t'` and
    `w t' (1 - p)`), plus `A p` times the rounding cost."""
    x, labels = _accuracy_rows(dtype, 7)
    rows, c = x.shape
    w = np.ones(c)
    eps = 0.1 if variant in ("smoothing", "soft_smoothing") else 0.0
    if variant == "weights":
        w = np.array([0.5, 2.0, 1.0, 0.25, 3.0, 1.5])
    if variant in ("probabilities", "soft_smoothing"):
        t = np.random.default_rng(3).dirichlet(np.ones(c) * 0.3, size=rows).astype(dtype)
        # Keep some rows one-hot on their maximum: the confident case of probability targets.
        hot = np.arange(rows) % 3 == 0
        t[hot] = np.eye(c, dtype=dtype)[np.argmax(x[hot], axis=1)]
        target: Any = t
    else:
        t = np.eye(c)[labels]
        target = labels
    loss, grad, prob, spread = _exact_rows(x, t, w, eps)
    kwargs: dict[str, Any] = {"label_smoothing": eps}
    if variant == "weights":
        kwargs["weight"] = w.astype(dtype)
    got = crossent.softmax_cross_entropy(x, target, reduction="none", **kwargs)
    e = float(np.finfo(dtype).eps)
    wt = ((1 - eps) * t + eps / c) * w
    mass = wt.sum(axis=1)
    tol = e * (4 * np.abs(loss) + mass * spread) + np.finfo(dtype).smallest_subnormal
    err = np.abs(got.astype(np.float64) - loss)
    worst = int(np.argmax(err / tol))
    assert err[worst] <= tol[worst], (
        f"row {x[worst].tolist()} label {labels[worst]}: {got[worst]!r} vs {loss[worst]!r}"
    )
    g, _ = crossent.softmax_cross_entropy_grad(x, target, reduction="sum", **kwargs)
    top = x == x.max(axis=1, keepdims=True)
    a_p = mass[:, None] * prob
    # For a class at the maximum the sum A is rounded, once, before `A - w t'` is taken: that
    # costs eps A where the targets are probabilities (for labels `A - w_y` is exact).
    rounded_a = mass[:, None] if variant in ("probabilities", "soft_smoothing") else 0.0
    size = np.where(top, np.abs(mass[:, None] - wt) + wt * (1 - prob) + rounded_a, a_p + wt)
    shift = np.abs(x.astype(np.float64) - x.max(axis=1, keepdims=True))
    gtol = e * (4 * size + a_p * (shift + spread[:, None])) + np.finfo(dtype).smallest_subnormal
    gerr = np.abs(g.astype(np.float64) - grad)
    i, j = np.unravel_index(int(np.argmax(gerr / gtol)), gerr.shape)
    assert gerr[i, j] <= gtol[i, j], (
        f"row {x[i].tolist()} label {labels[i]}, class {j}: {g[i, j]!r} vs {grad[i, j]!r}"
    )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_ties_at_a_huge_maximum(dtype: Any) -> None:
    """[m, m, 0]: the loss is ln 2 and the gradient [-1/2, 1/2, 0] however large m is."""
    m = float(np.finfo(dtype).max) / 4
    for v in (1e6, 1e15, m):
        x = np.array([[v, v, 0.0]], dtype=dtype)
        loss = crossent.softmax_cross_entropy(x, np.array([0]), reduction="none")
        assert loss[0] == pytest.approx(math.log(2), rel=4 * float(np.finfo(dtype).eps))
        g, _ = crossent.softmax_cross_entropy_grad(x, np.array([1]), reduction="sum")
        np.testing.assert_allclose(
            g[0], [0.5, -0.5, 0.0], rtol=4 * float(np.finfo(dtype).eps), atol=0
        )


def test_accumulator_keeps_the_accuracy() -> None:
    """The accumulator folds the same per-row losses: offsets of 1e8 cost nothing there."""
    x, labels = _accuracy_rows(np.float64, 11)
    loss, *_ = _exact_rows(x, np.eye(x.shape[1])[labels], np.ones(x.shape[1]), 0.0)
    acc = crossent.SoftmaxCrossEntropyAccumulator(reduction="sum")
    acc.update(x[:20], labels[:20])
    acc.update(x[20:], labels[20:])
    assert acc.result() == pytest.approx(math.fsum(loss), rel=1e-14)


# NaN and infinities in softmax cross-entropy (docs/errors.md), including the cases that
# depend on the label, the target probability and label smoothing: each as PyTorch gives it
# (the loss of the row holding the value).
NAN, INF = math.nan, math.inf


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nan_and_infinities_as_pytorch(dtype: Any) -> None:
    def labels(x: list[float], y: int, **kw: Any) -> float:
        xs = np.array([x, [0.5, 1.0, -1.0]], dtype=dtype)
        out = crossent.softmax_cross_entropy(xs, np.array([y, 0]), reduction="none", **kw)
        assert np.isfinite(out[1]), "the other row is unaffected"
        return float(out[0])

    def probs(x: list[float], t: list[float], **kw: Any) -> float:
        xs = np.array([x, [0.5, 1.0, -1.0]], dtype=dtype)
        ts = np.array([t, [0.2, 0.3, 0.5]], dtype=dtype)
        out = crossent.softmax_cross_entropy(xs, ts, reduction="none", **kw)
        assert np.isfinite(out[1]), "the other row is unaffected"
        return float(out[0])

    # logits: NaN -> NaN for that row.
    assert math.isnan(labels([NAN, 0.0, 1.0], 1))
    assert math.isnan(probs([NAN, 0.0, 1.0], [0.2, 0.3, 0.5]))
    # logits: +inf -> NaN for that row (as PyTorch), whatever the label and smoothing.
    for y in (0, 1):
        assert math.isnan(labels([INF, 0.0, 1.0], y))
        assert math.isnan(labels([INF, 0.0, 1.0], y, label_smoothing=0.1))
    assert math.isnan(probs([INF, 0.0, 1.0], [0.2, 0.3, 0.5]))
    # logits: -inf -> a class of probability 0: finite unless it is the label (+inf), label
    # smoothing spreads mass on it (+inf), or its target probability is positive (+inf); a
    # target probability of 0 gives NaN (0 * inf, as PyTorch); a row of -inf only is NaN.
    want = math.log1p(math.exp(1.0))
    assert labels([-INF, 0.0, 1.0], 1) == pytest.approx(want, rel=1e-6)
    assert labels([-INF, 0.0, 1.0], 0) == INF
    assert labels([-INF, 0.0, 1.0], 1, label_smoothing=0.1) == INF
    assert probs([-INF, 0.0, 1.0], [0.2, 0.3, 0.5]) == INF
    assert math.isnan(probs([-INF, 0.0, 1.0], [0.0, 0.5, 0.5]))
    assert probs([-INF, 0.0, 1.0], [0.0, 0.5, 0.5], label_smoothing=0.1) == INF
    assert math.isnan(labels([-INF, -INF, -INF], 1))
    # target probabilities: NaN -> NaN, +inf -> +inf (also on the row's largest logit), -inf
    # -> ValueError (negative).
    assert math.isnan(probs([0.0, 1.0, 0.5], [NAN, 0.5, 0.5]))
    assert probs([0.0, 1.0, 0.5], [INF, 0.5, 0.5]) == INF
    assert probs([0.0, 1.0, 0.5], [0.5, INF, 0.5]) == INF
    with pytest.raises(ValueError, match="target"):
        probs([0.0, 1.0, 0.5], [-INF, 0.5, 0.5])


# --- keepdims --------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(7,), (4, 7), (3, 7, 5), (3, 4, 7, 2)])
@pytest.mark.parametrize("axis", [0, 1, -1])
@pytest.mark.parametrize("soft", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_keepdims_keeps_the_class_axis(shape: Any, axis: int, soft: bool, dtype: Any) -> None:
    import scipy.special

    if axis >= len(shape):
        pytest.skip("no such axis")
    rng = np.random.default_rng(21)
    # Strided, reversed logits, read in place.
    big = rng.normal(size=tuple(2 * n for n in shape)).astype(dtype)
    x = big[tuple(slice(None, None, -2) for _ in shape)]
    ax = axis % x.ndim
    classes = x.shape[ax]
    rows = x.shape[:ax] + x.shape[ax + 1 :]
    if soft:
        t = rng.random(x.shape).astype(dtype)
        t /= t.sum(axis=ax, keepdims=True)
    else:
        t = rng.integers(0, classes, rows)
    got = crossent.softmax_cross_entropy(x, t, axis=axis, reduction="none", keepdims=True)
    kept = (*x.shape[:ax], 1, *x.shape[ax + 1 :])
    assert isinstance(got, np.ndarray) and got.shape == kept and got.dtype == dtype
    assert got.flags.c_contiguous and got.base is None
    plain = crossent.softmax_cross_entropy(x, t, axis=axis, reduction="none")
    np.testing.assert_array_equal(got.reshape(np.shape(plain)), plain)
    # SciPy's log-softmax, reduced along the class axis with its keepdims.
    logp = scipy.special.log_softmax(x.astype(np.float64), axis=ax)
    if soft:
        want = -(t * logp).sum(axis=ax, keepdims=True)
    else:
        want = -np.take_along_axis(logp, np.expand_dims(t, ax), axis=ax)
    rtol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol)
    # Into an out of the kept shape, strided.
    out = np.full(kept[::-1], np.nan, dtype=dtype).T
    res = crossent.softmax_cross_entropy(x, t, axis=axis, reduction="none", out=out, keepdims=True)
    assert res is out
    np.testing.assert_array_equal(out, got)


def test_keepdims_refusals() -> None:
    x = np.zeros((4, 3))
    y = np.array([0, 1, 2, 0])
    for reduction in ("mean", "sum"):
        with pytest.raises(ValueError, match="'keepdims' is only used with reduction='none'"):
            crossent.softmax_cross_entropy(x, y, reduction=reduction, keepdims=True)
        # False is the default, and accepted with any reduction.
        assert isinstance(
            crossent.softmax_cross_entropy(x, y, reduction=reduction, keepdims=False), float
        )
    with pytest.raises(ValueError, match=r"'keepdims' is only used with .* no 'groups'"):
        crossent.softmax_cross_entropy(
            x, y, reduction="none", groups=np.zeros(4, np.int64), keepdims=True
        )
    with pytest.raises(ValueError, match=r"'out' must have shape \(4, 1\), got \(4,\)"):
        crossent.softmax_cross_entropy(x, y, reduction="none", out=np.zeros(4), keepdims=True)
    bads: tuple[Any, ...] = (1, 0, None, "yes", np.array([True]))
    for bad in bads:
        with pytest.raises(TypeError, match="'keepdims' must be True or False"):
            crossent.softmax_cross_entropy(x, y, reduction="none", keepdims=bad)
