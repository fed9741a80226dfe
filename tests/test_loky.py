"""loky's reusable process pool behind a call (#13)."""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING

import pytest

import _jobs
from syncbridge import Bridge, SerializationError, to_async

if TYPE_CHECKING:
    from collections.abc import Iterator
    from concurrent.futures import Executor

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def loky_pool() -> Iterator[Executor]:
    import loky

    pool: Executor = loky.get_reusable_executor(max_workers=2)
    yield pool
    pool.shutdown(wait=True)


async def test_loky_runs_calls_in_its_processes_with_cloudpickle(
    loky_pool: Executor, bridge: Bridge
) -> None:
    run = to_async(executor=loky_pool, bridge=bridge)
    assert await run(_jobs.pid)() != os.getpid()
    offset = 40
    assert await run(lambda x: x + offset)(2) == 42  # cloudpickle sends lambdas


async def test_an_error_in_loky_keeps_its_type_and_message(
    loky_pool: Executor, bridge: Bridge
) -> None:
    with pytest.raises(ValueError, match=r"^bad value 7$"):
        await to_async(_jobs.fail, executor=loky_pool, bridge=bridge)("bad value 7")


async def test_what_loky_cannot_send_is_named(
    loky_pool: Executor, bridge: Bridge
) -> None:
    with pytest.raises(SerializationError, match=r"keyword argument 'suffix'"):
        await to_async(_jobs.echo, executor=loky_pool, bridge=bridge)(
            1,
            suffix=threading.Lock(),  # type: ignore[arg-type]
        )
    assert await to_async(_jobs.echo, executor=loky_pool, bridge=bridge)(1) == "1"


async def test_keyword_arguments_are_the_functions_not_lokys(
    loky_pool: Executor, bridge: Bridge
) -> None:
    run = to_async(_jobs.kw_echo, executor=loky_pool, bridge=bridge)
    assert await run(fn=1, timeout=2) == {"fn": 1, "timeout": 2}
