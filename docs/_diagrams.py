"""Draw the threading-model diagrams with Graphviz's ``dot``, and check they fit the page.

The docs build (``conf.py``) draws each ``explanation/diagrams/*.dot`` into
``_generated/`` and fails if one is too wide or its labels too small to read;
``tests/test_docs_diagrams.py`` checks the check without needing ``dot``.
"""

from __future__ import annotations

import re
import subprocess
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

# furo's content column is about 46em (736 px = 552 pt); a diagram up to 5% wider
# is shown at >= 95% of its size, so 13 pt labels stay >= 12 pt.
MAX_WIDTH_PT = 580.0
MIN_FONT_PT = 13.0


def svg_problems(svg: str) -> list[str]:
    """What keeps the SVG *svg* from being legible at the page's width (none: fits)."""
    problems = []
    width = re.search(r'<svg width="([\d.]+)pt"', svg)
    if width is None:
        problems.append("no width in points on its <svg> element")
    elif float(width[1]) > MAX_WIDTH_PT:
        problems.append(
            f"{float(width[1]):g} pt wide, wider than the page's {MAX_WIDTH_PT:g} pt "
            "(lay it out top to bottom, or shorten its labels)"
        )
    sizes = [float(s) for s in re.findall(r'font-size="([\d.]+)"', svg)]
    if not sizes:
        problems.append("no text with a font size")
    elif min(sizes) < MIN_FONT_PT:
        problems.append(
            f"labels of {min(sizes):g} pt, below {MIN_FONT_PT:g} pt (set fontsize "
            f"to at least {MIN_FONT_PT:g} on the graph, its nodes and its edges)"
        )
    return problems


def draw(dot: str, source: Path, target: Path) -> None:
    """Draw *source* into the SVG file *target* with the ``dot`` at *dot*.

    Raises:
        RuntimeError: If the drawing does not fit the page (:func:`svg_problems`).
        subprocess.CalledProcessError: If ``dot`` fails.
    """
    svg = subprocess.run(
        [dot, "-Tsvg", str(source)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    problems = svg_problems(svg)
    if problems:
        raise RuntimeError(f"diagram {source.name}: " + "; ".join(problems))
    target.write_text(svg, encoding="utf-8")
