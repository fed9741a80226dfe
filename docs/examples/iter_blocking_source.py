"""How-to: stream a blocking iterator (a file, a DB cursor) into async code."""

from __future__ import annotations

import asyncio
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import syncbridge

if TYPE_CHECKING:
    from collections.abc import Iterator

step_threads: set[str] = set()
closed_on: list[str] = []


def read_records(path: Path) -> Iterator[str]:
    """A blocking generator: every next() may wait on the disk."""
    with path.open() as f:
        try:
            for line in f:
                time.sleep(0.01)  # a slow disk, a slow cursor
                step_threads.add(threading.current_thread().name)
                yield line.rstrip("\n")
        finally:
            closed_on.append(threading.current_thread().name)


async def main(path: Path) -> None:
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.005)
            ticks += 1

    tick_task = asyncio.ensure_future(ticker())
    found = None
    async with syncbridge.iterate_in_thread(read_records(path)) as records:
        async for record in records:
            if record.startswith("ERROR"):
                found = record
                break  # leaving the `async with` block closes the source
    # The generator's `finally` ran (and the file is closed) before this line.
    assert closed_on
    tick_task.cancel()

    print(f"first error: {found}")
    print(f"steps ran on {sorted(step_threads)}, closed on {closed_on[0]}")
    assert ticks > 0  # the loop was never blocked
    print("the loop kept ticking meanwhile")
    assert found == "ERROR disk full"
    assert threading.current_thread().name not in step_threads | set(closed_on)


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "app.log"
        log.write_text("INFO start\nINFO work\nERROR disk full\nINFO never read\n")
        asyncio.run(main(log))
