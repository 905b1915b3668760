"""The Arrow PyCapsule interface: Arrow arrays (``__arrow_c_array__``) are read in place, and
chunked columns (``__arrow_c_stream__``: pyarrow ChunkedArray and RecordBatchReader, polars,
DuckDB) stream chunk by chunk through the accumulators, giving the bits of one call over
the concatenated column. Nulls raise ``ValueError`` naming the argument and the position.

Zero copy is shown two ways: the views share memory with the Arrow buffers
(``np.shares_memory``), and a subprocess measures the peak resident memory of calls on
128 MiB chunked columns (a copy would show; a byte-swapped NumPy array is the control)."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from support import same_bits

import crossent
from crossent import _arrow

pa = pytest.importorskip("pyarrow")

HAVE_PROC = Path("/proc/self/clear_refs").exists()
N = 3 * crossent.BLOCK + 1234  # several blocks and a partial one


def chunked(a: np.ndarray[Any, Any], cuts: list[int]) -> Any:
    """`a` as a pyarrow ChunkedArray cut at `cuts`."""
    bounds = [0, *cuts, len(a)]
    return pa.chunked_array([pa.array(a[s:e]) for s, e in itertools.pairwise(bounds)])


def data(seed: int = 0, dtype: Any = np.float64) -> tuple[Any, Any, Any, Any]:
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.01, 0.99, N).astype(dtype)
    x = rng.normal(0, 3, N).astype(dtype)
    y = (rng.random(N) < 0.5).astype(np.int64)
    w = rng.uniform(0.5, 2.0, N).astype(dtype)
    return p, x, y, w


def arrow_buffer(arr: Any, dtype: Any) -> Any:
    """The values buffer of a pyarrow primitive array, as NumPy sees the memory."""
    return np.frombuffer(arr.buffers()[1], dtype=dtype)


# --- arrays read in place -------------------------------------------------------------------


@pytest.mark.parametrize(
    "dtype", [np.float32, np.float64, np.int8, np.uint8, np.int32, np.int64, np.uint16]
)
def test_primitive_arrays_are_views_of_the_arrow_buffer(dtype: Any) -> None:
    a = pa.array(np.arange(100).astype(dtype))
    view = _arrow.as_ndarray(a, "input")
    assert view.dtype == np.dtype(dtype)
    assert np.shares_memory(view, arrow_buffer(a, dtype))
    np.testing.assert_array_equal(view, np.arange(100).astype(dtype))
    # A slice (non-zero offset) is a view at that offset.
    s = a.slice(7, 50)
    sv = _arrow.as_ndarray(s, "input")
    assert np.shares_memory(sv, arrow_buffer(a, dtype))
    np.testing.assert_array_equal(sv, np.arange(7, 57).astype(dtype))


def test_functions_take_arrow_arrays() -> None:
    p, x, y, w = data()
    pa_p, pa_x, pa_y, pa_w = (pa.array(v) for v in (p, x, y, w))
    assert crossent.binary_cross_entropy(pa_p, pa_y) == crossent.binary_cross_entropy(p, y)
    assert crossent.binary_cross_entropy(
        pa_p.slice(5, 1000), pa_y.slice(5, 1000), weight=pa_w.slice(5, 1000)
    ) == crossent.binary_cross_entropy(p[5:1005], y[5:1005], weight=w[5:1005])
    got = crossent.binary_cross_entropy_with_logits(pa_x, pa_y, reduction="none")
    np.testing.assert_array_equal(
        got, crossent.binary_cross_entropy_with_logits(x, y, reduction="none")
    )
    assert crossent.entropy(pa_p) == crossent.entropy(p)
    assert crossent.kl_divergence(pa_p, pa_w) == crossent.kl_divergence(p, w)


def test_boolean_columns_are_unpacked() -> None:
    p, _, y, _ = data()
    got = crossent.binary_cross_entropy(pa.array(p[3:]), pa.array(y.astype(bool)).slice(3))
    assert got == crossent.binary_cross_entropy(p[3:], y[3:].astype(bool))


def test_fixed_size_lists_are_rows() -> None:
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(500, 7)).astype(np.float32)
    labels = rng.integers(0, 7, 500)
    fsl = pa.FixedSizeListArray.from_arrays(pa.array(logits.ravel()), 7)
    view = _arrow.as_ndarray(fsl.slice(10, 100), "logits")
    assert view.shape == (100, 7)
    assert np.shares_memory(view, arrow_buffer(fsl.values, np.float32))
    np.testing.assert_array_equal(view, logits[10:110])
    assert crossent.softmax_cross_entropy(fsl, pa.array(labels)) == (
        crossent.softmax_cross_entropy(logits, labels)
    )


def test_nanoarrow_arrays() -> None:
    na = pytest.importorskip("nanoarrow")
    p, _, y, _ = data()
    assert crossent.binary_cross_entropy(na.Array(pa.array(p)), na.Array(pa.array(y))) == (
        crossent.binary_cross_entropy(p, y)
    )


# --- chunked columns: one call's bits ------------------------------------------------------


CUTS = {
    "p": [1000, 8192, 8200, 20000],  # a chunk shorter than a block, one on a block boundary
    "y": [5, 17000],
    "w": [4096 * 3 + 1],
}


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_chunked_bce_equals_one_call_bit_for_bit(reduction: str, dtype: Any) -> None:
    p, x, y, w = data(2, dtype)
    cp, cx, cy, cw = (
        chunked(p, CUTS["p"]),
        chunked(x, CUTS["p"]),
        chunked(y, CUTS["y"]),
        chunked(w, CUTS["w"]),
    )
    # Different chunk boundaries in every operand; an ndarray operand goes along.
    got = crossent.binary_cross_entropy(cp, cy, weight=cw, reduction=reduction)
    ref = crossent.binary_cross_entropy(p, y, weight=w, reduction=reduction)
    np.testing.assert_array_equal(got, ref)
    got = crossent.binary_cross_entropy_with_logits(
        cx, y, weight=w, pos_weight=np.array([1.5]), reduction=reduction
    )
    ref = crossent.binary_cross_entropy_with_logits(
        x, y, weight=w, pos_weight=np.array([1.5]), reduction=reduction
    )
    np.testing.assert_array_equal(got, ref)


def test_chunk_boundaries_anywhere_give_one_calls_bits() -> None:
    """Chunks cut off the block grid: the block straddling each boundary is reduced whole
    (without that, most of these cuts change the last bits of the sum)."""
    rng = np.random.default_rng(10)
    n = 20 * crossent.BLOCK + 1234
    p = rng.uniform(0.01, 0.99, n)
    y = (rng.random(n) < 0.5).astype(np.uint8)
    ref = crossent.binary_cross_entropy(p, y, reduction="sum")
    for _ in range(10):
        cuts = sorted(int(c) for c in rng.choice(n, 6, replace=False))
        ycuts = sorted(int(c) for c in rng.choice(n, 3, replace=False))
        got = crossent.binary_cross_entropy(chunked(p, cuts), chunked(y, ycuts), reduction="sum")
        assert got == ref, (cuts, ycuts)


def test_chunked_gradients_and_out() -> None:
    _, x, y, _w = data(3)
    g, h = crossent.binary_cross_entropy_with_logits_grad(chunked(x, [3, 9000]), chunked(y, [7]))
    g0, h0 = crossent.binary_cross_entropy_with_logits_grad(x, y)
    np.testing.assert_array_equal(g, g0)
    np.testing.assert_array_equal(h, h0)
    out = np.empty(N)
    got = crossent.binary_cross_entropy(
        chunked(np.clip(np.abs(x) / 10, 0, 1), [100]), y, reduction="none", out=out
    )
    assert got is out
    with pytest.raises(ValueError, match="reduction='sum'"):
        crossent.binary_cross_entropy_with_logits_grad(chunked(x, [3]), y, reduction="mean")


@pytest.mark.parametrize("name", ["entropy", "cross_entropy", "kl_divergence", "jensen_shannon"])
def test_chunked_divergences_equal_one_call_bit_for_bit(name: str) -> None:
    rng = np.random.default_rng(4)
    n = 2 * crossent.CHUNK + 999
    p, q = rng.uniform(0.01, 1, n), rng.uniform(0.01, 1, n)
    f = getattr(crossent, name)
    normalize = name != "jensen_shannon"
    args: tuple[Any, ...] = (chunked(p, [10, crossent.CHUNK + 3]),)
    ref_args: tuple[Any, ...] = (p,)
    if name != "entropy":
        args, ref_args = (*args, chunked(q, [50000])), (p, q)
    assert f(*args, normalize=normalize) == f(*ref_args, normalize=normalize)
    # Rows of a fixed-size-list column: one value per row.
    rows = rng.uniform(0.01, 1, (300, 5)).astype(np.float32)
    fsl = pa.chunked_array(
        [
            pa.FixedSizeListArray.from_arrays(pa.array(rows[a:b].ravel()), 5)
            for a, b in ((0, 120), (120, 300))
        ]
    )
    row_args = (fsl,) if name == "entropy" else (fsl, rows)
    np.testing.assert_array_equal(
        f(*row_args, axis=-1), f(*((rows,) if name == "entropy" else (rows, rows)), axis=-1)
    )


def test_jensen_shannon_normalised_over_a_stream_is_refused() -> None:
    p = np.full(10, 0.1)
    with pytest.raises(ValueError, match="normalize=False"):
        crossent.jensen_shannon(chunked(p, [4]), p)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_chunked_softmax_equals_one_call_bit_for_bit(reduction: str) -> None:
    rng = np.random.default_rng(5)
    n, c = 20000, 10  # CHUNK // C rows per block: several blocks
    logits = rng.normal(size=(n, c))
    labels = rng.integers(0, c, n)
    labels[::7] = -100
    fsl = pa.chunked_array(
        [
            pa.FixedSizeListArray.from_arrays(pa.array(logits[a:b].ravel()), c)
            for a, b in ((0, 3000), (3000, 3001), (3001, n))
        ]
    )
    kw: dict[str, Any] = {"weight": np.linspace(0.5, 2, c), "label_smoothing": 0.1}
    got = crossent.softmax_cross_entropy(fsl, chunked(labels, [9999]), reduction=reduction, **kw)
    np.testing.assert_array_equal(
        got, crossent.softmax_cross_entropy(logits, labels, reduction=reduction, **kw)
    )


def test_accumulator_update_takes_a_stream() -> None:
    p, _, y, w = data(6)
    acc = crossent.BinaryCrossEntropyAccumulator(reduction="sum")
    acc.update(chunked(p, CUTS["p"]), chunked(y, CUTS["y"]), weight=w)
    assert acc.result() == crossent.binary_cross_entropy(p, y, weight=w, reduction="sum")
    ent = crossent.EntropyAccumulator()
    ent.update(chunked(p, [77]))
    assert ent.result() == crossent.entropy(p)
    # A bad value in a later chunk: the error names its position in the column, and the
    # accumulator is left unchanged, as for one array.
    bad = p.copy()
    bad[N - 5] = 1.5
    acc = crossent.BinaryCrossEntropyAccumulator()
    acc.update(p[:10], y[:10])
    before = (acc.count, acc.sum)
    with pytest.raises(crossent.DomainError, match=rf"found 1\.5 at index \({N - 5},\)") as e:
        acc.update(chunked(bad, [100, 9000]), y)
    assert (e.value.argument, e.value.index, e.value.value) == ("input", (N - 5,), 1.5)
    assert (acc.count, acc.sum) == before


def test_streams_without_rows_give_what_empty_arrays_give() -> None:
    empty = pa.chunked_array([], type=pa.float64())
    labels = pa.chunked_array([], type=pa.int64())
    assert np.isnan(crossent.binary_cross_entropy(empty, labels))
    assert crossent.binary_cross_entropy(empty, labels, reduction="sum") == 0.0
    none = crossent.binary_cross_entropy(empty, labels, reduction="none")
    assert none.shape == (0,) and none.dtype == np.float64
    rows = pa.chunked_array([], type=pa.list_(pa.float32(), 3))
    assert crossent.softmax_cross_entropy(rows, labels, reduction="none").shape == (0,)


def test_record_batch_reader_and_tables() -> None:
    p, _, y, _ = data(7)
    table = pa.table({"p": chunked(p, [100, 9000])})
    reader = pa.RecordBatchReader.from_batches(table.schema, table.to_batches())
    assert crossent.binary_cross_entropy(reader, y) == crossent.binary_cross_entropy(p, y)
    with pytest.raises(TypeError, match=r"'input' is an Arrow table of 2 columns \('p', 'y'\)"):
        crossent.binary_cross_entropy(pa.table({"p": p, "y": y}), y)


def test_polars_series() -> None:
    pl = pytest.importorskip("polars")
    p, _, y, _ = data(8, np.float32)
    s = pl.Series(p)
    view = _arrow.as_ndarray(s, "input")
    assert np.shares_memory(view, s.to_numpy())  # to_numpy is itself a view of the buffer
    two = pl.concat([pl.Series(p[:5000]), pl.Series(p[5000:])], rechunk=False)
    assert two.n_chunks() == 2
    assert crossent.binary_cross_entropy(two, pl.Series(y)) == crossent.binary_cross_entropy(p, y)
    got = crossent.binary_cross_entropy(two, y, reduction="none")
    np.testing.assert_array_equal(got, crossent.binary_cross_entropy(p, y, reduction="none"))


def test_duckdb_results_passed_straight_in() -> None:
    duckdb = pytest.importorskip("duckdb")
    p, _, y, _ = data(9)
    con = duckdb.connect()
    con.execute("create table t (i bigint, p double, y bigint)")
    con.executemany(
        "insert into t values (?, ?, ?)", list(zip(range(N), p.tolist(), y.tolist(), strict=True))
    )
    ref = crossent.binary_cross_entropy(p, y)
    # Two results of one connection (read one after the other) and a result with an array.
    got = crossent.binary_cross_entropy(
        con.sql("select p from t order by i"), con.sql("select y from t order by i")
    )
    assert got == ref
    assert crossent.binary_cross_entropy(con.sql("select p from t order by i"), y) == ref
    # Per-element results of a stream whose length is not known before it is read (len() of
    # a DuckDB result would run a second query while the first is open, which DuckDB refuses).
    each = crossent.binary_cross_entropy(con.sql("select p from t order by i"), y, reduction="none")
    assert same_bits(each, crossent.binary_cross_entropy(p, y, reduction="none"))
    grad = crossent.binary_cross_entropy_with_logits_grad(con.sql("select p from t order by i"), y)
    want = crossent.binary_cross_entropy_with_logits_grad(p, y)
    assert all(same_bits(g, w) for g, w in zip(grad, want, strict=True))
    # A SQL NULL in a float column is NaN.
    with_null = crossent.binary_cross_entropy(
        con.sql("select case when i = 3 then null else p end from t order by i"),
        y,
        reduction="none",
    )
    assert np.isnan(with_null[3]) and not np.isnan(np.delete(with_null, 3)).any()


# --- errors ---------------------------------------------------------------------------------


def with_nan(values: Any, nulls: Any) -> Any:
    """`values` as float64 with NaN where `nulls` (positions) are."""
    out = np.array(values, dtype=np.float64)
    out[nulls] = np.nan
    return out


def test_float_nulls_are_read_as_nan_in_every_layout() -> None:
    """A null in a float column is NaN (so nan_policy decides): the result has the bits of
    the same call on a NumPy array with NaN there, whatever the Arrow layout holding it, and
    the column the caller passed is left as it was."""
    rng = np.random.default_rng(7)
    n = 2 * crossent.BLOCK + 99
    p = rng.uniform(0.05, 0.95, n)
    y = (rng.random(n) < 0.5).astype(np.float64)
    nulls = [1, crossent.BLOCK + 3, n - 1]
    mask = np.zeros(n, bool)
    mask[nulls] = True
    want = crossent.binary_cross_entropy(with_nan(p, nulls), y, reduction="none")
    arrow_p = pa.array(p, mask=mask)
    before = arrow_p.to_pylist()
    layouts = {
        "array": arrow_p,
        "slice": pa.array(np.concatenate([[0.5], p]), mask=np.concatenate([[False], mask])).slice(
            1
        ),
        "chunked": pa.chunked_array(
            [arrow_p[:5], arrow_p[5 : crossent.BLOCK + 10], arrow_p[crossent.BLOCK + 10 :]]
        ),
        "struct": pa.StructArray.from_arrays([pa.array(p)], names=["p"], mask=pa.array(mask)),
    }
    for name, col in layouts.items():
        got = crossent.binary_cross_entropy(col, y, reduction="none")
        assert same_bits(got, want), name
        assert np.isnan(crossent.binary_cross_entropy(col, y)), name
    # As the weight, and float32 stays float32.
    w = pa.array(np.ones(n, np.float32), mask=mask)
    got = crossent.binary_cross_entropy(p.astype(np.float32), y, weight=w, reduction="none")
    assert got.dtype == np.float32 and np.isnan(got[nulls]).all() and not np.isnan(got[~mask]).any()
    assert arrow_p.to_pylist() == before
    # Fixed-size lists: a null slot, and a null row (all its slots).
    x = rng.normal(size=(6, 3))
    slots = pa.array(x.ravel(), mask=np.isin(np.arange(18), [4]))
    fsl = pa.FixedSizeListArray.from_arrays(slots, 3, mask=pa.array([False] * 4 + [True, False]))
    want_x = x.copy()
    want_x[1, 1] = np.nan
    want_x[4] = np.nan
    labels = np.zeros(6, np.int64)
    got = crossent.softmax_cross_entropy(fsl, labels, reduction="none")
    assert same_bits(got, crossent.softmax_cross_entropy(want_x, labels, reduction="none"))


def test_nulls_without_nan_are_refused_naming_the_argument_and_position() -> None:
    """Integer and boolean columns have no NaN: a null there is an error naming the argument
    and its position in the whole column (in a slice, the slice's position)."""
    with pytest.raises(ValueError, match="'target' holds a null at position 1: its type, int64"):
        crossent.binary_cross_entropy(np.full(3, 0.5), pa.array([1, None, 0]).slice(0))
    with pytest.raises(ValueError, match="'target' holds a null at position 2: its type, bool"):
        crossent.binary_cross_entropy(np.full(3, 0.5), pa.array([True, False, None]))
    with pytest.raises(ValueError, match="'target' holds a null at position 3"):
        crossent.binary_cross_entropy(np.full(4, 0.5), pa.array([None, 1, 0, 1, None]).slice(1))
    with pytest.raises(ValueError, match="'target' holds a null at position 3"):
        crossent.binary_cross_entropy(np.full(4, 0.5), pa.chunked_array([[1, 0], [1, None]]))
    ints = pa.FixedSizeListArray.from_arrays(pa.array([1, 2, None, 4]), 2)
    with pytest.raises(ValueError, match=r"'p' holds a null at position \(1, 0\)"):
        crossent.entropy(ints)


def test_refused_types_and_lengths() -> None:
    with pytest.raises(TypeError, match="'input' is an Arrow array of type string"):
        crossent.binary_cross_entropy(pa.array(["a"]), np.ones(1))
    with pytest.raises(TypeError, match="'target' is a dictionary-encoded Arrow array"):
        crossent.binary_cross_entropy(np.ones(2) / 2, pa.array([1, 0]).dictionary_encode())
    with pytest.raises(ValueError, match="'input' has 3 rows but 'target' has more"):
        crossent.binary_cross_entropy(pa.chunked_array([[0.5, 0.2], [0.1]]), np.ones(4))
    # A chunked class weight (a fixed parameter) is not silently concatenated.
    with pytest.raises(TypeError, match="'weight' is an Arrow stream of 2 chunks"):
        crossent.softmax_cross_entropy(
            np.zeros((2, 3)), np.zeros(2, np.int64), weight=pa.chunked_array([[1.0], [1.0, 1.0]])
        )


def test_pandas_keeps_the_numpy_path() -> None:
    """pandas exports Arrow by converting (NaN becomes null): NumPy reads it in place."""
    pd = pytest.importorskip("pandas")
    p = np.array([0.5, np.nan, 0.25])
    assert np.isnan(crossent.binary_cross_entropy(pd.Series(p), np.ones(3)))


# --- no copy: peak resident memory ------------------------------------------------------------

SCRIPT = textwrap.dedent(
    """
    import json, numpy as np, pyarrow as pa, crossent

    N = 1 << 24  # 128 MiB of float64

    def status(key):
        for line in open("/proc/self/status"):
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
        raise KeyError(key)

    def growth(call):
        call()
        before = status("VmRSS")
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        call()
        return status("VmHWM") - before

    rng = np.random.default_rng(0)
    p = rng.random(N)
    y = (p > 0.5).view(np.uint8)
    cuts = [0, 1000, N // 3 + 7, N // 2, N - 12345, N]
    cp = pa.chunked_array([pa.array(p[a:b]) for a, b in zip(cuts, cuts[1:])])
    cy = pa.chunked_array([pa.array(y[: N // 5]), pa.array(y[N // 5 :])])
    out = {
        "pyarrow array": growth(lambda: crossent.binary_cross_entropy(pa.array(p), y)),
        "chunked, mean": growth(lambda: crossent.binary_cross_entropy(cp, cy)),
        "chunked, accumulator": growth(
            lambda: crossent.BinaryCrossEntropyAccumulator().update(cp, cy)),
        "chunked entropy": growth(lambda: crossent.entropy(cp)),
    }
    try:
        import polars as pl
        s = pl.concat([pl.Series(p[: N // 2]), pl.Series(p[N // 2 :])], rechunk=False)
        out["polars, 2 chunks"] = growth(lambda: crossent.binary_cross_entropy(s, y))
    except ImportError:
        pass
    out["control: byte-swapped"] = growth(
        lambda: crossent.binary_cross_entropy(p.astype(">f8"), y))
    print(json.dumps(out))
    """
)


@pytest.mark.skipif(not HAVE_PROC, reason="needs Linux /proc/self/clear_refs")
def test_no_copy_peak_memory() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr
    growth = json.loads(proc.stdout)
    mib = 1 << 20
    # The measurement sees a copy: the control converts 128 MiB.
    assert growth.pop("control: byte-swapped") > 100 * mib
    for name, g in growth.items():
        assert g < 4 * mib, f"{name}: peak memory grew by {g / mib:.1f} MiB"
