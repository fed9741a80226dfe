"""How-to: a scheduled job that stays in a thread, stopped by a cooperative deadline."""

from __future__ import annotations

import itertools
import threading
import time
from typing import TYPE_CHECKING

import syncbridge

if TYPE_CHECKING:
    from collections.abc import Iterable

# The default bridge has only its built-in pools: add the job's pool once, at
# startup. Two slots, so a run that has not stopped yet leaves room for the next.
syncbridge.get_bridge().add_pool("jobs", 2)
stopped = threading.Event()  # set by a run that its deadline stopped


def recognize(item: int) -> None:
    time.sleep(0.01)  # the work on one item


@syncbridge.to_sync
@syncbridge.to_async(timeout=1.0, pool="jobs")
def recognize_queue(items: Iterable[int]) -> int:
    done = 0
    try:
        for item in items:
            syncbridge.check_cancelled()  # raises once the deadline has passed
            recognize(item)
            done += 1
    except syncbridge.WorkerCancelled:
        stopped.set()
        raise
    return done


def main() -> None:
    print(f"run 0 done: {recognize_queue(range(3))} items")
    try:
        recognize_queue(itertools.count())  # never ends by itself
    except syncbridge.SyncBridgeTimeout:
        print("run 1 took too long: SyncBridgeTimeout")
    # Its thread stops at its next check_cancelled(), within one item.
    if stopped.wait(timeout=10):
        print("run 1 stopped in its thread: WorkerCancelled at check_cancelled()")


if __name__ == "__main__":
    main()
