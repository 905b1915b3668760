"""How the command reports failures: one line on stderr, exit status 2, never a traceback."""

from __future__ import annotations

import zipfile

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


def reason(e: BaseException) -> str:
    """The gist of an exception caught while reading or writing a file: the system's words for
    an ``OSError``, else the first line of its message."""
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__
