"""float16 and bfloat16 operands: read in place, computed in float32, results in their dtype.

Every 16-bit float is a float32 value, so the property is exact: a call on float16 (or
bfloat16) operands gives the bits of the same call on the operands widened to float32, and its
per-element (or per-row) results are those float32 results rounded to the input's dtype, as
``astype`` rounds them. The float64 references check the values themselves.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import peak
import pytest
import reference

import crossent

ml_dtypes = pytest.importorskip("ml_dtypes")
BF16 = np.dtype(ml_dtypes.bfloat16)
HALVES = [np.dtype(np.float16), BF16]
IDS = ["float16", "bfloat16"]


def f32(a: Any) -> Any:
    return np.asarray(a).astype(np.float32)


def same_bits(got: Any, want: Any) -> None:
    """Equal values and dtype, NaN where NaN (compared as the bits of equal values)."""
    got, want = np.asarray(got), np.asarray(want)
    assert got.dtype == want.dtype
    assert got.shape == want.shape
    np.testing.assert_array_equal(got.astype(np.float64), want.astype(np.float64))


def probs(shape: tuple[int, ...], dtype: Any, seed: int = 0) -> Any:
    rng = np.random.default_rng(seed)
    return rng.uniform(0.01, 0.99, size=shape).astype(dtype)


def logits(shape: tuple[int, ...], dtype: Any, seed: int = 1) -> Any:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(shape) * 4).astype(dtype)


# (name, call on operands): each call takes a tuple of arrays and keywords.
Call = Callable[..., Any]


def _bce(p: Any, y: Any, **kw: Any) -> Any:
    return crossent.binary_cross_entropy(p, y, **kw)


def _bcel(x: Any, y: Any, **kw: Any) -> Any:
    return crossent.binary_cross_entropy_with_logits(x, y, **kw)


@pytest.mark.parametrize("dtype", HALVES, ids=IDS)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize(
    ("func", "make_input"), [(_bce, probs), (_bcel, logits)], ids=["bce", "bce_with_logits"]
)
def test_bce_is_the_float32_call_on_widened_operands(
    dtype: Any, reduction: str, func: Call, make_input: Callable[..., Any]
) -> None:
    """Input, target, weight and pos_weight in the 16-bit dtype: the float32 call's bits."""
    shape = (37, 129)
    x, y = make_input(shape, dtype), probs(shape, dtype, seed=5)
    w = probs((129,), dtype, seed=6)
    kw: dict[str, Any] = {"weight": w, "reduction": reduction}
    if func is _bcel:
        kw["pos_weight"] = probs((37, 1), dtype, seed=7) * 3
    got = func(x, y, **kw)
    want = func(f32(x), f32(y), **{k: f32(v) if k != "reduction" else v for k, v in kw.items()})
    if reduction == "none":
        same_bits(got, want.astype(dtype))
    else:
        assert isinstance(got, float)
        assert got == want


@pytest.mark.parametrize("dtype", HALVES, ids=IDS)
def test_bce_hard_labels_and_float64_reference(dtype: Any) -> None:
    """Hard labels with a 16-bit input; the mean against float64 of the same values."""
    x = probs((5000,), dtype)
    y = np.random.default_rng(3).uniform(size=5000) < 0.5
    got = crossent.binary_cross_entropy(x, y)
    assert got == crossent.binary_cross_entropy(f32(x), y)
    want = float(np.mean(reference.bce(x.astype(np.float64), y)))
    assert got == pytest.approx(want, rel=1e-6)
    z = logits((5000,), dtype)
    got = crossent.binary_cross_entropy_with_logits(z, y.astype(np.int8), reduction="sum")
    want = float(np.sum(reference.bce_with_logits(z.astype(np.float64), y)))
    assert got == pytest.approx(want, rel=1e-6)


def test_every_float16_value_is_widened_exactly_and_rounded_back() -> None:
    """Every finite float16 (and every bfloat16 up to 2^60) as a logit: the per-element loss
    is the float32 loss of the exact value, rounded to the input's dtype as NumPy rounds."""
    bits = np.arange(1 << 16, dtype=np.uint16)
    for dtype in HALVES:
        x = bits.view(dtype)
        finite = np.isfinite(x.astype(np.float32)) & (np.abs(x.astype(np.float32)) < 2.0**60)
        x = x[finite]
        y = np.full(x.shape, 0.25, dtype=dtype)
        got = crossent.binary_cross_entropy_with_logits(x, y, reduction="none")
        want = crossent.binary_cross_entropy_with_logits(f32(x), f32(y), reduction="none")
        same_bits(got, want.astype(dtype))
        assert crossent.binary_cross_entropy_with_logits(x, y, reduction="sum") == (
            crossent.binary_cross_entropy_with_logits(f32(x), f32(y), reduction="sum")
        )


@pytest.mark.parametrize("dtype", HALVES, ids=IDS)
def test_strided_and_broadcast_views(dtype: Any) -> None:
    """Reversed, sliced, transposed 16-bit operands and a broadcast weight, read in place."""
    base = probs((40, 60), dtype)
    x = base[::-2, 3::3].T  # (19, 20), negative and non-unit strides, transposed
    y = probs((60, 40), dtype, seed=2)[::3, ::2]  # (20, 20) -> take (19, 20) below
    y = y[:19]
    w = probs((20,), dtype, seed=4)
    for red in ("mean", "sum", "none"):
        got = crossent.binary_cross_entropy(x, y, weight=w, reduction=red)
        want: Any = crossent.binary_cross_entropy(f32(x), f32(y), weight=f32(w), reduction=red)
        if red == "none":
            same_bits(got, want.astype(dtype))
        else:
            assert got == want
    # A Fortran-ordered input gives a Fortran-ordered output, as for float32.
    xf = np.asfortranarray(probs((30, 7), dtype))
    out = crossent.binary_cross_entropy(xf, xf, reduction="none")
    assert out.dtype == dtype and out.flags.f_contiguous


@pytest.mark.parametrize("dtype", HALVES, ids=IDS)
def test_out_in_the_input_dtype(dtype: Any) -> None:
    """`out=` of the 16-bit dtype (also a strided view) is written in place; another dtype
    is refused with a TypeError naming it."""
    x, y = probs((6, 8), dtype), probs((6, 8), dtype, seed=9)
    want = crossent.binary_cross_entropy(f32(x), f32(y), reduction="none").astype(dtype)
    out = np.zeros((6, 16), dtype=dtype)[:, ::2]
    got = crossent.binary_cross_entropy(x, y, reduction="none", out=out)
    assert got is out
    same_bits(out, want)
    other = np.float16 if dtype == BF16 else BF16
    for bad in (np.empty((6, 8), np.float32), np.empty((6, 8), other)):
        with pytest.raises(TypeError, match=rf"'out' must have dtype {dtype.name}"):
            crossent.binary_cross_entropy(x, y, reduction="none", out=bad)
    with pytest.raises(ValueError, match="'out' must not share memory with 'input'"):
        crossent.binary_cross_entropy(x, y, reduction="none", out=x)
    with pytest.raises(ValueError, match="'out'"):
        crossent.binary_cross_entropy(x, y, reduction="none", out=np.empty((8, 6), dtype))


@pytest.mark.parametrize("dtype", HALVES, ids=IDS)
def test_domain_errors_name_the_value(dtype: Any) -> None:
    x = probs((3, 4), dtype)
    x[1, 2] = 1.5
    with pytest.raises(crossent.DomainError, match=r"found 1.5 at index \(1, 2\)"):
        crossent.binary_cross_entropy(x, np.zeros((3, 4), dtype))
    y = probs((3, 4), dtype)
    y[2, 0] = -0.5
    with pytest.raises(crossent.DomainError, match=r"'target'.*found -0.5 at index \(2, 0\)"):
        crossent.binary_cross_entropy(probs((3, 4), dtype), y)
    p = probs((3, 4), dtype)
    p[0, 3] = -0.25
    with pytest.raises(crossent.DomainError, match=r"'p'.*found -0.25 at index \(0, 3\)"):
        crossent.entropy(p, axis=1)


DIVERGENCES = [
    ("entropy", lambda p, q, **kw: crossent.entropy(p, **kw)),
    ("cross_entropy", crossent.cross_entropy),
    ("kl_divergence", crossent.kl_divergence),
    ("jensen_shannon", crossent.jensen_shannon),
]


@pytest.mark.parametrize("dtype", HALVES, ids=IDS)
@pytest.mark.parametrize(("name", "func"), DIVERGENCES, ids=[d[0] for d in DIVERGENCES])
def test_divergences(dtype: Any, name: str, func: Call) -> None:
    """Per row (in the input's dtype) and whole (a float): the float32 call's bits."""
    p, q = probs((50, 33), dtype, seed=1), probs((50, 33), dtype, seed=2)
    for axis in (1, 0):
        got = func(p, q, axis=axis)
        same_bits(got, func(f32(p), f32(q), axis=axis).astype(dtype))
    got = func(p, q, axis=None)
    assert isinstance(got, float)
    assert got == func(f32(p), f32(q), axis=None)
    # The float64 reference of the same values (normalised rows, natural log).
    refs = {
        "entropy": lambda a, b: reference.entropy(a),
        "cross_entropy": reference.cross_entropy,
        "kl_divergence": reference.kl_divergence,
        "jensen_shannon": reference.jensen_shannon,
    }
    p64, q64 = p.astype(np.float64), q.astype(np.float64)
    want = np.array([refs[name](p64[i], q64[i]) for i in range(50)])
    np.testing.assert_allclose(func(p, q, axis=1).astype(np.float64), want, rtol=8e-3)
    # out= in the input's dtype; a mix with float32 gives float32, as NumPy promotes.
    out = np.empty(50, dtype)
    assert func(p, q, axis=1, out=out) is out
    if name != "entropy":
        assert func(p, f32(q), axis=1).dtype == np.float32


@pytest.mark.parametrize("dtype", HALVES, ids=IDS)
def test_softmax_cross_entropy_logits(dtype: Any) -> None:
    """Logits (and probability targets and class weights) in the 16-bit dtype."""
    x = logits((64, 10), dtype)
    labels = np.random.default_rng(0).integers(0, 10, 64)
    w = probs((10,), dtype, seed=3)
    t = probs((64, 10), dtype, seed=4)
    for target in (labels, t):
        for red in ("mean", "sum", "none"):
            got = crossent.softmax_cross_entropy(x, target, weight=w, reduction=red)
            t32 = target if target is labels else f32(target)
            want: Any = crossent.softmax_cross_entropy(f32(x), t32, weight=f32(w), reduction=red)
            if red == "none":
                same_bits(got, want.astype(dtype))
            else:
                assert got == want
    ref = float(np.mean(reference.softmax_cross_entropy(x.astype(np.float64), labels)))
    assert crossent.softmax_cross_entropy(x, labels) == pytest.approx(ref, rel=1e-6)
    # Class axis first (strided rows), out= in the dtype.
    out = np.empty(64, dtype)
    got = crossent.softmax_cross_entropy(x.T, labels, axis=0, reduction="none", out=out)
    assert got is out
    same_bits(out, crossent.softmax_cross_entropy(f32(x), labels, reduction="none").astype(dtype))


@pytest.mark.parametrize("dtype", HALVES, ids=IDS)
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_gradients(dtype: Any, reduction: Any) -> None:
    """Gradients and Hessians of the input's dtype: the float32 ones, rounded."""
    x, y = logits((30, 17), dtype), probs((30, 17), dtype)
    g, h = crossent.binary_cross_entropy_with_logits_grad(x, y, reduction=reduction)
    g32, h32 = crossent.binary_cross_entropy_with_logits_grad(f32(x), f32(y), reduction=reduction)
    same_bits(g, g32.astype(dtype))
    same_bits(h, h32.astype(dtype))
    labels = np.random.default_rng(2).integers(0, 17, 30)
    g, h = crossent.softmax_cross_entropy_grad(x, labels, reduction=reduction)
    g32, h32 = crossent.softmax_cross_entropy_grad(f32(x), labels, reduction=reduction)
    same_bits(g, g32.astype(dtype))
    same_bits(h, h32.astype(dtype))
    # out= of the dtype, strided; float32 outputs are refused.
    out = (np.empty((30, 34), dtype)[:, ::2], np.empty((30, 17), dtype))
    got = crossent.softmax_cross_entropy_grad(x, labels, reduction=reduction, out=out)
    assert got[0] is out[0] and got[1] is out[1]
    same_bits(out[0], g32.astype(dtype))
    with pytest.raises(TypeError, match="'out'"):
        crossent.binary_cross_entropy_with_logits_grad(
            x, y, out=(np.empty((30, 17), np.float32), np.empty((30, 17), np.float32))
        )


def test_accumulators_take_half_batches() -> None:
    """A streaming accumulator fed 16-bit batches gives the one call's value."""
    x, y = probs((1000,), np.float16), probs((1000,), np.float16, seed=3)
    acc = crossent.BinaryCrossEntropyAccumulator()
    acc.update(x[:300], y[:300])
    acc.update(x[300:], y[300:])
    assert acc.result() == pytest.approx(crossent.binary_cross_entropy(x, y), rel=1e-12)
    e = crossent.EntropyAccumulator()
    e.update(x[:500])
    e.update(x[500:])
    assert e.result() == pytest.approx(crossent.entropy(f32(x)), rel=1e-6)


@pytest.mark.parametrize("dtype", HALVES, ids=IDS)
def test_sample_weight(dtype: Any) -> None:
    """scikit-learn's sample_weight with 16-bit operands (the weights 16-bit too): the bits of
    the float32 call, per element in the input's dtype."""
    x, y = probs((30, 20), dtype), probs((30, 20), dtype, seed=3)
    sw = probs((30, 1), dtype, seed=4) * 4
    for func in (_bce, _bcel):
        for red in ("mean", "sum", "none"):
            got = func(x, y, sample_weight=sw, reduction=red)
            want: Any = func(f32(x), f32(y), sample_weight=f32(sw), reduction=red)
            if red == "none":
                same_bits(got, want.astype(dtype))
            else:
                assert got == want
    z = logits((30, 20), dtype)
    labels = np.random.default_rng(5).integers(0, 20, 30)
    rows = sw[:, 0]
    for red in ("mean", "sum", "none"):
        got = crossent.softmax_cross_entropy(z, labels, sample_weight=rows, reduction=red)
        want = crossent.softmax_cross_entropy(
            f32(z), labels, sample_weight=f32(rows), reduction=red
        )
        if red == "none":
            same_bits(got, want.astype(dtype))
        else:
            assert got == want


@pytest.mark.parametrize("dtype", HALVES, ids=IDS)
def test_groups(dtype: Any) -> None:
    """Per-group losses (groups=, n_groups=) over 16-bit operands: the float32 call's bits."""
    x, y = probs((40, 25), dtype), probs((40, 25), dtype, seed=8)
    codes = np.random.default_rng(1).integers(0, 4, (40, 25))
    for func in (_bce, _bcel):
        for red in ("mean", "sum"):
            got = func(x, y, groups=codes, n_groups=4, reduction=red)
            want = func(f32(x), f32(y), groups=codes, n_groups=4, reduction=red)
            np.testing.assert_array_equal(got, want)
    z = logits((40, 25), dtype)
    labels = np.random.default_rng(2).integers(0, 25, 40)
    rows = codes[:, 0]
    got = crossent.softmax_cross_entropy(z, labels, groups=rows, n_groups=4)
    want = crossent.softmax_cross_entropy(f32(z), labels, groups=rows, n_groups=4)
    np.testing.assert_array_equal(got, want)
    acc = crossent.BinaryCrossEntropyAccumulator(n_groups=4)
    acc.update(x[:13], y[:13], groups=codes[:13])
    acc.update(x[13:], y[13:], groups=codes[13:])
    np.testing.assert_allclose(acc.result(), _bce(x, y, groups=codes, n_groups=4), rtol=1e-12)


def test_dask_per_row_results_declare_the_dtype_they_compute() -> None:
    """crossent.dask's per-row divergences and softmax losses announce the dtype their blocks
    hold: that of 16-bit operands of one dtype, float64 when an operand is float64, bool or
    integer (a float32 `p` with a float64 `q` included), float32 otherwise."""
    da = pytest.importorskip("dask.array")
    import crossent.dask as cd

    rng = np.random.default_rng(0)
    dtypes = [*HALVES, np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.int32)]
    for dp in dtypes:
        for dq in [None, *dtypes]:
            p = rng.uniform(0.1, 0.9, (10, 4)).astype(dp)
            ops = [p] if dq is None else [p, rng.uniform(0.1, 0.9, (10, 4)).astype(dq)]
            name = "entropy" if dq is None else "kl_divergence"
            want = getattr(crossent, name)(*ops, axis=1).dtype
            lazy = getattr(cd, name)(*[da.from_array(o, chunks=(5, 4)) for o in ops], axis=1)
            assert (lazy.dtype, lazy.compute().dtype) == (want, want), (dp, dq)
    labels = da.from_array(rng.integers(0, 4, 10), chunks=5)
    for dx in [*dtypes, np.dtype(np.bool_)]:
        x = (rng.standard_normal((10, 4)) * 3).astype(dx)
        want = crossent.softmax_cross_entropy(x, labels.compute(), reduction="none").dtype
        lazy = cd.softmax_cross_entropy(da.from_array(x, chunks=(5, 4)), labels, reduction="none")
        assert (lazy.dtype, lazy.compute().dtype) == (want, want), dx


@pytest.mark.parametrize("name", IDS)
def test_torch_tensors(name: str) -> None:
    """PyTorch CPU float16 and bfloat16 tensors are read in place; results are NumPy arrays of
    the matching dtype."""
    torch = pytest.importorskip("torch")
    tdtype = getattr(torch, name)
    x = torch.rand(10, 20, dtype=torch.float32).to(tdtype) * 0.9 + 0.05
    y = torch.rand(10, 20, dtype=torch.float32).to(tdtype)
    x32, y32 = x.float().numpy(), y.float().numpy()
    got: Any = crossent.binary_cross_entropy(x, y, reduction="none")
    want: Any = crossent.binary_cross_entropy(x32, y32, reduction="none")
    assert got.dtype.name == name
    same_bits(got, want.astype(got.dtype))
    assert crossent.binary_cross_entropy(x, y) == crossent.binary_cross_entropy(x32, y32)
    # A strided view of the tensor, and the divergences and gradients.
    e: Any = crossent.entropy(x[:, ::3])
    e32: Any = crossent.entropy(x32[:, ::3])
    same_bits(e, e32.astype(e.dtype))
    g, _ = crossent.binary_cross_entropy_with_logits_grad(x.T, y.T)
    assert g.dtype.name == name and g.shape == (20, 10)


@pytest.mark.parametrize("name", IDS)
def test_torch_tensors_refused_as_numpy_refuses_them(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tensor that requires grad, or on another device, is refused as for float32 tensors
    (a TypeError naming the argument), bfloat16 ones too; without ml_dtypes a bfloat16 tensor
    is refused with an error that says what to install."""
    torch = pytest.importorskip("torch")
    tdtype = getattr(torch, name)
    y = torch.rand(4, dtype=tdtype)
    needs_grad = torch.rand(4, dtype=tdtype, requires_grad=True)
    with pytest.raises(TypeError, match=r"'input'.*requires grad"):
        crossent.binary_cross_entropy(needs_grad, y)
    with pytest.raises(TypeError, match=r"'target'.*requires grad"):
        crossent.binary_cross_entropy(y, needs_grad)
    with pytest.raises(TypeError, match=r"'p'.*meta"):
        crossent.entropy(torch.rand(4, dtype=tdtype, device="meta"))
    if name == "bfloat16":
        monkeypatch.setitem(sys.modules, "ml_dtypes", None)
        with pytest.raises(TypeError, match=r"'input'.*install ml_dtypes"):
            crossent.binary_cross_entropy(y, y)


MEMORY_SCRIPT = """
    import json
    import numpy as np
    import crossent

    N = 1 << 24  # float16: 32 MiB; a float32 copy would be 64 MiB
    x = np.random.default_rng(0).uniform(0.05, 0.95, N).astype(np.float16)
    report = {
        "bce mean": growth(lambda: crossent.binary_cross_entropy(x, x)),
        "bce_with_logits mean": growth(lambda: crossent.binary_cross_entropy_with_logits(x, x)),
        "entropy": growth(lambda: crossent.entropy(x)),
        "softmax": growth(
            lambda: crossent.softmax_cross_entropy(x.reshape(-1, 16), np.zeros(N // 16, np.int8))
        ),
    }
    print(json.dumps(report))
    """


@peak.needs_clear_refs
def test_a_mean_over_float16_needs_no_copy() -> None:
    """Over 2^24 float16 values the peak resident memory grows by less than 1 MiB."""
    report = peak.run(MEMORY_SCRIPT)
    grew = {case: kib for case, kib in report.items() if kib >= 1024}
    assert not grew, f"peak memory grew (KiB): {grew}"
