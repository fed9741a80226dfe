"""How-to: what the bridge is doing, as stats, a stall warning and Prometheus metrics."""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time

import prometheus_client

import syncbridge
import syncbridge.prometheus

logging.basicConfig(stream=sys.stdout, format="%(levelname)s %(name)s: %(message)s")


released = threading.Event()


def query(sql: str) -> list[str]:  # a blocking driver, answering once released
    released.wait(timeout=10)
    return [sql]


async def main(bridge: syncbridge.Bridge) -> None:
    # Ten calls into a pool of four: a snapshot while they run.
    calls = [bridge.run_blocking(query, f"select {i}") for i in range(10)]
    task = asyncio.gather(*calls)
    deadline = time.monotonic() + 10
    while (pool := bridge.stats().pools["default"]).busy < 4:  # all four started
        assert time.monotonic() < deadline
        await asyncio.sleep(0.001)
    print(f"busy={pool.busy} waiting={pool.waiting} threads={pool.threads}")
    released.set()
    await task
    stats = bridge.stats()
    print(f"calls={stats.calls} completed={stats.completed} errors={stats.errors}")

    # Two calls past their deadline in the pool "db" of one slot: the first ran
    # too long, the second never got the slot. Their timeouts tell them apart.
    released.clear()
    db_query = syncbridge.to_async(query, pool="db", timeout=0.1, bridge=bridge)
    late = [db_query("select 1"), db_query("select 2")]
    for timeout in await asyncio.gather(*late, return_exceptions=True):
        print(timeout)
    released.set()

    # A coroutine on the watched portal loop that blocks it: one warning, while
    # it still blocks, naming the coroutine and showing its stack.
    async def slow_report() -> None:
        time.sleep(0.2)  # noqa: ASYNC251 - the mistake: blocking the event loop

    await asyncio.to_thread(bridge.sync_call_async, slow_report)


with syncbridge.Bridge(
    max_workers=4, pools={"db": 1}, blocking_threshold=0.1, name="app"
) as bridge:
    asyncio.run(main(bridge))
    registry = prometheus_client.CollectorRegistry()
    syncbridge.prometheus.register(bridge, registry=registry)
    scrape = prometheus_client.generate_latest(registry).decode()
    wanted = (
        "syncbridge_pool_busy",
        "syncbridge_pool_wait_",
        "syncbridge_worker_calls_total{",
        "syncbridge_portal_",
    )
    for line in scrape.splitlines():
        shown = "pool=" not in line or 'pool="default"' in line  # not "db"'s
        if line.startswith(wanted) and shown:
            print(line)
