"""Type tests for syncbridge.opentelemetry (checked by mypy and pyright, never run)."""

from __future__ import annotations

from typing import assert_type

from opentelemetry import metrics, trace

import syncbridge
from syncbridge.opentelemetry import Instrumentation, instrument


def check(
    meter_provider: metrics.MeterProvider, tracer_provider: trace.TracerProvider
) -> None:
    bridge = syncbridge.Bridge()
    assert_type(instrument(), Instrumentation)
    assert_type(
        instrument(
            bridge,
            syncbridge.get_bridge(),
            meter_provider=meter_provider,
            tracer_provider=tracer_provider,
        ),
        Instrumentation,
    )
    with instrument(tracer_provider=trace.get_tracer_provider()) as handle:
        assert_type(handle, Instrumentation)
    handle.uninstrument()
    instrument("default")  # type: ignore[arg-type]
    instrument(meter_provider=tracer_provider)  # type: ignore[arg-type]
    instrument(tracer_provider=meter_provider)  # type: ignore[arg-type]
    instrument(bridge, name="x")  # type: ignore[call-arg]
