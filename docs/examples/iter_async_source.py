"""How-to: stream an async generator into sync code (a Flask view, a script)."""

from __future__ import annotations

import asyncio
import threading
from typing import TYPE_CHECKING

import syncbridge

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

events: list[str] = []


async def fetch_rows(query: str) -> AsyncIterator[str]:
    """Stands in for an async DB driver's cursor: open, stream rows, close."""
    events.append(f"open on {threading.current_thread().name}")
    try:
        for i in range(1, 1000):
            await asyncio.sleep(0.001)
            yield f"{query} row {i}"
    finally:
        await asyncio.sleep(0)  # async cleanup: release the connection
        events.append(f"closed on {threading.current_thread().name}")


def first_rows(n: int) -> Iterator[str]:
    """A sync generator, like a streaming Flask response body."""
    for row in syncbridge.sync_iter(fetch_rows("SELECT")):
        yield row
        n -= 1
        if n == 0:
            break  # drops the iterator: the async generator is closed on its loop


def main() -> None:
    rows = list(first_rows(3))
    print(rows)
    print(events)
    assert rows == ["SELECT row 1", "SELECT row 2", "SELECT row 3"]
    # From a plain thread, every step and the cleanup ran on the portal loop.
    assert events == [
        "open on syncbridge-portal-default",
        "closed on syncbridge-portal-default",  # at the `break`, not later
    ]

    # Holding the iterator in a name? Close it at a known point with `with`.
    with syncbridge.sync_iter(fetch_rows("UPDATE")) as rows_iter:
        assert next(rows_iter) == "UPDATE row 1"
    assert events[-1] == "closed on syncbridge-portal-default"


if __name__ == "__main__":
    main()
