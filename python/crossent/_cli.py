"""The command line: argument parsing, one-line errors, a progress bar on stderr."""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Sequence
from typing import Any, NoReturn, TextIO

#: Exit status for usage errors, unreadable input and mismatched shapes.
EXIT_USAGE = 2


class CliError(Exception):
    """An error reported as one line on stderr with exit status 2 (never a traceback)."""


def plain(text: str) -> str:
    """``text`` without reStructuredText markup: the module docstrings that describe the
    subcommands are written for Sphinx, the terminal shows them as plain text."""
    text = re.sub(r":[a-z]+:`~?([^`]+)`", r"\1", text)  # :func:`name` -> name
    return text.replace("``", "")


class _HelpFormatter(argparse.HelpFormatter):
    """Help text as plain text (see :func:`plain`)."""

    def _format_text(self, text: str) -> str:
        return super()._format_text(plain(text))

    def _expand_help(self, action: argparse.Action) -> str:
        return plain(super()._expand_help(action))


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line on stderr, exit status 2."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: error: {message} (see --help)\n")
        raise SystemExit(EXIT_USAGE)


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


def _parser() -> _Parser:
    import crossent
    from crossent import _bench, _eval

    parser = _Parser(
        prog="crossent",
        description="crossent: fast, exact, deterministic information-theory losses.",
        epilog="Run 'crossent SUBCOMMAND --help' for a subcommand's options.",
    )
    parser.add_argument("--version", action="version", version=f"crossent {crossent.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="{bench,eval}", parser_class=_Parser)
    _bench.add_arguments(
        sub.add_parser(
            "bench",
            help="time crossent against NumPy, SciPy and PyTorch on generated data",
            description=_bench.DESCRIPTION,
        )
    )
    _eval.add_arguments(
        sub.add_parser(
            "eval",
            help="compute a loss over arrays stored in files",
            description=_eval.DESCRIPTION,
        )
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m crossent`` and the ``crossent`` command; returns the exit
    status."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help (0) or a usage error (2, already reported)
        return int(e.code or 0) if not isinstance(e.code, str) else EXIT_USAGE
    if args.command is None:  # a bare `crossent`: what it can do
        parser.print_help()
        return 0
    try:
        status: int = args.run(args)
    except CliError as e:
        sys.stderr.write(f"crossent {args.command}: error: {e}\n")
        return EXIT_USAGE
    except KeyboardInterrupt:
        sys.stderr.write("\ncrossent: interrupted\n")
        return 130
    except BrokenPipeError:
        return 0
    return status
