"""The three Flask apps bench_flask.py compares, one view each, same work.

* ``stock``: an async view run by Flask's own async support (asgiref: a new
  event loop for every request);
* ``bridged``: the same async view with ``SyncBridge(app)`` (one portal loop);
* ``sync``: the view written sync, the floor to compare with.

``/io/<ms>`` waits *ms* milliseconds of "I/O" (``asyncio.sleep`` or
``time.sleep``); ``/io/0`` only yields to the loop once.

``/upstream/<ms>`` asks the upstream service (benchmarks/_upstream.py, on
``$UPSTREAM_PORT``) for an answer that takes *ms* milliseconds, each app in the
best way open to it: the stock app must open a connection per request (its loop
dies with the request, and the connection with it); the bridged app keeps a pool
of open connections on its one loop; the sync app keeps one blocking connection
per thread.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time

from flask import Flask

from syncbridge.flask import SyncBridge

UPSTREAM = ("127.0.0.1", int(os.environ.get("UPSTREAM_PORT", "0")))
POOL_SIZE = 8  # the server's thread count: never more requests in flight


async def _io(ms: int) -> str:
    await asyncio.sleep(ms / 1000)
    return "ok"


stock = Flask("stock")
bridged = Flask("bridged")
SyncBridge(bridged)
sync = Flask("sync")


@stock.get("/io/<int:ms>")
async def stock_io(ms: int) -> str:
    return await _io(ms)


@bridged.get("/io/<int:ms>")
async def bridged_io(ms: int) -> str:
    return await _io(ms)


@sync.get("/io/<int:ms>")
def sync_io(ms: int) -> str:
    if ms:
        time.sleep(ms / 1000)
    return "ok"


@stock.get("/upstream/<int:ms>")
async def stock_upstream(ms: int) -> str:
    reader, writer = await asyncio.open_connection(*UPSTREAM)
    try:
        writer.write(b"%d\n" % ms)
        return (await reader.readline()).decode().strip()
    finally:
        writer.close()
        await writer.wait_closed()


class _Pool:
    """Open connections to the upstream, made on first use on the portal loop."""

    def __init__(self) -> None:
        self.idle: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]]
        self.idle = asyncio.Queue()
        self.opened = 0

    async def ask(self, ms: int) -> str:
        if self.idle.empty() and self.opened < POOL_SIZE:
            self.opened += 1
            self.idle.put_nowait(await asyncio.open_connection(*UPSTREAM))
        reader, writer = await self.idle.get()
        try:
            writer.write(b"%d\n" % ms)
            return (await reader.readline()).decode().strip()
        finally:
            self.idle.put_nowait((reader, writer))


_pool = _Pool()


@bridged.get("/upstream/<int:ms>")
async def bridged_upstream(ms: int) -> str:
    return await _pool.ask(ms)


_conn = threading.local()


@sync.get("/upstream/<int:ms>")
def sync_upstream(ms: int) -> str:
    if not hasattr(_conn, "file"):
        _conn.file = socket.create_connection(UPSTREAM).makefile("rwb")
    _conn.file.write(b"%d\n" % ms)
    _conn.file.flush()
    return str(_conn.file.readline().decode().strip())


if os.environ.get("SYNCBRIDGE_BENCH_UNWATCHED"):
    # The same bridged app with the default loop watch switched off, to measure
    # what the watch costs (benchmarks/bench_observability.py).
    from syncbridge import get_bridge

    get_bridge().watch_portal(None)
