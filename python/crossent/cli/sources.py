"""Operands stored in files, each read as a flat C-order stream of its elements.

``.npy`` files are memory-mapped, ``.npz`` members (``file.npz:key``) streamed from the
archive, Parquet columns (``file.parquet:column``) read in record batches by pyarrow, CSV
columns (``file.csv:column``) streamed as float64 (the same with or without pyarrow).
"""

from __future__ import annotations

import math
import os
import re
import stat
import zipfile
from collections.abc import Iterator
from typing import Any

import numpy as np

from crossent.cli.errors import CliError, reason

#: Elements per batch a source reads (the evaluation rounds it to whole blocks and rows).
BATCH = 1 << 22

#: NumPy dtype kinds of operands (numbers), and of group labels (``--group-by``): integers,
#: booleans, strings, bytes and dates, each read as stored.
NUMBERS = "biuf"
#: Rows per record batch read from a Parquet file.
PARQUET_ROWS = 1 << 20
LABELS = "biuUSM"


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

    def _fill(self, n: int) -> None:
        while self._buffered < n:
            try:
                chunk = next(self._chunks)
            except StopIteration:
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

    def __init__(self, spec: str, arg: str, array: np.ndarray, kinds: str = NUMBERS) -> None:
        super().__init__(spec, arg)
        _check_dtype(arg, spec, array.dtype, kinds)
        self.shape = array.shape
        self.dtype = array.dtype
        # reshape(-1) is a view for C-contiguous arrays (memmaps included) and a copy otherwise.
        self._chunks = iter([array.reshape(-1)])


def _check_dtype(arg: str, spec: str, dtype: np.dtype[Any], kinds: str = NUMBERS) -> None:
    if dtype.hasobject:
        raise CliError(
            f"--{arg} {spec}: holds Python objects (pickled data), which crossent does not read"
        )
    if dtype.kind not in kinds:
        hint = " (group labels are integers, booleans, strings or dates)" if kinds == LABELS else ""
        raise CliError(f"--{arg} {spec}: unsupported dtype {dtype}{hint}")


def _read_npy_header(
    f: Any, arg: str, spec: str, what: str, kinds: str = NUMBERS
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
        raise CliError(f"--{arg} {spec}: not a valid {what} ({reason(e)})") from None
    dtype = np.dtype(dtype)
    _check_dtype(arg, spec, dtype, kinds)
    return tuple(int(n) for n in shape), bool(fortran), dtype


def _open_npy(spec: str, arg: str, path: str, kinds: str = NUMBERS) -> np.ndarray:
    """A ``.npy`` file, memory-mapped once its header and size have been checked."""
    st = os.stat(path)
    if not stat.S_ISREG(st.st_mode):
        raise CliError(f"--{arg} {spec}: not a regular file (a .npy operand is memory-mapped)")
    with open(path, "rb") as f:
        shape, _, dtype = _read_npy_header(f, arg, spec, ".npy file", kinds)
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
        raise CliError(f"--{arg} {spec}: not a readable .npy file ({reason(e)})") from None
    return array


class NpzMemberSource(Source):
    """One member of an ``.npz`` archive, streamed from the (possibly compressed) zip member
    without loading it whole."""

    def __init__(
        self, spec: str, arg: str, path: str, key: str | None, kinds: str = NUMBERS
    ) -> None:
        super().__init__(spec, arg)
        self._kinds = kinds
        try:
            zf = zipfile.ZipFile(path)
        except (OSError, zipfile.BadZipFile) as e:
            raise CliError(f"--{arg} {spec}: not a readable .npz file ({reason(e)})") from None
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
            raise CliError(f"--{arg} {spec}: cannot read the member ({reason(e)})") from None
        self._member = f
        shape, fortran, dtype = _read_npy_header(f, arg, spec, ".npy member", self._kinds)
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
                        f"--{arg} {spec}: cannot read the member ({reason(e)})"
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
            batches: Iterator[Any] = pf.iter_batches(batch_size=PARQUET_ROWS, columns=[column])
        except (OSError, pa.ArrowException) as e:
            raise CliError(f"--{arg} {spec}: cannot read parquet ({reason(e)})") from None
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
                raise CliError(f"--{arg} {spec}: cannot read parquet ({reason(e)})") from None

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

    def _python_field(self, row: int, field: str) -> Any:
        """One field (stripped) as the pure-Python reader reads it: a float."""
        if not _CSV_NUMBER_RE.fullmatch(field):
            raise self._bad(row, field)
        return float(field)

    def _python_batch(self, values: list[Any]) -> np.ndarray:
        """A batch of :meth:`_python_field` values as the array the stream yields."""
        return np.array(values, dtype=np.float64)

    def _arrow_batch(self, col: Any, row: int) -> np.ndarray:
        """A batch of fields (a pyarrow string array, stripped) whose first is at ``row``, as
        the array the stream yields: checked against the number grammar, then converted."""
        import pyarrow as pa
        import pyarrow.compute as pc

        ok = pc.match_substring_regex(col, f"^(?:{_CSV_NUMBER})$", ignore_case=True)
        if not pc.all(ok).as_py():
            at = int(np.argmin(ok.to_numpy(zero_copy_only=False)))
            raise self._bad(row + at, col[at].as_py())
        return np.asarray(
            pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64
        )

    def _python_chunks(self) -> Iterator[np.ndarray]:
        import csv

        arg, spec = self.arg, self.spec
        try:
            with open(self.path, newline="", encoding="utf-8-sig") as f:
                reader = csv.reader(f, strict=True)
                next(reader, None)  # the header
                row = 0
                values: list[Any] = []
                for record in reader:
                    if not record:
                        continue  # a blank line
                    if len(record) != self.ncols:
                        raise CliError(
                            f"--{arg} {spec}: row {row} has {_fields(len(record))}, the header "
                            f"{_fields(self.ncols)}"
                        )
                    values.append(self._python_field(row, record[self.index].strip(_CSV_SPACE)))
                    row += 1
                    if len(values) == _CSV_ROWS:
                        yield self._python_batch(values)
                        values = []
                if values:
                    yield self._python_batch(values)
        except (OSError, UnicodeDecodeError, csv.Error) as e:
            raise CliError(f"--{arg} {spec}: cannot read csv ({reason(e)})") from None

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
                values = self._arrow_batch(col, row)
                row += len(col)
                yield values
        except (OSError, pa.ArrowException) as e:
            # The file cannot be split into rows as a CSV file (a row of the wrong length,
            # say): the pure-Python reader finds the same fault and words it, with its row.
            for _ in self._python_chunks():
                pass
            raise CliError(f"--{arg} {spec}: cannot read csv ({reason(e)})") from None


def _fields(n: int) -> str:
    return f"{n} field" if n == 1 else f"{n} fields"


def _csv_header(arg: str, spec: str, path: str) -> list[str]:
    import csv

    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            header = next(csv.reader(f, strict=True), [])
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise CliError(f"--{arg} {spec}: cannot read csv ({reason(e)})") from None
    if not header:
        raise CliError(f"--{arg} {spec}: the first line of the csv file must name the columns")
    return [name.strip(_CSV_SPACE) for name in header]


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
