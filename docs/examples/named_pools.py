"""How-to: a named pool (bulkhead) with its own capacity for one resource."""

from __future__ import annotations

import asyncio
import time

import syncbridge

bridge = syncbridge.Bridge(max_workers=40, pools={"db": 2}, name="api")


@syncbridge.to_async(pool="db", bridge=bridge)
def query(n: int) -> int:
    """At most 2 of these run at once; the default pool is not touched."""
    time.sleep(0.05)
    return n


async def main() -> None:
    async with bridge:
        started = time.perf_counter()
        results = await asyncio.gather(*(query(i) for i in range(6)))
        elapsed = time.perf_counter() - started
        print(f"{results} in {elapsed:.2f} s")  # 3 rounds of 2: about 0.15 s
        assert elapsed >= 0.14


if __name__ == "__main__":
    asyncio.run(main())
