"""OpenTelemetry metrics and spans for a bridge: ``syncbridge.opentelemetry.instrument()``.

Needs ``opentelemetry-api`` only (``pip install 'syncbridge[opentelemetry]'``);
the SDK, exporters and their configuration are the app's. ``import syncbridge``
never imports it. Each metric collection reads one
:meth:`Bridge.stats() <syncbridge.Bridge.stats>` snapshot per bridge and
instrument, but for the wait histogram, which each pool call records (the API
has no observable histogram):

=============================== ========================= ============ ===========================
Metric                          Instrument                Unit         Attributes
=============================== ========================= ============ ===========================
``syncbridge.pool.capacity``    observable up-down count. ``{call}``   bridge, pool
``syncbridge.pool.busy``        observable up-down count. ``{call}``   bridge, pool (slots taken)
``syncbridge.pool.waiting``     observable up-down count. ``{call}``   bridge, pool (queued)
``syncbridge.pool.threads``     observable up-down count. ``{thread}`` bridge, pool (alive)
``syncbridge.pool.abandoned``   observable up-down count. ``{call}``   bridge, pool
``syncbridge.pool.calls``       observable counter        ``{call}``   bridge, pool, outcome
``syncbridge.pool.wait_time``   observable counter        ``s``        bridge, pool (queued)
``syncbridge.pool.busy_time``   observable counter        ``s``        bridge, pool (slot-seconds)
``syncbridge.pool.wait``        histogram                 ``s``        bridge, pool (each call's)
``syncbridge.portal.calls``     observable counter        ``{call}``   bridge, outcome
``syncbridge.portal.tasks``     observable up-down count. ``{task}``   bridge
``syncbridge.portal.lag``       observable gauge          ``s``        bridge
``syncbridge.portal.blocks``    observable counter        ``{block}``  bridge
``syncbridge.portal.busy_time`` observable counter        ``s``        bridge (task-seconds)
=============================== ========================= ============ ===========================

The attributes are ``syncbridge.bridge`` (the bridge's name), ``syncbridge.pool``
and ``syncbridge.outcome`` (``completed``, ``error``, ``cancelled``,
``timeout``, and for a pool ``rejected``), as :mod:`syncbridge.prometheus`
labels them. The counters in seconds are :class:`~syncbridge.PoolStats`'
``wait_seconds`` and ``busy_seconds`` and :class:`~syncbridge.PortalStats`'
``busy_seconds``. The histogram's boundaries (advice to the SDK) are those of
``PoolStats.wait_buckets``, which counts the same calls: a call records its
wait when its caller is done with it (until it started, or until it left the
queue unstarted); one refused at once by ``max_waiting``, which never queued,
and one run in another process, whose start is not seen, record none.

Given a ``tracer_provider``, each bridged call is a span, a child of the span
current where it was made: ``run_blocking``, ``to_async`` and
``iterate_in_thread`` (a blocking call in a pool), ``sync_call_async``,
``to_sync`` and the other sync-to-async helpers (a coroutine run for sync
code). The span is current while the call runs, so the spans the function or
the coroutine starts are its children. With spans or without, a span started
in the function or the coroutine is a child of the one current at the call
(syncbridge runs each call in a copy of the caller's :mod:`contextvars`
context), and it never leaks into the next call. A function sent to another
process (a process pool, dask) does not carry the context: inject it into the
call's arguments (``opentelemetry.propagate.inject``) if its spans must join.
"""

from __future__ import annotations

__all__ = ("Instrumentation", "instrument")

import threading
import weakref
from time import monotonic
from typing import TYPE_CHECKING, Any, Final

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace

from . import __version__
from ._core._bridge import Bridge, check_reported_bridges, get_bridge, observe_calls
from ._core._handoff import QUEUED
from ._exceptions import PoolSaturated, SyncBridgeTimeout, callable_name
from ._stats import WAIT_BOUNDS

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine, Iterable, Iterator
    from types import TracebackType
    from typing import Self

    from ._core._jobs import Job
    from ._stats import BridgeStats

_SCOPE: Final = "syncbridge"
"""The instrumentation scope: the meter's and the tracer's name."""

_BRIDGE: Final = "syncbridge.bridge"
_POOL: Final = "syncbridge.pool"
_OUTCOME: Final = "syncbridge.outcome"
_WAIT: Final = "syncbridge.wait"
_FUNCTION: Final = "code.function.name"

_OUTCOMES: Final = ("completed", "error", "cancelled", "timeout")
_POOL_OUTCOMES: Final = (*_OUTCOMES, "rejected")
"""A pool's call may also be refused (``max_waiting``/``max_wait``)."""

_lock = threading.Lock()
"""Guards :data:`_instrumented` and each :class:`_Metrics`' sources.

Taken by the instruments' callbacks, which the SDK calls under a lock of its
own, also taken to add an instrument: so no instrument is made under this one.
"""
_metrics_lock = threading.Lock()
"""Guards :data:`_metrics`: making a provider's instruments once."""
_instrumented: dict[Bridge | None, Instrumentation] = {}
"""What each instrumented bridge is instrumented by; ``None``: the default bridge.

Explicit bridges are kept alive until uninstrumented, as a registered
Prometheus collector keeps its bridges.
"""
_metrics: weakref.WeakKeyDictionary[metrics.MeterProvider, _Metrics] = (
    weakref.WeakKeyDictionary()
)
"""The instruments made on each meter provider, once: a provider refuses to
make a second instrument of the same name, so a later instrument() reuses them."""


class Instrumentation:
    """What :func:`instrument` did; :meth:`uninstrument` (or a ``with`` block) undoes it.

    .. versionadded:: 0.1
    """

    def __init__(self, bridges: tuple[Bridge | None, ...], metrics: _Metrics) -> None:
        self._bridges = bridges
        self._metrics = metrics
        self._done = False

    def uninstrument(self) -> None:
        """Stop the metrics and spans of these bridges; idempotent.

        Their metrics are no longer reported (the instruments stay on the
        meter provider, which cannot remove them, and report nothing new; the
        wait histogram keeps what it recorded), and calls made from now on
        have no span and record no wait. A call under way keeps its span.
        """
        with _lock:
            if self._done:
                return
            self._done = True
            for bridge in self._bridges:
                del _instrumented[bridge]
                self._metrics.sources.pop(bridge, None)
                observe_calls(bridge, None)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.uninstrument()


def instrument(
    *bridges: Bridge,
    meter_provider: metrics.MeterProvider | None = None,
    tracer_provider: trace.TracerProvider | None = None,
) -> Instrumentation:
    """Report the bridges' metrics (none given: the default bridge's), and spans.

    Call it once at start-up, after the app set up its OpenTelemetry SDK.
    Without *bridges* the default bridge (:func:`~syncbridge.get_bridge`) is
    read at each collection, and its calls have spans, so a forked worker's
    fresh default bridge is the one reported.

    Args:
        bridges: The bridges to report, told apart by the ``syncbridge.bridge``
            attribute (their names).
        meter_provider: Where the metrics go; ``None`` is the global one
            (``opentelemetry.metrics.get_meter_provider()``).
        tracer_provider: Where the spans go. ``None`` (the default) makes no
            spans: pass ``opentelemetry.trace.get_tracer_provider()`` for the
            global one.

    Returns:
        An :class:`Instrumentation`, whose ``uninstrument()`` undoes this.

    Raises:
        TypeError: If a bridge is not a :class:`~syncbridge.Bridge`, or a
            provider not an OpenTelemetry one.
        ValueError: If two bridges share a name, or a bridge is instrumented
            already (call ``uninstrument()`` on what the first
            ``instrument()`` returned first).

    .. versionadded:: 0.1
    """
    check_reported_bridges(
        bridges,
        "syncbridge.opentelemetry.instrument(*bridges)",
        "syncbridge.bridge attribute",
        "instrument() with no bridge to instrument the default one",
    )
    for value, cls, option in (
        (meter_provider, metrics.MeterProvider, "meter_provider"),
        (tracer_provider, trace.TracerProvider, "tracer_provider"),
    ):
        if value is not None and not isinstance(value, cls):  # pyright: ignore[reportUnnecessaryIsInstance] - untyped callers
            raise TypeError(
                f"syncbridge.opentelemetry.instrument({option}=...) must be an "
                f"opentelemetry.{cls.__module__.split('.')[1]}.{cls.__name__} or "
                f"None, got {value!r}"
            )
    if meter_provider is None:
        meter_provider = metrics.get_meter_provider()
    tracer = None
    if tracer_provider is not None:
        tracer = tracer_provider.get_tracer(_SCOPE, __version__)
    with _metrics_lock:
        found = _metrics.get(meter_provider)
        if found is None:
            found = _metrics[meter_provider] = _Metrics(meter_provider)
    keys: tuple[Bridge | None, ...] = bridges or (None,)
    with _lock:
        for key in keys:
            _refuse_twice(key)
        instrumentation = Instrumentation(keys, found)
        for key in keys:
            _instrumented[key] = instrumentation
            found.sources[key] = None
            name = key.name if key is not None else "default"
            observe_calls(key, _Calls(name, found.wait, tracer))
    return instrumentation


def _refuse_twice(key: Bridge | None) -> None:
    """Raise if *key* (``None``: the default bridge) is instrumented already."""
    default = _default_if_made()
    if (
        key in _instrumented
        or (key is None and default is not None and default in _instrumented)
        or (key is not None and key is default and None in _instrumented)
    ):
        which = "the default bridge" if key is None else f"bridge {key.name!r}"
        raise ValueError(
            f"syncbridge.opentelemetry.instrument(): {which} is instrumented "
            "already; call uninstrument() on what the first instrument() "
            "returned before instrumenting it again"
        )


def _default_if_made() -> Bridge | None:
    from ._core import _bridge

    return _bridge._default  # pyright: ignore[reportPrivateUsage]


class _Metrics:
    """The instruments of one meter provider, reading the bridges instrumented on it."""

    def __init__(self, provider: metrics.MeterProvider) -> None:
        # Under _lock: the bridges reported (None: the default bridge), in order.
        self.sources: dict[Bridge | None, None] = {}
        meter = provider.get_meter(_SCOPE, __version__)
        pool_fields = (
            ("capacity", "{call}", "How many calls the pool may run at once."),
            ("busy", "{call}", "Slots taken: calls running, awaited or abandoned."),
            ("waiting", "{call}", "Calls queued for a slot."),
            ("threads", "{thread}", "Worker threads alive, busy or idle."),
            ("abandoned", "{call}", "Calls whose awaiter left while they still run."),
        )
        for field, unit, doc in pool_fields:
            meter.create_observable_up_down_counter(
                f"syncbridge.pool.{field}", [self._pool_field(field)], unit, doc
            )
        meter.create_observable_counter(
            "syncbridge.pool.wait_time",
            [self._pool_field("wait_seconds")],
            "s",
            "Seconds calls spent queued for a slot, counted as each leaves the "
            "queue; its rate is the average number of calls queued.",
        )
        meter.create_observable_counter(
            "syncbridge.pool.busy_time",
            [self._pool_field("busy_seconds")],
            "s",
            "Slot-seconds used (running calls count their time so far); its "
            "rate over capacity is the utilisation.",
        )
        meter.create_observable_counter(
            "syncbridge.pool.calls",
            [self._pool_calls],
            "{call}",
            "Blocking calls run in a pool, by how they ended for the awaiter.",
        )
        # No observable histogram in the API: each call's wait is recorded
        # by the bridge's observer (_Calls) once its awaiter is done with it.
        self.wait: metrics.Histogram = meter.create_histogram(
            "syncbridge.pool.wait",
            "s",
            "How long each call waited for a slot (those that started at once too).",
            explicit_bucket_boundaries_advisory=WAIT_BOUNDS[:-1],  # +inf is implied
        )
        meter.create_observable_counter(
            "syncbridge.portal.calls",
            [self._portal_calls],
            "{call}",
            "Coroutines run on the portal loop for sync code, by how they ended.",
        )
        meter.create_observable_up_down_counter(
            "syncbridge.portal.tasks",
            [self._portal_field("tasks")],
            "{task}",
            "Coroutines pending on the portal loop.",
        )
        meter.create_observable_gauge(
            "syncbridge.portal.lag",
            [self._portal_field("lag")],
            "s",
            "How long a callback posted to the portal loop waits before it runs.",
        )
        meter.create_observable_counter(
            "syncbridge.portal.blocks",
            [self._portal_field("blocks")],
            "{block}",
            "Times the watched portal loop was blocked longer than its threshold.",
        )
        meter.create_observable_counter(
            "syncbridge.portal.busy_time",
            [self._portal_field("busy_seconds")],
            "s",
            "Task-seconds of the coroutines sent to the portal loop (unfinished "
            "ones count their time so far).",
        )

    def _snapshots(self) -> Iterator[tuple[str, BridgeStats]]:
        with _lock:
            sources = list(self.sources)
        for source in sources:
            bridge = source if source is not None else get_bridge()
            yield bridge.name, bridge.stats()

    def _pool_field(
        self, field: str
    ) -> Callable[[metrics.CallbackOptions], Iterable[metrics.Observation]]:
        def observe(options: metrics.CallbackOptions) -> Iterable[metrics.Observation]:
            return [
                metrics.Observation(
                    getattr(pool, field), {_BRIDGE: name, _POOL: pool_name}
                )
                for name, stats in self._snapshots()
                for pool_name, pool in stats.pools.items()
            ]

        return observe

    def _portal_field(
        self, field: str
    ) -> Callable[[metrics.CallbackOptions], Iterable[metrics.Observation]]:
        def observe(options: metrics.CallbackOptions) -> Iterable[metrics.Observation]:
            return [
                metrics.Observation(getattr(stats.portal, field), {_BRIDGE: name})
                for name, stats in self._snapshots()
            ]

        return observe

    def _pool_calls(
        self, options: metrics.CallbackOptions
    ) -> Iterable[metrics.Observation]:
        found: list[metrics.Observation] = []
        for name, stats in self._snapshots():
            for pool_name, pool in stats.pools.items():
                ends = (
                    pool.completed,
                    pool.errors,
                    pool.cancellations,
                    pool.timeouts,
                    pool.rejected,
                )
                for outcome, count in zip(_POOL_OUTCOMES, ends, strict=True):
                    attributes = {_BRIDGE: name, _POOL: pool_name, _OUTCOME: outcome}
                    found.append(metrics.Observation(count, attributes))
        return found

    def _portal_calls(
        self, options: metrics.CallbackOptions
    ) -> Iterable[metrics.Observation]:
        found: list[metrics.Observation] = []
        for name, stats in self._snapshots():
            p = stats.portal
            ends = (p.completed, p.errors, p.cancellations, p.timeouts)
            for outcome, count in zip(_OUTCOMES, ends, strict=True):
                found.append(
                    metrics.Observation(count, {_BRIDGE: name, _OUTCOME: outcome})
                )
        return found


class _Calls:
    """What watches each call of one bridge (its ``CallObserver``).

    Records each pool call's wait in the ``syncbridge.pool.wait`` histogram
    and, given a tracer, makes each call a span, current while it runs.
    """

    def __init__(
        self, bridge: str, wait: metrics.Histogram, tracer: trace.Tracer | None
    ) -> None:
        self._bridge = bridge
        self._wait = wait
        self._tracer = tracer

    async def thread_call(
        self,
        entry: str,
        pool: str,
        func: Callable[..., Any] | None,
        start: Callable[[Callable[[Job], object]], Coroutine[Any, Any, Any]],
    ) -> Any:
        jobs: list[Job] = []
        tracer = self._tracer
        # Not the exception itself, which would hold this frame in a cycle.
        refused: str | None = None  # the PoolSaturated option that refused it
        if tracer is None:
            try:
                return await start(jobs.append)
            except PoolSaturated as exc:
                refused = exc.option
                raise
            finally:
                if jobs:
                    self._record_wait(jobs[0], pool, refused)
        span = _start(tracer, entry, func, {_BRIDGE: self._bridge, _POOL: pool})
        # Attached in the awaiting task's context, before the call copies it:
        # the worker's function runs under this span.
        token = otel_context.attach(trace.set_span_in_context(span))
        closed = False
        try:
            result = await start(jobs.append)
        except GeneratorExit:
            # Closed by whoever dropped the task (the garbage collector, maybe
            # in another context): its context is gone, nothing to detach.
            closed = True
            _ended(span, "cancelled")
            raise
        except BaseException as exc:
            _failed(span, exc)
            if isinstance(exc, PoolSaturated):
                refused = exc.option
                if not (jobs and jobs[0].started_at):
                    # Refused by the pool, as the stats count it; one the
                    # function raised itself (it started) stays an error.
                    _ended(span, "rejected")
            raise
        else:
            _ended(span, "completed")
            return result
        finally:
            if jobs:
                self._record_wait(jobs[0], pool, refused)
                waited = _waited(jobs[0])
                if waited is not None:
                    span.set_attribute(_WAIT, waited)
            if not closed:
                otel_context.detach(token)
            span.end()

    def portal_call(
        self, entry: str, func: Callable[..., Any] | None, start: Callable[[], Any]
    ) -> Any:
        tracer = self._tracer
        if tracer is None:
            return start()  # a portal call has no queue: no wait to record
        span = _start(tracer, entry, func, {_BRIDGE: self._bridge})
        # Current in this thread while the call's context is copied from it,
        # and while it waits (the nested calls it serves run under it too).
        token = otel_context.attach(trace.set_span_in_context(span))
        try:
            result = start()
        except BaseException as exc:
            _failed(span, exc)
            raise
        else:
            _ended(span, "completed")
            return result
        finally:
            otel_context.detach(token)
            span.end()

    def _record_wait(self, job: Job, pool: str, refused: str | None) -> None:
        """Record how long *job* waited for a slot, its awaiter being done with it.

        *refused*: the option that refused it (``max_waiting`` or
        ``max_wait``) if it raised :class:`~syncbridge.PoolSaturated`. A call
        that started waited until it
        started. One that never did, but was queued (withdrawn by a
        cancellation or timeout, refused by ``max_wait``, failed by a closing
        bridge), waited until its awaiter gave up: about when it left the
        queue, where the pool counts it. Not recorded, as the pool counts none
        of them: a call that never queued (refused by ``max_waiting``, or by a
        bridge closed as it was made), and one run by another process, whose
        start is not seen.
        """
        # Written by its worker before the wake-up; an abandoned call's may be
        # read before it is written (one float, read whole): then it counts
        # as one that left the queue unstarted, at about the same time.
        started = job.started_at
        if started:
            waited = started - job.queued_at
        elif not job.pool._sees_starts or _never_queued(job, refused):  # pyright: ignore[reportPrivateUsage]
            return
        else:
            waited = monotonic() - job.queued_at
        self._wait.record(max(0.0, waited), {_BRIDGE: self._bridge, _POOL: pool})


def _never_queued(job: Job, refused: str | None) -> bool:
    """Whether *job*, which never started, was refused before it was queued.

    *refused*: the option of the :class:`~syncbridge.PoolSaturated` it raised.
    """
    if refused is not None:
        return refused == "max_waiting"  # max_wait: it waited that long
    # Nothing but its awaiter ever had it, which neither withdrew it (that
    # sets cancel first) nor got an outcome for it (that finishes it): the
    # pool refused it as it was submitted (a bridge closing then).
    return job.state is QUEUED and job.cancel is None


def _start(
    tracer: trace.Tracer,
    entry: str,
    func: Callable[..., Any] | None,
    attributes: dict[str, str],
) -> trace.Span:
    """Start the span of a call, named "to_async fetch_user".

    A helper's own step (no *func*: its function is syncbridge's) is named
    by the helper alone: "sync_iter".
    """
    span_name = entry
    if func is not None:
        name = callable_name(func)
        module = getattr(func, "__module__", None)
        attributes[_FUNCTION] = f"{module}.{name}" if isinstance(module, str) else name
        # Named as a reader looks for it, not by the "<locals>" path of a
        # function defined in a function.
        span_name = f"{entry} {name.rpartition('<locals>.')[2]}"
    return tracer.start_span(
        span_name, kind=trace.SpanKind.INTERNAL, attributes=attributes
    )


def _ended(span: trace.Span, outcome: str) -> None:
    span.set_attribute(_OUTCOME, outcome)


def _failed(span: trace.Span, exc: BaseException) -> None:
    """Mark *span* by how *exc* ended its call: an error, a timeout or a cancellation."""
    if not isinstance(exc, Exception):
        # A cancellation (asyncio's, trio's, WorkerCancelled), Ctrl-C, exit.
        _ended(span, "cancelled")
        return
    _ended(span, "timeout" if isinstance(exc, SyncBridgeTimeout) else "error")
    span.record_exception(exc)
    span.set_status(
        trace.Status(trace.StatusCode.ERROR, f"{type(exc).__name__}: {exc}")
    )


def _waited(job: Job) -> float | None:
    """Seconds *job* was queued before it started, or None if it never started."""
    if not job.started_at:
        return None
    return max(0.0, job.started_at - job.queued_at)
