"""`crossent eval --output` as Parquet or CSV (by extension): the values of the `.npy` output,
written batch by batch under a temporary name, never over an operand, never left half
written."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import crossent
from crossent.__main__ import main
from crossent.cli import sources


@pytest.fixture
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    """Batches of two blocks, so that small files still stream in many batches."""
    monkeypatch.setattr(sources, "BATCH", 2 * crossent.BLOCK)


def run(capsys: pytest.CaptureFixture[str], *args: Any) -> tuple[int, str, str]:
    rc = main(["eval", *(str(a) for a in args), "--quiet"])
    out, err = capsys.readouterr()
    return rc, out, err


def read_column(path: Path, dtype: Any) -> np.ndarray:
    """The ``loss`` column of a Parquet or CSV output, read independently of crossent (pyarrow
    or the csv module), as ``dtype``: CSV text is parsed as float64 and rounded to ``dtype``."""
    if path.suffix == ".parquet":
        pq = pytest.importorskip("pyarrow.parquet")
        table = pq.read_table(path)
        assert table.column_names == ["loss"]
        col = table.column("loss").to_numpy()
        assert col.dtype == dtype
        return np.asarray(col)
    import csv

    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["loss"]
    assert all(len(r) == 1 for r in rows[1:])
    return np.array([float(r[0]) for r in rows[1:]], dtype=np.float64).astype(dtype)


def _cases(d: Path) -> dict[str, tuple[list[Any], np.ndarray]]:
    """Command lines (after ``eval``) with ``--reduction none``, and the losses of one call."""
    rng = np.random.default_rng(3)
    n = 5 * crossent.BLOCK + 7
    p = rng.uniform(0, 1, n)
    y = (rng.random(n) < p).astype(np.float64)
    x32 = (rng.standard_normal(n) * 3).astype(np.float32)
    # Extremes that need every digit, and subnormals, in float32.
    x32[:4] = [np.float32(1e-45), np.float32(3.4e38), np.float32(-1.17e-38), np.float32(0.1)]
    p2 = rng.uniform(0, 1, (300, 70))
    y2 = rng.uniform(0, 1, (300, 70))
    logits = rng.standard_normal((3 * (crossent.CHUNK // 10) + 17, 10)).astype(np.float32)
    labels = rng.integers(0, 10, size=(logits.shape[0],))
    arrays: dict[str, np.ndarray] = {"p": p, "y": y, "x32": x32, "p2": p2, "y2": y2}
    arrays.update(logits=logits, labels=labels)
    for name, a in arrays.items():
        np.save(d / f"{name}.npy", a)
    return {
        "bce": (
            ["--loss", "bce", "--input", d / "p.npy", "--target", d / "y.npy"],
            crossent.binary_cross_entropy(p, y, reduction="none"),
        ),
        "bce_logits float32": (
            ["--loss", "bce_logits", "--input", d / "x32.npy", "--target", d / "y.npy"],
            crossent.binary_cross_entropy_with_logits(x32, y.astype(np.float32), reduction="none"),
        ),
        "bce of a matrix, in C order": (
            ["--loss", "bce", "--input", d / "p2.npy", "--target", d / "y2.npy"],
            crossent.binary_cross_entropy(p2, y2, reduction="none").reshape(-1),
        ),
        "softmax_ce rows": (
            ["--loss", "softmax_ce", "--input", d / "logits.npy", "--target", d / "labels.npy"],
            crossent.softmax_cross_entropy(logits, labels, reduction="none"),
        ),
    }


@pytest.mark.parametrize("fmt", ["parquet", "csv", "csv without pyarrow"])
@pytest.mark.parametrize(
    "case", ["bce", "bce_logits float32", "bce of a matrix, in C order", "softmax_ce rows"]
)
def test_losses_as_a_column_are_those_of_one_call(
    tmp_path: Path,
    small_batches: None,
    case: str,
    fmt: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    args, want = _cases(tmp_path)[case]
    if fmt == "parquet":
        pytest.importorskip("pyarrow")
    if fmt == "csv without pyarrow":
        monkeypatch.setitem(sys.modules, "pyarrow", None)
    out = tmp_path / "out" / f"losses.{fmt.split()[0]}"
    out.parent.mkdir()
    rc, stdout, err = run(capsys, *args, "--reduction", "none", "--output", out)
    assert rc == 0, err
    assert stdout == f"{out}\n" and err == ""
    got = read_column(out, want.dtype)
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)  # bit for bit, NaN where NaN
    assert sorted(p.name for p in out.parent.iterdir()) == [out.name]  # no temporary left


def test_csv_with_and_without_pyarrow_read_back_alike(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Both writers give text that the command's own CSV reader (the operand reader of another
    run) reads back to the same values, with and without pyarrow."""
    pytest.importorskip("pyarrow")
    args, want = _cases(tmp_path)["bce_logits float32"]
    outs = []
    for label in ("arrow", "plain"):
        with monkeypatch.context() as m:
            if label == "plain":
                m.setitem(sys.modules, "pyarrow", None)
            out = tmp_path / f"{label}.csv"
            rc, _, err = run(capsys, *args, "--reduction", "none", "--output", out)
            assert rc == 0, err
            outs.append(out)
    for reader in ("arrow", "plain"):
        with monkeypatch.context() as m:
            if reader == "plain":
                m.setitem(sys.modules, "pyarrow", None)
            for out in outs:
                source = sources.open_source(f"{out}:loss", "input")
                got = source.whole()
                source.close()
                np.testing.assert_array_equal(got.astype(np.float32), want)


# --------------------------------------------------------------------------------------------
# Nothing a user owns is overwritten
# --------------------------------------------------------------------------------------------


def _table_operands(d: Path) -> dict[str, str]:
    """A Parquet and a CSV file holding input and target columns, and their specs."""
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    rng = np.random.default_rng(9)
    p = rng.uniform(0.01, 0.99, 500)
    y = (rng.random(500) < 0.5).astype(np.float64)
    g = rng.integers(0, 5, 500)
    pq.write_table(pa.table({"p": p, "y": y, "g": g}), d / "t.parquet")
    with open(d / "t.csv", "w", encoding="utf-8") as f:
        f.write("p,y,g\n" + "".join(f"{a!r},{b!r},{c}\n" for a, b, c in zip(p, y, g, strict=True)))
    return {"parquet": str(d / "t.parquet"), "csv": str(d / "t.csv")}


def _alias(path: Path, how: str, d: Path) -> Path:
    """Another name for the file at ``path`` (same extension), made the way ``how`` says."""
    if how == "same path":
        return path
    if how == "another spelling":
        return path.parent / ".." / path.parent.name / "." / path.name
    alias = d / "elsewhere" / f"out{path.suffix}"
    alias.parent.mkdir(exist_ok=True)
    if how == "symbolic link":
        (d / f"hop{path.suffix}").symlink_to(path)
        alias.symlink_to(d / f"hop{path.suffix}")
    else:
        os.link(path, alias)
    return alias


def _listing(d: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(d)): (p.read_bytes() if p.is_file() else b"")
        for p in sorted(d.rglob("*"))
    }


@pytest.mark.parametrize("how", ["same path", "another spelling", "symbolic link", "hard link"])
@pytest.mark.parametrize("fmt", ["parquet", "csv"])
@pytest.mark.parametrize("mode", ["reduction none", "group-by column", "group-by file"])
def test_output_that_is_an_operand_is_refused_and_nothing_is_touched(
    tmp_path: Path, fmt: str, how: str, mode: str, capsys: pytest.CaptureFixture[str]
) -> None:
    d = tmp_path
    specs = _table_operands(d)
    table = Path(specs[fmt])
    np.save(d / "p.npy", np.full(500, 0.5))
    if mode == "group-by file":
        # The operands are .npy files; only the labels are in the table.
        args = ["--input", d / "p.npy", "--target", d / "p.npy", "--group-by", f"{table}:g"]
        operand = "--group-by"
    else:
        args = ["--input", f"{table}:p", "--target", f"{table}:y"]
        args += ["--reduction", "none"] if mode == "reduction none" else ["--group-by", "g"]
        operand = "--input"
    output = _alias(table, how, d)
    before = _listing(d)
    rc, out, err = run(capsys, "--loss", "bce", *args, "--output", output)
    assert rc == 2 and out == ""
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"is the same file as {operand}" in err
    assert _listing(d) == before  # every file byte-identical, no file added


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
@pytest.mark.parametrize("existing", [True, False])
def test_failed_run_leaves_no_output_and_the_old_one_untouched(
    tmp_path: Path,
    small_batches: None,
    fmt: str,
    existing: bool,
    capsys: pytest.CaptureFixture[str],
) -> None:
    if fmt == "parquet":
        pytest.importorskip("pyarrow")
    rng = np.random.default_rng(2)
    n = 7 * crossent.BLOCK
    p = rng.uniform(0, 1, n)
    y = rng.uniform(0, 1, n)
    y[6 * crossent.BLOCK + 3] = 1.5  # in a later batch, after others were written
    np.save(tmp_path / "p.npy", p)
    np.save(tmp_path / "y.npy", y)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    output = out_dir / f"losses.{fmt}"
    if existing:
        output.write_bytes(b"precious")
    rc, stdout, err = run(
        capsys,
        *("--loss", "bce", "--input", tmp_path / "p.npy", "--target", tmp_path / "y.npy"),
        *("--reduction", "none", "--output", output),
    )
    assert rc == 2 and stdout == "" and err.count("\n") == 1
    assert f"at index ({6 * crossent.BLOCK + 3},)" in err
    assert [q.name for q in out_dir.iterdir()] == ([output.name] if existing else [])
    if existing:
        assert output.read_bytes() == b"precious"


def test_output_through_a_link_replaces_the_linked_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An existing output is replaced whole (as for .npy), through a link onto its target,
    keeping the link and the target's permissions."""
    p = np.linspace(0.05, 0.95, 100)
    np.save(tmp_path / "p.npy", p)
    real = tmp_path / "real.csv"
    real.write_bytes(b"old contents")
    os.chmod(real, 0o640)
    link = tmp_path / "link.csv"
    link.symlink_to(real)
    rc, _, err = run(
        capsys,
        *("--loss", "bce", "--input", tmp_path / "p.npy", "--target", tmp_path / "p.npy"),
        *("--reduction", "none", "--output", link),
    )
    assert rc == 0, err
    assert link.is_symlink() and os.readlink(link) == str(real)
    np.testing.assert_array_equal(
        read_column(real, np.float64), crossent.binary_cross_entropy(p, p, reduction="none")
    )
    assert os.stat(real).st_mode & 0o777 == 0o640


@pytest.mark.parametrize(
    ("output", "needs", "message"),
    [
        ("losses.txt", "", "unknown file type .txt (use .npy, .parquet or .csv)"),
        ("losses", "", "unknown file type (none)"),
        ("losses.parquet", "no pyarrow", "writing parquet needs pyarrow"),
    ],
)
def test_output_type_is_checked_before_anything_is_read(
    tmp_path: Path,
    output: str,
    needs: str,
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    if needs == "no pyarrow":
        monkeypatch.setitem(sys.modules, "pyarrow", None)
        monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    np.save(tmp_path / "p.npy", np.full(10, 0.5))
    before = _listing(tmp_path)
    rc, out, err = run(
        capsys,
        *("--loss", "bce", "--input", tmp_path / "p.npy", "--target", tmp_path / "missing.npy"),
        *("--reduction", "none", "--output", tmp_path / output),
    )
    # The output's type is refused before the operands are opened (the target is missing).
    assert rc == 2 and out == "" and err.count("\n") == 1
    assert message in err, err
    assert _listing(tmp_path) == before
