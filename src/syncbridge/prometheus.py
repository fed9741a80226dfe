"""Prometheus metrics for a bridge: ``syncbridge.prometheus.register()``.

Needs ``prometheus_client`` (``pip install 'syncbridge[prometheus]'``); ``import
syncbridge`` never imports it. Each scrape takes one
:meth:`Bridge.stats() <syncbridge.Bridge.stats>` snapshot and exposes it:

======================================== ========= ===========================================
Metric                                   Type      Labels
======================================== ========= ===========================================
``syncbridge_pool_capacity``             gauge     ``bridge``, ``pool``
``syncbridge_pool_busy``                 gauge     ``bridge``, ``pool`` (slots taken)
``syncbridge_pool_waiting``              gauge     ``bridge``, ``pool`` (calls queued)
``syncbridge_pool_threads``              gauge     ``bridge``, ``pool`` (threads alive)
``syncbridge_pool_abandoned``            gauge     ``bridge``, ``pool`` (abandoned, running)
``syncbridge_pool_busy_seconds_total``   counter   ``bridge``, ``pool`` (slot-seconds used)
``syncbridge_pool_wait_seconds_total``   counter   ``bridge``, ``pool`` (seconds calls queued)
``syncbridge_pool_wait_time_seconds``    histogram ``bridge``, ``pool`` (each call's wait)
``syncbridge_worker_calls_total``        counter   ``bridge``, ``pool``, ``outcome``
``syncbridge_portal_calls_total``        counter   ``bridge``, ``outcome``
``syncbridge_portal_tasks``              gauge     ``bridge``
``syncbridge_portal_lag_seconds``        gauge     ``bridge``
``syncbridge_portal_blocks_total``       counter   ``bridge`` (stalls of a watched portal)
``syncbridge_portal_busy_seconds_total`` counter   ``bridge`` (task-seconds of its calls)
======================================== ========= ===========================================

``outcome`` is ``completed``, ``error``, ``cancelled`` or ``timeout``, and for
``syncbridge_worker_calls_total`` also ``rejected``: refused by the pool's
``max_waiting`` or ``max_wait`` (:class:`~syncbridge.PoolSaturated`), never run.
``rate(syncbridge_pool_busy_seconds_total[5m]) / syncbridge_pool_capacity`` is
a pool's utilisation and ``rate(syncbridge_pool_wait_seconds_total[5m])`` the
average number of calls queued, however short the calls (a gauge sampled at
scrapes misses them); see :class:`~syncbridge.PoolStats`. The histogram's
buckets are ``PoolStats.wait_buckets``
(1 ms to 10 s); it is not named ``syncbridge_pool_wait_seconds``, which would
share its family name with the counter above and break the OpenMetrics format.
``pool``
is a pool of :meth:`Bridge.stats() <syncbridge.Bridge.stats>`: the pool of a
``to_async(executor=...)`` executor is there while the executor lives, so
make executors once, not per request (each would be a series of its own).
"""

from __future__ import annotations

__all__ = ("BridgeCollector", "register")

import math
from typing import TYPE_CHECKING, Final

from prometheus_client import REGISTRY
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.registry import Collector, CollectorRegistry

from ._core._bridge import Bridge, check_reported_bridges, get_bridge
from ._stats import WAIT_BOUNDS
from ._validate import check_instance

if TYPE_CHECKING:
    from collections.abc import Iterator

    from prometheus_client.metrics_core import Metric

_OUTCOMES = ("completed", "error", "cancelled", "timeout")
"""How a portal call ended; a worker call's outcomes are these and ``rejected``."""
_POOL_OUTCOMES: Final = (*_OUTCOMES, "rejected")

_LE: Final = tuple("+Inf" if b == math.inf else repr(b) for b in WAIT_BOUNDS)
"""The ``le`` label of each bucket of the wait-time histogram."""


class BridgeCollector(Collector):
    """A ``prometheus_client`` collector that reads a bridge's stats at each scrape.

    Args:
        bridges: The bridges to expose, told apart by the ``bridge`` label
            (their names); none reads the default bridge
            (:func:`~syncbridge.get_bridge`) at each scrape, so a forked
            worker's fresh default bridge is the one scraped.
    """

    def __init__(self, *bridges: Bridge) -> None:
        check_reported_bridges(
            bridges,
            "syncbridge.prometheus.register(*bridges)",
            "bridge label",
            "register() with no bridge to expose the default one",
        )
        self._bridges = bridges

    def describe(self) -> Iterator[Metric]:
        """The metric families, without values: lets a registry refuse duplicates."""
        for metric in self.collect():
            metric.samples = []
            yield metric

    def collect(self) -> Iterator[Metric]:
        """Yield the metrics of one :meth:`~syncbridge.Bridge.stats` snapshot per bridge."""
        gauges = {
            field: GaugeMetricFamily(
                f"syncbridge_pool_{field}", doc, labels=["bridge", "pool"]
            )
            for field, doc in (
                ("capacity", "How many calls the pool may run at once."),
                ("busy", "Slots taken: calls running, awaited or abandoned."),
                ("waiting", "Calls queued for a slot."),
                ("threads", "Worker threads alive, busy or idle."),
                ("abandoned", "Calls whose awaiter left while they still run."),
            )
        }
        worker_calls = CounterMetricFamily(
            "syncbridge_worker_calls",
            "Blocking calls sent to worker threads, by how they ended for the awaiter "
            "(rejected: refused by the pool's max_waiting/max_wait, never run).",
            labels=["bridge", "pool", "outcome"],
        )
        busy_seconds = CounterMetricFamily(
            "syncbridge_pool_busy_seconds",
            "Slot-seconds used (running calls count their time so far); its rate "
            "over capacity is the utilisation.",
            labels=["bridge", "pool"],
        )
        wait_seconds = CounterMetricFamily(
            "syncbridge_pool_wait_seconds",
            "Seconds calls spent queued for a slot, counted as each leaves the "
            "queue; its rate is the average number of calls queued.",
            labels=["bridge", "pool"],
        )
        wait_time = HistogramMetricFamily(
            "syncbridge_pool_wait_time_seconds",
            "How long each call waited for a slot (those that started at once too).",
            labels=["bridge", "pool"],
        )
        portal_busy = CounterMetricFamily(
            "syncbridge_portal_busy_seconds",
            "Task-seconds of the coroutines sent to the portal loop (unfinished ones "
            "count their time so far).",
            labels=["bridge"],
        )
        portal_calls = CounterMetricFamily(
            "syncbridge_portal_calls",
            "Coroutines run on the portal loop for sync code, by how they ended.",
            labels=["bridge", "outcome"],
        )
        tasks = GaugeMetricFamily(
            "syncbridge_portal_tasks",
            "Coroutines pending on the portal loop.",
            labels=["bridge"],
        )
        lag = GaugeMetricFamily(
            "syncbridge_portal_lag_seconds",
            "How long a callback posted to the portal loop waits before it runs.",
            labels=["bridge"],
        )
        blocks = CounterMetricFamily(
            "syncbridge_portal_blocks",
            "Times the watched portal loop was blocked longer than its threshold.",
            labels=["bridge"],
        )
        for bridge in self._bridges or (get_bridge(),):
            stats = bridge.stats()
            name = bridge.name
            for pool_name, pool in stats.pools.items():
                for field, gauge in gauges.items():
                    gauge.add_metric([name, pool_name], getattr(pool, field))
                pool_ends = (
                    pool.completed,
                    pool.errors,
                    pool.cancellations,
                    pool.timeouts,
                    pool.rejected,
                )
                for outcome, count in zip(_POOL_OUTCOMES, pool_ends, strict=True):
                    worker_calls.add_metric([name, pool_name, outcome], count)
                labels = [name, pool_name]
                busy_seconds.add_metric(labels, pool.busy_seconds)
                wait_seconds.add_metric(labels, pool.wait_seconds)
                if pool.wait_buckets:  # empty from a PoolStats made without them
                    wait_time.add_metric(
                        labels,
                        buckets=[
                            (le, count)
                            for le, (_, count) in zip(
                                _LE, pool.wait_buckets, strict=True
                            )
                        ],
                        sum_value=pool.wait_seconds,
                    )
            portal = stats.portal
            ends = (
                portal.completed,
                portal.errors,
                portal.cancellations,
                portal.timeouts,
            )
            for outcome, count in zip(_OUTCOMES, ends, strict=True):
                portal_calls.add_metric([name, outcome], count)
            tasks.add_metric([name], portal.tasks)
            lag.add_metric([name], portal.lag)
            blocks.add_metric([name], portal.blocks)
            portal_busy.add_metric([name], portal.busy_seconds)
        yield from gauges.values()
        yield from (busy_seconds, wait_seconds, wait_time, worker_calls)
        yield from (portal_calls, tasks, lag, blocks, portal_busy)


def register(
    *bridges: Bridge, registry: CollectorRegistry | None = None
) -> BridgeCollector:
    """Expose the bridges' stats (none given: the default bridge's) as metrics.

    Call it once at start-up; every scrape of *registry* (default:
    ``prometheus_client.REGISTRY``, what ``start_http_server`` and
    ``make_wsgi_app``/``make_asgi_app`` serve) then reads a fresh snapshot.

    Returns:
        The registered collector (``registry.unregister(collector)`` removes it).

    Raises:
        TypeError: If a bridge is not a :class:`~syncbridge.Bridge`, or
            *registry* not a ``CollectorRegistry`` or ``None``.
        ValueError: From ``prometheus_client``, if the registry already has
            these metrics (one ``register(a, b)`` exposes several bridges).

    .. versionadded:: 0.1
    """
    check_instance(
        registry,
        CollectorRegistry,
        "syncbridge.prometheus.register(registry=...)",
        "prometheus_client.CollectorRegistry",
    )
    collector = BridgeCollector(*bridges)
    (registry if registry is not None else REGISTRY).register(collector)
    return collector
