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
import re
import stat
import sys
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from crossent._cli import CliError, Progress, atomic_output, check_output

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

    def close(self) -> None:
        """Releases the files the stream holds open (a generator's ``finally`` closes its)."""
        close = getattr(self._chunks, "close", None)
        if close is not None:
            close()

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
        _check_dtype(arg, spec, array.dtype)
        self.shape = array.shape
        self.dtype = array.dtype
        # reshape(-1) is a view for C-contiguous arrays (memmaps included) and a copy otherwise.
        self._chunks = iter([array.reshape(-1)])


def _check_dtype(arg: str, spec: str, dtype: np.dtype[Any]) -> None:
    if dtype.hasobject:
        raise CliError(
            f"--{arg} {spec}: holds Python objects (pickled data), which crossent does not read"
        )
    if dtype.kind not in "biuf":
        raise CliError(f"--{arg} {spec}: unsupported dtype {dtype}")


def _read_npy_header(
    f: Any, arg: str, spec: str, what: str
) -> tuple[tuple[int, ...], bool, np.dtype[Any]]:
    """(shape, Fortran order, dtype) from the header of a ``.npy`` stream positioned at its
    start; refuses, naming ``what``, anything that is not a ``.npy`` header."""
    magic = f.read(6)
    if magic != np.lib.format.MAGIC_PREFIX:
        found = "it is empty" if not magic else "it does not start with the .npy magic string"
        raise CliError(f"--{arg} {spec}: not a {what} ({found})")
    try:
        major, minor = f.read(2)
        if (major, minor) == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        elif (major, minor) == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise ValueError(f"unsupported .npy format version {major}.{minor}")
    except (ValueError, TypeError, SyntaxError, EOFError) as e:
        raise CliError(f"--{arg} {spec}: not a valid {what} ({_reason(e)})") from None
    dtype = np.dtype(dtype)
    _check_dtype(arg, spec, dtype)
    return tuple(int(n) for n in shape), bool(fortran), dtype


def _open_npy(spec: str, arg: str, path: str) -> np.ndarray:
    """A ``.npy`` file, memory-mapped once its header and size have been checked."""
    st = os.stat(path)
    if not stat.S_ISREG(st.st_mode):
        raise CliError(f"--{arg} {spec}: not a regular file (a .npy operand is memory-mapped)")
    with open(path, "rb") as f:
        shape, _, dtype = _read_npy_header(f, arg, spec, ".npy file")
        offset = f.tell()
    need = offset + math.prod(shape) * dtype.itemsize
    if st.st_size < need:
        raise CliError(
            f"--{arg} {spec}: truncated: its header declares {dtype} data of shape {shape} "
            f"({need:,} bytes with the header), the file holds {st.st_size:,} bytes"
        )
    try:
        array: np.ndarray = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as e:
        raise CliError(f"--{arg} {spec}: not a readable .npy file ({_reason(e)})") from None
    return array


class NpzMemberSource(Source):
    """One member of an ``.npz`` archive, streamed from the (possibly compressed) zip member
    without loading it whole."""

    def __init__(self, spec: str, arg: str, path: str, key: str | None) -> None:
        super().__init__(spec, arg)
        try:
            zf = zipfile.ZipFile(path)
        except (OSError, zipfile.BadZipFile) as e:
            raise CliError(f"--{arg} {spec}: not a readable .npz file ({_reason(e)})") from None
        self._zip = zf
        self._member: Any = None
        try:
            self._open(zf, spec, arg, path, key)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        super().close()
        if self._member is not None:
            self._member.close()
        self._zip.close()

    def _open(self, zf: zipfile.ZipFile, spec: str, arg: str, path: str, key: str | None) -> None:
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
        info = zf.getinfo(key + ".npy")
        try:
            f = zf.open(info)
        except (OSError, ValueError, RuntimeError, NotImplementedError, zipfile.BadZipFile) as e:
            raise CliError(f"--{arg} {spec}: cannot read the member ({_reason(e)})") from None
        self._member = f
        shape, fortran, dtype = _read_npy_header(f, arg, spec, ".npy member")
        # The zip directory states the member's size: a header that declares more (or less)
        # data than the member holds is refused before anything is allocated or written.
        need = f.tell() + math.prod(shape) * dtype.itemsize
        if info.file_size != need:
            raise CliError(
                f"--{arg} {spec}: the member's header declares {dtype} data of shape {shape} "
                f"({need:,} bytes with the header), the member holds {info.file_size:,} bytes"
            )
        self.shape = shape
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
                try:
                    raw = f.read(n * dtype.itemsize)
                except (OSError, zipfile.BadZipFile, EOFError) as e:
                    raise CliError(
                        f"--{arg} {spec}: cannot read the member ({_reason(e)})"
                    ) from None
                if len(raw) != n * dtype.itemsize:
                    raise CliError(f"--{arg} {spec}: the member is truncated")
                yield np.frombuffer(raw, dtype=dtype).astype(self.dtype, copy=False)
                left -= n

        self._chunks = chunks()


class ParquetSource(Source):
    """A numeric column of a Parquet file, read in record batches by pyarrow."""

    def __init__(self, spec: str, arg: str, path: str, column: str) -> None:
        super().__init__(spec, arg)
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise CliError(
                f"--{arg} {spec}: reading parquet needs pyarrow (pip install pyarrow)"
            ) from None
        try:
            pf = pq.ParquetFile(path)
            _check_column(arg, spec, column, pf.schema_arrow.names)
            field = pf.schema_arrow.field(column)
            self.shape = (pf.metadata.num_rows,)
            batches: Iterator[Any] = pf.iter_batches(batch_size=1 << 20, columns=[column])
        except (OSError, pa.ArrowException) as e:
            raise CliError(f"--{arg} {spec}: cannot read parquet ({_reason(e)})") from None
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
            except (OSError, pa.ArrowException) as e:
                raise CliError(f"--{arg} {spec}: cannot read parquet ({_reason(e)})") from None

        self._chunks = chunks()


def _check_column(arg: str, spec: str, column: str, names: list[str]) -> None:
    if column not in names:
        raise CliError(f"--{arg} {spec}: no column {column!r} (columns: {', '.join(names)})")
    if names.count(column) > 1:
        raise CliError(f"--{arg} {spec}: the header names column {column!r} more than once")


# CSV values: one grammar, whichever reader parses the file. A field, stripped of the white
# space around it, is a decimal number (optional sign, digits with an optional point, optional
# exponent) or nan / inf / infinity in any case, with an optional sign; it is read as the
# nearest float64 (both readers round correctly). An empty field is a missing value.
_CSV_SPACE = " \t\r\n\f\v"
_CSV_NUMBER = r"[+-]?(?:(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|nan|inf|infinity)"
_CSV_NUMBER_RE = re.compile(_CSV_NUMBER, re.IGNORECASE | re.ASCII)
#: Rows per batch of the pure-Python CSV reader, and bytes per block of pyarrow's.
_CSV_ROWS = 1 << 16
_CSV_BLOCK = 1 << 24


class CsvSource(Source):
    """A column of a CSV file (comma-separated, a header line naming the columns, names
    stripped of surrounding white space), streamed as float64 values.

    pyarrow, when installed, splits the file into fields (fast, in parallel); without it, the
    ``csv`` module does. Either way the fields are checked against one grammar and converted
    alike, so the values, the errors and their row numbers do not depend on pyarrow."""

    def __init__(self, spec: str, arg: str, path: str, column: str) -> None:
        super().__init__(spec, arg)
        self.path = path
        self.column = column
        names = _csv_header(arg, spec, path)
        _check_column(arg, spec, column, names)
        self.index = names.index(column)
        self.ncols = len(names)
        self.shape = None  # known once read
        self.dtype = np.dtype(np.float64)
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            self._chunks = self._python_chunks()
        else:
            self._chunks = self._arrow_chunks()

    def _bad(self, row: int, field: str) -> CliError:
        if not field:
            return CliError(
                f"--{self.arg} {self.spec}: column {self.column!r} has a missing value at row {row}"
            )
        return CliError(
            f"--{self.arg} {self.spec}: column {self.column!r} holds {field[:40]!r} at row "
            f"{row}, not a number"
        )

    def _python_chunks(self) -> Iterator[np.ndarray]:
        import csv

        arg, spec = self.arg, self.spec
        try:
            with open(self.path, newline="", encoding="utf-8-sig") as f:
                reader = csv.reader(f, strict=True)
                next(reader, None)  # the header
                row = 0
                values: list[float] = []
                for record in reader:
                    if not record:
                        continue  # a blank line
                    if len(record) != self.ncols:
                        raise CliError(
                            f"--{arg} {spec}: row {row} has {_fields(len(record))}, the header "
                            f"{_fields(self.ncols)}"
                        )
                    field = record[self.index].strip(_CSV_SPACE)
                    if not _CSV_NUMBER_RE.fullmatch(field):
                        raise self._bad(row, field)
                    values.append(float(field))
                    row += 1
                    if len(values) == _CSV_ROWS:
                        yield np.array(values, dtype=np.float64)
                        values = []
                if values:
                    yield np.array(values, dtype=np.float64)
        except (OSError, UnicodeDecodeError, csv.Error) as e:
            raise CliError(f"--{arg} {spec}: cannot read csv ({_reason(e)})") from None

    def _arrow_chunks(self) -> Iterator[np.ndarray]:
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.csv as pcsv

        arg, spec = self.arg, self.spec
        # Columns get names of their own (the header's, stripped, may repeat), and every field
        # comes as a string: the grammar check and the conversion below are the same for both
        # readers.
        names = [f"c{i}" for i in range(self.ncols)]
        name = names[self.index]
        try:
            reader = pcsv.open_csv(
                self.path,
                read_options=pcsv.ReadOptions(
                    block_size=_CSV_BLOCK, skip_rows=1, column_names=names
                ),
                convert_options=pcsv.ConvertOptions(
                    include_columns=[name],
                    column_types={name: pa.string()},
                    strings_can_be_null=False,
                    quoted_strings_can_be_null=False,
                ),
            )
            row = 0
            for batch in reader:
                col = pc.utf8_trim(batch.column(0), characters=_CSV_SPACE)
                ok = pc.match_substring_regex(col, f"^(?:{_CSV_NUMBER})$", ignore_case=True)
                if not pc.all(ok).as_py():
                    at = int(np.argmin(ok.to_numpy(zero_copy_only=False)))
                    raise self._bad(row + at, col[at].as_py())
                row += len(col)
                yield np.asarray(
                    pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64
                )
        except (OSError, pa.ArrowException) as e:
            # The file cannot be split into rows as a CSV file (a row of the wrong length,
            # say): the pure-Python reader finds the same fault and words it, with its row.
            for _ in self._python_chunks():
                pass
            raise CliError(f"--{arg} {spec}: cannot read csv ({_reason(e)})") from None


def _fields(n: int) -> str:
    return f"{n} field" if n == 1 else f"{n} fields"


def _csv_header(arg: str, spec: str, path: str) -> list[str]:
    import csv

    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            header = next(csv.reader(f, strict=True), [])
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise CliError(f"--{arg} {spec}: cannot read csv ({_reason(e)})") from None
    if not header:
        raise CliError(f"--{arg} {spec}: the first line of the csv file must name the columns")
    return [name.strip(_CSV_SPACE) for name in header]


def _reason(e: BaseException) -> str:
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


def split_spec(spec: str) -> tuple[str, str | None]:
    """``path`` or ``path:key``: the file, and the key (array or column) if one is named."""
    if not os.path.exists(spec) and ":" in spec:
        path, key = spec.rsplit(":", 1)
        return path, key
    return spec, None


def open_source(spec: str, arg: str) -> Source:
    """Opens ``path``, ``path.npz:key``, ``path.parquet:column`` or ``path.csv:column``."""
    path, key = split_spec(spec)
    if not os.path.exists(path):
        raise CliError(f"--{arg} {spec}: no such file")
    if os.path.isdir(path):
        raise CliError(f"--{arg} {spec}: is a directory")
    ext = os.path.splitext(path)[1].lower()
    if ext == ".npy":
        if key is not None:
            raise CliError(f"--{arg} {spec}: a .npy file holds one array; drop ':{key}'")
        return ArraySource(spec, arg, _open_npy(spec, arg, path))
    if ext == ".npz":
        return NpzMemberSource(spec, arg, path, key)
    if ext in (".parquet", ".pq", ".csv"):
        if key is None:
            raise CliError(f"--{arg} {spec}: name the column as {path}:COLUMN")
        if ext == ".csv":
            return CsvSource(spec, arg, path, key)
        return ParquetSource(spec, arg, path, key)
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
_ARG = re.compile(r"'(\w+)'")


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


def _globalise(message: str, places: dict[str, Place]) -> str:
    """An error of one batch's call, reworded for the whole run: the argument it names (the
    loss functions' messages start with it, ``'target' must hold ...``) becomes the option
    and file, and the batch-relative ``at index (i, j)`` the position in that operand."""
    m = _ARG.match(message)
    place = places.get(m.group(1)) if m else None
    if place is None:
        return message
    hits = list(_INDEX.finditer(message))
    if hits and place.batch is not None:
        hit = hits[-1]
        try:
            idx = tuple(int(v) for v in hit.group(1).split(",") if v.strip())
            flat = int(np.ravel_multi_index(idx, place.batch)) + place.offset
            shape = place.shape if place.shape is not None else (flat + 1,)
            full = tuple(int(v) for v in np.unravel_index(flat, shape))
        except ValueError:
            full = None
        if full is not None:
            text = f"({full[0]},)" if len(full) == 1 else str(full)
            message = message[: hit.start()] + f"at index {text}" + message[hit.end() :]
    return f"{place.label}: {message}"


def _stream_ended(x: np.ndarray, input: Source, target: Source) -> bool:
    """True once a read of ``input`` came back empty, which must leave ``target`` used up too."""
    if x.size:
        return False
    if not (input.exhausted() and target.exhausted()):
        raise CliError("the operands have different lengths")
    return True


class NpyWriter:
    """Writes a ``.npy`` file front to back: a header of a length fixed up front (enough for
    any shape with ``ndim`` dimensions), the data batch by batch, then, in :meth:`finish`,
    the header with the shape written (so the length of a stream need not be known)."""

    def __init__(self, path: str, dtype: np.dtype[Any], ndim: int) -> None:
        self.dtype = np.dtype(dtype)
        self.descr = np.lib.format.dtype_to_descr(self.dtype)
        self.size = len(self._header((2**63,) * max(ndim, 1)))
        self.count = 0
        self.file = open(path, "wb")  # closed by close()
        self.file.write(b"\0" * self.size)

    def _header(self, shape: tuple[int, ...], size: int | None = None) -> bytes:
        body = repr({"descr": self.descr, "fortran_order": False, "shape": shape}).encode()
        need = len(np.lib.format.MAGIC_PREFIX) + 4 + len(body) + 1
        size = size if size is not None else -(-need // 64) * 64
        if need > size or size - 10 > 0xFFFF:
            raise CliError(f"cannot write a .npy header for shape {shape}")
        return (
            np.lib.format.MAGIC_PREFIX
            + bytes((1, 0))
            + (size - 10).to_bytes(2, "little")
            + body
            + b" " * (size - need)
            + b"\n"
        )

    def write(self, batch: np.ndarray) -> None:
        assert batch.dtype == self.dtype and batch.flags.c_contiguous
        self.file.write(batch.data.cast("B"))
        self.count += batch.size

    def finish(self, shape: tuple[int, ...]) -> None:
        """Writes the header for ``shape`` (which must hold what was written) and syncs."""
        if math.prod(shape) != self.count:
            raise CliError(f"wrote {self.count} losses, expected shape {shape}")
        self.file.seek(0)
        self.file.write(self._header(shape, self.size))
        self.file.flush()
        os.fsync(self.file.fileno())

    def close(self) -> None:
        self.file.close()


@contextlib.contextmanager
def _output(output: str | None, dtype: np.dtype[Any], ndim: int) -> Iterator[NpyWriter | None]:
    """The writer of ``--output``, or ``None`` without one. The file is written under a
    temporary name beside the destination and renamed over it only when the run succeeds."""
    if output is None:
        yield None
        return
    with atomic_output("--output", output) as tmp:
        try:
            writer = NpyWriter(tmp, dtype, ndim)
        except OSError as e:
            raise CliError(f"--output {output}: cannot write ({_reason(e)})") from None
        try:
            yield writer
        finally:
            writer.close()


def _loss_dtype(input: Source) -> np.dtype[Any]:
    return _as_input(np.empty(0, input.dtype)).dtype


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
    # Unknown (a CSV column): one-dimensional, of the length the stream turns out to have.
    shape = input.shape if input.shape is not None else target.shape
    row_shape = tuple(shape[1:]) if shape else ()
    row = math.prod(row_shape)
    fixed_weight: np.ndarray | None = None
    fixed_place = Place("--weight", None)
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
            fixed_place = Place(f"--weight {weight.spec}", None)
            weight = None
    step = _batch_elements(row) if row else BATCH
    total = math.prod(shape) if shape is not None else None
    progress.total = float(total) if total else 1.0

    acc: Any = None
    fn: Callable[..., Any] = getattr(crossent, loss.function)
    kwargs: dict[str, Any] = {}
    if loss.logits and pos_weight is not None:
        kwargs["pos_weight"] = pos_weight
    dtype = _loss_dtype(input)
    if reduction != "none":
        acc = getattr(crossent, loss.accumulator)(reduction=reduction, **kwargs)

    done = 0
    with _output(output, dtype, len(shape) if shape is not None else 1) as out:
        buffer = np.empty(step if out is not None else 0, dtype=dtype)
        while True:
            x = input.take(step)
            y = target.take(step)
            w = weight.take(step) if weight is not None else fixed_weight
            if x.size != y.size or (weight is not None and w is not None and w.size != x.size):
                sizes = [("--input", input, x), ("--target", target, y)]
                if weight is not None and w is not None:
                    sizes.append(("--weight", weight, w))
                most = max(a.size for _, _, a in sizes)
                raise CliError(
                    "the operands have different lengths: "
                    + ", ".join(
                        f"{opt} {src.spec} has {'at least ' if a.size == most else ''}"
                        f"{done + a.size} elements"
                        for opt, src, a in sizes
                    )
                )
            if _stream_ended(x, input, target):
                if weight is not None and not weight.exhausted():
                    raise CliError(
                        f"the operands have different lengths: --weight {weight.spec} has "
                        f"more than {done} elements"
                    )
                break
            if row and x.size % row:
                raise CliError(f"--input {input.spec}: element count is not a whole number of rows")
            batch_shape = (
                (x.size // row, *row_shape) if shape is not None and len(shape) > 1 else (x.size,)
            )
            xb = _as_input(x).reshape(batch_shape)
            yb = _as_target(y, xb.dtype).reshape(batch_shape)
            extra = dict(kwargs)
            places = {
                name: Place(f"--{src.arg} {src.spec}", batch_shape, done, shape)
                for name, src in (("input", input), ("target", target), ("weight", weight))
                if src is not None
            }
            if w is not None:
                if weight is not None:
                    extra["weight"] = w.reshape(batch_shape)
                else:
                    extra["weight"] = w
                    places["weight"] = fixed_place
            try:
                if out is not None:
                    losses = buffer[: x.size]
                    fn(xb, yb, reduction="none", out=losses.reshape(batch_shape), **extra)
                    out.write(losses)
                else:
                    extra.pop("pos_weight", None)
                    acc.update(xb, yb, **extra)
            except (ValueError, TypeError) as e:
                raise CliError(_globalise(str(e), places)) from None
            done += x.size
            progress.update(done, f"{done:,} elements")
        progress.close()
        if out is not None:
            out.finish(shape if shape is not None else (done,))
            return None, done
    return float(acc.result()), done


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


def evaluate_rows(
    loss: Loss,
    input: Source,
    target: Source,
    *,
    class_weight: np.ndarray | None,
    weight_spec: str | None,
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
    weight_place = {"weight": Place(f"--weight {weight_spec}", None)} if weight_spec else {}
    acc: Any = None
    fn = getattr(crossent, loss.function)
    if reduction != "none":
        try:
            acc = getattr(crossent, loss.accumulator)(reduction=reduction, **kwargs)
        except (ValueError, TypeError) as e:
            raise CliError(f"--weight {weight_spec}: {e}") from None
    done = 0
    with _output(output, _loss_dtype(input), len(rows_shape)) as out:
        buffer = np.empty(rows if out is not None else 0, dtype=_loss_dtype(input))
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
            yb = y.reshape(r, classes) if soft else _class_indices(y, target, done)
            places = {
                "logits": Place(f"--input {input.spec}", (r, classes), done * classes, shape),
                "input": Place(f"--input {input.spec}", (r, classes), done * classes, shape),
                "target": (
                    Place(f"--target {target.spec}", (r, classes), done * classes, shape)
                    if soft
                    else Place(f"--target {target.spec}", (r,), done, target.shape)
                ),
                **weight_place,
            }
            try:
                if out is not None:
                    losses = buffer[:r]
                    fn(xb, yb, reduction="none", out=losses, **kwargs)
                    out.write(losses)
                else:
                    acc.update(xb, yb)
            except (ValueError, TypeError) as e:
                raise CliError(_globalise(str(e), places)) from None
            done += r
            progress.update(done, f"{done:,} rows")
        progress.close()
        if out is not None:
            out.finish(rows_shape)
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
    if loss.rows:
        value, count = evaluate_rows(
            loss,
            input,
            target,
            class_weight=weight.whole() if weight is not None else None,
            weight_spec=weight.spec if weight is not None else None,
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
