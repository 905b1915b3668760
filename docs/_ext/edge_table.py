"""The ``edge-table`` directive: the NaN/inf table of the errors page, from the tests' table.

``tests/registry.py`` records, for every public function and argument, what one NaN, +inf or
-inf at one position gives (``Func.special``); ``tests/test_bad_input.py::test_nan_and_inf``
checks every entry against the library and an independent float64 reference. This directive
renders the same entries, so the documentation cannot drift from what the tests check.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective

TESTS = Path(__file__).resolve().parents[2] / "tests"

# What one special value gives, as the registry spells it -> as the table shows it.
OUTCOMES = {
    "nan": "NaN",
    "inf": "+inf",
    "-inf": "-inf",
    "finite": "finite",
    "nonfinite": "±inf or NaN",
    "ValueError": "``ValueError``",
}


def _registry() -> Any:
    if str(TESTS) not in sys.path:
        sys.path.insert(0, str(TESTS))
    import registry

    return registry


def rows() -> list[tuple[str, str, str, str, str]]:
    """(function, argument, NaN, +inf, -inf) for every argument the registry covers."""
    import math

    out = []
    for f in _registry().FUNCS:
        name, _, variant = f.name.partition("[")
        # "softmax_cross_entropy[probabilities]": the same function with another target kind.
        label = f"``{name}``" + (f", target of {variant.rstrip(']')}" if variant else "")
        per_arg: dict[str, dict[str, str]] = {}
        for (arg, value), outcome in f.special.items():
            key = "nan" if math.isnan(value) else ("+inf" if value > 0 else "-inf")
            cell = OUTCOMES[outcome]
            if f.rows and outcome in ("nan", "inf", "-inf", "finite"):
                cell += " (that row)"
            per_arg.setdefault(arg, {})[key] = cell
        for arg, cells in per_arg.items():
            out.append(
                (
                    label,
                    f"``{arg}``",
                    cells.get("nan", "—"),
                    cells.get("+inf", "—"),
                    cells.get("-inf", "—"),
                )
            )
    return out


def _cell(text: str) -> nodes.entry:
    """A table cell; ````name```` spans become inline literals."""
    para = nodes.paragraph()
    for i, part in enumerate(re.split(r"``(.*?)``", text)):
        if part:
            para += nodes.literal(part, part) if i % 2 else nodes.Text(part)
    return nodes.entry("", para)


def _row(cells: tuple[str, ...]) -> nodes.row:
    row = nodes.row()
    for text in cells:
        row += _cell(text)
    return row


class EdgeTable(SphinxDirective):
    """Renders :func:`rows` as a table (built as doctree nodes, so it reads the same from a
    Markdown or a reStructuredText page)."""

    has_content = False

    def run(self) -> list[nodes.Node]:
        head = ("function", "argument", "NaN", "+inf", "-inf")
        table = nodes.table(classes=["edge-table"])
        group = nodes.tgroup(cols=len(head))
        table += group
        for width in (30, 14, 18, 22, 22):
            group += nodes.colspec(colwidth=width)
        thead = nodes.thead()
        thead += _row(head)
        group += thead
        body = nodes.tbody()
        for cells in rows():
            body += _row(cells)
        group += body
        self.env.note_dependency(str(TESTS / "registry.py"))
        return [table]


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("edge-table", EdgeTable)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
