"""A Flask app with async views on one persistent loop per process.

Run it under any WSGI server, for example::

    gunicorn --worker-class gthread --threads 8 --preload examples.flask_app:app
    flask --app examples/flask_app.py run

``tests/test_flask_servers.py`` runs it under gunicorn and the dev server.
"""

from __future__ import annotations

import asyncio
import os
from typing import TYPE_CHECKING, Any

from flask import Flask, abort, g, request

from syncbridge import sync_call_async
from syncbridge.flask import SyncBridge, stream

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


class Inventory:
    """Stands in for an async client or pool: it binds to the loop it first runs on.

    Its lock and its queue of "connections" are asyncio objects, so with a new
    loop per request (Flask's own async support) the second request fails with
    "... is bound to a different event loop".
    """

    def __init__(self, connections: int = 4) -> None:
        self.lock = asyncio.Lock()
        self.connections: asyncio.Queue[int] = asyncio.Queue()
        for conn in range(connections):
            self.connections.put_nowait(conn)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.calls = 0

    async def stock(self, item: int) -> int:
        self.loop = asyncio.get_running_loop()
        conn = await self.connections.get()
        try:
            await asyncio.sleep(0.001)  # the network round trip
            async with self.lock:
                self.calls += 1
            return item * 7 % 100
        finally:
            self.connections.put_nowait(conn)


async def _warm_up() -> int:
    return os.getpid()


app = Flask(__name__)
bridge = SyncBridge(app)
inventory = Inventory()
# A call at import time starts the portal loop before gunicorn --preload forks:
# each worker must still get a working loop of its own.
IMPORTED_BY = sync_call_async(_warm_up)
background_runs = 0
streams_closed = 0


@app.before_request
async def start_timer() -> None:
    g.loop_id = id(asyncio.get_running_loop())


@app.get("/item/<int:item>")
async def item(item: int) -> dict[str, Any]:
    if item < 0:
        abort(404)
    stock = await inventory.stock(item)
    return {
        "item": item,
        "stock": stock,
        "pid": os.getpid(),
        "loop": g.loop_id,
        "same_loop": id(inventory.loop) == g.loop_id,
    }


@app.get("/slow")
@bridge.timeout(0.2)
async def slow() -> str:
    await asyncio.sleep(30)
    return "too late"


@app.get("/stream")
async def numbers() -> Any:
    count = request.args.get("count", 5, type=int)
    delay = request.args.get("delay", 0.0, type=float)

    async def generate() -> AsyncIterator[str]:
        global streams_closed
        try:
            for n in range(count):
                await asyncio.sleep(delay)
                yield f"{n}\n"
        finally:  # also runs when the client goes away mid-stream
            streams_closed += 1

    return stream(generate())


@app.get("/sync")
def plain() -> str:
    return "sync"


async def _record_background(n: int) -> None:
    global background_runs
    await asyncio.sleep(0)
    background_runs += n


@app.post("/background")
def start_background() -> tuple[str, int]:
    bridge.background(_record_background, 1)
    return "accepted", 202


@app.get("/stats")
def stats() -> dict[str, int]:
    return {
        "background_runs": background_runs,
        "streams_closed": streams_closed,
        "pid": os.getpid(),
        "imported_by": IMPORTED_BY,
    }
