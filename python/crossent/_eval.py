"""``crossent eval``: a loss over arrays stored in files.

Operands are ``.npy`` files (memory-mapped), ``.npz`` members (``file.npz:key``; streamed
from the archive), or Parquet / CSV columns (``file.parquet:column``, ``file.csv:column``; read
in record batches through pyarrow when it is installed). Data flow through the streaming
accumulators in batches of whole blocks, so the result has the bits of one call on the whole
arrays while memory stays bounded; ``--reduction none`` writes every element's (every
row's) loss to an ``.npy`` file (``--output``) batch by batch. ``--loss softmax_ce`` reads
logits of shape ``(..., classes)`` and class indices of the leading shape (or probabilities of
the logits' shape), in batches of whole rows.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from crossent._cli import CliError, Progress

DESCRIPTION = __doc__.split("\n\n")[0] if __doc__ else ""

#: Elements per batch (rounded to whole blocks and whole rows).
BATCH = 1 << 22


@dataclass(frozen=True)
class Loss:
    function: str
    accumulator: str
    logits: bool
    #: Rows of classes along the last axis (softmax), rather than one loss per element.
    rows: bool = False


LOSSES = {
    "bce": Loss("binary_cross_entropy", "BinaryCrossEntropyAccumulator", False),
    "bce_logits": Loss(
        "binary_cross_entropy_with_logits", "BinaryCrossEntropyWithLogitsAccumulator", True
    ),
    "softmax_ce": Loss("softmax_cross_entropy", "SoftmaxCrossEntropyAccumulator", True, rows=True),
}
ALIASES = {
    "binary_cross_entropy": "bce",
    "bce_with_logits": "bce_logits",
    "binary_cross_entropy_with_logits": "bce_logits",
    "softmax_cross_entropy": "softmax_ce",
}

# Target dtypes crossent reads natively; other real dtypes are converted batch by batch.
_NATIVE_TARGETS = {np.dtype(t) for t in ("f4", "f8", "?", "u1", "i1", "i4", "i8")}


# --------------------------------------------------------------------------------------------
# Sources: one operand, read as a flat C-order stream of elements
# --------------------------------------------------------------------------------------------


class Source:
    """One operand stored in a file: its shape (``None`` until known), dtype, and a flat
    C-order stream of its elements handed out ``take(n)`` at a time."""

    shape: tuple[int, ...] | None
    dtype: np.dtype[Any]

    def __init__(self, spec: str, arg: str) -> None:
        self.spec = spec
        self.arg = arg
        self._chunks: Iterator[np.ndarray] = iter(())
        self._buf: list[np.ndarray] = []
        self._buffered = 0
        self.done = False

    def _fill(self, n: int) -> None:
        while self._buffered < n:
            try:
                chunk = next(self._chunks)
            except StopIteration:
                self.done = True
                return
            if chunk.size:
                self._buf.append(chunk)
                self._buffered += chunk.size

    def take(self, n: int) -> np.ndarray:
        """The next ``n`` elements (fewer at the end), as a 1-D array."""
        self._fill(n)
        if not self._buf:
            return np.empty(0, dtype=self.dtype)
        if len(self._buf) == 1 and self._buf[0].size <= n:
            out = self._buf.pop()
        elif self._buf[0].size >= n:
            out, rest = self._buf[0][:n], self._buf[0][n:]
            self._buf[0] = rest
            if not rest.size:
                self._buf.pop(0)
        else:
            joined = np.concatenate(self._buf)
            out, rest = joined[:n], joined[n:]
            self._buf = [rest] if rest.size else []
        self._buffered -= out.size
        return out

    def exhausted(self) -> bool:
        self._fill(1)
        return self._buffered == 0

    def whole(self) -> np.ndarray:
        """Every element, in the operand's shape (for small broadcast operands)."""
        parts = []
        while not self.exhausted():
            parts.append(self.take(BATCH))
        flat = np.concatenate(parts) if parts else np.empty(0, dtype=self.dtype)
        shape = self.shape if self.shape is not None else flat.shape
        return flat.reshape(shape)


class ArraySource(Source):
    """An array already in memory or memory-mapped: batches are views, never copies (for
    C-contiguous arrays)."""

    def __init__(self, spec: str, arg: str, array: np.ndarray) -> None:
        super().__init__(spec, arg)
        if array.dtype.hasobject or array.dtype.kind not in "biuf":
            raise CliError(f"--{arg} {spec}: unsupported dtype {array.dtype}")
        self.shape = array.shape
        self.dtype = array.dtype
        # reshape(-1) is a view for C-contiguous arrays (memmaps included) and a copy otherwise.
        self._chunks = iter([array.reshape(-1)])


class NpzMemberSource(Source):
    """One member of an ``.npz`` archive, streamed from the (possibly compressed) zip member
    without loading it whole."""

    def __init__(self, spec: str, arg: str, path: str, key: str | None) -> None:
        super().__init__(spec, arg)
        try:
            zf = zipfile.ZipFile(path)
        except (OSError, zipfile.BadZipFile) as e:
            raise CliError(f"--{arg} {spec}: not a readable .npz file ({_reason(e)})") from None
        names = [n[:-4] for n in zf.namelist() if n.endswith(".npy")]
        if key is None:
            if len(names) != 1:
                raise CliError(
                    f"--{arg} {spec}: the archive holds {len(names)} arrays "
                    f"({', '.join(names)}); name one as {path}:KEY"
                )
            key = names[0]
        if key not in names:
            raise CliError(
                f"--{arg} {spec}: no array {key!r} in the archive (it has {', '.join(names)})"
            )
        f = zf.open(key + ".npy")
        try:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            else:
                raise ValueError(f"unsupported .npy format version {version}")
        except (ValueError, OSError, zipfile.BadZipFile) as e:
            raise CliError(f"--{arg} {spec}: not a valid .npy member ({e})") from None
        dtype = np.dtype(dtype)
        if dtype.hasobject or dtype.kind not in "biuf":
            raise CliError(f"--{arg} {spec}: unsupported dtype {dtype}")
        self.shape = tuple(shape)
        self.dtype = dtype.newbyteorder("=")
        if fortran:
            # Column-major data cannot be streamed in C order: read it whole (a copy).
            with np.load(path) as z:
                self._chunks = iter([np.ascontiguousarray(z[key]).reshape(-1)])
            return
        total = math.prod(self.shape)

        def chunks() -> Iterator[np.ndarray]:
            left = total
            step = max(1, BATCH // 4)
            while left:
                n = min(step, left)
                raw = f.read(n * dtype.itemsize)
                if len(raw) != n * dtype.itemsize:
                    raise CliError(f"--{arg} {spec}: the member is truncated")
                yield np.frombuffer(raw, dtype=dtype).astype(self.dtype, copy=False)
                left -= n

        self._chunks = chunks()


class ArrowSource(Source):
    """A numeric column of a Parquet or CSV file, read in record batches by pyarrow."""

    def __init__(self, spec: str, arg: str, path: str, column: str, fmt: str) -> None:
        super().__init__(spec, arg)
        import pyarrow as pa

        try:
            if fmt == "parquet":
                import pyarrow.parquet as pq

                pf = pq.ParquetFile(path)
                _check_column(arg, spec, column, pf.schema_arrow.names)
                field = pf.schema_arrow.field(column)
                self.shape = (pf.metadata.num_rows,)
                batches: Iterator[Any] = pf.iter_batches(batch_size=1 << 20, columns=[column])
            else:
                import pyarrow.csv as pcsv

                _check_column(arg, spec, column, _csv_header(path))
                reader = pcsv.open_csv(
                    path,
                    read_options=pcsv.ReadOptions(block_size=1 << 24),
                    convert_options=pcsv.ConvertOptions(include_columns=[column]),
                )
                field = reader.schema.field(column)
                self.shape = None  # known once read
                batches = iter(reader)
        except (OSError, UnicodeDecodeError, pa.ArrowException) as e:
            raise CliError(f"--{arg} {spec}: cannot read {fmt} ({_reason(e)})") from None
        t = field.type
        if not (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)):
            raise CliError(f"--{arg} {spec}: column {column!r} is {t}, not numeric")
        self.dtype = np.dtype(np.float32 if pa.types.is_float16(t) else t.to_pandas_dtype())

        def chunks() -> Iterator[np.ndarray]:
            seen = 0
            try:
                for batch in batches:
                    col = batch.column(0)
                    if col.null_count:
                        row = seen + col.is_null().to_numpy(zero_copy_only=False).argmax()
                        raise CliError(
                            f"--{arg} {spec}: column {column!r} has a missing value at row {row}"
                        )
                    seen += len(col)
                    # Without nulls, numeric columns come over without a copy.
                    yield np.asarray(col.to_numpy(zero_copy_only=False), dtype=self.dtype)
            except pa.ArrowException as e:
                raise CliError(f"--{arg} {spec}: cannot read {fmt} ({_reason(e)})") from None

        self._chunks = chunks()


def _check_column(arg: str, spec: str, column: str, names: list[str]) -> None:
    if column not in names:
        raise CliError(f"--{arg} {spec}: no column {column!r} (columns: {', '.join(names)})")


def _csv_column_numpy(spec: str, arg: str, path: str, column: str) -> Source:
    """A CSV column read whole by NumPy, for when pyarrow is not installed."""
    names = _csv_header(path)
    _check_column(arg, spec, column, names)
    try:
        values = np.loadtxt(path, delimiter=",", skiprows=1, usecols=names.index(column), ndmin=1)
    except (OSError, ValueError) as e:
        raise CliError(f"--{arg} {spec}: cannot read csv ({_reason(e)})") from None
    return ArraySource(spec, arg, values)


def _csv_header(path: str) -> list[str]:
    import csv

    try:
        with open(path, newline="", encoding="utf-8") as f:
            return [name.strip() for name in next(csv.reader(f), [])]
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise CliError(f"{path}: cannot read csv ({_reason(e)})") from None


def _reason(e: BaseException) -> str:
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


def open_source(spec: str, arg: str) -> Source:
    """Opens ``path``, ``path.npz:key``, ``path.parquet:column`` or ``path.csv:column``."""
    path, key = spec, None
    if not os.path.exists(path) and ":" in spec:
        path, key = spec.rsplit(":", 1)
    if not os.path.exists(path):
        raise CliError(f"--{arg} {spec}: no such file")
    if os.path.isdir(path):
        raise CliError(f"--{arg} {spec}: is a directory")
    ext = os.path.splitext(path)[1].lower()
    if ext == ".npy":
        if key is not None:
            raise CliError(f"--{arg} {spec}: a .npy file holds one array; drop ':{key}'")
        try:
            array = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as e:
            raise CliError(f"--{arg} {spec}: not a readable .npy file ({_reason(e)})") from None
        return ArraySource(spec, arg, array)
    if ext == ".npz":
        return NpzMemberSource(spec, arg, path, key)
    if ext in (".parquet", ".pq", ".csv"):
        if key is None:
            raise CliError(f"--{arg} {spec}: name the column as {path}:COLUMN")
        fmt = "csv" if ext == ".csv" else "parquet"
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            if fmt == "csv":
                return _csv_column_numpy(spec, arg, path, key)
            raise CliError(
                f"--{arg} {spec}: reading parquet needs pyarrow (pip install pyarrow)"
            ) from None
        return ArrowSource(spec, arg, path, key, fmt)
    raise CliError(
        f"--{arg} {spec}: unknown file type {ext or '(none)'} (use .npy, .npz, .parquet, .csv)"
    )


# --------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------


def _shape_str(shape: tuple[int, ...] | None) -> str:
    return "unknown" if shape is None else str(tuple(shape))


def _as_input(a: np.ndarray) -> np.ndarray:
    return a if a.dtype in (np.float32, np.float64) else a.astype(np.float64)


def _as_target(a: np.ndarray, input_dtype: np.dtype[Any]) -> np.ndarray:
    return a if a.dtype in _NATIVE_TARGETS else a.astype(input_dtype)


def _batch_elements(row: int) -> int:
    """Elements per batch: whole rows and, where that stays reasonable, whole blocks."""
    import crossent

    aligned = math.lcm(crossent.BLOCK, row)
    if aligned <= 16 * BATCH:
        return aligned * max(1, BATCH // aligned)
    return row * max(1, BATCH // row)


_INDEX = re.compile(r"at index \(([\d, ]*)\)")


def _globalise(message: str, batch_shape: tuple[int, ...], offset: int, shape: Any) -> str:
    """Rewrites a batch-relative ``at index (i, j)`` of an error message as the position in
    the whole operand."""
    m = _INDEX.search(message)
    if not m or shape is None:
        return message
    try:
        idx = tuple(int(v) for v in m.group(1).split(",") if v.strip())
        flat = int(np.ravel_multi_index(idx, batch_shape)) + offset
        full = tuple(int(v) for v in np.unravel_index(flat, shape)) if shape else ()
    except ValueError:
        return message
    text = f"({full[0]},)" if len(full) == 1 else str(full)
    return message[: m.start()] + f"at index {text}" + message[m.end() :]


def _stream_ended(x: np.ndarray, input: Source, target: Source) -> bool:
    """True once a read of ``input`` came back empty, which must leave ``target`` used up too."""
    if x.size:
        return False
    if not (input.exhausted() and target.exhausted()):
        raise CliError("the operands have different lengths")
    return True


def _open_output(output: str, input: Source, shape: tuple[int, ...]) -> Any:
    """The ``.npy`` file ``--reduction none`` writes, memory-mapped: ``shape``, in the dtype
    the losses of ``input`` come in."""
    try:
        return np.lib.format.open_memmap(
            output, mode="w+", dtype=_as_input(np.empty(0, input.dtype)).dtype, shape=shape
        )
    except OSError as e:
        raise CliError(f"--output {output}: cannot write ({_reason(e)})") from None


def evaluate(
    loss: Loss,
    input: Source,
    target: Source,
    *,
    weight: Source | None,
    pos_weight: np.ndarray | None,
    reduction: str,
    output: str | None,
    progress: Progress,
) -> tuple[float | None, int]:
    """Streams the operands through crossent; returns (value or None, element count)."""
    import crossent

    if input.shape is not None and target.shape is not None and input.shape != target.shape:
        raise CliError(
            f"--target {target.spec} has shape {_shape_str(target.shape)}, "
            f"--input {input.spec} has {_shape_str(input.shape)}"
        )
    shape = input.shape if input.shape is not None else target.shape
    row_shape = tuple(shape[1:]) if shape else ()
    row = math.prod(row_shape)
    fixed_weight: np.ndarray | None = None
    if weight is not None and (weight.shape is None or weight.shape != shape):
        # A weight of another shape is a broadcast operand: small; read it whole.
        fixed_weight = weight.whole()
        lead = fixed_weight.shape[: max(0, fixed_weight.ndim - len(row_shape))]
        if shape is None or (fixed_weight.ndim > len(row_shape) and math.prod(lead) != 1):
            raise CliError(
                f"--weight {weight.spec} of shape {fixed_weight.shape} cannot be broadcast to "
                f"the input's shape {_shape_str(shape)} batch by batch (give it the input's "
                "shape, or a shape that broadcasts along the first axis)"
            )
        weight = None
    step = _batch_elements(row) if row else BATCH
    total = math.prod(shape) if shape is not None else None
    progress.total = float(total) if total else 1.0

    out_flat: np.ndarray | None = None
    out_mm: Any = None
    acc: Any = None
    fn: Callable[..., Any] = getattr(crossent, loss.function)
    kwargs: dict[str, Any] = {}
    if loss.logits and pos_weight is not None:
        kwargs["pos_weight"] = pos_weight
    if reduction == "none":
        assert output is not None
        if shape is None:
            raise CliError("--reduction none needs operands of known shape (.npy, .npz, parquet)")
        out_mm = _open_output(output, input, shape)
        out_flat = out_mm.reshape(-1)  # a view: C order
    else:
        acc = getattr(crossent, loss.accumulator)(reduction=reduction, **kwargs)

    done = 0
    while True:
        x = input.take(step)
        y = target.take(step)
        w = weight.take(step) if weight is not None else fixed_weight
        if x.size != y.size or (weight is not None and w is not None and w.size != x.size):
            raise CliError(
                f"the operands have different lengths: --input {input.spec} has "
                f"{'at least ' if x.size > y.size else ''}{done + x.size} elements, "
                f"--target {target.spec} {'at least ' if y.size > x.size else ''}"
                f"{done + y.size}"
            )
        if _stream_ended(x, input, target):
            break
        if row and x.size % row:
            raise CliError(f"--input {input.spec}: element count is not a whole number of rows")
        batch_shape = (
            (x.size // row, *row_shape) if shape is not None and len(shape) > 1 else (x.size,)
        )
        xb = _as_input(x).reshape(batch_shape)
        yb = _as_target(y, xb.dtype).reshape(batch_shape)
        extra = dict(kwargs)
        if w is not None:
            extra["weight"] = w.reshape(batch_shape) if weight is not None else w
        try:
            if out_flat is not None:
                fn(
                    xb,
                    yb,
                    reduction="none",
                    out=out_flat[done : done + x.size].reshape(batch_shape),
                    **extra,
                )
            else:
                extra.pop("pos_weight", None)
                acc.update(xb, yb, **extra)
        except (ValueError, TypeError) as e:
            raise CliError(_globalise(str(e), batch_shape, done, shape)) from None
        done += x.size
        progress.update(done, f"{done:,} elements")
    progress.close()
    if out_flat is not None:
        del out_flat, out_mm  # flushes the memory map
        return None, done
    return float(acc.result()), done


def evaluate_rows(
    loss: Loss,
    input: Source,
    target: Source,
    *,
    class_weight: np.ndarray | None,
    reduction: str,
    output: str | None,
    progress: Progress,
) -> tuple[float | None, int]:
    """Softmax cross-entropy over rows of classes (the input's last axis), streamed in batches
    of whole rows (whole blocks of rows where that stays reasonable, so that the result has the
    bits of one call); returns (value or None, row count)."""
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
    nrows = math.prod(rows_shape)
    per_block = max(1, crossent.CHUNK // max(classes, 1))
    rows = per_block * max(1, BATCH // (per_block * max(classes, 1)))
    progress.total = float(nrows) if nrows else 1.0
    kwargs: dict[str, Any] = {} if class_weight is None else {"weight": class_weight}
    out_flat: np.ndarray | None = None
    out_mm: Any = None
    acc: Any = None
    if reduction == "none":
        assert output is not None
        out_mm = _open_output(output, input, rows_shape)
        out_flat = out_mm.reshape(-1)
    else:
        try:
            acc = getattr(crossent, loss.accumulator)(reduction=reduction, **kwargs)
        except (ValueError, TypeError) as e:
            raise CliError(f"--weight: {e}") from None
    done = 0
    while True:
        x = input.take(rows * classes)
        y = target.take(rows * classes if soft else rows)
        r = x.size // classes if classes else 0
        if y.size != (x.size if soft else r):
            raise CliError(
                f"the operands have different lengths: --input {input.spec} holds "
                f"{done + r} rows or more, --target {target.spec} does not"
            )
        if _stream_ended(x, input, target):
            break
        xb = _as_input(x).reshape(r, classes)
        yb = y.reshape(r, classes) if soft else y
        try:
            if out_flat is not None:
                fn = getattr(crossent, loss.function)
                fn(xb, yb, reduction="none", out=out_flat[done : done + r], **kwargs)
            else:
                acc.update(xb, yb)
        except (ValueError, TypeError) as e:
            raise CliError(_globalise(str(e), (r,), done, rows_shape)) from None
        done += r
        progress.update(done, f"{done:,} rows")
    progress.close()
    if out_flat is not None:
        del out_flat, out_mm  # flushes the memory map
        return None, done
    return float(acc.result()), done


def _pos_weight(text: str | None) -> np.ndarray | None:
    if text is None:
        return None
    if os.path.exists(text) or (":" in text and os.path.exists(text.rsplit(":", 1)[0])):
        return open_source(text, "pos-weight").whole()
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
        choices=sorted(LOSSES) + sorted(ALIASES),
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
    loss = LOSSES[ALIASES.get(args.loss, args.loss)]
    if args.reduction == "none" and args.output is None:
        raise CliError("--reduction none needs --output OUT.npy")
    if args.output is not None and args.reduction != "none":
        raise CliError("--output is only used with --reduction none")
    if args.pos_weight is not None and not loss.logits:
        raise CliError("--pos-weight only applies to --loss bce_logits")
    start = time.perf_counter()
    input = open_source(args.input, "input")
    target = open_source(args.target, "target")
    weight = open_source(args.weight, "weight") if args.weight else None
    pos_weight = _pos_weight(args.pos_weight)
    progress = Progress(1, label="eval", enabled=not args.quiet, delay=1.0)
    if loss.rows:
        value, count = evaluate_rows(
            loss,
            input,
            target,
            class_weight=weight.whole() if weight is not None else None,
            reduction=args.reduction,
            output=args.output,
            progress=progress,
        )
    else:
        value, count = evaluate(
            loss,
            input,
            target,
            weight=weight,
            pos_weight=pos_weight,
            reduction=args.reduction,
            output=args.output,
            progress=progress,
        )
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
