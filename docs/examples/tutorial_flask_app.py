"""Tutorial: a Flask app whose async view shares one HTTP client across requests."""

from __future__ import annotations

import asyncio

from flask import Flask

from syncbridge.flask import SyncBridge

app = Flask(__name__)
bridge = SyncBridge(app)


class PriceService:
    """Stands in for an httpx.AsyncClient: its connections belong to one loop."""

    def __init__(self) -> None:
        self.connections = asyncio.Semaphore(4)
        self.loops: set[int] = set()

    async def price(self, sku: str) -> float:
        self.loops.add(id(asyncio.get_running_loop()))
        async with self.connections:
            await asyncio.sleep(0.05)  # the network round trip
            return 9.99 if sku == "tea" else 4.50


prices = PriceService()  # created once, used by every request


@app.get("/basket")
async def basket() -> dict[str, object]:
    # Both lookups run concurrently: the view takes 0.05 s, not 0.1 s.
    tea, milk = await asyncio.gather(prices.price("tea"), prices.price("milk"))
    return {"total": round(tea + milk, 2), "loops_so_far": len(prices.loops)}


if __name__ == "__main__":
    client = app.test_client()  # what `curl` would do against `flask run`
    for _ in range(3):
        print(client.get("/basket").json)
