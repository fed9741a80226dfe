"""The three Flask apps bench_flask.py compares, one view each, same work.

* ``stock``: an async view run by Flask's own async support (asgiref: a new
  event loop for every request);
* ``bridged``: the same async view with ``SyncBridge(app)`` (one portal loop);
* ``sync``: the view written sync, the floor to compare with.

``/io/<ms>`` waits *ms* milliseconds of "I/O" (``asyncio.sleep`` or
``time.sleep``); ``/io/0`` only yields to the loop once.
"""

from __future__ import annotations

import asyncio
import time

from flask import Flask

from syncbridge.flask import SyncBridge


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
