"""Type tests for syncbridge.flask and Bridge.start_soon (checked by mypy, never run)."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterator
from typing import TYPE_CHECKING, assert_type

from flask import Flask

import syncbridge
from syncbridge.flask import SyncBridge, stream

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator

app = Flask(__name__)
ext = SyncBridge(app)


async def view(item: int, *, verbose: bool = False) -> dict[str, int]:
    return {"item": item}


async def job(order: int, note: str = "") -> bool:
    return True


async def chunks() -> AsyncGenerator[str]:
    yield "x"


async def raw() -> AsyncGenerator[bytes]:
    yield b"x"


async def check_timeout() -> None:
    bounded = ext.timeout(2.0)(view)  # the decorated function keeps its signature
    assert_type(await bounded(1, verbose=True), dict[str, int])
    await bounded("1")  # type: ignore[arg-type]


def check() -> None:
    ext.timeout(None)(view)
    ext.timeout(1.0)(lambda: None)  # type: ignore[type-var]

    assert_type(ext.background(job, 7), concurrent.futures.Future[bool])
    assert_type(ext.background(job, 7, note="n"), concurrent.futures.Future[bool])
    assert_type(ext.background(job(7)), concurrent.futures.Future[bool])
    ext.background(job, "seven")  # type: ignore[call-overload]

    assert_type(stream(chunks()), Iterator[str])
    assert_type(stream(raw()), Iterator[bytes])

    bridge = syncbridge.get_bridge()
    assert_type(bridge.start_soon(job, 1), concurrent.futures.Future[bool])
    bridge.start_soon(job, 1, nope=2)  # type: ignore[call-arg]
