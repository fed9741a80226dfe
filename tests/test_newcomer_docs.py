"""The README's and the docs' install lines work from a checkout, as written.

``nox -s newcomer`` runs them in fresh virtual environments; these checks are the
quick part, run with the tests.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
INSTALL = re.compile(r"pip install ([^`\n]+)")


def _install_lines() -> list[tuple[str, str]]:
    return [
        (page.relative_to(ROOT).as_posix(), match.group(1))
        for page in PAGES
        if "_build" not in page.parts
        for match in INSTALL.finditer(page.read_text(encoding="utf-8"))
    ]


def test_install_lines_are_found() -> None:
    pages = {page for page, _ in _install_lines()}
    assert {"README.md", "docs/tutorial/web-apps.md"} <= pages


@pytest.mark.parametrize(("page", "args"), _install_lines())
def test_no_install_line_asks_a_package_index_for_syncbridge(
    page: str, args: str
) -> None:
    """syncbridge is on no index: every line installs the checkout ('.')."""
    words = shlex.split(args.split("&&")[0])
    assert not [w for w in words if re.match(r"syncbridge(\[|$)", w)], (page, args)


@pytest.mark.parametrize(
    "page", ["README.md", "docs/tutorial/first-bridge.md", "docs/tutorial/web-apps.md"]
)
def test_the_page_says_where_the_code_comes_from(page: str) -> None:
    text = (ROOT / page).read_text(encoding="utf-8")
    assert "git clone https://github.com/syncbridge/syncbridge && cd syncbridge" in text
    assert "not on a package index" in text


def test_the_web_apps_install_line_brings_what_its_code_imports() -> None:
    text = (ROOT / "docs/tutorial/web-apps.md").read_text(encoding="utf-8")
    (line,) = [args for page, args in _install_lines() if page.endswith("web-apps.md")]
    installed = set(shlex.split(line))
    imported: set[str] = set()
    for name in re.findall(r"\{literalinclude\} \.\./(examples/\S+\.py)", text):
        source = (ROOT / "docs" / name).read_text(encoding="utf-8")
        imported |= set(re.findall(r"^(?:import|from) (\w+)", source, re.MULTILINE))
    third_party = imported - {"__future__", "asyncio", "time", "syncbridge"}
    extras = {"flask": ".[flask,fastapi]", "fastapi": ".[flask,fastapi]"}
    for module in third_party:
        assert extras.get(module, module) in installed, f"{module} is not installed"
