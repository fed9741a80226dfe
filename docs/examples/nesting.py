"""Explanation: sync -> async -> sync nesting deeper than the worker capacity."""

from __future__ import annotations

import asyncio

import syncbridge

bridge = syncbridge.Bridge(max_workers=2, name="nest")


async def descend(depth: int) -> int:
    if depth == 0:
        return 0
    # async -> sync: takes a worker slot of the bridge's default pool...
    return await bridge.run_blocking(climb, depth)


def climb(depth: int) -> int:
    # ...and sync -> async from that worker: back on the same loop (rule 1).
    return 1 + bridge.sync_call_async(descend, depth - 1)


def main() -> None:
    # 10 levels deep with 2 slots: a worker blocked in sync_call_async runs the
    # nested blocking call itself, so nesting never waits for a free slot.
    with bridge:
        assert asyncio.run(asyncio.wait_for(descend(10), timeout=5)) == 10
    print("10 levels of nesting with max_workers=2: no deadlock")


if __name__ == "__main__":
    main()
