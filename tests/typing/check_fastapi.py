"""Type tests for syncbridge.fastapi.install (checked by mypy, never run)."""

from __future__ import annotations

from typing import Annotated, assert_type

from fastapi import Depends, FastAPI
from starlette.applications import Starlette

import syncbridge
import syncbridge.fastapi


@syncbridge.to_async(pool="legacy_db", timeout=3.0)
def query(sql: str, /, limit: int = 10) -> list[tuple[int, str]]:
    return [(1, sql)] * limit


def check() -> None:
    app = FastAPI()
    assert_type(
        syncbridge.fastapi.install(
            app, threads=64, pools={"legacy_db": 8}, blocking_threshold=0.1
        ),
        None,
    )
    syncbridge.fastapi.install(Starlette(), bridge=syncbridge.Bridge())
    syncbridge.fastapi.install(app, threads=None, pools=None, blocking_threshold=None)
    syncbridge.fastapi.install(
        app,
        pools={"db": {"capacity": 10, "max_waiting": 32, "max_wait": 0.5}, "cpu": 4},
    )
    syncbridge.fastapi.install(app, pools={"db": {"capacity": 10, "max_wait": None}})
    syncbridge.fastapi.install(app, pools={"db": {"max_wait": 0.5}})  # type: ignore[dict-item]
    syncbridge.fastapi.install(app, pools={"db": {"capacity": 10, "max_wiat": 1}})  # type: ignore[dict-item]

    syncbridge.fastapi.install(object())  # type: ignore[arg-type]
    syncbridge.fastapi.install(app, threads="64")  # type: ignore[arg-type]
    syncbridge.fastapi.install(app, pools={"db": "8"})  # type: ignore[dict-item]
    syncbridge.fastapi.install(app, blocking_threshold="0.1")  # type: ignore[arg-type]
    syncbridge.fastapi.install(app, bridge="default")  # type: ignore[arg-type]
    syncbridge.fastapi.install(app, 64)  # type: ignore[call-arg]

    async def rows(
        found: Annotated[list[tuple[int, str]], Depends(query)],
    ) -> list[tuple[int, str]]:
        assert_type(await query("select 1", limit=2), list[tuple[int, str]])
        return found

    app.get("/rows")(rows)  # FastAPI takes the wrapped function as a dependency
