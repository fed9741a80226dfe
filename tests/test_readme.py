"""Every Python example in the README runs as written."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import flask
import httpx
import pytest
import starlette.applications

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
