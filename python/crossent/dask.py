"""crossent on Dask arrays: the same losses, lazily, on arrays larger than one machine.

Install with ``pip install 'crossent[dask]'``. Every function takes ``dask.array`` inputs (NumPy
arrays and array-likes are wrapped), returns a lazy ``dask.array.Array`` and runs on any
scheduler with ``.compute()``.

- Scalar reductions (``reduction="mean"``/``"sum"``, and ``axis=None`` for the divergences)
  go through ``dask.array.reduction``: each chunk is reduced by crossent's streaming
  accumulator of the loss (:class:`crossent.BinaryCrossEntropyAccumulator`,
  :class:`crossent.SoftmaxCrossEntropyAccumulator`, :class:`crossent.EntropyAccumulator`,
  ...), whose state is the very partial state the in-memory kernels fold their blocks into;
  the accumulators are merged in chunk order (combine), and the last one's ``result()`` is
  the result (aggregate). The result equals the in-memory one to about
  1e-12 relative. For a given chunking it has the same bits on every scheduler (threads,
  processes, distributed) as long as the chunks have the same memory layout — true of chunks
  loaded from storage, which are contiguous; a chunk that is a strided view of a larger
  in-memory array may differ from its contiguous copy in the last bit.
- Per-element and per-row results (``reduction="none"``, divergences along an axis) go
  through ``map_blocks``; for per-row functions the class axis is first rechunked whole.

>>> import numpy as np, dask.array as da, crossent, crossent.dask
>>> p = da.from_array(np.array([0.9, 0.2, 0.6, 0.7]), chunks=2)
>>> y = da.from_array(np.array([1, 0, 1, 1]), chunks=2)
>>> loss = crossent.dask.binary_cross_entropy(p, y)
>>> round(float(loss.compute()), 6)
0.299001
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np

try:
    import dask.array as da
except ImportError as e:  # pragma: no cover - exercised only without dask
    raise ImportError(
        "crossent.dask needs dask's array module: pip install 'crossent[dask]'"
    ) from e

import crossent
from crossent._core import _nan_policy, _reduction

__all__ = [
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "cross_entropy",
    "entropy",
    "jensen_shannon",
    "kl_divergence",
    "log_loss",
    "softmax_cross_entropy",
]


# --------------------------------------------------------------------------------------------
# Partial states through dask.array.reduction
# --------------------------------------------------------------------------------------------


def _cell(state: Any, ndim: int) -> np.ndarray:
    """A ``(1,) * ndim`` object array holding one partial state."""
    out = np.empty((1,) * ndim, dtype=object)
    out[(0,) * ndim] = state
    return out


def _reduce_states(
    states: da.Array, merge: Callable[[Any, Any], Any], finish: Callable[[Any], float]
) -> da.Array:
    """Reduces an object array of per-chunk partial states (one per chunk of the operands)
    to a 0-d float64 array: states are merged in C order of the chunk grid."""

    def fold(a: np.ndarray) -> Any:
        items = list(a.ravel())
        state = items[0]
        for s in items[1:]:
            state = merge(state, s)
        return state

    def chunk(a: np.ndarray, axis: Any = None, keepdims: bool = True, **_: Any) -> np.ndarray:
        return a

    def combine(a: np.ndarray, axis: Any = None, keepdims: bool = True, **_: Any) -> np.ndarray:
        return _cell(fold(a), a.ndim)

    def aggregate(a: np.ndarray, axis: Any = None, keepdims: bool = False, **_: Any) -> Any:
        return np.float64(finish(fold(a)))

    return da.reduction(
        states,
        chunk=chunk,
        combine=combine,
        aggregate=aggregate,
        axis=tuple(range(states.ndim)),
        keepdims=False,
        dtype=np.float64,
        concatenate=True,
        meta=np.empty((), dtype=np.float64),
    )


def _accumulated(factory: Callable[[], Any], states: da.Array) -> da.Array:
    """Reduces an object array of per-chunk accumulators (made by ``factory``) to the result
    over all chunks: they are merged in chunk order into fresh accumulators (the chunks'
    own are left as they are), and the last one gives ``result()``."""

    def merge(a: Any, b: Any) -> Any:
        merged = factory()
        merged.merge(a)
        merged.merge(b)
        return merged

    return _reduce_states(states, merge, lambda acc: float(acc.result()))


def _accumulated_groups(
    factory: Callable[[], Any], states: da.Array, n_groups: int | None
) -> da.Array:
    """As :func:`_accumulated`, for accumulators updated with ``groups=``: a 1-D float64 array
    of one value per group (of unknown length until computed when ``n_groups`` is None)."""

    def merge(a: Any, b: Any) -> Any:
        merged = factory()
        merged.merge(a)
        merged.merge(b)
        return merged

    def fold(a: np.ndarray) -> Any:
        items = list(a.ravel())
        state = items[0]
        for s in items[1:]:
            state = merge(state, s)
        return state

    def chunk(a: np.ndarray, axis: Any = None, keepdims: bool = True, **_: Any) -> np.ndarray:
        return a

    def combine(a: np.ndarray, axis: Any = None, keepdims: bool = True, **_: Any) -> np.ndarray:
        return _cell(fold(a), a.ndim)

    def aggregate(a: np.ndarray, axis: Any = None, keepdims: bool = False, **_: Any) -> Any:
        return _cell(fold(a), 0)

    final = da.reduction(
        states,
        chunk=chunk,
        combine=combine,
        aggregate=aggregate,
        axis=tuple(range(states.ndim)),
        keepdims=False,
        dtype=object,
        concatenate=True,
        meta=np.empty((), dtype=object),
    )

    def result(cell: np.ndarray) -> np.ndarray:
        acc: Any = cell[()]
        return np.asarray(acc.result(), dtype=np.float64)

    length = math.nan if n_groups is None else n_groups
    return da.map_blocks(
        result,
        final,
        new_axis=0,
        chunks=((length,),),
        dtype=np.float64,
        meta=np.empty((0,), dtype=np.float64),
    )


def _groups(
    groups: Any, n_groups: int | None, reduction: str
) -> tuple[da.Array | None, dict[str, Any]]:
    """``groups`` as a Dask array (or None), and the accumulators' ``n_groups`` keyword."""
    if groups is None:
        if n_groups is not None:
            raise ValueError("'n_groups' is only used with 'groups'")
        return None, {}
    if reduction == "none":
        raise ValueError(
            "'groups' cannot be used with reduction='none' (each element's loss is its own; "
            "group them with reduction='mean' or 'sum')"
        )
    return _dask(groups, "groups"), {"n_groups": n_groups}


def _dask(a: Any, name: str) -> da.Array:
    """``a`` as a Dask array (Python scalars and array-likes are wrapped); refuses chunks of
    unknown size, on which shapes cannot be checked nor positions reported."""
    if isinstance(a, da.Array):
        x = a
    else:
        try:
            x = da.asarray(a)
        except Exception as e:
            raise TypeError(f"'{name}' could not be read as an array: {e}") from None
    if any(math.isnan(c) for cs in x.chunks for c in cs):
        raise ValueError(
            f"'{name}' has chunks of unknown size (shape {x.shape}), as after boolean "
            "indexing: call its compute_chunk_sizes() first"
        )
    return x


def _operands(input: Any, target: Any, weight: Any) -> tuple[da.Array, da.Array, da.Array | None]:
    """Dask arrays of one shape and chunking; a weight is broadcast (without copying: each
    block is a broadcast view)."""
    x = _dask(input, "input")
    y = _dask(target, "target")
    if y.shape != x.shape:
        raise ValueError(f"'target' must have the same shape as 'input' {x.shape}, got {y.shape}")
    w = None if weight is None else _dask(weight, "weight")
    if w is not None:
        _check_broadcast(w.shape, x.shape, "weight")
    if x.ndim == 0:
        x, y = x.reshape(1), y.reshape(1)
        w = None if w is None else w.reshape(1)
    y = y.rechunk(x.chunks)
    if w is not None:
        w = _broadcast(w, x)
    return x, y, w


def _check_broadcast(shape: tuple[int, ...], to: tuple[int, ...], name: str) -> None:
    """Refuses a ``shape`` that does not broadcast to ``to`` (NumPy's rule, without adding
    dimensions to ``to``), as the in-memory functions do."""
    lead = len(to) - len(shape)
    if lead < 0 or any(n not in (1, m) for n, m in zip(shape, to[lead:], strict=True)):
        raise ValueError(f"'{name}' of shape {shape} cannot be broadcast to shape {to}")


def _broadcast(w: da.Array, x: da.Array) -> da.Array:
    """``w`` broadcast to ``x``'s shape and chunks; each block stays a broadcast view."""
    lead = x.ndim - w.ndim
    w = w.rechunk(tuple(x.chunks[lead + i] if n != 1 else (1,) for i, n in enumerate(w.shape)))
    return da.broadcast_to(w, x.shape, chunks=x.chunks)


# Positions in errors. The in-memory functions raise `crossent.DomainError` naming the argument
# that holds a bad value and its index within the array they were given: a block. Block
# functions add the block's offset so that the error gives the position in the whole Dask
# array, as the in-memory call would.


def _starts(block_info: dict[Any, Any] | None, k: int) -> tuple[int, ...] | None:
    """The position of the first element of block argument ``k`` in its whole array."""
    if not block_info or k not in block_info:
        return None
    return tuple(int(start) for start, _ in block_info[k]["array-location"])


def _relocated(
    e: ValueError, where: dict[str, tuple[int, ...] | None], shapes: dict[str, Any] | None = None
) -> ValueError:
    """``e``, if a :class:`crossent.DomainError` at a block-relative ``index``, moved by
    ``where[e.argument]`` (the block's offset); ``shapes[e.argument]``, where given, is the
    shape of the user's array that was broadcast to the block (its positions are reported in
    it, 0 along broadcast axes, as the in-memory functions report them). Other errors are
    returned as they are."""
    if not isinstance(e, crossent.DomainError) or e.index is None:
        return e
    offset = where.get(e.argument)
    if offset is None or len(e.index) != len(offset):
        return e
    full = tuple(i + o for i, o in zip(e.index, offset, strict=True))
    own = (shapes or {}).get(e.argument)
    if own is not None:
        lead = len(full) - len(own)
        full = tuple(0 if n == 1 else full[lead + i] for i, n in enumerate(own))
    # The message ends with the position, written as a tuple prints: (3,), (2, 4).
    head = str(e).removesuffix(f"at index {e.index}")
    moved = crossent.DomainError(f"{head}at index {full}")
    moved.argument, moved.index, moved.value = e.argument, full, e.value
    return moved


def _bce(
    cls: type[Any],
    fn: Callable[..., Any],
    input: Any,
    target: Any,
    weight: Any,
    reduction: str,
    fixed: dict[str, Any],
    groups: Any = None,
    n_groups: int | None = None,
    sample_weight: Any = None,
    nan_policy: str = "propagate",
) -> da.Array:
    _reduction(reduction)  # checked as the in-memory functions check it
    nan_policy = _nan_policy(nan_policy)
    g, grouped = _groups(groups, n_groups, reduction)
    if nan_policy != "propagate":
        fixed = {**fixed, "nan_policy": nan_policy}
    scalar = np.ndim(input) == 0 if not isinstance(input, da.Array) else input.ndim == 0
    x, y, w = _operands(input, target, weight)
    # The per-element operands besides input and target, by keyword, in block order.
    extra: dict[str, da.Array] = {} if w is None else {"weight": w}
    if sample_weight is not None:
        sw = _dask(sample_weight, "sample_weight")
        _check_broadcast(sw.shape, x.shape, "sample_weight")
        extra["sample_weight"] = _broadcast(sw, x) if x.ndim else sw.reshape(1)
    if g is not None:
        _check_broadcast(g.shape, x.shape, "groups")
        extra["groups"] = _broadcast(g, x) if x.ndim else g.reshape(1)
    shapes = {
        "input": np.shape(input),
        "target": np.shape(target),
        "weight": np.shape(weight) if w is not None else None,
        "sample_weight": np.shape(sample_weight) if sample_weight is not None else None,
    }
    if "pos_weight" in fixed:
        _check_broadcast(fixed["pos_weight"].shape, x.shape, "pos_weight")

    def call(f: Callable[..., Any], blocks: Sequence[np.ndarray], info: Any) -> Any:
        xb, yb, *rest = blocks
        kw = dict(zip(extra, rest, strict=True))
        try:
            return f(xb, yb, **kw)
        except ValueError as e:
            where = {"input": _starts(info, 0), "target": _starts(info, 1)}
            for k, name in enumerate(extra):
                where[name] = _starts(info, 2 + k)
            raise _relocated(e, where, shapes) from None

    if reduction == "none":

        def per_element(*blocks: np.ndarray, block_info: Any = None) -> np.ndarray:
            def f(xb: np.ndarray, yb: np.ndarray, **kw: Any) -> Any:
                return fn(xb, yb, reduction="none", **kw, **fixed)

            return np.asarray(call(f, blocks, block_info))

        out = da.map_blocks(per_element, x, y, *extra.values(), dtype=x.dtype)
        return out.reshape(()) if scalar else out

    def factory() -> Any:
        return cls(reduction=reduction, **fixed, **grouped)

    factory()  # invalid parameters raise now, not at compute time

    def state(*blocks: np.ndarray, block_info: Any = None) -> np.ndarray:
        acc = factory()
        call(acc.update, blocks, block_info)
        return _cell(acc, max(blocks[0].ndim, 1))

    states = _block_states(state, [x, y, *extra.values()])
    if g is not None:
        return _accumulated_groups(factory, states, n_groups)
    return _accumulated(factory, states)


def binary_cross_entropy(
    input: Any,
    target: Any,
    *,
    weight: Any = None,
    sample_weight: Any = None,
    reduction: str = "mean",
    groups: Any = None,
    n_groups: int | None = None,
    nan_policy: Literal["propagate", "omit", "raise"] = "propagate",
) -> da.Array:
    """:func:`crossent.binary_cross_entropy` on Dask arrays (lazy).

    Each chunk is reduced by a :class:`crossent.BinaryCrossEntropyAccumulator`; the
    accumulators are merged in chunk order. ``reduction="none"`` maps the function over the
    chunks. ``weight`` and ``sample_weight`` (Dask or NumPy arrays) are broadcast to
    ``input``'s shape; with ``sample_weight`` the mean is ``sum(sw * loss) / sum(sw)`` over
    the whole array (not an average of per-chunk means). ``groups`` (integer codes broadcast
    to ``input``'s shape, rechunked like it) gives a 1-D array of one loss per group, of
    length ``n_groups`` (unknown until computed when it is None).

    >>> import numpy as np, dask.array as da, crossent.dask
    >>> p = da.from_array(np.linspace(0.05, 0.95, 10), chunks=4)
    >>> y = da.from_array(np.arange(10) % 2, chunks=4)
    >>> lazy = crossent.dask.binary_cross_entropy(p, y, reduction="sum")
    >>> round(float(lazy.compute()), 6)
    7.767509
    >>> sw = da.from_array(np.arange(10.0), chunks=3)
    >>> mean = crossent.dask.binary_cross_entropy(p, y, sample_weight=sw).compute()
    >>> bool(np.isclose(mean, crossent.binary_cross_entropy(np.asarray(p), np.asarray(y),
    ...                                                      sample_weight=np.asarray(sw))))
    True

    ``nan_policy`` as in :func:`crossent.binary_cross_entropy`: ``"omit"`` leaves each element
    with a NaN operand out of the whole array's sum and count (the mean is that of the
    elements kept, whichever chunks hold the NaN); ``"raise"`` names the position in the
    whole array.
    """
    return _bce(
        crossent.BinaryCrossEntropyAccumulator,
        crossent.binary_cross_entropy,
        input,
        target,
        weight,
        reduction,
        {},
        groups,
        n_groups,
        sample_weight,
        nan_policy,
    )


def binary_cross_entropy_with_logits(
    input: Any,
    target: Any,
    *,
    weight: Any = None,
    pos_weight: Any = None,
    sample_weight: Any = None,
    reduction: str = "mean",
    groups: Any = None,
    n_groups: int | None = None,
    nan_policy: Literal["propagate", "omit", "raise"] = "propagate",
) -> da.Array:
    """:func:`crossent.binary_cross_entropy_with_logits` on Dask arrays (lazy).

    As :func:`binary_cross_entropy`; ``pos_weight`` is a small in-memory array broadcast to
    ``input``'s shape (typically one value per class, along the last axis): the axes along
    which it has more than one value are rechunked whole, so that each chunk holds all of
    them.

    >>> import numpy as np, dask.array as da, crossent.dask
    >>> x = da.from_array(np.array([[2.0, -1.0], [0.5, 3.0]]), chunks=(1, 2))
    >>> y = da.from_array(np.array([[1, 0], [1, 1]], dtype=np.uint8), chunks=(1, 2))
    >>> loss = crossent.dask.binary_cross_entropy_with_logits(x, y, pos_weight=[2.0, 1.0])
    >>> round(float(loss.compute()), 6)
    0.390965
    """
    fixed: dict[str, Any] = {}
    if pos_weight is not None:
        pw = np.asarray(pos_weight, dtype=np.float64)
        x = _dask(input, "input")
        _check_broadcast(pw.shape, x.shape, "pos_weight")
        # Every block is given the whole pos_weight: the axes along which it varies are not
        # split into chunks, so that it broadcasts against each block as against the array.
        lead = x.ndim - pw.ndim
        whole = {lead + i: -1 for i, n in enumerate(pw.shape) if n > 1}
        input = x.rechunk(whole) if whole else x
        fixed["pos_weight"] = pw
    return _bce(
        crossent.BinaryCrossEntropyWithLogitsAccumulator,
        crossent.binary_cross_entropy_with_logits,
        input,
        target,
        weight,
        reduction,
        fixed,
        groups,
        n_groups,
        sample_weight,
        nan_policy,
    )


# --------------------------------------------------------------------------------------------
# Softmax cross-entropy: rows along an axis
# --------------------------------------------------------------------------------------------


def _axis(axis: int, ndim: int) -> int:
    """`axis` checked as the in-memory functions check it: an integer (anything with
    `__index__`, not a bool), within the array's dimensions."""
    if isinstance(axis, (bool, np.bool_)) or not hasattr(axis, "__index__"):
        raise TypeError(f"'axis' must be an integer, got {axis!r} of type {type(axis).__name__}")
    axis = operator.index(axis)
    if not -ndim <= axis < ndim:
        raise ValueError(f"'axis' {axis} is out of bounds for an array of dimension {ndim}")
    return axis % ndim


def softmax_cross_entropy(
    logits: Any,
    target: Any,
    *,
    axis: int = -1,
    weight: Any = None,
    sample_weight: Any = None,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    reduction: str = "mean",
    groups: Any = None,
    n_groups: int | None = None,
    keepdims: bool = False,
    nan_policy: Literal["propagate", "omit", "raise"] = "propagate",
) -> da.Array:
    """:func:`crossent.softmax_cross_entropy` on Dask arrays (lazy).

    The class axis is rechunked whole; each chunk of rows is reduced by a
    :class:`crossent.SoftmaxCrossEntropyAccumulator` (its state: the loss sum and its share of
    the mean's denominator: PyTorch's, or the sum of ``sample_weight``, one weight per row
    broadcast to ``logits``' shape without ``axis``), and the accumulators are merged in chunk
    order. ``groups`` (one integer code per row, of ``logits``' shape without ``axis``) gives
    one loss per group, as :func:`binary_cross_entropy` does.

    >>> import numpy as np, dask.array as da, crossent.dask
    >>> logits = da.from_array(np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]]), chunks=(1, 3))
    >>> labels = da.from_array(np.array([0, 2]), chunks=1)
    >>> round(float(crossent.dask.softmax_cross_entropy(logits, labels).compute()), 6)
    0.175456

    ``keepdims=True`` (with ``reduction="none"`` only) keeps the class axis with length 1:

    >>> crossent.dask.softmax_cross_entropy(logits, labels, reduction="none", keepdims=True).shape
    (2, 1)

    ``nan_policy`` as in :func:`crossent.softmax_cross_entropy`: with ``"omit"`` a row
    holding a NaN is left out of the sum and of the mean's denominator, as an ignored row.
    """
    _reduction(reduction)  # checked as the in-memory functions check it
    nan_policy = _nan_policy(nan_policy)
    if _keepdims(keepdims) and (reduction != "none" or groups is not None):
        raise ValueError(
            "'keepdims' is only used with reduction='none' and no 'groups' (a mean or sum is "
            "a Python float, with no axis to keep)"
        )
    g, grouped = _groups(groups, n_groups, reduction)
    x = _dask(logits, "logits")
    if x.ndim == 0:
        raise ValueError("'logits' must have at least one dimension (the classes)")
    ax = _axis(axis, x.ndim)
    x = x.rechunk({ax: -1})
    t = _dask(target, "target")
    w = None if weight is None else np.asarray(weight)
    kw: dict[str, Any] = {
        "axis": ax,
        "weight": w,
        "ignore_index": ignore_index,
        "label_smoothing": label_smoothing,
    }
    if nan_policy != "propagate":
        kw["nan_policy"] = nan_policy
    soft = np.dtype(t.dtype).kind == "f"
    rows_shape = x.shape[:ax] + x.shape[ax + 1 :]
    if soft:
        if t.shape != x.shape:
            raise ValueError(
                f"'target' of class probabilities must have the shape of 'logits' {x.shape}, "
                f"got {t.shape}"
            )
        t = t.rechunk(x.chunks)
    else:
        if t.shape != rows_shape:
            raise ValueError(
                f"'target' must have shape {rows_shape} ('logits' without axis {ax}), got {t.shape}"
            )
        # Class indices get an axis of length 1 in place of the classes, so that their blocks
        # line up with the logits' blocks in map_blocks.
        t = da.expand_dims(t, ax).rechunk((*x.chunks[:ax], (1,), *x.chunks[ax + 1 :]))
    # Per-row operands besides the target, by keyword: an axis of length 1 in place of the
    # classes, so that their blocks line up with the logits' blocks.
    per_row_ops: dict[str, da.Array] = {}
    if sample_weight is not None:
        sw = _dask(sample_weight, "sample_weight")
        _check_broadcast(sw.shape, rows_shape, "sample_weight")
        sw = da.broadcast_to(sw, rows_shape)
        if x.ndim == 1:
            per_row_ops["sample_weight"] = sw.reshape(1)
        else:
            per_row_ops["sample_weight"] = da.expand_dims(sw, ax).rechunk(
                (*x.chunks[:ax], (1,), *x.chunks[ax + 1 :])
            )
    if g is not None:
        if g.shape != rows_shape:
            raise ValueError(
                f"'groups' must have shape {rows_shape} ('logits' without axis {ax}: one code "
                f"per row), got {g.shape}"
            )
        per_row_ops["groups"] = da.expand_dims(g, ax).rechunk(
            (*x.chunks[:ax], (1,), *x.chunks[ax + 1 :])
        )
    ops = [x, t, *per_row_ops.values()]
    sw_shape = None if sample_weight is None else np.shape(sample_weight)

    def call(f: Callable[..., Any], xb: np.ndarray, tb: np.ndarray, info: Any, *rb: Any) -> Any:
        if not soft:
            tb = tb.reshape(tb.shape[:ax] + tb.shape[ax + 1 :])
        kw = {
            name: b.reshape(()) if x.ndim == 1 else b.reshape(b.shape[:ax] + b.shape[ax + 1 :])
            for name, b in zip(per_row_ops, rb, strict=True)
        }
        try:
            return f(xb, tb, **kw)
        except ValueError as e:
            xs, ts = _starts(info, 0), _starts(info, 1)
            rows = None if xs is None else xs[:ax] + xs[ax + 1 :]
            if ts is not None and not soft:
                ts = ts[:ax] + ts[ax + 1 :]
            where = {"logits": xs, "target": ts, "groups": rows, "sample_weight": rows}
            raise _relocated(e, where, {"sample_weight": sw_shape}) from None

    if reduction == "none":
        dtype = _result_dtype([x.dtype])

        def per_row(
            xb: np.ndarray, tb: np.ndarray, *rb: np.ndarray, block_info: Any = None
        ) -> np.ndarray:
            def f(a: np.ndarray, b: np.ndarray, **more: Any) -> Any:
                return crossent.softmax_cross_entropy(a, b, reduction="none", **kw, **more)

            out = np.asarray(call(f, xb, tb, block_info, *rb))
            return out.reshape(1) if x.ndim == 1 else out

        if x.ndim == 1:
            # One row: one block, one loss; kept 1-D through map_blocks, then made 0-d.
            rows = da.map_blocks(per_row, *ops, dtype=dtype, chunks=((1,),)).reshape(())
        else:
            rows = da.map_blocks(per_row, *ops, drop_axis=ax, dtype=dtype)
        # The class axis given back with length 1: a view of each block, no copy.
        return da.expand_dims(rows, ax) if keepdims else rows

    scalar: Literal["mean", "sum"] = "sum" if reduction == "sum" else "mean"

    def factory() -> Any:
        return crossent.SoftmaxCrossEntropyAccumulator(reduction=scalar, **kw, **grouped)

    factory()  # invalid parameters raise now, not at compute time

    def state(xb: np.ndarray, tb: np.ndarray, *rb: Any, block_info: Any = None) -> np.ndarray:
        acc = factory()
        call(acc.update, xb, tb, block_info, *rb)
        return _cell(acc, max(xb.ndim, 1))

    states = _block_states(state, ops)
    if g is not None:
        return _accumulated_groups(factory, states, n_groups)
    return _accumulated(factory, states)


def log_loss(
    y_true: Any,
    y_pred: Any,
    *,
    labels: Any,
    normalize: bool = True,
    sample_weight: Any = None,
    groups: Any = None,
    n_groups: int | None = None,
) -> da.Array:
    """:func:`crossent.log_loss` on Dask arrays (lazy), with the classes given.

    Each chunk of rows is reduced by a :class:`crossent.LogLossAccumulator` (its state: the
    weighted loss sum, the weight sum and the count), and the accumulators are merged in chunk
    order: the result is the log loss of all rows, whatever the chunk sizes (averaging each
    chunk's mean, as ``dask_ml.metrics.log_loss`` does, is biased when chunks differ in size).
    ``labels`` is required (a chunk may lack a class; inferring the classes would need a pass
    over ``y_true`` first). The class axis of ``y_pred`` is rechunked whole; ``y_true``,
    ``sample_weight`` and ``groups`` (one integer code per row: one loss per group, as
    :func:`binary_cross_entropy` gives) follow ``y_pred``'s row chunks.

    >>> import numpy as np, dask.array as da, crossent.dask
    >>> p = da.from_array(np.array([[0.7, 0.3], [0.2, 0.8], [0.6, 0.4]]), chunks=(2, 2))
    >>> y = da.from_array(np.array([0, 1, 1]), chunks=2)
    >>> round(float(crossent.dask.log_loss(y, p, labels=[0, 1]).compute()), 6)
    0.498703
    """
    g, grouped = _groups(groups, n_groups, "mean")
    x = _dask(y_pred, "y_pred")
    if x.ndim not in (1, 2):
        raise ValueError(
            "'y_pred' must be 1-D (the positive class's probability) or 2-D "
            f"(n_samples, n_classes), got shape {x.shape}"
        )
    if x.ndim == 2:
        x = x.rechunk({1: -1})
    rows = x.chunks[0]
    ops = [x]
    t = _dask(y_true, "y_true")
    if t.ndim != 1 or t.shape[0] != x.shape[0]:
        raise ValueError(
            f"'y_true' must hold one label per row of 'y_pred' (shape ({x.shape[0]},)), "
            f"got shape {t.shape}"
        )
    ops.append(t.rechunk((rows,)))
    if sample_weight is not None:
        w = _dask(sample_weight, "sample_weight")
        if w.ndim != 1 or w.shape[0] != x.shape[0]:
            raise ValueError(
                f"'sample_weight' must have shape ({x.shape[0]},) (one weight per row of "
                f"'y_pred'), got {w.shape}"
            )
        ops.append(w.rechunk((rows,)))
    if g is not None:
        if g.ndim != 1 or g.shape[0] != x.shape[0]:
            raise ValueError(
                f"'groups' must hold one code per row of 'y_pred' (shape ({x.shape[0]},)), "
                f"got shape {g.shape}"
            )
        ops.append(g.rechunk((rows,)))
    if x.ndim == 2:
        # Per-row operands get an axis of length 1, so that their blocks line up with the
        # predictions' blocks in map_blocks.
        ops[1:] = [da.expand_dims(o, 1).rechunk((rows, (1,))) for o in ops[1:]]
    fixed = crossent.LogLossAccumulator(labels=labels, normalize=normalize)
    classes = fixed.labels

    def factory() -> Any:
        return crossent.LogLossAccumulator(labels=classes, normalize=normalize, **grouped)

    def state(xb: np.ndarray, tb: np.ndarray, *rest: Any, block_info: Any = None) -> np.ndarray:
        acc = factory()
        rest_list = list(rest)
        gb = rest_list.pop() if g is not None else None
        wb = rest_list[0] if rest_list else None
        if x.ndim == 2:
            tb = tb[:, 0]
            wb = None if wb is None else wb[:, 0]
            gb = None if gb is None else gb[:, 0]
        try:
            if gb is None:
                acc.update(tb, xb, wb)
            else:
                acc.update(tb, xb, wb, groups=gb)
        except ValueError as e:
            starts = [_starts(block_info, k) for k in range(len(ops))]
            row = None if starts[0] is None else starts[0][:1]
            where = {"y_pred": starts[0], "y_true": row, "sample_weight": row, "groups": row}
            raise _relocated(e, where) from None
        return _cell(acc, xb.ndim)

    states = _block_states(state, ops)
    if g is not None:
        return _accumulated_groups(factory, states, n_groups)
    return _accumulated(factory, states)


# --------------------------------------------------------------------------------------------
# Divergences: one result per distribution, or the whole array as one distribution
# --------------------------------------------------------------------------------------------


def _keepdims(keepdims: Any) -> bool:
    """`keepdims` checked as the in-memory functions check it: True or False (a NumPy bool
    too), now rather than at compute time."""
    if not isinstance(keepdims, (bool, np.bool_)):
        raise TypeError(
            f"'keepdims' must be True or False, got {keepdims!r} of type {type(keepdims).__name__}"
        )
    return bool(keepdims)


def _result_dtype(dtypes: list[np.dtype[Any]]) -> np.dtype[Any]:
    """The dtype of per-row results (the divergences, softmax cross-entropy), as the extension
    computes them from its float operands: theirs when they share one 16-bit float dtype
    (float16, bfloat16); else float64 when one is float64, bool or integer (computed in
    float64), float32 otherwise."""
    if len(set(dtypes)) == 1 and dtypes[0].itemsize == 2 and dtypes[0].kind in "fV":
        return dtypes[0]
    wide = any(d.kind in "biu" or (d.kind == "f" and d.itemsize == 8) for d in dtypes)
    return np.dtype(np.float64 if wide else np.float32)


def _divergence(
    name: str,
    p: Any,
    q: Any,
    axis: int | None,
    base: float | None,
    normalize: bool,
    keepdims: bool = False,
    nan_policy: str = "propagate",
) -> da.Array:
    fn = getattr(crossent, name)
    keepdims = _keepdims(keepdims)
    nan_policy = _nan_policy(nan_policy)  # checked as the in-memory functions check it
    a = _dask(p, "p")
    b = None if q is None else _dask(q, "q")
    if b is not None:
        try:
            shape = np.broadcast_shapes(a.shape, b.shape)
        except ValueError:
            raise ValueError(
                f"'p' of shape {a.shape} and 'q' of shape {b.shape} cannot be broadcast together"
            ) from None
        a = da.broadcast_to(a, shape)
        b = da.broadcast_to(b, shape).rechunk(a.chunks)
    ops = [a] if b is None else [a, b]
    names = ["p", "q"][: len(ops)]
    own = {"p": np.shape(p), "q": np.shape(q) if q is not None else None}

    def located(e: ValueError, info: Any) -> ValueError:
        return _relocated(e, {n: _starts(info, k) for k, n in enumerate(names)}, own)

    if axis is not None:
        ax = _axis(axis, a.ndim)
        ops = [o.rechunk({ax: -1}) for o in ops]

        def per_row(*blocks: np.ndarray, block_info: Any = None) -> np.ndarray:
            try:
                return np.asarray(
                    fn(
                        *blocks,
                        axis=ax,
                        base=base,
                        normalize=normalize,
                        keepdims=keepdims,
                        nan_policy=nan_policy,
                    )
                )
            except ValueError as e:
                raise located(e, block_info) from None

        dtype = _result_dtype([o.dtype for o in ops])
        if keepdims:
            # The axis stays, one chunk of length 1 (it was rechunked whole).
            chunks = tuple((1,) if d == ax else c for d, c in enumerate(ops[0].chunks))
            return da.map_blocks(per_row, *ops, chunks=chunks, dtype=dtype)
        return da.map_blocks(per_row, *ops, drop_axis=ax, dtype=dtype)

    # axis=None: the whole array is one distribution, accumulated chunk by chunk. Normalised
    # Jensen-Shannon needs the totals inside every logarithm: a first pass normalises (and an
    # error is reported with the user's value, found again in the block as given).
    cls = _ACCUMULATORS[name]
    raw: list[da.Array] = []
    if name == "jensen_shannon" and normalize:
        raw = ops
        if nan_policy == "omit":
            # The pairs holding a NaN are left out of both totals (and, NaN in both, of the
            # accumulated terms).
            pair_nan = da.isnan(ops[0]) | da.isnan(ops[1])
            ops = [da.where(pair_nan, np.nan, o) for o in ops]
        # Under "omit" and "raise" the totals skip NaN, so that a NaN stays where it is (and
        # "raise" names its own position) rather than making every normalised value NaN.
        total = da.sum if nan_policy == "propagate" else da.nansum
        ops = [o / total(o, dtype=np.float64) for o in ops]
        normalize = False

    def factory() -> Any:
        return cls(base=base, normalize=normalize, nan_policy=nan_policy)

    factory()  # invalid parameters raise now, not at compute time

    def state(*blocks: np.ndarray, block_info: Any = None) -> np.ndarray:
        acc = factory()
        given = blocks[len(ops) :]
        try:
            if any(np.any(b < 0) for b in given):
                # Values that are all negative have a negative total, which would make the
                # normalised ones positive: the user's own values are checked.
                factory().update(*given)
            acc.update(*blocks[: len(ops)])
        except ValueError as e:
            error = e
            if given:
                try:
                    factory().update(*given)
                except ValueError as user:
                    error = user
            raise located(error, block_info) from None
        return _cell(acc, max(blocks[0].ndim, 1))

    total = _accumulated(factory, _block_states(state, ops + raw))
    # A 0-d result given every dimension back with length 1: a reshape, no copy.
    return total.reshape((1,) * a.ndim) if keepdims else total


_ACCUMULATORS: dict[str, type[Any]] = {
    "entropy": crossent.EntropyAccumulator,
    "cross_entropy": crossent.CrossEntropyAccumulator,
    "kl_divergence": crossent.KLDivergenceAccumulator,
    "jensen_shannon": crossent.JensenShannonAccumulator,
}


def _block_states(f: Callable[..., np.ndarray], ops: list[da.Array]) -> da.Array:
    """An object array with one cell per block of ``ops[0]``: ``f`` applied to the blocks of
    ``ops`` (a 0-d operand is read as one element), returning that block's accumulator."""
    ndim = ops[0].ndim
    if ndim == 0:
        ops = [o.reshape(1) for o in ops]
        ndim = 1
    return da.map_blocks(
        f,
        *ops,
        dtype=object,
        chunks=tuple((1,) * len(c) for c in ops[0].chunks),
        meta=np.empty((0,) * ndim, dtype=object),
    )


def entropy(
    p: Any,
    *,
    axis: int | None = -1,
    base: float | None = None,
    normalize: bool = True,
    keepdims: bool = False,
    nan_policy: Literal["propagate", "omit", "raise"] = "propagate",
) -> da.Array:
    """:func:`crossent.entropy` on Dask arrays (lazy): per distribution along ``axis``
    (rechunked whole), or over the whole array with ``axis=None`` (each chunk reduced by a
    :class:`crossent.EntropyAccumulator`, merged in chunk order, normalised at the end).

    >>> import numpy as np, dask.array as da, crossent.dask
    >>> p = da.from_array(np.array([1.0, 2.0, 3.0, 4.0]), chunks=2)
    >>> round(float(crossent.dask.entropy(p, axis=None).compute()), 6)
    1.279854

    ``keepdims=True`` keeps the reduced axis (every axis with ``axis=None``) with length 1:

    >>> crossent.dask.entropy(p.reshape(2, 2), axis=0, keepdims=True).shape
    (1, 2)

    ``nan_policy`` as in :func:`crossent.entropy`: ``"omit"`` leaves each NaN out of its
    distribution, across chunks too:

    >>> p = da.from_array(np.array([1.0, np.nan, 3.0, 4.0]), chunks=2)
    >>> round(float(crossent.dask.entropy(p, axis=None, nan_policy="omit").compute()), 6)
    0.974315
    """
    return _divergence("entropy", p, None, axis, base, normalize, keepdims, nan_policy)


def cross_entropy(
    p: Any,
    q: Any,
    *,
    axis: int | None = -1,
    base: float | None = None,
    normalize: bool = True,
    keepdims: bool = False,
    nan_policy: Literal["propagate", "omit", "raise"] = "propagate",
) -> da.Array:
    """:func:`crossent.cross_entropy` on Dask arrays (lazy); see :func:`entropy`.

    >>> import numpy as np, dask.array as da, crossent.dask
    >>> p = da.from_array(np.array([[0.5, 0.5], [0.9, 0.1]]), chunks=1)
    >>> q = da.from_array(np.array([[0.25, 0.75], [0.5, 0.5]]), chunks=1)
    >>> crossent.dask.cross_entropy(p, q).compute().round(6)
    array([0.836988, 0.693147])
    """
    return _divergence("cross_entropy", p, q, axis, base, normalize, keepdims, nan_policy)


def kl_divergence(
    p: Any,
    q: Any,
    *,
    axis: int | None = -1,
    base: float | None = None,
    normalize: bool = True,
    keepdims: bool = False,
    nan_policy: Literal["propagate", "omit", "raise"] = "propagate",
) -> da.Array:
    """:func:`crossent.kl_divergence` on Dask arrays (lazy); see :func:`entropy`.

    >>> import numpy as np, dask.array as da, crossent.dask
    >>> p = da.from_array(np.array([1.0, 2.0, 3.0, 4.0]), chunks=2)
    >>> q = da.from_array(np.array([4.0, 3.0, 2.0, 1.0]), chunks=2)
    >>> round(float(crossent.dask.kl_divergence(p, q, axis=None).compute()), 6)
    0.456435
    """
    return _divergence("kl_divergence", p, q, axis, base, normalize, keepdims, nan_policy)


def jensen_shannon(
    p: Any,
    q: Any,
    *,
    axis: int | None = -1,
    base: float | None = None,
    normalize: bool = True,
    keepdims: bool = False,
    nan_policy: Literal["propagate", "omit", "raise"] = "propagate",
) -> da.Array:
    """:func:`crossent.jensen_shannon` on Dask arrays (lazy). With ``axis=None`` and
    normalisation the totals are computed first (two passes over the data).

    >>> import numpy as np, dask.array as da, crossent.dask
    >>> p = da.from_array(np.array([1.0, 2.0, 3.0, 4.0]), chunks=2)
    >>> q = da.from_array(np.array([4.0, 3.0, 2.0, 1.0]), chunks=2)
    >>> round(float(crossent.dask.jensen_shannon(p, q, axis=None).compute()), 6)
    0.10644
    """
    return _divergence("jensen_shannon", p, q, axis, base, normalize, keepdims, nan_policy)
