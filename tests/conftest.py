from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import pytest

from syncbridge import Bridge

if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture(
    params=[
        pytest.param("asyncio", id="asyncio"),
        pytest.param("trio", id="trio"),
    ]
)
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Run every ``@pytest.mark.anyio`` test on asyncio and on trio."""
    return request.param  # type: ignore[no-any-return]


def _bridge_threads(name: str) -> list[threading.Thread]:
    return [
        t
        for t in threading.enumerate()
        if t.name.startswith((f"syncbridge-{name}-", f"syncbridge-portal-{name}"))
    ]


@pytest.fixture
def bridge() -> Iterator[Bridge]:
    """An isolated bridge (4 workers) that is closed after the test.

    Closing it must leave none of its threads behind.
    """
    b = Bridge(max_workers=4, shutdown_grace=2.0)
    try:
        yield b
    finally:
        b.close()
        leaked = [t for t in _bridge_threads(b.name) if t.is_alive()]
        assert not leaked, f"threads left running after Bridge.close(): {leaked}"
