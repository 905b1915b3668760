"""Fuzzing: random shapes, strides, dtypes and argument combinations for every function of
the registry; each call must give the reference's value or one of the documented exceptions
naming its argument. Bounded: a fixed number of examples per function (derandomised in CI)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from registry import FLOATS, FUNCS, NEVER, Func, ids

FUZZ = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# What a hostile mutation does to the arguments, and what it must raise.
MUTATIONS = ("none", "dtype", "shape", "param", "domain", "out")


def _strided(draw: Any, a: Any) -> Any:
    """`a`'s values in a random layout: sliced out of a larger array with random steps
    (negative too), maybe transposed back, maybe misaligned or byte-swapped."""
    if a.ndim == 0:
        return a
    steps = [draw(st.sampled_from([1, 2, 3, -1, -2])) for _ in a.shape]
    big_shape = tuple(max(1, n * abs(s)) for n, s in zip(a.shape, steps, strict=True))
    big = np.zeros(big_shape, dtype=a.dtype)
    index = tuple(slice(None, None, s) for s in steps)
    view = big[index][tuple(slice(0, n) for n in a.shape)]
    view[...] = a
    kind = draw(st.sampled_from(["view", "fortran", "byteswap", "misaligned", "view"]))
    if kind == "fortran":
        return np.asfortranarray(a)
    if kind == "byteswap" and a.dtype.kind in "fiu" and a.dtype.itemsize > 1:
        return a.astype(a.dtype.newbyteorder())
    if kind == "misaligned" and a.size:
        buf = np.zeros(a.nbytes + 1, dtype=np.uint8)
        m = np.frombuffer(buf.data, dtype=a.dtype, count=a.size, offset=1).reshape(a.shape)
        m[...] = a
        return m
    return view


@pytest.mark.parametrize("f", FUNCS, ids=ids(FUNCS))
@FUZZ
@given(data=st.data())
def test_fuzz(f: Func, data: st.DataObject) -> None:
    draw = data.draw
    shape = draw(hnp.array_shapes(min_dims=1 if f.rows else 0, max_dims=3, min_side=0, max_side=6))
    if f.rows and shape[-1] == 0 and f.weighted_mean:
        shape = (*shape[:-1], 1)
    dtype = draw(st.sampled_from(FLOATS))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    args = f.make(rng, shape, dtype)
    if f.broadcast and shape and draw(st.booleans()):
        for name in f.broadcast:
            args[name] = rng.uniform(0.5, 2.0, size=shape[-1:]).astype(dtype)
    for name in f.positional:
        args[name] = _strided(draw, np.asarray(args[name]))
    extra: dict[str, Any] = {}
    if f.reduces:
        extra["reduction"] = draw(st.sampled_from(["mean", "sum", "none"]))
    mutation = draw(st.sampled_from(MUTATIONS))
    arg = ""
    exc: type[Exception] | None = None
    if mutation == "dtype":
        arg = draw(st.sampled_from(f.positional))
        bad = draw(st.sampled_from([*NEVER[:2], *f.bad_dtypes.get(arg, ())]))
        args[arg] = np.asarray(args[arg]).astype(bad)
        exc = TypeError
    elif mutation == "shape" and f.mismatched:
        arg, shapes = draw(st.sampled_from(sorted(f.mismatched.items())))
        args[arg] = np.resize(args[arg], draw(st.sampled_from(shapes))) + 0
        exc = ValueError
        shape_args = {k: np.shape(v) for k, v in args.items()}
        if shape_args[f.positional[0]] != (4, 5):
            # mismatches are listed against a (4, 5) first argument
            args[f.positional[0]] = f.make(rng, (4, 5), dtype)[f.positional[0]]
            for name in f.broadcast:
                args.pop(name, None)
    elif mutation == "param" and f.bad_params:
        arg, bad_values = draw(st.sampled_from(sorted(f.bad_params.items())))
        value, exc = draw(st.sampled_from(bad_values))
        if arg == "axis" and type(value) is int and abs(value) < 10:
            # the registry's out-of-range axes are for 2-D input; this one is for any
            value = len(shape) if value >= 0 else -len(shape) - 1
        if arg == "keepdims" and value is True:
            # softmax keeps the class axis only for per-row results; the registry's
            # ValueError is for keepdims=True with a reducing reduction
            extra["reduction"] = draw(st.sampled_from(["mean", "sum"]))
        extra[arg] = value
    elif mutation == "domain" and f.domain and np.asarray(args[f.positional[0]]).size:
        arg, values = draw(st.sampled_from(sorted(f.domain.items())))
        changed = np.array(args[arg], copy=True)
        if changed.size:
            changed.flat[draw(st.integers(0, changed.size - 1))] = draw(st.sampled_from(values))
            args[arg] = changed
            exc = ValueError
    elif mutation == "out" and (not f.reduces or extra.get("reduction") == "none"):
        out_shape = f.out_shape(args)
        wrong = draw(st.sampled_from(["dtype", "shape", "alias"]))
        arg = "out"
        if wrong == "dtype":
            extra["out"] = np.empty(out_shape, np.float32 if dtype == np.float64 else np.float64)
            exc = TypeError
        elif wrong == "shape":
            extra["out"] = np.empty((*out_shape, 2), dtype)
            exc = ValueError
        elif np.asarray(args[f.positional[0]]).dtype == dtype and 0 < int(
            np.prod(out_shape)
        ) <= np.size(args[f.positional[0]]):
            x = np.array(args[f.positional[0]], order="C")
            args[f.positional[0]] = x
            n = int(np.prod(out_shape))
            extra["out"] = np.frombuffer(x.data, dtype=x.dtype, count=n).reshape(out_shape)
            exc = ValueError
    if exc is not None:
        with pytest.raises(exc) as info:
            f.call(args, **extra)
        assert f"'{arg}'" in str(info.value), str(info.value)
        return
    got = f.call(args, **extra)
    with np.errstate(all="ignore"):
        expected = f.reference({k: np.asarray(v) for k, v in args.items()})
    reduction = extra.get("reduction", "none")
    if reduction == "sum":
        expected = np.asarray(expected.sum())
    elif reduction == "mean":
        if f.weighted_mean:
            return  # the weighted mean is covered by the function's own tests
        expected = np.asarray(expected.mean() if expected.size else np.nan)
    rtol = f.rtol[dtype]
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=rtol, equal_nan=True)
