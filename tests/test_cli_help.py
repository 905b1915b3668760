"""The command line as a first-time user meets it: the version, a bare ``crossent``, plain
help text, the peers ``crossent bench`` could not time, and the plot."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import crossent
from crossent.__main__ import main
from crossent.cli import report

SUBCOMMANDS: list[list[str]] = [[], ["bench"], ["eval"]]


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"crossent {crossent.__version__}"


def test_bare_command_prints_help() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "crossent"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: crossent")
    assert "bench" in proc.stdout and "eval" in proc.stdout and "--version" in proc.stdout


@pytest.mark.parametrize("sub", SUBCOMMANDS, ids=lambda s: " ".join(["crossent", *s]))
def test_help_is_plain_text(sub: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """No reStructuredText markup (``literal``, :func:`x`) reaches the terminal."""
    assert main([*sub, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: crossent")
    assert "`" not in out, [line for line in out.splitlines() if "`" in line]
    assert not re.search(r":[a-z]+:", out), out


def test_plain_strips_roles_and_literals() -> None:
    from crossent.cli.main import plain

    assert plain("``crossent bench``: see :func:`crossent.entropy` and :class:`~x.Y`") == (
        "crossent bench: see crossent.entropy and x.Y"
    )


def _rows() -> list[report.Row]:
    rows = []
    for fn in ("binary_cross_entropy", "entropy", "kl_divergence"):
        for dt in ("float32", "float64"):
            for k, n in enumerate((10**3, 10**5, 10**7)):
                times = {"crossent": n * 1e-9 * (k + 1), "numpy": n * 5e-9, "scipy": n * 7e-9}
                rows.append(report.Row(fn, dt, (n,), times, set()))
    return rows


def test_bench_names_the_peers_it_skipped(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # As on a machine where neither SciPy nor PyTorch is installed.
    monkeypatch.setitem(sys.modules, "scipy", None)
    monkeypatch.setitem(sys.modules, "torch", None)
    args = ["bench", "--quick", "--quiet", "--sizes", "1e3", "--functions", "bce"]
    assert main([*args, "--min-time", "0", "--dtypes", "float64"]) == 0
    out = capsys.readouterr().out
    note = [line for line in out.splitlines() if "not installed" in line]
    assert len(note) == 1, out
    assert "scipy" in note[0] and "torch" in note[0]
    assert "pip install 'crossent[bench]'" in note[0]
    assert "pip install torch" in note[0]


def test_bench_names_no_peer_when_none_is_missing() -> None:
    assert report.skipped_note([]) == ""


@pytest.fixture
def plotted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[list[str]], Any]]:
    """Draws the plot of ``crossent bench --plot`` for the given peers and hands back the
    figure it saved (closed at the end of the test)."""
    plt = pytest.importorskip("matplotlib.pyplot")
    close = plt.close
    figures: list[Any] = []
    monkeypatch.setattr(plt, "close", figures.append)

    def draw(peers: list[str]) -> Any:
        out = tmp_path / "plot.png"
        report.plot(_rows(), peers, str(out))
        assert out.stat().st_size > 0
        fig = figures[-1]
        fig.canvas.draw()
        return fig

    yield draw
    for fig in figures:
        close(fig)


def test_plot_one_colour_per_library_in_every_panel(plotted: Callable[..., Any]) -> None:
    fig = plotted(["numpy", "scipy"])
    colours: dict[str, set[Any]] = {}
    panels = [ax for ax in fig.axes if ax.get_visible() and ax.lines]
    assert len(panels) == 3
    for ax in panels:
        libs = set()
        for line in ax.lines:
            lib = str(line.get_label()).split()[0]
            libs.add(lib)
            colours.setdefault(lib, set()).add(line.get_color())
        assert libs == {"crossent", "numpy", "scipy"}
    assert all(len(c) == 1 for c in colours.values()), colours
    assert len({next(iter(c)) for c in colours.values()}) == len(colours), colours


def test_plot_legend_does_not_cover_data(plotted: Callable[..., Any]) -> None:
    fig = plotted(["numpy", "scipy"])
    renderer = fig.canvas.get_renderer()
    legends = [*fig.legends, *(ax.get_legend() for ax in fig.axes if ax.get_legend())]
    assert legends
    for legend in legends:
        box = legend.get_window_extent(renderer)
        for ax in fig.axes:
            if ax.get_visible():
                assert not box.overlaps(ax.get_window_extent(renderer)), ax.get_title()


def test_plot_title_names_machine_and_versions(plotted: Callable[..., Any]) -> None:
    fig = plotted(["numpy"])
    title = fig.get_suptitle()
    assert f"crossent {crossent.__version__}" in title
    assert f"NumPy {np.__version__}" in title
    assert "logical CPUs" in title


def test_plot_log_axes_label_powers_of_ten_only(plotted: Callable[..., Any]) -> None:
    """Tick labels at powers of ten, at least two per axis, none between them."""
    fig = plotted(["numpy"])
    for ax in (a for a in fig.axes if a.get_visible() and a.lines):
        for axis in (ax.xaxis, ax.yaxis):
            lo, hi = sorted(axis.get_view_interval())
            labelled = [
                t.get_loc()
                for t in axis.get_major_ticks() + axis.get_minor_ticks()
                if lo * (1 - 1e-9) <= t.get_loc() <= hi * (1 + 1e-9) and t.label1.get_text()
            ]
            assert len(labelled) >= 2, (ax.get_title(), labelled)
            for loc in labelled:
                assert loc == pytest.approx(10 ** round(np.log10(loc))), (ax.get_title(), loc)
