"""How-to: a pool that bounds its queue answers 503 at once while its database hangs."""

from __future__ import annotations

import asyncio
import threading

import httpx
from fastapi import FastAPI

import syncbridge
import syncbridge.fastapi

database_up = threading.Event()  # the database hangs until this is set


def query(sql: str) -> list[str]:
    """Stands in for a blocking driver whose query hangs while the database does."""
    database_up.wait(30)
    return [sql]


app = FastAPI()
# 2 threads; a call that waits 0.2 s without getting one is refused: a 503.
syncbridge.fastapi.install(app, pools={"db": {"capacity": 2, "max_wait": 0.2}})
db_query = syncbridge.to_async(query, pool="db")


@app.get("/orders")
async def orders() -> list[str]:
    return await db_query("select * from orders")


async def main() -> None:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as c:
            pending = {asyncio.create_task(c.get("/orders")) for _ in range(6)}
            # Four are answered while the database still hangs: refused, not queued.
            while len(pending) > 2:
                done, pending = await asyncio.wait(
                    pending, return_when=asyncio.FIRST_COMPLETED
                )
                for task in done:
                    r = task.result()
                    print(r.status_code, "Retry-After:", r.headers["Retry-After"])
            database_up.set()  # the database is back: the two running calls return
            for r in await asyncio.gather(*pending):
                print(r.status_code, r.json())


if __name__ == "__main__":
    asyncio.run(main())
