"""The performance page's tables and plot, and the README's headline table, from one run.

    python benches/docs_tables.py                 # writes docs/perf/: tables, plot, headline
    python benches/docs_tables.py --quick --out-dir /tmp/perf    # a smoke run

It times every crossent function against the peers installed (NumPy, SciPy, PyTorch CPU) with
the machinery of ``crossent bench`` (samples taken round-robin across libraries, every peer's
result checked against crossent's), then writes:

- ``tables.md``: the machine and versions, the command, and one table per function (median
  time per call, throughput, each peer's time over crossent's);
- ``throughput.png``: throughput against size, one panel per function;
- ``headline.md``: one row per function at the largest size in float32, the ratios to each
  peer, for the README.

Every figure in the three files comes from the same run.
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import shlex
import sys
from pathlib import Path

# NumPy's OpenBLAS threads (unused by these element-wise formulas) would otherwise keep a core
# busy between calls and slow every multi-threaded library; set before NumPy is imported.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from crossent.cli import bench, report

NAMES = {"numpy": "NumPy", "scipy": "SciPy", "torch": "PyTorch"}

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE.parent / "docs" / "perf"
DEFAULT_SIZES = (10**3, 10**5, 10**7)
QUICK_SIZES = (10**3, 10**4)


def _ratio(row: report.Row, peer: str) -> str:
    ce, t = row.times.get("crossent"), row.times.get(peer)
    if not ce or t is None:
        return "—"
    return f"{t / ce:.1f}x" + (" !" if peer in row.mismatch else "")


def function_tables(rows: list[report.Row], peers: list[str]) -> str:
    """One Markdown table per function: dtype, size, crossent's time and throughput, and
    each peer's time over crossent's."""
    out: list[str] = []
    for fn in dict.fromkeys(r.function for r in rows):
        out += [f"## `{fn}`", ""]
        head = ["dtype", "size", "crossent", "Melem/s", *[f"× {NAMES.get(p, p)}" for p in peers]]
        out += ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * len(head)) + "|"]
        for r in rows:
            if r.function != fn:
                continue
            ce = r.times["crossent"]
            cells = [r.dtype, report.fmt_size(r.shape), report.fmt_time(ce)]
            cells.append(f"{r.n / ce / 1e6:,.0f}")
            cells += [_ratio(r, p) for p in peers]
            out.append("| " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def headline(rows: list[report.Row], peers: list[str], dtype: str = "float32") -> str:
    """One row per function at the largest size measured in ``dtype``."""
    n = max((r.n for r in rows if r.dtype == dtype), default=0)
    head = ["function", "size", "crossent Melem/s", *[f"× {NAMES.get(p, p)}" for p in peers]]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * len(head)) + "|"]
    for r in rows:
        if r.dtype == dtype and r.n == n:
            ce = r.times["crossent"]
            cells = [f"`{r.function}`", report.fmt_size(r.shape), f"{r.n / ce / 1e6:,.0f}"]
            lines.append("| " + " | ".join(cells + [_ratio(r, p) for p in peers]) + " |")
    return "\n".join(lines)


def _warn(msg: str) -> None:
    sys.stderr.write(f"warning: results differ: {msg}\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument("--min-time", type=float, default=None, help="seconds per library")
    parser.add_argument("--classes", type=int, default=1000, help="row length of the rows")
    args = parser.parse_args(argv)
    sizes = list(QUICK_SIZES if args.quick else DEFAULT_SIZES)
    min_time = args.min_time if args.min_time is not None else (0.01 if args.quick else 0.3)
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    rows, peers = bench.run(
        functions=list(bench.CASE_NAMES),
        sizes=sizes,
        dtypes=list(bench.DTYPES),
        peers=list(bench.PEERS),
        classes=args.classes,
        min_time=min_time,
        min_samples=3 if args.quick else 5,
        max_samples=20 if args.quick else 200,
        warn=_warn,
    )
    skipped = [p for p in bench.PEERS if p not in peers]
    args.out_dir.mkdir(parents=True, exist_ok=True)
    given = sys.argv[1:] if argv is None else argv
    command = shlex.join(["python", "benches/docs_tables.py", *given])
    sizes_text = ", ".join(f"10^{round(math.log10(n))}" for n in sizes)
    intro = [
        f"Measured {datetime.date.today().isoformat()} with `{command}` on: {report.machine()}.",
        "",
        f"Sizes {sizes_text} elements, float32 and float64; per-distribution functions on rows "
        f"of {args.classes} along the last axis. `× peer` is the peer's median time over "
        "crossent's in the same run (above 1: crossent is faster); `!` marks a peer whose "
        "result disagreed with crossent's.",
    ]
    if load_before is not None:
        intro += [
            "",
            f"Load average (1 min) at the start of the run: {load_before:.1f}, at its end: "
            f"{os.getloadavg()[0]:.1f}, on {os.cpu_count()} logical CPUs. On a shared machine "
            "the absolute figures vary from run to run; the ratios, timed round-robin in one "
            "run, much less.",
        ]
    if skipped:
        intro += ["", f"Not installed, so not measured: {', '.join(NAMES[p] for p in skipped)}."]
    (args.out_dir / "tables.md").write_text(
        "\n".join(intro) + "\n\n" + function_tables(rows, peers), encoding="utf-8"
    )
    (args.out_dir / "headline.md").write_text(headline(rows, peers) + "\n", encoding="utf-8")
    report.plot(rows, peers, str(args.out_dir / "throughput.png"))
    sys.stdout.write(headline(rows, peers) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
