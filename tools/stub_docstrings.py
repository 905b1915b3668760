"""Copies the runtime docstrings of ``crossent._core`` into its stubs, ``_core.pyi``.

Editors read the stubs, not the compiled extension, so without this they show no
documentation on hover. The docstrings are written once, in the Rust doc comments of
``src/bindings/``; this script copies them from the built module (import the installed
``crossent``) into every function, overload, class, method and property of the stub that
has one at run time, then formats the stub with ``ruff format``. Dunder methods (their
runtime docstrings are Python's generic ones) and private names are left alone.

    python tools/stub_docstrings.py           # rewrite python/crossent/_core.pyi
    python tools/stub_docstrings.py --check   # exit 1 if it is out of date (CI)
"""

from __future__ import annotations

import argparse
import ast
import difflib
import importlib
import inspect
import subprocess
import sys
from pathlib import Path
from typing import Any

STUB = Path(__file__).resolve().parents[1] / "python" / "crossent" / "_core.pyi"

Node = ast.FunctionDef | ast.ClassDef


def _docstring_node(node: Node) -> ast.Expr | None:
    first = node.body[0] if node.body else None
    if (
        isinstance(first, ast.Expr)
        and isinstance(first.value, ast.Constant)
        and isinstance(first.value.value, str)
    ):
        return first
    return None


def _walk(tree: ast.Module) -> list[tuple[Node, tuple[str, ...]]]:
    """Every function and class of the stub with its qualified name, classes' members too."""
    out: list[tuple[Node, tuple[str, ...]]] = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            out.append((node, (node.name,)))
        elif isinstance(node, ast.ClassDef):
            out.append((node, (node.name,)))
            for member in node.body:
                if isinstance(member, ast.FunctionDef):
                    out.append((member, (node.name, member.name)))
    return out


def strip(text: str) -> str:
    """The stub without the docstrings this script writes (one-line ``...`` bodies back)."""
    lines = text.split("\n")
    tree = ast.parse(text)
    edits = []
    for node, _ in _walk(tree):
        doc = _docstring_node(node)
        if doc is not None:
            edits.append((node, doc))
    for node, doc in sorted(edits, key=lambda e: -e[1].lineno):
        start, end = doc.lineno - 1, (doc.end_lineno or doc.lineno) - 1
        del lines[start : end + 1]
        if len(node.body) == 1:  # the docstring was the whole body
            lines[start - 1] += " ..."
    return "\n".join(lines)


def _runtime_doc(module: Any, qualname: tuple[str, ...]) -> str | None:
    if qualname[-1].startswith("_") or qualname[0].startswith("_"):
        return None
    obj = module
    for part in qualname:
        obj = (
            inspect.getattr_static(obj, part, None)
            if isinstance(obj, type)
            else getattr(obj, part, None)
        )
        if obj is None:
            return None
    doc = getattr(obj, "__doc__", None)
    if not isinstance(doc, str) or not doc.strip():
        return None
    return inspect.cleandoc(doc)


def _render(doc: str, indent: str) -> list[str]:
    if '"""' in doc:
        raise ValueError(f"a docstring holds triple quotes: {doc[:60]!r}")
    prefix = 'r"""' if "\\" in doc else '"""'
    body = doc.split("\n")
    if len(body) == 1:
        return [f'{indent}{prefix}{body[0]}"""']
    out = [f"{indent}{prefix}{body[0]}"]
    out += [f"{indent}{line}" if line.strip() else "" for line in body[1:]]
    out.append(f'{indent}"""')
    return out


def generate(text: str, module: Any) -> str:
    """The stub with every runtime docstring written in."""
    text = strip(text)
    lines = text.split("\n")
    tree = ast.parse(text)
    inserts: list[tuple[int, list[str], bool]] = []
    for node, qualname in _walk(tree):
        doc = _runtime_doc(module, qualname)
        if doc is None:
            continue
        indent = " " * (node.col_offset + 4)
        if isinstance(node, ast.FunctionDef):
            body = node.body[0]
            # A one-line `...` body: the docstring replaces it.
            inserts.append((body.lineno - 1, _render(doc, indent), True))
        else:
            inserts.append((node.lineno - 1, _render(doc, indent), False))
    for line_index, rendered, replace_ellipsis in sorted(inserts, key=lambda i: -i[0]):
        if replace_ellipsis:
            head = lines[line_index]
            if not head.rstrip().endswith(": ..."):
                raise ValueError(f"unexpected stub layout at line {line_index + 1}: {head!r}")
            lines[line_index] = head.rstrip()[: -len(" ...")]
        lines[line_index + 1 : line_index + 1] = rendered
    return "\n".join(lines)


def ruff_format(text: str) -> str:
    """``text`` as ``ruff format`` (the project's formatter, from the lint extra) leaves it."""
    proc = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--stdin-filename", str(STUB), "-"],
        input=text,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"ruff format failed (pip install ruff):\n{proc.stderr}")
    return proc.stdout


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--check", action="store_true", help="fail if the stub is out of date")
    args = parser.parse_args(argv)
    module = importlib.import_module("crossent._core")
    current = STUB.read_text(encoding="utf-8")
    wanted = ruff_format(generate(current, module))
    if args.check:
        if wanted != current:
            diff = difflib.unified_diff(
                current.splitlines(), wanted.splitlines(), "_core.pyi", "generated", lineterm=""
            )
            sys.stderr.write("\n".join(list(diff)[:60]) + "\n")
            sys.stderr.write(
                "python/crossent/_core.pyi's docstrings differ from the runtime ones "
                "(run: python tools/stub_docstrings.py)\n"
            )
            return 1
        return 0
    if wanted != current:
        STUB.write_text(wanted, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
