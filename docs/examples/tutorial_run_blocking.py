"""Tutorial, step 1: await blocking calls from an asyncio app without blocking it."""

from __future__ import annotations

import asyncio
import time

import syncbridge


def load_report(day: int) -> str:
    """A blocking function: a slow file read, a database driver, an SDK call."""
    time.sleep(0.2)
    return f"report for day {day}"


async def main() -> None:
    started = time.perf_counter()
    # Ten blocking calls, each in a worker thread; the event loop stays free.
    reports = await asyncio.gather(
        *(syncbridge.run_blocking(load_report, day) for day in range(10))
    )
    elapsed = time.perf_counter() - started
    print(f"{len(reports)} reports in {elapsed:.2f} s")  # about 0.2 s, not 2 s
    assert reports[3] == "report for day 3"


if __name__ == "__main__":
    asyncio.run(main())
