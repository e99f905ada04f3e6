"""Sphinx configuration of the documentation site: ``python -m sphinx -W -b html docs docs/_build/html``."""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent / "_ext"))

import ddfad_fast  # noqa: E402

project = "ddfad_fast"
author = "ddfad_fast contributors"
release = version = ddfad_fast.__version__
copyright = "the ddfad_fast contributors"

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "numpydoc",
    "myst_parser",
    "cli_reference",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "_ext", "reference/generated"]
myst_heading_anchors = 3
suppress_warnings = ["myst.xref_missing"]      # the README links files of the repository, not pages of this site

autodoc_member_order = "bysource"
autodoc_typehints = "none"                     # numpydoc sections and the signatures say it; no duplicate lists
autodoc_default_options = {"members": True, "undoc-members": False, "show-inheritance": True}
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False

html_theme = "furo"
html_title = f"ddfad_fast {release}"
html_static_path: list = []
