"""How-to: find the route that blocks the event loop."""

from __future__ import annotations

import asyncio
import logging
import sys
import time

import httpx
from fastapi import FastAPI

import syncbridge.fastapi

logging.basicConfig(stream=sys.stdout, format="%(levelname)s %(name)s: %(message)s")

app = FastAPI()
syncbridge.fastapi.install(app, blocking_threshold=0.05)


@app.get("/slow")
async def slow() -> str:
    time.sleep(0.2)  # noqa: ASYNC251 - the mistake: blocking inside `async def`
    return "done"


async def main() -> None:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as c:
            await c.get("/slow")  # logs one warning naming GET /slow and the stack


if __name__ == "__main__":
    asyncio.run(main())
