"""How-to: async Flask views on one persistent loop, checked with the test client."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from flask import Flask, g, request

from syncbridge.flask import SyncBridge, stream

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


class AsyncWeatherClient:
    """Stands in for an httpx.AsyncClient: its connection pool binds to one loop."""

    def __init__(self) -> None:
        self.connections = asyncio.Semaphore(2)
        self.loops: set[asyncio.AbstractEventLoop] = set()

    async def temperature(self, city: str) -> float:
        self.loops.add(asyncio.get_running_loop())
        async with self.connections:
            await asyncio.sleep(0.01)  # the network round trip
            return 21.5 if city == "Lisbon" else 12.0


# --- setup
app = Flask(__name__)
app.config["SYNCBRIDGE_TIMEOUT"] = 5.0  # every coroutine: cancelled after 5 s
bridge = SyncBridge(app)
weather = AsyncWeatherClient()  # created once, shared by every request and thread


@app.before_request
async def who() -> None:
    g.user = request.headers.get("X-User", "anonymous")


@app.get("/weather/<city>")
async def forecast(city: str) -> dict[str, Any]:
    return {"city": city, "celsius": await weather.temperature(city), "for": g.user}


# --- end setup


# --- timeout
@app.get("/report")
@bridge.timeout(0.1)  # overrides SYNCBRIDGE_TIMEOUT for this view
async def report() -> str:
    await asyncio.sleep(10)  # cancelled on the loop after 0.1 s: a 504
    return "never"


@app.errorhandler(504)
def too_slow(exc: Exception) -> tuple[dict[str, str], int]:
    return {"error": "the report took too long, try again later"}, 504


# --- end timeout


# --- background
async def send_receipt(order: int) -> None:
    await asyncio.sleep(0.01)  # e.g. await mailer.send(...)
    if order < 0:
        raise ValueError(f"no such order: {order}")


@app.post("/orders/<int(signed=True):order>")
def place_order(order: int) -> tuple[str, int]:
    bridge.background(send_receipt, order)  # returns at once; errors are logged
    return "accepted", 202


# --- end background


# --- stream
@app.get("/countdown/<int:n>")
async def countdown(n: int) -> Any:
    async def ticks() -> AsyncIterator[str]:
        for i in range(n, 0, -1):
            await asyncio.sleep(0.001)
            yield f"{i}\n"

    return stream(ticks())  # closed on the loop if the client goes away


# --- end stream


if __name__ == "__main__":
    logging.getLogger(app.name).disabled = True  # the failing receipt below
    logging.getLogger("syncbridge").disabled = True  # the 504 below (logged too)
    client = app.test_client()
    for city in ("Lisbon", "Oslo", "Lisbon"):
        r = client.get(f"/weather/{city}", headers={"X-User": "ann"})
        assert r.json is not None
        assert r.json["for"] == "ann"
    assert len(weather.loops) == 1  # three requests, one loop
    r = client.get("/report")
    assert r.status_code == 504
    assert r.json == {"error": "the report took too long, try again later"}
    assert client.post("/orders/7").status_code == 202
    assert client.post("/orders/-1").status_code == 202  # fails later, logged
    assert client.get("/countdown/3").text == "3\n2\n1\n"
    print("ok")
