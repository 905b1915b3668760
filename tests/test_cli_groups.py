"""`crossent eval --group-by`: the mean or sum of each group, against an independent float64
pandas ``groupby`` of the per-element (per-row) loss computed with the reference formulas."""

from __future__ import annotations

import datetime
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import reference

import crossent
from crossent.__main__ import main
from crossent.cli import sources

pd = pytest.importorskip("pandas")


@pytest.fixture
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    """Batches of two blocks, and files read in small pieces (Parquet record batches, CSV
    blocks and rows), so that small files still stream in many batches and labels are
    factorised piece by piece."""
    monkeypatch.setattr(sources, "BATCH", 2 * crossent.BLOCK)
    monkeypatch.setattr(sources, "PARQUET_ROWS", 3000)
    monkeypatch.setattr(sources, "_CSV_BLOCK", 1 << 14)
    monkeypatch.setattr(sources, "_CSV_ROWS", 1000)


def run(capsys: pytest.CaptureFixture[str], *args: Any) -> tuple[int, str, str]:
    rc = main(["eval", *(str(a) for a in args), "--quiet"])
    out, err = capsys.readouterr()
    return rc, out, err


N = 5 * crossent.BLOCK + 7
FUNCTIONS = {
    "bce": "binary_cross_entropy",
    "bce_logits": "binary_cross_entropy_with_logits",
    "softmax_ce": "softmax_cross_entropy",
}
ROWS, CLASSES = 3 * (crossent.CHUNK // 10) + 17, 10


def _labels(kind: str, codes: np.ndarray) -> tuple[Any, list[Any]]:
    """Labels of type ``kind`` for integer ``codes``, as stored (a NumPy array or a list for
    pyarrow), and the values the command reports for them (strings for CSV text). Codes
    first seen late (7 and 8, see :func:`_codes`) get the labels that sort first."""
    codes = 8 - codes
    if kind == "int":
        values = (codes * 37 - 100).astype(np.int64)  # negative, and unsorted by first sight
        return values, values.tolist()
    if kind == "str":
        values = np.array([f"seg-{c:02d}" for c in codes.tolist()])
        return values, values.tolist()
    if kind == "bool":
        values = codes % 2 == 1
        return values, values.tolist()
    assert kind == "date"
    base = datetime.date(2024, 1, 1)
    dates = [base + datetime.timedelta(days=int(c) * 3) for c in codes.tolist()]
    return dates, dates


def _codes(n: int, rng: np.random.Generator) -> np.ndarray:
    """Group codes for ``n`` items: 7 groups spread throughout, and 2 that appear only in the
    last batches (so that labels first seen late get codes of their own)."""
    codes = rng.integers(0, 7, n)
    codes[-(n // 5) :: 3] = 7
    codes[-7] = 8
    return codes


def _write_labels(d: Path, fmt: str, kind: str, labels: Any) -> str:
    """The labels stored as ``fmt`` under ``d``; returns the --group-by spec."""
    if fmt == "npy":
        np.save(d / "g.npy", np.asarray(labels, dtype="datetime64[D]" if kind == "date" else None))
        return str(d / "g.npy")
    if fmt == "npz":
        np.savez_compressed(d / "g.npz", labels=np.asarray(labels))
        return f"{d / 'g.npz'}:labels"
    if fmt in ("parquet", "parquet dictionary"):
        pa = pytest.importorskip("pyarrow")
        import pyarrow.parquet as pq

        col = pa.array(list(labels) if kind == "date" else np.asarray(labels))
        if fmt == "parquet dictionary":
            col = col.dictionary_encode()
        pq.write_table(pa.table({"segment": col}), d / "g.parquet", row_group_size=5000)
        return f"{d / 'g.parquet'}:segment"
    assert fmt == "csv"
    text = [
        d.isoformat() if isinstance(d, datetime.date) else str(d)
        for d in (labels if kind == "date" else np.asarray(labels).tolist())
    ]
    with open(d / "g.csv", "w", encoding="utf-8") as f:
        f.write("segment\n" + "".join(f" {t} \n" for t in text))  # padded: stripped
    return f"{d / 'g.csv'}:segment"


def _problem(loss: str, rng: np.random.Generator, d: Path) -> tuple[list[Any], np.ndarray, Any]:
    """(operand options, per-item float64 loss, per-item denominator of a mean or None for
    the count) of ``loss`` on data written under ``d``."""
    if loss == "bce":
        p = rng.uniform(0, 1, N)
        y = (rng.random(N) < p).astype(np.float64)
        w = rng.uniform(0.5, 2, N)
        for name, a in {"p": p, "y": y, "w": w}.items():
            np.save(d / f"{name}.npy", a)
        args = ["--input", d / "p.npy", "--target", d / "y.npy", "--weight", d / "w.npy"]
        return args, reference.bce(p, y, weight=w), None
    if loss == "bce_logits":
        x = (rng.standard_normal(N) * 4).astype(np.float32)
        y = (rng.random(N) < 0.3).astype(np.float32)
        np.save(d / "x.npy", x)
        np.save(d / "y.npy", y)
        args = ["--input", d / "x.npy", "--target", d / "y.npy", "--pos-weight", "2.5"]
        return args, reference.bce_with_logits(x, y, pos_weight=np.array([2.5])), None
    assert loss == "softmax_ce"
    logits = rng.standard_normal((ROWS, CLASSES)) * 3
    labels = rng.integers(0, CLASSES, ROWS)
    labels[::11] = -100  # ignored rows: in no count and no denominator
    cw = rng.uniform(0.5, 2, CLASSES)
    arrays: dict[str, np.ndarray] = {"logits": logits, "labels": labels, "cw": cw}
    for name, a in arrays.items():
        np.save(d / f"{name}.npy", a)
    args = ["--input", d / "logits.npy", "--target", d / "labels.npy", "--weight", d / "cw.npy"]
    ref = reference.softmax_cross_entropy(logits, labels, weight=cw)
    denominator = np.where(labels != -100, cw[np.where(labels != -100, labels, 0)], 0.0)
    return args, ref, denominator


def _expected(
    labels: list[Any], loss: np.ndarray, denominator: Any, reduction: str, counted: np.ndarray
) -> Any:
    """The float64 pandas groupby: per label (sorted), the sum or mean and the count."""
    frame = pd.DataFrame(
        {
            "label": pd.Series(labels, dtype=object),
            "loss": loss,
            "den": np.ones(loss.size) if denominator is None else denominator,
            "counted": counted,
        }
    )
    g = frame.groupby("label", sort=True)
    sums = g["loss"].sum()
    value = sums if reduction == "sum" else sums / g["den"].sum()
    return list(sums.index), value.to_numpy(), g["counted"].sum().to_numpy()


CASES = [
    ("bce", "npy", "int"),
    ("bce", "npy", "str"),
    ("bce", "npy", "bool"),
    ("bce", "npy", "date"),
    ("bce", "npz", "str"),
    ("bce", "parquet", "int"),
    ("bce", "parquet", "str"),
    ("bce", "parquet", "date"),
    ("bce", "parquet dictionary", "str"),
    ("bce", "csv", "str"),
    ("bce", "csv", "int"),
    ("bce_logits", "parquet", "str"),
    ("bce_logits", "csv", "int"),
    ("softmax_ce", "npy", "int"),
    ("softmax_ce", "parquet", "str"),
    ("softmax_ce", "csv", "str"),
]


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize(("loss", "fmt", "kind"), CASES)
@pytest.mark.parametrize("pyarrow", ["with pyarrow", "without pyarrow"])
def test_each_group_matches_a_float64_pandas_groupby(
    tmp_path: Path,
    small_batches: None,
    loss: str,
    fmt: str,
    kind: str,
    reduction: str,
    pyarrow: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    if pyarrow == "without pyarrow" and fmt != "csv":
        pytest.skip("only CSV is read without pyarrow")
    rng = np.random.default_rng(abs(hash((loss, fmt, kind))) % 2**32)
    args, per_item, denominator = _problem(loss, rng, tmp_path)
    codes = _codes(per_item.size, rng)
    stored, labels = _labels(kind, codes)
    spec = _write_labels(tmp_path, fmt, kind, stored)
    if fmt == "csv" and kind != "int":
        labels = [x.isoformat() if isinstance(x, datetime.date) else str(x) for x in labels]
    counted = (
        (np.load(tmp_path / "labels.npy") != -100).astype(np.int64)
        if loss == "softmax_ce"
        else np.ones(per_item.size, dtype=np.int64)
    )
    want_labels, want, want_counts = _expected(labels, per_item, denominator, reduction, counted)
    if pyarrow == "without pyarrow":
        monkeypatch.setitem(sys.modules, "pyarrow", None)
    rc, out, err = run(capsys, "--loss", loss, *args, "--group-by", spec, "--reduction", reduction)
    assert rc == 0, err
    lines = [line.split("\t") for line in out.splitlines()]
    assert [line[0] for line in lines] == [
        x.isoformat() if isinstance(x, datetime.date) else str(x) for x in want_labels
    ]
    got = np.array([float(line[1]) for line in lines])
    rtol = 1e-5 if loss == "bce_logits" else 1e-12  # float32 logits: float32 arithmetic
    np.testing.assert_allclose(got, want, rtol=rtol)
    assert [int(line[2]) for line in lines] == want_counts.tolist()
    # As JSON, one object per group, in the same order.
    rc, out, err = run(
        capsys, "--loss", loss, *args, "--group-by", spec, "--reduction", reduction, "--json"
    )
    assert rc == 0, err
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["value"] for r in records] == got.tolist()
    assert [r["count"] for r in records] == want_counts.tolist()
    assert {(r["loss"], r["reduction"]) for r in records} == {(FUNCTIONS[loss], reduction)}
    json_labels = [x.isoformat() if isinstance(x, datetime.date) else x for x in want_labels]
    assert [r["group"] for r in records] == json_labels


def test_group_by_a_column_of_the_operands_file_streams_with_the_bits_of_one_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bare column name is a column of the operands' Parquet file; the per-group values do
    not depend on the cut into batches, and equal crossent's grouped function on the whole
    arrays with the sorted labels' codes."""
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    rng = np.random.default_rng(4)
    p = rng.uniform(0, 1, N).astype(np.float32)
    y = (rng.random(N) < p).astype(np.float32)
    seg = rng.choice(np.array(["b", "a", "d", "c"]), N)
    seg[-3:] = "0-late"
    pq.write_table(
        pa.table({"p": p, "y": y, "seg": seg}), tmp_path / "t.parquet", row_group_size=7000
    )
    spec = str(tmp_path / "t.parquet")
    args = ["--loss", "bce", "--input", f"{spec}:p", "--target", f"{spec}:y", "--group-by", "seg"]
    outs = set()
    for batch in (2 * crossent.BLOCK, 3 * crossent.BLOCK, sources.BATCH):
        monkeypatch.setattr(sources, "BATCH", batch)
        rc, out, err = run(capsys, *args)
        assert rc == 0, err
        outs.add(out)
    assert len(outs) == 1
    labels, codes = np.unique(seg, return_inverse=True)
    want = crossent.binary_cross_entropy(p, y, groups=codes, n_groups=labels.size)
    lines = [line.split("\t") for line in outs.pop().splitlines()]
    assert [line[0] for line in lines] == labels.tolist()
    assert [float(line[1]) for line in lines] == np.asarray(want).tolist()
    assert [int(line[2]) for line in lines] == np.bincount(codes).tolist()


@pytest.mark.parametrize("fmt", ["parquet", "csv", "npy"])
def test_group_table_output(tmp_path: Path, fmt: str, capsys: pytest.CaptureFixture[str]) -> None:
    """--output writes the table (label, loss, count) that the lines print."""
    if fmt == "parquet":
        pytest.importorskip("pyarrow")
    rng = np.random.default_rng(8)
    args, _, _ = _problem("bce", rng, tmp_path)
    codes = _codes(N, rng)
    stored, _ = _labels("str", codes)
    spec = _write_labels(tmp_path, "npy", "str", stored)
    rc, printed, err = run(capsys, "--loss", "bce", *args, "--group-by", spec)
    assert rc == 0, err
    lines = [line.split("\t") for line in printed.splitlines()]
    out = tmp_path / "out" / f"groups.{fmt}"
    out.parent.mkdir()
    rc, stdout, err = run(capsys, "--loss", "bce", *args, "--group-by", spec, "--output", out)
    assert rc == 0, err
    assert stdout == f"{out}\n"
    assert sorted(q.name for q in out.parent.iterdir()) == [out.name]
    if fmt == "npy":
        table = np.load(out, allow_pickle=False)
        assert table.dtype.names == ("group", "loss", "count")
        columns = [table[c].tolist() for c in ("group", "loss", "count")]
        got = list(zip(*columns, strict=True))
    elif fmt == "parquet":
        import pyarrow.parquet as pq

        t = pq.read_table(out)
        assert t.column_names == ["group", "loss", "count"]
        got = list(zip(*(t.column(c).to_pylist() for c in t.column_names), strict=True))
    else:
        frame = pd.read_csv(out, keep_default_na=False)
        assert list(frame.columns) == ["group", "loss", "count"]
        got = list(frame.itertuples(index=False, name=None))
    assert got == [(g, float(v), int(n)) for g, v, n in lines]
    # With --json: one record naming the output.
    rc, stdout, err = run(
        capsys, "--loss", "bce", *args, "--group-by", spec, "--output", out, "--json"
    )
    assert rc == 0, err
    record = json.loads(stdout)
    assert record["output"] == str(out) and record["groups"] == len(lines)
    assert record["count"] == N and record["loss"] == "binary_cross_entropy"


def test_group_table_keeps_the_labels_type(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    rng = np.random.default_rng(1)
    p = rng.uniform(0, 1, 1000)
    day = [
        datetime.date(2025, 1, 1) + datetime.timedelta(days=int(k))
        for k in rng.integers(0, 5, 1000)
    ]
    pq.write_table(pa.table({"p": p, "day": pa.array(day, pa.date32())}), tmp_path / "t.parquet")
    spec = str(tmp_path / "t.parquet")
    for fmt in ("parquet", "npy"):
        out = tmp_path / f"g.{fmt}"
        rc, _, err = run(
            capsys,
            *("--loss", "bce", "--input", f"{spec}:p", "--target", f"{spec}:p"),
            *("--group-by", "day", "--output", out),
        )
        assert rc == 0, err
        if fmt == "parquet":
            t = pq.read_table(out)
            assert t.schema.field("day").type == pa.date32()
            assert t.column("day").to_pylist() == sorted(set(day))
        else:
            table = np.load(out, allow_pickle=False)
            assert table["day"].dtype == np.dtype("datetime64[D]")
            assert table["day"].tolist() == sorted(set(day))


@pytest.mark.parametrize("kind", ["int", "narrow int", "uint8", "str", "bool", "date", "bytes"])
@pytest.mark.parametrize("factoriser", ["numpy", "arrow"])
def test_codes_across_batches_name_the_sorted_labels(kind: str, factoriser: str) -> None:
    """Labels cut into batches anywhere: every item's code, through the final order, names its
    own label, and the labels come out sorted and distinct (as ``numpy.unique`` gives them)."""
    from crossent.cli import groups

    rng = np.random.default_rng(12)
    n = 20_000
    pool = {
        "int": rng.integers(-(2**40), 2**40, 300),
        # Counted rather than sorted (a range narrower than the batches).
        "narrow int": rng.permutation(np.arange(-150, 150)),
        "uint8": rng.permutation(np.arange(256, dtype=np.uint8)),
        "str": np.array([f"{'ab'[k % 2]}{k * 7919 % 1000}é" for k in range(300)]),
        "bool": np.array([False, True]),
        "date": np.datetime64("2020-01-01") + np.arange(300),
        "bytes": np.array([bytes([65 + k % 26]) * (1 + k // 26) for k in range(300)]),
    }[kind]
    labels = pool[rng.integers(0, pool.size, n)]
    labels[:100] = pool[0]  # the first batch: one label, the shortest string
    labels[-50:] = pool[-1]  # maybe first seen at the very end
    cuts = np.sort(np.append(rng.integers(100, n, 12), 100))
    pieces = np.split(labels, cuts)
    if factoriser == "numpy":
        numpy_factoriser = groups.NumpyFactoriser()
        # Each batch of strings as narrow as its longest (as the CSV reader makes them).
        narrow = [
            np.array(piece.tolist(), dtype=pool.dtype.kind) if kind in ("str", "bytes") else piece
            for piece in pieces
        ]
        codes = np.concatenate([numpy_factoriser.encode(piece) for piece in narrow if piece.size])
        order, sorted_labels = numpy_factoriser.result()
    else:
        pa = pytest.importorskip("pyarrow")
        arrow_factoriser = groups.ArrowFactoriser()
        codes = np.concatenate(
            [arrow_factoriser.encode(pa.array(piece)) for piece in pieces if piece.size]
        )
        order, arrow = arrow_factoriser.result(pa.array(pool).type)
        sorted_labels = np.array(arrow.to_pylist(), dtype=pool.dtype)
    assert codes.dtype == np.int64 and codes.shape == (n,)
    np.testing.assert_array_equal(sorted_labels, np.unique(labels))
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    np.testing.assert_array_equal(sorted_labels[rank[codes]], labels)


BCE = ["--loss", "bce", "--input", "{d}/p.npy", "--target", "{d}/p.npy"]
USAGE = {
    "entropy": (
        ["--loss", "entropy", "--p", "{d}/p.npy", "--group-by", "{d}/g.npy"],
        "--group-by does not apply to --loss entropy: it applies to bce, bce_logits and softmax_ce",
    ),
    "kl": (
        ["--loss", "kl", "--p", "{d}/p.npy", "--q", "{d}/p.npy", "--group-by", "{d}/g.npy"],
        "--group-by does not apply to --loss kl_divergence",
    ),
    "reduction none": (
        [
            *BCE,
            *("--group-by", "{d}/g.npy", "--reduction", "none", "--output", "{d}/o.npy"),
        ],
        "--group-by gives the mean or sum of each group: it needs --reduction mean or sum",
    ),
    "bare column of npy operands": (
        [*BCE, "--group-by", "seg"],
        "--group-by seg: not a file (.npy, .npz, .parquet, .csv) and no operand is a Parquet "
        "or CSV column",
    ),
    "missing file": (
        [
            "--loss",
            "bce",
            "--input",
            "{d}/p.npy",
            "--target",
            "{d}/p.npy",
            "--group-by",
            "{d}/no.npy",
        ],
        "no such file",
    ),
    "float labels": (
        [
            "--loss",
            "bce",
            "--input",
            "{d}/p.npy",
            "--target",
            "{d}/p.npy",
            "--group-by",
            "{d}/p.npy",
        ],
        "unsupported dtype float64 (group labels are integers, booleans, strings or dates)",
    ),
    "too few labels": (
        [
            "--loss",
            "bce",
            "--input",
            "{d}/p.npy",
            "--target",
            "{d}/p.npy",
            "--group-by",
            "{d}/short.npy",
        ],
        "--group-by {d}/short.npy has shape (99,): one label per element of shape (100,) expected",
    ),
    "too few labels in a csv": (
        [
            "--loss",
            "bce",
            "--input",
            "{d}/p.npy",
            "--target",
            "{d}/p.npy",
            "--group-by",
            "{d}/t.csv:g",
        ],
        "the operands have different lengths",
    ),
    "missing label in a csv": (
        [
            "--loss",
            "bce",
            "--input",
            "{d}/p.npy",
            "--target",
            "{d}/p.npy",
            "--group-by",
            "{d}/t.csv:h",
        ],
        "--group-by {d}/t.csv:h: column 'h' has a missing value at row 2",
    ),
    "no such column": (
        ["--loss", "bce", "--input", "{d}/t.csv:p", "--target", "{d}/t.csv:p", "--group-by", "x"],
        "--group-by {d}/t.csv:x: no column 'x' (columns: p, g, h)",
    ),
    "per row of logits": (
        [
            "--loss",
            "softmax_ce",
            "--input",
            "{d}/l.npy",
            "--target",
            "{d}/c.npy",
            "--group-by",
            "{d}/g.npy",
        ],
        "--group-by {d}/g.npy has shape (100,): one label per row of shape (50,) expected",
    ),
    "output of unknown type": (
        [
            *BCE,
            *("--group-by", "{d}/g.npy", "--output", "{d}/o.xlsx"),
        ],
        "--output {d}/o.xlsx: unknown file type .xlsx",
    ),
}


@pytest.mark.parametrize("case", list(USAGE))
def test_usage_errors_are_one_line(
    tmp_path: Path, case: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Refused before or while reading, one line, exit 2, nothing written; these need no
    grouped accumulator (all are found before one is fed)."""
    d = tmp_path
    np.save(d / "p.npy", np.full(100, 0.5))
    np.save(d / "g.npy", np.arange(100) % 3)
    np.save(d / "short.npy", np.arange(99) % 3)
    np.save(d / "l.npy", np.zeros((50, 4)))
    np.save(d / "c.npy", np.zeros(50, dtype=np.int64))
    with open(d / "t.csv", "w", encoding="utf-8") as f:
        f.write("p,g,h\n" + "".join(f"0.5,{k % 3},{'' if k == 2 else 'x'}\n" for k in range(99)))
    args, message = USAGE[case]
    rc, out, err = run(capsys, *(a.format(d=d) for a in args))
    assert rc == 2 and out == ""
    assert err.count("\n") == 1 and "Traceback" not in err
    assert message.format(d=d) in err, err
    assert not (d / "o.npy").exists() and not (d / "o.xlsx").exists()
