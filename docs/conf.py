"""Sphinx configuration for the syncbridge documentation.

Build with ``nox -s docs`` (warnings are errors, every reference must resolve), or
``sphinx-build -W -n --keep-going -b html docs docs/_build/html``.
"""

from __future__ import annotations

import shutil
import sys
from importlib.metadata import version as _dist_version
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(_HERE))

import _diagrams  # found through the line above

project = "syncbridge"
author = "syncbridge developers"
copyright = "syncbridge developers"
release = _dist_version("syncbridge")
version = ".".join(release.split(".")[:2])

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.intersphinx",
    "sphinx.ext.graphviz",
]

source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "_inventories", "examples"]
nitpicky = True

# -- MyST ------------------------------------------------------------------
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

# -- autodoc and napoleon --------------------------------------------------
autodoc_typehints = "description"
autodoc_typehints_format = "short"
autodoc_typehints_description_target = "documented"
autodoc_member_order = "bysource"
autodoc_preserve_defaults = True
autodoc_default_options = {"show-inheritance": True}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
# The contract sections every public docstring carries (Google style: Runs on, Cancellation).
napoleon_custom_sections = ["Runs on", "Cancellation"]

# -- intersphinx -----------------------------------------------------------
# Local copies come first so the build needs no network (this project's machines
# and CI have none); the URL is where the links point, and the fallback location
# when a copy is missing. See docs/_inventories/README.md to refresh them.
intersphinx_mapping = {
    "python": (
        "https://docs.python.org/3",
        (str(_HERE / "_inventories" / "python.inv"), None),
    ),
    "anyio": (
        "https://anyio.readthedocs.io/en/stable",
        (str(_HERE / "_inventories" / "anyio.inv"), None),
    ),
}
intersphinx_timeout = 10

# Names that appear in rendered signatures but have no documentation page
# anywhere: the private ParamSpec/TypeVar aliases of syncbridge._typing, and the
# private Literal alias of Bridge(backend=...) in syncbridge._core._portal.
nitpick_ignore = [
    ("py:class", "P"),
    ("py:class", "T"),
    ("py:class", "syncbridge._typing.T"),
    ("py:class", "syncbridge._typing.X"),
    ("py:class", "X"),
    # Imported for annotations only, so autodoc cannot qualify them.
    ("py:class", "FrameType"),
    ("py:class", "AbstractAsyncContextManager"),
    ("py:class", "CollectorRegistry"),
    ("py:class", "Metric"),
    ("py:class", "prometheus_client.registry.Collector"),
    ("py:class", "opentelemetry.metrics.MeterProvider"),
    ("py:class", "opentelemetry.trace.TracerProvider"),
    ("py:class", "P.args"),
    ("py:class", "P.kwargs"),
    ("py:class", "Backend"),
    # Framework classes in the integrations' signatures (no inventories offline).
    ("py:class", "Flask"),
    ("py:class", "Starlette"),
    ("py:class", "AnyStr"),
    ("py:class", "_AsyncFn"),
]

# -- graphviz --------------------------------------------------------------
graphviz_output_format = "svg"
_DOT = shutil.which("dot")
if _DOT is None:
    raise RuntimeError(
        "the docs need Graphviz's `dot` for the threading-model diagram: install "
        "it with your system package manager (apt-get install graphviz, brew "
        "install graphviz, choco install graphviz)"
    )
# The diagrams are drawn here, not by sphinx.ext.graphviz, so that each page
# shows them as a figure linking to the full-size SVG (#16); the build fails if
# one is too wide for the page or its labels too small to read.
_GENERATED = _HERE / "_generated"
_GENERATED.mkdir(exist_ok=True)
for _source in sorted((_HERE / "explanation" / "diagrams").glob("*.dot")):
    _diagrams.draw(_DOT, _source, _GENERATED / f"{_source.stem}.svg")

# -- HTML ------------------------------------------------------------------
html_theme = "furo"
html_title = "syncbridge"
html_static_path = ["_static"]
html_css_files = ["custom.css"]
