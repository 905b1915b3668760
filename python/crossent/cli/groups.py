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


class NumpyFactoriser:
    """Labels -> codes, in order of first appearance, consistent across batches, for labels
    that NumPy sorts (integers, booleans, strings, bytes, dates). The labels seen are kept
    sorted, beside their codes: a batch's distinct labels are looked up by binary search, and
    the new ones inserted (vectorised; no Python object per label)."""

    def __init__(self) -> None:
        self.sorted: np.ndarray | None = None
        self.codes = np.empty(0, dtype=np.int64)

    def encode(self, chunk: np.ndarray) -> np.ndarray:
        """The codes of a batch of labels."""
        dense = _dense(chunk)
        if dense is None:
            uniques, inverse = np.unique(chunk, return_inverse=True)
            return self._codes(uniques)[inverse.reshape(-1)]
        # Integers of a narrow range: the distinct values and each item's index among them
        # by counting, not sorting.
        offset, low = dense
        present = np.flatnonzero(np.bincount(offset))
        codes = self._codes((present + low).astype(chunk.dtype))
        lookup = np.zeros(int(present[-1]) + 1 if present.size else 0, dtype=np.int64)
        lookup[present] = codes
        result: np.ndarray = lookup[offset]
        return result

    def _codes(self, uniques: np.ndarray) -> np.ndarray:
        """The codes of a batch's distinct labels (sorted), giving new labels new codes."""
        known = self.sorted
        if known is None:
            known = uniques[:0]
        at = np.searchsorted(known, uniques)
        found = at < known.size
        found[found] = known[at[found]] == uniques[found]
        codes = np.empty(uniques.size, dtype=np.int64)
        codes[found] = self.codes[at[found]]
        new = ~found
        codes[new] = np.arange(self.codes.size, self.codes.size + int(new.sum()))
        if new.any() or self.sorted is None:
            # Widen (strings of more characters) before inserting: np.insert casts to the
            # array's dtype.
            wide = known.astype(np.result_type(known, uniques), copy=False)
            self.sorted = np.insert(wide, at[new], uniques[new])
            self.codes = np.insert(self.codes, at[new], codes[new])
        return codes

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """The codes in the sorted order of their labels, and the labels in that order."""
        if self.sorted is None:
            return np.empty(0, dtype=np.intp), np.empty(0)
        return self.codes.astype(np.intp), self.sorted


def _dense(chunk: np.ndarray) -> tuple[np.ndarray, int] | None:
    """For integer (or boolean) labels spanning a range no wider than a few times the batch:
    each label's offset from the least (int64), and the least; else ``None``."""
    if chunk.dtype.kind not in "biu" or not chunk.size:
        return None
    low, high = int(chunk.min()), int(chunk.max())
    if high - low > max(4 * chunk.size, 1 << 16) or high >= 2**63:
        return None
    return chunk.astype(np.int64) - low, low


class ArrowFactoriser:
    """Labels -> codes, in order of first appearance, consistent across batches, for labels in
    Arrow arrays: a label's code is its position in :attr:`known`, the distinct labels in
    order of first appearance. A batch is dictionary-encoded behind the labels known (Arrow
    numbers a dictionary in order of first appearance), so that known labels keep their codes
    and new ones get the next."""

    def __init__(self) -> None:
        self.known: Any = None

    def encode(self, col: Any) -> np.ndarray:
        import pyarrow as pa

        if self.known is None:
            self.known = col.slice(0, 0)
        size = len(self.known)
        encoded = pa.concat_arrays([self.known, col]).dictionary_encode()
        self.known = encoded.dictionary
        return np.asarray(encoded.indices.to_numpy(zero_copy_only=False)[size:], dtype=np.int64)

    def result(self, type: Any) -> tuple[np.ndarray, Any]:
        """The codes in the sorted order of their labels, and the labels in that order (an
        Arrow array of ``type``)."""
        import pyarrow as pa
        import pyarrow.compute as pc

        if self.known is None:
            return np.empty(0, dtype=np.intp), pa.array([], type=type)
        order = np.asarray(pc.sort_indices(self.known).to_numpy(), dtype=np.intp)
        return order, self.known.take(pa.array(order))


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
    """The sorted labels of a run's groups (a NumPy or a pyarrow array), for printing and for
    the output table."""

    def __init__(self, array: Any) -> None:
        self.array = array

    def __len__(self) -> int:
        return len(self.array)

    @property
    def values(self) -> list[Any]:
        """The labels as Python values (NumPy dates and times as ISO 8601 text)."""
        if isinstance(self.array, np.ndarray):
            if self.array.dtype.kind == "M":
                return [str(v) for v in np.datetime_as_string(self.array).tolist()]
            return list(self.array.tolist())
        return list(self.array.to_pylist())

    def text(self) -> list[str]:
        return [label_text(v) for v in self.values]

    def numpy(self) -> np.ndarray:
        """A NumPy array: the labels' own dtype where they came from NumPy; otherwise dates
        and timestamps as ``datetime64``, strings as fixed-width unicode, binary as bytes,
        anything else as text; never Python objects, so that ``.npy`` needs no pickle."""
        if isinstance(self.array, np.ndarray):
            return self.array
        import pyarrow as pa

        t = self.array.type
        if pa.types.is_date32(t):
            days = self.array.cast(pa.int32()).to_numpy(zero_copy_only=False)
            return np.asarray(days).astype("datetime64[D]")
        if pa.types.is_binary(t) or pa.types.is_large_binary(t):
            return np.array(self.values, dtype=bytes)
        if not (pa.types.is_string(t) or pa.types.is_large_string(t)):
            a = np.asarray(self.array.to_numpy(zero_copy_only=False))
            if a.dtype != object:
                return a
        return np.array(self.text(), dtype=str)

    def arrow(self) -> Any:
        import pyarrow as pa

        if isinstance(self.array, np.ndarray):
            return pa.array(self.array)
        return self.array


class ArrayGroups(Source):
    """Labels in a ``.npy`` file or an ``.npz`` member (integers, booleans, strings or dates):
    a stream of int64 codes, one per label; :attr:`factoriser` keeps the labels. Every
    ``--group-by`` source has :attr:`name` (the label column's name in the output table) and
    :meth:`result`."""

    def __init__(self, spec: str, raw: Source) -> None:
        super().__init__(spec, "group-by")
        self.factoriser = NumpyFactoriser()
        self.dtype = np.dtype(np.int64)
        self.name = "group"
        self.raw = raw
        self.shape = raw.shape
        self._chunks = self._codes()

    def _codes(self) -> Iterator[np.ndarray]:
        while not self.raw.exhausted():
            yield self.factoriser.encode(self.raw.take(sources.BATCH))

    def close(self) -> None:
        self.raw.close()

    def result(self) -> tuple[np.ndarray, Labels]:
        """The codes in the sorted order of their labels, and the labels in that order."""
        order, labels = self.factoriser.result()
        return order, Labels(labels.astype(self.raw.dtype, copy=False))


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
        self.factoriser = ArrowFactoriser()
        # Integers and booleans go through NumPy (counted where their range is narrow).
        self.numbers: NumpyFactoriser | None = None
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
        if pa.types.is_integer(value_type) or pa.types.is_boolean(value_type):
            self.numbers = NumpyFactoriser()

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
                    if self.numbers is not None:
                        yield self.numbers.encode(np.asarray(col.to_numpy(zero_copy_only=False)))
                    else:
                        yield self.factoriser.encode(col)
            except (OSError, pa.ArrowException) as e:
                raise CliError(f"--group-by {spec}: cannot read parquet ({reason(e)})") from None

        self._chunks = chunks()

    def result(self) -> tuple[np.ndarray, Labels]:
        """The codes in the sorted order of their labels, and the labels in that order."""
        if self.numbers is not None:
            import pyarrow as pa

            order, values = self.numbers.result()
            return order, Labels(pa.array(values, type=self.arrow_type))
        order, labels = self.factoriser.result(self.arrow_type)
        return order, Labels(labels)


_CANONICAL_INT = re.compile(r"-?(?:0|[1-9][0-9]{0,18})", re.ASCII)


class CsvGroups(CsvSource):
    """Labels in a CSV column: the fields' text, stripped of surrounding white space (an empty
    field is a missing value, refused). When every label is an integer written in its one
    canonical form (``-12``, not ``012`` or ``+12``) the labels are those integers, sorted as
    numbers; otherwise they are strings, sorted as text."""

    def __init__(self, spec: str, path: str, column: str) -> None:
        self.numpy_labels = NumpyFactoriser()  # the pure-Python reader's
        self.arrow_labels = ArrowFactoriser()  # pyarrow's
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
        return self.numpy_labels.encode(np.array(values, dtype=str))

    def _arrow_batch(self, col: Any, row: int) -> np.ndarray:
        import pyarrow.compute as pc

        empty = pc.equal(pc.utf8_length(col), 0)
        if pc.any(empty).as_py():
            raise self._missing(row + int(np.argmax(empty.to_numpy(zero_copy_only=False))))
        return self.arrow_labels.encode(col)

    def result(self) -> tuple[np.ndarray, Labels]:
        """The codes in the sorted order of their labels, and the labels in that order: as
        integers where every label is one in canonical form, else as text."""
        if self.arrow_labels.known is not None:
            import pyarrow as pa

            order, arrow = self.arrow_labels.result(pa.string())
            text = np.array(arrow.to_pylist(), dtype=str)
        else:
            order, text = self.numpy_labels.result()
            text = text.astype(str)
        values = text.tolist()
        if values and all(_CANONICAL_INT.fullmatch(v) for v in values):
            numbers = [int(v) for v in values]
            if all(-(2**63) <= n < 2**63 for n in numbers):
                ints = np.array(numbers, dtype=np.int64)
                by_value = np.argsort(ints, kind="stable")
                return order[by_value], Labels(ints[by_value])
        return order, Labels(text)


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
