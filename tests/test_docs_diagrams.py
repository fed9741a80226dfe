"""The threading-model diagrams: legible at the page's width, and linked full size."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"
DIAGRAMS = sorted((DOCS / "explanation" / "diagrams").glob("*.dot"))
PAGE = DOCS / "explanation" / "threading-model.md"
# furo's content column is about 46em (736 px = 552 pt); a diagram up to 5% wider
# is shown at >= 95% of its size, so 13 pt labels stay >= 12 pt.
MAX_WIDTH_PT = 580
MIN_FONT_PT = 13


def test_diagrams_are_found() -> None:
    assert len(DIAGRAMS) == 2


@pytest.mark.parametrize("source", DIAGRAMS, ids=[d.stem for d in DIAGRAMS])
def test_diagram_fits_the_page_width(source: Path) -> None:
    dot = shutil.which("dot")
    assert dot is not None, "Graphviz's dot is needed (apt-get install graphviz)"
    svg = subprocess.run(
        [dot, "-Tsvg", str(source)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    width = float(re.search(r'<svg width="([\d.]+)pt"', svg).group(1))  # type: ignore[union-attr]
    assert width <= MAX_WIDTH_PT
    sizes = [float(s) for s in re.findall(r'font-size="([\d.]+)"', svg)]
    assert sizes
    assert min(sizes) >= MIN_FONT_PT


@pytest.mark.parametrize("source", DIAGRAMS, ids=[d.stem for d in DIAGRAMS])
def test_diagram_is_a_figure_linking_to_its_full_size_svg(source: Path) -> None:
    text = PAGE.read_text(encoding="utf-8")
    assert f"```{{figure}} ../_generated/{source.stem}.svg" in text
    assert f":target: ../_images/{source.stem}.svg" in text
