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

from collections.abc import Callable
from typing import Any, Literal

import numpy as np

try:
    import dask.array as da
except ImportError as e:  # pragma: no cover - exercised only without dask
    raise ImportError(
        "crossent.dask needs dask's array module: pip install 'crossent[dask]'"
    ) from e

import crossent

__all__ = [
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "cross_entropy",
    "entropy",
    "jensen_shannon",
    "kl_divergence",
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


def _dask(a: Any, name: str) -> da.Array:
    if isinstance(a, da.Array):
        return a
    try:
        return da.asarray(a)
    except Exception as e:
        raise TypeError(f"'{name}' could not be read as an array: {e}") from None


def _operands(input: Any, target: Any, weight: Any) -> tuple[da.Array, da.Array, da.Array | None]:
    """Dask arrays of one shape and chunking; a weight is broadcast (without copying: each
    block is a broadcast view)."""
    x = _dask(input, "input")
    y = _dask(target, "target")
    if x.ndim == 0:
        x, y = x.reshape(1), y.reshape(1)
    if y.shape != x.shape:
        raise ValueError(f"'target' must have the same shape as 'input' {x.shape}, got {y.shape}")
    y = y.rechunk(x.chunks)
    w = None
    if weight is not None:
        w = _broadcast(_dask(weight, "weight"), x, "weight")
    return x, y, w


def _broadcast(w: da.Array, x: da.Array, name: str) -> da.Array:
    """``w`` broadcast to ``x``'s shape and chunks; each block stays a broadcast view."""
    lead = x.ndim - w.ndim
    if lead < 0 or any(n not in (1, m) for n, m in zip(w.shape, x.shape[lead:], strict=True)):
        raise ValueError(f"'{name}' of shape {w.shape} cannot be broadcast to shape {x.shape}")
    w = w.rechunk(tuple(x.chunks[lead + i] if n != 1 else (1,) for i, n in enumerate(w.shape)))
    return da.broadcast_to(w, x.shape, chunks=x.chunks)


def _check(reduction: str, allowed: tuple[str, ...] = ("mean", "sum", "none")) -> None:
    if reduction not in allowed:
        raise ValueError(
            f"'reduction' must be one of {', '.join(map(repr, allowed))}, got {reduction!r}"
        )


def _bce(
    cls: type[Any],
    fn: Callable[..., Any],
    input: Any,
    target: Any,
    weight: Any,
    reduction: str,
    fixed: dict[str, Any],
) -> da.Array:
    _check(reduction)
    x, y, w = _operands(input, target, weight)
    extra = [w] if w is not None else []
    if reduction == "none":

        def per_element(xb: np.ndarray, yb: np.ndarray, *wb: np.ndarray) -> np.ndarray:
            kw = {"weight": wb[0]} if wb else {}
            return np.asarray(fn(xb, yb, reduction="none", **kw, **fixed))

        out = da.map_blocks(per_element, x, y, *extra, dtype=x.dtype)
        return out.reshape(input.shape) if np.ndim(input) == 0 else out

    ndim = x.ndim

    def factory() -> Any:
        return cls(reduction=reduction, **fixed)

    factory()  # invalid parameters raise now, not at compute time

    def state(xb: np.ndarray, yb: np.ndarray, *wb: np.ndarray) -> np.ndarray:
        acc = factory()
        acc.update(xb, yb, **({"weight": wb[0]} if wb else {}))
        return _cell(acc, ndim)

    states = da.map_blocks(
        state,
        x,
        y,
        *extra,
        dtype=object,
        chunks=tuple((1,) * len(c) for c in x.chunks),
        meta=np.empty((0,) * ndim, dtype=object),
    )
    return _accumulated(factory, states)


def binary_cross_entropy(
    input: Any, target: Any, *, weight: Any = None, reduction: str = "mean"
) -> da.Array:
    """:func:`crossent.binary_cross_entropy` on Dask arrays (lazy).

    Each chunk is reduced by a :class:`crossent.BinaryCrossEntropyAccumulator`; the
    accumulators are merged in chunk order. ``reduction="none"`` maps the function over the
    chunks. ``weight`` (a Dask or NumPy array) is broadcast to ``input``'s shape.

    >>> import numpy as np, dask.array as da, crossent.dask
    >>> p = da.from_array(np.linspace(0.05, 0.95, 10), chunks=4)
    >>> y = da.from_array(np.arange(10) % 2, chunks=4)
    >>> lazy = crossent.dask.binary_cross_entropy(p, y, reduction="sum")
    >>> round(float(lazy.compute()), 6)
    7.767509
    """
    return _bce(
        crossent.BinaryCrossEntropyAccumulator,
        crossent.binary_cross_entropy,
        input,
        target,
        weight,
        reduction,
        {},
    )


def binary_cross_entropy_with_logits(
    input: Any,
    target: Any,
    *,
    weight: Any = None,
    pos_weight: Any = None,
    reduction: str = "mean",
) -> da.Array:
    """:func:`crossent.binary_cross_entropy_with_logits` on Dask arrays (lazy).

    As :func:`binary_cross_entropy`; ``pos_weight`` is a small in-memory array (one value
    per class, along the last axis), broadcast within each chunk, so the last axis must not be
    split into chunks when it has more than one value.

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
        if pw.ndim and pw.shape[-1] > 1 and x.ndim and len(x.chunks[-1]) > 1:
            input = x.rechunk({x.ndim - 1: -1})
        fixed["pos_weight"] = pw
    return _bce(
        crossent.BinaryCrossEntropyWithLogitsAccumulator,
        crossent.binary_cross_entropy_with_logits,
        input,
        target,
        weight,
        reduction,
        fixed,
    )


# --------------------------------------------------------------------------------------------
# Softmax cross-entropy: rows along an axis
# --------------------------------------------------------------------------------------------


def _axis(axis: int, ndim: int) -> int:
    if not -ndim <= axis < ndim:
        raise ValueError(f"'axis' {axis} is out of bounds for an array of dimension {ndim}")
    return axis % ndim


def softmax_cross_entropy(
    logits: Any,
    target: Any,
    *,
    axis: int = -1,
    weight: Any = None,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    reduction: str = "mean",
) -> da.Array:
    """:func:`crossent.softmax_cross_entropy` on Dask arrays (lazy).

    The class axis is rechunked whole; each chunk of rows is reduced by a
    :class:`crossent.SoftmaxCrossEntropyAccumulator` (its state: the loss sum and its share of
    PyTorch's mean denominator), and the accumulators are merged in chunk order.

    >>> import numpy as np, dask.array as da, crossent.dask
    >>> logits = da.from_array(np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]]), chunks=(1, 3))
    >>> labels = da.from_array(np.array([0, 2]), chunks=1)
    >>> round(float(crossent.dask.softmax_cross_entropy(logits, labels).compute()), 6)
    0.175456
    """
    _check(reduction)
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
    letters = "abcdefghijklmnopqrstuvwxyz"[: x.ndim]
    rows_ind = letters[:ax] + letters[ax + 1 :]
    soft = t.ndim == x.ndim and np.dtype(t.dtype).kind == "f"
    if soft:
        if t.shape != x.shape:
            raise ValueError(f"'target' must have the shape of 'logits' {x.shape}, got {t.shape}")
        t = t.rechunk(x.chunks)
        t_ind = letters
    else:
        rows_shape = x.shape[:ax] + x.shape[ax + 1 :]
        if t.shape != rows_shape:
            raise ValueError(
                f"'target' must have shape {rows_shape} ('logits' without axis {ax}), got {t.shape}"
            )
        t = t.rechunk(x.chunks[:ax] + x.chunks[ax + 1 :])
        t_ind = rows_ind

    if reduction == "none":

        def per_row(xb: np.ndarray, tb: np.ndarray) -> np.ndarray:
            return np.asarray(crossent.softmax_cross_entropy(xb, tb, reduction="none", **kw))

        return da.blockwise(
            per_row, rows_ind, x, letters, t, t_ind, dtype=x.dtype, concatenate=True
        )

    nrows_dims = len(rows_ind)
    scalar: Literal["mean", "sum"] = "sum" if reduction == "sum" else "mean"

    def factory() -> Any:
        return crossent.SoftmaxCrossEntropyAccumulator(reduction=scalar, **kw)

    factory()  # invalid parameters raise now, not at compute time

    def state(xb: np.ndarray, tb: np.ndarray) -> np.ndarray:
        acc = factory()
        acc.update(xb, tb)
        return _cell(acc, max(nrows_dims, 1))

    if nrows_dims == 0:
        # One row: a single state.
        states = da.blockwise(
            state,
            "z",
            x,
            letters,
            t,
            "",
            new_axes={"z": 1},
            dtype=object,
            concatenate=True,
            meta=np.empty((0,), dtype=object),
        )
    else:
        states = da.blockwise(
            state,
            rows_ind,
            x,
            letters,
            t,
            t_ind,
            dtype=object,
            concatenate=True,
            meta=np.empty((0,) * nrows_dims, dtype=object),
            adjust_chunks={c: 1 for c in rows_ind},
        )

    return _accumulated(factory, states)


# --------------------------------------------------------------------------------------------
# Divergences: one result per distribution, or the whole array as one distribution
# --------------------------------------------------------------------------------------------


def _divergence(
    name: str, p: Any, q: Any, axis: int | None, base: float | None, normalize: bool
) -> da.Array:
    fn = getattr(crossent, name)
    a = _dask(p, "p")
    b = None if q is None else _dask(q, "q")
    if b is not None:
        shape = np.broadcast_shapes(a.shape, b.shape)
        a = da.broadcast_to(a, shape)
        b = da.broadcast_to(b, shape).rechunk(a.chunks)
    ops = [a] if b is None else [a, b]
    if axis is not None:
        ax = _axis(axis, a.ndim)
        ops = [o.rechunk({ax: -1}) for o in ops]

        def per_row(*blocks: np.ndarray) -> np.ndarray:
            return np.asarray(fn(*blocks, axis=ax, base=base, normalize=normalize))

        return da.map_blocks(per_row, *ops, drop_axis=ax, dtype=np.result_type(a.dtype, np.float32))

    # axis=None: the whole array is one distribution, accumulated chunk by chunk. Normalised
    # Jensen-Shannon needs the totals inside every logarithm: a first pass normalises.
    cls = _ACCUMULATORS[name]
    if name == "jensen_shannon" and normalize:
        ops = [o / o.sum(dtype=np.float64) for o in ops]
        normalize = False

    def factory() -> Any:
        return cls(base=base, normalize=normalize)

    factory()  # invalid parameters raise now, not at compute time

    def state(*blocks: np.ndarray) -> np.ndarray:
        acc = factory()
        acc.update(*blocks)
        return _cell(acc, max(blocks[0].ndim, 1))

    return _accumulated(factory, _block_states(state, ops))


_ACCUMULATORS: dict[str, type[Any]] = {
    "entropy": crossent.EntropyAccumulator,
    "cross_entropy": crossent.CrossEntropyAccumulator,
    "kl_divergence": crossent.KLDivergenceAccumulator,
    "jensen_shannon": crossent.JensenShannonAccumulator,
}


def _block_states(f: Callable[..., np.ndarray], ops: list[da.Array]) -> da.Array:
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
    p: Any, *, axis: int | None = -1, base: float | None = None, normalize: bool = True
) -> da.Array:
    """:func:`crossent.entropy` on Dask arrays (lazy): per distribution along ``axis``
    (rechunked whole), or over the whole array with ``axis=None`` (each chunk reduced by a
    :class:`crossent.EntropyAccumulator`, merged in chunk order, normalised at the end).

    >>> import numpy as np, dask.array as da, crossent.dask
    >>> p = da.from_array(np.array([1.0, 2.0, 3.0, 4.0]), chunks=2)
    >>> round(float(crossent.dask.entropy(p, axis=None).compute()), 6)
    1.279854
    """
    return _divergence("entropy", p, None, axis, base, normalize)


def cross_entropy(
    p: Any, q: Any, *, axis: int | None = -1, base: float | None = None, normalize: bool = True
) -> da.Array:
    """:func:`crossent.cross_entropy` on Dask arrays (lazy); see :func:`entropy`.

    >>> import numpy as np, dask.array as da, crossent.dask
    >>> p = da.from_array(np.array([[0.5, 0.5], [0.9, 0.1]]), chunks=1)
    >>> q = da.from_array(np.array([[0.25, 0.75], [0.5, 0.5]]), chunks=1)
    >>> crossent.dask.cross_entropy(p, q).compute().round(6)
    array([0.836988, 0.693147])
    """
    return _divergence("cross_entropy", p, q, axis, base, normalize)


def kl_divergence(
    p: Any, q: Any, *, axis: int | None = -1, base: float | None = None, normalize: bool = True
) -> da.Array:
    """:func:`crossent.kl_divergence` on Dask arrays (lazy); see :func:`entropy`.

    >>> import numpy as np, dask.array as da, crossent.dask
    >>> p = da.from_array(np.array([1.0, 2.0, 3.0, 4.0]), chunks=2)
    >>> q = da.from_array(np.array([4.0, 3.0, 2.0, 1.0]), chunks=2)
    >>> round(float(crossent.dask.kl_divergence(p, q, axis=None).compute()), 6)
    0.456435
    """
    return _divergence("kl_divergence", p, q, axis, base, normalize)


def jensen_shannon(
    p: Any, q: Any, *, axis: int | None = -1, base: float | None = None, normalize: bool = True
) -> da.Array:
    """:func:`crossent.jensen_shannon` on Dask arrays (lazy). With ``axis=None`` and
    normalisation the totals are computed first (two passes over the data).

    >>> import numpy as np, dask.array as da, crossent.dask
    >>> p = da.from_array(np.array([1.0, 2.0, 3.0, 4.0]), chunks=2)
    >>> q = da.from_array(np.array([4.0, 3.0, 2.0, 1.0]), chunks=2)
    >>> round(float(crossent.dask.jensen_shannon(p, q, axis=None).compute()), 6)
    0.10644
    """
    return _divergence("jensen_shannon", p, q, axis, base, normalize)
