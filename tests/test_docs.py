"""Every docstring example of the public API runs and prints what it says."""

from __future__ import annotations

import doctest
import inspect
import re
from pathlib import Path

import pytest

import crossent

PUBLIC = [name for name in crossent.__all__ if not name.startswith("_")]
# Functions and classes carry their docstrings; constants (plain ints) cannot, and
# inspect.getdoc of one returns int's own docstring: they are checked against the docs.
DOCUMENTED = [name for name in PUBLIC if callable(getattr(crossent, name))]
CONSTANTS = [name for name in PUBLIC if name not in DOCUMENTED]
ROOT = Path(__file__).resolve().parent.parent
# The user's documentation: the README and the pages of docs/.
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def run_examples(name: str, doc: str) -> doctest.TestResults:
    test = doctest.DocTestParser().get_doctest(doc, {}, name, None, 0)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    runner.run(test)
    return runner.summarize(verbose=False)


@pytest.mark.parametrize("name", ["crossent", *DOCUMENTED])
def test_docstring_examples(name: str, threads: None) -> None:
    obj = crossent if name == "crossent" else getattr(crossent, name)
    doc = obj.__doc__
    assert doc and doc.strip(), f"{name} has no docstring of its own"
    results = run_examples(name, inspect.cleandoc(doc))
    assert results.failed == 0
    assert results.attempted > 0, f"{name}'s docstring has no example"


def test_constants_are_the_public_ints() -> None:
    assert CONSTANTS == ["BLOCK", "CHUNK"]
    for name in CONSTANTS:
        value = getattr(crossent, name)
        assert type(value) is int and value > 0, name


@pytest.mark.skipif(not (ROOT / "docs").is_dir(), reason="docs/ is not beside the tests")
@pytest.mark.parametrize("name", CONSTANTS)
def test_constants_are_documented_with_their_values(name: str) -> None:
    # The docs state each constant's value where they first name it: `crossent.BLOCK`
    # (8192). Every value they state must be the module's.
    text = "\n".join(p.read_text(encoding="utf-8") for p in PAGES if p.exists())
    stated = re.findall(rf"`crossent\.{name}` \((\d+)\)", text)
    assert stated, f"the docs do not state the value of crossent.{name}"
    assert {int(v) for v in stated} == {getattr(crossent, name)}
