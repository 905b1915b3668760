"""Every docstring example of the public API runs and prints what it says."""

from __future__ import annotations

import doctest
import inspect

import pytest

import crossent

PUBLIC = [name for name in crossent.__all__ if not name.startswith("_")]


def run_examples(name: str, doc: str) -> doctest.TestResults:
    test = doctest.DocTestParser().get_doctest(doc, {}, name, None, 0)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    runner.run(test)
    return runner.summarize(verbose=False)


@pytest.mark.parametrize("name", ["crossent", *PUBLIC])
def test_docstring_examples(name: str, threads: None) -> None:
    obj = crossent if name == "crossent" else getattr(crossent, name)
    doc = inspect.getdoc(obj)
    assert doc, f"{name} has no docstring"
    if not callable(obj) and name != "crossent":
        return
    results = run_examples(name, doc)
    assert results.failed == 0
    assert results.attempted > 0, f"{name}'s docstring has no example"
