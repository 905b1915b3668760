"""`crossent eval`: losses over .npy/.npz/Parquet/CSV files, streamed through the
accumulators; one-line errors with exit status 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import crossent
from crossent import _cli, _eval
from crossent.__main__ import main

N = 5 * crossent.BLOCK + 7


@pytest.fixture
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    """Batches of two blocks, so that small files still stream in many batches."""
    monkeypatch.setattr(_eval, "BATCH", 2 * crossent.BLOCK)


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Any]:
    rng = np.random.default_rng(7)
    p = rng.uniform(0, 1, N)
    y = (rng.random(N) < p).astype(np.uint8)
    x = rng.standard_normal(N) * 3
    w = rng.uniform(0.5, 2, N).astype(np.float32)
    arrays: dict[str, np.ndarray] = {"p": p, "y": y, "x": x, "w": w}
    for name, a in arrays.items():
        np.save(tmp_path / f"{name}.npy", a)
    np.savez(tmp_path / "plain.npz", p=p, y=y)
    np.savez_compressed(tmp_path / "packed.npz", p=p, y=y)
    np.savez(tmp_path / "single.npz", p.astype(np.float32))
    return {"dir": tmp_path, "p": p, "y": y, "x": x, "w": w}


def run(capsys: pytest.CaptureFixture[str], *args: Any) -> tuple[int, str, str]:
    rc = main(["eval", *(str(a) for a in args)])
    out, err = capsys.readouterr()
    return rc, out, err


def value(capsys: pytest.CaptureFixture[str], *args: Any) -> float:
    rc, out, err = run(capsys, *args, "--quiet")
    assert rc == 0, err
    assert err == ""
    return float(out)


def test_npy_memmap_batches_give_the_bits_of_one_call(
    files: dict[str, Any], small_batches: None, capsys: pytest.CaptureFixture[str]
) -> None:
    d = files["dir"]
    got = value(capsys, "--loss", "bce", "--input", d / "p.npy", "--target", d / "y.npy")
    assert got == crossent.binary_cross_entropy(files["p"], files["y"])
    got = value(
        capsys,
        *("--loss", "bce_logits", "--input", d / "x.npy", "--target", d / "y.npy"),
        *("--weight", d / "w.npy", "--reduction", "sum", "--pos-weight", "2.5"),
    )
    want = crossent.binary_cross_entropy_with_logits(
        files["x"],
        files["y"],
        weight=files["w"].astype(np.float64),
        pos_weight=[2.5],
        reduction="sum",
    )
    assert got == want
    # An independent float64 reference of the formula.
    x, y = files["x"], files["y"].astype(np.float64)
    ref = np.sum(files["w"] * ((1 - y) * x + (1 + 1.5 * y) * np.logaddexp(0, -x)))
    assert got == pytest.approx(ref, rel=1e-12)


@pytest.mark.parametrize("archive", ["plain.npz", "packed.npz"])
def test_npz_members_stream(
    files: dict[str, Any], archive: str, small_batches: None, capsys: pytest.CaptureFixture[str]
) -> None:
    a = files["dir"] / archive
    got = value(capsys, "--loss", "bce", "--input", f"{a}:p", "--target", f"{a}:y")
    assert got == crossent.binary_cross_entropy(files["p"], files["y"])


def test_npz_with_one_array_needs_no_key(
    files: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    d = files["dir"]
    got = value(capsys, "--loss", "bce", "--input", d / "single.npz", "--target", d / "y.npy")
    assert got == crossent.binary_cross_entropy(files["p"].astype(np.float32), files["y"])


def test_rows_with_broadcast_weight(
    tmp_path: Path, small_batches: None, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = np.random.default_rng(3)
    p = rng.uniform(0, 1, (700, 300)).astype(np.float32)
    y = rng.uniform(0, 1, (700, 300)).astype(np.float32)
    w = np.linspace(0.1, 3, 300)
    arrays: dict[str, np.ndarray] = {"p": p, "y": y, "w": w}
    for name, a in arrays.items():
        np.save(tmp_path / f"{name}.npy", a)
    got = value(
        capsys,
        *("--loss", "bce", "--input", tmp_path / "p.npy", "--target", tmp_path / "y.npy"),
        *("--weight", tmp_path / "w.npy"),
    )
    want = crossent.binary_cross_entropy(p, y, weight=w)
    # Rows of 300 do not fit whole blocks in these small batches: 1e-12, not bits.
    assert got == pytest.approx(want, rel=1e-12)
    p64, y64 = p.astype(np.float64), y.astype(np.float64)
    ref = np.mean(-w * (y64 * np.log(p64) + (1 - y64) * np.log1p(-p64)))
    assert got == pytest.approx(ref, rel=1e-6)


def test_reduction_none_writes_npy(
    files: dict[str, Any], small_batches: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d, out = files["dir"], tmp_path / "losses.npy"
    rc, stdout, _ = run(
        capsys,
        *("--loss", "bce_logits", "--input", d / "x.npy", "--target", d / "y.npy"),
        *("--reduction", "none", "--output", out, "--quiet"),
    )
    assert rc == 0 and stdout.strip() == str(out)
    want = crossent.binary_cross_entropy_with_logits(files["x"], files["y"], reduction="none")
    np.testing.assert_array_equal(np.load(out), want)


def test_json_output(files: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    d = files["dir"]
    rc, out, _ = run(
        capsys, "--loss", "bce", "--input", d / "p.npy", "--target", d / "y.npy", "--json"
    )
    assert rc == 0
    record = json.loads(out)
    assert record["loss"] == "binary_cross_entropy"
    assert record["reduction"] == "mean" and record["count"] == N
    assert record["value"] == crossent.binary_cross_entropy(files["p"], files["y"])
    assert record["seconds"] >= 0
    # An empty input's mean is NaN: JSON has no NaN, so it is written as a string.
    np.save(d / "empty.npy", np.zeros(0))
    rc, out, _ = run(
        capsys, "--loss", "bce", "--input", d / "empty.npy", "--target", d / "empty.npy", "--json"
    )
    assert rc == 0 and json.loads(out)["value"] == "nan" and json.loads(out)["count"] == 0


def test_progress_on_stderr_unless_quiet(
    files: dict[str, Any],
    small_batches: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    class Immediate(_cli.Progress):
        def __init__(self, *a: Any, **k: Any) -> None:
            k["delay"] = 0.0
            super().__init__(*a, **k)

    monkeypatch.setattr(_eval, "Progress", Immediate)
    d = files["dir"]
    args = ["--loss", "bce", "--input", d / "p.npy", "--target", d / "y.npy"]
    rc, out, err = run(capsys, *args)
    assert rc == 0 and float(out) == crossent.binary_cross_entropy(files["p"], files["y"])
    assert "eval [" in err and "100.0%" in err
    rc, out, err = run(capsys, *args, "--quiet")
    assert rc == 0 and err == ""


def test_parquet_and_csv_columns(
    files: dict[str, Any], small_batches: None, capsys: pytest.CaptureFixture[str]
) -> None:
    pa = pytest.importorskip("pyarrow")
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    d, p, y = files["dir"], files["p"], files["y"]
    table = pa.table({"p": p, "y": y.astype(np.int64), "name": pa.array(["a"] * N)})
    pq.write_table(table, d / "t.parquet", row_group_size=40_000)
    pcsv.write_csv(pa.table({"p": p[:5000], "y": y[:5000]}), d / "t.csv")
    got = value(
        capsys, "--loss", "bce", "--input", f"{d}/t.parquet:p", "--target", f"{d}/t.parquet:y"
    )
    assert got == crossent.binary_cross_entropy(p, y)
    got = value(capsys, "--loss", "bce", "--input", f"{d}/t.csv:p", "--target", f"{d}/t.csv:y")
    assert got == pytest.approx(crossent.binary_cross_entropy(p[:5000], y[:5000]), rel=1e-15)
    # Mixed sources of different lengths: found while streaming.
    rc, out, err = run(capsys, "--loss", "bce", "--input", f"{d}/t.csv:p", "--target", d / "y.npy")
    assert rc == 2 and out == "" and "different lengths" in err
    # Nulls and non-numeric columns are refused.
    pq.write_table(pa.table({"p": pa.array([0.1, None, 0.3]), "y": [0, 1, 1]}), d / "n.parquet")
    rc, _, err = run(
        capsys, "--loss", "bce", "--input", f"{d}/n.parquet:p", "--target", f"{d}/n.parquet:y"
    )
    assert rc == 2 and "missing value at row 1" in err
    rc, _, err = run(
        capsys, "--loss", "bce", "--input", f"{d}/t.parquet:name", "--target", f"{d}/t.parquet:y"
    )
    assert rc == 2 and "not numeric" in err


def test_csv_without_pyarrow(
    files: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    d, p, y = files["dir"], files["p"][:300], files["y"][:300]
    with open(d / "plain.csv", "w", encoding="utf-8") as f:
        f.write("y,p\n" + "".join(f"{b},{float(a)!r}\n" for a, b in zip(p, y, strict=True)))
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    got = value(
        capsys, "--loss", "bce", "--input", f"{d}/plain.csv:p", "--target", f"{d}/plain.csv:y"
    )
    assert got == crossent.binary_cross_entropy(p, y.astype(np.float64))
    rc, _, err = run(
        capsys, "--loss", "bce", "--input", f"{d}/plain.csv:q", "--target", d / "y.npy"
    )
    assert rc == 2 and "no column 'q'" in err
    rc, _, err = run(
        capsys, "--loss", "bce", "--input", f"{d}/x.parquet:p", "--target", d / "y.npy"
    )
    assert rc == 2


def test_bad_value_is_reported_at_its_position_in_the_file(
    files: dict[str, Any], small_batches: None, capsys: pytest.CaptureFixture[str]
) -> None:
    d = files["dir"]
    p = files["p"].copy()
    p[3 * crossent.BLOCK + 11] = 1.5
    np.save(d / "bad.npy", p)
    rc, out, err = run(capsys, "--loss", "bce", "--input", d / "bad.npy", "--target", d / "y.npy")
    assert rc == 2 and out == ""
    assert err.count("\n") == 1
    assert f"found 1.5 at index ({3 * crossent.BLOCK + 11},)" in err


def bad_cases(d: Path) -> list[list[Any]]:
    np.save(d / "obj.npy", np.array([None, 1], dtype=object), allow_pickle=True)
    np.save(d / "c.npy", np.zeros(3, dtype=np.complex128))
    (d / "junk.npy").write_bytes(b"not an array")
    (d / "junk.npz").write_bytes(b"not a zip")
    (d / "t.txt").write_text("1\n")
    np.save(d / "y2.npy", np.zeros((N // 7, 7)))
    p, y = d / "p.npy", d / "y.npy"
    return [
        ["--input", d / "nope.npy", "--target", y],
        ["--input", d, "--target", y],
        ["--input", d / "junk.npy", "--target", y],
        ["--input", d / "junk.npz:p", "--target", y],
        ["--input", d / "obj.npy", "--target", y],
        ["--input", d / "c.npy", "--target", y],
        ["--input", d / "t.txt", "--target", y],
        ["--input", f"{p}:p", "--target", y],
        ["--input", d / "plain.npz", "--target", y],
        ["--input", f"{d / 'plain.npz'}:zz", "--target", y],
        ["--input", p, "--target", d / "y2.npy"],
        ["--input", p, "--target", d / "x.npy"],
        ["--input", p, "--target", y, "--reduction", "none"],
        ["--input", p, "--target", y, "--output", d / "o.npy"],
        ["--input", p, "--target", y, "--pos-weight", "2"],
        ["--input", p, "--target", y, "--reduction", "median"],
        ["--input", p, "--target", y, "--weight", d / "w.npy:k"],
        ["--input", p, "--target", y, "--weight", d / "p.npy", "--weight", d / "y2.npy"],
        ["--input", p],
        ["--input", p, "--target", y, "--reduction", "none", "--output", d / "no" / "o.npy"],
    ]


@pytest.mark.parametrize("case", range(20))
def test_bad_input_is_one_line_and_exit_2(
    files: dict[str, Any], case: int, capsys: pytest.CaptureFixture[str]
) -> None:
    args = bad_cases(files["dir"])[case]
    rc, out, err = run(capsys, "--loss", "bce", *args, "--quiet")
    assert rc == 2, (args, out)
    assert out == ""
    assert err.count("\n") == 1 and "error" in err and "Traceback" not in err


def test_bad_pos_weight_text(files: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    d = files["dir"]
    rc, _, err = run(
        capsys,
        *("--loss", "bce_logits", "--input", d / "x.npy", "--target", d / "y.npy"),
        *("--pos-weight", "two"),
    )
    assert rc == 2 and "--pos-weight" in err


@pytest.fixture
def softmax_files(tmp_path: Path) -> dict[str, Any]:
    """10-class logits over more rows than one batch of `small_batches` holds."""
    rng = np.random.default_rng(11)
    rows, classes = 3 * (crossent.CHUNK // 10) + 17, 10
    arrays: dict[str, np.ndarray] = {
        "logits": rng.standard_normal((rows, classes)).astype(np.float32) * 3,
        "labels": rng.integers(0, classes, rows),
        "probs": rng.dirichlet(np.ones(classes), rows),
        "cw": rng.uniform(0.5, 2, classes),
    }
    for name, a in arrays.items():
        np.save(tmp_path / f"{name}.npy", a)
    return {"dir": tmp_path, **arrays}


@pytest.mark.parametrize("target", ["labels", "probs"])
def test_softmax_ce_streams_rows_with_the_bits_of_one_call(
    softmax_files: dict[str, Any],
    small_batches: None,
    target: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    f = softmax_files
    d = f["dir"]
    args = ("--loss", "softmax_ce", "--input", d / "logits.npy", "--target", d / f"{target}.npy")
    expected = crossent.softmax_cross_entropy(f["logits"], f[target])
    assert value(capsys, *args) == expected
    weighted = crossent.softmax_cross_entropy(f["logits"], f[target], weight=f["cw"])
    assert value(capsys, *args, "--weight", d / "cw.npy") == weighted
    assert value(capsys, *args, "--reduction", "sum") == crossent.softmax_cross_entropy(
        f["logits"], f[target], reduction="sum"
    )
    # Per row, into a file: the function's own values.
    out = d / "rows.npy"
    rc, _, err = run(capsys, *args, "--reduction", "none", "--output", out, "--quiet")
    assert rc == 0, err
    np.testing.assert_array_equal(
        np.load(out), crossent.softmax_cross_entropy(f["logits"], f[target], reduction="none")
    )


def test_softmax_ce_errors_are_one_line(
    softmax_files: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    f = softmax_files
    d = f["dir"]
    bad = f["labels"].copy()
    bad[2 * (crossent.CHUNK // 10) + 5] = 10
    np.save(d / "bad.npy", bad)
    np.save(d / "short.npy", f["labels"][:-3])
    logits = ("--loss", "softmax_ce", "--input", d / "logits.npy")
    rc, out, err = run(capsys, *logits, "--target", d / "bad.npy", "--quiet")
    assert rc == 2 and out == "" and err.count("\n") == 1
    assert f"({2 * (crossent.CHUNK // 10) + 5},)" in err  # the row in the whole file
    rc, _, err = run(capsys, *logits, "--target", d / "short.npy", "--quiet")
    assert rc == 2 and "--target" in err and "shape" in err
    rc, _, err = run(capsys, *logits, "--target", d / "labels.npy", "--weight", d / "labels.npy")
    assert rc == 2 and "weight" in err


def test_from_the_shell(files: dict[str, Any]) -> None:
    d = files["dir"]
    ok = subprocess.run(
        [
            sys.executable,
            "-m",
            "crossent",
            "eval",
            "--loss",
            "bce",
            "--input",
            str(d / "p.npy"),
            "--target",
            str(d / "y.npy"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ok.returncode == 0, ok.stderr
    assert float(ok.stdout) == crossent.binary_cross_entropy(files["p"], files["y"])
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "crossent",
            "eval",
            "--loss",
            "bce",
            "--input",
            str(d / "p.npy"),
            "--target",
            str(d / "missing.npy"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.count("\n") == 1 and "no such file" in bad.stderr
