"""`crossent eval`: losses over .npy/.npz/Parquet/CSV files, streamed through the
accumulators; one-line errors with exit status 2."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import crossent
from crossent.__main__ import main
from crossent.cli import eval, sources
from crossent.cli.progress import Progress

N = 5 * crossent.BLOCK + 7


@pytest.fixture
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    """Batches of two blocks, so that small files still stream in many batches."""
    monkeypatch.setattr(sources, "BATCH", 2 * crossent.BLOCK)


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
    class Immediate(Progress):
        def __init__(self, *a: Any, **k: Any) -> None:
            k["delay"] = 0.0
            super().__init__(*a, **k)

    monkeypatch.setattr(eval, "Progress", Immediate)
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


@pytest.mark.parametrize("shape", [(9,), (1,), (1, 10), (10, 1)])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_softmax_ce_class_weight_of_another_shape_is_named(
    softmax_files: dict[str, Any],
    shape: tuple[int, ...],
    reduction: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    d = softmax_files["dir"]
    np.save(d / "cw_bad.npy", np.ones(shape))
    args = ["--loss", "softmax_ce", "--input", d / "logits.npy", "--target", d / "labels.npy"]
    args += ["--weight", d / "cw_bad.npy", "--reduction", reduction, "--quiet"]
    if reduction == "none":
        args += ["--output", d / "rows.npy"]
    rc, out, err = run(capsys, *args)
    assert (rc, out) == (2, "")
    assert err == (
        f"crossent eval: error: --weight {d / 'cw_bad.npy'}: 'weight' must have shape (10,) "
        f"(one weight per class), got {shape}\n"
    )
    assert not (d / "rows.npy").exists()


@pytest.mark.parametrize(
    ("loss", "operand", "shape", "where"),
    [
        ("bce", "input", (4, 3, crossent.BLOCK // 2 + 5), (3, 1, 7)),
        ("bce", "target", (4, 3, crossent.BLOCK // 2 + 5), (2, 2, crossent.BLOCK // 2 + 4)),
        (
            "softmax_ce",
            "target",
            (3 * (crossent.CHUNK // 10) + 17, 10),
            (2 * (crossent.CHUNK // 10) + 3, 9),
        ),
    ],
)
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_out_of_domain_value_is_located_in_the_whole_file(
    tmp_path: Path,
    small_batches: None,
    loss: str,
    operand: str,
    shape: tuple[int, ...],
    where: tuple[int, ...],
    reduction: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # A value outside the domain in a later batch of an N-d operand: the one-line error gives
    # the position in the whole file (from crossent.DomainError's batch-relative index), as
    # crossent itself reports it for the whole array.
    rng = np.random.default_rng(5)
    if loss == "bce":
        arrays = {"input": rng.uniform(0.1, 0.9, shape), "target": rng.uniform(0, 1, shape)}
    else:
        logits = rng.standard_normal(shape)
        arrays = {"input": logits, "target": rng.dirichlet(np.ones(shape[-1]), shape[0])}
    arrays[operand][where] = -0.5
    with pytest.raises(crossent.DomainError) as whole:
        getattr(
            crossent, {"bce": "binary_cross_entropy", "softmax_ce": "softmax_cross_entropy"}[loss]
        )(arrays["input"], arrays["target"])
    assert whole.value.index == where
    for name, a in arrays.items():
        np.save(tmp_path / f"{name}.npy", a)
    args = ["--loss", loss, "--input", tmp_path / "input.npy"]
    args += ["--target", tmp_path / "target.npy", "--reduction", reduction, "--quiet"]
    if reduction == "none":
        args += ["--output", tmp_path / "out.npy"]
    rc, out, err = run(capsys, *args)
    assert (rc, out) == (2, "")
    assert (
        err == f"crossent eval: error: --{operand} {tmp_path / (operand + '.npy')}: {whole.value}\n"
    )


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


# --------------------------------------------------------------------------------------------
# --output never destroys an operand, and is written whole or not at all
# --------------------------------------------------------------------------------------------


def _write_operand(d: Path, name: str, fmt: str, a: np.ndarray) -> str:
    """``a`` stored in format ``fmt`` under ``d``; returns the operand spec."""
    if fmt == "npy":
        np.save(d / f"{name}.npy", a)
        return str(d / f"{name}.npy")
    if fmt == "npz":
        np.savez(d / f"{name}.npz", v=a)
        return f"{d / name}.npz:v"
    if fmt == "parquet":
        pa = pytest.importorskip("pyarrow")
        import pyarrow.parquet as pq

        pq.write_table(pa.table({"v": a}), d / f"{name}.parquet")
        return f"{d / name}.parquet:v"
    assert fmt == "csv"
    with open(d / f"{name}.csv", "w", encoding="utf-8") as f:
        f.write("v\n" + "".join(f"{float(v)!r}\n" for v in a))
    return f"{d / name}.csv:v"


OPERAND_FORMATS = ("npy", "npz", "parquet", "csv")
LINKS = ("same path", "another spelling", "symbolic link", "hard link")


def _alias(path: Path, how: str, d: Path) -> Path:
    """Another name for the file at ``path``, made the way ``how`` says."""
    if how == "same path":
        return path
    if how == "another spelling":
        return path.parent / ".." / path.parent.name / "." / path.name
    alias = d / "elsewhere" / "out.npy"
    alias.parent.mkdir(exist_ok=True)
    if how == "symbolic link":
        # A link to a link: identity is decided after following every link.
        (d / "hop.npy").symlink_to(path)
        alias.symlink_to(d / "hop.npy")
    else:
        os.link(path, alias)
    return alias


def _listing(d: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(d)): (p.read_bytes() if p.is_file() else b"")
        for p in sorted(d.rglob("*"))
    }


OUTPUT_CASES = [
    (loss, operand, fmt)
    for loss, operands in (
        ("bce_logits", ("input", "target", "weight", "pos-weight")),
        ("softmax_ce", ("input", "target", "weight")),
        ("entropy", ("p",)),
        ("kl", ("p", "q")),
        ("js", ("p", "q")),
    )
    for operand in operands
    for fmt in OPERAND_FORMATS
    # Logits and distributions with --reduction none are read with their shape: .npy or .npz.
    if not (
        ((loss == "softmax_ce" and operand == "input") or loss in ("entropy", "kl", "js"))
        and fmt in ("parquet", "csv")
    )
]


@pytest.mark.parametrize("how", LINKS)
@pytest.mark.parametrize(("loss", "operand", "fmt"), OUTPUT_CASES)
def test_output_that_is_an_operand_is_refused_and_nothing_is_touched(
    tmp_path: Path,
    loss: str,
    operand: str,
    fmt: str,
    how: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    d = tmp_path
    rng = np.random.default_rng(5)
    n, classes = 400, 4
    if loss == "bce_logits":
        arrays = {
            "input": rng.standard_normal(n),
            "target": (rng.random(n) < 0.5).astype(np.float64),
            "weight": rng.uniform(0.5, 2, n),
            "pos-weight": np.array([2.0]),
        }
    elif loss in ("entropy", "kl", "js"):
        arrays = {"p": rng.uniform(0, 1, (n, classes))}
        if loss != "entropy":
            arrays["q"] = rng.uniform(0, 1, (n, classes))
    else:
        arrays = {
            "input": rng.standard_normal((n, classes)),
            "target": rng.integers(0, classes, n).astype(np.int64),
            "weight": rng.uniform(0.5, 2, classes),
        }
    specs = {
        name: _write_operand(d, name, fmt if name == operand else "npy", a)
        for name, a in arrays.items()
    }
    victim = Path(specs[operand].rsplit(":", 1)[0] if fmt != "npy" else specs[operand])
    output = _alias(victim, how, d)
    before = _listing(d)
    args = [a for name, spec in specs.items() for a in (f"--{name}", spec)]
    rc, out, err = run(
        capsys, "--loss", loss, *args, "--reduction", "none", "--output", output, "--quiet"
    )
    assert rc == 2 and out == ""
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"is the same file as --{operand}" in err
    assert _listing(d) == before  # every file byte-identical, no file added


def test_output_through_a_link_replaces_the_linked_file_and_keeps_the_link(
    files: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d, o = files["dir"], tmp_path / "o"
    o.mkdir()
    real = o / "real.npy"
    real.write_bytes(b"old contents")
    os.chmod(real, 0o640)
    link = o / "link.npy"
    link.symlink_to(real)
    rc, _, err = run(
        capsys,
        *("--loss", "bce", "--input", d / "p.npy", "--target", d / "y.npy"),
        *("--reduction", "none", "--output", link, "--quiet"),
    )
    assert rc == 0, err
    assert link.is_symlink() and os.readlink(link) == str(real)
    np.testing.assert_array_equal(
        np.load(real), crossent.binary_cross_entropy(files["p"], files["y"], reduction="none")
    )
    assert os.stat(real).st_mode & 0o777 == 0o640
    assert sorted(p.name for p in o.iterdir()) == ["link.npy", "real.npy"]


@pytest.mark.parametrize("loss", ["bce", "softmax_ce", "kl", "js"])
@pytest.mark.parametrize("failure", ["bad value", "interrupt", "short operand"])
@pytest.mark.parametrize("existing", [True, False])
def test_failed_run_leaves_no_output_and_the_old_one_untouched(
    softmax_files: dict[str, Any],
    small_batches: None,
    monkeypatch: pytest.MonkeyPatch,
    loss: str,
    failure: str,
    existing: bool,
    capsys: pytest.CaptureFixture[str],
) -> None:
    f = softmax_files
    d = f["dir"]
    rows, classes = f["logits"].shape
    if loss == "bce":
        inp = 1 / (1 + np.exp(-f["logits"].astype(np.float64)))
        target = f["probs"].copy()
        at = (2 * rows // 3, 5)  # in a later batch
        if failure == "bad value":
            target[at] = 1.5
    elif loss in ("kl", "js"):
        # Distributions --p and --q, rows along the last axis.
        inp, target = f["probs"], f["probs"][::-1].copy()
        if failure == "bad value":
            target[2 * rows // 3, 5] = -0.25
    else:
        inp, target = f["logits"], f["labels"].copy()
        if failure == "bad value":
            target[2 * rows // 3] = classes
    np.save(d / "i.npy", inp)
    input_spec = str(d / "i.npy")
    if failure == "short operand":
        # A CSV column, of a length found only when its end is reached, after batches were
        # written: one row short.
        target_spec = _write_operand(d, "t", "csv", target.reshape(-1)[: -target[0].size])
    else:
        np.save(d / "t.npy", target)
        target_spec = str(d / "t.npy")
    if failure == "interrupt":
        calls = []

        def interrupt(self: Any, done: float, note: str = "") -> None:
            calls.append(done)
            if len(calls) == 2:
                raise KeyboardInterrupt

        monkeypatch.setattr(Progress, "update", interrupt)
    out_dir = d / "out"
    out_dir.mkdir()
    output = out_dir / "losses.npy"
    if existing:
        output.write_bytes(b"precious")
    first, second = ("--p", "--q") if loss in ("kl", "js") else ("--input", "--target")
    rc, stdout, err = run(
        capsys,
        *("--loss", loss, first, input_spec, second, target_spec),
        *("--reduction", "none", "--output", output, "--quiet"),
    )
    assert rc == (130 if failure == "interrupt" else 2) and stdout == ""
    assert "Traceback" not in err
    assert {"bad value": "must hold", "short operand": "different lengths"}.get(
        failure, "interrupted"
    ) in err
    assert [p.name for p in out_dir.iterdir()] == (["losses.npy"] if existing else [])
    if existing:
        assert output.read_bytes() == b"precious"
    if failure == "interrupt":
        assert len(calls) == 2  # interrupted mid-stream, after a batch had been written


# --------------------------------------------------------------------------------------------
# Malformed files and arguments: one line, exit status 2, never a traceback
# --------------------------------------------------------------------------------------------


def _npy_bytes(a: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def _npy_header(shape: tuple[int, ...], descr: str = "<f8", version: bytes = b"\x01\x00") -> bytes:
    text = repr({"descr": descr, "fortran_order": False, "shape": shape}).encode()
    text += b" " * (-(len(text) + 11) % 64) + b"\n"
    return b"\x93NUMPY" + version + len(text).to_bytes(2, "little") + text


def malformed(d: Path) -> dict[str, list[Any]]:
    """Command lines (after ``eval --loss bce``) naming malformed files or arguments."""
    import zipfile

    y = d / "y.npy"
    (d / "empty.npy").write_bytes(b"")
    (d / "devnull.npy").symlink_to(os.devnull)
    os.mkfifo(d / "fifo.npy")  # would block a reader that opened it
    (d / "text.npy").write_text("p,y\n0.5,1\n")
    (d / "truncated.npy").write_bytes(_npy_bytes(np.zeros(N))[:-8])
    (d / "lying.npy").write_bytes(_npy_header((2**62,)) + b"\0" * 64)
    (d / "garbled.npy").write_bytes(b"\x93NUMPY\x01\x00\x10\x00{'descr': <<<<\n")
    (d / "v9.npy").write_bytes(_npy_header((1,), version=b"\x09\x00") + b"\0" * 8)
    (d / "huge_dims.npy").write_bytes(_npy_header((2**40, 2**40)) + b"\0" * 64)
    np.save(d / "objects.npy", np.array([None, 1], dtype=object), allow_pickle=True)
    (d / "empty.npz").write_bytes(b"")
    (d / "text.npz").write_text("hello")
    with zipfile.ZipFile(d / "lying.npz", "w") as z:
        z.writestr("p.npy", _npy_header((2**62,)) + b"\0" * 64)
    with zipfile.ZipFile(d / "notnpy.npz", "w") as z:
        z.writestr("p.npy", b"just text")
    # A stored (uncompressed) member whose data no longer match its CRC: found on reading.
    p = np.linspace(0.1, 0.9, N)
    good = _npy_bytes(p)
    with zipfile.ZipFile(d / "crc.npz", "w") as z:
        z.writestr("p.npy", good)
    raw = bytearray((d / "crc.npz").read_bytes())
    at = raw.index(good[-64:])
    raw[at] ^= 0xFF
    (d / "crc.npz").write_bytes(bytes(raw))
    (d / "garbage.parquet").write_bytes(b"PAR1 not really")
    (d / "empty.csv").write_bytes(b"")
    (d / "binary.csv").write_bytes(b"p\n\xff\xfe\x00\x81\n")
    (d / "ragged.csv").write_text("p,q\n0.5,1\n0.5\n")
    (d / "word.csv").write_text("p\n0.5\nhalf\n")
    (d / "hole.csv").write_text("p\n0.5\n\n \n")
    np.save(d / "p_ok.npy", p)
    out = ["--reduction", "none", "--output"]
    return {
        "empty npy": ["--input", d / "empty.npy", "--target", y],
        "link to /dev/null": ["--input", d / "devnull.npy", "--target", y],
        "fifo": ["--input", d / "fifo.npy", "--target", y],
        "text named .npy": ["--input", d / "text.npy", "--target", y],
        "truncated npy": ["--input", d / "truncated.npy", "--target", y],
        "npy header of 2**62 elements": ["--input", d / "lying.npy", "--target", y],
        "npy header of 2**80 elements": ["--input", d / "huge_dims.npy", "--target", y],
        "garbled npy header": ["--input", d / "garbled.npy", "--target", y],
        "npy version 9": ["--input", d / "v9.npy", "--target", y],
        "object npy": ["--input", d / "objects.npy", "--target", y],
        "empty npz": ["--input", f"{d / 'empty.npz'}:p", "--target", y],
        "text npz": ["--input", f"{d / 'text.npz'}:p", "--target", y],
        "npz member of 2**62 elements, per element": [
            *("--input", f"{d / 'lying.npz'}:p", "--target", f"{d / 'lying.npz'}:p"),
            *(*out, d / "o.npy"),
        ],
        "npz member that is not .npy": ["--input", f"{d / 'notnpy.npz'}:p", "--target", y],
        "npz member with a bad CRC": ["--input", f"{d / 'crc.npz'}:p", "--target", y],
        "garbage parquet": ["--input", f"{d / 'garbage.parquet'}:p", "--target", y],
        "empty csv": ["--input", f"{d / 'empty.csv'}:p", "--target", y],
        "csv not in UTF-8": ["--input", f"{d / 'binary.csv'}:p", "--target", y],
        "csv with a short row": ["--input", f"{d / 'ragged.csv'}:p", "--target", y],
        "csv with a word": ["--input", f"{d / 'word.csv'}:p", "--target", y],
        "csv with a missing value": ["--input", f"{d / 'hole.csv'}:p", "--target", y],
        "output is a directory": ["--input", d / "p_ok.npy", "--target", y, *out, d],
        "output in a missing directory": [
            *("--input", d / "p_ok.npy", "--target", y, *out, d / "no" / "o.npy"),
        ],
        "weight of 2**62 elements": [
            *("--input", d / "p_ok.npy", "--target", y, "--weight", d / "lying.npy"),
        ],
    }


@pytest.fixture
def malformed_cases(files: dict[str, Any]) -> dict[str, list[Any]]:
    return malformed(files["dir"])


MALFORMED_NAMES = [
    "empty npy",
    "link to /dev/null",
    "fifo",
    "text named .npy",
    "truncated npy",
    "npy header of 2**62 elements",
    "npy header of 2**80 elements",
    "garbled npy header",
    "npy version 9",
    "object npy",
    "empty npz",
    "text npz",
    "npz member of 2**62 elements, per element",
    "npz member that is not .npy",
    "npz member with a bad CRC",
    "garbage parquet",
    "empty csv",
    "csv not in UTF-8",
    "csv with a short row",
    "csv with a word",
    "csv with a missing value",
    "output is a directory",
    "output in a missing directory",
    "weight of 2**62 elements",
]


@pytest.mark.parametrize("pyarrow", ["with pyarrow", "without pyarrow"])
@pytest.mark.parametrize("case", MALFORMED_NAMES)
def test_malformed_files_exit_2_with_one_line(
    malformed_cases: dict[str, list[Any]],
    case: str,
    pyarrow: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert set(malformed_cases) == set(MALFORMED_NAMES)
    if pyarrow == "without pyarrow":
        monkeypatch.setitem(sys.modules, "pyarrow", None)
    elif "parquet" in case or "csv" in case:
        pytest.importorskip("pyarrow")
    rc, out, err = run(capsys, "--loss", "bce", *malformed_cases[case], "--quiet")
    assert rc == 2, err
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("crossent eval: error: ")
    assert "Traceback" not in err and "internal error" not in err
    if case == "text named .npy":
        assert "not a .npy file" in err and "pickle" not in err


# --------------------------------------------------------------------------------------------
# CSV: one behaviour with and without pyarrow
# --------------------------------------------------------------------------------------------


def _parse_csv(text: str) -> dict[str, np.ndarray]:
    """An independent reading of a well-formed CSV text: columns by stripped name, values by
    Python's float()."""
    import csv
    import io

    rows = [r for r in csv.reader(io.StringIO(text.lstrip("\ufeff"))) if r]
    names = [n.strip() for n in rows[0]]
    return {
        name: np.array([float(r[i]) for r in rows[1:]], dtype=np.float64)
        for i, name in enumerate(names)
    }


def _csv_body(rng: np.random.Generator, n: int) -> str:
    p = rng.uniform(0.01, 0.99, n)
    y = (rng.random(n) < p).astype(int)
    w = rng.uniform(0.5, 2, n)
    return "".join(f"{float(a)!r}, {b},\t{c:.6e}\n" for a, b, c in zip(p, y, w, strict=True))


# (CSV text, operands by column, expected error fragment or None). Every text is written to
# f.csv; the runs read it with pyarrow and without, in batches of a few rows or blocks.
_RNG = np.random.default_rng(17)
_BODY = _csv_body(_RNG, 300)
CSV_CASES: dict[str, tuple[str, dict[str, str], str | None]] = {
    "header with spaces, weight column": (
        "p, y, w\n" + _BODY,
        {"input": "p", "target": "y", "weight": "w"},
        None,
    ),
    "quoted names, CRLF, byte-order mark": (
        '\ufeff"p","y","w"\r\n' + _BODY.replace("\n", "\r\n"),
        {"input": "p", "target": "y", "weight": "w"},
        None,
    ),
    "NaN, inf and signs": (
        "p,y,w\n0.5,1,1\nNaN,0,1\n0.25,+1,inf\n.5,-0,1.\n0.75,1E+00,nan\n0.5,1,-Infinity\n",
        {"input": "p", "target": "y", "weight": "w"},
        None,
    ),
    "blank lines": (
        "p,y,w\n\n" + _BODY + "\n\n",
        {"input": "p", "target": "y", "weight": "w"},
        None,
    ),
    "a word in a later batch": (
        "p,y,w\n" + _BODY + "0.5,yes,1\n",
        {"input": "p", "target": "y"},
        "column 'y' holds 'yes' at row 300, not a number",
    ),
    "a missing value in a later batch": (
        "p,y,w\n" + _BODY + "0.5,,1\n",
        {"input": "p", "target": "y"},
        "column 'y' has a missing value at row 300",
    ),
    "underscores are not numbers": (
        "p,y,w\n" + _BODY + "0.5,1,1_0\n",
        {"input": "p", "target": "y", "weight": "w"},
        "column 'w' holds '1_0' at row 300, not a number",
    ),
    "a short row in a later batch": (
        "p,y,w\n" + _BODY + "0.5,1\n",
        {"input": "p", "target": "y"},
        "row 300 has 2 fields, the header 3 fields",
    ),
    "a name given twice": (
        "p,y,p\n0.5,1,0.5\n",
        {"input": "p", "target": "y"},
        "the header names column 'p' more than once",
    ),
    "a column that is not there": ("p, y\n0.5,1\n", {"input": "p", "target": "z"}, "no column 'z'"),
    "a bad value at its row": (
        "p,y,w\n" + _BODY + "1.5,1,1\n",
        {"input": "p", "target": "y"},
        "found 1.5 at index (300,)",
    ),
}


def _run_csv(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    pyarrow: bool,
    *args: Any,
) -> tuple[int, str, str]:
    with monkeypatch.context() as m:
        m.setattr(sources, "_CSV_ROWS", 7)
        m.setattr(sources, "_CSV_BLOCK", 1 << 10)
        m.setattr(sources, "BATCH", 2 * crossent.BLOCK)
        if not pyarrow:
            m.setitem(sys.modules, "pyarrow", None)
        return run(capsys, *args, "--quiet")


@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize("case", list(CSV_CASES))
def test_csv_reads_the_same_with_and_without_pyarrow(
    tmp_path: Path,
    case: str,
    reduction: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    pytest.importorskip("pyarrow")
    text, columns, error = CSV_CASES[case]
    f = tmp_path / "f.csv"
    f.write_bytes(text.encode("utf-8"))
    args = [a for arg, col in columns.items() for a in (f"--{arg}", f"{f}:{col}")]
    results = {}
    for pyarrow in (True, False):
        out = tmp_path / f"out-{pyarrow}.npy"
        extra = ["--reduction", "none", "--output", out] if reduction == "none" else []
        rc, stdout, err = _run_csv(capsys, monkeypatch, pyarrow, "--loss", "bce", *args, *extra)
        saved = np.load(out) if reduction == "none" and rc == 0 else None
        results[pyarrow] = (rc, stdout.replace(str(out), "OUT"), err, saved)
    with_arrow, without = results[True], results[False]
    assert with_arrow[:3] == without[:3]
    rc, stdout, err, saved = without
    if error is not None:
        assert rc == 2 and error in err and err.count("\n") == 1
        return
    assert rc == 0, err
    cols = _parse_csv(text)
    kw: dict[str, Any] = {"weight": cols[columns["weight"]]} if "weight" in columns else {}
    want = crossent.binary_cross_entropy(
        cols[columns["input"]], cols[columns["target"]], reduction=reduction, **kw
    )
    if reduction == "none":
        assert with_arrow[3] is not None and saved is not None
        np.testing.assert_array_equal(with_arrow[3], saved)
        np.testing.assert_array_equal(saved, want)
    else:
        # The same bits as one in-memory call (NaN where a NaN is read).
        assert np.array_equal(float(stdout), want, equal_nan=True)


@pytest.mark.parametrize("pyarrow", [True, False])
def test_csv_class_indices_for_softmax(
    softmax_files: dict[str, Any],
    pyarrow: bool,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    if pyarrow:
        pytest.importorskip("pyarrow")
    f = softmax_files
    d = f["dir"]
    labels = f["labels"].copy()
    labels[::13] = -100
    (d / "labels.csv").write_text("label\n" + "".join(f" {v}\n" for v in labels))
    logits = ("--loss", "softmax_ce", "--input", d / "logits.npy")
    rc, out, err = _run_csv(
        capsys, monkeypatch, pyarrow, *logits, "--target", f"{d}/labels.csv:label"
    )
    assert rc == 0, err
    assert float(out) == pytest.approx(
        crossent.softmax_cross_entropy(f["logits"], labels), rel=1e-12
    )
    with open(d / "labels.csv", "a", encoding="utf-8") as fh:
        fh.write("2.5\n")
    bad = np.concatenate([f["logits"], f["logits"][:1]])
    np.save(d / "more.npy", bad)
    rc, _, err = _run_csv(
        capsys,
        monkeypatch,
        pyarrow,
        *("--loss", "softmax_ce", "--input", d / "more.npy", "--target", f"{d}/labels.csv:label"),
    )
    assert rc == 2 and f"class index 2.5 at index ({len(labels)},) is not a whole number" in err


# --------------------------------------------------------------------------------------------
# Positions in errors are those of the whole operand, for every loss
# --------------------------------------------------------------------------------------------


def _position_cases() -> dict[str, tuple[str, str, dict[str, np.ndarray], Any]]:
    """(loss, operand holding the bad value, arrays by option, in-memory call) per case; the
    bad value lies in a later batch than the first (with `small_batches`)."""
    rng = np.random.default_rng(23)
    cases: dict[str, tuple[str, str, dict[str, np.ndarray], Any]] = {}
    for shape in [(N,), (N // 7, 7), (41, 29, 37)]:
        late = tuple(int(v) for v in np.unravel_index(4 * N // 5, shape))
        p = rng.uniform(0.01, 0.99, shape)
        soft = rng.uniform(0, 1, shape)
        hard = (rng.random(shape) < 0.5).astype(np.uint8)
        x = rng.standard_normal(shape)
        bad_p, bad_soft, bad_hard = p.copy(), soft.copy(), hard.copy()
        bad_p[late], bad_soft[late], bad_hard[late] = 1.5, -0.25, 2
        cases[f"bce input {shape}"] = (
            "bce",
            "input",
            {"input": bad_p, "target": hard},
            lambda a: crossent.binary_cross_entropy(a["input"], a["target"]),
        )
        cases[f"bce soft target {shape}"] = (
            "bce",
            "target",
            {"input": p, "target": bad_soft},
            lambda a: crossent.binary_cross_entropy(a["input"], a["target"]),
        )
        cases[f"bce label {shape}"] = (
            "bce",
            "target",
            {"input": p, "target": bad_hard, "weight": soft},
            lambda a: crossent.binary_cross_entropy(a["input"], a["target"], weight=a["weight"]),
        )
        cases[f"bce_logits label {shape}"] = (
            "bce_logits",
            "target",
            {"input": x, "target": bad_hard},
            lambda a: crossent.binary_cross_entropy_with_logits(a["input"], a["target"]),
        )
        # Entropy and divergences: distributions along the last axis (a column is one).
        cases[f"entropy p {shape}"] = (
            "entropy",
            "p",
            {"p": bad_soft},
            lambda a: crossent.entropy(a["p"]),
        )
        cases[f"kl q {shape}"] = (
            "kl",
            "q",
            {"p": soft, "q": bad_soft},
            lambda a: crossent.kl_divergence(a["p"], a["q"]),
        )
        cases[f"cross_entropy p {shape}"] = (
            "cross_entropy",
            "p",
            {"p": bad_soft, "q": p},
            lambda a: crossent.cross_entropy(a["p"], a["q"]),
        )
        if len(shape) == 1:
            continue
        cases[f"js q {shape}"] = (
            "js",
            "q",
            {"p": p, "q": bad_soft},
            lambda a: crossent.jensen_shannon(a["p"], a["q"]),
        )
        # Softmax cross-entropy: rows of classes along the last axis.
        rows = shape[:-1]
        labels = rng.integers(0, shape[-1], rows)
        bad_labels = labels.copy()
        bad_labels[late[:-1]] = shape[-1]
        probs = soft / soft.sum(axis=-1, keepdims=True)
        bad_probs = probs.copy()
        bad_probs[late] = -0.25
        cases[f"softmax_ce labels {shape}"] = (
            "softmax_ce",
            "target",
            {"input": x, "target": bad_labels},
            lambda a: crossent.softmax_cross_entropy(a["input"], a["target"]),
        )
        cases[f"softmax_ce probabilities {shape}"] = (
            "softmax_ce",
            "target",
            {"input": x, "target": bad_probs},
            lambda a: crossent.softmax_cross_entropy(a["input"], a["target"]),
        )
    return cases


DISTRIBUTIONS = ("entropy", "cross_entropy", "kl", "js")
POSITION_CASES = _position_cases()


@pytest.mark.parametrize(
    ("case", "fmt", "reduction"),
    [
        (case, fmt, reduction)
        for case, (loss, bad, arrays, _) in POSITION_CASES.items()
        for fmt in ("npy", "npz", "csv")
        for reduction in ("mean", "none")
        # A CSV column is one-dimensional, and holds floats: a label of 2 read as 2.0 is a
        # valid target of BCE with logits (any real number, as PyTorch), not a bad label.
        if fmt != "csv" or (arrays[bad].ndim == 1 and not case.startswith("bce_logits label"))
        # One distribution (a column) has one value: no --reduction none.
        if not (loss in DISTRIBUTIONS and arrays[bad].ndim == 1 and reduction == "none")
    ],
)
def test_bad_value_is_reported_at_its_position_in_the_whole_operand(
    tmp_path: Path,
    small_batches: None,
    case: str,
    reduction: str,
    fmt: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    loss, bad, arrays, call = POSITION_CASES[case]
    if fmt == "csv" and loss != "softmax_ce":
        arrays = {**arrays, bad: arrays[bad].astype(np.float64)}  # as a CSV column is read
    with pytest.raises(ValueError) as caught:
        call(arrays)
    # The in-memory call on the whole arrays is the reference: its message, position included.
    specs = {
        name: _write_operand(tmp_path, name, fmt if name == bad else "npy", a)
        for name, a in arrays.items()
    }
    args: list[Any] = [a for name, spec in specs.items() for a in (f"--{name}", spec)]
    if reduction == "none":
        args += ["--reduction", "none", "--output", tmp_path / "out.npy"]
    rc, out, err = run(capsys, "--loss", loss, *args, "--quiet")
    assert rc == 2 and out == ""
    assert err == f"crossent eval: error: --{bad} {specs[bad]}: {caught.value}\n"


# --------------------------------------------------------------------------------------------
# Entropy and divergences: distributions --p (and --q) along the last axis
# --------------------------------------------------------------------------------------------


def _scipy_rows(function: str, p: np.ndarray, q: np.ndarray, base: float | None, norm: bool) -> Any:
    """SciPy's value of each row (float64): scipy.stats.entropy, the square of
    scipy.spatial.distance.jensenshannon, and their unnormalised sums of xlogy/rel_entr."""
    from scipy.spatial.distance import jensenshannon
    from scipy.special import rel_entr, xlogy
    from scipy.stats import entropy

    p, q = p.astype(np.float64), q.astype(np.float64)
    scale = np.log(base) if base is not None else 1.0
    if norm:
        a, b = p / p.sum(-1, keepdims=True), q / q.sum(-1, keepdims=True)
        if function == "entropy":
            return entropy(p, axis=-1, base=base)
        if function == "kl_divergence":
            return entropy(p, q, axis=-1, base=base)
        if function == "cross_entropy":
            return -np.sum(xlogy(a, b), axis=-1) / scale
        return jensenshannon(p, q, axis=-1, base=base) ** 2
    if function == "entropy":
        return -np.sum(xlogy(p, p), axis=-1) / scale
    if function == "kl_divergence":
        return np.sum(rel_entr(p, q), axis=-1) / scale
    if function == "cross_entropy":
        return -np.sum(xlogy(p, q), axis=-1) / scale
    m = (p + q) / 2
    return (np.sum(rel_entr(p, m), axis=-1) + np.sum(rel_entr(q, m), axis=-1)) / 2 / scale


FUNCTIONS = {
    "entropy": "entropy",
    "cross_entropy": "cross_entropy",
    "kl": "kl_divergence",
    "js": "jensen_shannon",
}


@pytest.fixture
def distribution_files(tmp_path: Path) -> dict[str, Any]:
    """Rows of 37 classes over more rows than one batch of `small_batches` holds (zeros
    included, where 0 log 0 = 0), as float64 and float32, in .npy and .npz."""
    rng = np.random.default_rng(31)
    shape = (3 * (2 * crossent.BLOCK // 37) + 5, 37)
    p = rng.uniform(0, 2, shape) * (rng.random(shape) < 0.9)
    q = rng.uniform(0.01, 2, shape)
    arrays: dict[str, np.ndarray] = {
        "p": p,
        "q": q,
        "p32": p.astype(np.float32),
        "q32": q.astype(np.float32),
    }
    for name, a in arrays.items():
        np.save(tmp_path / f"{name}.npy", a)
    np.savez_compressed(tmp_path / "pq.npz", p=p, q=q)
    np.save(tmp_path / "p3.npy", p[:200].reshape(40, 5, 37))
    return {"dir": tmp_path, "p": p, "q": q}


@pytest.mark.parametrize("loss", list(FUNCTIONS))
@pytest.mark.parametrize(
    ("base", "normalize"), [(None, None), ("2", "--normalize"), ("10", "--no-normalize")]
)
@pytest.mark.parametrize("fmt", ["npy", "npz", "float32", "mixed"])
def test_distribution_rows_stream_with_the_values_of_one_call(
    distribution_files: dict[str, Any],
    small_batches: None,
    tmp_path: Path,
    loss: str,
    base: str | None,
    normalize: str | None,
    fmt: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    d, fn = distribution_files["dir"], FUNCTIONS[loss]
    p, q = distribution_files["p"], distribution_files["q"]
    if fmt == "float32":
        p, q = p.astype(np.float32), q.astype(np.float32)
        specs = [d / "p32.npy", d / "q32.npy"]
    elif fmt == "mixed":  # float32 p, float64 q: computed in float64
        p = p.astype(np.float32)
        specs = [d / "p32.npy", d / "q.npy"]
    elif fmt == "npz":
        specs = [f"{d / 'pq.npz'}:p", f"{d / 'pq.npz'}:q"]
    else:
        specs = [d / "p.npy", d / "q.npy"]
    two = fn != "entropy"
    args: list[Any] = ["--loss", loss, "--p", specs[0], *(["--q", specs[1]] if two else [])]
    kw: dict[str, Any] = {}
    if base is not None:
        args += ["--base", base]
        kw["base"] = float(base)
    if normalize is not None:
        args.append(normalize)
        kw["normalize"] = normalize == "--normalize"
    call = getattr(crossent, fn)
    whole = call(p, q, **kw) if two else call(p, **kw)
    assert p.shape[0] > 2 * (sources.BATCH // 37)  # several batches of rows
    # Each row's value: the bits of one call on the whole arrays, and SciPy's value.
    out = tmp_path / "rows.npy"
    rc, _, err = run(capsys, *args, "--reduction", "none", "--output", out, "--quiet")
    assert rc == 0, err
    rows = np.load(out)
    assert rows.dtype == whole.dtype and rows.shape == p.shape[:-1]
    np.testing.assert_array_equal(rows, whole)
    ref = _scipy_rows(fn, p, q, kw.get("base"), kw.get("normalize", True))
    tol = 1e-5 if rows.dtype == np.float32 else 1e-12
    np.testing.assert_allclose(rows, ref, rtol=tol, atol=tol)
    # The mean and sum over rows: the correctly rounded sum of the rows' values, whatever
    # the batches.
    got_sum = value(capsys, *args, "--reduction", "sum")
    got_mean = value(capsys, *args)
    exact = math.fsum(whole.astype(np.float64).tolist())
    assert got_sum == exact
    assert got_mean == exact / whole.size
    assert got_mean == pytest.approx(float(np.mean(ref)), rel=tol)


def test_distribution_rows_of_a_3d_array_keep_their_shape(
    distribution_files: dict[str, Any],
    small_batches: None,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    d = distribution_files["dir"]
    p3 = np.load(d / "p3.npy")
    out = tmp_path / "h.npy"
    rc, _, err = run(
        capsys, "--loss", "entropy", "--p", d / "p3.npy", "--reduction", "none", "--output", out
    )
    assert rc == 0, err
    from scipy.stats import entropy

    np.testing.assert_allclose(np.load(out), entropy(p3, axis=-1), rtol=1e-12)
    assert np.load(out).shape == (40, 5)


@pytest.mark.parametrize("fmt", OPERAND_FORMATS)
@pytest.mark.parametrize("loss", ["entropy", "cross_entropy", "kl", "js"])
def test_a_column_is_one_distribution(
    tmp_path: Path,
    small_batches: None,
    fmt: str,
    loss: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A one-dimensional operand, in any format, streams through the accumulator in whole
    chunks: the bits of one call on the whole column (and SciPy's value)."""
    rng = np.random.default_rng(41)
    n = 3 * crossent.CHUNK + 11
    p, q = rng.uniform(0, 1, n), rng.uniform(0.01, 1, n)
    fn = FUNCTIONS[loss]
    kw: dict[str, Any] = {"base": 2.0}
    args = ["--base", "2"]
    if fn == "jensen_shannon":
        # Streamed only without normalisation: data that sum to 1 already.
        p, q = p / p.sum(), q / q.sum()
        kw["normalize"] = False
        args.append("--no-normalize")
    specs = {"p": _write_operand(tmp_path, "p", fmt, p), "q": _write_operand(tmp_path, "q", fmt, q)}
    if fn == "entropy":
        del specs["q"]
    operands = [a for name, spec in specs.items() for a in (f"--{name}", spec)]
    rc, out, err = run(capsys, "--loss", loss, *operands, *args, "--json", "--quiet")
    assert rc == 0, err
    record = json.loads(out)
    call = getattr(crossent, fn)
    want = call(p, q, **kw) if fn != "entropy" else call(p, **kw)
    assert record["value"] == want
    assert record["count"] == n and record["base"] == 2.0
    assert record["normalize"] is kw.get("normalize", True)
    assert record["loss"] == fn
    ref = _scipy_rows(fn, p, q, 2.0, kw.get("normalize", True))
    assert record["value"] == pytest.approx(float(ref), rel=1e-12)


def distribution_bad_cases(d: Path) -> dict[str, tuple[list[Any], str]]:
    """(arguments, a part of the one-line message) per case."""
    rng = np.random.default_rng(3)
    np.save(d / "p.npy", rng.uniform(0, 1, (20, 4)))
    np.save(d / "q.npy", rng.uniform(0, 1, (20, 4)))
    np.save(d / "q5.npy", rng.uniform(0, 1, (20, 5)))
    np.save(d / "col.npy", rng.uniform(0, 1, 80))
    np.save(d / "col81.npy", rng.uniform(0, 1, 81))
    np.save(d / "empty_rows.npy", np.zeros((20, 0)))
    np.save(d / "labels.npy", np.arange(20) % 4)
    p, q = d / "p.npy", d / "q.npy"
    return {
        "input for kl": (["--loss", "kl", "--input", p, "--q", q], "--input does not apply"),
        "target for entropy": (["--loss", "entropy", "--p", p, "--target", q], "--target"),
        "q for entropy": (["--loss", "entropy", "--p", p, "--q", q], "--q does not apply"),
        "no q": (["--loss", "js", "--p", p], "needs --q"),
        "no p": (["--loss", "cross_entropy", "--q", q], "needs --p"),
        "p for bce": (["--loss", "bce", "--p", p, "--target", q], "--p does not apply"),
        "weight for kl": (["--loss", "kl", "--p", p, "--q", q, "--weight", p], "--weight"),
        "pos-weight": (["--loss", "kl", "--p", p, "--q", q, "--pos-weight", "2"], "bce_logits"),
        "base for bce": (["--loss", "bce", "--input", p, "--target", q, "--base", "2"], "--base"),
        "normalize for softmax": (
            ["--loss", "softmax_ce", "--input", p, "--target", q, "--no-normalize"],
            "--normalize only applies",
        ),
        "base -1": (["--loss", "entropy", "--p", p, "--base", "-1"], "positive finite"),
        "base nan": (["--loss", "entropy", "--p", p, "--base", "nan"], "positive finite"),
        "base text": (["--loss", "entropy", "--p", p, "--base", "two"], "--base"),
        "base 1": (["--loss", "entropy", "--p", p, "--base", "1"], "other than 1"),
        "shapes": (["--loss", "kl", "--p", p, "--q", d / "q5.npy"], "must have one shape"),
        "column length": (["--loss", "kl", "--p", p, "--q", d / "col81.npy"], "one shape"),
        "one distribution, none": (
            [
                "--loss",
                "entropy",
                "--p",
                d / "col.npy",
                "--reduction",
                "none",
                "--output",
                d / "o.npy",
            ],
            "one distribution",
        ),
        "normalised js of a column": (
            ["--loss", "js", "--p", d / "col.npy", "--q", d / "col.npy"],
            "--no-normalize",
        ),
        # Silently ignored before: softmax_ce has no positive class.
        "pos-weight for softmax": (
            [
                "--loss",
                "softmax_ce",
                "--input",
                p,
                "--target",
                d / "labels.npy",
                "--pos-weight",
                "2",
            ],
            "--pos-weight only applies to --loss bce_logits",
        ),
        "no classes": (["--loss", "entropy", "--p", d / "empty_rows.npy"], "no classes"),
        "missing file": (["--loss", "kl", "--p", p, "--q", d / "nope.npy"], "--q"),
        "output is p": (
            ["--loss", "kl", "--p", p, "--q", q, "--reduction", "none", "--output", p],
            "is the same file as --p",
        ),
    }


DISTRIBUTION_BAD = [
    "input for kl",
    "target for entropy",
    "q for entropy",
    "no q",
    "no p",
    "p for bce",
    "weight for kl",
    "pos-weight",
    "base for bce",
    "normalize for softmax",
    "base -1",
    "base nan",
    "base text",
    "base 1",
    "shapes",
    "column length",
    "one distribution, none",
    "normalised js of a column",
    "pos-weight for softmax",
    "no classes",
    "missing file",
    "output is p",
]


@pytest.mark.parametrize("case", DISTRIBUTION_BAD)
def test_distribution_usage_errors_are_one_line(
    tmp_path: Path, case: str, capsys: pytest.CaptureFixture[str]
) -> None:
    cases = distribution_bad_cases(tmp_path)
    assert len(cases) == len(DISTRIBUTION_BAD)  # every case is run
    args, part = cases[case]
    before = _listing(tmp_path)
    rc, out, err = run(capsys, *args, "--quiet")
    assert rc == 2 and out == "", err
    assert err.count("\n") == 1 and err.startswith("crossent eval: error: "), err
    assert part in err, err
    assert _listing(tmp_path) == before


def test_a_column_of_as_many_values_is_read_in_the_shape_of_p(
    distribution_files: dict[str, Any], small_batches: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """A CSV column (of a length known only at its end) holding q's values, row after row."""
    d, p, q = distribution_files["dir"], distribution_files["p"], distribution_files["q"]
    spec = _write_operand(d, "qcol", "csv", q.reshape(-1))
    got = value(capsys, "--loss", "kl", "--p", d / "p.npy", "--q", spec, "--reduction", "sum")
    assert got == math.fsum(np.asarray(crossent.kl_divergence(p, q)).tolist())


def _exact(values: Any) -> float:
    """The float nearest the exact sum, in rational arithmetic."""
    from fractions import Fraction

    return float(sum((Fraction(float(x)) for x in values), Fraction(0)))


def test_a_bad_value_in_a_column_read_in_the_shape_of_p_is_at_its_own_position(
    distribution_files: dict[str, Any], small_batches: None, capsys: pytest.CaptureFixture[str]
) -> None:
    d, p, q = distribution_files["dir"], distribution_files["p"], distribution_files["q"]
    column = q.reshape(-1).copy()
    at = column.size - 40  # in the last batch
    column[at] = -0.5
    np.save(d / "qcol.npy", column)
    with pytest.raises(crossent.DomainError) as caught:
        crossent.kl_divergence(p.reshape(-1), column)  # the column's own position: (at,)
    assert caught.value.index == (at,)
    rc, out, err = run(capsys, "--loss", "kl", "--p", d / "p.npy", "--q", d / "qcol.npy", "--quiet")
    assert rc == 2 and out == ""
    assert err == f"crossent eval: error: --q {d / 'qcol.npy'}: {caught.value}\n"


@pytest.mark.parametrize("piece", [1 << 24, 7])
def test_exact_sum_does_not_depend_on_the_cut(piece: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(eval.ExactSum, "PIECE", piece)
    rng = np.random.default_rng(5)
    n = 3000
    # Every exponent range, subnormals included, both signs.
    values = np.ldexp(rng.uniform(-1, 1, n), rng.integers(-1074, 1000, n))
    values[:10] = [1.0, 2.0**-53, 5e-324, -5e-324, 1e308, 1e308, -1e308, 0.0, -0.0, 3.0]
    want = _exact(values)
    for cuts in ([], [1], [17, 1000, 1001, 2999], list(range(0, n, 333))):
        acc = eval.ExactSum()
        for part in np.split(values, cuts):
            acc.add(part)
        assert acc.result() == want
    # Ties round to even: 1 + 2**-53 is halfway between 1 and the next double.
    for tie, rounded in (([1.0, 2.0**-53], 1.0), ([1.0, 2.0**-53, 2.0**-105], 1.0 + 2.0**-52)):
        acc = eval.ExactSum()
        for x in tie:
            acc.add(np.array([x]))
        assert acc.result() == rounded == _exact(tie)
    acc = eval.ExactSum()
    acc.add(np.array([1.7e308, 1.7e308]))
    assert acc.result() == math.inf
    # Non-finite values: one infinity wins, both signs or a NaN give NaN.
    for specials, want_special in (
        ([np.inf], np.inf),
        ([-np.inf, -np.inf], -np.inf),
        ([np.inf, -np.inf], np.nan),
        ([np.nan], np.nan),
    ):
        acc = eval.ExactSum()
        acc.add(values[10:20])
        acc.add(np.array(specials))
        acc.add(values[20:30])
        np.testing.assert_equal(acc.result(), want_special)
