"""Hostile input for every public function (see registry.py): each bad call raises a clear
exception naming the argument; each odd-but-valid array reads correctly. No case may crash,
hang or panic (a PanicException is a BaseException: `pytest.raises(ValueError)` lets it
through and fails the test)."""

from __future__ import annotations

import inspect
import mmap
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pytest
import reference
from registry import (
    BAD_CALLS,
    BY_NAME,
    FLOATS,
    FUNCS,
    NEVER,
    Args,
    BadCall,
    Func,
    array_args,
    full_args,
    ids,
)

import crossent

SHAPE = (4, 5)


def args_for(f: Func, dtype: Any = np.float64, shape: tuple[int, ...] = SHAPE) -> Args:
    return full_args(f, np.random.default_rng(7), shape, dtype)


def raises(exc: type[Exception], arg: str, call: Callable[..., Any], /, *a: Any, **kw: Any) -> str:
    """`call(*a, **kw)` raises `exc` with a message that names `arg` (quoted, as every message
    does); returns the message."""
    with pytest.raises(exc) as info:
        call(*a, **kw)
    message = str(info.value)
    assert f"'{arg}'" in message, message
    return message


def domain_error(
    arr: Any, arg: str, call: Callable[..., Any], /, *a: Any, **kw: Any
) -> crossent.DomainError:
    """`call(*a, **kw)` raises a `DomainError` that `except ValueError` catches, whose
    attributes name `arg` (the argument given as `arr`), a position in `arr` and the value
    there, as its message does; returns it."""
    try:
        call(*a, **kw)
    except ValueError as e:
        err: ValueError = e
    else:
        pytest.fail(f"no error for a value outside the domain of {arg!r}")
    assert isinstance(err, crossent.DomainError), repr(err)
    message = str(err)
    assert err.argument == arg, (err.argument, message)
    assert message.startswith(f"'{arg}' must hold "), message
    assert err.index is not None, message
    assert type(err.value) in (int, float), (type(err.value), message)
    assert np.asarray(arr)[err.index] == err.value, (err.index, err.value, message)
    assert message.endswith(f" at index {err.index}"), message
    return err


def close(got: Any, expected: Any, dtype: Any) -> None:
    """Same values as a reference result of the same function (NaN where it has NaN)."""
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=rtol, equal_nan=True)


def cases(*extra: Any) -> Any:
    """Parametrises over FUNCS, or over (func, x) pairs for each x of extra[0](func)."""
    if not extra:
        return pytest.mark.parametrize("f", FUNCS, ids=ids(FUNCS))
    (expand,) = extra
    params = [pytest.param(f, *v, id=f"{f.name}-{v}") for f in FUNCS for v in expand(f)]
    return params


# --- dtypes --------------------------------------------------------------------------------


def _bad_dtype_cases(f: Func) -> list[tuple[str, str]]:
    return [(arg, dt) for arg in array_args(f) for dt in (*NEVER, *f.bad_dtypes.get(arg, ()))]


@pytest.mark.parametrize(("f", "arg", "dtype"), cases(_bad_dtype_cases))
def test_unsupported_dtype_is_a_type_error(f: Func, arg: str, dtype: str) -> None:
    args = args_for(f)
    value = args[arg]
    if dtype.startswith("datetime"):
        args[arg] = np.zeros(np.shape(value), dtype=dtype)
    else:
        args[arg] = np.asarray(value).astype(dtype)
    message = raises(TypeError, arg, f.call, args)
    assert np.dtype(dtype).name.split("[")[0].rstrip("0123456789") in message, message


@pytest.mark.parametrize("f", FUNCS, ids=ids(FUNCS))
def test_ragged_and_foreign_objects_name_the_argument(f: Func) -> None:
    for arg in f.positional:
        for bad in ([[0.5, 0.5], [0.5]], {"a": 1}, object()):
            args = args_for(f)
            args[arg] = bad
            raises(TypeError, arg, f.call, args)


# --- shapes --------------------------------------------------------------------------------


@pytest.mark.parametrize("f", FUNCS, ids=ids(FUNCS))
def test_mismatched_shapes(f: Func) -> None:
    for arg, shapes in f.mismatched.items():
        for shape in shapes:
            args = args_for(f)
            args[arg] = np.resize(args[arg], shape)
            raises(ValueError, arg, f.call, args)
    for arg in f.broadcast:
        for shape in [(4,), (6,), (2, 5), (3, 4, 5)]:
            args = args_for(f)
            args[arg] = np.ones(shape)
            raises(ValueError, arg, f.call, args)


# --- scalar parameters ---------------------------------------------------------------------


def _bad_param_cases(f: Func) -> list[tuple[str, Any, type[Exception]]]:
    return [(p, v, e) for p, bad in f.bad_params.items() for v, e in bad]


@pytest.mark.parametrize(("f", "param", "value", "exc"), cases(_bad_param_cases))
def test_bad_parameter(f: Func, param: str, value: Any, exc: type[Exception]) -> None:
    raises(exc, param, f.call, args_for(f), **{param: value})


# --- values outside the domain -------------------------------------------------------------


def _domain_cases(f: Func) -> list[tuple[str, float]]:
    return [(arg, v) for arg, values in f.domain.items() for v in values]


@pytest.mark.parametrize(("f", "arg", "value"), cases(_domain_cases))
@pytest.mark.parametrize("dtype", FLOATS)
def test_value_outside_domain_names_argument_and_position(
    f: Func, arg: str, value: float, dtype: Any
) -> None:
    args = args_for(f, dtype)
    bad = np.array(args[arg], copy=True)
    at = (2, 3)[: bad.ndim]
    bad[at] = value
    args[arg] = bad
    err = domain_error(bad, arg, f.call, args)
    assert err.index == at, str(err)


def test_integer_labels_out_of_range() -> None:
    for f in FUNCS:
        if not f.labels:
            continue
        for dtype in ("uint8", "int8", "int32", "int64"):
            args = args_for(f)
            labels = np.zeros(SHAPE, dtype=dtype)
            labels[1, 4] = 2 if dtype == "uint8" else -1
            args["target"] = labels
            err = domain_error(labels, "target", f.call, args)
            assert err.index == (1, 4), str(err)


def test_domain_errors_of_gradients_and_broadcast_operands() -> None:
    """The gradients raise the same DomainError as their losses; an operand broadcast against
    another is reported at its position in its own array; the error pickles whole (Dask sends
    it between processes)."""
    import pickle

    rng = np.random.default_rng(3)
    logits = rng.standard_normal(SHAPE)
    labels = np.zeros(SHAPE[0], dtype=np.int32)
    labels[2] = 5
    err = domain_error(labels, "target", crossent.softmax_cross_entropy_grad, logits, labels)
    assert (err.index, err.value) == ((2,), 5)
    probs = np.full(SHAPE, 0.2, dtype=np.float32)
    probs[1, 3] = -0.5
    err = domain_error(probs, "target", crossent.softmax_cross_entropy_grad, logits, probs)
    assert (err.index, err.value) == ((1, 3), -0.5)
    hard = np.ones(SHAPE, dtype=np.int64)
    hard[3, 0] = 2**40
    grad = crossent.binary_cross_entropy_with_logits_grad
    err = domain_error(hard, "target", grad, logits, hard)
    assert (err.index, err.value) == ((3, 0), 2**40)
    p = np.full(SHAPE, 0.2)
    q = np.full(SHAPE[1], 0.2, dtype=np.float32)
    q[4] = -np.inf
    for fn in (crossent.cross_entropy, crossent.kl_divergence, crossent.jensen_shannon):
        err = domain_error(q, "q", fn, p, q)
        assert (err.index, err.value) == ((4,), -np.inf)
    again = pickle.loads(pickle.dumps(err))
    assert type(again) is crossent.DomainError
    assert (str(again), again.argument, again.index, again.value) == (
        str(err),
        "q",
        (4,),
        -np.inf,
    )


def test_reduction_is_checked_alike_everywhere() -> None:
    """One parser, one message: every callable that takes `reduction=` refuses a wrong one with
    the same text, naming the argument and listing what that callable allows (the gradients
    and accumulators: "mean" and "sum"); `crossent.dask` checks it the same way."""
    import dask.array as da

    import crossent.dask as cd

    x, y = np.full((3, 4), 0.5), np.zeros((3, 4))
    labels = np.zeros(3, dtype=np.int64)
    lazy = da.from_array(x, chunks=2)
    losses: list[Callable[..., Any]] = [
        lambda r: crossent.binary_cross_entropy(x, y, reduction=r),
        lambda r: crossent.binary_cross_entropy_with_logits(x, y, reduction=r),
        lambda r: crossent.softmax_cross_entropy(x, labels, reduction=r),
        lambda r: cd.binary_cross_entropy(lazy, lazy, reduction=r),
        lambda r: cd.binary_cross_entropy_with_logits(lazy, lazy, reduction=r),
        lambda r: cd.softmax_cross_entropy(lazy, labels, reduction=r),
    ]
    scalar: list[Callable[..., Any]] = [
        lambda r: crossent.binary_cross_entropy_with_logits_grad(x, y, reduction=r),
        lambda r: crossent.softmax_cross_entropy_grad(x, labels, reduction=r),
        lambda r: crossent.BinaryCrossEntropyAccumulator(reduction=r),
        lambda r: crossent.BinaryCrossEntropyWithLogitsAccumulator(reduction=r),
        lambda r: crossent.SoftmaxCrossEntropyAccumulator(reduction=r),
    ]
    for calls, allowed in ((losses, "'mean', 'sum' or 'none'"), (scalar, "'mean' or 'sum'")):
        for call in calls:
            for bad, exc, shown in (
                ("avg", ValueError, "'avg'"),
                ("Mean", ValueError, "'Mean'"),
                (3, TypeError, "3 of type int"),
                (None, TypeError, "None of type NoneType"),
            ):
                with pytest.raises(exc) as info:
                    call(bad)
                assert str(info.value) == f"'reduction' must be {allowed}, got {shown}"
    for call in scalar:
        with pytest.raises(ValueError) as info:
            call("none")
        assert str(info.value) == "'reduction' must be 'mean' or 'sum', got 'none'"


# --- out -----------------------------------------------------------------------------------


OUT_CASES: dict[str, tuple[type[Exception], Callable[[Func, Args], Any]]] = {
    "list": (TypeError, lambda f, a: [0.0] * 20),
    "wrong dtype": (TypeError, lambda f, a: np.empty(f.out_shape(a), np.float32)),
    "int dtype": (TypeError, lambda f, a: np.empty(f.out_shape(a), np.int64)),
    "byte-swapped": (TypeError, lambda f, a: np.empty(f.out_shape(a), ">f8")),
    "wrong shape": (ValueError, lambda f, a: np.empty((*f.out_shape(a), 1))),
    "one short": (ValueError, lambda f, a: np.empty(np.subtract(f.out_shape(a), 1))),
    "read-only": (ValueError, lambda f, a: _readonly(np.empty(f.out_shape(a)))),
    "misaligned": (ValueError, lambda f, a: _misaligned(np.empty(f.out_shape(a)))),
    "zero stride": (
        ValueError,
        lambda f, a: np.lib.stride_tricks.as_strided(
            np.empty(1), f.out_shape(a), (0,) * len(f.out_shape(a))
        ),
    ),
    "overlapping rows": (ValueError, lambda f, a: _overlapping_rows(f.out_shape(a))),
}


def _overlapping_rows(shape: tuple[int, ...]) -> Any:
    """Every row starts one element after the previous one: rows share elements."""
    strides = (8,) * len(shape) if len(shape) > 1 else (0,)
    return np.lib.stride_tricks.as_strided(np.empty(64), shape, strides)


def _readonly(a: Any) -> Any:
    a.setflags(write=False)
    return a


def _misaligned(a: Any) -> Any:
    buf = np.zeros(a.nbytes + 1, dtype=np.uint8)
    return np.frombuffer(buf.data, dtype=a.dtype, count=a.size, offset=1).reshape(a.shape)


@pytest.mark.parametrize(("f", "case"), cases(lambda f: [(c,) for c in OUT_CASES]))
def test_bad_out(f: Func, case: str) -> None:
    exc, make = OUT_CASES[case]
    args = args_for(f)
    out = make(f, args)
    message = raises(exc, "out", f.call, args, out=out, **f.none())
    if case == "byte-swapped":
        assert ">f8" in message, message  # not "must be float64, got float64"


REDUCING = [f for f in FUNCS if f.reduces]


@pytest.mark.parametrize("f", REDUCING, ids=ids(REDUCING))
def test_out_only_with_reduction_none(f: Func) -> None:
    args = args_for(f)
    for reduction in ("mean", "sum"):
        raises(ValueError, "out", f.call, args, out=np.empty(SHAPE), reduction=reduction)


def _outs_sharing_memory_with(x: Any, shape: tuple[int, ...]) -> list[Any]:
    """Arrays of `shape` over `x`'s first elements: a view of `x` itself (NumPy's base-object
    tracking sees the sharing) and one through a memoryview (it does not)."""
    n = int(np.prod(shape))
    outs = [
        x.reshape(-1).view(np.uint8)[: 8 * n].view(np.float64).reshape(shape),
        np.frombuffer(x.data, dtype=np.float64, count=n).reshape(shape),
    ]
    if x.shape == shape and x.dtype == np.float64:
        outs.append(x)
    return outs


@pytest.mark.parametrize("f", FUNCS, ids=ids(FUNCS))
def test_out_overlapping_an_input_is_refused(f: Func) -> None:
    """`out` sharing memory with any input is refused, whether it is the same array, a view of
    it, or the same memory reached through another object (which NumPy's base-object tracking
    alone would not see): the kernel would read elements it had already overwritten."""
    for arg in array_args(f):
        args = args_for(f)
        shape = f.out_shape(args)
        x = args[arg]
        if arg in f.broadcast:
            # A parameter (one value per column) whose first element is `out`'s last.
            n = int(np.prod(shape))
            buf = np.empty(n + x.size - 1)
            args[arg] = buf[n - 1 :].reshape(x.shape)
            args[arg][...] = x
            message = raises(
                ValueError, "out", f.call, args, out=buf[:n].reshape(shape), **f.none()
            )
            assert f"'{arg}'" in message, message
            continue
        for out in _outs_sharing_memory_with(x, shape):
            message = raises(ValueError, "out", f.call, args, out=out, **f.none())
            assert f"'{arg}'" in message, message
        # Shifted by one element: `out[i]` is input element i - 1, read before it is written
        # only if the kernel happens to walk forwards.
        buf = np.empty(x.size + 1, dtype=x.dtype)
        buf[1:] = x.ravel()
        args[arg] = buf[1:].reshape(x.shape)
        n = int(np.prod(shape))
        raw = buf.view(np.uint8)
        for shifted in (raw[: 8 * n].view(np.float64), np.frombuffer(raw.data, np.float64, n)):
            out = shifted.reshape(shape)
            message = raises(ValueError, "out", f.call, args, out=out, **f.none())
            assert f"'{arg}'" in message, message


# Where an input's bytes start in its file: out may start before it, too.
_PAD = 64


_Mode = Literal["r", "r+", "c"]
_INPUT_MODES: tuple[_Mode, ...] = ("r+", "r", "c")


def _two_maps(
    path: Path, data: Any, via: str, input_mode: _Mode, out_mode: _Mode
) -> tuple[Any, Any]:
    """Writes `data` at byte `_PAD` of a file, with room after it, and maps the file twice:
    returns (`data` read through the first map, the whole file as bytes through the second).
    The two maps have different addresses: no address comparison can tell they alias."""
    data = np.ascontiguousarray(data)
    size = _PAD + data.nbytes + 64 * 8 + 8 * data.size
    raw = np.zeros(size, dtype=np.uint8)
    raw[_PAD : _PAD + data.nbytes] = data.view(np.uint8).ravel()
    raw.tofile(path)
    if via == "memmap":
        return (
            np.memmap(path, dtype=data.dtype, mode=input_mode, offset=_PAD, shape=data.shape),
            np.memmap(path, dtype=np.uint8, mode=out_mode),
        )
    access = {"r": mmap.ACCESS_READ, "r+": mmap.ACCESS_WRITE, "c": mmap.ACCESS_COPY}
    with open(path, "r+b") as fh:
        m1 = mmap.mmap(fh.fileno(), 0, access=access[input_mode])
        m2 = mmap.mmap(fh.fileno(), 0, access=access[out_mode])
    return (
        np.frombuffer(m1, dtype=data.dtype, count=data.size, offset=_PAD).reshape(data.shape),
        np.frombuffer(m2, dtype=np.uint8),
    )


def _out_in(raw: Any, byte: int, shape: tuple[int, ...], dtype: Any = np.float64) -> Any:
    """An array of `shape` in `raw` (a map's bytes) from `byte` on."""
    n = int(np.prod(shape)) * np.dtype(dtype).itemsize
    return raw[byte : byte + n].view(dtype).reshape(shape)


# Where `out` starts relative to the input's first byte, in float64 elements: on it, one or
# several elements before or after (every element of the kernel's walk would read one
# already written, or write one not yet read).
_SHIFTS = (0, 1, 3, -1, -3)


def _overlapping(shifts: tuple[int, ...], data: Any) -> list[int]:
    """The shifts at which `out` (at least 4 elements long) still meets `data`'s bytes."""
    return [k for k in shifts if 8 * k < np.asarray(data).nbytes]


@pytest.mark.parametrize("via", ["memmap", "mmap"])
@pytest.mark.parametrize("f", FUNCS, ids=ids(FUNCS))
def test_out_mapping_the_same_file_as_an_input_is_refused(
    f: Func, via: str, tmp_path: Path
) -> None:
    """`out` in a second shared map of the file an input is mapped from, over the same bytes
    (shifted by 0, 1 or several elements): refused naming that input, for every array
    argument, whatever the input's map (shared, read-only, copy-on-write). Beyond the input's
    bytes it computes the right values, and the input's bytes stay untouched."""
    for arg in array_args(f):
        args = args_for(f)
        expected = f.call(args, **f.none())
        shape = f.out_shape(args)
        original = np.array(args[arg])
        for input_mode in _INPUT_MODES:
            path = tmp_path / f"{arg}-{input_mode}.bin"
            mapped, raw = _two_maps(path, original, via, input_mode, "r+")
            args[arg] = mapped
            for shift in _overlapping(_SHIFTS, original):
                out = _out_in(raw, _PAD + 8 * shift, shape)
                message = raises(ValueError, "out", f.call, args, out=out, **f.none())
                assert f"'{arg}'" in message, (shift, message)
                assert "file" in message, message
            beyond = _out_in(raw, _PAD + 8 * ((original.nbytes + 7) // 8), shape)
            got = f.call(args, out=beyond, **f.none())
            assert got is beyond
            close(beyond, expected, np.float64)
            np.testing.assert_array_equal(np.asarray(mapped), original)
            args[arg] = original


@pytest.mark.parametrize("via", ["memmap", "mmap"])
@pytest.mark.parametrize("f", FUNCS, ids=ids(FUNCS))
def test_out_in_a_copy_on_write_map_of_an_input_file_is_fine(
    f: Func, via: str, tmp_path: Path
) -> None:
    """Writes through a copy-on-write (private) map stay in that map: they reach neither the
    file nor another map of it, so such an `out` over an input's bytes computes the right
    values and leaves the input as it was."""
    args = args_for(f)
    arg = f.positional[0]
    expected = f.call(args, **f.none())
    original = np.array(args[arg])
    mapped, raw = _two_maps(tmp_path / "in.bin", original, via, "r+", "c")
    args[arg] = mapped
    out = _out_in(raw, _PAD + 8, f.out_shape(args))
    got = f.call(args, out=out, **f.none())
    assert got is out
    close(out, expected, np.float64)
    np.testing.assert_array_equal(np.asarray(mapped), original)


@pytest.mark.parametrize("via", ["memmap", "mmap"])
def test_grad_outputs_mapping_the_same_file_as_an_input_are_refused(
    via: str, tmp_path: Path
) -> None:
    """Both outputs of both gradients, against every array argument, through a second map."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal(SHAPE)
    cases: list[tuple[Callable[..., Any], Args]] = [
        (
            crossent.binary_cross_entropy_with_logits_grad,
            {
                "input": x,
                "target": rng.uniform(size=SHAPE),
                "weight": rng.uniform(0.5, 2, SHAPE[-1:]),
                "pos_weight": rng.uniform(0.5, 2, SHAPE[-1:]),
            },
        ),
        (
            crossent.softmax_cross_entropy_grad,
            {"logits": x, "target": rng.integers(0, 5, SHAPE[:1]), "weight": rng.uniform(size=5)},
        ),
    ]
    for grad, base in cases:
        names = list(base)
        for arg in names:
            args = dict(base)
            mapped, raw = _two_maps(tmp_path / f"{arg}.bin", base[arg], via, "r+", "r+")
            args[arg] = mapped
            positional = [args.pop(names[0]), args.pop(names[1])]
            for which in (0, 1):
                for shift in _overlapping(_SHIFTS, base[arg]):
                    outs = [np.empty(SHAPE), np.empty(SHAPE)]
                    outs[which] = _out_in(raw, _PAD + 8 * shift, SHAPE)
                    message = raises(ValueError, "out", grad, *positional, **args, out=tuple(outs))
                    assert f"'{arg}'" in message, message


@pytest.mark.parametrize("f", FUNCS, ids=ids(FUNCS))
def test_out_interleaved_with_an_input_is_fine(f: Func) -> None:
    """Arrays that share a buffer but no element are not an overlap."""
    args = args_for(f)
    arg = f.positional[0]
    x = args[arg]
    expected = f.call(args, **f.none())
    buf = np.zeros(2 * x.size)
    buf[0::2] = x.ravel()
    args[arg] = buf[0::2].reshape(x.shape)
    shape = f.out_shape(args)
    out = buf[1::2][: int(np.prod(shape))].reshape(shape)
    got = f.call(args, out=out, **f.none())
    assert got is out
    close(out, expected, np.float64)
    np.testing.assert_array_equal(buf[0::2].reshape(x.shape), x)


def _out_layouts(shape: tuple[int, ...]) -> list[Any]:
    spread = np.empty(tuple(2 * n for n in shape))[tuple(slice(None, None, 2) for _ in shape)]
    return [
        np.empty(shape),
        np.empty(shape, order="F"),
        spread,
        np.empty(shape)[tuple(slice(None, None, -1) for _ in shape)],
    ]


@pytest.mark.parametrize("f", FUNCS, ids=ids(FUNCS))
def test_out_is_written_whatever_its_layout(f: Func) -> None:
    args = args_for(f)
    expected = f.call(args, **f.none())
    for out in _out_layouts(f.out_shape(args)):
        got = f.call(args, out=out, **f.none())
        assert got is out
        close(out, expected, np.float64)


def test_out_too_large_to_allocate_is_a_memory_error() -> None:
    """A broadcast input of 2^45 elements asks for a 256 TiB result: NumPy's MemoryError, not
    a panic."""
    for f in FUNCS:
        args = args_for(f)
        shape = (2**45, 2) if f.rows else (2**45,)
        for k in f.positional:
            args[k] = np.broadcast_to(np.asarray(args[k]).ravel()[0], shape)
        for k in f.broadcast:
            del args[k]
        with pytest.raises(MemoryError):
            f.call(args, **f.none())


# --- odd but valid arrays: read correctly, in place or through one conversion ---------------


def _byteswapped(a: Any) -> Any:
    return np.asarray(a).astype(np.asarray(a).dtype.newbyteorder())


def _memmap(a: Any, tmp: Path) -> Any:
    a = np.asarray(a)
    m = np.memmap(tmp / f"m{id(a)}.bin", dtype=a.dtype, mode="w+", shape=a.shape)
    m[...] = a
    m.flush()
    return np.memmap(tmp / f"m{id(a)}.bin", dtype=a.dtype, mode="r", shape=a.shape)


def _huge_strides(a: Any) -> Any:
    """The same values, 1 MiB apart in a 20 MiB buffer."""
    a = np.asarray(a)
    step = (1 << 20) // a.itemsize
    big = np.zeros(a.size * step, dtype=a.dtype)
    big[::step] = a.ravel()
    return big[::step].reshape(a.shape)


LAYOUTS: dict[str, Callable[[Any, Path], Any]] = {
    "byte-swapped": lambda a, t: _byteswapped(a),
    "misaligned": lambda a, t: _copy_into(_misaligned(np.asarray(a)), a),
    "read-only": lambda a, t: _readonly(np.array(a)),
    "memmap": _memmap,
    "mmap-buffer": lambda a, t: _from_mmap(a),
    "fortran": lambda a, t: np.asfortranarray(a),
    "negative strides": lambda a, t: np.ascontiguousarray(_flip(a))[_flips(a)],
    "huge strides": lambda a, t: _huge_strides(a),
    "transposed": lambda a, t: np.ascontiguousarray(np.asarray(a).T).T,
}


def _flips(a: Any) -> tuple[slice, ...]:
    return tuple(slice(None, None, -1) for _ in np.shape(a))


def _flip(a: Any) -> Any:
    return np.asarray(a)[_flips(a)]


def _copy_into(dst: Any, src: Any) -> Any:
    dst[...] = src
    return dst


def _from_mmap(a: Any) -> Any:
    a = np.asarray(a)
    m = mmap.mmap(-1, a.nbytes)
    view = np.frombuffer(m, dtype=a.dtype).reshape(a.shape)
    view[...] = a
    return view


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("f", FUNCS, ids=ids(FUNCS))
def test_odd_layouts_read_correctly(f: Func, dtype: Any, layout: str, tmp_path: Path) -> None:
    args = args_for(f, dtype)
    expected_none = f.call(args, **f.none())
    for arg in f.positional:
        odd = dict(args)
        value = np.asarray(args[arg])
        odd[arg] = LAYOUTS[layout](value, tmp_path)
        np.testing.assert_array_equal(odd[arg], value)
        close(f.call(odd, **f.none()), expected_none, dtype)
        if f.reduces:
            for reduction in ("mean", "sum"):
                close(f.call(odd, reduction=reduction), f.call(args, reduction=reduction), dtype)
        np.testing.assert_array_equal(odd[arg], value)  # inputs are never written


@pytest.mark.parametrize("f", FUNCS, ids=ids(FUNCS))
def test_zero_length_axes(f: Func) -> None:
    """Empty arrays: an empty result of the right shape; "sum" is 0.0 and "mean" NaN (as
    PyTorch); an empty distribution has entropy/divergence 0.0 (as SciPy)."""
    for shape in [(0, 5), (5, 0), (3, 0, 2), (2, 3, 0)]:
        args = f.make(np.random.default_rng(0), shape, np.float64)
        got = f.call(args, **f.none())
        assert isinstance(got, np.ndarray)
        assert got.shape == f.out_shape(args)
        assert got.dtype == np.float64
        if f.rows:
            assert (got == 0.0).all()
        if f.reduces:
            assert f.call(args, reduction="sum") == 0.0
            mean = f.call(args, reduction="mean")
            # 0/0 without rows; rows of no classes have loss 0, but none has a valid label.
            assert np.isnan(mean) if got.size == 0 or f.weighted_mean else mean == 0.0
    one_d = f.make(np.random.default_rng(0), (0,), np.float64)
    if f.rows:
        assert f.call(one_d, **f.none()) == 0.0


@pytest.mark.parametrize("f", FUNCS, ids=ids(FUNCS))
def test_zero_d(f: Func) -> None:
    """0-d arrays are one element (one value of a 0-d result), or for the functions along an
    axis, an error naming `axis` unless axis=None."""
    args = f.make(np.random.default_rng(0), (), np.float64)
    if f.rows:
        raises(ValueError, "axis", f.call, args)
        if not f.axis_none:
            return
        assert f.call(args, axis=None) == pytest.approx(
            float(f.reference({k: np.reshape(v, (1,)) for k, v in args.items()}))
        )
        return
    expected = f.reference(args)
    got = f.call(args, **f.none())
    assert isinstance(got, np.ndarray)
    assert got.shape == ()
    close(got, expected, np.float64)
    if f.reduces:
        close(f.call(args, reduction="sum"), expected, np.float64)


@pytest.mark.parametrize("f", FUNCS, ids=ids(FUNCS))
def test_broadcast_inputs_with_zero_strides(f: Func) -> None:
    args = args_for(f)
    wide = {
        k: (np.broadcast_to(v[:1], v.shape) if k in f.positional else v) for k, v in args.items()
    }
    dense = {k: (np.ascontiguousarray(v) if k in f.positional else v) for k, v in wide.items()}
    close(f.call(wide, **f.none()), f.call(dense, **f.none()), np.float64)


# --- NaN and infinities in each position ---------------------------------------------------


def _special_cases(f: Func) -> list[tuple[str, float, str]]:
    return [(arg, v, outcome) for (arg, v), outcome in f.special.items()]


@pytest.mark.parametrize(("f", "arg", "value", "outcome"), cases(_special_cases))
@pytest.mark.parametrize("dtype", FLOATS)
def test_nan_and_inf(f: Func, arg: str, value: float, outcome: str, dtype: Any) -> None:
    """One special value at one position: the documented outcome there (and the float64
    reference's value), the ordinary result everywhere else; NaN makes the mean NaN."""
    args = args_for(f, dtype)
    if arg in f.broadcast:
        args[arg] = np.broadcast_to(args[arg], SHAPE).copy()
    special = np.array(args[arg], copy=True)
    special[2, 3] = value  # (the last class, never a row's label in the registry)
    args[arg] = special
    if outcome == "ValueError":
        raises(ValueError, arg, f.call, args)
        return
    got = np.asarray(f.call(args, **f.none()))
    with np.errstate(all="ignore"):
        expected = f.reference(args)
    at = f.out_index((2, 3))
    mask = np.zeros(got.shape, dtype=bool)
    mask[at] = True
    if outcome == "nonfinite":
        close(got[~mask], expected[~mask], dtype)
    else:
        close(got, expected, dtype)
    assert np.isfinite(got[~mask]).all()
    v = got[at]
    outcomes: dict[str, Callable[[Any], Any]] = {
        "nan": np.isnan,
        "inf": np.isposinf,
        "-inf": np.isneginf,
        "finite": np.isfinite,
        "nonfinite": lambda v: not np.isfinite(v),
    }
    assert outcomes[outcome](v), v
    if f.reduces:
        assert outcomes[outcome](f.call(args))


# --- threads API ---------------------------------------------------------------------------


def test_set_num_threads_bad_values(threads: None) -> None:
    for bad in (0, -1, -(10**30)):
        raises(ValueError, "n", crossent.set_num_threads, bad)
    for wrong in (1.5, 2.0, "2", None, [2]):
        raises(TypeError, "n", crossent.set_num_threads, wrong)


def test_set_num_threads_caps_huge_counts(threads: None) -> None:
    crossent.set_num_threads(10**30)
    assert crossent.get_num_threads() == 1024
    crossent.set_num_threads(np.int64(3))  # type: ignore[arg-type]
    assert crossent.get_num_threads() == 3


# --- the gradient: two outputs -------------------------------------------------------------


def test_grad_outputs_must_not_overlap_inputs_or_each_other() -> None:
    grad = crossent.binary_cross_entropy_with_logits_grad
    x = np.random.default_rng(0).standard_normal(SHAPE)
    y = np.full(SHAPE, 0.25)
    g, h = np.empty(SHAPE), np.empty(SHAPE)
    through_memoryview = np.frombuffer(x.data, dtype=np.float64).reshape(SHAPE)
    message = raises(ValueError, "out", grad, x, y, out=(through_memoryview, h))
    assert "'input'" in message, message
    message = raises(ValueError, "out", grad, x, y, out=(g, through_memoryview))
    assert "'input'" in message, message
    message = raises(ValueError, "out", grad, x, y, out=(g, np.frombuffer(g.data).reshape(SHAPE)))
    assert "'out[0]'" in message, message
    raises(ValueError, "out", grad, x, y, out=(g, g))
    raises(TypeError, "out", grad, x, y, out=[g, h])
    raises(TypeError, "reduction", grad, x, y, reduction=1)
    got_g, got_h = grad(x, y, out=(g, h))
    assert got_g is g and got_h is h


def test_grad_too_large_to_allocate_is_a_memory_error() -> None:
    big = np.broadcast_to(0.5, (2**45,))
    with pytest.raises(MemoryError):
        crossent.binary_cross_entropy_with_logits_grad(big, big)


def test_class_index_equal_to_the_class_count_is_out_of_range() -> None:
    logits = np.zeros((3, 5))
    for dtype in ("int8", "uint8", "int16", "uint16", "int32", "uint32", "int64"):
        labels = np.array([0, 4, 5], dtype=dtype)
        message = raises(ValueError, "target", crossent.softmax_cross_entropy, logits, labels)
        assert "(2,)" in message, message
        labels[2] = 4
        assert np.isfinite(crossent.softmax_cross_entropy(logits, labels))


# --- accumulators --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cls",
    [crossent.BinaryCrossEntropyAccumulator, crossent.BinaryCrossEntropyWithLogitsAccumulator],
)
def test_accumulators_name_bad_arguments_and_keep_their_state(cls: Any) -> None:
    raises(TypeError, "reduction", cls, reduction=3)
    raises(ValueError, "reduction", cls, reduction="none")
    acc = cls()
    acc.update(np.full(4, 0.5), np.zeros(4))
    before = (acc.count, acc.sum)
    raises(TypeError, "input", acc.update, np.zeros(4, complex), np.zeros(4))
    raises(ValueError, "target", acc.update, np.full(4, 0.5), np.zeros(5))
    # (A label other than 0/1: BCE with logits takes any real float target, as PyTorch.)
    raises(ValueError, "target", acc.update, np.full(4, 0.5), np.full(4, 2, dtype=np.int8))
    raises(TypeError, "other", acc.merge, 3)
    assert (acc.count, acc.sum) == before  # a refused batch leaves no trace


# The accumulators of the row-wise losses, with the registry entry of their function: they
# refuse (at construction or at the first update) every hostile value the function refuses,
# and a refused batch leaves no trace.
STREAMED: list[tuple[type[Any], str, dict[str, Any]]] = [
    (crossent.SoftmaxCrossEntropyAccumulator, "softmax_cross_entropy", {}),
    (crossent.SoftmaxCrossEntropyAccumulator, "softmax_cross_entropy[probabilities]", {}),
    (crossent.EntropyAccumulator, "entropy", {}),
    (crossent.CrossEntropyAccumulator, "cross_entropy", {}),
    (crossent.KLDivergenceAccumulator, "kl_divergence", {}),
    (crossent.JensenShannonAccumulator, "jensen_shannon", {"normalize": False}),
]


def refused(
    exc: type[Exception], arg: str, make: Callable[..., Any], value: Any, batch: list[Any]
) -> None:
    """`make(arg=value)` raises `exc` naming `arg`, or else the accumulator it makes refuses
    `batch`."""
    try:
        acc = make(**{arg: value})
    except exc as e:
        assert f"'{arg}'" in str(e), str(e)
        return
    raises(exc, arg, acc.update, *batch)


@pytest.mark.parametrize(
    ("cls", "name", "fixed"), STREAMED, ids=[f"{c.__name__}-{n}" for c, n, _ in STREAMED]
)
def test_streaming_accumulators_refuse_what_their_function_refuses(
    cls: type[Any], name: str, fixed: dict[str, Any]
) -> None:
    f = BY_NAME[name]
    args = args_for(f)
    batch = [args[k] for k in f.positional]

    def make(**overrides: Any) -> Any:
        return cls(**{**fixed, **{k: args[k] for k in f.broadcast}, **overrides})

    accepted = inspect.signature(cls).parameters
    for param, value, exc in _bad_param_cases(f):
        if param in accepted:
            refused(exc, param, make, value, batch)
    for arg in f.broadcast:
        for shape in [(4,), (6,), (2, 5), (3, 4, 5)]:
            refused(ValueError, arg, make, np.ones(shape), batch)

    acc = make()
    acc.update(*batch)
    before = (acc.count, acc.sum)

    def update_with(arg: str, value: Any) -> list[Any]:
        return [value if k == arg else args[k] for k in f.positional]

    for arg, dtype in _bad_dtype_cases(f):
        if arg in f.positional:
            value = np.asarray(args[arg])
            bad = (
                np.zeros(value.shape, dtype=dtype)
                if dtype.startswith("datetime")
                else value.astype(dtype)
            )
            raises(TypeError, arg, acc.update, *update_with(arg, bad))
    for arg, shapes in f.mismatched.items():
        for shape in shapes:
            raises(ValueError, arg, acc.update, *update_with(arg, np.resize(args[arg], shape)))
    for arg, value in _domain_cases(f):
        bad = np.array(args[arg], copy=True)
        at = (2, 3)[: bad.ndim]
        bad[at] = value
        err = domain_error(bad, arg, acc.update, *update_with(arg, bad))
        assert err.index == at, str(err)
    raises(TypeError, "other", acc.merge, crossent.BinaryCrossEntropyAccumulator())
    assert (acc.count, acc.sum) == before  # a refused batch leaves no trace


# --- integer arguments refuse bools ----------------------------------------------------------

# A valid call of every public callable that takes an integer argument, by keyword.
_SOFT_X = np.zeros((3, 4))
_VALID_CALLS: dict[str, tuple[tuple[Any, ...], dict[str, Any]]] = {
    "set_num_threads": ((), {"n": 2}),
    "entropy": ((np.full((3, 4), 0.25),), {}),
    "cross_entropy": ((np.full((3, 4), 0.25), np.full((3, 4), 0.25)), {}),
    "kl_divergence": ((np.full((3, 4), 0.25), np.full((3, 4), 0.25)), {}),
    "jensen_shannon": ((np.full((3, 4), 0.25), np.full((3, 4), 0.25)), {}),
    "softmax_cross_entropy": ((_SOFT_X, np.zeros(3, dtype=np.int64)), {}),
    "softmax_cross_entropy_grad": ((_SOFT_X, np.zeros(3, dtype=np.int64)), {}),
    "SoftmaxCrossEntropyAccumulator": ((), {}),
}


def _dask_calls() -> dict[str, tuple[tuple[Any, ...], dict[str, Any]]]:
    """The same valid calls for the functions of `crossent.dask`, on Dask arrays."""
    import dask.array as da

    def lazy(a: Any) -> Any:
        return da.from_array(np.asarray(a), chunks=2)

    return {
        f"dask.{name}": (tuple(lazy(a) for a in args), kwargs)
        for name, (args, kwargs) in _VALID_CALLS.items()
        if hasattr(crossent.dask, name)
    }


def _integer_parameters() -> list[tuple[str, str]]:
    """(public callable, parameter) for every parameter of the API documented as an integer,
    in `crossent` and `crossent.dask`: found from the signatures, so a new one is covered as
    soon as it exists."""
    import crossent.dask

    found = []
    public = [(name, getattr(crossent, name)) for name in crossent.__all__]
    public += [(f"dask.{name}", getattr(crossent.dask, name)) for name in crossent.dask.__all__]
    for name, obj in public:
        if not callable(obj):
            continue
        try:
            signature = inspect.signature(obj)
        except (TypeError, ValueError):
            continue
        for param in signature.parameters:
            if param in ("axis", "ignore_index", "n"):
                found.append((name, param))
    return found


def test_every_integer_argument_refuses_bools(threads: None) -> None:
    """`True` is 1 to Python, but a bool passed as a count, an axis or a class index is a
    mistake: every integer argument refuses it (and NumPy's bool), naming the argument, in
    memory and on Dask arrays."""
    import crossent.dask

    calls = {**_VALID_CALLS, **_dask_calls()}
    found = _integer_parameters()
    assert {("set_num_threads", "n"), ("softmax_cross_entropy_grad", "ignore_index")} <= set(
        found
    ), found
    assert ("dask.entropy", "axis") in found, found
    assert {name for name, _ in found} == set(calls), found

    def computed(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        result = func(*args, **kwargs)
        return result.compute() if hasattr(result, "compute") else result

    for name, param in found:
        module = crossent.dask if name.startswith("dask.") else crossent
        func = getattr(module, name.removeprefix("dask."))
        args, kwargs = calls[name]
        computed(func, *args, **kwargs)  # valid as given
        for flag in (True, False, np.True_):
            raises(TypeError, param, computed, func, *args, **{**kwargs, param: flag})
    assert crossent.get_num_threads() == 2


# --- targets of BCE with logits; ignore_index with class probabilities -----------------------


@pytest.mark.parametrize("dtype", FLOATS)
def test_bce_with_logits_takes_any_real_target_as_pytorch(dtype: Any) -> None:
    """PyTorch computes BCE with logits for any real target (its own tests draw them from a
    normal distribution): so do the loss, its gradient and the accumulator, matching the
    float64 formula; integer labels other than 0/1, and BCE on probabilities, still raise."""
    rng = np.random.default_rng(16)
    x = (rng.standard_normal((50, 7)) * 3).astype(dtype)
    y = (rng.standard_normal((50, 7)) * 2).astype(dtype)
    y[0, :3] = (-1e-30, 1 + 2.0**-20, 5.0)
    w = rng.uniform(0.5, 2.0, (50, 7)).astype(dtype)
    pw = rng.uniform(0.5, 2.0, 7).astype(dtype)
    rtol = 1e-4 if dtype == np.float32 else 1e-10
    loss = reference.bce_with_logits(x, y, w, pw)
    for weight, pos_weight in ((None, None), (w, None), (w, pw)):
        expected = reference.bce_with_logits(x, y, weight, pos_weight)
        got = crossent.binary_cross_entropy_with_logits(
            x, y, weight=weight, pos_weight=pos_weight, reduction="none"
        )
        np.testing.assert_allclose(got, expected, rtol=rtol, atol=rtol * np.abs(expected).max())
        mean = crossent.binary_cross_entropy_with_logits(x, y, weight=weight, pos_weight=pos_weight)
        assert mean == pytest.approx(expected.mean(), rel=rtol)
        acc = crossent.BinaryCrossEntropyWithLogitsAccumulator(pos_weight=pos_weight)
        acc.update(x, y, weight=weight)
        assert acc.result() == pytest.approx(expected.mean(), rel=rtol)
    # Gradient: w * ((1 + (c - 1) y) s - c y).
    x64, y64, w64, c = (a.astype(np.float64) for a in (x, y, w, pw))
    s = 1 / (1 + np.exp(-x64))
    grad, hess = crossent.binary_cross_entropy_with_logits_grad(x, y, weight=w, pos_weight=pw)
    expected_g = w64 * ((1 + (c - 1) * y64) * s - c * y64)
    expected_h = w64 * (1 + (c - 1) * y64) * s * (1 - s)
    np.testing.assert_allclose(grad, expected_g, rtol=rtol, atol=rtol * np.abs(expected_g).max())
    np.testing.assert_allclose(hess, expected_h, rtol=rtol, atol=rtol * np.abs(expected_h).max())
    assert np.isfinite(loss).all()
    # Hard labels keep their domain; so does BCE on probabilities.
    labels = (y > 0).astype(np.int8)
    labels[3, 4] = 2
    raises(ValueError, "target", crossent.binary_cross_entropy_with_logits, x, labels)
    raises(ValueError, "target", crossent.binary_cross_entropy_with_logits_grad, x, labels)
    p = np.full(x.shape, 0.5, dtype=dtype)
    raises(ValueError, "target", crossent.binary_cross_entropy, p, y)


def test_ignore_index_with_class_probabilities_is_refused() -> None:
    """A class index to ignore means nothing for probability targets; PyTorch raises
    ("ignore_index is not supported for floating point target"): so do the loss, its
    gradient and the accumulator for any ignore_index that could name a class (>= 0). The
    negative values that name no class (the default -100) are accepted, as in PyTorch."""
    rng = np.random.default_rng(2)
    logits = rng.standard_normal((6, 4))
    probs = rng.dirichlet(np.ones(4), 6)
    loss = crossent.softmax_cross_entropy
    grad = crossent.softmax_cross_entropy_grad
    for ignore in (0, 3, 7, 2**40):
        for func in (loss, grad):
            message = raises(ValueError, "ignore_index", func, logits, probs, ignore_index=ignore)
            assert str(ignore) in message, message
        acc = crossent.SoftmaxCrossEntropyAccumulator(ignore_index=ignore)
        raises(ValueError, "ignore_index", acc.update, logits, probs)
        assert acc.count == 0
        acc.update(logits, np.array([0, 1, 2, 3, 0, 1]))  # class indices: fine
    expected = loss(logits, probs)
    for ignore in (-1, -100, -(2**40)):
        assert loss(logits, probs, ignore_index=ignore) == expected
        grad(logits, probs, ignore_index=ignore)
        acc = crossent.SoftmaxCrossEntropyAccumulator(ignore_index=ignore)
        acc.update(logits, probs)
        assert acc.result() == expected


@pytest.mark.parametrize("case", BAD_CALLS, ids=[c.id for c in BAD_CALLS])
def test_bad_calls_name_the_argument(case: BadCall) -> None:
    raises(case.exc, case.arg, case.func, *case.args, **case.kwargs)
