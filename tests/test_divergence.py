"""entropy, cross_entropy, kl_divergence and jensen_shannon against SciPy (and PyTorch)."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap
import warnings
from typing import Any

import numpy as np
import pytest
import scipy.special
import scipy.stats
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy.spatial.distance import jensenshannon

import crossent

PAIRWISE = ("cross_entropy", "kl_divergence", "jensen_shannon")
ALL = ("entropy", *PAIRWISE)


def scipy_reference(name: str, p: Any, q: Any, axis: int | None, base: float | None) -> Any:
    """The SciPy definition, in float64, of what crossent computes."""
    p = np.asarray(p, dtype=np.float64)
    q = None if q is None else np.asarray(q, dtype=np.float64)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        if name == "entropy":
            return scipy.stats.entropy(p, base=base, axis=axis)
        if name == "kl_divergence":
            p, q = np.broadcast_arrays(p, q)
            return scipy.stats.entropy(p, q, base=base, axis=axis)
        if name == "cross_entropy":
            p, q = np.broadcast_arrays(p, q)
            a = p / p.sum(axis=axis, keepdims=True)
            b = q / q.sum(axis=axis, keepdims=True)
            terms = np.where(a == 0, 0.0, -a * np.log(b))
            h = terms.sum(axis=axis)
            return h / np.log(base) if base is not None else h
        p, q = np.broadcast_arrays(p, q)
        return jensenshannon(p, q, base=base, axis=axis) ** 2


def call(name: str, p: Any, q: Any, **kw: Any) -> Any:
    f = getattr(crossent, name)
    return f(p, **kw) if name == "entropy" else f(p, q, **kw)


def tolerances(dtype: Any) -> tuple[float, float]:
    return (1e-10, 1e-12) if dtype == np.float64 else (2e-5, 2e-6)


@st.composite
def cases(draw: st.DrawFn) -> tuple[Any, Any, int | None, float | None]:
    """Probability-like arrays with zeros, one-hot rows and zero rows, in any layout."""
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=7))
    size = int(np.prod(shape))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    kind = draw(st.sampled_from(["dense", "sparse", "onehot", "tiny"]))
    p = rng.random(size)
    q = rng.random(size) + 1e-3
    if kind == "sparse":
        p[rng.random(size) < 0.4] = 0.0
    elif kind == "onehot":
        p = (rng.random(size) < 0.2).astype(np.float64)
    elif kind == "tiny":
        p *= 1e-30
    p = p.reshape(shape).astype(dtype)
    q = q.reshape(shape).astype(dtype)
    layout = draw(st.sampled_from(["C", "F", "T", "step", "neg"]))
    if layout == "F":
        p, q = np.asfortranarray(p), np.asfortranarray(q)
    elif layout == "T":
        p, q = p.T, q.T
    elif layout == "step":
        p, q = np.repeat(p, 2, axis=0)[::2], np.repeat(q, 3, axis=-1)[..., ::3]
    elif layout == "neg":
        p, q = p[::-1], q[..., ::-1]
    axis = draw(st.sampled_from([None, *range(-p.ndim, p.ndim)]))
    base = draw(st.sampled_from([None, 2, 10.0, math.e]))
    return p, q, axis, base


@pytest.mark.parametrize("name", ALL)
@settings(max_examples=80, deadline=None)
@given(case=cases())
def test_matches_scipy(name: str, case: Any) -> None:
    p, q, axis, base = case
    got = call(name, p, q, axis=axis, base=base)
    want = scipy_reference(name, p, q, axis, base)
    rtol, atol = tolerances(p.dtype)
    if np.ndim(want) == 0:
        assert isinstance(got, float)
    else:
        assert isinstance(got, np.ndarray)
        assert got.dtype == p.dtype
        assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)


def float32_rows(kind: str, shape: tuple[int, int], seed: int) -> Any:
    """float32 rows that stress the logarithms: near one-hot rows (entropy near 0 next to a
    large ln P), counts, scaled and subnormal values."""
    rng = np.random.default_rng(seed)
    rows, cols = shape
    if kind == "counts":
        return rng.integers(0, 1000, shape).astype(np.float32)
    if kind == "subnormal":
        return (rng.random(shape) * 1e-38).astype(np.float32)
    if kind == "scaled":
        return (rng.random(shape) * 1e-30).astype(np.float32)
    if kind.startswith("onehot"):
        eps = float(kind[len("onehot") :])
        p = rng.random(shape) * eps / cols
        p[np.arange(rows), rng.integers(0, cols, rows)] = rng.uniform(0.5, 3, rows)
        return p.astype(np.float32)
    return rng.random(shape).astype(np.float32)


@pytest.mark.parametrize(
    "kind", ["dense", "counts", "subnormal", "scaled", "onehot1e-3", "onehot1e-7"]
)
@pytest.mark.parametrize("shape", [(400, 10), (100, 40), (60, 1000), (2, 70_000)])
@pytest.mark.parametrize("name", ["entropy", "cross_entropy"])
def test_float32_rows_within_one_ulp(name: str, kind: str, shape: tuple[int, int]) -> None:
    """float32 results within 1 ulp of float32 of SciPy's float64 result, per row and for the
    whole array. The single-pass forms cancel ln P (ln Q) against the log sum, so a near
    one-hot row (entropy 1e-6 next to ln P ~ 1) is only right if the log of its largest
    element is exact; for cross-entropy, q is p perturbed by up to 10%, so that both
    concentrate on the same element."""
    rng = np.random.default_rng(len(kind) * shape[1])
    p = float32_rows(kind, shape, len(kind) * shape[1])
    q = (p * rng.uniform(0.9, 1.1, shape)).astype(np.float32)
    for axis in (1, None):
        got = np.asarray(call(name, p, q, axis=axis), dtype=np.float64)
        want = scipy_reference(name, p, q, axis, None)
        ulp = np.spacing(np.abs(want).astype(np.float32)).astype(np.float64)
        # q = 0 under p > 0 (counts) makes cross-entropy infinite, in both.
        with np.errstate(invalid="ignore"):
            close = np.where(np.isinf(want), got == want, np.abs(got - want) <= ulp)
        assert np.all(close), f"{kind} {shape} axis={axis}"


@pytest.mark.parametrize("shape", [(100, 40), (300, 1000), (3, 70_000)])
@pytest.mark.parametrize("name", ALL)
def test_float32_rows_same_bits_in_any_layout(name: str, shape: tuple[int, int]) -> None:
    """Rows long enough for the float32-lane logarithms (and their largest element's fix,
    forced here by a dominant column) give the same bits read in C order, Fortran order or
    with a stride."""
    rng = np.random.default_rng(11)
    p = rng.random(shape).astype(np.float32)
    p[:, 5] *= 100
    q = rng.random(shape).astype(np.float32) + np.float32(1e-3)
    q[:, 5] *= 100
    want = np.asarray(call(name, p, q, axis=1)).tobytes()
    fortran = (np.asfortranarray(p), np.asfortranarray(q))
    strided = (np.repeat(p, 2, axis=1)[:, ::2], np.repeat(q, 2, axis=1)[:, ::2])
    for a, b in (fortran, strided):
        assert np.asarray(call(name, a, b, axis=1)).tobytes() == want


@pytest.mark.parametrize("name", ALL)
@settings(max_examples=40, deadline=None)
@given(case=cases())
def test_layout_does_not_change_bits(name: str, case: Any) -> None:
    """Along one axis, a row gives the same bits whether it is contiguous or strided."""
    p, q, axis, _ = case
    if axis is None:
        return
    a = call(name, p, q, axis=axis)
    b = call(name, np.ascontiguousarray(p), np.ascontiguousarray(q), axis=axis)
    assert np.asarray(a).tobytes() == np.asarray(b).tobytes()


def test_rel_entr_terms_and_conventions() -> None:
    p = np.array([0.0, 0.25, 0.75, 0.0])
    q = np.array([0.0, 0.5, 0.5, 1.0])
    want = scipy.special.rel_entr(p, q).sum()
    assert crossent.kl_divergence(p, q, normalize=False) == pytest.approx(want, rel=1e-15)
    # p > 0 where q = 0 is infinite; one-hot rows have zero entropy; empty rows give 0.
    assert crossent.kl_divergence([0.5, 0.5], [1.0, 0.0]) == math.inf
    assert crossent.cross_entropy([0.5, 0.5], [1.0, 0.0]) == math.inf
    assert crossent.entropy([0.0, 1.0, 0.0]) == 0.0
    assert crossent.entropy([7.0]) == 0.0
    np.testing.assert_array_equal(crossent.entropy(np.zeros((3, 0))), [0.0, 0.0, 0.0])
    assert np.asarray(crossent.entropy(np.zeros((0, 3)))).shape == (0,)
    # A row summing to zero is NaN (as SciPy); NaN stays in its row.
    assert math.isnan(crossent.entropy([0.0, 0.0]))
    rows = np.array([[0.5, np.nan], [0.5, 0.5]])
    got = np.asarray(crossent.kl_divergence(rows, [[0.5, 0.5]]))
    assert math.isnan(got[0]) and got[1] == 0.0
    # Integer counts are accepted (converted to float64), as in SciPy.
    assert crossent.entropy([1, 2, 3]) == pytest.approx(scipy.stats.entropy([1, 2, 3]), rel=1e-15)
    assert crossent.entropy(np.array([1, 1], dtype=np.float16)) == pytest.approx(math.log(2))


def test_normalize_false_uses_rows_as_given() -> None:
    rng = np.random.default_rng(1)
    p, q = rng.random((4, 9)), rng.random((4, 9)) + 0.1
    np.testing.assert_allclose(
        crossent.entropy(p, normalize=False), scipy.special.entr(p).sum(-1), rtol=1e-13
    )
    np.testing.assert_allclose(
        crossent.kl_divergence(p, q, normalize=False),
        scipy.special.rel_entr(p, q).sum(-1),
        rtol=1e-12,
    )
    np.testing.assert_allclose(
        crossent.cross_entropy(p, q, normalize=False), -(p * np.log(q)).sum(-1), rtol=1e-13
    )
    m = (p + q) / 2
    js = (scipy.special.rel_entr(p, m) + scipy.special.rel_entr(q, m)).sum(-1) / 2
    np.testing.assert_allclose(crossent.jensen_shannon(p, q, normalize=False), js, rtol=1e-12)


@settings(max_examples=60, deadline=None)
@given(case=cases())
def test_identities(case: Any) -> None:
    p, q, axis, _ = case
    if p.size == 0:
        return
    h = np.asarray(crossent.entropy(p, axis=axis), dtype=np.float64)
    ce = np.asarray(crossent.cross_entropy(p, q, axis=axis), dtype=np.float64)
    kl = np.asarray(crossent.kl_divergence(p, q, axis=axis), dtype=np.float64)
    rtol, atol = tolerances(p.dtype)
    np.testing.assert_allclose(ce, h + kl, rtol=rtol, atol=atol * 10)
    # KL(p || p) is exactly 0 wherever the row is a distribution.
    self_kl = np.asarray(crossent.kl_divergence(p, p, axis=axis))
    finite = ~np.isnan(self_kl)
    assert (self_kl[finite] == 0).all()
    # JS is symmetric to the bit and within [0, ln 2].
    js = np.asarray(crossent.jensen_shannon(p, q, axis=axis))
    np.testing.assert_array_equal(js, np.asarray(crossent.jensen_shannon(q, p, axis=axis)))
    ok = js[~np.isnan(js)]
    assert (ok >= -1e-6).all() and (ok <= math.log(2) + 1e-6).all()


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize(
    ("shape", "axis"),
    [((1000, 1000), -1), ((1000, 1000), 0), ((3, 400_000), -1), ((2, 70_000, 3), 1)],
)
def test_same_bits_for_any_thread_count(
    name: str, shape: tuple[int, ...], axis: int, threads: None
) -> None:
    rng = np.random.default_rng(3)
    p = rng.random(shape).astype(np.float32)
    q = rng.random(shape).astype(np.float32) + np.float32(1e-3)
    results = []
    for n in (1, 2, 3, 7):
        crossent.set_num_threads(n)
        results.append((call(name, p, q, axis=axis), call(name, p, q, axis=None)))
    first_rows, first_total = results[0]
    for rows, total in results[1:]:
        np.testing.assert_array_equal(rows.view(np.uint32), first_rows.view(np.uint32))
        assert np.float64(total).tobytes() == np.float64(first_total).tobytes()


@pytest.mark.parametrize("name", ALL)
def test_out_is_written_in_place(name: str) -> None:
    rng = np.random.default_rng(4)
    p = rng.random((6, 5, 4))
    q = rng.random((6, 5, 4)) + 0.1
    out = np.full((4, 6), np.nan).T  # (6, 4), strided
    got = call(name, p, q, axis=1, out=out)
    assert got is out
    np.testing.assert_array_equal(out, call(name, p, q, axis=1))
    scalar = np.zeros(())
    assert call(name, p[0, :, 0], q[0, :, 0], out=scalar) is scalar
    assert scalar == call(name, p[0, :, 0].copy(), q[0, :, 0].copy())


def test_broadcasting_q_against_p() -> None:
    rng = np.random.default_rng(5)
    p = rng.random((7, 5))
    q = rng.random(5) + 0.1
    np.testing.assert_allclose(
        crossent.kl_divergence(p, q), scipy.stats.entropy(p, np.broadcast_to(q, p.shape), axis=-1)
    )
    # Mixed float32 / float64 computes in float64.
    assert np.asarray(crossent.kl_divergence(p.astype(np.float32), q)).dtype == np.float64


@pytest.mark.parametrize("name", ALL)
def test_bad_input(name: str) -> None:
    good = np.full((2, 3), 1 / 3)
    neg = good.copy()
    neg[1, 2] = -0.25
    with pytest.raises(
        ValueError, match=r"'p' must hold non-negative values; found -0.25 at index \(1, 2\)"
    ):
        call(name, neg, good)
    if name != "entropy":
        with pytest.raises(ValueError, match=r"'q' .* at index \(1, 2\)"):
            call(name, good, neg)
        with pytest.raises(ValueError, match="'p' of shape \\(2, 3\\) and 'q' of shape \\(4,\\)"):
            call(name, good, np.ones(4))
        with pytest.raises(TypeError, match="'q'"):
            call(name, good, good.astype(np.complex128))
    with pytest.raises(TypeError, match="'p'"):
        call(name, good.astype(np.complex128), good)
    with pytest.raises(TypeError, match="'p'"):
        call(name, np.array(["a", "b"]), np.array(["a", "b"]))
    with pytest.raises(ValueError, match="'axis'"):
        call(name, good, good, axis=2)
    with pytest.raises(ValueError, match="'axis'"):
        call(name, np.float64(1.0), np.float64(1.0))
    for base in (0, -2, 1, math.inf, math.nan):
        with pytest.raises(ValueError, match="'base'"):
            call(name, good, good, base=base)
    with pytest.raises(ValueError, match="'out' must have shape \\(2,\\)"):
        call(name, good, good, out=np.zeros(3))
    with pytest.raises(TypeError, match="'out' must have dtype float64"):
        call(name, good, good, out=np.zeros(2, dtype=np.float32))
    ro = np.zeros(2)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="'out' is read-only"):
        call(name, good, good, out=ro)
    with pytest.raises(ValueError, match="'out'"):
        call(name, good, good, out=good[:, 0])
    with pytest.raises(TypeError, match="'out'"):
        call(name, good, good, out=[0.0, 0.0])


def test_unusual_memory_is_read_correctly() -> None:
    p = np.array([0.1, 0.2, 0.3, 0.4])
    want = crossent.entropy(p)
    assert crossent.entropy(p.astype(">f8")) == want
    buf = np.zeros(4 * 8 + 1, dtype=np.uint8)
    mis = np.frombuffer(buf.data, dtype=np.float64, count=4, offset=1)
    assert not mis.flags.aligned
    buf[1:] = p.view(np.uint8)
    assert crossent.entropy(mis) == want
    assert crossent.entropy(p.tolist()) == want


def test_reductions_do_not_copy_the_input() -> None:
    """Peak RSS grows by less than 1 MiB over a 10^7-element float32 input, in any layout,
    also for Jensen-Shannon over 10^6 short rows (no per-row scratch)."""
    script = textwrap.dedent(
        """
        import resource, numpy as np, crossent
        def peak():
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        rng = np.random.default_rng(0)
        p = rng.random((10_000, 1_000), dtype=np.float32)
        q = rng.random((10_000, 1_000), dtype=np.float32)
        out = np.zeros(10_000, dtype=np.float32)
        out10 = np.zeros(1_000_000, dtype=np.float32)
        crossent.entropy(p[:2], axis=-1)
        before = peak()
        crossent.entropy(p, axis=None)
        crossent.kl_divergence(p, q, axis=-1, out=out)
        crossent.jensen_shannon(p, q, axis=-1, out=out)
        crossent.jensen_shannon(p.reshape(-1, 10), q.reshape(-1, 10), axis=-1, out=out10)
        crossent.cross_entropy(p.T, q.T, axis=0, out=out)
        crossent.entropy(p[::2], axis=0)
        print(peak() - before)
        """
    )
    grown = int(subprocess.check_output([sys.executable, "-c", script], text=True))
    assert grown < 1 << 20, f"peak RSS grew by {grown} bytes"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self")
def test_many_long_rows_hold_bounded_state() -> None:
    """Rows longer than one chunk are reduced chunk by chunk in parallel; the chunk states
    held at once stay bounded. 16384 broadcast rows of two chunks each (32768 chunk states,
    1.8 MB if all were held) grow the resident set by less than 1 MiB, with the right values.
    Free heap memory is returned to the system and the high-water mark reset first, so that
    the measure sees every page the call touches."""
    script = textwrap.dedent(
        """
        import ctypes, numpy as np, crossent
        def kib(field):
            for line in open("/proc/self/status"):
                if line.startswith(field):
                    return int(line.split()[1])
        row = np.random.default_rng(0).random(crossent.CHUNK + 1)
        p = np.broadcast_to(row, (16384, row.size))
        out = np.zeros(len(p))
        crossent.entropy(p[:2], axis=-1)
        libc = ctypes.CDLL(None)
        if hasattr(libc, "malloc_trim"):  # glibc
            libc.malloc_trim(0)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        before = kib("VmRSS:")
        crossent.entropy(p, axis=-1, out=out)
        grown = kib("VmHWM:") - before
        print(grown, int(np.all(out == crossent.entropy(row))))
        """
    )
    grown, same = map(int, subprocess.check_output([sys.executable, "-c", script]).split())
    assert grown < 1024, f"peak RSS grew by {grown} KiB"
    assert same == 1, "every row's entropy equals the row's own"


# --------------------------------------------------------------------------------------------
# Accuracy whatever the scales of p and q: no overflow, SciPy's error
# --------------------------------------------------------------------------------------------


def _exact_divergences(p: Any, q: Any) -> dict[str, tuple[float, float]]:
    """Entropy, cross-entropy and KL of the normalised p, q (the given values, exactly), each
    with the size of its terms `Σ a |ln a|` / `Σ a |ln b|` / `Σ a |ln(a/b)|`, in 60-digit
    arithmetic."""
    mpmath = pytest.importorskip("mpmath")
    with mpmath.workdps(60):
        ps = [mpmath.mpf(v) for v in np.asarray(p, dtype=np.float64).ravel().tolist()]
        qs = [mpmath.mpf(v) for v in np.asarray(q, dtype=np.float64).ravel().tolist()]
        big_p, big_q = mpmath.fsum(ps), mpmath.fsum(qs)
        a = [v / big_p for v in ps]
        b = [v / big_q for v in qs]
        ent = [-x * mpmath.log(x) if x > 0 else mpmath.mpf(0) for x in a]
        ce = [-x * mpmath.log(y) if x > 0 else mpmath.mpf(0) for x, y in zip(a, b, strict=True)]
        kl = [x * mpmath.log(x / y) if x > 0 else mpmath.mpf(0) for x, y in zip(a, b, strict=True)]
        return {
            name: (float(mpmath.fsum(t)), float(mpmath.fsum(abs(v) for v in t)))
            for name, t in (("entropy", ent), ("cross_entropy", ce), ("kl_divergence", kl))
        }


SCALES = [1e-300, 1e-150, 1e-20, 1.0, 1e20, 1e150, 1e300]


def _scaled_pairs(dtype: Any) -> list[tuple[Any, Any]]:
    """Pairs of distributions on independent scales (float64: 1e-300 to 1e300; float32: its
    range), near-equal pairs (tiny KL), and q with subnormal entries."""
    rng = np.random.default_rng(5)
    scales = SCALES if dtype == np.float64 else [1e-30, 1e-10, 1.0, 1e10, 1e30]
    pairs = []
    for sp in scales:
        for sq in scales:
            a = rng.uniform(0.05, 1.0, 7)
            b = a * (1 + rng.normal(0, 1e-4, 7))  # KL about 1e-9
            pairs.append((a * sp, b * sq))
            pairs.append((rng.uniform(0, 1, 7) * sp, rng.uniform(0.01, 1, 7) * sq))
    if dtype == np.float64:
        pairs.append((np.array([3e5, 7e5]), np.array([1.0, 1e-304])))
        pairs.append((np.array([0.3, 0.7, 0.1]), np.array([1e-310, 3e-310, 2e-309])))
        pairs.append((np.array([1.0, 2.0]), np.array([5e-324, 1e-320])))
    return [(p.astype(dtype), q.astype(dtype)) for p, q in pairs]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_divergences_accurate_and_finite_on_any_scale(dtype: Any) -> None:
    """entropy, cross_entropy and kl_divergence of p, q on any scales (each normalised) are
    within 8 eps of SciPy's error bound (`Σ a (|term log| + 1)`, its logs of normalised values
    each rounded) plus the value itself — never inf
    where the exact value is finite (forming p/q overflowed: [3e5, 7e5] against [1, 1e-304]),
    and a KL of 1e-9 between distributions on different scales keeps its digits (the
    single-pass correction `S/P + ln Q - ln P` cancelled ln(P/Q) against itself). Checked for
    rows (axis=-1, axis=0 and a strided layout), axis=None and the accumulators."""
    e = float(np.finfo(dtype).eps)
    pairs = _scaled_pairs(dtype)
    fns: dict[str, tuple[Any, Any]] = {
        "entropy": (crossent.entropy, crossent.EntropyAccumulator),
        "cross_entropy": (crossent.cross_entropy, crossent.CrossEntropyAccumulator),
        "kl_divergence": (crossent.kl_divergence, crossent.KLDivergenceAccumulator),
    }
    for p, q in pairs:
        exact = _exact_divergences(p, q)
        for name, (fn, acc_class) in fns.items():
            want, size = exact[name]
            tol = 8 * e * (abs(want) + size + 1)
            args = (p,) if name == "entropy" else (p, q)
            rows2 = tuple(np.stack([a, a]) for a in args)
            got = {
                "axis=-1": fn(*rows2, axis=-1)[1],
                "axis=0": fn(*(np.ascontiguousarray(a.T) for a in rows2), axis=0)[0],
                "strided": fn(*(np.repeat(a, 2, axis=1)[:, ::2] for a in rows2), axis=1)[0],
                "axis=None": fn(*args, axis=None),
            }
            acc = acc_class()
            acc.update(*(a[:3] for a in args))
            acc.update(*(a[3:] for a in args))
            got["accumulator"] = acc.result()
            for where, value in got.items():
                assert abs(float(value) - want) <= tol, (
                    f"{name} {where} of p={p.tolist()}, q={q.tolist()}: {value!r} vs {want!r}"
                )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("uneven", [False, True])
def test_long_rows_and_merged_accumulators_on_any_scale(dtype: Any, uneven: bool) -> None:
    """Rows longer than a tile, axis=None and accumulators merged from parts: p and q on
    scales far apart with a KL near 1e-8 (each piece's sums taken against the piece's own
    reference), and (uneven) a third of p on another scale than the rest, so that the pieces'
    references differ and are moved onto one when they merge."""
    rng = np.random.default_rng(9)
    n = 3000
    base = rng.uniform(0.1, 1.0, n)
    far = (1e-200, 1e100) if dtype == np.float64 else (1e-20, 1e15)
    p = base * (1 + rng.normal(0, 1e-4, n)) * far[0]
    if uneven:
        p[: n // 3] *= 2.0**-5
    q = base * far[1]
    p, q = p.astype(dtype), q.astype(dtype)
    exact = _exact_divergences(p, q)
    e = float(np.finfo(dtype).eps)
    cases: list[tuple[str, Any, Any]] = [
        ("kl_divergence", crossent.kl_divergence, crossent.KLDivergenceAccumulator),
        ("cross_entropy", crossent.cross_entropy, crossent.CrossEntropyAccumulator),
        ("entropy", crossent.entropy, crossent.EntropyAccumulator),
    ]
    for name, fn, cls in cases:
        want, size = exact[name]
        tol = 8 * e * (abs(want) + size + 1)
        args = (p,) if name == "entropy" else (p, q)
        assert abs(float(fn(*args)) - want) <= tol, (name, fn(*args), want)
        assert abs(float(fn(*args, axis=None)) - want) <= tol, name
        first, second = cls(), cls()
        first.update(*(a[: n // 3 + 5] for a in args))
        second.update(*(a[n // 3 + 5 :] for a in args))
        first.merge(second)
        assert abs(first.result() - want) <= tol, name
        # The `sum` property is still the sum of the unnormalised element terms.
        p64, q64 = p.astype(np.float64), q.astype(np.float64)
        terms = {
            "kl_divergence": np.sum(p64 * (np.log(p64) - np.log(q64))),
            "cross_entropy": -np.sum(p64 * np.log(q64)),
            "entropy": -np.sum(p64 * np.log(p64)),
        }[name]
        assert first.sum == pytest.approx(float(terms), rel=1e-9)


# --- keepdims --------------------------------------------------------------------------------


def scipy_keepdims(name: str, p: Any, q: Any, axis: int | None, base: float | None) -> Any:
    """SciPy's own ``keepdims=True`` results, live: ``scipy.stats.entropy`` (entropy and KL),
    cross-entropy as entropy + KL of the two, and ``jensenshannon`` squared."""
    p = np.asarray(p, dtype=np.float64)
    q = None if q is None else np.asarray(q, dtype=np.float64)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        if name == "entropy":
            return scipy.stats.entropy(p, base=base, axis=axis, keepdims=True)
        p, q = np.broadcast_arrays(p, q)
        kl = scipy.stats.entropy(p, q, base=base, axis=axis, keepdims=True)
        if name == "kl_divergence":
            return kl
        if name == "cross_entropy":
            return scipy.stats.entropy(p, base=base, axis=axis, keepdims=True) + kl
        if axis is None:
            js = jensenshannon(p.ravel(), q.ravel(), base=base)
            return np.reshape(js**2, (1,) * p.ndim)
        return jensenshannon(p, q, base=base, axis=axis, keepdims=True) ** 2


@pytest.mark.parametrize("name", ALL)
@settings(max_examples=60, deadline=None)
@given(case=cases())
def test_keepdims_matches_scipy(name: str, case: Any) -> None:
    p, q, axis, base = case
    got = call(name, p, q, axis=axis, base=base, keepdims=True)
    plain = call(name, p, q, axis=axis, base=base)
    shape = np.broadcast_shapes(p.shape, q.shape) if name != "entropy" else p.shape
    kept = tuple(1 if axis is None or d == axis % len(shape) else n for d, n in enumerate(shape))
    assert isinstance(got, np.ndarray)
    assert got.dtype == p.dtype
    assert got.shape == kept
    assert got.flags.c_contiguous and got.base is None
    # The same bits as without keepdims, only with the axis kept (a single value, returned
    # without keepdims as a Python float, is stored in p's dtype).
    np.testing.assert_array_equal(got.reshape(np.shape(plain)), np.asarray(plain, got.dtype))
    if p.size == 0:
        return  # SciPy warns and disagrees on empty distributions (see test_matches_scipy)
    want = scipy_keepdims(name, p, q, axis, base)
    assert want.shape == kept
    rtol, atol = tolerances(p.dtype)
    if name == "cross_entropy":
        rtol, atol = max(rtol, 1e-9), max(atol, 1e-9)  # entropy + KL rounds twice
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("axis", [0, 1, -1, None])
def test_keepdims_3d_strided_and_broadcast(name: str, axis: int | None) -> None:
    rng = np.random.default_rng(11)
    p = rng.random((5, 6, 8))[:, ::2, ::-2]  # (5, 3, 4), strided and reversed
    q = rng.random((3, 1)) + 0.1  # broadcast along the first and last axes
    got = call(name, p, q, axis=axis, keepdims=True)
    want = scipy_keepdims(name, p, q, axis, None)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", ALL)
def test_keepdims_one_dimensional(name: str) -> None:
    p, q = np.array([0.1, 0.2, 0.7]), np.array([0.3, 0.3, 0.4])
    for axis in (0, -1, None):
        got = call(name, p, q, axis=axis, keepdims=True)
        assert isinstance(got, np.ndarray) and got.shape == (1,)
        assert got[0] == call(name, p, q, axis=axis)
        np.testing.assert_allclose(got, scipy_keepdims(name, p, q, axis, 2.0) * np.log(2.0))


@pytest.mark.parametrize("name", ALL)
def test_keepdims_out(name: str) -> None:
    rng = np.random.default_rng(12)
    p = rng.random((6, 5, 4))
    q = rng.random((6, 5, 4)) + 0.1
    out = np.full((4, 1, 6), np.nan).transpose(2, 1, 0)  # (6, 1, 4), strided
    got = call(name, p, q, axis=1, out=out, keepdims=True)
    assert got is out
    np.testing.assert_array_equal(out[:, 0, :], call(name, p, q, axis=1))
    whole = np.zeros((1, 1, 1), dtype=np.float64)
    assert call(name, p, q, axis=None, out=whole, keepdims=True) is whole
    assert whole[0, 0, 0] == call(name, p, q, axis=None)
    # An out of the shape without the axis is refused: keepdims wants it kept.
    with pytest.raises(ValueError, match=r"'out' must have shape \(6, 1, 4\), got \(6, 4\)"):
        call(name, p, q, axis=1, out=np.zeros((6, 4)), keepdims=True)
    with pytest.raises(ValueError, match=r"'out' must have shape \(6, 4\), got \(6, 1, 4\)"):
        call(name, p, q, axis=1, out=np.zeros((6, 1, 4)))


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("bad", [1, 0, None, "yes", np.array([True])])
def test_keepdims_must_be_a_bool(name: str, bad: Any) -> None:
    p = np.full((2, 3), 1 / 3)
    with pytest.raises(TypeError, match="'keepdims' must be True or False, got"):
        call(name, p, p, keepdims=bad)
    # A NumPy bool is a bool.
    assert call(name, p, p, keepdims=np.bool_(True)).shape == (2, 1)


@pytest.mark.parametrize("name", ALL)
def test_keepdims_over_a_chunked_arrow_column_is_refused(name: str) -> None:
    pa = pytest.importorskip("pyarrow")
    col = pa.chunked_array([[0.1, 0.2], [0.3, 0.4]])
    with pytest.raises(ValueError, match="'keepdims' must be False"):
        call(name, col, col, keepdims=True)
    assert isinstance(call(name, col, col, normalize=False), float)
