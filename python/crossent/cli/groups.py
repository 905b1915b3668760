"""``crossent eval --group-by``: group labels read from a file, in step with the operands, and
turned into the integer codes ``0 ... G-1`` that crossent's grouped losses take.

Labels are factorised as they stream: each batch's distinct labels get the codes of the labels
seen before and new codes for new ones (in order of first appearance). At the end the labels
are sorted and the per-group results permuted into that order (:meth:`Factoriser.order`).
"""

from __future__ import annotations

import datetime
import os
import re
from collections.abc import Iterator
from typing import Any

import numpy as np

from crossent.cli import sources
from crossent.cli.errors import CliError, reason
from crossent.cli.sources import (
    LABELS,
    ArraySource,
    CsvSource,
    NpzMemberSource,
    Source,
    _check_column,
    _open_npy,
    split_spec,
)

#: File types a ``--group-by`` value may name (else it is a column of the operands' file).
FILE_TYPES = (".npy", ".npz", ".parquet", ".pq", ".csv")


class Factoriser:
    """Labels -> codes, in order of first appearance, consistent across batches."""

    def __init__(self) -> None:
        self.codes: dict[Any, int] = {}

    def encode(self, uniques: list[Any], inverse: np.ndarray) -> np.ndarray:
        """The codes of a batch given as its distinct labels and, per item, the index of its
        label among them."""
        codes = self.codes
        lut = np.fromiter(
            (codes.setdefault(u, len(codes)) for u in uniques), dtype=np.int64, count=len(uniques)
        )
        return lut[np.asarray(inverse, dtype=np.intp)]

    def labels(self) -> list[Any]:
        """The labels seen, indexed by code."""
        return list(self.codes)

    def order(self) -> np.ndarray:
        """The codes in the sorted order of their labels."""
        labels = self.labels()
        return np.array(sorted(range(len(labels)), key=labels.__getitem__), dtype=np.intp)


def label_text(label: Any) -> str:
    """A label as one printed field: strings as they are, dates in ISO 8601."""
    if isinstance(label, bytes):
        return label.decode("utf-8", "backslashreplace")
    if isinstance(label, (datetime.date, datetime.time)):
        return label.isoformat()
    return str(label)


def label_json(label: Any) -> Any:
    """A label as a JSON value: integers, booleans and strings as themselves, others as text."""
    if isinstance(label, (bool, int, str)):
        return label
    return label_text(label)


class Labels:
    """The sorted labels of a run's groups, for printing and for the output table."""

    def __init__(self, values: list[Any], numpy_dtype: Any = None, arrow_type: Any = None):
        self.values = values
        self.numpy_dtype = numpy_dtype
        self.arrow_type = arrow_type

    def text(self) -> list[str]:
        return [label_text(v) for v in self.values]

    def numpy(self) -> np.ndarray:
        """A NumPy array (the labels' own dtype where they came from NumPy; strings as
        fixed-width unicode, never Python objects, so that ``.npy`` needs no pickle)."""
        if self.numpy_dtype is not None:
            return np.array(self.values).astype(self.numpy_dtype)
        if self.arrow_type is not None:
            import pyarrow as pa

            if pa.types.is_date(self.arrow_type):
                return np.array(self.values, dtype="datetime64[D]")
            a = pa.array(self.values, type=self.arrow_type).to_numpy(zero_copy_only=False)
            if a.dtype != object:
                return np.asarray(a)
        if all(isinstance(v, bytes) for v in self.values) and self.values:
            return np.array(self.values, dtype=bytes)
        return np.array(self.text(), dtype=str)

    def arrow(self) -> Any:
        import pyarrow as pa

        if self.arrow_type is not None:
            return pa.array(self.values, type=self.arrow_type)
        return pa.array(self.numpy())


class ArrayGroups(Source):
    """Labels in a ``.npy`` file or an ``.npz`` member (integers, booleans, strings or dates):
    a stream of int64 codes, one per label; :attr:`factoriser` keeps the labels. Every
    ``--group-by`` source has :attr:`name` (the label column's name in the output table) and
    :meth:`result`."""

    def __init__(self, spec: str, raw: Source) -> None:
        super().__init__(spec, "group-by")
        self.factoriser = Factoriser()
        self.dtype = np.dtype(np.int64)
        self.name = "group"
        self.raw = raw
        self.shape = raw.shape
        self.label_dtype = raw.dtype
        self._chunks = self._codes()

    def _codes(self) -> Iterator[np.ndarray]:
        while not self.raw.exhausted():
            chunk = self.raw.take(sources.BATCH)
            uniques, inverse = np.unique(chunk, return_inverse=True)
            yield self.factoriser.encode(uniques.tolist(), inverse.reshape(-1))

    def close(self) -> None:
        self.raw.close()

    def result(self) -> tuple[np.ndarray, Labels]:
        """The codes in the sorted order of their labels, and the labels in that order."""
        order = self.factoriser.order()
        values = self.factoriser.labels()
        return order, Labels([values[i] for i in order], numpy_dtype=self.label_dtype)


#: Arrow types whose values are labels (compared and sorted as Python values).
def _label_type(pa: Any, t: Any) -> bool:
    types = pa.types
    return bool(
        types.is_integer(t)
        or types.is_boolean(t)
        or types.is_string(t)
        or types.is_large_string(t)
        or types.is_binary(t)
        or types.is_large_binary(t)
        or types.is_date(t)
        or types.is_timestamp(t)
        or types.is_time(t)
        or types.is_decimal(t)
    )


class ParquetGroups(Source):
    """Labels in a Parquet column of any type whose values compare: integers, booleans,
    strings, binary, dates, times, timestamps, decimals (dictionary-encoded or not)."""

    def __init__(self, spec: str, path: str, column: str) -> None:
        super().__init__(spec, "group-by")
        self.factoriser = Factoriser()
        self.dtype = np.dtype(np.int64)
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise CliError(
                f"--group-by {spec}: reading parquet needs pyarrow (pip install pyarrow)"
            ) from None
        try:
            pf = pq.ParquetFile(path)
            _check_column("group-by", spec, column, pf.schema_arrow.names)
            t = pf.schema_arrow.field(column).type
            self.shape = (pf.metadata.num_rows,)
            batches: Iterator[Any] = pf.iter_batches(
                batch_size=sources.PARQUET_ROWS, columns=[column]
            )
        except (OSError, pa.ArrowException) as e:
            raise CliError(f"--group-by {spec}: cannot read parquet ({reason(e)})") from None
        value_type = t.value_type if pa.types.is_dictionary(t) else t
        if not _label_type(pa, value_type):
            raise CliError(
                f"--group-by {spec}: column {column!r} is {t}; group labels are integers, "
                "booleans, strings, binary, dates, times, timestamps or decimals"
            )
        self.arrow_type = value_type
        self.name = column

        def chunks() -> Iterator[np.ndarray]:
            seen = 0
            try:
                for batch in batches:
                    col = batch.column(0)
                    if col.null_count:
                        row = seen + int(col.is_null().to_numpy(zero_copy_only=False).argmax())
                        raise CliError(
                            f"--group-by {spec}: column {column!r} has a missing value at row {row}"
                        )
                    seen += len(col)
                    if pa.types.is_dictionary(col.type):
                        col = col.dictionary_decode()
                    encoded = col.dictionary_encode()
                    yield self.factoriser.encode(
                        encoded.dictionary.to_pylist(),
                        encoded.indices.to_numpy(zero_copy_only=False),
                    )
            except (OSError, pa.ArrowException) as e:
                raise CliError(f"--group-by {spec}: cannot read parquet ({reason(e)})") from None

        self._chunks = chunks()

    def result(self) -> tuple[np.ndarray, Labels]:
        """The codes in the sorted order of their labels, and the labels in that order."""
        order = self.factoriser.order()
        values = self.factoriser.labels()
        return order, Labels([values[i] for i in order], arrow_type=self.arrow_type)


_CANONICAL_INT = re.compile(r"-?(?:0|[1-9][0-9]{0,18})", re.ASCII)


class CsvGroups(CsvSource):
    """Labels in a CSV column: the fields' text, stripped of surrounding white space (an empty
    field is a missing value, refused). When every label is an integer written in its one
    canonical form (``-12``, not ``012`` or ``+12``) the labels are those integers, sorted as
    numbers; otherwise they are strings, sorted as text."""

    def __init__(self, spec: str, path: str, column: str) -> None:
        self.factoriser = Factoriser()
        super().__init__(spec, "group-by", path, column)
        self.dtype = np.dtype(np.int64)
        self.name = column

    def _missing(self, row: int) -> CliError:
        return CliError(
            f"--group-by {self.spec}: column {self.column!r} has a missing value at row {row}"
        )

    def _python_field(self, row: int, field: str) -> Any:
        if not field:
            raise self._missing(row)
        return field

    def _python_batch(self, values: list[Any]) -> np.ndarray:
        uniques, inverse = np.unique(np.array(values, dtype=object), return_inverse=True)
        return self.factoriser.encode(uniques.tolist(), inverse.reshape(-1))

    def _arrow_batch(self, col: Any, row: int) -> np.ndarray:
        import pyarrow.compute as pc

        empty = pc.equal(pc.utf8_length(col), 0)
        if pc.any(empty).as_py():
            raise self._missing(row + int(np.argmax(empty.to_numpy(zero_copy_only=False))))
        encoded = col.dictionary_encode()
        return self.factoriser.encode(
            encoded.dictionary.to_pylist(), encoded.indices.to_numpy(zero_copy_only=False)
        )

    def result(self) -> tuple[np.ndarray, Labels]:
        """The codes in the sorted order of their labels, and the labels in that order."""
        values: list[Any] = self.factoriser.labels()
        dtype: Any = None
        if values and all(_CANONICAL_INT.fullmatch(v) for v in values):
            numbers = [int(v) for v in values]
            if all(-(2**63) <= n < 2**63 for n in numbers):
                values, dtype = numbers, np.int64
        order = np.array(sorted(range(len(values)), key=values.__getitem__), dtype=np.intp)
        return order, Labels([values[i] for i in order], numpy_dtype=dtype)


#: A ``--group-by`` operand.
GroupSource = ArrayGroups | ParquetGroups | CsvGroups


def is_file_spec(spec: str) -> bool:
    """Whether a ``--group-by`` value names a file (by its extension) rather than a column."""
    path, _ = split_spec(spec)
    return os.path.splitext(path)[1].lower() in FILE_TYPES


def open_groups(spec: str, tables: list[str]) -> GroupSource:
    """The labels ``--group-by`` names: a file (``g.npy``, ``g.npz[:key]``,
    ``t.parquet:column``, ``t.csv:column``), or a bare column name of the first Parquet or CSV
    file among the operands' files (``tables``)."""
    if not is_file_spec(spec):
        if not tables:
            raise CliError(
                f"--group-by {spec}: not a file (.npy, .npz, .parquet, .csv) and no operand is "
                "a Parquet or CSV column to take it from; give FILE[:KEY]"
            )
        spec = f"{tables[0]}:{spec}"
    path, key = split_spec(spec)
    if not os.path.exists(path):
        raise CliError(f"--group-by {spec}: no such file")
    if os.path.isdir(path):
        raise CliError(f"--group-by {spec}: is a directory")
    ext = os.path.splitext(path)[1].lower()
    if ext == ".npy":
        if key is not None:
            raise CliError(f"--group-by {spec}: a .npy file holds one array; drop ':{key}'")
        array = _open_npy(spec, "group-by", path, LABELS)
        return ArrayGroups(spec, ArraySource(spec, "group-by", array, LABELS))
    if ext == ".npz":
        return ArrayGroups(spec, NpzMemberSource(spec, "group-by", path, key, LABELS))
    if key is None:
        raise CliError(f"--group-by {spec}: name the column as {path}:COLUMN")
    if ext == ".csv":
        return CsvGroups(spec, path, key)
    return ParquetGroups(spec, path, key)
