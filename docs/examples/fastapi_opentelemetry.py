"""How-to: a FastAPI request span with the bridged calls it made under it."""

from __future__ import annotations

import asyncio

import httpx
from fastapi import FastAPI
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)

import syncbridge
import syncbridge.fastapi
import syncbridge.opentelemetry

# Your SDK set-up; an exporter to your collector in place of this one.
spans = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(spans))
tracer = provider.get_tracer("shop")

app = FastAPI(telemetry={"tracer_provider": provider, "metrics": False})
syncbridge.fastapi.install(app, pools={"db": 4})
# The default bridge's metrics (global meter provider) and a span per call.
syncbridge.opentelemetry.instrument(tracer_provider=provider)


@syncbridge.to_async(pool="db")
def load_order(order_id: int) -> dict[str, int]:
    with tracer.start_as_current_span("SELECT orders"):  # your driver's span
        return {"id": order_id, "total": 42}


async def price_in(currency: str) -> float:
    with tracer.start_as_current_span("GET rates"):  # your HTTP client's span
        await asyncio.sleep(0)
        return 1.1


def render_invoice(order: dict[str, int]) -> str:
    # Blocking code that needs async code: back to the request's own loop.
    rate = syncbridge.sync_call_async(price_in, "EUR")
    return f"order {order['id']}: {order['total'] * rate:.2f} EUR"


@app.get("/orders/{order_id}/invoice")
async def invoice(order_id: int) -> str:
    order = await load_order(order_id)
    return await syncbridge.run_blocking(render_invoice, order)


def show(
    span: ReadableSpan, by_parent: dict[int, list[ReadableSpan]], depth: int
) -> None:
    print("  " * depth + span.name)
    assert span.context is not None
    for child in by_parent.get(span.context.span_id, []):
        show(child, by_parent, depth + 1)


async def main() -> None:
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://app") as client,
    ):
        print((await client.get("/orders/7/invoice")).json())
    by_parent: dict[int, list[ReadableSpan]] = {}
    for span in sorted(spans.get_finished_spans(), key=lambda s: s.start_time or 0):
        by_parent.setdefault(span.parent.span_id if span.parent else 0, []).append(span)
    for root in by_parent[0]:
        show(root, by_parent, 0)


if __name__ == "__main__":
    asyncio.run(main())
