"""``crossent eval``: a loss over arrays stored in files.

Operands are ``.npy`` files (memory-mapped), ``.npz`` members (``file.npz:key``; streamed
from the archive), Parquet columns (``file.parquet:column``; read in record batches by
pyarrow) or CSV columns (``file.csv:column``; streamed as float64, the same with or without
pyarrow). Data flow through the streaming accumulators in batches of whole blocks, so the
result has the bits of one call on the whole arrays while memory stays bounded;
``--reduction none`` writes every element's (every row's) loss to an ``.npy`` file
(``--output``) batch by batch, under a temporary name renamed into place on success.
``--loss softmax_ce`` reads logits of shape ``(..., classes)`` and class indices of the
leading shape (or probabilities of the logits' shape), in batches of whole rows.
"""

from __future__ import annotations

import argparse
import contextlib
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
from crossent.cli.names import names
from crossent.cli.output import check_output, npy_output
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


LOSSES = {
    loss.function: loss
    for loss in (
        Loss("binary_cross_entropy", "BinaryCrossEntropyAccumulator", False),
        Loss("binary_cross_entropy_with_logits", "BinaryCrossEntropyWithLogitsAccumulator", True),
        Loss("softmax_cross_entropy", "SoftmaxCrossEntropyAccumulator", True, rows=True),
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


def evaluate(
    plan: Plan, *, reduction: str, output: str | None, progress: Progress
) -> tuple[float | None, int]:
    """Streams the operands through crossent; returns (value or None, count of items: elements
    or rows)."""
    import crossent

    fn: Callable[..., Any] = getattr(crossent, plan.loss.function)
    acc: Any = None
    if reduction != "none":
        try:
            acc = getattr(crossent, plan.loss.accumulator)(reduction=reduction, **plan.settings)
        except (ValueError, TypeError) as e:
            raise CliError(_located(e, plan.places)) from None
    total = math.prod(plan.shape) if plan.shape is not None else None
    progress.total = float(total) if total else 1.0
    row = math.prod(plan.row)
    input = plan.streams[0].source
    done = 0
    with npy_output(output, plan.dtype, len(plan.shape) if plan.shape is not None else 1) as out:
        buffer = np.empty(plan.items if out is not None else 0, dtype=plan.dtype)
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
            streamed = {s.names[0]: a for s, a in zip(plan.streams[2:], args[2:], strict=True)}
            try:
                if out is not None:
                    losses = buffer[:k]
                    fn(
                        *args[:2],
                        reduction="none",
                        out=losses.reshape(batch_shape),
                        **plan.settings,
                        **plan.fixed,
                        **streamed,
                    )
                    out.write(losses)
                else:
                    acc.update(*args[:2], **plan.fixed, **streamed)
            except (ValueError, TypeError) as e:
                raise CliError(_located(e, places)) from None
            done += k
            progress.update(done, f"{done:,} {plan.unit}")
        progress.close()
        if out is not None:
            out.finish(plan.shape if plan.shape is not None else (done,))
            return None, done
    return float(acc.result()), done


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
        "(binary_cross_entropy_with_logits) or softmax_ce (softmax_cross_entropy over the "
        "input's last axis)",
    )
    p.add_argument("--input", required=True, metavar="FILE[:KEY]", help="predictions")
    p.add_argument("--target", required=True, metavar="FILE[:KEY]", help="targets / labels")
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
    p.add_argument("--reduction", choices=("mean", "sum", "none"), default="mean")
    p.add_argument("--output", metavar="OUT.npy", help="with --reduction none: where the losses go")
    p.add_argument("--json", action="store_true", help="print a JSON object instead")
    p.add_argument("--quiet", action="store_true", help="no progress bar on stderr")
    p.set_defaults(run=main)


def main(args: argparse.Namespace) -> int:
    loss = LOSSES[names(LOSSES)[args.loss]]
    if args.reduction == "none" and args.output is None:
        raise CliError("--reduction none needs --output OUT.npy")
    if args.output is not None and args.reduction != "none":
        raise CliError("--output is only used with --reduction none")
    if args.pos_weight is not None and not loss.logits:
        raise CliError("--pos-weight only applies to --loss bce_logits")
    if args.output is not None:
        # Before any file is opened: the output must not be one of the operands (by identity,
        # so that a link or another spelling of the path is caught too).
        operands = [
            (f"--{name.replace('_', '-')}", spec, split_spec(spec)[0])
            for name in ("input", "target", "weight", "pos_weight")
            if (spec := getattr(args, name)) is not None
        ]
        check_output("--output", args.output, operands)
    with contextlib.ExitStack() as stack:
        return _run(args, loss, stack)


def _run(args: argparse.Namespace, loss: Loss, stack: contextlib.ExitStack) -> int:
    def opened(spec: str, arg: str) -> Source:
        source = open_source(spec, arg)
        stack.callback(source.close)
        return source

    start = time.perf_counter()
    input = opened(args.input, "input")
    target = opened(args.target, "target")
    weight = opened(args.weight, "weight") if args.weight else None
    pos_weight = _pos_weight(args.pos_weight)
    progress = Progress(1, label="eval", enabled=not args.quiet, delay=1.0)
    plan = (
        rows(loss, input, target, weight)
        if loss.rows
        else elementwise(loss, input, target, weight, pos_weight)
    )
    value, count = evaluate(plan, reduction=args.reduction, output=args.output, progress=progress)
    seconds = time.perf_counter() - start
    if args.json:
        record: dict[str, Any] = {
            "loss": loss.function,
            "reduction": args.reduction,
            "count": count,
            "seconds": round(seconds, 6),
        }
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
