"""What ``crossent bench`` shows: the Markdown table, the machine line, the note on peers not
installed, and the plot of throughput against size."""

from __future__ import annotations

import math
import os
import platform
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class Row:
    function: str
    dtype: str
    shape: tuple[int, ...]
    times: dict[str, float]
    mismatch: set[str]

    @property
    def n(self) -> int:
        return math.prod(self.shape)


def fmt_time(t: float) -> str:
    if t < 1e-3:
        return f"{t * 1e6:.1f} µs"
    if t < 1:
        return f"{t * 1e3:.2f} ms"
    return f"{t:.3f} s"


def fmt_size(shape: tuple[int, ...]) -> str:
    def e(n: int) -> str:
        if n >= 1000 and n == 10 ** round(math.log10(n)):
            return f"10^{round(math.log10(n))}"
        return str(n)

    return " x ".join(e(s) for s in shape)


def machine() -> str:
    """One line naming the machine, the libraries and the thread counts."""
    import crossent

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    parts = [
        f"{cpu}, {os.cpu_count()} logical CPUs",
        f"Python {platform.python_version()}",
        f"crossent {crossent.__version__} ({crossent.get_num_threads()} threads)",
        f"NumPy {np.__version__}",
    ]
    # Only the peers imported (a None entry in sys.modules marks a module that failed to).
    if sys.modules.get("scipy") is not None:
        parts.append(f"SciPy {sys.modules['scipy'].__version__}")
    torch = sys.modules.get("torch")
    if torch is not None:
        parts.append(f"PyTorch {torch.__version__} ({torch.get_num_threads()} threads)")
    return "; ".join(parts)


def table(rows: list[Row], peers: list[str]) -> str:
    """The Markdown table: per row, crossent's median time and throughput, then each peer's
    median time and its ratio to crossent's (>1: crossent is faster)."""
    head = ["function", "dtype", "size", "crossent", "Melem/s"]
    for p in peers:
        head += [p, f"{p}/crossent"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * len(head)) + "|"]
    for r in rows:
        ce = r.times.get("crossent")
        cells = [
            f"`{r.function}`",
            r.dtype,
            fmt_size(r.shape),
            fmt_time(ce) if ce else "—",
            f"{r.n / ce / 1e6:,.0f}" if ce else "—",
        ]
        for p in peers:
            t = r.times.get(p)
            if t is None or not ce:
                cells += ["—", "—"]
            else:
                flag = " !" if p in r.mismatch else ""
                cells += [fmt_time(t), f"x{t / ce:.1f}{flag}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


#: One colour per library, the same in every panel and every plot (matplotlib's default cycle).
COLOURS = {"crossent": "tab:blue", "numpy": "tab:orange", "scipy": "tab:green", "torch": "tab:red"}
#: One line style per dtype.
STYLES = {"float32": "-", "float64": "--"}
#: Where to get each peer that is not installed.
INSTALL = {
    "scipy": "pip install 'crossent[bench]' (SciPy and matplotlib)",
    "torch": "pip install torch --index-url https://download.pytorch.org/whl/cpu "
    "(optional: PyTorch CPU)",
}


def skipped_note(skipped: list[str]) -> str:
    """A line naming the peers that were not timed and how to install them ("" if none)."""
    if not skipped:
        return ""
    how = "; ".join(INSTALL[p] for p in skipped if p in INSTALL)
    return f"Not timed, not installed: {', '.join(skipped)}." + (f" To add: {how}." if how else "")


def figure(rows: list[Row], peers: list[str]) -> Any:
    """Throughput against array size on log axes: one panel per function, one colour per
    library (the same in every panel), one line style per dtype, one legend below the panels
    (never over the data), the machine and versions in the title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.ticker import LogLocator, NullFormatter

    functions = list(dict.fromkeys(r.function for r in rows))
    dtypes = list(dict.fromkeys(r.dtype for r in rows))
    libs = ["crossent", *peers]
    extra = iter(("tab:purple", "tab:brown", "tab:pink"))
    colours = {lib: COLOURS.get(lib) or next(extra, "tab:gray") for lib in libs}
    cols = min(2, len(functions)) or 1
    nrows = math.ceil(len(functions) / cols) or 1
    fig, axes = plt.subplots(
        nrows, cols, figsize=(6.5 * cols, 3.6 * nrows + 1.6), squeeze=False, layout="constrained"
    )
    for ax, fn in zip(axes.flat, functions, strict=False):
        for lib in libs:
            for dt in dtypes:
                pts = [
                    (r.n, r.n / r.times[lib] / 1e6)
                    for r in rows
                    if r.function == fn and r.dtype == dt and lib in r.times
                ]
                if pts:
                    xs, ys = zip(*sorted(pts), strict=True)
                    ax.plot(
                        xs,
                        ys,
                        STYLES.get(dt, ":"),
                        color=colours[lib],
                        marker="o",
                        markersize=3.5,
                        label=f"{lib} {dt}",
                    )
        ax.set_xscale("log")
        ax.set_yscale("log")
        # Whole decades, labelled at the powers of ten only (unlabelled minor ticks between):
        # every panel gets at least two labels, none of them crowded.
        for axis, set_lim in ((ax.xaxis, ax.set_xlim), (ax.yaxis, ax.set_ylim)):
            lo, hi = (float(v) for v in axis.get_data_interval())
            if 0 < lo <= hi < math.inf:
                first = math.floor(math.log10(lo))
                last = max(math.ceil(math.log10(hi)), first + 1)
                set_lim(10.0**first, 10.0**last)
            axis.set_major_locator(LogLocator(base=10, numticks=12))
            axis.set_minor_locator(LogLocator(base=10, subs=tuple(range(2, 10)), numticks=12))
            axis.set_minor_formatter(NullFormatter())
        ax.set_title(fn, fontsize="medium")
        ax.set_xlabel("elements")
        ax.set_ylabel("million elements / s")
        ax.grid(True, which="major", alpha=0.4)
        ax.grid(True, which="minor", alpha=0.12)
    for ax in list(axes.flat)[len(functions) :]:
        ax.set_visible(False)
    handles = [Line2D([], [], color=colours[lib], lw=2.5, label=lib) for lib in libs]
    handles += [Line2D([], [], color="black", ls=STYLES.get(dt, ":"), label=dt) for dt in dtypes]
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), frameon=False)
    fig.suptitle(_title(), fontsize="small")
    return fig


def _title() -> str:
    """The machine line of the table, cut into at most three lines for a figure title."""
    parts = machine().split("; ")
    lines = [parts[0], "; ".join(parts[1:4]), "; ".join(parts[4:])]
    return "\n".join(line for line in lines if line)


def plot(rows: list[Row], peers: list[str], path: str, fmt: str | None = None) -> None:
    """Writes :func:`figure` to ``path`` in the format ``fmt`` (png, svg, pdf, ...), by default
    the one ``path``'s extension says."""
    import matplotlib.pyplot as plt

    fig = figure(rows, peers)
    try:
        fig.savefig(path, dpi=120, format=fmt)
    finally:
        plt.close(fig)
