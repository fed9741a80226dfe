"""How-to: a deadline on blocking work, and stopping that work once nobody waits."""

from __future__ import annotations

import asyncio
import threading
import time

import syncbridge

stopped = threading.Event()


@syncbridge.to_async(timeout=0.2)
def crunch(rows: int) -> int:
    """Long blocking work that checks now and then whether it is still wanted."""
    total = 0
    try:
        for row in range(rows):
            syncbridge.check_cancelled()  # raises WorkerCancelled once abandoned
            time.sleep(0.01)
            total += row
    except syncbridge.WorkerCancelled:
        stopped.set()  # your cleanup goes here
        raise  # then let it propagate
    return total


async def main() -> None:
    print(await crunch(5))  # well within the deadline: 0+1+2+3+4
    try:
        await crunch(1_000)  # would take 10 s
    except TimeoutError:
        print("gave up after 0.2 s")
    # The worker thread notices at its next check_cancelled() and stops.
    assert stopped.wait(timeout=2.0)
    print("the worker thread stopped too")


if __name__ == "__main__":
    asyncio.run(main())
