"""A FastAPI app that calls blocking code the syncbridge way.

Run it from the repository root::

    uvicorn examples.fastapi_app:app --port 8000

Routes:

* ``GET /report?n=3``: an ``async def`` route awaiting a blocking "legacy
  driver" in the ``legacy_db`` pool (at most 8 at once; a saturated pool never
  delays the other routes).
* ``GET /export?seconds=2``: blocking work with a 1 s timeout; past it the client
  gets a 504 at once, and the work stops at its next ``check_cancelled()``.
* ``GET /legacy``: a plain ``def`` route (Starlette's threadpool) that calls async
  code with ``sync_call_async``; it runs on the app's own loop, so the cache's
  ``asyncio.Lock`` created at startup works there.
* ``GET /health``: answers at once, whatever the other routes are doing.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, FastAPI

import syncbridge
import syncbridge.fastapi

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


class Cache:
    """An async cache bound to the loop it was created on (its lock is)."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._lock = asyncio.Lock()
        self._data = {"user": "ada", "greeting": "hello"}

    async def get(self, key: str) -> str:
        async with self._lock:
            await asyncio.sleep(0)
            return self._data[key]


cache: Cache | None = None


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    global cache
    cache = Cache()
    yield
    cache = None


app = FastAPI(lifespan=lifespan)
syncbridge.fastapi.install(
    app, threads=64, pools={"legacy_db": 8}, blocking_threshold=0.25
)


def get_cache() -> Cache:
    if cache is None:
        raise RuntimeError("the app is not running")
    return cache


@syncbridge.to_async(pool="legacy_db", timeout=3.0)
def query(n: int) -> list[dict[str, int]]:
    """A blocking database driver call (10 ms per query)."""
    time.sleep(0.01)
    return [{"row": i} for i in range(n)]


@syncbridge.to_async(timeout=1.0)
def export(seconds: float) -> str:
    """Blocking work that stops early once nobody waits for it."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        syncbridge.check_cancelled()
        time.sleep(0.01)
    return "exported"


def current_user() -> str:
    """A sync dependency (runs in the threadpool) that uses async code."""
    return syncbridge.sync_call_async(get_cache().get, "user")


@app.get("/health")
async def health() -> dict[str, bool]:
    return {"ok": True}


@app.get("/report")
async def report(n: int = 3) -> dict[str, list[dict[str, int]]]:
    return {"rows": await query(n)}


@app.get("/export")
async def export_route(seconds: float = 0.1) -> dict[str, str]:
    return {"status": await export(seconds)}


@app.get("/legacy")
def legacy(user: Annotated[str, Depends(current_user)]) -> dict[str, str | bool]:
    c = get_cache()
    greeting = syncbridge.sync_call_async(c.get, "greeting")
    on_app_loop = syncbridge.sync_call_async(_running_loop) is c.loop
    return {"greeting": f"{greeting}, {user}", "on_app_loop": on_app_loop}


async def _running_loop() -> asyncio.AbstractEventLoop:
    return asyncio.get_running_loop()
