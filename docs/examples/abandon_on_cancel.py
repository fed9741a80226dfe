"""How-to: choose between abandoning a worker thread and waiting for it."""

from __future__ import annotations

import asyncio
import time

import syncbridge

log: list[str] = []


def write_file(tag: str) -> None:
    time.sleep(0.2)  # cannot be interrupted
    log.append(f"{tag}: written")


abandoning = syncbridge.to_async(write_file)  # the default: abandon_on_cancel=True
waiting = syncbridge.to_async(write_file, abandon_on_cancel=False)


async def cancel_soon(call: asyncio.Task[None], tag: str) -> None:
    await asyncio.sleep(0.05)
    call.cancel()
    try:
        await call
    except asyncio.CancelledError:
        log.append(f"{tag}: cancellation arrived")


async def main() -> None:
    await cancel_soon(asyncio.create_task(abandoning("abandon")), "abandon")
    await cancel_soon(asyncio.create_task(waiting("wait")), "wait")
    await asyncio.sleep(0.3)  # let the abandoned thread finish too
    for line in log:
        print(line)
    # Abandoned: the await ended at once; the thread finished later on its own.
    assert log.index("abandon: cancellation arrived") < log.index("abandon: written")
    # Waited: the cancellation propagated only after the thread returned.
    assert log.index("wait: written") < log.index("wait: cancellation arrived")


if __name__ == "__main__":
    asyncio.run(main())
