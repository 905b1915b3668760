"""``nan_policy=`` (SciPy's "propagate", "omit", "raise") on the divergences, their
accumulators and ``crossent.dask``: against ``scipy.stats.entropy(..., nan_policy=...)`` live,
and float64 references of the rows with their NaN pairs removed."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from support import threads

import crossent

scipy_stats = pytest.importorskip("scipy.stats")
scipy_distance = pytest.importorskip("scipy.spatial.distance")

PAIRS = ("cross_entropy", "kl_divergence", "jensen_shannon")
KINDS = ("entropy", *PAIRS)
ACCUMULATORS: dict[str, Any] = {
    "entropy": crossent.EntropyAccumulator,
    "cross_entropy": crossent.CrossEntropyAccumulator,
    "kl_divergence": crossent.KLDivergenceAccumulator,
    "jensen_shannon": crossent.JensenShannonAccumulator,
}


def _one(kind: str, p: np.ndarray, q: np.ndarray | None) -> float:
    """The float64 value of one distribution without NaN (SciPy's definitions)."""
    p = p.astype(np.float64)
    if kind == "entropy":
        return float(scipy_stats.entropy(p)) if p.size else 0.0
    assert q is not None
    q = q.astype(np.float64)
    if not p.size:
        return 0.0
    if kind == "kl_divergence":
        return float(scipy_stats.entropy(p, q))
    if kind == "cross_entropy":
        return float(scipy_stats.entropy(p) + scipy_stats.entropy(p, q))
    return float(scipy_distance.jensenshannon(p, q) ** 2)


def omitted(kind: str, p: np.ndarray, q: np.ndarray | None, axis: int | None) -> Any:
    """The float64 reference of ``nan_policy="omit"``: each distribution without the pairs
    where ``p`` or ``q`` is NaN (an empty one gives 0, as SciPy)."""
    if q is not None:
        p, q = np.broadcast_arrays(p, q)
    if axis is None:
        p = p.reshape(-1)
        q = None if q is None else q.reshape(-1)
        axis = 0
    p = np.moveaxis(p, axis, -1)
    q = None if q is None else np.moveaxis(q, axis, -1)
    out = np.empty(p.shape[:-1])
    for i in np.ndindex(out.shape):
        pr = p[i]
        keep = ~np.isnan(pr)
        if q is not None:
            keep &= ~np.isnan(q[i])
        out[i] = _one(kind, pr[keep], None if q is None else q[i][keep])
    return out if out.ndim else float(out)


def call(kind: str, p: Any, q: Any, **kw: Any) -> Any:
    f = getattr(crossent, kind)
    return f(p, **kw) if kind == "entropy" else f(p, q, **kw)


def with_nans(rng: np.random.Generator, shape: tuple[int, ...], rate: float) -> np.ndarray:
    x = rng.uniform(0.05, 1.0, size=shape)
    x[rng.uniform(size=shape) < rate] = np.nan
    return x


def close(got: Any, want: Any, dtype: Any) -> None:
    rtol = 2e-6 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(np.asarray(got, dtype=np.float64), want, rtol=rtol, atol=rtol)


# --- omit: against SciPy live ---------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("axis", [-1, 0, None])
def test_entropy_and_kl_omit_match_scipy_live(dtype: Any, axis: int | None) -> None:
    rng = np.random.default_rng(1)
    p = with_nans(rng, (6, 9), 0.2)
    q = with_nans(rng, (6, 9), 0.2)
    p[1] = np.nan  # a distribution left empty
    p[2, :4] = 0.0  # zeros and NaN only: 0/0
    p[2, 4:] = np.nan
    q[4] = np.nan  # empty through q
    p, q = p.astype(dtype), q.astype(dtype)
    # SciPy computes in float64 whatever the input: compare with float64 copies.
    p64, q64 = p.astype(np.float64), q.astype(np.float64)
    for policy in ("propagate", "omit"):
        want_h = scipy_stats.entropy(p64, axis=axis, nan_policy=policy)
        want_kl = scipy_stats.entropy(p64, q64, axis=axis, nan_policy=policy)
        close(crossent.entropy(p, axis=axis, nan_policy=policy), want_h, dtype)
        close(crossent.kl_divergence(p, q, axis=axis, nan_policy=policy), want_kl, dtype)
    # The default is "propagate", bit for bit.
    for kind in KINDS:
        plain = np.asarray(call(kind, p, q, axis=axis))
        given = np.asarray(call(kind, p, q, axis=axis, nan_policy="propagate"))
        assert plain.tobytes() == given.tobytes()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "shape",
    [(7, 5), (3, 1500), (2, 70_000)],
    ids=["short-rows", "rows-over-a-tile", "rows-over-a-chunk"],
)
def test_omit_drops_nan_pairs(kind: str, dtype: Any, shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(2)
    p = with_nans(rng, shape, 0.1).astype(dtype)
    q = with_nans(rng, shape, 0.1).astype(dtype)
    p[0] = np.nan
    for axis in (-1, None):
        want = omitted(kind, p, None if kind == "entropy" else q, axis)
        for n in (1, 2, 3):
            with threads(n):
                got = call(kind, p, q, axis=axis, nan_policy="omit")
            close(got, want, dtype)
            if n == 1:
                first = np.asarray(got)
            else:
                # Any thread count: the same bits.
                assert np.asarray(got).tobytes() == first.tobytes()
    # The row left empty gives 0, as SciPy.
    assert call(kind, p, q, nan_policy="omit")[0] == 0.0


@pytest.mark.parametrize("kind", KINDS)
def test_omit_on_strided_and_broadcast_views(kind: str) -> None:
    rng = np.random.default_rng(3)
    base = with_nans(rng, (5, 40), 0.15)
    p = base[::2, ::3]  # strided, not contiguous
    q = with_nans(rng, (1, p.shape[1]), 0.15)  # one row broadcast to every row
    pf = np.asfortranarray(base)[1::2, ::3]
    for pp, qq, axis in [(p, q, -1), (p, q, 0), (pf, q, -1), (p.T, q.T, 0)]:
        got = call(kind, pp, qq, axis=axis, nan_policy="omit")
        want = omitted(kind, pp, None if kind == "entropy" else qq, axis)
        close(got, want, np.float64)
    # Mixed float32 / float64 operands are read where they lie, and omit as well.
    got = call(kind, p.astype(np.float32), q, nan_policy="omit")
    close(got, omitted(kind, p, None if kind == "entropy" else q, -1), np.float32)


def test_omit_with_base_keepdims_out_and_unnormalised_rows() -> None:
    p = np.array([[0.25, np.nan, 0.75], [np.nan, 0.5, 0.5]])
    q = np.array([[0.5, 0.5, np.nan], [0.5, 0.25, 0.25]])
    out = np.empty((2, 1))
    crossent.kl_divergence(p, q, base=2, keepdims=True, out=out, nan_policy="omit")
    want = [
        scipy_stats.entropy([0.25], [0.5], base=2),
        scipy_stats.entropy([0.5, 0.5], [0.25, 0.25], base=2),
    ]
    np.testing.assert_allclose(out[:, 0], want, rtol=1e-14, atol=1e-15)
    # Without normalisation the rows are used as given, minus their NaN pairs.
    got = crossent.cross_entropy(p, q, normalize=False, nan_policy="omit")
    np.testing.assert_allclose(got, [-0.25 * np.log(0.5), -(0.5 * np.log(0.25) * 2)], rtol=1e-14)


# --- raise ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_raise_names_argument_and_first_position_for_any_thread_count(
    kind: str, dtype: Any
) -> None:
    rng = np.random.default_rng(4)
    shape = (3, 50_000)  # rows over a chunk: pieces reduced in parallel
    p = rng.uniform(0.1, 1.0, size=shape).astype(dtype)
    q = rng.uniform(0.1, 1.0, size=shape).astype(dtype)
    bad = p.copy()
    # Several NaN, the first in C order in a later piece of the work than others.
    for at in [(2, 10), (1, 49_999), (1, 40_000), (2, 3)]:
        bad[at] = np.nan
    bad[2, 0] = -1.0  # a negative value after the first NaN in C order
    for axis in (-1, 0, None):
        for n in (1, 2, 3):
            with threads(n), pytest.raises(crossent.DomainError) as info:
                call(kind, bad, q, axis=axis, nan_policy="raise")
            e = info.value
            assert (e.argument, e.index) == ("p", (1, 40_000)), str(e)
            assert isinstance(e.value, float) and np.isnan(e.value)
            assert "nan_policy='raise'" in str(e) and "(1, 40000)" in str(e)
    # Without a NaN, "raise" gives the bits of the plain call.
    assert (
        np.asarray(call(kind, p, q, nan_policy="raise")).tobytes()
        == np.asarray(call(kind, p, q)).tobytes()
    )
    if kind != "entropy":
        # A NaN of q (p clean) names q; with NaN in both, p is named first.
        qbad = q.copy()
        qbad[0, 7] = np.nan
        with pytest.raises(crossent.DomainError) as info:
            call(kind, p, qbad, nan_policy="raise")
        assert (info.value.argument, info.value.index) == ("q", (0, 7))
        with pytest.raises(crossent.DomainError) as info:
            call(kind, bad, qbad, nan_policy="raise")
        assert info.value.argument == "p"


def test_raise_position_is_in_the_arguments_own_array_when_broadcast() -> None:
    p = np.full((4, 6), 0.5)
    q = np.full((1, 6), 0.5)
    q[0, 4] = np.nan
    with pytest.raises(crossent.DomainError) as info:
        crossent.kl_divergence(p, q, axis=0, nan_policy="raise")
    assert (info.value.argument, info.value.index) == ("q", (0, 4))
    # Strided: the index is into the view as given.
    v = np.full((6, 8), 0.5)[::2, 1::2]
    v[2, 1] = np.nan
    with pytest.raises(crossent.DomainError) as info:
        crossent.entropy(v, nan_policy="raise")
    assert info.value.index == (2, 1)


# --- accumulators ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_accumulators_over_batches_equal_one_call(kind: str) -> None:
    rng = np.random.default_rng(5)
    n = 3 * crossent.CHUNK + 777
    p = with_nans(rng, (n,), 0.05)
    q = with_nans(rng, (n,), 0.05)
    normalize = kind != "jensen_shannon"
    args = (p,) if kind == "entropy" else (p, q)
    whole = call(kind, p, q, axis=None, normalize=normalize, nan_policy="omit")
    acc = ACCUMULATORS[kind](normalize=normalize, nan_policy="omit")
    assert acc.nan_policy == "omit"
    # Cuts at whole chunks: the bits of one call.
    for lo, hi in [
        (0, crossent.CHUNK),
        (crossent.CHUNK, 3 * crossent.CHUNK),
        (3 * crossent.CHUNK, n),
    ]:
        acc.update(*(a[lo:hi] for a in args))
    assert acc.result() == whole
    # `count` counts the pairs kept.
    kept = ~np.isnan(p) if kind == "entropy" else ~(np.isnan(p) | np.isnan(q))
    assert acc.count == int(kept.sum())
    # Pickled, the policy goes along.
    back = pickle.loads(pickle.dumps(acc))
    assert (back.nan_policy, back.result()) == ("omit", acc.result())
    assert "nan_policy='omit'" in repr(acc)
    # Any other cuts, merged accumulators: the same up to rounding.
    a, b = (ACCUMULATORS[kind](normalize=normalize, nan_policy="omit") for _ in range(2))
    a.update(*(x[:12345] for x in args))
    b.update(*(x[12345:] for x in args))
    a.merge(b)
    assert a.result() == pytest.approx(whole, rel=1e-12)
    if normalize:
        assert whole == pytest.approx(
            omitted(kind, p, None if kind == "entropy" else q, None), rel=1e-12
        )


@pytest.mark.parametrize("kind", KINDS)
def test_accumulator_raise_leaves_state_unchanged(kind: str) -> None:
    acc = ACCUMULATORS[kind](normalize=False, nan_policy="raise")
    ok = np.array([0.25, 0.25])
    args = (ok,) if kind == "entropy" else (ok, ok)
    acc.update(*args)
    before = (acc.result(), acc.count)
    bad = np.array([[0.5, 0.5], [0.25, np.nan]])
    with pytest.raises(crossent.DomainError) as info:
        acc.update(*((bad,) if kind == "entropy" else (bad, bad)))
    assert (info.value.argument, info.value.index) == ("p", (1, 1))
    assert (acc.result(), acc.count) == before
    # Propagate (the default): NaN enters the result.
    plain = ACCUMULATORS[kind](normalize=False)
    assert plain.nan_policy == "propagate"
    plain.update(*((bad,) if kind == "entropy" else (bad, bad)))
    assert np.isnan(plain.result())


# --- dask -----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_dask_omit_and_raise(kind: str) -> None:
    da = pytest.importorskip("dask.array")
    import crossent.dask

    rng = np.random.default_rng(6)
    p = with_nans(rng, (8, 30), 0.2)
    q = with_nans(rng, (8, 30), 0.2)
    p[3] = np.nan
    lp, lq = da.from_array(p, chunks=(3, 7)), da.from_array(q, chunks=(3, 7))
    f = getattr(crossent.dask, kind)

    def lazy(**kw: Any) -> Any:
        return f(lp, **kw) if kind == "entropy" else f(lp, lq, **kw)

    for axis in (-1, 0, None):
        got = lazy(axis=axis, nan_policy="omit").compute()
        want = call(kind, p, q, axis=axis, nan_policy="omit")
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)
    # raise: the position in the whole array, whichever chunk holds it.
    bad = np.where(np.isnan(p), 0.5, p)
    bad[5, 11] = np.nan
    lbad = da.from_array(bad, chunks=(3, 7))
    clean_q = da.from_array(np.where(np.isnan(q), 0.5, q), chunks=(3, 7))
    for axis in (-1, None):
        lazy_bad = (
            f(lbad, axis=axis, nan_policy="raise")
            if kind == "entropy"
            else f(lbad, clean_q, axis=axis, nan_policy="raise")
        )
        with pytest.raises(crossent.DomainError) as info:
            lazy_bad.compute()
        assert (info.value.argument, info.value.index) == ("p", (5, 11))
    with pytest.raises(ValueError, match="nan_policy"):
        lazy(nan_policy="skip")


def test_arrow_streams_follow_nan_policy() -> None:
    pa = pytest.importorskip("pyarrow")
    p = np.array([0.5, np.nan, 0.25, 0.25, 1.0, np.nan])
    chunked = pa.chunked_array([p[:3], p[3:]])
    want = crossent.entropy(p, axis=None, nan_policy="omit")
    assert want == pytest.approx(_one("entropy", p[~np.isnan(p)], None), rel=1e-14)
    assert crossent.entropy(chunked, axis=None, nan_policy="omit") == pytest.approx(want, rel=1e-14)
    with pytest.raises(crossent.DomainError) as info:
        crossent.entropy(chunked, axis=None, nan_policy="raise")
    assert info.value.index == (1,)


def test_checked_names_of_the_policy() -> None:
    check: Callable[[Any], str] = crossent._core._nan_policy
    assert [check(x) for x in ("propagate", "omit", "raise")] == ["propagate", "omit", "raise"]
    upper: Any = "OMIT"
    with pytest.raises(
        ValueError, match="'nan_policy' must be 'propagate', 'omit' or 'raise', got 'OMIT'"
    ):
        crossent.entropy([0.5, 0.5], nan_policy=upper)
    with pytest.raises(TypeError, match=r"'nan_policy' must be .* got None of type NoneType"):
        none: Any = None
        crossent.EntropyAccumulator(nan_policy=none)


def test_polars_namespace_takes_nan_policy() -> None:
    pl = pytest.importorskip("polars")
    import crossent.polars  # registers the namespace

    p = np.array([[0.5, np.nan, 0.5], [0.2, 0.3, 0.5]])
    q = np.array([[0.25, 0.25, np.nan], [0.5, 0.25, 0.25]])
    frame = pl.DataFrame({"p": p, "q": q})
    got = frame.select(pl.col("p").crossent.kl_divergence("q", nan_policy="omit"))
    want = crossent.kl_divergence(p, q, nan_policy="omit")
    np.testing.assert_array_equal(got.to_series().to_numpy(), want)
    with pytest.raises(ValueError, match="'nan_policy'"):
        pl.col("p").crossent.entropy(nan_policy="skip")
