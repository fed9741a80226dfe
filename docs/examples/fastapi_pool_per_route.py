"""How-to: choose the pool a blocking call runs in, from the route that makes it."""

from __future__ import annotations

import asyncio
import threading
import time

import httpx
from fastapi import FastAPI

import syncbridge
import syncbridge.fastapi

app = FastAPI()
syncbridge.fastapi.install(app, pools={"db": 4, "reports": 2})


def fetch_user(user_id: int) -> dict[str, object]:
    """A library's blocking call: not yours to decorate."""
    time.sleep(0.01)
    pool = threading.current_thread().name.rsplit("-", 1)[0]  # syncbridge-<pool>
    return {"user": user_id, "ran_in": pool}


# Wrap it once for each pool (and deadline) the routes need, at import time.
fetch_user_fast = syncbridge.to_async(fetch_user, pool="db", timeout=2.0)
fetch_user_slow = syncbridge.to_async(fetch_user, pool="reports", timeout=30.0)
BY_PRIORITY = {"interactive": fetch_user_fast, "batch": fetch_user_slow}


@app.get("/users/{user_id}")
async def user(user_id: int) -> dict[str, object]:
    return await fetch_user_fast(user_id)  # in the "db" pool


@app.get("/reports/users/{user_id}")
async def user_report(user_id: int) -> dict[str, object]:
    return await fetch_user_slow(user_id)  # in the "reports" pool


@app.get("/lookup/{user_id}")
async def lookup(user_id: int, priority: str = "interactive") -> dict[str, object]:
    return await BY_PRIORITY[priority](user_id)  # chosen for each request


async def main() -> None:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as c:
            for path in ("/users/1", "/reports/users/1", "/lookup/2?priority=batch"):
                print(path, (await c.get(path)).json())


if __name__ == "__main__":
    asyncio.run(main())
