"""How-to: blocking code in FastAPI, with a bulkhead, a timeout and a def route."""

from __future__ import annotations

import asyncio
import logging
import sys
import time

import httpx
from fastapi import FastAPI

import syncbridge
import syncbridge.fastapi

# The 504s are logged (request-timed-out): show them with the output.
logging.basicConfig(stream=sys.stdout, format="%(levelname)s %(name)s: %(message)s")

app = FastAPI()
syncbridge.fastapi.install(app, threads=64, pools={"legacy_db": 8})


@syncbridge.to_async(pool="legacy_db", timeout=3.0)
def query(sql: str) -> list[str]:
    """A blocking driver: at most 8 run at once, in their own pool."""
    time.sleep(0.01)
    return [sql]


@syncbridge.to_async(timeout=0.1)
def export() -> str:
    """Too slow: the client gets a 504 after 0.1 s, and the work stops early."""
    for _ in range(100):
        syncbridge.check_cancelled()  # raises once the request has timed out
        time.sleep(0.01)
    return "done"


async def greeting() -> str:
    await asyncio.sleep(0)
    return "hello"


@app.get("/report")
async def report() -> list[str]:
    return await query("select 1")


@app.get("/export")
async def export_route() -> str:
    return await export()


@app.get("/legacy")
def legacy() -> str:  # a plain `def` route runs in the threadpool
    return syncbridge.sync_call_async(greeting)  # on the app's own loop


async def main() -> None:
    # What a server does: run the app's lifespan around the requests.
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as c:
            for path in ("/report", "/export", "/legacy"):
                response = await c.get(path)
                print(path, response.status_code, response.json())


if __name__ == "__main__":
    asyncio.run(main())
