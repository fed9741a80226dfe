"""Type tests for pool settings and their bounds (checked by mypy and pyright, never run)."""

from __future__ import annotations

from typing import assert_type

import syncbridge


def check() -> None:
    db: syncbridge.PoolConfig = {"capacity": 10, "max_waiting": 32, "max_wait": 0.5}
    bridge = syncbridge.Bridge(pools={"db": db, "api": {"capacity": 4}, "old": 2})
    bridge.add_pool("jobs", 2, max_waiting=0, max_wait=1.5)
    bridge.set_pool("db", 12, max_waiting=None, max_wait=0.25)
    pool = bridge.pool("jobs")
    assert isinstance(pool, syncbridge.WorkerPool)
    assert_type(pool.max_waiting, int | None)
    assert_type(pool.max_wait, float | None)
    assert_type(bridge.stats().rejected, int)
    assert_type(bridge.stats().pools["db"].rejected, int)

    no_capacity: syncbridge.PoolConfig = {"max_wait": 0.5}  # type: ignore[typeddict-item]
    typo: syncbridge.PoolConfig = {"capacity": 1, "max_wiat": 1}  # type: ignore[typeddict-unknown-key]
    bridge.add_pool("x", 1, max_waiting="3")  # type: ignore[arg-type]
    del no_capacity, typo
