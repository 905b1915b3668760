"""Turns pytest-benchmark JSON into the README's table: median time, Melem/s, and the
speed-up of crossent over each other library measured in the same run.

    python benches/summarize.py bench.json
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict


def main(path: str) -> None:
    with open(path) as f:
        runs = json.load(f)
    machine = runs.get("machine_info", {})
    cells: dict[tuple[str, str, int], dict[str, float]] = defaultdict(dict)
    for bench in runs["benchmarks"]:
        info = bench["extra_info"]
        cells[(info["op"], info["dtype"], info["n"])][info["lib"]] = bench["stats"]["median"]
    libs = sorted({lib for c in cells.values() for lib in c} - {"crossent"})
    cpu = machine.get("cpu", {}).get("brand_raw", "?")
    print(f"Machine: {cpu}, {machine.get('cpu', {}).get('count', '?')} CPUs")
    print()
    head = ["op", "dtype", "N", "crossent ms", "crossent Melem/s"]
    head += [f"{lib} Melem/s" for lib in libs] + [f"× {lib}" for lib in libs]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for (op, dtype, n), c in sorted(cells.items()):
        if "crossent" not in c:
            continue
        ours = c["crossent"]
        row = [op, dtype, f"{n:.0e}", f"{ours * 1e3:.3f}", f"{n / ours / 1e6:.0f}"]
        row += [f"{n / c[lib] / 1e6:.0f}" if lib in c else "—" for lib in libs]
        row += [f"{c[lib] / ours:.1f}" if lib in c else "—" for lib in libs]
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main(sys.argv[1])
