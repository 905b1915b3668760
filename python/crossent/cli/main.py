"""The entry point of ``python -m crossent`` and the ``crossent`` command: the argument parser,
whose help is plain text and whose usage errors are one line, and the one place where a
failure becomes one line on stderr and an exit status."""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from crossent.cli.errors import EXIT_USAGE, EXPECTED, CliError, describe


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


def _parser() -> _Parser:
    import crossent
    from crossent.cli import bench, eval

    parser = _Parser(
        prog="crossent",
        description="crossent: fast, exact, deterministic information-theory losses.",
        epilog="Run 'crossent SUBCOMMAND --help' for a subcommand's options.",
    )
    parser.add_argument("--version", action="version", version=f"crossent {crossent.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="{bench,eval}", parser_class=_Parser)
    bench.add_arguments(
        sub.add_parser(
            "bench",
            help="time crossent against NumPy, SciPy and PyTorch on generated data",
            description=bench.DESCRIPTION,
        )
    )
    eval.add_arguments(
        sub.add_parser(
            "eval",
            help="compute a loss, an entropy or a divergence over arrays stored in files",
            description=eval.DESCRIPTION,
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
