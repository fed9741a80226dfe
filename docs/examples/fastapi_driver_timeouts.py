"""How-to: a driver's own timeouts below the bridge's deadline, so its error reaches the client."""

from __future__ import annotations

import asyncio
import logging
import sys
import threading

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

import syncbridge
import syncbridge.fastapi

# The 504s are logged (request-timed-out): show them with the output.
logging.basicConfig(stream=sys.stdout, format="%(levelname)s %(name)s: %(message)s")

database_up = threading.Event()  # the database is down until this is set


class OperationalError(Exception):
    """What a driver raises when it cannot reach the database."""


class Driver:
    """Stands in for a blocking driver (psycopg, a SQLAlchemy engine) and its pool."""

    def __init__(self, connect_timeout: float) -> None:
        self.connect_timeout = connect_timeout

    def query(self, sql: str) -> list[str]:
        # Down: the connection attempt hangs until the driver's own timeout.
        if not database_up.wait(self.connect_timeout):
            raise OperationalError(
                f"connection timeout expired after {self.connect_timeout:g} s"
            )
        return [sql]


def make_app(driver: Driver, deadline: float) -> FastAPI:
    app = FastAPI()
    # The bulkhead's size is the driver pool's: 2 connections, 2 threads.
    syncbridge.fastapi.install(app, pools={"db": 2})
    query = syncbridge.to_async(driver.query, pool="db", timeout=deadline)

    @app.exception_handler(OperationalError)
    async def database_down(request: Request, exc: OperationalError) -> JSONResponse:
        return JSONResponse({"detail": f"database unavailable: {exc}"}, 503)

    @app.get("/orders")
    async def orders() -> list[str]:
        return await query("select * from orders")

    return app


async def outage(app: FastAPI, label: str) -> None:
    """Six requests at once while the database is down."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as c:
            answers = await asyncio.gather(*(c.get("/orders") for _ in range(6)))
    print(f"{label}: {sorted({(r.status_code, r.json()['detail']) for r in answers})}")


async def main() -> None:
    # The driver waits longer than the bridge: every request times out in the
    # bridge (most of them still queued for a thread), and the client never
    # learns that the database is down.
    await outage(make_app(Driver(connect_timeout=30), deadline=1.0), "driver 30 s")
    database_up.set()  # the database is back: the two stuck calls return
    database_up.clear()  # and down again, for the second try
    # The driver gives up first: 3 rounds of 0.1 s on 2 threads, well within the
    # deadline, and every client gets the database's own error.
    await outage(make_app(Driver(connect_timeout=0.1), deadline=1.0), "driver 0.1 s")


if __name__ == "__main__":
    asyncio.run(main())
