"""How-to: serve syncbridge's Prometheus metrics at /metrics from a FastAPI app."""

from __future__ import annotations

import asyncio

import httpx
import prometheus_client
from fastapi import FastAPI, Response

import syncbridge.fastapi
import syncbridge.prometheus

app = FastAPI()
syncbridge.fastapi.install(app)
syncbridge.prometheus.register()  # the default bridge, on the default registry


@app.get("/metrics")
async def metrics() -> Response:
    # `async def`: a scrape needs no thread, so it is answered even when every
    # pool is full, which is when you need it. Collecting never blocks.
    return Response(
        prometheus_client.generate_latest(),
        media_type=prometheus_client.CONTENT_TYPE_LATEST,
    )


# The usual alternative answers /metrics with a redirect to /metrics/:
mounted = FastAPI()
mounted.mount("/metrics", prometheus_client.make_asgi_app())


async def scrape(app: FastAPI, label: str) -> None:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as c:
        r = await c.get("/metrics")
        lines = [
            x for x in r.text.splitlines() if x.startswith("syncbridge_pool_busy{")
        ]
        where = r.headers.get("location", f"{len(lines)} pool_busy lines")
        print(f"{label}: GET /metrics -> {r.status_code} {where}")


async def main() -> None:
    async with app.router.lifespan_context(app):
        await scrape(app, "route")
        await scrape(mounted, "mount")


if __name__ == "__main__":
    asyncio.run(main())
