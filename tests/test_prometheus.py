"""syncbridge.prometheus: a real registry scraped in the text exposition format."""

from __future__ import annotations

import concurrent.futures
import gc
import subprocess
import sys
import threading
import time

import anyio
import prometheus_client
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

import syncbridge.prometheus
from syncbridge import Bridge, to_async

WAIT = 10.0


def scrape(
    registry: CollectorRegistry,
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = prometheus_client.generate_latest(registry).decode()
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return samples


@pytest.mark.anyio
async def test_a_scrape_shows_the_bridges_state_with_conventional_names() -> None:
    registry = CollectorRegistry()
    release = threading.Event()
    async with Bridge(max_workers=2, pools={"db": 3}, name="app") as b:
        syncbridge.prometheus.register(b, registry=registry)

        def fail() -> None:
            raise ValueError("boom")

        await b.run_blocking(lambda: None)
        with pytest.raises(ValueError, match="boom"):
            await b.run_blocking(fail)
        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(b.run_blocking, release.wait, WAIT)
            with anyio.fail_after(WAIT):
                while b.stats().pools["default"].waiting < 1:
                    await anyio.sleep(0.005)
            got = scrape(registry)
            release.set()

    def pool(metric: str, name: str = "default") -> float:
        return got[f"syncbridge_pool_{metric}", (("bridge", "app"), ("pool", name))]

    assert pool("capacity") == 2
    assert pool("capacity", "db") == 3
    assert pool("busy") == 2
    assert pool("waiting") == 1
    assert pool("threads") == 2
    assert pool("abandoned") == 0

    def calls(outcome: str) -> float:
        labels = (("bridge", "app"), ("outcome", outcome), ("pool", "default"))
        return got["syncbridge_worker_calls_total", labels]

    assert (
        calls("completed"),
        calls("error"),
        calls("cancelled"),
        calls("timeout"),
    ) == (1, 1, 0, 0)
    assert got["syncbridge_portal_tasks", (("bridge", "app"),)] == 0
    assert got["syncbridge_portal_lag_seconds", (("bridge", "app"),)] == 0
    assert got["syncbridge_portal_blocks_total", (("bridge", "app"),)] == 0
    assert (
        got[
            "syncbridge_portal_calls_total",
            (("bridge", "app"), ("outcome", "completed")),
        ]
        == 0
    )


@pytest.mark.anyio
async def test_an_executor_made_per_request_leaves_no_label_set_behind() -> None:
    """Its pool is scraped while the executor lives, then no more (#24)."""
    registry = CollectorRegistry()

    def pools() -> set[str]:
        return {
            dict(labels)["pool"]
            for name, labels in scrape(registry)
            if name == "syncbridge_pool_capacity"
        }

    async def request(b: Bridge, i: int) -> set[str]:
        with concurrent.futures.ThreadPoolExecutor(1) as ex:
            assert await to_async(int, executor=ex, bridge=b)(i) == i
            return pools()

    async with Bridge(name="app") as b:
        syncbridge.prometheus.register(b, registry=registry)
        for i in range(50):
            during = await request(b, i)
            assert during == {
                "default",
                "thread_sensitive",
                f"ThreadPoolExecutor-{i + 1}",
            }
        gc.collect()
        assert pools() == {"default", "thread_sensitive"}


def test_the_metrics_have_help_and_types() -> None:
    registry = CollectorRegistry()
    with Bridge(name="typed") as b:
        syncbridge.prometheus.register(b, registry=registry)
        text = prometheus_client.generate_latest(registry).decode()
    assert "# TYPE syncbridge_worker_calls_total counter" in text
    assert "# TYPE syncbridge_pool_busy gauge" in text
    assert "# HELP syncbridge_portal_lag_seconds " in text


def test_several_bridges_in_one_registry_are_told_apart_by_label() -> None:
    registry = CollectorRegistry()
    with Bridge(name="a") as a, Bridge(name="b") as b:
        collector = syncbridge.prometheus.register(a, b, registry=registry)
        got = scrape(registry)
        assert (
            got["syncbridge_pool_capacity", (("bridge", "a"), ("pool", "default"))]
            == 40
        )
        assert (
            got["syncbridge_pool_capacity", (("bridge", "b"), ("pool", "default"))]
            == 40
        )
        registry.unregister(collector)


def test_without_bridges_the_default_bridge_is_scraped() -> None:
    registry = CollectorRegistry()
    syncbridge.prometheus.register(registry=registry)
    name = syncbridge.get_bridge().name
    got = scrape(registry)
    assert ("syncbridge_pool_capacity", (("bridge", name), ("pool", "default"))) in got


def test_register_refuses_what_is_not_a_bridge() -> None:
    with pytest.raises(
        TypeError, match=r"register\(\*bridges\) must be a syncbridge.Bridge"
    ):
        syncbridge.prometheus.register("default")  # type: ignore[arg-type]


def test_import_syncbridge_does_not_import_prometheus_client() -> None:
    code = "import sys, syncbridge; assert 'prometheus_client' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=30)


def test_registering_twice_is_refused_even_on_a_custom_registry() -> None:
    registry = CollectorRegistry()
    with Bridge(name="twice") as b:
        syncbridge.prometheus.register(b, registry=registry)
        with pytest.raises(ValueError, match="Duplicated timeseries"):
            syncbridge.prometheus.register(b, registry=registry)


def test_bridges_with_the_same_name_are_refused() -> None:
    with (
        Bridge(name="same") as a,
        Bridge(name="same") as b,
        pytest.raises(ValueError, match=r"name them apart with Bridge\(name=\.\.\.\)"),
    ):
        syncbridge.prometheus.register(a, b, registry=CollectorRegistry())


HOLD = 0.2  # seconds a call holds the one slot: measured, a lower bound only


@pytest.mark.anyio
async def test_busy_and_wait_totals_and_the_wait_histogram_are_exported() -> None:
    """Pool of 1: a call holds it while another waits; the scrape tells them apart."""
    registry = CollectorRegistry()
    started, release = threading.Event(), threading.Event()

    def hold() -> None:
        started.set()
        release.wait(WAIT)

    async with Bridge(pools={"one": 1}, name="app") as b:
        syncbridge.prometheus.register(b, registry=registry)
        async with anyio.create_task_group() as tg:
            tg.start_soon(to_async(hold, pool="one", bridge=b))
            await anyio.to_thread.run_sync(started.wait, WAIT)
            tg.start_soon(to_async(lambda: None, pool="one", bridge=b))
            with anyio.fail_after(WAIT):
                while b.stats().pools["one"].waiting < 1:
                    await anyio.sleep(0.005)
            t0 = time.monotonic()  # the holder runs, the other waits, since before
            await anyio.sleep(HOLD)
            t1 = time.monotonic()
            release.set()

        got = scrape(registry)

    one = (("bridge", "app"), ("pool", "one"))
    busy = got["syncbridge_pool_busy_seconds_total", one]
    wait = got["syncbridge_pool_wait_seconds_total", one]
    assert busy >= t1 - t0
    assert wait >= t1 - t0
    # The histogram: the holder started at once, the other waited >= HOLD.
    name = "syncbridge_pool_wait_time_seconds"

    def bucket(le: str) -> float:
        return got[f"{name}_bucket", (("bridge", "app"), ("le", le), ("pool", "one"))]

    assert bucket("0.001") == bucket("0.1") == 1
    assert bucket("+Inf") == got[f"{name}_count", one] == 2
    assert got[f"{name}_sum", one] == wait
    les = [le for (n, labels), _ in got.items() if n == f"{name}_bucket"
           for k, le in labels if k == "le" and ("pool", "one") in labels]  # fmt: skip
    assert les == ["0.001", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5",
                   "1.0", "2.5", "5.0", "10.0", "+Inf"]  # fmt: skip


def test_the_new_metrics_parse_as_openmetrics_too() -> None:
    """The counters and the histogram have family names of their own."""
    from prometheus_client.openmetrics.exposition import generate_latest
    from prometheus_client.openmetrics.parser import (
        text_string_to_metric_families as parse_openmetrics,
    )

    registry = CollectorRegistry()
    with Bridge(name="om") as b:
        syncbridge.prometheus.register(b, registry=registry)
        b.sync_call_async(b.run_blocking, int)
        text = generate_latest(registry).decode()  # type: ignore[no-untyped-call]
        portal = b.stats().portal.busy_seconds
    families = list(parse_openmetrics(text))  # type: ignore[no-untyped-call]
    types = {f.name: f.type for f in families}
    assert types["syncbridge_pool_busy_seconds"] == "counter"
    assert types["syncbridge_pool_wait_seconds"] == "counter"
    assert types["syncbridge_pool_wait_time_seconds"] == "histogram"
    assert types["syncbridge_portal_busy_seconds"] == "counter"
    (sample,) = next(
        f for f in families if f.name == "syncbridge_portal_busy_seconds"
    ).samples
    assert 0 < sample.value <= portal


@pytest.mark.anyio
async def test_a_call_the_pool_refuses_is_counted_as_rejected() -> None:
    """Pool of 1 with max_waiting=0: a second call is refused, never run (#25)."""
    registry = CollectorRegistry()
    started, release = threading.Event(), threading.Event()

    def hold() -> None:
        started.set()
        release.wait(WAIT)

    ran: list[int] = []
    async with Bridge(pools={"db": {"capacity": 1, "max_waiting": 0}}, name="app") as b:
        syncbridge.prometheus.register(b, registry=registry)
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(to_async(hold, pool="db", bridge=b))
                await anyio.to_thread.run_sync(started.wait, WAIT)
                with pytest.raises(syncbridge.PoolSaturated):
                    await to_async(ran.append, pool="db", bridge=b)(1)
                got = scrape(registry)
                release.set()
        finally:
            release.set()
    assert ran == []

    def calls(outcome: str, pool: str = "db") -> float:
        labels = (("bridge", "app"), ("outcome", outcome), ("pool", pool))
        return got["syncbridge_worker_calls_total", labels]

    assert calls("rejected") == 1
    assert [calls(o) for o in ("completed", "error", "cancelled", "timeout")] == [0] * 4
    assert calls("rejected", "default") == 0
    # The portal's calls are never refused: no rejected outcome there.
    assert not any(
        name == "syncbridge_portal_calls_total" and ("outcome", "rejected") in labels
        for name, labels in got
    )
