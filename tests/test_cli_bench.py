"""`python -m crossent bench`: runs, prints a Markdown table with a crossent column, checks
peers against crossent, and refuses bad arguments with one line and exit status 2."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import crossent
from crossent import _peers
from crossent.__main__ import main
from crossent.cli import bench
from crossent.cli.progress import Progress

QUICK = ["bench", "--quick", "--sizes", "1e3,5e4", "--min-time", "0", "--quiet"]


def table_rows(text: str) -> list[list[str]]:
    lines = [ln for ln in text.splitlines() if ln.startswith("|")]
    return [[c.strip() for c in ln.strip("|").split("|")] for ln in lines]


def test_module_entry_point_prints_table() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "crossent", *QUICK, "--dtypes", "float32", "--peers", "numpy"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    rows = table_rows(proc.stdout)
    head = rows[0]
    assert head[:5] == ["function", "dtype", "size", "crossent", "Melem/s"]
    assert head[5:] == ["numpy", "numpy/crossent"]
    body = rows[2:]
    functions = [n for n in bench.CASE_NAMES if hasattr(crossent, n)]
    assert "binary_cross_entropy" in functions
    # One row per available function and size, each with a measured time and throughput.
    assert [r[0].strip("`") for r in body] == [f for f in functions for _ in (1, 2)]
    for r in body:
        assert r[1] == "float32"
        assert r[3].endswith(("µs", "ms", " s"))
        assert float(r[4].replace(",", "")) > 0
        assert r[6].startswith("x") and "!" not in r[6]
    assert proc.stderr == ""


def test_every_peer_agrees_with_crossent(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*QUICK, "--dtypes", "float32,float64"]) == 0
    out, err = capsys.readouterr()
    assert "results differ" not in err
    rows = table_rows(out)
    assert "crossent" in rows[0]
    assert all("!" not in cell for r in rows for cell in r)
    assert {r[1] for r in rows[2:]} == {"float32", "float64"}


def test_peer_disagreement_is_flagged(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # A deliberately wrong NumPy peer must be caught by the bench's cross-check.
    wrong = {"binary_cross_entropy": lambda p, y: 1.0 + float(np.mean(p))}
    monkeypatch.setitem(_peers._TABLES, "numpy", lambda: wrong)
    assert main([*QUICK, "--peers", "numpy", "--functions", "bce", "--dtypes", "float64"]) == 0
    out, err = capsys.readouterr()
    assert "results differ" in err
    assert all(r[6].endswith("!") for r in table_rows(out)[2:])


def test_threads_option_sets_pool(capsys: pytest.CaptureFixture[str]) -> None:
    before = crossent.get_num_threads()
    try:
        args = [*QUICK, "--sizes", "1e3", "--peers", "numpy", "--threads", "1"]
        assert main([*args, "--functions", "bce"]) == 0
        assert "(1 threads)" in capsys.readouterr().out
    finally:
        crossent.set_num_threads(before)


def test_plot_writes_png(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / "bench.png"
    args = [*QUICK, "--peers", "numpy", "--functions", "bce,bce_logits", "--plot", str(out)]
    assert main(args) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_failed_plot_leaves_an_existing_file_untouched(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / "bench.nosuchformat"
    out.write_bytes(b"precious")
    args = [*QUICK, "--sizes", "1e3", "--peers", "numpy", "--functions", "bce"]
    assert main([*args, "--plot", str(out)]) == 2  # matplotlib has no such format
    _, err = capsys.readouterr()
    assert err.count("\n") == 1 and "nosuchformat" in err
    assert out.read_bytes() == b"precious"
    assert [p.name for p in tmp_path.iterdir()] == [out.name]  # no temporary file left


def test_plot_without_matplotlib_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert main([*QUICK, "--plot", str(tmp_path / "x.png")]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and "matplotlib" in err and "pip install" in err


@pytest.mark.parametrize(
    "args",
    [
        ["frobnicate"],
        ["bench", "--sizes", "abc"],
        ["bench", "--sizes", "0"],
        ["bench", "--sizes", "1.5"],
        ["bench", "--sizes", ""],
        ["bench", "--dtypes", "float16"],
        ["bench", "--functions", "nope"],
        ["bench", "--peers", "jax"],
        ["bench", "--classes", "-3"],
        ["bench", "--min-time", "-1", "--quiet"],
        ["bench", "--min-time", "nan", "--quiet"],
        ["bench", "--bogus"],
        ["bench", "--sizes", "1e11"],
        ["bench", "--threads", "0"],
        ["bench", "--classes", "1e12"],
        ["bench", "--plot", "/nonexistent-dir/b.png", "--quiet"],
        ["bench", "--plot", "/", "--quiet"],
    ],
)
def test_bad_arguments_exit_2_with_one_line(
    args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(args) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and "error" in err and "Traceback" not in err
    assert "internal error" not in err


def _limit_memory() -> None:
    import resource

    limit = 3 << 30  # bytes of address space: too few for the data of the size asked for
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


@pytest.mark.skipif(sys.platform != "linux", reason="address-space limit (RLIMIT_AS) of Linux")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("function", ["bce", "softmax_ce", "kl"])
def test_sizes_beyond_memory_exit_2_with_one_line(function: str, dtype: str) -> None:
    # The case, `--sizes 1e10`, in a process that cannot allocate its arrays.
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "crossent", "bench", "--sizes", "1e10", "--quiet"),
            *("--functions", function, "--dtypes", dtype, "--peers", "numpy"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=_limit_memory,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert "not enough memory" in proc.stderr and "--sizes" in proc.stderr


def test_bad_arguments_exit_2_from_the_shell() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "crossent", "bench", "--dtypes", "int8"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "int8" in proc.stderr


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--help"]) == 0
    assert "--sizes" in capsys.readouterr().out


def test_progress_bar_after_delay_only() -> None:
    quiet = io.StringIO()
    p = Progress(10, label="x", delay=3600, stream=quiet)
    p.update(5)
    p.close()
    assert quiet.getvalue() == ""
    shown = io.StringIO()
    p = Progress(10, label="x", delay=0, stream=shown)
    p.update(5, "half")
    p.update(10, "all")
    p.close()
    lines = shown.getvalue().splitlines()
    assert "50.0%" in lines[0] and "half" in lines[0]
    assert "100.0%" in lines[-1]
    off = io.StringIO()
    p = Progress(10, enabled=False, delay=0, stream=off)
    p.update(10)
    assert off.getvalue() == ""
