"""The command line: argument parsing, one-line errors, a progress bar on stderr."""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import stat
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator, Sequence
from typing import Any, NoReturn, TextIO

#: Exit status for usage errors, unreadable input, mismatched shapes and every other failure
#: the command reports (one line on stderr, never a traceback).
EXIT_USAGE = 2

#: Exceptions a run can meet on bad files, bad arguments or too little memory: reported as
#: one line on stderr with exit status 2, as :class:`CliError` is.
EXPECTED = (
    OSError,
    ValueError,
    TypeError,
    MemoryError,
    OverflowError,
    EOFError,
    zipfile.BadZipFile,
)


class CliError(Exception):
    """An error reported as one line on stderr with exit status 2 (never a traceback)."""


def one_line(text: str) -> str:
    """``text`` on one line: its lines joined, runs of white space collapsed."""
    return " ".join(text.split())


def describe(e: BaseException) -> str:
    """One line saying what went wrong, for an error the command did not word itself."""
    if isinstance(e, CliError):
        return one_line(str(e))
    if isinstance(e, MemoryError):
        detail = one_line(str(e))
        return "out of memory" + (f" ({detail})" if detail else "")
    if isinstance(e, OSError) and e.strerror:
        where = f"{e.filename}: " if e.filename is not None else ""
        return one_line(f"{where}{e.strerror}")
    detail = one_line(str(e))
    return detail or type(e).__name__


def same_file(a: os.stat_result, b: os.stat_result) -> bool:
    """Whether two ``os.stat`` results (links followed) describe one file: same device and
    inode, which also holds for two hard links and for two paths through symbolic links."""
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def check_output(option: str, path: str, operands: Sequence[tuple[str, str, str]]) -> None:
    """Refuses an output ``path`` that is a directory or the same file as an operand:
    ``operands`` holds (option, spec, file path) triples. Files are compared by identity
    (device and inode after following links), not by name."""
    try:
        out = os.stat(path)
    except FileNotFoundError:
        return  # a new file (or a link to one) cannot be an operand
    except OSError as e:
        raise CliError(f"{option} {path}: cannot write ({e.strerror or e})") from None
    if stat.S_ISDIR(out.st_mode):
        raise CliError(f"{option} {path}: is a directory")
    for arg, spec, file in operands:
        try:
            st = os.stat(file)
        except OSError:
            continue
        if same_file(st, out):
            raise CliError(
                f"{option} {path} is the same file as {arg} {spec}; writing it would destroy "
                "the input: choose another output path"
            )


@contextlib.contextmanager
def atomic_output(option: str, path: str) -> Iterator[str]:
    """A temporary path beside ``path`` (in the directory of the file it names, links
    followed) to write the output to. When the block ends without an exception the temporary
    file is renamed over ``path`` (atomically, keeping an existing file's permissions); on any
    exception, ``KeyboardInterrupt`` included, it is removed and ``path`` is left untouched."""
    dest = os.path.realpath(path)
    folder, name = os.path.split(dest)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=folder or ".")
    except OSError as e:
        raise CliError(f"{option} {path}: cannot write ({e.strerror or e})") from None
    os.close(fd)
    try:
        yield tmp
        try:
            mode = stat.S_IMODE(os.stat(dest).st_mode)
        except FileNotFoundError:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        os.chmod(tmp, mode)
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


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
    # The one place where failures become one line on stderr and an exit status: no
    # traceback reaches the user. Set CROSSENT_TRACEBACK=1 to see one (for a bug report).
    try:
        status: int = args.run(args)
    except KeyboardInterrupt:
        sys.stderr.write("\ncrossent: interrupted\n")
        return 130
    except BrokenPipeError:
        return 0
    except (CliError, *EXPECTED) as e:
        if os.environ.get("CROSSENT_TRACEBACK"):
            raise
        sys.stderr.write(f"crossent {args.command}: error: {describe(e)}\n")
        return EXIT_USAGE
    except Exception as e:
        if os.environ.get("CROSSENT_TRACEBACK"):
            raise
        sys.stderr.write(
            f"crossent {args.command}: internal error: {type(e).__name__}: {describe(e)} "
            "(please report it; CROSSENT_TRACEBACK=1 shows where)\n"
        )
        return EXIT_USAGE
    return status
