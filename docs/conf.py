"""Sphinx configuration for crossent's documentation.

Build it (warnings are errors, as in CI) and run its examples as doctests with::

    pip install '.[docs]'
    sphinx-build -W --keep-going -b html docs docs/_build/html
    sphinx-build -W --keep-going -b doctest docs docs/_build/doctest

The API pages are generated from the installed package's runtime docstrings, so build against
the crossent you mean to document (an installed wheel, or ``maturin develop``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import crossent

HERE = Path(__file__).resolve().parent
# The NaN/inf table of the errors page is rendered from tests/registry.py, the table that
# tests/test_bad_input.py checks; _ext/ holds the directive that does it.
sys.path.insert(0, str(HERE / "_ext"))

project = "crossent"
author = "The crossent developers"
copyright = "2026, The crossent developers"
release = crossent.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.doctest",
    "sphinx.ext.mathjax",
    "numpydoc",
    "myst_parser",
    "edge_table",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
# perf/ holds the generated tables that performance.md includes.
exclude_patterns = ["_build", "perf", "Thumbs.db", ".DS_Store"]
templates_path = ["_templates"]

# MyST: $...$ and $$...$$ maths, ::: fences, heading anchors for cross-page links.
myst_enable_extensions = ["dollarmath", "colon_fence", "deflist"]
myst_heading_anchors = 3

autosummary_generate = True
autodoc_typehints = "none"  # the numpydoc "Parameters" sections carry the types
autodoc_default_options = {"members": True}
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
# Every docstring's examples are doctests (also run by tests/test_docs.py against the wheel).
doctest_global_setup = "import numpy as np\nimport crossent"
doctest_test_doctest_blocks = "default"

html_theme = "furo"
html_title = f"crossent {release}"
