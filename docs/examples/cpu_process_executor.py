"""How-to: CPU-bound work in worker processes, with a timeout that ends the process."""

from __future__ import annotations

import asyncio
import os
import time

import syncbridge


def crunch(n: int) -> int:
    """Pure-Python CPU work: it holds the GIL, so threads would take turns."""
    total = 0
    for i in range(n):
        total = (total + i * i) % 1_000_003
    return total


def stuck() -> None:
    """A job that never returns by itself."""
    time.sleep(3600)


async def main() -> None:
    # One process per CPU; the executor is yours: the `with` block shuts it down.
    with syncbridge.ProcessExecutor(max_workers=os.cpu_count()) as cpu:
        results = await asyncio.gather(
            *(syncbridge.to_async(crunch, executor=cpu)(200_000) for _ in range(4))
        )
        print(f"4 jobs in {cpu.max_workers} processes: {results}")

        # A timeout ends the process running the job: its slot is free at once.
        try:
            await syncbridge.to_async(stuck, executor=cpu, timeout=0.5)()
        except syncbridge.SyncBridgeTimeout as exc:
            print(f"stopped: {exc}")
        print(
            "the pool carries on:", await syncbridge.to_async(crunch, executor=cpu)(10)
        )


if __name__ == "__main__":  # required: worker processes import this module
    asyncio.run(main())
