"""``python -m crossent`` (also installed as the ``crossent`` command).

Subcommands:

- ``crossent bench``: times every crossent function against NumPy, SciPy and PyTorch (where
  installed) on generated data and prints a Markdown table.
- ``crossent eval``: computes a loss over arrays stored in files.

Run ``crossent <subcommand> --help`` for the options. Usage errors, unreadable files and
mismatched shapes print one line on stderr and exit with status 2.
"""

from __future__ import annotations

import sys

from crossent.cli.main import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
