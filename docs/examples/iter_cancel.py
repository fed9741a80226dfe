"""How-to: a timeout around iterate_in_thread, and why check_cancelled() matters."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import syncbridge

if TYPE_CHECKING:
    from collections.abc import Iterator

closed: list[str] = []


def poll_sensor(name: str, cooperative: bool) -> Iterator[float]:
    """A blocking source whose next() can take long: it polls until data arrives."""
    try:
        yield 20.0
        for _ in range(100):  # no data for 1 s
            if cooperative:
                syncbridge.check_cancelled()  # raises once the step was cancelled
            time.sleep(0.01)
        yield 21.0
    finally:
        closed.append(name)


async def read_with_timeout(name: str, cooperative: bool) -> float:
    started = time.monotonic()
    readings: list[float] = []

    async def consume() -> None:
        async for value in syncbridge.iterate_in_thread(poll_sensor(name, cooperative)):
            print(f"{name}: read {value}")
            readings.append(value)

    try:
        await asyncio.wait_for(consume(), timeout=0.1)
    except TimeoutError:
        pass
    assert readings == [20.0]
    assert name in closed  # the source was closed before the timeout propagated
    return time.monotonic() - started


async def main() -> None:
    # A running next() cannot be interrupted: the timeout waits for it to return.
    waited = await read_with_timeout("plain", cooperative=False)
    print(f"without check_cancelled(): timed out after {waited:.2f} s")
    assert waited >= 0.9

    # check_cancelled() inside the source lets the step stop soon after the timeout.
    waited = await read_with_timeout("cooperative", cooperative=True)
    print(f"with check_cancelled():    timed out after {waited:.2f} s")
    assert waited < 0.5


if __name__ == "__main__":
    asyncio.run(main())
