"""Every Python example in the README runs as written."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import flask
import httpx
import pytest
import starlette.applications

from _shown_output import mismatch

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(
    r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.DOTALL
)


@pytest.mark.parametrize(
    "source", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))]
)
def test_readme_example_runs(source: str, tmp_path: Path) -> None:
    namespace: dict[str, Any] = {"__name__": "readme_example"}
    exec(compile(source, str(README), "exec"), namespace)  # noqa: S102 - our README
    if "handler" in namespace:
        assert asyncio.run(namespace["handler"]()) == "done"
    if "script" in namespace:
        assert namespace["script"]() == 42
    if "read_file" in namespace:
        target = tmp_path / "data.bin"
        target.write_bytes(b"abc")
        assert asyncio.run(namespace["read_file"](str(target))) == b"abc"
    if "crunch" in namespace:
        assert namespace["crunch"]([1, 2, 3]) == 6
    app = namespace.get("app")
    if isinstance(app, flask.Flask):
        assert app.test_client().get("/").text == "done"
    elif isinstance(app, starlette.applications.Starlette):
        assert asyncio.run(_get_asgi(app, "/")) == ["select 1"]


async def _get_asgi(app: starlette.applications.Starlette, path: str) -> Any:
    """GET *path* from *app* with its lifespan running."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            response = await c.get(path)
            response.raise_for_status()
            return response.json()


def test_readme_has_examples_and_the_two_commands() -> None:
    text = README.read_text(encoding="utf-8")
    assert len(BLOCKS) >= 5
    assert "python -m pip install . && python -m syncbridge demo" in text
    assert "python -m pip install 'nox[uv]' && python -m nox" in text


DEMO_COMMAND = "python -m syncbridge demo"


def _readme_demo_output() -> list[str]:
    """The text block that follows the README's demo command."""
    text = README.read_text(encoding="utf-8")
    after = text[text.index(f"&& {DEMO_COMMAND}\n") :]
    block = re.search(r"```text\n(.*?)```", after, re.DOTALL)
    assert block is not None, "no ```text block after the demo command"
    return block[1].splitlines()


def _run_on_a_terminal(args: list[str]) -> str:
    """What *args* writes to a terminal: its output through a pseudo-terminal."""
    pty = pytest.importorskip("pty")  # POSIX only
    controller, terminal = pty.openpty()
    with subprocess.Popen(args, stdout=terminal, stderr=subprocess.PIPE) as proc:
        os.close(terminal)
        chunks = []
        while True:
            try:
                chunk = os.read(controller, 4096)
            except OSError:  # EIO: the terminal's last writer is gone (Linux)
                break
            if not chunk:
                break
            chunks.append(chunk)
        os.close(controller)
        assert proc.stderr is not None
        assert proc.wait(timeout=60) == 0, proc.stderr.read()
    return b"".join(chunks).decode("utf-8").replace("\r\n", "\n")


@pytest.mark.timeout(120)
def test_the_readme_shows_what_the_demo_prints() -> None:
    """The README's demo block is the demo's output on a terminal (about 12 s)."""
    raw = _run_on_a_terminal([sys.executable, "-m", "syncbridge", "demo"])
    # Each status line is erased ("\r" then "erase line") and the row written in
    # its place: what the screen shows is the text after the last erase.
    lines = raw.rstrip("\n").split("\n")  # not splitlines(): it splits at "\r"
    screen = [line.rsplit("\r\x1b[K", 1)[-1] for line in lines]
    problem = mismatch(_readme_demo_output(), screen, "README.md", DEMO_COMMAND)
    assert problem is None, problem
    text = README.read_text(encoding="utf-8")
    (status,) = re.findall(r"a line such as\s+`(timing [^`]+)`", text)
    assert f"{status}\r\x1b[K" in raw


def test_the_nox_sessions_the_readme_names_exist() -> None:
    """Each ``python -m nox -s ...`` and each `session` the README names is real."""
    # Every supported Python's sessions, whichever this run narrows nox to.
    env = {k: v for k, v in os.environ.items() if k != "SYNCBRIDGE_PYTHONS"}
    listing = subprocess.run(
        [sys.executable, "-m", "nox", "--list", "--json"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        cwd=README.parent,
        env=env,
    )
    sessions = {s["session"] for s in json.loads(listing.stdout)}
    names = {s["name"] for s in json.loads(listing.stdout)}
    text = README.read_text(encoding="utf-8")
    named = {
        name
        for command in re.findall(r"python -m nox -s ([\w.\- ]+?)(?: --|`|\n)", text)
        for name in command.split()
    }
    assert named >= {"tests-3.11", "lint", "typecheck"}
    assert named <= sessions
    mentioned = set(re.findall(r"(?i:the)\s+`(\w+)`\s+session", text))
    assert mentioned >= {"compat", "newcomer", "docs"}
    assert mentioned <= names
