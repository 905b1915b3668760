"""A progress bar on stderr."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """A progress bar on stderr.

    It stays silent for the first ``delay`` seconds (so quick runs print nothing), then
    redraws one line in place on a terminal, or prints a line every few seconds otherwise.
    """

    def __init__(
        self,
        total: float,
        *,
        label: str = "",
        enabled: bool = True,
        delay: float = 1.0,
        stream: TextIO | None = None,
    ) -> None:
        self.total = max(float(total), 1e-300)
        self.label = label
        self.enabled = enabled
        self.delay = delay
        self.stream = stream if stream is not None else sys.stderr
        self.start = time.perf_counter()
        self.last = -1e300
        self.done = 0.0
        self.shown = False
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())

    def update(self, done: float, note: str = "") -> None:
        self.done = done
        if not self.enabled:
            return
        now = time.perf_counter()
        if now - self.start < self.delay:
            return
        if now - self.last < (0.1 if self.tty else 5.0) and done < self.total:
            return
        self.last = now
        self._draw(note)

    def _draw(self, note: str) -> None:
        frac = min(max(self.done / self.total, 0.0), 1.0)
        width = 30
        fill = round(frac * width)
        elapsed = time.perf_counter() - self.start
        bar = "#" * fill + "." * (width - fill)
        line = f"{self.label} [{bar}] {frac * 100:5.1f}% {elapsed:6.1f}s {note}"
        if self.tty:
            self.stream.write("\r" + line[:119].ljust(119))
        else:
            self.stream.write(line.rstrip() + "\n")
        self.stream.flush()
        self.shown = True

    def close(self) -> None:
        if self.enabled and self.shown and self.tty:
            self.stream.write("\n")
            self.stream.flush()
