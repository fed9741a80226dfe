"""The threading-model diagrams: legible at the page's width, and linked full size.

The docs build draws them with Graphviz's ``dot`` and fails if one does not fit
(``docs/_diagrams.py``, called by ``docs/conf.py``): ``nox -s docs`` runs that
check, in CI and wherever ``dot`` is installed. These tests need no ``dot``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"
DIAGRAMS = sorted((DOCS / "explanation" / "diagrams").glob("*.dot"))
PAGE = DOCS / "explanation" / "threading-model.md"

sys.path.insert(0, str(DOCS))
try:
    import _diagrams  # the docs build's check, docs/_diagrams.py
finally:
    sys.path.remove(str(DOCS))


def _svg(width: float, *font_sizes: float) -> str:
    texts = "".join(f'<text font-size="{s:g}">x</text>' for s in font_sizes)
    return f'<svg width="{width:g}pt" height="100pt">{texts}</svg>'


def test_diagrams_are_found() -> None:
    assert len(DIAGRAMS) == 2


def test_the_docs_build_draws_and_checks_every_diagram() -> None:
    conf = (DOCS / "conf.py").read_text(encoding="utf-8")
    assert '(_HERE / "explanation" / "diagrams").glob("*.dot")' in conf
    assert "_diagrams.draw(" in conf


def test_a_diagram_that_fits_passes() -> None:
    assert _diagrams.svg_problems(_svg(_diagrams.MAX_WIDTH_PT, 13, 14)) == []


def test_a_diagram_wider_than_the_page_is_refused() -> None:
    (problem,) = _diagrams.svg_problems(_svg(_diagrams.MAX_WIDTH_PT + 1, 14))
    assert "581 pt wide, wider than the page's 580 pt" in problem


def test_a_diagram_with_small_labels_is_refused() -> None:
    (problem,) = _diagrams.svg_problems(_svg(400, 14, 12.5))
    assert "labels of 12.5 pt, below 13 pt" in problem


def test_a_drawing_that_is_not_an_svg_is_refused() -> None:
    assert len(_diagrams.svg_problems("dot: syntax error")) == 2


@pytest.mark.parametrize("source", DIAGRAMS, ids=[d.stem for d in DIAGRAMS])
def test_diagram_is_a_figure_linking_to_its_full_size_svg(source: Path) -> None:
    text = PAGE.read_text(encoding="utf-8")
    assert f"```{{figure}} ../_generated/{source.stem}.svg" in text
    assert f":target: ../_images/{source.stem}.svg" in text
