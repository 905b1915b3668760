"""Per-group losses over chunked Arrow columns: values and group codes given as Arrow streams
(pyarrow ChunkedArray and RecordBatchReader, polars, DuckDB results), their chunks cut at
different rows, fold through the per-group state without being concatenated. The result has
the bits of one call over the concatenated arrays, and matches a float64 pandas ``groupby``.
A subprocess measures the peak resident memory to show that nothing is copied."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from support import same_bits

import crossent

pa = pytest.importorskip("pyarrow")

HAVE_PROC = Path("/proc/self/clear_refs").exists()
N = 3 * crossent.BLOCK + 1234  # several blocks and a partial one
G = 53
# Chunk boundaries of each operand: within blocks, on a block boundary, and a short chunk.
CUTS = {
    "p": [1000, crossent.BLOCK, crossent.BLOCK + 8, 20000],
    "y": [5, 17000],
    "w": [crossent.BLOCK * 2 - 1],
    "g": [3, 4000, crossent.BLOCK + 1, 2 * crossent.BLOCK, 2 * crossent.BLOCK + 2],
}
ARROW_INTS = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")


def chunked(a: Any, cuts: list[int]) -> Any:
    """`a` as a pyarrow ChunkedArray cut at `cuts`."""
    bounds = [0, *cuts, len(a)]
    return pa.chunked_array([pa.array(a[s:e]) for s, e in itertools.pairwise(bounds)])


def sliced(a: Any, cuts: list[int]) -> Any:
    """`a` as a ChunkedArray of slices (non-zero offsets) of larger arrays."""
    bounds = [0, *cuts, len(a)]
    pad = np.zeros(7, dtype=a.dtype)
    return pa.chunked_array(
        [
            pa.array(np.concatenate([pad, a[s:e], pad])).slice(7, e - s)
            for s, e in itertools.pairwise(bounds)
        ]
    )


def ref(loss: Any, codes: Any, n: int, reduction: str, over: Any = None) -> Any:
    """The float64 pandas reference: each group's mean (over `over` when given) or sum."""
    frame = pd.DataFrame({"loss": np.asarray(loss, np.float64), "g": np.asarray(codes)})
    if reduction == "sum":
        return frame.groupby("g")["loss"].sum().reindex(range(n), fill_value=0.0).to_numpy()
    if over is None:
        return frame.groupby("g")["loss"].mean().reindex(range(n)).to_numpy()
    frame["w"] = np.asarray(over, np.float64)
    sums = frame.groupby("g")[["loss", "w"]].sum().reindex(range(n))
    return (sums["loss"] / sums["w"]).to_numpy()


def bce_f64(p: Any, y: Any, w: Any) -> Any:
    p, y = np.asarray(p, np.float64), np.asarray(y, np.float64)
    loss = -(y * np.maximum(np.log(p), -100) + (1 - y) * np.maximum(np.log1p(-p), -100))
    return loss * np.asarray(w, np.float64)


def logits_f64(x: Any, y: Any, c: float) -> Any:
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    log_sig = np.minimum(x, 0) - np.log1p(np.exp(-np.abs(x)))
    return (1 - y) * x - (1 + (c - 1) * y) * log_sig


def data(seed: int, dtype: Any = np.float32) -> tuple[Any, ...]:
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.001, 0.999, N).astype(dtype)
    x = rng.normal(0, 3, N).astype(dtype)
    y = (rng.random(N) < 0.4).astype(np.uint8)
    w = rng.uniform(0.5, 2.0, N).astype(dtype)
    codes = rng.integers(0, G, N)
    return p, x, y, w, codes


@pytest.fixture(params=[1, 2], ids=["1 thread", "2 threads"])
def threads(request: Any) -> Any:
    before = crossent.get_num_threads()
    crossent.set_num_threads(request.param)
    yield request.param
    crossent.set_num_threads(before)


# --- pyarrow ----------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_chunked_bce_per_group_is_one_call(threads: int, dtype: Any, reduction: str) -> None:
    p, _, y, w, codes = data(1, dtype)
    one = crossent.binary_cross_entropy(p, y, weight=w, groups=codes, reduction=reduction)
    got = crossent.binary_cross_entropy(
        chunked(p, CUTS["p"]),
        chunked(y, CUTS["y"]),
        weight=chunked(w, CUTS["w"]),
        groups=chunked(codes, CUTS["g"]),
        reduction=reduction,
    )
    assert same_bits(got, one)
    rtol = 1e-12 if dtype == np.float64 else 2e-6
    np.testing.assert_allclose(got, ref(bce_f64(p, y, w), codes, G, reduction), rtol=rtol)
    # Only the codes chunked; the values NumPy arrays.
    got = crossent.binary_cross_entropy(
        p, y, weight=w, groups=chunked(codes, CUTS["g"]), reduction=reduction
    )
    assert same_bits(got, one)


@pytest.mark.parametrize("code_type", ARROW_INTS)
def test_codes_of_every_arrow_integer_type(code_type: str) -> None:
    _, x, y, _, codes = data(2)
    arrow_codes = pa.chunked_array(
        [
            pa.array(codes[s:e], type=getattr(pa, code_type)())
            for s, e in itertools.pairwise([0, *CUTS["g"], N])
        ]
    )
    one = crossent.binary_cross_entropy_with_logits(x, y, pos_weight=[1.5], groups=codes)
    got = crossent.binary_cross_entropy_with_logits(
        chunked(x, CUTS["p"]), chunked(y, CUTS["y"]), pos_weight=[1.5], groups=arrow_codes
    )
    assert same_bits(got, one)
    np.testing.assert_allclose(got, ref(logits_f64(x, y, 1.5), codes, G, "mean"), rtol=2e-6)


def test_sliced_chunks_and_n_groups(threads: int) -> None:
    p, _, y, _, codes = data(3, np.float64)
    one = crossent.binary_cross_entropy(p, y, groups=codes, n_groups=G + 5, reduction="sum")
    got = crossent.binary_cross_entropy(
        sliced(p, CUTS["p"]),
        sliced(y, CUTS["y"]),
        groups=sliced(codes.astype(np.int16), CUTS["g"]),
        n_groups=G + 5,
        reduction="sum",
    )
    assert same_bits(got, one)
    assert got.shape == (G + 5,) and (got[G:] == 0).all()
    ones = np.ones(N)
    np.testing.assert_allclose(got, ref(bce_f64(p, y, ones), codes, G + 5, "sum"), rtol=1e-12)


def test_record_batch_reader_codes_are_read_once() -> None:
    """A RecordBatchReader can be read only once: the grouped call reads each stream once."""
    p, _, y, _, codes = data(4)
    table = pa.table({"g": chunked(codes.astype(np.int32), CUTS["g"])})
    reader = pa.RecordBatchReader.from_batches(table.schema, table.to_batches())
    got = crossent.binary_cross_entropy(chunked(p, CUTS["p"]), y, groups=reader)
    assert same_bits(got, crossent.binary_cross_entropy(p, y, groups=codes))


def test_chunked_softmax_per_group_is_one_call(threads: int) -> None:
    rng = np.random.default_rng(5)
    rows, c = 3 * (crossent.CHUNK // 4) + 77, 4  # rows of 4 classes: several blocks of rows
    logits = rng.normal(0, 2, (rows, c)).astype(np.float32)
    labels = rng.integers(0, c, rows)
    codes = rng.integers(0, G, rows).astype(np.uint32)
    weight = np.array([1.0, 2.0, 0.5, 1.5])
    fsl = pa.chunked_array(
        [
            pa.FixedSizeListArray.from_arrays(pa.array(logits[s:e].ravel()), c)
            for s, e in itertools.pairwise([0, 100, 9000, rows])
        ]
    )
    kw: dict[str, Any] = {"weight": weight, "label_smoothing": 0.1}
    got = {}
    for reduction in ("mean", "sum"):
        one = crossent.softmax_cross_entropy(
            logits, labels, groups=codes, reduction=reduction, **kw
        )
        got[reduction] = crossent.softmax_cross_entropy(
            fsl,
            chunked(labels, [9999]),
            groups=chunked(codes, [50, 12345]),
            reduction=reduction,
            **kw,
        )
        assert same_bits(got[reduction], one)
    # float64 reference (PyTorch's definition: smoothing over the class-weighted log-probs).
    x = logits.astype(np.float64)
    logp = x - x.max(1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(1, keepdims=True))
    wy = weight[labels]
    loss = 0.9 * -wy * logp[np.arange(rows), labels] - 0.1 / c * (weight * logp).sum(1)
    np.testing.assert_allclose(got["mean"], ref(loss, codes, G, "mean", over=wy), rtol=2e-6)
    np.testing.assert_allclose(got["sum"], ref(loss, codes, G, "sum"), rtol=2e-6)


def test_grouped_accumulator_update_takes_streams() -> None:
    p, _, y, w, codes = data(6)
    acc = crossent.BinaryCrossEntropyAccumulator()
    acc.update(chunked(p, CUTS["p"]), chunked(y, CUTS["y"]), weight=w, groups=chunked(codes, [9]))
    one = crossent.binary_cross_entropy(p, y, weight=w, groups=codes)
    assert same_bits(acc.result(), one)
    np.testing.assert_array_equal(acc.counts, np.bincount(codes, minlength=G))
    # A bad code in a later chunk: the error names its position in the whole column, and the
    # accumulator is left as it was.
    bad = codes.copy()
    bad[20000] = -1
    at = r"'groups' must hold codes in .*; found -1 at index \(20000,\)"
    with pytest.raises(ValueError, match=at):
        acc.update(p, y, weight=w, groups=chunked(bad, [100, 9000]))
    assert same_bits(acc.result(), one)
    with pytest.raises(ValueError, match=at):
        crossent.binary_cross_entropy(p, y, groups=chunked(bad, [100, 9000]), n_groups=G)


@pytest.mark.parametrize("logits", [False, True], ids=["probabilities", "logits"])
def test_sample_weight_streams_with_groups(threads: int, logits: bool) -> None:
    """`sample_weight` chunked differently from the values and the codes: each group's mean
    is sum(sw * loss) / sum(sw) over the group, with the bits of one call, in a call and in
    an accumulator."""
    p, x, y, w, codes = data(9)
    sw = np.random.default_rng(10).uniform(0.0, 3.0, N).astype(np.float32)
    f = crossent.binary_cross_entropy_with_logits if logits else crossent.binary_cross_entropy
    acc_type = (
        crossent.BinaryCrossEntropyWithLogitsAccumulator
        if logits
        else crossent.BinaryCrossEntropyAccumulator
    )
    values = x if logits else p
    one = f(values, y, weight=w, sample_weight=sw, groups=codes)
    streams = {
        "weight": chunked(w, CUTS["w"]),
        "sample_weight": chunked(sw, [777, crossent.BLOCK + 3]),
        "groups": chunked(codes, CUTS["g"]),
    }
    got = f(chunked(values, CUTS["p"]), chunked(y, CUTS["y"]), **streams)
    assert same_bits(got, one)
    acc = acc_type()
    acc.update(chunked(values, CUTS["p"]), y, **streams)
    assert same_bits(acc.result(), one)
    loss = (logits_f64(x, y, 1.0) * w if logits else bce_f64(p, y, w)) * sw
    np.testing.assert_allclose(got, ref(loss, codes, G, "mean", over=sw), rtol=2e-6)


def test_softmax_sample_weight_streams_with_groups() -> None:
    rng = np.random.default_rng(11)
    rows, c = 2 * (crossent.CHUNK // 4) + 33, 4
    logits = rng.normal(0, 2, (rows, c)).astype(np.float32)
    labels = rng.integers(0, c, rows)
    codes = rng.integers(0, G, rows)
    sw = rng.uniform(0.0, 2.0, rows)
    fsl = pa.chunked_array(
        [
            pa.FixedSizeListArray.from_arrays(pa.array(logits[s:e].ravel()), c)
            for s, e in itertools.pairwise([0, 500, rows])
        ]
    )
    one = crossent.softmax_cross_entropy(logits, labels, sample_weight=sw, groups=codes)
    streams = {"sample_weight": chunked(sw, [7, 8000]), "groups": chunked(codes, [4321])}
    got = crossent.softmax_cross_entropy(fsl, chunked(labels, [99]), **streams)
    assert same_bits(got, one)
    acc = crossent.SoftmaxCrossEntropyAccumulator()
    acc.update(fsl, labels, **streams)
    assert same_bits(acc.result(), one)
    xs = logits.astype(np.float64)
    logp = xs - xs.max(1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(1, keepdims=True))
    loss = -logp[np.arange(rows), labels] * sw
    np.testing.assert_allclose(got, ref(loss, codes, G, "mean", over=sw), rtol=2e-6)


def test_grouped_stream_errors() -> None:
    p, _, y, _, codes = data(7)
    with pytest.raises(ValueError, match="'groups' cannot be used with reduction='none'"):
        crossent.binary_cross_entropy(chunked(p, [5]), y, groups=codes, reduction="none")
    with pytest.raises(ValueError, match=rf"'input' has {N - 1} rows but 'groups' has more"):
        crossent.binary_cross_entropy(p[:-1], y[:-1], groups=chunked(codes, [5]))
    with pytest.raises(ValueError, match="'groups' holds a null at position 6"):
        crossent.binary_cross_entropy(
            p[:8], y[:8], groups=pa.chunked_array([[0, 1, 2], [1, 1, 1, None, 0]])
        )
    with pytest.raises(TypeError, match="'groups' must be an array of integer codes"):
        crossent.binary_cross_entropy(p, y, groups=chunked(p, [5]))


# --- polars and DuckDB --------------------------------------------------------------------------


def test_polars_chunked_series() -> None:
    pl = pytest.importorskip("polars")
    p, _, y, _, codes = data(8)
    half = N // 2 + 3
    ps = pl.concat([pl.Series(p[:half]), pl.Series(p[half:])], rechunk=False)
    gs = pl.concat(
        [pl.Series(codes[:100], dtype=pl.UInt16), pl.Series(codes[100:], dtype=pl.UInt16)],
        rechunk=False,
    )
    assert ps.n_chunks() == 2 and gs.n_chunks() == 2
    got = crossent.binary_cross_entropy(ps, pl.Series(y), groups=gs)
    assert same_bits(got, crossent.binary_cross_entropy(p, y, groups=codes))
    ones = np.ones(N)
    np.testing.assert_allclose(got, ref(bce_f64(p, y, ones), codes, G, "mean"), rtol=2e-6)
    frame = pl.DataFrame({"p": ps, "y": y, "g": gs})
    got = crossent.binary_cross_entropy(frame["p"], frame["y"], groups=frame["g"])
    assert same_bits(got, crossent.binary_cross_entropy(p, y, groups=codes))


def test_duckdb_results_as_values_and_codes() -> None:
    duckdb = pytest.importorskip("duckdb")
    p, _, y, _, codes = data(9, np.float64)
    con = duckdb.connect()
    con.register("src", pd.DataFrame({"i": np.arange(N), "p": p, "y": y, "g": codes}))
    con.execute("create table t as select * from src")
    one = crossent.binary_cross_entropy(p, y, groups=codes, reduction="sum")
    got = crossent.binary_cross_entropy(
        con.sql("select p from t order by i"),
        con.sql("select y from t order by i"),
        groups=con.sql("select g::integer from t order by i"),
        reduction="sum",
    )
    assert same_bits(got, one)
    ones = np.ones(N)
    np.testing.assert_allclose(got, ref(bce_f64(p, y, ones), codes, G, "sum"), rtol=1e-12)
    got = duckdb.sql("select 1")  # the module-level connection works the same
    got = crossent.binary_cross_entropy(
        p, y, groups=con.sql("select g::utinyint from t order by i"), reduction="sum"
    )
    assert same_bits(got, one)


# --- no copy: peak resident memory --------------------------------------------------------------

SCRIPT = textwrap.dedent(
    """
    import json, numpy as np, pyarrow as pa, crossent

    N = 1 << 24  # 128 MiB of float64 values, 64 MiB of int32 codes

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
    g = rng.integers(0, 1000, N, dtype=np.int32)
    cuts = [0, 1000, N // 3 + 7, N // 2, N - 12345, N]
    cp = pa.chunked_array([pa.array(p[a:b]) for a, b in zip(cuts, cuts[1:])])
    cy = pa.chunked_array([pa.array(y[: N // 5]), pa.array(y[N // 5 :])])
    cg = pa.chunked_array([pa.array(g[: N // 7]), pa.array(g[N // 7 :])])
    out = {
        "baseline: ndarrays": growth(lambda: crossent.binary_cross_entropy(p, y, groups=g)),
        "grouped, chunked": growth(lambda: crossent.binary_cross_entropy(cp, cy, groups=cg)),
        "grouped, chunked codes": growth(lambda: crossent.binary_cross_entropy(p, y, groups=cg)),
        "grouped accumulator": growth(
            lambda: crossent.BinaryCrossEntropyAccumulator().update(cp, cy, groups=cg)),
    }
    try:
        import polars as pl
        s = pl.concat([pl.Series(g[: N // 2]), pl.Series(g[N // 2 :])], rechunk=False)
        out["polars codes, 2 chunks"] = growth(
            lambda: crossent.binary_cross_entropy(p, y, groups=s))
    except ImportError:
        pass
    out["control: byte-swapped"] = growth(
        lambda: crossent.binary_cross_entropy(p.astype(">f8"), y, groups=g))
    print(json.dumps(out))
    """
)


@pytest.mark.skipif(not HAVE_PROC, reason="needs Linux /proc/self/clear_refs")
def test_grouped_streams_copy_nothing() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr
    growth = json.loads(proc.stdout)
    mib = 1 << 20
    # The measurement sees a copy: the control converts 128 MiB.
    assert growth.pop("control: byte-swapped") > 100 * mib
    # The grouped kernel's own working memory (a bounded window of blocks, whatever the
    # input's size) is the same for NumPy arrays; a stream adds at most a few MiB to it.
    baseline = growth.pop("baseline: ndarrays")
    assert baseline < 64 * mib
    for name, g in growth.items():
        assert g < baseline + 4 * mib, f"{name}: peak memory grew by {g / mib:.1f} MiB"
