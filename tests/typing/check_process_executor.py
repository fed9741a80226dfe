"""Type tests for ProcessExecutor (checked by mypy and pyright, never run)."""

from __future__ import annotations

import concurrent.futures
import multiprocessing
from typing import assert_type

import syncbridge


def parse(text: str, /, base: int = 10, *, strict: bool = False) -> int:
    return int(text, base)


def check() -> None:
    executor = syncbridge.ProcessExecutor(
        2, mp_context=multiprocessing.get_context("spawn"), initializer=print
    )
    assert_type(executor.submit(parse, "12"), concurrent.futures.Future[int])
    assert_type(
        executor.submit(parse, "12", base=16, strict=True),
        concurrent.futures.Future[int],
    )
    executor.submit(parse, 12)  # type: ignore[arg-type]
    executor.submit(parse, "1", nope=1)  # type: ignore[call-arg]
    assert_type(executor.terminate(executor.submit(parse, "1")), bool)
    assert_type(executor.max_workers, int)
    assert_type(executor.running, int)
    assert_type(executor.waiting, int)
    assert_type(executor.processes, int)
    with syncbridge.ProcessExecutor() as pool:
        assert_type(pool, syncbridge.ProcessExecutor)
    executor.terminate_workers()
    executor.shutdown(wait=False, cancel_futures=True)

    error = syncbridge.WorkerProcessDied("ended", -9)
    assert_type(error.exitcode, int | None)
    serialization: TypeError = syncbridge.SerializationError("cannot pickle")
    del serialization
