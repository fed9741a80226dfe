"""Benchmark: awaiting a trivial blocking function from async code.

Run: ``python benchmarks/bench_run_blocking.py [--quick] [--pin|--no-pin]``.

Sections:

1. Latency, asyncio: one task awaits ``work()`` (returns an int) in a worker
   thread, call after call, via ``syncbridge.run_blocking``, ``asyncio.to_thread``,
   ``anyio.to_thread.run_sync``, asgiref ``sync_to_async(thread_sensitive=False)``
   and the floor: ``ThreadPoolExecutor.submit`` + ``asyncio.wrap_future``.
2. Latency, trio: ``run_blocking`` beside ``trio.to_thread.run_sync`` (and anyio's
   ``to_thread.run_sync``) inside ``anyio.run(..., backend="trio")``.
3. Throughput, asyncio: 100 tasks (``asyncio.gather``) each await a share of the
   batch, for ``run_blocking``, ``asyncio.to_thread`` (default executor) and
   ``anyio.to_thread.run_sync``.

Latency sections run pinned to one CPU (by default where the OS allows it), so
they measure the hand-off cost, not cross-core wake-up luck; the throughput
section runs on every CPU. The default syncbridge bridge is used, and closed at
the end.
"""

from __future__ import annotations

import asyncio
import functools
import os
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import anyio
import anyio.to_thread
import trio
import trio.to_thread
from _harness import (
    Contender,
    Sample,
    Settings,
    Target,
    parse_args,
    pin_one_cpu,
    print_header,
    print_latency,
    print_targets,
    print_throughput,
    run_async,
    unpin,
)
from asgiref.sync import sync_to_async

import syncbridge

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

CALLERS = 100
"""Concurrent tasks in the throughput section."""

FLOOR = "executor floor"
TO_THREAD = "asyncio.to_thread"
RUN_BLOCKING = "syncbridge.run_blocking"


def work() -> int:
    """The trivial blocking function every contender runs."""
    return 1


def sequential(op: Callable[[], Awaitable[int]]) -> Callable[[int], Awaitable[int]]:
    """A batch: await *op* ``n`` times, one after the other."""

    async def batch(n: int) -> int:
        for _ in range(n):
            await op()
        return n

    return batch


def concurrent(op: Callable[[], Awaitable[int]]) -> Callable[[int], Awaitable[int]]:
    """A batch: CALLERS tasks each await *op* ``n // CALLERS`` times."""

    async def caller(k: int) -> None:
        for _ in range(k):
            await op()

    async def batch(n: int) -> int:
        k = max(1, n // CALLERS)
        await asyncio.gather(*(caller(k) for _ in range(CALLERS)))
        return k * CALLERS

    return batch


async def asyncio_latency(settings: Settings) -> dict[str, Sample]:
    loop = asyncio.get_running_loop()
    s2a = sync_to_async(work, thread_sensitive=False)
    with ThreadPoolExecutor(thread_name_prefix="bench-floor") as executor:
        contenders = [
            Contender(
                FLOOR,
                sequential(
                    lambda: asyncio.wrap_future(executor.submit(work), loop=loop)
                ),
            ),
            Contender(RUN_BLOCKING, sequential(lambda: syncbridge.run_blocking(work))),
            Contender(TO_THREAD, sequential(lambda: asyncio.to_thread(work))),
            Contender(
                "anyio.to_thread.run_sync",
                sequential(lambda: anyio.to_thread.run_sync(work)),
            ),
            Contender(
                "asgiref sync_to_async(thread_sensitive=False)",
                sequential(s2a),
                scale=0.5,
            ),
        ]
        return await run_async(contenders, settings)


async def trio_latency(settings: Settings) -> dict[str, Sample]:
    contenders = [
        Contender(
            "trio.to_thread.run_sync", sequential(lambda: trio.to_thread.run_sync(work))
        ),
        Contender(RUN_BLOCKING, sequential(lambda: syncbridge.run_blocking(work))),
        Contender(
            "anyio.to_thread.run_sync",
            sequential(lambda: anyio.to_thread.run_sync(work)),
        ),
    ]
    return await run_async(contenders, settings)


async def asyncio_throughput(settings: Settings) -> dict[str, Sample]:
    contenders = [
        Contender(TO_THREAD, concurrent(lambda: asyncio.to_thread(work)), scale=2),
        Contender(
            RUN_BLOCKING, concurrent(lambda: syncbridge.run_blocking(work)), scale=2
        ),
        Contender(
            "anyio.to_thread.run_sync",
            concurrent(lambda: anyio.to_thread.run_sync(work)),
            scale=2,
        ),
    ]
    return await run_async(contenders, settings)


def main() -> None:
    settings = parse_args(__doc__.splitlines()[0] if __doc__ else "")
    print_header("bench_run_blocking: await a trivial blocking call", settings)

    where = pin_one_cpu(settings)
    latency = asyncio.run(asyncio_latency(settings))
    print_latency(
        "latency, asyncio loop, one task awaiting calls back to back",
        latency,
        FLOOR,
        [
            f"CPU: {where}",
            f"{FLOOR} = ThreadPoolExecutor().submit(work) + asyncio.wrap_future",
        ],
    )
    trio_samples = anyio.run(functools.partial(trio_latency, settings), backend="trio")
    print_latency(
        "latency, trio (anyio.run backend='trio'), one task awaiting calls in turn",
        trio_samples,
        "trio.to_thread.run_sync",
        [f"CPU: {where}"],
    )

    where = unpin()
    throughput = asyncio.run(asyncio_throughput(settings))
    bridge = syncbridge.get_bridge()
    print_throughput(
        f"throughput, asyncio loop, {CALLERS} concurrent tasks (asyncio.gather)",
        throughput,
        TO_THREAD,
        [
            f"CPU: {where}",
            (
                f"threads: run_blocking pool capacity {bridge.max_workers}; "
                f"asyncio default executor {min(32, (os.cpu_count() or 1) + 4)} "
                "(min(32, cpu_count + 4)); anyio default limiter "
                f"{anyio_default_tokens()}"
            ),
        ],
    )

    print_targets(
        [
            Target(
                "run_blocking / asyncio.to_thread (latency, asyncio)",
                latency[RUN_BLOCKING].median / latency[TO_THREAD].median,
                1.0,
            ),
            Target(
                "run_blocking / executor floor (latency, asyncio)",
                latency[RUN_BLOCKING].median / latency[FLOOR].median,
                1.3,
            ),
        ]
    )
    bridge.close()


def anyio_default_tokens() -> float:
    async def read() -> float:
        return anyio.to_thread.current_default_thread_limiter().total_tokens

    return anyio.run(read)


if __name__ == "__main__":
    main()
