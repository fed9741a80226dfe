"""How-to: decorate CPU-bound functions for a named pool on worker processes."""

from __future__ import annotations

import asyncio
import os

import syncbridge


@syncbridge.to_async(pool="cpu")  # the pool is looked up at each call
def render(report_id: int) -> tuple[int, int]:
    """CPU-bound: runs in a worker process of the "cpu" pool."""
    return report_id, os.getpid()


async def main() -> None:
    # Made here, not at import time: each worker process imports this module.
    with syncbridge.ProcessExecutor(max_workers=2) as cpu:
        syncbridge.get_bridge().add_pool("cpu", executor=cpu)
        rendered = await asyncio.gather(*(render(i) for i in range(4)))
        assert all(pid != os.getpid() for _, pid in rendered)
        print(f"rendered {[i for i, _ in rendered]} in worker processes")
        print(syncbridge.get_bridge().stats().pools["cpu"])


if __name__ == "__main__":
    asyncio.run(main())
