"""Files the command writes: checked before a run so that no operand is overwritten, written
under a temporary name and renamed into place only when complete."""

from __future__ import annotations

import contextlib
import math
import os
import stat
import tempfile
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from crossent.cli.errors import CliError, reason


def same_file(a: os.stat_result, b: os.stat_result) -> bool:
    """Whether two ``os.stat`` results (links followed) describe one file: same device and
    inode, which also holds for two hard links and for two paths through symbolic links."""
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def check_output(option: str, path: str, operands: Sequence[tuple[str, str, str]]) -> None:
    """Refuses an output ``path`` that is a directory or the same file as an operand:
    ``operands`` holds (option, spec, file path) triples. Files are compared by identity
    (device and inode after following links), not by name."""
    try:
        out = os.stat(path)
    except FileNotFoundError:
        return  # a new file (or a link to one) cannot be an operand
    except OSError as e:
        raise CliError(f"{option} {path}: cannot write ({e.strerror or e})") from None
    if stat.S_ISDIR(out.st_mode):
        raise CliError(f"{option} {path}: is a directory")
    for arg, spec, file in operands:
        try:
            st = os.stat(file)
        except OSError:
            continue
        if same_file(st, out):
            raise CliError(
                f"{option} {path} is the same file as {arg} {spec}; writing it would destroy "
                "the input: choose another output path"
            )


@contextlib.contextmanager
def atomic_output(option: str, path: str) -> Iterator[str]:
    """A temporary path beside ``path`` (in the directory of the file it names, links
    followed) to write the output to. When the block ends without an exception the temporary
    file is renamed over ``path`` (atomically, keeping an existing file's permissions); on any
    exception, ``KeyboardInterrupt`` included, it is removed and ``path`` is left untouched."""
    dest = os.path.realpath(path)
    folder, name = os.path.split(dest)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=folder or ".")
    except OSError as e:
        raise CliError(f"{option} {path}: cannot write ({e.strerror or e})") from None
    os.close(fd)
    try:
        yield tmp
        try:
            mode = stat.S_IMODE(os.stat(dest).st_mode)
        except FileNotFoundError:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        os.chmod(tmp, mode)
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


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


#: Output file types by extension.
FORMATS = {".npy": "npy", ".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}

#: The column of per-element (per-row) losses in a Parquet or CSV ``--output``.
COLUMN = "loss"


def output_format(option: str, path: str) -> str:
    """``"npy"``, ``"parquet"`` or ``"csv"``, from the extension of ``path``; a Parquet output
    needs pyarrow, which is checked here, before anything is read."""
    ext = os.path.splitext(path)[1].lower()
    fmt = FORMATS.get(ext)
    if fmt is None:
        raise CliError(
            f"{option} {path}: unknown file type {ext or '(none)'} (use .npy, .parquet or .csv)"
        )
    if fmt == "parquet":
        try:
            import pyarrow.parquet  # noqa: F401
        except ImportError:
            raise CliError(
                f"{option} {path}: writing parquet needs pyarrow (pip install pyarrow)"
            ) from None
    return fmt


def _arrow_csv() -> Any:
    """``pyarrow.csv`` where installed (it formats numbers faster), else ``None``."""
    try:
        import pyarrow.csv as pcsv
    except ImportError:
        return None
    return pcsv


def csv_numbers(values: np.ndarray) -> str:
    """Float values as CSV lines (each ending in a newline): the shortest decimal text that
    reads back as the same value of ``values``' dtype; ``nan``, ``inf``, ``-inf`` for the
    others (the forms the command's CSV reader takes)."""
    if not values.size:
        return ""
    return "\n".join(values.astype(str).tolist()) + "\n"


class ColumnWriter:
    """Writes the losses as one column named ``loss`` of a Parquet or CSV file, batch by batch
    (in C order: a result of several dimensions is written flat)."""

    def __init__(self, path: str, dtype: np.dtype[Any], fmt: str) -> None:
        self.dtype = np.dtype(dtype)
        self.fmt = fmt
        self.count = 0
        self.file = open(path, "wb")  # closed by close()
        self.parquet: Any = None
        self.arrow_csv: Any = None
        if fmt == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            schema = pa.schema([(COLUMN, pa.from_numpy_dtype(self.dtype))])
            self.parquet = pq.ParquetWriter(self.file, schema)
        else:
            self.file.write(f"{COLUMN}\n".encode())
            self.arrow_csv = _arrow_csv()

    def write(self, batch: np.ndarray) -> None:
        assert batch.dtype == self.dtype
        if self.parquet is not None:
            import pyarrow as pa

            self.parquet.write_table(pa.table({COLUMN: batch.reshape(-1)}))
        elif self.arrow_csv is not None:
            import pyarrow as pa

            self.arrow_csv.write_csv(
                pa.table({COLUMN: batch.reshape(-1)}),
                self.file,
                self.arrow_csv.WriteOptions(include_header=False),
            )
        else:
            self.file.write(csv_numbers(batch.reshape(-1)).encode())
        self.count += batch.size

    def finish(self, shape: tuple[int, ...]) -> None:
        """Completes the file, which must hold ``shape``'s elements, and syncs it."""
        if math.prod(shape) != self.count:
            raise CliError(f"wrote {self.count} losses, expected shape {shape}")
        if self.parquet is not None:
            self.parquet.close()
            self.parquet = None
        self.file.flush()
        os.fsync(self.file.fileno())

    def close(self) -> None:
        if self.parquet is not None:
            with contextlib.suppress(Exception):
                self.parquet.close()
        self.file.close()


@contextlib.contextmanager
def losses_output(
    output: str | None, dtype: np.dtype[Any], ndim: int
) -> Iterator[NpyWriter | ColumnWriter | None]:
    """The writer of ``--output``, or ``None`` without one: a ``.npy`` file of the result's
    shape, or a Parquet or CSV column. The file is written under a temporary name beside the
    destination and renamed over it only when the run succeeds."""
    if output is None:
        yield None
        return
    fmt = output_format("--output", output)
    with atomic_output("--output", output) as tmp:
        writer: NpyWriter | ColumnWriter
        try:
            writer = NpyWriter(tmp, dtype, ndim) if fmt == "npy" else ColumnWriter(tmp, dtype, fmt)
        except OSError as e:
            raise CliError(f"--output {output}: cannot write ({reason(e)})") from None
        try:
            yield writer
        finally:
            writer.close()


def write_table(
    option: str,
    path: str,
    label: str,
    labels: Any,
    columns: dict[str, np.ndarray],
) -> None:
    """Writes a small table (the per-group results) to ``path``, under a temporary name renamed
    into place when complete: a first column ``label`` of ``labels`` (an object with
    ``numpy()``, ``arrow()`` and ``text()``: the labels as a NumPy array, a pyarrow array and
    text), then ``columns``. A ``.npy`` file holds a structured array with one field per
    column, a Parquet file one column each, a CSV file a header line and one line per row
    (numbers as the shortest text that reads back to the same value)."""
    fmt = output_format(option, path)
    with atomic_output(option, path) as tmp:
        if fmt == "npy":
            arrays = {label: labels.numpy(), **columns}
            table = np.empty(len(arrays[label]), dtype=[(n, a.dtype) for n, a in arrays.items()])
            for n, a in arrays.items():
                table[n] = a
            with open(tmp, "wb") as f:
                np.save(f, table, allow_pickle=False)
                f.flush()
                os.fsync(f.fileno())
        elif fmt == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            table = pa.table(
                {label: labels.arrow(), **{n: pa.array(a) for n, a in columns.items()}}
            )
            pq.write_table(table, tmp)
        else:
            import csv

            with open(tmp, "w", newline="", encoding="utf-8") as f:
                writer = csv.writer(f, lineterminator="\n")
                writer.writerow([label, *columns])
                rest = [a.tolist() for a in columns.values()]
                for row in zip(labels.text(), *rest, strict=True):
                    writer.writerow([row[0], *(repr(v) for v in row[1:])])
                f.flush()
                os.fsync(f.fileno())
