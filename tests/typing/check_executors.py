"""Type tests for executor-backed calls (checked by mypy and pyright, never run)."""

from __future__ import annotations

from typing import TYPE_CHECKING, assert_type

import syncbridge

if TYPE_CHECKING:
    import concurrent.futures


def crunch(n: int, /, *, rounds: int = 1) -> float:
    return n / rounds


async def check(executor: concurrent.futures.ProcessPoolExecutor) -> None:
    on_executor = syncbridge.to_async(crunch, executor=executor, timeout=5.0)
    assert_type(await on_executor(3, rounds=2), float)
    await on_executor("3")  # type: ignore[arg-type]

    ending = syncbridge.to_async(executor=executor, terminate_on_cancel=True)(crunch)
    assert_type(await ending(1), float)

    syncbridge.to_async(crunch, executor=42)  # type: ignore[call-overload]

    bridge = syncbridge.Bridge(executor=executor, pools={"cpu": executor, "db": 4})
    bridge.add_pool("more", executor=executor)
    pool = bridge.pool("cpu")
    assert_type(pool, syncbridge.WorkerPool | syncbridge.ExecutorPool)
    assert_type(pool.stats(), syncbridge.PoolStats)
    assert_type(await bridge.run_blocking(crunch, 2), float)
    syncbridge.Bridge(executor="threads")  # type: ignore[arg-type]
