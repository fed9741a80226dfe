"""syncbridge.opentelemetry: metrics and spans read back through the SDK's in-memory exporters.

Also the trace context across every hop, with spans on or off: a span the
user starts in the worker function or the coroutine is a child of the span
current at the call, and never leaks into the next call on the same thread.
"""

from __future__ import annotations

import concurrent.futures
import subprocess
import sys
import threading
import time
from typing import TYPE_CHECKING, Any, Literal

import anyio
import pytest
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)

import syncbridge
import syncbridge.opentelemetry
from syncbridge import Bridge, SyncBridgeTimeout, to_async, to_sync
from syncbridge._stats import WAIT_BOUNDS

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

WAIT = 10.0

Points = dict[tuple[str, tuple[tuple[str, Any], ...]], Any]
"""Each data point's value (a histogram's: its ``HistogramDataPoint``)."""


class Traces:
    """A tracer provider whose finished spans are kept in memory."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tracer = self.provider.get_tracer("app")

    def spans(self) -> dict[str, ReadableSpan]:
        """The finished spans by name (of two with one name, the last finished)."""
        return {span.name: span for span in self.exporter.get_finished_spans()}

    def parent(self, name: str) -> str | None:
        """The name of the parent of the finished span *name* (None: a root)."""
        spans = self.spans()
        parent = spans[name].parent
        if parent is None:
            return None
        for span in spans.values():
            assert span.context is not None
            if span.context.span_id == parent.span_id:
                return span.name
        raise AssertionError(f"{name}'s parent is not among {list(spans)}")


@pytest.fixture
def traces() -> Traces:
    return Traces()


class Reader(InMemoryMetricReader):
    """An in-memory reader, with the meter provider it reads."""

    provider: MeterProvider


@pytest.fixture
def reader() -> Iterator[Reader]:
    reader = Reader()
    reader.provider = MeterProvider(metric_readers=[reader])
    yield reader
    reader.provider.shutdown()


def meter_provider(reader: Reader) -> MeterProvider:
    return reader.provider


def collect(reader: InMemoryMetricReader) -> tuple[Points, dict[str, str]]:
    """Each data point by metric name and sorted attributes; each metric's unit."""
    points: Points = {}
    units: dict[str, str] = {}
    data = reader.get_metrics_data()
    for resource in data.resource_metrics if data is not None else ():
        for scope in resource.scope_metrics:
            assert scope.scope.name == "syncbridge"
            for metric in scope.metrics:
                units[metric.name] = metric.unit or ""
                for point in metric.data.data_points:
                    key = tuple(sorted((point.attributes or {}).items()))
                    if isinstance(point, HistogramDataPoint):
                        points[metric.name, key] = point
                    else:
                        points[metric.name, key] = point.value  # type: ignore[union-attr]
    return points, units


# -- metrics ------------------------------------------------------------------------


@pytest.mark.anyio
async def test_metrics_report_the_bridges_state_with_otel_names_and_units(
    reader: Reader,
) -> None:
    release = threading.Event()
    async with Bridge(max_workers=2, pools={"db": 3}, name="app") as b:
        with syncbridge.opentelemetry.instrument(
            b, meter_provider=meter_provider(reader)
        ):

            def fail() -> None:
                raise ValueError("boom")

            await b.run_blocking(lambda: None)
            with pytest.raises(ValueError, match="boom"):
                await b.run_blocking(fail)
            with pytest.raises(SyncBridgeTimeout):
                await to_async(release.wait, timeout=0, bridge=b)(WAIT)
            async with anyio.create_task_group() as tg:
                for _ in range(3):
                    tg.start_soon(b.run_blocking, release.wait, WAIT)
                with anyio.fail_after(WAIT):
                    while b.stats().pools["default"].waiting < 1:
                        await anyio.sleep(0.005)
                got, units = collect(reader)
                release.set()

    def pool(metric: str, name: str = "default") -> float:
        attributes = (("syncbridge.bridge", "app"), ("syncbridge.pool", name))
        return float(got[f"syncbridge.pool.{metric}", attributes])

    assert pool("capacity") == 2
    assert pool("capacity", "db") == 3
    assert pool("busy") == 2
    assert pool("waiting") == 1
    assert pool("threads") == 2
    assert pool("abandoned") == 0

    def calls(outcome: str) -> float:
        attributes = (
            ("syncbridge.bridge", "app"),
            ("syncbridge.outcome", outcome),
            ("syncbridge.pool", "default"),
        )
        return float(got["syncbridge.pool.calls", attributes])

    outcomes = ("completed", "error", "cancelled", "timeout", "rejected")
    assert [calls(o) for o in outcomes] == [1, 1, 0, 1, 0]
    app = (("syncbridge.bridge", "app"),)
    assert got["syncbridge.portal.tasks", app] == 0
    assert got["syncbridge.portal.lag", app] == 0
    assert got["syncbridge.portal.blocks", app] == 0
    completed = (*app, ("syncbridge.outcome", "completed"))
    assert got["syncbridge.portal.calls", completed] == 0
    assert units == {
        "syncbridge.pool.capacity": "{call}",
        "syncbridge.pool.busy": "{call}",
        "syncbridge.pool.waiting": "{call}",
        "syncbridge.pool.threads": "{thread}",
        "syncbridge.pool.abandoned": "{call}",
        "syncbridge.pool.calls": "{call}",
        "syncbridge.pool.wait_time": "s",
        "syncbridge.pool.busy_time": "s",
        "syncbridge.pool.wait": "s",
        "syncbridge.portal.calls": "{call}",
        "syncbridge.portal.busy_time": "s",
        "syncbridge.portal.tasks": "{task}",
        "syncbridge.portal.lag": "s",
        "syncbridge.portal.blocks": "{block}",
    }


async def _until(condition: Callable[[], bool]) -> float:
    """Poll *condition* (a pool's state, which has no event) until true; then when."""
    with anyio.fail_after(WAIT):
        while not condition():
            await anyio.sleep(0.002)
    return time.monotonic()


def _pool(name: str) -> tuple[tuple[str, Any], ...]:
    return (("syncbridge.bridge", "waits"), ("syncbridge.pool", name))


@pytest.mark.parametrize("spans", [False, True], ids=["metrics", "metrics+spans"])
@pytest.mark.anyio
async def test_a_queued_calls_wait_and_the_slots_busy_time_are_counted_and_histogrammed(
    reader: Reader, traces: Traces, spans: bool
) -> None:
    """Pool "db" has one slot: the second call waits for the first to return."""
    release = threading.Event()
    async with Bridge(name="waits", pools={"db": 1}) as b:
        with syncbridge.opentelemetry.instrument(
            b,
            meter_provider=meter_provider(reader),
            tracer_provider=traces.provider if spans else None,
        ):
            call = to_async(release.wait, pool="db", bridge=b)
            async with anyio.create_task_group() as tg:
                tg.start_soon(call, WAIT)
                taken = await _until(lambda: b.stats().pools["db"].busy == 1)
                tg.start_soon(call, WAIT)
                queued = await _until(lambda: b.stats().pools["db"].waiting == 1)
                await anyio.sleep(0.05)  # the wait measured, not a synchronisation
                released = time.monotonic()
                release.set()
            got, _ = collect(reader)
    # The second call was queued before `queued` and started after `released`.
    waited = released - queued
    assert waited >= 0.05
    assert got["syncbridge.pool.wait_time", _pool("db")] >= waited
    assert got["syncbridge.pool.busy_time", _pool("db")] >= released - taken
    histogram = got["syncbridge.pool.wait", _pool("db")]
    assert histogram.count == 2  # the first call, which started at once, too
    assert histogram.sum >= waited
    assert histogram.max >= waited
    assert histogram.explicit_bounds == WAIT_BOUNDS[:-1]
    assert sum(histogram.bucket_counts) == 2
    # Only the pool called has a histogram point.
    assert ("syncbridge.pool.wait", _pool("default")) not in got


@pytest.mark.anyio
async def test_refused_calls_are_an_outcome_and_only_queued_ones_have_a_wait(
    reader: Reader,
) -> None:
    """A call refused by max_waiting never queued; one refused by max_wait did."""
    release = threading.Event()
    async with Bridge(name="waits") as b:
        b.add_pool("full", 1, max_waiting=0)
        b.add_pool("patient", 1, max_wait=0.05)
        b.add_pool("left", 1)
        with syncbridge.opentelemetry.instrument(
            b, meter_provider=meter_provider(reader)
        ):
            async with anyio.create_task_group() as tg:
                for pool in ("full", "patient", "left"):
                    tg.start_soon(to_async(release.wait, pool=pool, bridge=b), WAIT)
                    await _until(lambda pool=pool: b.stats().pools[pool].busy == 1)  # type: ignore[misc]
                with pytest.raises(syncbridge.PoolSaturated, match="max_waiting=0"):
                    await to_async(release.wait, pool="full", bridge=b)(WAIT)
                with pytest.raises(syncbridge.PoolSaturated, match=r"max_wait=0\.05"):
                    await to_async(release.wait, pool="patient", bridge=b)(WAIT)
                with anyio.CancelScope() as scope:
                    tg.start_soon(
                        _cancel_when_queued, b, scope, name="cancels the queued call"
                    )
                    await to_async(release.wait, pool="left", bridge=b)(WAIT)
                assert scope.cancelled_caught
                release.set()
            got, _ = collect(reader)

    def rejected(pool: str) -> float:
        key = (*_pool(pool), ("syncbridge.outcome", "rejected"))
        return float(got["syncbridge.pool.calls", tuple(sorted(key))])

    assert [rejected(pool) for pool in ("full", "patient", "left")] == [1, 1, 0]
    # "full": the first call only; the refused one never queued.
    assert got["syncbridge.pool.wait", _pool("full")].count == 1
    # "patient": the refused call waited its max_wait, as the pool counts it.
    patient = got["syncbridge.pool.wait", _pool("patient")]
    assert patient.count == 2
    assert patient.max >= 0.05
    assert got["syncbridge.pool.wait_time", _pool("patient")] >= 0.05
    # "left": the call cancelled while queued waited until it was withdrawn.
    left = got["syncbridge.pool.wait", _pool("left")]
    assert left.count == 2
    assert left.max > 0


async def _cancel_when_queued(b: Bridge, scope: anyio.CancelScope) -> None:
    await _until(lambda: b.stats().pools["left"].waiting == 1)
    scope.cancel()


def test_the_portals_busy_time_counts_its_calls(reader: Reader) -> None:
    with (
        Bridge(name="portal") as b,
        syncbridge.opentelemetry.instrument(b, meter_provider=meter_provider(reader)),
    ):
        before = time.monotonic()
        b.sync_call_async(anyio.sleep, 0.02)
        took = time.monotonic() - before
        got, _ = collect(reader)
    busy = got["syncbridge.portal.busy_time", (("syncbridge.bridge", "portal"),)]
    assert 0.02 <= busy <= took


def test_portal_calls_are_counted_by_outcome(reader: Reader) -> None:
    async def fail() -> None:
        raise ValueError("boom")

    with (
        Bridge(name="portal") as b,
        syncbridge.opentelemetry.instrument(b, meter_provider=meter_provider(reader)),
    ):

        async def seven() -> int:
            return 7

        assert b.sync_call_async(seven) == 7
        with pytest.raises(ValueError, match="boom"):
            b.sync_call_async(fail)
        got, _ = collect(reader)
    for outcome, count in (("completed", 1), ("error", 1), ("timeout", 0)):
        key = (("syncbridge.bridge", "portal"), ("syncbridge.outcome", outcome))
        assert got["syncbridge.portal.calls", key] == count


def test_without_bridges_the_default_bridge_is_reported(
    reader: Reader,
) -> None:
    with syncbridge.opentelemetry.instrument(meter_provider=meter_provider(reader)):
        got, _ = collect(reader)
    name = syncbridge.get_bridge().name
    key = (("syncbridge.bridge", name), ("syncbridge.pool", "default"))
    assert ("syncbridge.pool.capacity", key) in got


def test_several_bridges_are_told_apart_by_attribute(
    reader: Reader,
) -> None:
    with (
        Bridge(name="a", max_workers=2) as a,
        Bridge(name="b", max_workers=3) as b,
        syncbridge.opentelemetry.instrument(
            a, b, meter_provider=meter_provider(reader)
        ),
    ):
        got, _ = collect(reader)
    for name, capacity in (("a", 2), ("b", 3)):
        key = (("syncbridge.bridge", name), ("syncbridge.pool", "default"))
        assert got["syncbridge.pool.capacity", key] == capacity


def test_uninstrumented_bridges_report_nothing_and_may_be_instrumented_again(
    reader: Reader, traces: Traces
) -> None:
    provider = meter_provider(reader)
    with Bridge(name="again") as b:
        first = syncbridge.opentelemetry.instrument(
            b, meter_provider=provider, tracer_provider=traces.provider
        )
        with pytest.raises(
            ValueError, match=r"call uninstrument\(\) on what the first"
        ):
            syncbridge.opentelemetry.instrument(b, meter_provider=provider)
        first.uninstrument()
        first.uninstrument()  # idempotent
        got, _ = collect(reader)
        assert not any(name.startswith("syncbridge.") for name, _ in got)
        b.sync_call_async(anyio.sleep, 0)
        assert traces.spans() == {}
        # The same provider again: its instruments are reused, and report.
        with syncbridge.opentelemetry.instrument(b, meter_provider=provider):
            got, _ = collect(reader)
    key = (("syncbridge.bridge", "again"), ("syncbridge.pool", "default"))
    assert got["syncbridge.pool.capacity", key] == 40


def test_the_default_bridge_instrumented_twice_is_refused(
    reader: Reader,
) -> None:
    provider = meter_provider(reader)
    with syncbridge.opentelemetry.instrument(meter_provider=provider):
        with pytest.raises(ValueError, match="the default bridge is instrumented"):
            syncbridge.opentelemetry.instrument(meter_provider=provider)
        with pytest.raises(ValueError, match="'default' is instrumented already"):
            syncbridge.opentelemetry.instrument(
                syncbridge.get_bridge(), meter_provider=provider
            )


def test_instrument_refuses_what_it_cannot_use() -> None:
    with pytest.raises(TypeError, match=r"instrument\(\*bridges\) must be a"):
        syncbridge.opentelemetry.instrument("default")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"meter_provider=\.\.\.\) must be an"):
        syncbridge.opentelemetry.instrument(meter_provider=object())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"tracer_provider=\.\.\.\) must be an"):
        syncbridge.opentelemetry.instrument(tracer_provider=object())  # type: ignore[arg-type]
    with (
        Bridge(name="same") as a,
        Bridge(name="same") as b,
        pytest.raises(ValueError, match=r"name them apart with Bridge\(name=\.\.\.\)"),
    ):
        syncbridge.opentelemetry.instrument(a, b)


def test_import_syncbridge_does_not_import_opentelemetry() -> None:
    code = (
        "import sys, syncbridge, syncbridge.prometheus; "
        "assert not [m for m in sys.modules if m.startswith('opentelemetry')]"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=30)


# -- spans --------------------------------------------------------------------------


@pytest.fixture
def spanned(traces: Traces) -> Iterator[Bridge]:
    """A bridge with a pool "db" whose calls are spans of *traces*."""
    with (
        Bridge(name="traced", pools={"db": 1}) as b,
        syncbridge.opentelemetry.instrument(b, tracer_provider=traces.provider),
    ):
        yield b


@pytest.mark.anyio
async def test_a_blocking_call_is_a_span_under_the_callers_and_over_the_functions(
    traces: Traces, spanned: Bridge
) -> None:
    def work() -> int:
        with traces.tracer.start_as_current_span("in the worker"):
            return 1

    with traces.tracer.start_as_current_span("request"):
        assert await spanned.run_blocking(work) == 1
        assert await to_async(work, pool="db", bridge=spanned)() == 1
    spans = traces.spans()
    assert set(spans) == {
        "request",
        "run_blocking work",
        "to_async work",
        "in the worker",
    }
    assert traces.parent("run_blocking work") == "request"
    assert traces.parent("to_async work") == "request"
    # Two "in the worker" spans: the last one kept is to_async's child.
    assert traces.parent("in the worker") == "to_async work"
    attributes = dict(spans["to_async work"].attributes or {})
    waited = attributes.pop("syncbridge.wait")
    assert isinstance(waited, float)
    assert waited >= 0.0
    assert attributes == {
        "syncbridge.bridge": "traced",
        "syncbridge.pool": "db",
        "syncbridge.outcome": "completed",
        "code.function.name": (
            "test_opentelemetry.test_a_blocking_call_is_a_span_under_the_callers_and"
            "_over_the_functions.<locals>.work"
        ),
    }
    assert spans["run_blocking work"].attributes["syncbridge.pool"] == "default"  # type: ignore[index]
    assert spans["run_blocking work"].kind is trace.SpanKind.INTERNAL


@pytest.mark.anyio
async def test_an_error_timeout_or_cancellation_ends_the_span_so(
    traces: Traces, spanned: Bridge
) -> None:
    release = threading.Event()

    def fail() -> None:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        await spanned.run_blocking(fail)
    with pytest.raises(SyncBridgeTimeout):
        await to_async(release.wait, timeout=0.01, bridge=spanned)(WAIT)
    with anyio.move_on_after(0.01):
        await to_async(release.wait, pool="db", bridge=spanned)(WAIT)
    release.set()
    spans = traces.spans()
    error = spans["run_blocking fail"]
    assert error.attributes["syncbridge.outcome"] == "error"  # type: ignore[index]
    assert error.status.status_code is trace.StatusCode.ERROR
    assert error.status.description == "ValueError: boom"
    [event] = error.events
    assert event.name == "exception"
    assert event.attributes["exception.type"] == "ValueError"  # type: ignore[index]
    waits = {
        span.attributes["syncbridge.outcome"]: span  # type: ignore[index]
        for span in traces.exporter.get_finished_spans()
        if span.name == "to_async Event.wait"
    }
    assert set(waits) == {"timeout", "cancelled"}
    assert waits["timeout"].status.status_code is trace.StatusCode.ERROR
    assert waits["timeout"].events[0].attributes["exception.type"] == (  # type: ignore[index]
        "syncbridge.SyncBridgeTimeout"
    )
    # A cancellation is no error of the call's: recorded as its outcome only.
    assert waits["cancelled"].status.status_code is trace.StatusCode.UNSET
    assert waits["cancelled"].events == ()


def test_a_sync_to_async_call_is_a_span_under_the_callers_and_over_the_coroutines(
    traces: Traces, spanned: Bridge
) -> None:
    async def fetch() -> int:
        with traces.tracer.start_as_current_span("in the coroutine"):
            return 1

    async def fail() -> None:
        raise ValueError("boom")

    with traces.tracer.start_as_current_span("job"):
        assert spanned.sync_call_async(fetch) == 1
    assert traces.parent("sync_call_async " + _name(fetch)) == "job"
    assert traces.parent("in the coroutine") == "sync_call_async " + _name(fetch)
    traces.exporter.clear()
    with traces.tracer.start_as_current_span("job"):
        assert to_sync(fetch, timeout=WAIT, bridge=spanned)() == 1
        with pytest.raises(ValueError, match="boom"):
            to_sync(fail, bridge=spanned)()
    assert traces.parent("to_sync " + _name(fetch)) == "job"
    assert traces.parent("in the coroutine") == "to_sync " + _name(fetch)
    failed = traces.spans()["to_sync " + _name(fail)]
    assert failed.status.status_code is trace.StatusCode.ERROR
    assert failed.attributes == {
        "syncbridge.bridge": "traced",
        "syncbridge.outcome": "error",
        "code.function.name": "test_opentelemetry."
        + syncbridge._exceptions.callable_name(fail),
    }


@pytest.mark.anyio
async def test_a_nested_call_back_to_the_callers_loop_is_a_span_in_the_chain(
    traces: Traces, spanned: Bridge
) -> None:
    async def fetch() -> int:
        with traces.tracer.start_as_current_span("in the coroutine"):
            return 1

    def work() -> int:
        return spanned.sync_call_async(fetch)

    with traces.tracer.start_as_current_span("request"):
        assert await spanned.run_blocking(work) == 1
    assert traces.parent("in the coroutine") == "sync_call_async " + _name(fetch)
    assert traces.parent("sync_call_async " + _name(fetch)) == "run_blocking " + _name(
        work
    )
    assert traces.parent("run_blocking " + _name(work)) == "request"


@pytest.mark.anyio
async def test_the_helpers_own_steps_are_named_by_the_helper(traces: Traces) -> None:
    """An iterator's items are calls of syncbridge's functions: named by the helper."""
    with syncbridge.opentelemetry.instrument(tracer_provider=traces.provider):
        async with syncbridge.iterate_in_thread(iter([1, 2])) as items:
            assert [item async for item in items] == [1, 2]
    names = [span.name for span in traces.exporter.get_finished_spans()]
    assert set(names) == {"iterate_in_thread"}
    assert len(names) == 3  # two items, then the end
    assert all(
        "code.function.name" not in (span.attributes or {})
        for span in traces.exporter.get_finished_spans()
    )


def test_the_default_bridge_gets_spans_without_being_named(traces: Traces) -> None:
    async def fetch() -> int:
        return 1

    with syncbridge.opentelemetry.instrument(tracer_provider=traces.provider):
        assert syncbridge.sync_call_async(fetch) == 1
    assert syncbridge.sync_call_async(fetch) == 1  # uninstrumented: no span
    [span] = traces.exporter.get_finished_spans()
    assert span.name == "sync_call_async " + _name(fetch)
    assert span.attributes["syncbridge.bridge"] == "default"  # type: ignore[index]


@pytest.mark.anyio
async def test_the_span_of_a_queued_call_carries_how_long_it_waited(
    traces: Traces, spanned: Bridge
) -> None:
    """Pool "db" has one slot: the second call waits for the first to return."""
    release = threading.Event()

    def first() -> None:
        release.wait(30)

    def second() -> None:
        pass

    async with anyio.create_task_group() as tg:
        tg.start_soon(to_async(first, pool="db", bridge=spanned))
        while spanned.stats().pools["db"].busy < 1:
            await anyio.sleep(0.005)  # until the first call holds the slot
        tg.start_soon(to_async(second, pool="db", bridge=spanned))
        while spanned.stats().pools["db"].waiting < 1:
            await anyio.sleep(0.005)  # until the second call is queued
        queued_by = time.monotonic()
        await anyio.sleep(0.05)
        held = time.monotonic() - queued_by
        release.set()
    spans = traces.spans()
    assert spans["to_async second"].attributes["syncbridge.wait"] >= held  # type: ignore[index,operator]
    assert spans["to_async first"].attributes["syncbridge.wait"] < held  # type: ignore[index,operator]


def _name(func: object) -> str:
    """How a span names *func*: the name the function was defined with."""
    return func.__name__  # type: ignore[attr-defined, no-any-return]


# -- the trace context across every hop, spans on or off ---------------------------


@pytest.fixture(params=["plain", "spans"])
def hop_bridge(request: pytest.FixtureRequest, traces: Traces) -> Iterator[Bridge]:
    """A one-worker bridge, as it is (plain) or with spans on."""
    with Bridge(name="hops", max_workers=1) as b:
        if request.param == "spans":
            with syncbridge.opentelemetry.instrument(
                b, tracer_provider=traces.provider
            ):
                yield b
        else:
            yield b


def _current() -> trace.SpanContext:
    return trace.get_current_span().get_span_context()


def _outer_trace(span: trace.SpanContext, outer: trace.Span) -> bool:
    """Whether *span* is in *outer*'s trace (a descendant of it)."""
    return span.trace_id == outer.get_span_context().trace_id


@pytest.mark.anyio
async def test_the_worker_function_runs_under_the_callers_span_and_leaks_nothing(
    traces: Traces, hop_bridge: Bridge
) -> None:
    def inside() -> trace.SpanContext:
        with traces.tracer.start_as_current_span("user") as user:
            return user.get_span_context()

    with traces.tracer.start_as_current_span("request") as request:
        await hop_bridge.run_blocking(inside)
    user = traces.spans()["user"]
    assert user.context is not None
    assert user.context.trace_id == request.get_span_context().trace_id
    assert traces.parent("user") in ("request", "run_blocking " + _name(inside))
    # The same (only) worker thread, next call: the request's span is gone
    # (with spans on, that call's own span is current).
    assert not _outer_trace(await hop_bridge.run_blocking(_current), request)


@pytest.mark.anyio
async def test_an_in_process_executor_runs_under_the_callers_span(
    traces: Traces, hop_bridge: Bridge
) -> None:
    with concurrent.futures.ThreadPoolExecutor(1) as ex:
        call = to_async(_current, executor=ex, bridge=hop_bridge)
        with traces.tracer.start_as_current_span("request") as request:
            seen = await call()
        assert _outer_trace(seen, request)
        assert not _outer_trace(await call(), request)


@pytest.mark.parametrize("spans", [False, True], ids=["plain", "spans"])
@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_the_coroutine_runs_under_the_callers_span_on_the_portal(
    traces: Traces, backend: Literal["asyncio", "trio"], spans: bool
) -> None:
    async def inside() -> trace.SpanContext:
        await anyio.sleep(0)
        return _current()

    with (
        Bridge(name="portal-hops", backend=backend) as b,
        syncbridge.opentelemetry.instrument(
            b, tracer_provider=traces.provider if spans else None
        ),
    ):
        with traces.tracer.start_as_current_span("job") as job:
            seen = b.sync_call_async(inside)
        assert _outer_trace(seen, job)
        if spans:
            assert traces.parent("sync_call_async inside") == "job"
        else:
            assert seen.span_id == job.get_span_context().span_id
        # The portal loop's next call (on trio, the same parked host task)
        # sees nothing of the last one's.
        assert not _outer_trace(b.sync_call_async(inside), job)


@pytest.mark.anyio
async def test_a_nested_call_back_to_the_callers_loop_runs_under_the_callers_span(
    traces: Traces, hop_bridge: Bridge
) -> None:
    async def inside() -> trace.SpanContext:
        return _current()

    def work() -> trace.SpanContext:
        return hop_bridge.sync_call_async(inside)

    with traces.tracer.start_as_current_span("request") as request:
        seen = await hop_bridge.run_blocking(work)
    assert _outer_trace(seen, request)
    # The loop's task and the worker serve the next call with no span current.
    assert not _outer_trace(await hop_bridge.run_blocking(work), request)
