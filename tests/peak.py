"""Peak resident memory of calls, measured in a fresh interpreter: the harness the memory
tests share (Linux only: it resets the peak through /proc/self/clear_refs)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

# Prepended to each script: `peak(call)` is the growth of the peak resident set over the
# resident set before `call` (KiB) and call's result; `growth(call)` warms up first (the pool,
# the allocator, NumPy's caches) and gives the growth of a second call.
HARNESS = textwrap.dedent(
    """
    import gc, json

    def status(key):
        for line in open("/proc/self/status"):
            if line.startswith(key + ":"):
                return int(line.split()[1])
        raise KeyError(key)

    def peak(call):
        gc.collect()
        before = status("VmRSS")
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # the peak starts again from the current resident size
        result = call()
        return status("VmHWM") - before, result

    def growth(call):
        call()
        return peak(call)[0]
    """
)

needs_clear_refs = pytest.mark.skipif(
    not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc/self/clear_refs"
)


def run(script: str, timeout: int = 600) -> Any:
    """Runs `script` (which prints its report as JSON) after the harness; its report."""
    source = HARNESS + textwrap.dedent(script)
    proc = subprocess.run(
        [sys.executable, "-c", source], capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)
