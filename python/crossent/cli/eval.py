"""``crossent eval``: a loss, an entropy or a divergence over arrays stored in files.

Operands are ``.npy`` files (memory-mapped), ``.npz`` members (``file.npz:key``; streamed
from the archive), Parquet columns (``file.parquet:column``; read in record batches by
pyarrow) or CSV columns (``file.csv:column``; streamed as float64, the same with or without
pyarrow). Data flow through the streaming accumulators in batches of whole blocks, so the
result has the bits of one call on the whole arrays while memory stays bounded;
``--reduction none`` writes every element's (every row's) loss to an ``.npy``, Parquet or CSV
file (``--output``) batch by batch, under a temporary name renamed into place on success.
``--group-by`` gives the mean or sum of each group of elements (rows), one line per group.
``--loss softmax_ce`` reads logits of shape ``(..., classes)`` and class indices of the
leading shape (or probabilities of the logits' shape), in batches of whole rows.
``entropy``, ``cross_entropy``, ``kl_divergence`` and ``jensen_shannon`` read distributions
``--p`` (and ``--q``) with the classes along the last axis, one value per row.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from crossent.cli import sources
from crossent.cli.errors import CliError
from crossent.cli.groups import GroupSource, Labels, label_json, open_groups
from crossent.cli.names import names
from crossent.cli.output import check_output, losses_output, output_format, write_table
from crossent.cli.progress import Progress
from crossent.cli.sources import Source, open_source, split_spec

DESCRIPTION = __doc__.split("\n\n")[0] if __doc__ else ""


@dataclass(frozen=True)
class Loss:
    function: str
    accumulator: str
    logits: bool
    #: Rows of classes along the last axis (softmax), rather than one loss per element.
    rows: bool = False
    #: The operands' options, in the function's order: ``--input``/``--target`` for a loss,
    #: the distributions ``--p`` (and ``--q``) for an entropy or a divergence.
    operands: tuple[str, ...] = ("input", "target")

    @property
    def divergence(self) -> bool:
        """An entropy or divergence of distributions: rows along the last axis, keywords
        ``base`` and ``normalize``, no ``reduction`` of its own (the command reduces the
        rows' values)."""
        return self.operands[0] == "p"


LOSSES = {
    loss.function: loss
    for loss in (
        Loss("binary_cross_entropy", "BinaryCrossEntropyAccumulator", False),
        Loss("binary_cross_entropy_with_logits", "BinaryCrossEntropyWithLogitsAccumulator", True),
        Loss("softmax_cross_entropy", "SoftmaxCrossEntropyAccumulator", True, rows=True),
        Loss("entropy", "EntropyAccumulator", False, rows=True, operands=("p",)),
        Loss("cross_entropy", "CrossEntropyAccumulator", False, rows=True, operands=("p", "q")),
        Loss("kl_divergence", "KLDivergenceAccumulator", False, rows=True, operands=("p", "q")),
        Loss("jensen_shannon", "JensenShannonAccumulator", False, rows=True, operands=("p", "q")),
    )
}

# Target dtypes crossent reads natively; other real dtypes are converted batch by batch.
_NATIVE_TARGETS = {np.dtype(t) for t in ("f4", "f8", "?", "u1", "i1", "i4", "i8")}


def _shape_str(shape: tuple[int, ...] | None) -> str:
    return "unknown" if shape is None else str(tuple(shape))


def _as_input(a: np.ndarray) -> np.ndarray:
    return a if a.dtype in (np.float32, np.float64) else a.astype(np.float64)


def _as_target(a: np.ndarray, input_dtype: np.dtype[Any]) -> np.ndarray:
    return a if a.dtype in _NATIVE_TARGETS else a.astype(input_dtype)


def _class_indices(y: np.ndarray, target: Source, done: int) -> np.ndarray:
    """Class indices stored as floats (a CSV column, say) as int64; each must be a whole
    number."""
    if y.dtype.kind != "f":
        return y
    whole = np.isfinite(y) & (np.abs(y) < 2.0**62)
    whole[whole] = y[whole] == np.floor(y[whole])
    if not whole.all():
        at = int(np.argmin(whole))
        raise CliError(
            f"--target {target.spec}: class index {float(y[at])!r} at index ({done + at},) is not "
            "a whole number"
        )
    return y.astype(np.int64)


def _batch_elements(row: int) -> int:
    """Elements per batch: whole rows and, where that stays reasonable, whole blocks."""
    import crossent

    aligned = math.lcm(crossent.BLOCK, row)
    if aligned <= 16 * sources.BATCH:
        return aligned * max(1, sources.BATCH // aligned)
    return row * max(1, sources.BATCH // row)


@dataclass(frozen=True)
class Place:
    """Where one argument of a batch's call lies in its operand: the operand's option and
    file (``--input p.npy``), the batch's shape, the flat offset of its first element in the
    operand and the operand's shape (``None``: one-dimensional, of a length not known yet).
    ``batch`` is ``None`` for an argument passed whole (a broadcast weight): its positions
    are the operand's already."""

    label: str
    batch: tuple[int, ...] | None
    offset: int = 0
    shape: tuple[int, ...] | None = None


def _located(e: Exception, places: dict[str, Place]) -> str:
    """The message of an error of one batch's call, for the whole run: a
    :class:`crossent.DomainError` gets the option and file of the operand its ``argument``
    names in front, and its batch-relative ``index`` becomes the position in that operand.
    Other errors keep their message."""
    import crossent

    message = str(e)
    if not isinstance(e, crossent.DomainError):
        return message
    place = places.get(e.argument)
    if place is None:
        return message
    if e.index is not None and place.batch is not None:
        flat = int(np.ravel_multi_index(e.index, place.batch)) + place.offset
        shape = place.shape if place.shape is not None else (flat + 1,)
        full = tuple(int(i) for i in np.unravel_index(flat, shape))
        # The message ends with the position, written as a tuple prints: (3,), (2, 4).
        message = f"{message.removesuffix(f'at index {e.index}')}at index {full}"
    return f"{place.label}: {message}"


def _unchanged(a: np.ndarray, done: int) -> np.ndarray:
    return a


@dataclass(frozen=True)
class Stream:
    """One operand read batch by batch, in step with the others.

    ``names``: the arguments the function's messages call it (the first is its keyword, for
    the operands after input and target); ``shape``: the operand's shape, for positions in
    messages (``None``: one-dimensional, of a length not known yet); ``item``: the shape of
    its elements for one item of the result (``(classes,)`` for a row of logits, ``()`` for one
    element); ``convert(batch, items done)``: the batch as the function takes it."""

    names: tuple[str, ...]
    source: Source
    shape: tuple[int, ...] | None
    item: tuple[int, ...] = ()
    convert: Callable[[np.ndarray, int], np.ndarray] = _unchanged


@dataclass(frozen=True)
class Plan:
    """One run: the loss, the operands streamed in step (input and target first), the
    result's items per batch and its shape (``None``: one-dimensional, of the length read),
    the shape of the rows a batch holds whole (a batch is ``(k, *row)`` items), and the
    keyword arguments passed whole: ``settings`` to the accumulator's constructor and the
    function, ``fixed`` to every call, with the places their errors point to."""

    loss: Loss
    streams: list[Stream]
    items: int
    shape: tuple[int, ...] | None
    unit: str
    dtype: np.dtype[Any]
    row: tuple[int, ...] = ()
    settings: dict[str, Any] = field(default_factory=dict)
    fixed: dict[str, Any] = field(default_factory=dict)
    places: dict[str, Place] = field(default_factory=dict)
    #: The mean or sum is taken by the command over the function's value per item (per row
    #: of a distribution), exactly (:class:`ExactSum`), rather than by an accumulator.
    per_item: bool = False
    #: ``--group-by``: the group labels, streamed as codes (the last of :attr:`streams`).
    groups: GroupSource | None = None


@dataclass(frozen=True)
class Grouped:
    """The result of a run with ``--group-by``: per group, in the sorted order of the labels,
    the mean or sum and the count of items (elements, or rows counted). ``name``: the label
    column's name in an output table (the group column's, or ``group``)."""

    name: str
    labels: Labels
    values: np.ndarray
    counts: np.ndarray


def _loss_dtype(input: Source) -> np.dtype[Any]:
    return _as_input(np.empty(0, input.dtype)).dtype


def elementwise(
    loss: Loss,
    input: Source,
    target: Source,
    weight: Source | None,
    pos_weight: np.ndarray | None,
) -> Plan:
    """One loss per element: input, target and weight of one shape (a weight of another
    shape broadcasts, read whole), in batches of whole blocks and whole rows."""
    if input.shape is not None and target.shape is not None and input.shape != target.shape:
        raise CliError(
            f"--target {target.spec} has shape {_shape_str(target.shape)}, "
            f"--input {input.spec} has {_shape_str(input.shape)}"
        )
    # Unknown (a CSV column): one-dimensional, of the length the stream turns out to have.
    shape = input.shape if input.shape is not None else target.shape
    row_shape = tuple(shape[1:]) if shape else ()
    fixed: dict[str, Any] = {}
    places: dict[str, Place] = {}
    if weight is not None and weight.shape is not None and weight.shape != shape:
        # A weight of another shape is a broadcast operand: small; read it whole. Against
        # operands of unknown length, one of a single element is; any other is streamed.
        if shape is not None or math.prod(weight.shape) == 1:
            fixed_weight = weight.whole()
            lead = fixed_weight.shape[: max(0, fixed_weight.ndim - len(row_shape))]
            if fixed_weight.ndim > len(row_shape) and math.prod(lead) != 1:
                raise CliError(
                    f"--weight {weight.spec} of shape {fixed_weight.shape} cannot be broadcast "
                    f"to the input's shape {_shape_str(shape)} batch by batch (give it the "
                    "input's shape, or a shape that broadcasts along the first axis)"
                )
            fixed["weight"] = fixed_weight
            places["weight"] = Place(f"--weight {weight.spec}", None)
            weight = None
    dtype = _loss_dtype(input)
    streams = [
        Stream(("input",), input, shape, convert=lambda a, _: _as_input(a)),
        Stream(("target",), target, shape, convert=lambda a, _: _as_target(a, dtype)),
    ]
    if weight is not None:
        streams.append(Stream(("weight",), weight, shape))
    row = math.prod(row_shape)
    return Plan(
        loss,
        streams,
        items=_batch_elements(row) if row else sources.BATCH,
        shape=shape,
        unit="elements",
        dtype=dtype,
        row=row_shape,
        settings={"pos_weight": pos_weight} if loss.logits and pos_weight is not None else {},
        fixed=fixed,
        places=places,
    )


def rows(loss: Loss, input: Source, target: Source, class_weight: Source | None) -> Plan:
    """One loss per row of classes (the input's last axis): class indices of the leading
    shape or probabilities of the logits' shape, in batches of whole rows (whole blocks of
    rows where that stays reasonable, so that the result has the bits of one call)."""
    import crossent

    shape = input.shape
    if not shape:
        raise CliError(
            f"--input {input.spec}: --loss {loss.function} needs logits of known shape "
            "(rows, classes), as .npy or .npz"
        )
    classes = shape[-1]
    rows_shape = tuple(shape[:-1])
    soft = target.shape == shape
    if target.shape is not None and not soft and math.prod(target.shape) != math.prod(rows_shape):
        raise CliError(
            f"--target {target.spec} has shape {_shape_str(target.shape)}: class indices of "
            f"shape {_shape_str(rows_shape)} or probabilities of the logits' shape "
            f"{_shape_str(shape)} expected"
        )
    per_block = max(1, crossent.CHUNK // max(classes, 1))
    settings: dict[str, Any] = {}
    places: dict[str, Place] = {}
    if class_weight is not None:
        label = f"--weight {class_weight.spec}"
        settings["weight"] = class_weight.whole()
        if settings["weight"].shape != (classes,):
            raise CliError(
                f"{label}: 'weight' must have shape ({classes},) (one weight per class), "
                f"got {settings['weight'].shape}"
            )
        places["weight"] = Place(label, None)
    labels = (
        Stream(("target",), target, shape, (classes,))
        if soft
        else Stream(
            ("target",),
            target,
            target.shape,
            convert=lambda y, done: _class_indices(y, target, done),
        )
    )
    return Plan(
        loss,
        [Stream(("logits", "input"), input, shape, (classes,), lambda a, _: _as_input(a)), labels],
        items=per_block * max(1, sources.BATCH // (per_block * max(classes, 1))),
        shape=rows_shape,
        unit="rows",
        dtype=_loss_dtype(input),
        settings=settings,
        places=places,
    )


def distributions(
    loss: Loss, p: Source, q: Source | None, settings: dict[str, Any], reduction: str
) -> Plan:
    """An entropy or divergence of the distributions along the last axis of ``p`` (and
    ``q``, of the same shape, or a column of as many values read in that shape).

    Rows of a ``(..., classes)`` operand stream in batches of whole rows; each row's value
    does not depend on the rows beside it, so every batch gives the values of one call on the
    whole arrays, also for a normalised Jensen-Shannon divergence (both row sums inside its
    logarithm). Their mean or sum is taken exactly (:class:`ExactSum`). A one-dimensional
    operand (a column) is one distribution: it streams through the function's accumulator
    in batches of whole ``crossent.CHUNK`` elements, which give the bits of one call."""
    import crossent

    ops = [s for s in (p, q) if s is not None]
    known = [s for s in ops if s.shape is not None]
    shape = max((s.shape for s in known if s.shape is not None), key=len, default=None)
    for s in ops:
        if s.shape is not None and shape is not None and s.shape != shape:
            if len(s.shape) > 1 or math.prod(s.shape) != math.prod(shape):
                first = max(known, key=lambda o: len(o.shape or ()))
                raise CliError(
                    f"--{s.arg} {s.spec} has shape {_shape_str(s.shape)}, --{first.arg} "
                    f"{first.spec} has {_shape_str(shape)}: the distributions must have one "
                    "shape (or be a column of as many values)"
                )
    # Float32 only when every operand is float32; one of each computes in float64.
    dtype = np.result_type(*(_loss_dtype(s) for s in ops))
    convert: Callable[[np.ndarray, int], np.ndarray] = lambda a, _: _as_input(a)  # noqa: E731
    if shape is not None and len(shape) >= 2:
        classes = shape[-1]
        if not classes:
            raise CliError(
                f"--{ops[0].arg} {ops[0].spec} has shape {_shape_str(shape)}: no classes along "
                "its last axis"
            )
        # Positions in messages are each operand's own (a column's are one-dimensional).
        return Plan(
            loss,
            [Stream((s.arg,), s, s.shape, (classes,), convert) for s in ops],
            items=max(1, sources.BATCH // max(classes, 1)),
            shape=tuple(shape[:-1]),
            unit="rows",
            dtype=dtype,
            settings=settings,
            per_item=True,
        )
    # One distribution: a single value, taken by the accumulator.
    if reduction == "none":
        raise CliError(
            f"--p {p.spec} is one distribution (one-dimensional): it has a single value, "
            "printed with --reduction mean or sum; --reduction none writes one value per row "
            "of a (rows, classes) array"
        )
    if loss.function == "jensen_shannon" and settings.get("normalize", True):
        raise CliError(
            f"--p {p.spec} is one distribution (one-dimensional): a normalised "
            "jensen_shannon needs both totals before its first logarithm, so it cannot be "
            "streamed; give --no-normalize for data that sum to 1 already, or (rows, classes) "
            "arrays (.npy/.npz), whose rows are normalised one by one"
        )
    chunk = crossent.CHUNK
    return Plan(
        loss,
        [Stream((s.arg,), s, s.shape, convert=convert) for s in ops],
        items=chunk * max(1, sources.BATCH // chunk),
        shape=None,
        unit="elements",
        dtype=dtype,
        settings=settings,
    )


class ExactSum:
    """The sum of float values seen batch by batch, rounded once: the float nearest the
    exact sum (what :func:`math.fsum` returns on all the values at once), whatever the cut
    into batches. NaN, or infinities of both signs, give NaN; an infinity of one sign gives
    that infinity.

    The running sum is kept exactly, as an integer count of ``2**-1127`` (every finite
    double is a whole number of those): each value is split by :func:`numpy.frexp` into a
    53-bit integer mantissa, cut in two halves of at most 27 bits, and the halves are summed
    per exponent by :func:`numpy.bincount`, whose float64 sums of such whole numbers are
    exact for fewer than ``2**26`` values per call; the few per-exponent sums then join the
    Python integer. The final division of two integers is correctly rounded."""

    #: Values per bincount: their half-mantissas (below 2**27) sum exactly in float64.
    PIECE = 1 << 24
    #: The exponent of the unit: 2**-1074 (the least subnormal) over 2**53 (a mantissa).
    SCALE = 1074 + 53

    def __init__(self) -> None:
        self.total = 0
        self.special: set[float] = set()

    def add(self, values: np.ndarray) -> None:
        v = values.astype(np.float64, copy=False).reshape(-1)
        finite = np.isfinite(v)
        if not finite.all():
            bad = v[~finite]
            if np.isnan(bad).any():
                self.special.add(math.nan)
            self.special.update(float(x) for x in np.unique(bad[~np.isnan(bad)]))
            v = v[finite]
        for at in range(0, v.size, self.PIECE):
            mantissa, exponent = np.frexp(v[at : at + self.PIECE])
            mantissa *= 2.0**53  # whole numbers below 2**53 in magnitude, exactly
            shift = exponent + (self.SCALE - 53)  # >= 0: v = mantissa * 2**(shift - SCALE)
            high = np.floor(mantissa * 2.0**-26)
            low = mantissa - high * 2.0**26  # in [0, 2**26)
            highs = np.bincount(shift, weights=high)
            lows = np.bincount(shift, weights=low)
            for k in np.flatnonzero((highs != 0) | (lows != 0)).tolist():
                self.total += (int(highs[k]) << (k + 26)) + (int(lows[k]) << k)

    def result(self) -> float:
        if self.special:
            if any(math.isnan(x) for x in self.special) or len(self.special) > 1:
                return math.nan
            return next(iter(self.special))
        try:
            return self.total / (1 << self.SCALE)
        except OverflowError:
            return math.inf if self.total > 0 else -math.inf


def evaluate(
    plan: Plan, *, reduction: str, output: str | None, progress: Progress
) -> tuple[float | Grouped | None, int]:
    """Streams the operands through crossent; returns (the value, the per-group results with
    ``--group-by``, or None when the losses went to ``output``; the count of items: elements
    or rows)."""
    import crossent

    fn: Callable[..., Any] = getattr(crossent, plan.loss.function)
    acc: Any = None
    exact = ExactSum() if plan.per_item and reduction != "none" else None
    if reduction != "none" and exact is None:
        own = {} if plan.loss.divergence else {"reduction": reduction}
        try:
            acc = getattr(crossent, plan.loss.accumulator)(**own, **plan.settings)
        except (ValueError, TypeError) as e:
            raise CliError(_located(e, plan.places)) from None
    # The function's keywords for one value per item (per element, per row).
    each = {} if plan.loss.divergence else {"reduction": "none"}
    n = len(plan.loss.operands)
    total = math.prod(plan.shape) if plan.shape is not None else None
    progress.total = float(total) if total else 1.0
    row = math.prod(plan.row)
    input = plan.streams[0].source
    done = 0
    ndim = len(plan.shape) if plan.shape is not None else 1
    with losses_output(output, plan.dtype, ndim) as out:
        per_item = out is not None or exact is not None
        buffer = np.empty(plan.items if per_item else 0, dtype=plan.dtype)
        while True:
            batches = [s.source.take(plan.items * math.prod(s.item)) for s in plan.streams]
            counts = [
                a.size // math.prod(s.item) if math.prod(s.item) else 0
                for s, a in zip(plan.streams, batches, strict=True)
            ]
            if len(set(counts)) > 1:
                most = max(counts)
                raise CliError(
                    "the operands have different lengths: "
                    + ", ".join(
                        f"--{s.source.arg} {s.source.spec} has {'at least ' if n == most else ''}"
                        f"{done + n} {plan.unit}"
                        for s, n in zip(plan.streams, counts, strict=True)
                    )
                )
            k = counts[0]
            if not k:
                break
            if row and k % row:
                raise CliError(f"--input {input.spec}: element count is not a whole number of rows")
            batch_shape = (k // row, *plan.row) if plan.row else (k,)
            args = [
                s.convert(a, done).reshape(*batch_shape, *s.item)
                for s, a in zip(plan.streams, batches, strict=True)
            ]
            places = dict(plan.places)
            for s, a in zip(plan.streams, args, strict=True):
                place = Place(
                    f"--{s.source.arg} {s.source.spec}", a.shape, done * math.prod(s.item), s.shape
                )
                places.update(dict.fromkeys(s.names, place))
            streamed = {s.names[0]: a for s, a in zip(plan.streams[n:], args[n:], strict=True)}
            try:
                if per_item:
                    losses = buffer[:k]
                    fn(
                        *args[:n],
                        **each,
                        out=losses.reshape(batch_shape),
                        **plan.settings,
                        **plan.fixed,
                        **streamed,
                    )
                    if out is not None:
                        out.write(losses)
                    else:
                        assert exact is not None
                        exact.add(losses)
                else:
                    acc.update(*args[:n], **plan.fixed, **streamed)
            except (ValueError, TypeError) as e:
                raise CliError(_located(e, places)) from None
            done += k
            progress.update(done, f"{done:,} {plan.unit}")
        progress.close()
        if out is not None:
            out.finish(plan.shape if plan.shape is not None else (done,))
            return None, done
    if exact is not None:
        total_sum = exact.result()
        return (total_sum / done if done else math.nan) if reduction == "mean" else total_sum, done
    if plan.groups is not None:
        return _grouped(plan.groups, acc, done), done
    return float(acc.result()), done


def _grouped(groups: GroupSource, acc: Any, done: int) -> Grouped:
    """The per-group results of an accumulator fed group codes, in the sorted order of the
    labels (the codes were given in order of first appearance)."""
    order, labels = groups.result()
    if not done:  # nothing read: no group
        empty = np.empty(0)
        return Grouped(
            _label_name(groups), labels, empty.astype(np.float64), empty.astype(np.int64)
        )
    values = np.asarray(acc.result(), dtype=np.float64)
    counts = np.asarray(acc.counts, dtype=np.int64)
    if values.shape != order.shape or counts.shape != order.shape:
        raise CliError(
            f"the accumulator returned {values.size} groups, --group-by {groups.spec} has "
            f"{order.size} labels"
        )
    return Grouped(_label_name(groups), labels, values[order], counts[order])


def _label_name(groups: GroupSource) -> str:
    """The labels' column in the output table: the group column's name, or ``group`` for an
    array or a column named like one of the other two (``loss``, ``count``)."""
    return "group" if groups.name in ("loss", "count") else groups.name


def _pos_weight(text: str | None) -> np.ndarray | None:
    if text is None:
        return None
    if os.path.exists(text) or (":" in text and os.path.exists(text.rsplit(":", 1)[0])):
        source = open_source(text, "pos-weight")
        try:
            return source.whole()
        finally:
            source.close()
    try:
        return np.array([float(v) for v in text.split(",")], dtype=np.float64)
    except ValueError:
        raise CliError(f"--pos-weight {text}: neither a file nor comma-separated numbers") from None


def _json_number(v: float) -> float | str:
    return v if math.isfinite(v) else str(v)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--loss",
        required=True,
        choices=list(names(LOSSES)),
        metavar="LOSS",
        help="bce (binary_cross_entropy on probabilities), bce_logits "
        "(binary_cross_entropy_with_logits), softmax_ce (softmax_cross_entropy over the "
        "input's last axis); over distributions along the last axis of --p (and --q): "
        "entropy, cross_entropy, kl (kl_divergence) or js (jensen_shannon)",
    )
    p.add_argument("--input", metavar="FILE[:KEY]", help="predictions (the losses)")
    p.add_argument("--target", metavar="FILE[:KEY]", help="targets / labels (the losses)")
    p.add_argument(
        "--p",
        metavar="FILE[:KEY]",
        help="entropy and divergences: the distribution p (the function's first argument), "
        "rows along the last axis",
    )
    p.add_argument(
        "--q",
        metavar="FILE[:KEY]",
        help="cross_entropy, kl, js: the distribution q (the second argument), p's shape",
    )
    p.add_argument(
        "--weight",
        metavar="FILE[:KEY]",
        help="per-element weights (the input's shape, or one that broadcasts along axis 0); "
        "for softmax_ce, one weight per class",
    )
    p.add_argument(
        "--pos-weight",
        metavar="W[,W...]|FILE",
        help="bce_logits only: positive-class weight(s), numbers or a file",
    )
    p.add_argument(
        "--base",
        type=float,
        metavar="B",
        help="entropy and divergences: logarithm base (default: natural logarithm)",
    )
    p.add_argument(
        "--normalize",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="entropy and divergences: divide each row by its sum first (default), or "
        "--no-normalize to use the rows as given",
    )
    p.add_argument(
        "--reduction",
        choices=("mean", "sum", "none"),
        default="mean",
        help="mean (default) or sum over elements (over rows for softmax_ce and the "
        "distributions), printed; none writes each one's value to --output",
    )
    p.add_argument(
        "--group-by",
        metavar="COLUMN|FILE[:KEY]",
        help="bce, bce_logits, softmax_ce: the mean or sum of each group, one line per group "
        "(label, value, count), groups in sorted label order; COLUMN is a column of the "
        "operands' Parquet or CSV file, FILE[:KEY] a .npy/.npz array or a Parquet/CSV column "
        "of labels (integers, booleans, strings, dates), one per element (per row for "
        "softmax_ce)",
    )
    p.add_argument(
        "--output",
        metavar="OUT.npy|OUT.parquet|OUT.csv",
        help="with --reduction none: where the losses go (a Parquet or CSV file holds them in "
        "one column, 'loss', in C order); with --group-by: the table of groups (label, loss, "
        "count); the type follows the extension",
    )
    p.add_argument(
        "--json",
        action="store_true",
        help="print a JSON object instead (one per group with --group-by)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar on stderr")
    p.set_defaults(run=main)


_OPERANDS = ("input", "target", "p", "q", "weight", "pos_weight")


def _option(name: str) -> str:
    return f"--{name.replace('_', '-')}"


def _check_options(args: argparse.Namespace, loss: Loss) -> None:
    """Each option the loss takes, and only those."""
    given = [name for name in _OPERANDS if getattr(args, name) is not None]
    takes = set(loss.operands)
    if not loss.divergence:
        takes |= {"weight", "pos_weight"} if loss.logits and not loss.rows else {"weight"}
    for name in given:
        if name not in takes:
            if name == "pos_weight":
                raise CliError("--pos-weight only applies to --loss bce_logits")
            wanted = " and ".join(_option(o) for o in loss.operands)
            raise CliError(
                f"{_option(name)} does not apply to --loss {loss.function}, which takes {wanted}"
            )
    for name in loss.operands:
        if getattr(args, name) is None:
            raise CliError(f"--loss {loss.function} needs {_option(name)} FILE[:KEY]")
    if not loss.divergence:
        for name, v in (("base", args.base), ("normalize", args.normalize)):
            if v is not None:
                raise CliError(
                    f"--{name} only applies to entropy, cross_entropy, kl_divergence and "
                    "jensen_shannon"
                )
    elif args.base is not None and not (
        math.isfinite(args.base) and args.base > 0 and args.base != 1
    ):
        raise CliError(f"--base {args.base!r}: must be a positive finite number other than 1")


#: The losses ``--group-by`` applies to: those with a grouped form in crossent.
GROUPED = ("binary_cross_entropy", "binary_cross_entropy_with_logits", "softmax_cross_entropy")


def _check_groups(args: argparse.Namespace, loss: Loss) -> None:
    if args.group_by is None:
        return
    if loss.function not in GROUPED:
        raise CliError(
            f"--group-by does not apply to --loss {loss.function}: it applies to bce, "
            "bce_logits and softmax_ce (binary_cross_entropy, "
            "binary_cross_entropy_with_logits, softmax_cross_entropy)"
        )
    if args.reduction == "none":
        raise CliError(
            "--group-by gives the mean or sum of each group: it needs --reduction mean or sum"
        )


def _tables(args: argparse.Namespace) -> list[str]:
    """The files of the operands that are Parquet or CSV columns, in option order: a bare
    ``--group-by COLUMN`` is a column of the first."""
    files = [split_spec(spec)[0] for name in _OPERANDS if (spec := getattr(args, name)) is not None]
    return [f for f in files if os.path.splitext(f)[1].lower() in (".parquet", ".pq", ".csv")]


def main(args: argparse.Namespace) -> int:
    loss = LOSSES[names(LOSSES)[args.loss]]
    _check_groups(args, loss)
    if args.reduction == "none" and args.output is None:
        raise CliError("--reduction none needs --output OUT.npy|OUT.parquet|OUT.csv")
    if args.output is not None and args.reduction != "none" and args.group_by is None:
        raise CliError("--output is only used with --reduction none or --group-by")
    _check_options(args, loss)
    if args.output is not None:
        # Before any file is opened: the output must not be one of the operands (by identity,
        # so that a link or another spelling of the path is caught too).
        operands = [
            (_option(name), spec, split_spec(spec)[0])
            for name in _OPERANDS
            if (spec := getattr(args, name)) is not None
        ]
        if args.group_by is not None:
            spec = args.group_by
            operands.append(("--group-by", spec, split_spec(spec)[0]))
        check_output("--output", args.output, operands)
        output_format("--output", args.output)
    with contextlib.ExitStack() as stack:
        return _run(args, loss, stack)


def _settings(args: argparse.Namespace, loss: Loss) -> dict[str, Any]:
    """The keywords of an entropy or divergence given on the command line."""
    if not loss.divergence:
        return {}
    settings: dict[str, Any] = {}
    if args.base is not None:
        settings["base"] = args.base
    # The accumulator of jensen_shannon must be told; the function's default is True.
    settings["normalize"] = True if args.normalize is None else args.normalize
    return settings


def _with_groups(plan: Plan, groups: GroupSource) -> Plan:
    """``plan`` with the group codes streamed in step with its operands (one per element, or
    per row of logits): of its result's shape, or a column of as many labels."""
    g, shape = groups.shape, plan.shape
    if g is not None and shape is not None and g != shape:
        if len(g) > 1 or math.prod(g) != math.prod(shape):
            per = "row" if plan.unit == "rows" else "element"
            raise CliError(
                f"--group-by {groups.spec} has shape {_shape_str(g)}: one label per {per} of "
                f"shape {_shape_str(shape)} expected (or a column of as many)"
            )
    stream = Stream(("groups",), groups, g)
    return dataclasses.replace(plan, streams=[*plan.streams, stream], groups=groups)


def _report_groups(
    args: argparse.Namespace, loss: Loss, result: Grouped, count: int, seconds: float
) -> int:
    """Prints one line (one JSON object) per group, or writes the table to ``--output``."""
    values, counts = result.values.tolist(), result.counts.tolist()
    if args.output is not None:
        write_table(
            "--output",
            args.output,
            result.name,
            result.labels,
            {"loss": result.values, "count": result.counts},
        )
        if args.json:
            record = {
                "loss": loss.function,
                "reduction": args.reduction,
                "groups": len(values),
                "count": count,
                "seconds": round(seconds, 6),
                "output": args.output,
            }
            sys.stdout.write(json.dumps(record, allow_nan=False) + "\n")
        else:
            sys.stdout.write(f"{args.output}\n")
        return 0
    lines = []
    if args.json:
        for label, v, n in zip(result.labels.values, values, counts, strict=True):
            record = {
                "loss": loss.function,
                "reduction": args.reduction,
                "group": label_json(label),
                "count": n,
                "value": _json_number(v),
            }
            lines.append(json.dumps(record, allow_nan=False))
    else:
        for text, v, n in zip(result.labels.text(), values, counts, strict=True):
            lines.append(f"{text}\t{v!r}\t{n}")
    sys.stdout.write("".join(f"{line}\n" for line in lines))
    return 0


def _run(args: argparse.Namespace, loss: Loss, stack: contextlib.ExitStack) -> int:
    def opened(spec: str, arg: str) -> Source:
        source = open_source(spec, arg)
        stack.callback(source.close)
        return source

    start = time.perf_counter()
    progress = Progress(1, label="eval", enabled=not args.quiet, delay=1.0)
    settings = _settings(args, loss)
    if loss.divergence:
        p = opened(args.p, "p")
        q = opened(args.q, "q") if args.q is not None else None
        plan = distributions(loss, p, q, settings, args.reduction)
    else:
        input = opened(args.input, "input")
        target = opened(args.target, "target")
        weight = opened(args.weight, "weight") if args.weight else None
        pos_weight = _pos_weight(args.pos_weight)
        plan = (
            rows(loss, input, target, weight)
            if loss.rows
            else elementwise(loss, input, target, weight, pos_weight)
        )
    if args.group_by is not None:
        groups = open_groups(args.group_by, _tables(args))
        stack.callback(groups.close)
        plan = _with_groups(plan, groups)
    result, count = evaluate(
        plan,
        reduction=args.reduction,
        output=None if args.group_by is not None else args.output,
        progress=progress,
    )
    seconds = time.perf_counter() - start
    if isinstance(result, Grouped):
        return _report_groups(args, loss, result, count, seconds)
    value = result
    if args.json:
        record: dict[str, Any] = {
            "loss": loss.function,
            "reduction": args.reduction,
            "count": count,
            "seconds": round(seconds, 6),
        }
        if loss.divergence:
            record["base"] = args.base
            record["normalize"] = settings["normalize"]
        if value is not None:
            record["value"] = _json_number(value)
        else:
            record["output"] = args.output
        sys.stdout.write(json.dumps(record, allow_nan=False) + "\n")
    elif value is not None:
        sys.stdout.write(f"{value!r}\n")
    else:
        sys.stdout.write(f"{args.output}\n")
    return 0
