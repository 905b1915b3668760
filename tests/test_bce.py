"""binary_cross_entropy and binary_cross_entropy_with_logits against float64 references."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import reference
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import crossent

FLOATS = [np.float32, np.float64]
TARGETS = [np.float32, np.float64, np.bool_, np.uint8, np.int8, np.int32, np.int64]
REDUCTIONS = ["mean", "sum", "none"]
# Per-element losses are computed in the input's precision, sums in float64.
RTOL = {np.float32: 2e-6, np.float64: 1e-13}

Bce = Callable[..., Any]
FUNCS: dict[str, tuple[Bce, Callable[..., Any]]] = {
    "probabilities": (crossent.binary_cross_entropy, reference.bce),
    "logits": (crossent.binary_cross_entropy_with_logits, reference.bce_with_logits),
}


def make(shape: tuple[int, ...], dtype: Any, target_dtype: Any, seed: int = 0) -> tuple[Any, Any]:
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.0, 1.0, size=shape).astype(dtype)
    if np.issubdtype(target_dtype, np.floating):
        y = rng.uniform(0.0, 1.0, size=shape).astype(target_dtype)
    else:
        y = (rng.uniform(size=shape) < 0.5).astype(target_dtype)
    return p, y


def check(got: Any, expected: Any, dtype: Any, atol: Any = 0.0, reduction: str = "none") -> None:
    """`got` agrees with the float64 reference within `rtol` of the value plus `atol`, the
    per-element absolute error that the formula itself carries in the input's precision."""
    rtol = RTOL[dtype]
    atol = np.asarray(atol, dtype=np.float64)
    if reduction == "none":
        assert got.dtype == dtype
        assert got.shape == expected.shape
        err = np.abs(got.astype(np.float64) - expected)
        ok = (err <= rtol * np.abs(expected) + atol) | (np.isnan(got) & np.isnan(expected))
        assert ok.all(), (got[~ok], expected[~ok])
        return
    assert isinstance(got, float)
    if np.isnan(expected):
        assert np.isnan(got)
        return
    slack = float(atol.sum()) if reduction == "sum" else float(atol.mean() if atol.size else 0)
    assert abs(got - expected) <= rtol * abs(expected) + slack, (got, expected)


def compare(kind: str, x: Any, y: Any, reduction: str, **params: Any) -> None:
    """Calls crossent and the float64 reference on the same arguments and checks agreement."""
    func, ref = FUNCS[kind]
    x = np.asarray(x)
    dtype = x.dtype.type
    # Float targets are read in the input's precision (as torch, which wants one dtype for
    # both): the reference gets them so rounded (1 - 1e-14 is 1 for float32 input).
    y = np.asarray(y)
    y_read = y.astype(dtype) if y.dtype.kind == "f" else y
    per_element = ref(x, y_read, **params)
    got = func(x, y, reduction=reduction, **params)
    atol: Any = 0.0
    if kind == "logits":
        # (1 - y) x and the log-sigmoid term cancel for soft targets: the formula's own
        # rounding error in `dtype` is a few ulp of |x|, times the weights.
        atol = atol + 4 * np.finfo(dtype).eps * (np.abs(x.astype(np.float64)) + 1)
        for name in ("weight", "pos_weight"):
            if params.get(name) is not None:
                atol = atol * np.maximum(np.abs(np.asarray(params[name], np.float64)), 1)
    atol = np.broadcast_to(atol, per_element.shape)
    check(got, reference.reduce(per_element, reduction), dtype, atol, reduction)


@pytest.mark.parametrize("kind", FUNCS)
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("target_dtype", TARGETS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_matches_reference(kind: str, dtype: Any, target_dtype: Any, reduction: str) -> None:
    p, y = make((37, 41), dtype, target_dtype)
    x = p if kind == "probabilities" else (p - dtype(0.5)) * dtype(20)
    compare(kind, x, y, reduction)


@pytest.mark.parametrize("kind", FUNCS)
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize(
    "layout",
    ["fortran", "every_third", "transposed", "reversed", "column", "zero_d", "empty", "broadcast"],
)
def test_layouts_are_read_in_place(kind: str, dtype: Any, layout: str) -> None:
    base_p, base_y = make((60, 50), dtype, np.float64, seed=1)
    views: dict[str, Callable[[Any], Any]] = {
        "fortran": lambda a: np.asfortranarray(a),
        "every_third": lambda a: a[::3, ::2],
        "transposed": lambda a: a.T,
        "reversed": lambda a: a[::-1, ::-7],
        "column": lambda a: a[:, 3],
        "zero_d": lambda a: a[5, 7, ...],
        "empty": lambda a: a[:0, 2:],
        "broadcast": lambda a: np.broadcast_to(a[:1], (9, 50)),
    }
    p, y = views[layout](base_p), views[layout](base_y)
    assert p.shape == y.shape
    for reduction in REDUCTIONS:
        compare(kind, p, y, reduction)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize(
    "weight_shape", [(), (1,), (50,), (60, 1), (60, 50), (1, 50)], ids=lambda s: str(s)
)
def test_weight_broadcasts(dtype: Any, weight_shape: tuple[int, ...]) -> None:
    p, y = make((60, 50), dtype, np.float32, seed=2)
    w = np.random.default_rng(3).uniform(0, 2, size=weight_shape)
    x = (p - dtype(0.5)) * dtype(8)
    for reduction in REDUCTIONS:
        compare("probabilities", p, y, reduction, weight=w)
        compare("logits", x, y, reduction, weight=w, pos_weight=w)


@pytest.mark.parametrize("dtype", FLOATS)
def test_extreme_probabilities(dtype: Any) -> None:
    tiny = np.finfo(dtype).smallest_subnormal
    p = np.array([0.0, 1.0, tiny, 1e-45, 1.0 - np.finfo(dtype).epsneg, 0.5, 1e-8], dtype=dtype)
    for y in (np.zeros_like(p), np.ones_like(p), np.full_like(p, 0.25)):
        got = crossent.binary_cross_entropy(p, y, reduction="none")
        assert np.all(np.isfinite(got)), got
        assert got.max() <= 100.0
        compare("probabilities", p, y, "none")
    # p = 0 with y = 1 and p = 1 with y = 0 are clamped at exactly 100, as torch does.
    assert crossent.binary_cross_entropy(np.array([0.0, 1.0], dtype), np.array([1, 0])) == 100.0


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("target_dtype", [np.float32, np.bool_])
def test_negative_zero_probability_is_zero(dtype: Any, target_dtype: Any) -> None:
    # -0.0 is a valid probability (it equals 0), not a bit pattern to reduce: with label 1
    # its loss is the clamp, 100, as torch gives; with label 0 it is +0.
    p = np.array([-0.0, -0.0, 0.0, 0.0], dtype=dtype)
    y = np.array([1, 0, 1, 0], dtype=target_dtype)
    got = crossent.binary_cross_entropy(p, y, reduction="none")
    np.testing.assert_array_equal(got, [100.0, 0.0, 100.0, 0.0])
    assert not np.signbit(got).any()
    soft = crossent.binary_cross_entropy(p, np.full(4, 0.25, dtype), reduction="none")
    np.testing.assert_array_equal(soft, np.full(4, 25.0))


@pytest.mark.parametrize("dtype", FLOATS)
def test_extreme_logits(dtype: Any) -> None:
    x = np.array([1e4, -1e4, 88.0, -88.0, 710.0, -710.0, 0.0, 1e-30, -1e-30], dtype=dtype)
    for y in (np.zeros_like(x), np.ones_like(x), np.full_like(x, 0.3)):
        got = crossent.binary_cross_entropy_with_logits(x, y, reduction="none")
        assert np.all(np.isfinite(got)), got
        compare("logits", x, y, "none")


def test_nan_propagates() -> None:
    p = np.array([0.5, np.nan, 0.25])
    y = np.array([1.0, 0.0, 1.0])
    assert np.isnan(crossent.binary_cross_entropy(p, y))
    per_element = crossent.binary_cross_entropy(p, y, reduction="none")
    assert np.isnan(per_element[1]) and np.isfinite(per_element[[0, 2]]).all()
    assert np.isnan(crossent.binary_cross_entropy_with_logits(p, y, reduction="sum"))
    assert np.isnan(crossent.binary_cross_entropy(np.array([0.5, 0.5]), np.array([1.0, np.nan])))


def test_empty_input() -> None:
    e = np.empty((0, 3))
    assert np.isnan(crossent.binary_cross_entropy(e, e))
    assert crossent.binary_cross_entropy(e, e, reduction="sum") == 0.0
    assert crossent.binary_cross_entropy_with_logits(e, e, reduction="none").shape == (0, 3)


def test_lists_and_scalars_are_accepted() -> None:
    assert crossent.binary_cross_entropy([0.9, 0.2], [1, 0]) == pytest.approx(
        float(reference.bce([0.9, 0.2], [1, 0]).mean()), rel=1e-14
    )
    assert crossent.binary_cross_entropy_with_logits(0.3, 1.0) == pytest.approx(
        float(reference.bce_with_logits(0.3, 1.0)), rel=1e-14
    )


def test_bool_bytes_other_than_one_are_true() -> None:
    p = np.array([0.3, 0.6, 0.8])
    raw = np.array([0, 1, 7], dtype=np.uint8).view(np.bool_)
    expected = reference.bce(p, np.array([0.0, 1.0, 1.0])).mean()
    assert crossent.binary_cross_entropy(p, raw) == pytest.approx(expected, rel=1e-14)


def test_float_hard_targets_match_soft_formula() -> None:
    """Float targets that are all 0/1 take the one-log path; it must agree with two logs."""
    p, y = make((10_000,), np.float64, np.float64, seed=4)
    hard = np.round(y)
    assert crossent.binary_cross_entropy(p, hard) == pytest.approx(
        float(reference.bce(p, hard).mean()), rel=1e-13
    )


def test_out_is_written_and_returned() -> None:
    p, y = make((30, 20), np.float32, np.int64)
    out = np.full((20, 30), -1.0, dtype=np.float32).T  # a strided destination
    got = crossent.binary_cross_entropy(p, y, reduction="none", out=out)
    assert got is out
    check(out, reference.bce(p, y), np.float32)


def test_not_copied_and_input_unchanged() -> None:
    p, y = make((1000,), np.float64, np.float64)
    before = p.copy()
    crossent.binary_cross_entropy(p, y, reduction="none")
    assert np.array_equal(p, before)


@pytest.mark.parametrize("kind", FUNCS)
def test_same_bits_for_any_thread_count(kind: str, threads: None) -> None:
    func, _ = FUNCS[kind]
    p, y = make((1_000_003,), np.float32, np.float32, seed=5)
    results = {}
    for n in (1, 2, 3, 7):
        crossent.set_num_threads(n)
        results[n] = (func(p, y), func(p, y, reduction="sum"), func(p, y, reduction="none"))
    for n in (2, 3, 7):
        assert results[n][0] == results[1][0]
        assert results[n][1] == results[1][1]
        assert np.array_equal(results[n][2], results[1][2])


def test_float32_mean_is_accurate_over_many_elements() -> None:
    """Sums of float32 losses are accumulated in float64: no drift over 10^7 elements."""
    n = 10_000_000
    p = np.full(n, 0.3, dtype=np.float32)
    y = np.ones(n, dtype=np.uint8)
    exact = -np.log(np.float64(np.float32(0.3)))
    assert crossent.binary_cross_entropy(p, y) == pytest.approx(exact, rel=1e-7)
    assert crossent.binary_cross_entropy(p, y, reduction="sum") == pytest.approx(
        n * exact, rel=1e-7
    )


def test_reduction_mean_does_not_allocate_the_input_size() -> None:
    """Peak RSS grows by < 1 MiB while reducing 10^8 float32 values (in a fresh process)."""
    code = textwrap.dedent(
        """
        import resource
        import numpy as np
        import crossent
        n = 100_000_000
        p = np.full(n, 0.25, dtype=np.float32)
        y = np.zeros(n, dtype=np.uint8)
        crossent.binary_cross_entropy(p[:1_000_000], y[:1_000_000])  # start the pool
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        crossent.binary_cross_entropy(p, y)
        crossent.binary_cross_entropy_with_logits(p, y, reduction="sum")
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(after - before)
        """
    )
    grown_kib = int(subprocess.check_output([sys.executable, "-c", code], text=True))
    assert grown_kib < 1024, f"peak RSS grew by {grown_kib} KiB"


def test_num_threads_from_environment() -> None:
    code = "import crossent; print(crossent.get_num_threads())"
    env = {**os.environ, "CROSSENT_NUM_THREADS": "3"}
    out = subprocess.check_output([sys.executable, "-c", code], text=True, env=env)
    assert out.strip() == "3"


def test_invalid_thread_counts(threads: None) -> None:
    for bad in (0, -2):
        with pytest.raises(ValueError, match="'n'"):
            crossent.set_num_threads(bad)
    with pytest.raises(TypeError):
        crossent.set_num_threads(1.5)  # type: ignore[arg-type]


# --- bad input --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", FUNCS)
def test_bad_input(kind: str) -> None:
    func, _ = FUNCS[kind]
    p = np.full((4, 3), 0.5)
    y = np.zeros((4, 3))
    readonly = np.empty((4, 3))
    readonly.setflags(write=False)
    cases: list[tuple[type[Exception], str, Callable[[], Any]]] = [
        (ValueError, "'target'", lambda: func(p, y[:3])),
        (ValueError, "'weight'", lambda: func(p, y, weight=np.ones(4))),
        (ValueError, "'reduction'", lambda: func(p, y, reduction="avg")),
        (TypeError, "'input'", lambda: func(p.astype(np.complex128), y)),
        (TypeError, "'input'", lambda: func(p.astype(np.int16), y)),
        (TypeError, "'input'", lambda: func(p.astype(object), y)),
        (TypeError, "'input'", lambda: func(np.array(["a", "b"]), np.zeros(2))),
        (TypeError, "'target'", lambda: func(p, y.astype(np.complex64))),
        (TypeError, "'target'", lambda: func(p, y.astype(np.uint16))),
        (ValueError, "'target'", lambda: func(p, np.full((4, 3), 2, dtype=np.int32))),
        (TypeError, "'out'", lambda: func(p, y, reduction="none", out=[0.0] * 12)),
        (TypeError, "'out'", lambda: func(p, y, reduction="none", out=np.empty((4, 3), "f4"))),
        (ValueError, "'out'", lambda: func(p, y, reduction="none", out=np.empty((3, 4)))),
        (ValueError, "'out'", lambda: func(p, y, out=np.empty((4, 3)))),
        (ValueError, "'out'", lambda: func(p, y, reduction="none", out=readonly)),
        (ValueError, "'out'", lambda: func(p, y, reduction="none", out=p)),
    ]
    if kind == "probabilities":
        # With logits a float target may be any real number, as in PyTorch.
        cases.append((ValueError, "'target'", lambda: func(p, np.full((4, 3), 1.5))))
        cases.append((ValueError, "'input'", lambda: func(np.full((4, 3), 1.0001), y)))
        cases.append((ValueError, "'input'", lambda: func(np.full((4, 3), -0.0001), y)))
    for exc, arg, call in cases:
        with pytest.raises(exc, match=arg):
            call()


def test_error_names_first_bad_position_in_c_order() -> None:
    p = np.full((5, 4), 0.5, order="F")
    p[3, 1] = 2.0
    p[1, 2] = -1.0
    with pytest.raises(ValueError, match=r"found -1\.0 at index \(1, 2\)"):
        crossent.binary_cross_entropy(p, np.zeros((5, 4)))
    labels = np.zeros(10, dtype=np.int8)
    labels[6] = -1
    with pytest.raises(ValueError, match=r"labels 0 or 1; found -1 at index \(6,\)"):
        crossent.binary_cross_entropy_with_logits(np.zeros(10), labels)


def test_byte_swapped_and_misaligned_input_are_read_correctly() -> None:
    p, y = make((101,), np.float64, np.float64, seed=6)
    expected = float(reference.bce(p, y).mean())
    swapped = p.astype(">f8")
    buf = np.zeros(101 * 8 + 1, dtype=np.uint8)
    buf[1:] = p.view(np.uint8)
    misaligned = np.frombuffer(buf, dtype=np.float64, count=101, offset=1)
    assert not misaligned.flags.aligned
    for q in (swapped, misaligned):
        assert crossent.binary_cross_entropy(q, y) == pytest.approx(expected, rel=1e-14)


# --- properties -------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    data=st.data(),
    shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=9),
    dtype=st.sampled_from(FLOATS),
    kind=st.sampled_from(list(FUNCS)),
)
def test_random_shapes_and_strides(data: Any, shape: Any, dtype: Any, kind: str) -> None:
    big = tuple(2 * s + 1 for s in shape)
    values = (
        st.floats(0.0, 1.0, width=32)
        if kind == "probabilities"
        else st.floats(-50.0, 50.0, width=32)
    )
    x = data.draw(hnp.arrays(dtype, big, elements=values))
    y = data.draw(hnp.arrays(np.float64, big, elements=st.floats(0.0, 1.0)))
    steps = tuple(data.draw(st.sampled_from([1, 2, -1, -2])) for _ in shape)
    index = tuple(slice(None, None, s) for s in steps)
    xs, ys = (
        x[index][tuple(slice(0, s) for s in shape)],
        y[index][tuple(slice(0, s) for s in shape)],
    )
    if data.draw(st.booleans()):
        xs, ys = xs.T, ys.T
    for reduction in REDUCTIONS:
        compare(kind, xs, ys, reduction)


# --------------------------------------------------------------------------------------------
# Accuracy of the logits loss and its gradient against 100-digit references
# --------------------------------------------------------------------------------------------

LOGIT_GRID = np.concatenate(
    [np.linspace(-100.0, 100.0, 81), [-50.0, -20.5, -1e-3, -1e-7, 1e-7, 1e-3, 0.75, 20.5, 50.0]]
)
TARGET_GRID = [0.0, 1e-8, 1e-4, 1e-3, 0.1, 0.5, 0.9, 1 - 1e-3, 1 - 2.0**-20, 1 - 2.0**-24, 1.0]
POS_WEIGHTS = [None, 1e-6, 0.01, 0.5, 3.0, 1e4]


def _exact_logits(x: Any, y: Any, c: Any) -> tuple[list[Any], list[Any], list[Any]]:
    """For each element (the given values, exactly): the loss `(1-y)x - (1+(c-1)y) log_sigmoid(x)`,
    its derivative `L s - c y` and the size of the terms the gradient is formed from
    (`|1-y| + L (1-s)` for x >= 0, `L s + c y` otherwise), in 100-digit arithmetic (the
    formula cancels 46 digits at x = -100)."""
    mpmath = pytest.importorskip("mpmath")
    loss, grad, scale = [], [], []
    with mpmath.workdps(100):
        for xi, yi, ci in zip(x.tolist(), y.tolist(), c.tolist(), strict=True):
            xm, ym, cm = mpmath.mpf(xi), mpmath.mpf(yi), mpmath.mpf(ci)
            e = mpmath.exp(-abs(xm))
            log_sig = (xm if xm < 0 else 0) - mpmath.log1p(e)
            s = 1 / (1 + e) if xm >= 0 else e / (1 + e)
            big_l = 1 + (cm - 1) * ym
            loss.append((1 - ym) * xm - big_l * log_sig)
            grad.append(big_l * s - cm * ym)
            scale.append(abs(1 - ym) + big_l * (1 - s) if xm >= 0 else big_l * s + cm * ym)
    return loss, grad, scale


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("pos_weight", POS_WEIGHTS)
def test_logits_loss_and_gradient_within_few_ulp_of_exact(dtype: Any, pos_weight: Any) -> None:
    """Every element of the loss is within 4 ulp of the exact loss of its inputs, for targets
    in [0, 1] (near 0 and 1 included), logits in [-100, 100], any pos_weight, with and without
    an element weight: PyTorch's formula subtracts terms of size |x| (x = -50, small y) and
    its factor 1 + (c-1) y cancels for small c and y near 1. The gradient is within 8 eps of
    the size of the terms it is formed from."""
    x, y = (a.ravel().astype(dtype) for a in np.meshgrid(LOGIT_GRID, TARGET_GRID))
    c = np.full(x.shape, 1.0 if pos_weight is None else pos_weight, dtype=dtype)
    loss, grad, scale = _exact_logits(x, y, c)
    pw = None if pos_weight is None else np.asarray([pos_weight], dtype=dtype)
    eps = float(np.finfo(dtype).eps)
    for w in (None, dtype(0.3)):
        weight = None if w is None else np.full(x.shape, w, dtype=dtype)
        factor = 1.0 if w is None else float(w)
        got = crossent.binary_cross_entropy_with_logits(
            x, y, weight=weight, pos_weight=pw, reduction="none"
        )
        want = np.array([float(v * factor) for v in loss])
        # Below the normal range the softplus term itself is subnormal: its spacing, times the
        # factors it is multiplied by, bounds the error there.
        tiny = float(np.finfo(dtype).smallest_subnormal) * factor * max(1.0, float(c[0]))
        ulp = np.spacing(np.abs(want).astype(dtype)).astype(np.float64)
        err = np.maximum(np.abs(got.astype(np.float64) - want) - tiny, 0.0) / ulp
        worst = int(np.argmax(err))
        assert err[worst] <= 4, (
            f"{err[worst]:.1f} ulp at x={x[worst]}, y={y[worst]}, pos_weight={pos_weight}, "
            f"weight={w}: {got[worst]!r} vs {want[worst]!r}"
        )
        g, _ = crossent.binary_cross_entropy_with_logits_grad(
            x, y, weight=weight, pos_weight=pw, reduction="sum"
        )
        want_g = np.array([float(v * factor) for v in grad])
        tol = 8 * eps * np.array([float(v * factor) for v in scale]) + 4 * tiny
        bad = np.abs(g.astype(np.float64) - want_g) > tol
        assert not bad.any(), (
            f"gradient at x={x[bad][0]}, y={y[bad][0]}: {g[bad][0]!r} vs {want_g[bad][0]!r}"
        )


# Infinite logits and weights: the rearranged formula keeps PyTorch's results (docs/errors.md).
NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_infinities_give_pytorchs_results(dtype: Any) -> None:
    def a(*v: float) -> Any:
        return np.array(v, dtype=dtype)

    bcel = crossent.binary_cross_entropy_with_logits
    # input: NaN -> NaN; +inf -> +inf for a target below 1, NaN for a target of 1 (0 * inf);
    # -inf -> NaN (inf - inf), whatever the target.
    out = bcel(
        a(NAN, INF, INF, -INF, -INF, -INF), a(0.5, 0.5, 1.0, 0.0, 0.5, 1.0), reduction="none"
    )
    assert np.isnan(out[0]) and out[1] == INF and np.isnan(out[2])
    assert np.isnan(out[3:]).all()
    # target: NaN -> NaN; +-inf (any real target is taken, as PyTorch): the loss is linear in
    # the target with slope -x, so -x * (+-inf), and NaN (0 * inf) for x = 0.
    assert np.isnan(bcel(a(1.0), a(NAN), reduction="none")[0])
    for v in (INF, -INF):
        out = bcel(a(1.0, -1.0, 0.0), a(v, v, v), reduction="none")
        assert out[0] == -v and out[1] == v and np.isnan(out[2])
    # weight and pos_weight: NaN -> NaN, +inf -> +inf, -inf -> -inf; an infinite pos_weight
    # with a target of 0 gives NaN (inf * 0 in 1 + (c - 1) y), as PyTorch.
    x, y = a(1.0, -1.0, 1.0), a(0.5, 0.5, 0.0)
    for v, check in ((NAN, np.isnan), (INF, lambda r: r == INF), (-INF, lambda r: r == -INF)):
        w = bcel(x, y, weight=a(v, v, v), reduction="none")
        assert all(check(r) for r in w)
        pw = bcel(x, y, pos_weight=a(v), reduction="none")
        assert check(pw[0]) and check(pw[1]) and np.isnan(pw[2])
