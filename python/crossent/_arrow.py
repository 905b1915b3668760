"""Arrow columns as operands, read through the Arrow PyCapsule interface without a copy.

Objects that expose ``__arrow_c_array__`` (pyarrow arrays, nanoarrow) or
``__arrow_c_stream__`` (pyarrow ``ChunkedArray``/``RecordBatchReader``/``Table``, polars
``Series``/``DataFrame``, DuckDB results) are read here, by the compiled core's operand parser
when an argument is not an ndarray (it never gets here for one, so NumPy calls pay nothing).

The C data interface's few primitive layouts are read directly (no Arrow library is needed):
an ``ArrowSchema`` format string (``"f"``, ``"g"``, ``"c"`` … ``"L"``, ``"b"``,
``"+w:N"``, single-column ``"+s"``) and an ``ArrowArray``'s buffers, ``offset`` and
``null_count``. A numeric column becomes a NumPy array over the Arrow buffer itself (its
``base`` keeps the capsule, and so the producer's buffers, alive until the array is gone); a
fixed-size list of numbers (``pl.Array``, ``pa.list_(pa.float32(), C)``) becomes an
``(n, C)`` array. A boolean column is bit-packed: it is unpacked to one byte per element (the
one conversion). A floating-point column with nulls is read as a copy with NaN in their
place (so that ``nan_policy`` decides: ``"propagate"`` gives NaN, ``"omit"`` leaves them
out, ``"raise"`` names the first); a null in an integer or boolean column, which has no NaN,
raises ``ValueError`` naming the argument and the position.

A stream of several chunks is not concatenated: :func:`call_streamed` runs the loss over
aligned pieces of the operands (zero-copy slices where chunk boundaries differ), through the
loss's accumulator for ``"mean"``/``"sum"``, writing each piece's rows of the result for the
per-element outputs. Pieces are cut on the accumulator's block grid (``crossent.BLOCK``
elements, ``crossent.CHUNK`` for the divergences, ``CHUNK // C`` rows for softmax), the few
elements of the one block that straddles a chunk boundary being copied so that the block is
reduced whole: the result has the bits of one call over the concatenated column.
"""

from __future__ import annotations

import ctypes
import re
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

# --------------------------------------------------------------------------------------------
# The C data interface (https://arrow.apache.org/docs/format/CDataInterface.html)


class ArrowSchema(ctypes.Structure):
    pass


_SchemaRelease = ctypes.CFUNCTYPE(None, ctypes.POINTER(ArrowSchema))
ArrowSchema._fields_ = [
    ("format", ctypes.c_char_p),
    ("name", ctypes.c_char_p),
    ("metadata", ctypes.c_void_p),
    ("flags", ctypes.c_int64),
    ("n_children", ctypes.c_int64),
    ("children", ctypes.POINTER(ctypes.POINTER(ArrowSchema))),
    ("dictionary", ctypes.POINTER(ArrowSchema)),
    ("release", ctypes.c_void_p),
    ("private_data", ctypes.c_void_p),
]


class ArrowArray(ctypes.Structure):
    pass


ArrowArray._fields_ = [
    ("length", ctypes.c_int64),
    ("null_count", ctypes.c_int64),
    ("offset", ctypes.c_int64),
    ("n_buffers", ctypes.c_int64),
    ("n_children", ctypes.c_int64),
    ("buffers", ctypes.POINTER(ctypes.c_void_p)),
    ("children", ctypes.POINTER(ctypes.POINTER(ArrowArray))),
    ("dictionary", ctypes.POINTER(ArrowArray)),
    ("release", ctypes.c_void_p),
    ("private_data", ctypes.c_void_p),
]


class ArrowArrayStream(ctypes.Structure):
    pass


_GetSchema = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ArrowArrayStream), ctypes.POINTER(ArrowSchema)
)
_GetNext = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ArrowArrayStream), ctypes.POINTER(ArrowArray)
)
_GetLastError = ctypes.CFUNCTYPE(ctypes.c_char_p, ctypes.POINTER(ArrowArrayStream))
_StreamRelease = ctypes.CFUNCTYPE(None, ctypes.POINTER(ArrowArrayStream))
_ArrayRelease = ctypes.CFUNCTYPE(None, ctypes.POINTER(ArrowArray))
ArrowArrayStream._fields_ = [
    ("get_schema", _GetSchema),
    ("get_next", _GetNext),
    ("get_last_error", _GetLastError),
    ("release", ctypes.c_void_p),
    ("private_data", ctypes.c_void_p),
]

_capsule_pointer = ctypes.pythonapi.PyCapsule_GetPointer
_capsule_pointer.restype = ctypes.c_void_p
_capsule_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]

# Format string -> NumPy dtype of the primitive layouts read in place.
_NUMERIC = {
    b"f": "float32",
    b"g": "float64",
    b"e": "float16",
    b"c": "int8",
    b"C": "uint8",
    b"s": "int16",
    b"S": "uint16",
    b"i": "int32",
    b"I": "uint32",
    b"l": "int64",
    b"L": "uint64",
}
# Names of common formats crossent refuses, for the error message.
_NAMED = {
    b"n": "null",
    b"u": "string",
    b"U": "large_string",
    b"vu": "string_view",
    b"z": "binary",
    b"Z": "large_binary",
    b"tdD": "date32",
    b"tdm": "date64",
    b"+l": "list",
    b"+L": "large_list",
    b"+m": "map",
}


def _format_name(fmt: bytes) -> str:
    if fmt in _NAMED:
        return _NAMED[fmt]
    if fmt.startswith(b"d:"):
        return f"decimal({fmt[2:].decode()})"
    if fmt.startswith(b"ts"):
        return "timestamp"
    return fmt.decode(errors="replace")


class _Keep:
    """Keeps an imported Arrow array alive and exposes one of its buffers to NumPy.

    ``owner`` is what releases the producer's memory when it is collected: the
    ``arrow_array`` capsule (whose destructor calls ``release``) or a :class:`_Released`.
    """

    def __init__(self, owner: object, interface: dict[str, Any]) -> None:
        self.owner = owner
        self.__array_interface__ = interface


class _Released:
    """Owns an ``ArrowArray`` that a stream produced; calls its ``release`` when collected."""

    def __init__(self, array: ArrowArray) -> None:
        self.array = array

    def __del__(self) -> None:
        release = self.array.release
        if release:
            _ArrayRelease(release)(ctypes.byref(self.array))


def _view(owner: object, address: int, dtype: np.dtype[Any], shape: tuple[int, ...]) -> Any:
    """A read-only ndarray of `shape` over the memory at `address`, kept alive by `owner`."""
    if 0 in shape:
        return np.empty(shape, dtype=dtype)
    if not address:
        raise ValueError(f"an Arrow array of shape {shape} has no data buffer")
    interface = {
        "shape": shape,
        "typestr": dtype.str,
        "data": (address, True),
        "version": 3,
    }
    return np.asarray(_Keep(owner, interface))


def _validity(array: Any, start: int, length: int) -> Any:
    """The validity of `length` slots of `array` from `start` (a bool array, True where a
    value is present), or None when none of them is null."""
    if array.null_count == 0 or length == 0:
        return None
    bitmap = array.buffers[0] if array.n_buffers > 0 else None
    if not bitmap:
        # No validity buffer: no nulls (a "null"-typed array is refused before).
        return None
    first = array.offset + start
    nbytes = (first + length + 7) // 8
    raw = np.ctypeslib.as_array(ctypes.cast(bitmap, ctypes.POINTER(ctypes.c_uint8)), (nbytes,))
    valid = np.unpackbits(raw, bitorder="little")[first : first + length].view(np.bool_)
    return None if valid.all() else valid


def _null_error(arg: str, position: int | tuple[int, int], dtype: Any) -> ValueError:
    where = position if isinstance(position, int) else f"{position}"
    return ValueError(
        f"'{arg}' holds a null at position {where}: its type, {dtype}, has no NaN to read it as "
        "(nan_policy applies to NaN), so drop or fill the nulls first (e.g. drop_nulls() / "
        "fill_null()), or cast the column to a float type"
    )


def _nulls_as_nan(values: Any, valid: Any, arg: str, start: int) -> Any:
    """`values` itself when `valid` is None (no null); else, for floating-point `values`, a
    copy with NaN where `valid` (of `values`' shape, or of its rows) is False: the one copy a
    column with nulls costs. Other types have no NaN: a null there raises, naming its
    position (`start`: the first row's position in the whole column)."""
    if valid is None:
        return values
    if values.dtype.kind != "f":
        at = np.unravel_index(int(np.argmin(valid)), valid.shape)
        where = start + int(at[0]) if len(at) == 1 else (start + int(at[0]), int(at[1]))
        raise _null_error(arg, where, values.dtype)
    out = np.array(values, copy=True)
    out[~valid] = np.nan
    return out


def _column(schema: ArrowSchema, array: ArrowArray, owner: object, arg: str, start: int) -> Any:
    """The ndarray view of one Arrow array; `start` is its first row's position in the
    whole column (for the position in a null's error)."""
    fmt = schema.format
    if schema.dictionary:
        raise TypeError(
            f"'{arg}' is a dictionary-encoded Arrow array: crossent reads numeric columns "
            "(decode it first)"
        )
    if fmt == b"+s":
        if schema.n_children != 1:
            names = [schema.children[i].contents.name for i in range(schema.n_children)]
            shown = ", ".join(repr(n.decode(errors="replace")) for n in names if n is not None)
            raise TypeError(
                f"'{arg}' is an Arrow table of {schema.n_children} columns ({shown}): pass "
                "one column"
            )
        child = array.children[0].contents
        # A struct's offset applies to its children on top of their own.
        values = _column(
            schema.children[0].contents,
            _shifted(child, array.offset, array.length),
            owner,
            arg,
            start,
        )
        return _nulls_as_nan(values, _validity(array, 0, array.length), arg, start)
    if fmt.startswith(b"+w:"):
        width = int(fmt[3:])
        child_schema = schema.children[0].contents
        child = array.children[0].contents
        dtype = _NUMERIC.get(child_schema.format)
        if dtype is None or child_schema.dictionary:
            raise TypeError(
                f"'{arg}' is an Arrow fixed-size list of {_format_name(child_schema.format)}: "
                "crossent reads fixed-size lists of numbers"
            )
        first = (array.offset) * width
        values = _primitive(child, dtype, owner, first, (array.length, width))
        rows = _validity(array, 0, array.length)
        slots = _validity(child, first, array.length * width)
        if rows is None and slots is None:
            return values
        valid = np.ones((array.length, width), np.bool_)
        if rows is not None:
            valid &= rows[:, None]
        if slots is not None:
            valid &= slots.reshape(array.length, width)
        return _nulls_as_nan(values, valid, arg, start)
    dtype = _NUMERIC.get(fmt)
    if fmt == b"b":
        return _nulls_as_nan(_booleans(array), _validity(array, 0, array.length), arg, start)
    if dtype is None:
        raise TypeError(
            f"'{arg}' is an Arrow array of type {_format_name(fmt)}: crossent reads numeric "
            "columns (float32, float64, integers, bool) and fixed-size lists of them"
        )
    values = _primitive(array, dtype, owner, array.offset, (array.length,))
    return _nulls_as_nan(values, _validity(array, 0, array.length), arg, start)


class _Shifted:
    """An ``ArrowArray``'s fields with a parent's offset and length applied (a struct's
    child is read through its parent's slice)."""

    def __init__(self, array: ArrowArray, offset: int, length: int) -> None:
        self.length = length
        self.null_count = -1 if array.null_count != 0 else 0
        self.offset = array.offset + offset
        self.n_buffers = array.n_buffers
        self.n_children = array.n_children
        self.buffers = array.buffers
        self.children = array.children


def _shifted(array: ArrowArray, offset: int, length: int) -> Any:
    return _Shifted(array, offset, length)


def _primitive(
    array: Any, dtype_name: str, owner: object, first: int, shape: tuple[int, ...]
) -> Any:
    dtype = np.dtype(dtype_name)
    data = array.buffers[1] if array.n_buffers > 1 else None
    address = data + first * dtype.itemsize if data else 0
    return _view(owner, address, dtype, shape)


def _booleans(array: Any) -> Any:
    length = array.length
    if length == 0:
        return np.empty(0, dtype=np.bool_)
    data = array.buffers[1]
    first = array.offset
    nbytes = (first + length + 7) // 8
    raw = np.ctypeslib.as_array(ctypes.cast(data, ctypes.POINTER(ctypes.c_uint8)), (nbytes,))
    # The one conversion: 1 bit to 1 byte (a bool array holds 0/1 bytes).
    return np.unpackbits(raw, bitorder="little")[first : first + length].view(np.bool_)


# --------------------------------------------------------------------------------------------
# Reading capsules


def _is_arrow(obj: object) -> bool:
    """True if `obj` is read through its Arrow interface. pandas objects also export Arrow
    streams, but convert to get there (NaN becomes null): NumPy reads their arrays in place."""
    module = type(obj).__module__
    if module == "pandas" or module.startswith("pandas."):
        return False
    return hasattr(obj, "__arrow_c_array__") or hasattr(obj, "__arrow_c_stream__")


def _import_array(obj: Any, arg: str) -> Any:
    schema_capsule, array_capsule = obj.__arrow_c_array__()
    schema = ArrowSchema.from_address(_capsule_pointer(schema_capsule, b"arrow_schema"))
    array = ArrowArray.from_address(_capsule_pointer(array_capsule, b"arrow_array"))
    # The array capsule releases the producer's buffers when it is collected; the view's
    # base keeps it. The schema is read now and released with its capsule.
    return _column(schema, array, array_capsule, arg, 0)


def _empty(schema: ArrowSchema, arg: str) -> Any:
    """An empty ndarray of the type `schema` describes (refused as :func:`_column` does)."""
    fmt = schema.format
    if fmt == b"+s" and schema.n_children == 1:
        return _empty(schema.children[0].contents, arg)
    child = schema.children[0].contents if fmt.startswith(b"+w:") else None
    if child is not None and child.format in _NUMERIC:
        return np.empty((0, int(fmt[3:])), dtype=_NUMERIC[child.format])
    if fmt == b"b":
        return np.empty(0, dtype=np.bool_)
    if fmt in _NUMERIC and not schema.dictionary:
        return np.empty(0, dtype=_NUMERIC[fmt])
    # Every other type raises there before its (absent) buffers are read.
    return _column(schema, ArrowArray(), None, arg, 0)


class _Stream:
    """An ``ArrowArrayStream`` read chunk by chunk, each chunk as an ndarray view."""

    def __init__(self, obj: Any, arg: str) -> None:
        self.arg = arg
        self.schema = ArrowSchema()
        self.capsule = obj.__arrow_c_stream__()
        self.stream = ArrowArrayStream.from_address(
            _capsule_pointer(self.capsule, b"arrow_array_stream")
        )
        self._check(self.stream.get_schema(ctypes.byref(self.stream), ctypes.byref(self.schema)))
        self.rows = 0

    def _check(self, code: int) -> None:
        if code != 0:
            message = self.stream.get_last_error(ctypes.byref(self.stream))
            detail = message.decode(errors="replace") if message else f"error code {code}"
            raise ValueError(f"'{self.arg}': reading its Arrow stream failed: {detail}")

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        array = ArrowArray()
        self._check(self.stream.get_next(ctypes.byref(self.stream), ctypes.byref(array)))
        if not array.release:
            raise StopIteration
        owner = _Released(array)
        view = _column(self.schema, array, owner, self.arg, self.rows)
        self.rows += array.length
        return view

    def empty(self) -> Any:
        """An empty array of this stream's type (for a stream without chunks)."""
        return _empty(self.schema, self.arg)

    def __del__(self) -> None:
        if self.schema.release:
            _SchemaRelease(self.schema.release)(ctypes.byref(self.schema))


def as_ndarray(obj: Any, arg: str) -> Any:
    """The operand parser's hook: `obj` (not an ndarray, with an Arrow PyCapsule method) as
    an ndarray read in place; a pandas object through NumPy (see :func:`_is_arrow`).

    A stream must hold at most one chunk here: the per-element operands of every function are
    streamed by :func:`call_streamed` before this is reached, so a chunked column here is a
    fixed parameter (a class weight), which is refused rather than silently concatenated.
    """
    if not _is_arrow(obj):
        return np.asarray(obj)
    if hasattr(obj, "__arrow_c_array__"):
        return _import_array(obj, arg)
    stream = _Stream(obj, arg)
    chunks = list(stream)
    if not chunks:
        return stream.empty()
    if len(chunks) > 1:
        raise TypeError(
            f"'{arg}' is an Arrow stream of {len(chunks)} chunks, which crossent does not "
            "concatenate for this argument: combine them first (rechunk() / "
            "combine_chunks())"
        )
    return chunks[0]


# --------------------------------------------------------------------------------------------
# Streaming a call over chunked columns


def _is_stream(obj: object) -> bool:
    """True for a (possibly chunked) Arrow stream: streamed by :func:`call_streamed`."""
    return (
        obj is not None
        and not isinstance(obj, np.ndarray)
        and _is_arrow(obj)
        and not hasattr(obj, "__arrow_c_array__")
    )


def _chunks(obj: Any, arg: str) -> Iterator[Any]:
    """`obj`'s chunks as ndarrays: a stream's chunks (an empty one for a stream without
    any), or the whole of anything else as one."""
    if _is_stream(obj):
        stream = _Stream(obj, arg)
        empty = True
        for chunk in stream:
            empty = False
            yield chunk
        if empty:
            yield stream.empty()
    elif _is_arrow(obj):
        yield _import_array(obj, arg)
    else:
        yield np.asarray(obj)


def _aligned(sources: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Pieces of equal length of every source, cut wherever a source's chunk ends: slices
    of the chunks, never copies. Raises ``ValueError`` when the sources' lengths differ.

    Streams are read side by side. Where a producer cannot keep two streams open at once
    (two results of one DuckDB connection), the streams opened before are read to their
    end first, their chunks held (not copied), and the opening is tried again."""
    iters: dict[str, Iterator[Any]] = {name: _chunks(obj, name) for name, obj in sources.items()}
    current: dict[str, Any] = {}
    last: dict[str, Any] = {}
    rows = dict.fromkeys(sources, 0)
    done: set[str] = set()
    opened: list[str] = []
    yielded = False
    while True:
        # (Again after a retry in _next_chunk, which puts back the chunks in hand.)
        while any(n not in done and len(current.get(n, ())) == 0 for n in sources):
            for name in sources:
                while name not in done and len(current.get(name, ())) == 0:
                    chunk = _next_chunk(name, sources, iters, opened, current)
                    if chunk is None:
                        done.add(name)
                        current.pop(name, None)
                    else:
                        current[name] = last[name] = chunk
        if done:
            if len(done) < len(iters):
                short = sorted(done)[0]
                long = next(n for n in iters if n not in done)
                raise ValueError(
                    f"'{short}' has {rows[short]} rows but '{long}' has more: the operands of "
                    "a chunked column must have the same number of rows"
                )
            if not yielded and last:
                # Only empty chunks: one empty piece, for the result's type.
                yield {name: a[:0] for name, a in last.items()}
            return
        step = min(len(c) for c in current.values())
        yield {name: c[:step] for name, c in current.items()}
        yielded = True
        for name in current:
            current[name] = current[name][step:]
            rows[name] += step


def _next_chunk(
    name: str,
    sources: dict[str, Any],
    iters: dict[str, Iterator[Any]],
    opened: list[str],
    current: dict[str, Any],
) -> Any:
    """The next chunk of source `name` (None at its end); on a failure to open its stream
    while others are open, reads those to their end (see :func:`_aligned`) and tries again."""
    if name in opened or not opened:
        if name not in opened:
            opened.append(name)
        return next(iters[name], None)
    try:
        chunk = next(iters[name], None)
    except Exception:
        # Only the opening is tried again: a second failure is the producer's own error.
        for other in opened:
            held = [current[other]] if other in current else []
            held.extend(iters[other])
            iters[other] = iter(held)
            current.pop(other, None)
        iters[name] = _chunks(sources[name], name)
        chunk = next(iters[name], None)
    opened.append(name)
    return chunk


def _blocked(pieces: Iterator[dict[str, Any]], unit: int) -> Iterator[tuple[int, dict[str, Any]]]:
    """Re-cuts `pieces` so that every batch but the last starts and ends on a multiple of
    `unit` rows from the start: whole blocks are views; the block that straddles a chunk
    boundary is gathered into a buffer of `unit` rows (the only copy: under one block per
    boundary). Each batch is consumed before the next is made (the buffer is reused). Yields
    each batch with the row at which it starts."""
    carry: dict[str, Any] = {}
    held = 0
    row = 0
    for piece in pieces:
        n = len(next(iter(piece.values())))
        taken = 0
        if held:
            taken = min(unit - held, n)
            for name, a in piece.items():
                carry[name][held : held + taken] = a[:taken]
            held += taken
            if held == unit:
                yield row + taken - unit, carry
                held = 0
        whole = (n - taken) // unit * unit
        if whole:
            yield row + taken, {name: a[taken : taken + whole] for name, a in piece.items()}
            taken += whole
        rest = n - taken
        if rest:
            for name, a in piece.items():
                if name not in carry:
                    carry[name] = np.empty((unit, *a.shape[1:]), dtype=a.dtype)
                carry[name][:rest] = a[taken:]
            held = rest
        row += n
    if held:
        yield row - held, {name: a[:held] for name, a in carry.items()}


# Per function: the per-element operands, streamed together.
_OPERANDS: dict[str, tuple[str, ...]] = {
    "binary_cross_entropy": ("input", "target", "weight", "sample_weight", "groups"),
    "binary_cross_entropy_with_logits": ("input", "target", "weight", "sample_weight", "groups"),
    "binary_cross_entropy_with_logits_grad": ("input", "target", "weight"),
    "softmax_cross_entropy": ("logits", "target", "sample_weight", "groups"),
    "softmax_cross_entropy_grad": ("logits", "target"),
    "entropy": ("p", "q"),  # q: None (the Rust hook names it for every divergence)
    "cross_entropy": ("p", "q"),
    "kl_divergence": ("p", "q"),
    "jensen_shannon": ("p", "q"),
}
_ACCUMULATOR = {
    "binary_cross_entropy": "BinaryCrossEntropyAccumulator",
    "binary_cross_entropy_with_logits": "BinaryCrossEntropyWithLogitsAccumulator",
    "softmax_cross_entropy": "SoftmaxCrossEntropyAccumulator",
    "entropy": "EntropyAccumulator",
    "cross_entropy": "CrossEntropyAccumulator",
    "kl_divergence": "KLDivergenceAccumulator",
    "jensen_shannon": "JensenShannonAccumulator",
}
_DIVERGENCES = ("entropy", "cross_entropy", "kl_divergence", "jensen_shannon")


def _sources(name: str, kwargs: dict[str, Any]) -> dict[str, Any] | None:
    """The operands of `name` that are cut into pieces, or None when none is a stream. An
    ndarray operand with rows is cut along with the streams; one that broadcasts (a scalar,
    a single row) stays whole and goes with every piece."""
    names = _OPERANDS[name]
    if not any(_is_stream(kwargs.get(n)) for n in names):
        return None
    sources: dict[str, Any] = {}
    for n in names:
        value = kwargs.get(n)
        if value is None:
            continue
        if _is_arrow(value):
            sources[n] = value
        elif np.ndim(value) >= 1 and np.shape(value)[0] != 1:
            sources[n] = value
    return sources


def _unit(name: str, first: Any) -> int:
    """The rows of one block of `name`'s accumulator (see docs/accumulators.md)."""
    import crossent

    if name.startswith("binary_cross_entropy"):
        return int(crossent.BLOCK)
    width = first.shape[1] if first.ndim == 2 else 1
    return max(1, int(crossent.CHUNK) // max(width, 1))


def _prepend(first: dict[str, Any], rest: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    yield first
    yield from rest


def call_streamed(name: str, kwargs: dict[str, Any]) -> Any:
    """The functions' hook: runs function `name` with `kwargs` (all its arguments, by name)
    piece by piece when one of its per-element operands is an Arrow stream; None when none
    is (the call then goes on as usual)."""
    sources = _sources(name, kwargs)
    if sources is None:
        return None
    import crossent

    operands = _OPERANDS[name]
    fixed = {k: v for k, v in kwargs.items() if k not in operands}
    if fixed.pop("keepdims", False):
        raise ValueError(
            f"'keepdims' must be False for {name} over a chunked Arrow column (combine the "
            "chunks, or add the axis to the result with numpy.expand_dims)"
        )
    if kwargs.get("groups") is not None:
        # Per group (the compiled function has refused reduction="none" and `out`): one
        # update with the streams themselves, which the accumulator folds batch by batch
        # (`batches`) into one copy of its per-group state, rather than one update (one copy
        # of the state) per batch. Nothing is read from the streams before.
        fixed.pop("out", None)
        acc = getattr(crossent, _ACCUMULATOR[name])(**fixed)
        acc.update(**{n: kwargs[n] for n in operands if kwargs.get(n) is not None})
        return acc.result()
    # Operands that broadcast go whole with every piece.
    whole = {n: kwargs[n] for n in operands if n not in sources and kwargs.get(n) is not None}
    grad = name.endswith("_grad")
    if grad and fixed.get("reduction") == "mean":
        raise ValueError(
            f"{name} of an Arrow stream takes reduction='sum' (the divisor of a mean is known "
            "only at the stream's end: divide the sum's gradients by it)"
        )
    if name == "jensen_shannon" and fixed.get("normalize") and fixed.get("axis") is None:
        raise ValueError(
            "jensen_shannon over a chunked Arrow column with axis=None takes normalize=False: "
            "the totals sum(p) and sum(q) enter every logarithm and a stream is read once "
            "(pass normalize=False for normalised distributions, or combine the chunks)"
        )
    pieces = _aligned(sources)
    first = next(pieces)
    pieces = _prepend(first, pieces)
    lead = first[next(iter(first))]
    if name == "jensen_shannon" and fixed.get("normalize") and lead.ndim == 1:
        raise ValueError(
            "jensen_shannon over a chunked Arrow column takes normalize=False: the totals "
            "sum(p) and sum(q) enter every logarithm and a stream is read once (pass "
            "normalize=False for normalised distributions, or combine the chunks)"
        )
    if name in _DIVERGENCES:
        axis = fixed.pop("axis")
        rows = lead.ndim == 2
        if rows and axis not in (None, -1, 1):
            raise ValueError(
                f"'axis' must be -1 or None for {name} over a chunked Arrow column (axis "
                f"{axis} runs across its chunks)"
            )
        elementwise = rows and axis is not None
    else:
        elementwise = grad or fixed.get("reduction") == "none"
    func = getattr(crossent, name)
    if elementwise:
        return _elementwise(func, sources, pieces, {**fixed, **whole})
    if fixed.pop("out", None) is not None:
        raise ValueError("'out' is only used with reduction='none'")
    acc = getattr(crossent, _ACCUMULATOR[name])(**fixed)
    _fold(acc, _unit(name, lead), pieces, whole)
    return acc.result()


def _fold(acc: Any, unit: int, pieces: Iterator[dict[str, Any]], fixed: dict[str, Any]) -> None:
    for start, batch in _blocked(pieces, unit):
        try:
            acc.update(**batch, **fixed)
        except ValueError as e:
            raise relocate(e, start) from None


_INDEX = re.compile(r"at index \((\d+)")


def relocate(error: BaseException, start: int) -> BaseException:
    """`error` of a batch that starts at row `start` of a chunked column, its position (``at
    index (i, ...)`` and a :class:`crossent.DomainError`'s ``index``) made that of the whole
    column."""
    if not isinstance(error, ValueError) or not start:
        return error
    message = str(error)
    match = _INDEX.search(message)
    if match is None:
        return error
    row = int(match.group(1)) + start
    moved = type(error)(message[: match.start(1)] + str(row) + message[match.end(1) :])
    for name in ("argument", "value"):
        if hasattr(error, name):
            setattr(moved, name, getattr(error, name))
    index = getattr(error, "index", None)
    if isinstance(index, tuple) and index:
        moved.index = (index[0] + start, *index[1:])  # type: ignore[attr-defined]
    return moved


# Producers whose len() is known without reading: a pyarrow ChunkedArray or Table, a polars
# Series or DataFrame. Others are not asked (len() of a DuckDB result runs a second query, which
# DuckDB refuses while the stream being read is open).
_SIZED = ("pyarrow", "polars")


def _total_rows(sources: dict[str, Any]) -> int | None:
    for obj in sources.values():
        if not type(obj).__module__.startswith(_SIZED):
            continue
        try:
            return len(obj)
        except TypeError:
            continue
    return None


def _elementwise(
    func: Callable[..., Any],
    sources: dict[str, Any],
    pieces: Iterator[dict[str, Any]],
    fixed: dict[str, Any],
) -> Any:
    """Runs `func` piece by piece, each writing its rows of the outputs (`out`, or arrays
    allocated once when the column's length is known; else the pieces' results are joined)."""
    out = fixed.pop("out", None)
    row = 0
    parts: list[Any] = []
    for piece in pieces:
        n = len(piece[next(iter(piece))])
        try:
            if out is None:
                result = func(**piece, **fixed)
            else:
                func(**piece, **fixed, out=_rows(out, row, n))
        except ValueError as e:
            raise relocate(e, row) from None
        if out is None:
            total = _total_rows(sources)
            if total is None:
                parts.append(result)
                row += n
                continue
            many = isinstance(result, tuple)
            out = tuple(_grown(r, total) for r in result) if many else _grown(result, total)
        row += n
    if parts:
        if isinstance(parts[0], tuple):
            return tuple(np.concatenate([p[i] for p in parts]) for i in range(len(parts[0])))
        return np.concatenate(parts)
    return out


def _grown(first: Any, total: int) -> Any:
    """A result array of `total` rows whose first rows are `first`."""
    out = np.empty((total, *first.shape[1:]), dtype=first.dtype)
    out[: len(first)] = first
    return out


def _rows(out: Any, row: int, n: int) -> Any:
    if isinstance(out, tuple):
        return tuple(o[row : row + n] for o in out)
    return out[row : row + n]


def batches(name: str, operands: tuple[Any, ...]) -> Iterator[tuple[int, tuple[Any, ...]]] | None:
    """The accumulators' hook: the batches to fold, each as its first row and its operands
    (in the order of `name`'s operands, None where absent), when one of `operands` is an
    Arrow stream; None when none is."""
    kwargs = dict(zip(_OPERANDS[name], operands, strict=False))
    sources = _sources(name, kwargs)
    if sources is None:
        return None
    names = _OPERANDS[name][: len(operands)]
    pieces = _aligned(sources)
    first = next(pieces)
    unit = _unit(name, first[next(iter(first))])
    return (
        (start, tuple(batch.get(n, kwargs.get(n)) for n in names))
        for start, batch in _blocked(_prepend(first, pieces), unit)
    )
