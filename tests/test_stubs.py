"""The stubs editors read carry the runtime docstrings (``tools/stub_docstrings.py`` copies
them), so hovering over a crossent function shows its documentation."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path
from typing import Any

import pytest

import crossent
from crossent import _core

STUB = Path(crossent.__file__).with_name("_core.pyi")


def _documented() -> list[tuple[str, ast.FunctionDef | ast.ClassDef, Any]]:
    """Every public function, class, method and property of the stub, with its runtime
    object."""
    tree = ast.parse(STUB.read_text(encoding="utf-8"))
    out: list[tuple[str, ast.FunctionDef | ast.ClassDef, Any]] = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.ClassDef) and not node.name.startswith("_"):
            runtime = getattr(_core, node.name)
            out.append((node.name, node, runtime))
            if isinstance(node, ast.ClassDef):
                for member in node.body:
                    if isinstance(member, ast.FunctionDef) and not member.name.startswith("_"):
                        obj = inspect.getattr_static(runtime, member.name)
                        out.append((f"{node.name}.{member.name}", member, obj))
    return out


DOCUMENTED = _documented()


def test_the_stub_covers_the_public_api() -> None:
    names = {name for name, _, _ in DOCUMENTED}
    # Functions written in Python (crossent.log_loss) carry their own annotations.
    compiled = [n for n in crossent.__all__ if not n.startswith("_") and hasattr(_core, n)]
    public = {n for n in compiled if callable(getattr(_core, n))}
    assert public <= names, public - names
    python = set(crossent.__all__) - set(compiled) - {"__version__"}
    assert python == {"log_loss"}, python


@pytest.mark.parametrize(("name", "node", "runtime"), DOCUMENTED, ids=[d[0] for d in DOCUMENTED])
def test_stub_docstring_is_the_runtime_one(name: str, node: ast.AST, runtime: Any) -> None:
    assert isinstance(node, ast.FunctionDef | ast.ClassDef)
    assert runtime.__doc__, f"{name} has no runtime docstring"
    stub_doc = ast.get_docstring(node, clean=True)
    assert stub_doc is not None, f"{name} has no docstring in _core.pyi"
    assert stub_doc == inspect.cleandoc(runtime.__doc__)
