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
# inspect.getdoc of one returns int's own docstring: they are checked against the README.
DOCUMENTED = [name for name in PUBLIC if callable(getattr(crossent, name))]
CONSTANTS = [name for name in PUBLIC if name not in DOCUMENTED]
README = Path(__file__).resolve().parent.parent / "README.md"


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


@pytest.mark.skipif(not README.exists(), reason="README.md is not beside the tests")
@pytest.mark.parametrize("name", CONSTANTS)
def test_constants_are_documented_with_their_values(name: str) -> None:
    # The README states each constant's value where it first names it: `crossent.BLOCK`
    # (8192). The value it states must be the module's.
    text = README.read_text(encoding="utf-8")
    stated = re.findall(rf"`crossent\.{name}` \((\d+)\)", text)
    assert stated, f"README.md does not state the value of crossent.{name}"
    assert {int(v) for v in stated} == {getattr(crossent, name)}
