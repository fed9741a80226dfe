"""Tutorial: a FastAPI app that awaits a blocking library without stalling."""

from __future__ import annotations

import asyncio
import time

import httpx
from fastapi import FastAPI

import syncbridge
import syncbridge.fastapi

app = FastAPI()
syncbridge.fastapi.install(app, pools={"geo": 4}, blocking_threshold=0.5)


@syncbridge.to_async(pool="geo", timeout=2.0)
def geocode(city: str) -> tuple[float, float]:
    """A blocking SDK call: runs in the "geo" pool, at most 4 at once."""
    time.sleep(0.05)
    return (38.7, -9.1) if city == "Lisbon" else (0.0, 0.0)


@app.get("/where/{city}")
async def where(city: str) -> dict[str, object]:
    lat, lon = await geocode(city)  # the event loop serves others meanwhile
    return {"city": city, "lat": lat, "lon": lon}


async def main() -> None:
    # What uvicorn does: run the app's lifespan around the requests.
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as c:
            started = time.monotonic()
            replies = await asyncio.gather(*(c.get("/where/Lisbon") for _ in range(4)))
            elapsed = time.monotonic() - started
    print(replies[0].json())
    print(f"4 requests in {elapsed:.2f} s")  # about 0.05 s: side by side


if __name__ == "__main__":
    asyncio.run(main())
