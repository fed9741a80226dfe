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
   batch, for the floor (:class:`OwnThreads`: 6 threads of our own on one
   queue, each waking the loop with ``call_soon_threadsafe``), ``run_blocking``
   on the default bridge (capacity 40) and on ``Bridge(max_workers=6)``,
   ``asyncio.to_thread`` (default executor) and ``anyio.to_thread.run_sync``.
4. Throughput, uvloop: the same contenders on a uvloop loop.
5. Throughput, trio: 100 tasks in a nursery, ``run_blocking`` beside
   ``trio.to_thread.run_sync``.
6. Capacity, asyncio: a wave of 40 concurrent ``time.sleep(0.01)`` calls through
   the default bridge, beside 40 threads of our own and anyio (40 tokens). One
   wave of the pool's 40 slots takes about 10 ms; several waves would mean
   calls waited for a slot that was free.

Latency sections run pinned to one CPU (by default where the OS allows it), so
they measure the hand-off cost, not cross-core wake-up luck; the throughput and
capacity sections run on every CPU. The default syncbridge bridge is used, and
closed at the end.
"""

from __future__ import annotations

import asyncio
import functools
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from queue import SimpleQueue
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
import trio
import trio.to_thread
import uvloop
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
    from collections.abc import Awaitable, Callable, Coroutine

CALLERS = 100
"""Concurrent tasks in the throughput sections."""

OWN_THREADS = 6
"""Threads of the throughput floor, and the capacity of the small bridge."""

WAVE = 40
"""Concurrent calls in the capacity section: the default bridge's capacity."""

SLEEP = 0.01
"""Seconds each call of the capacity section sleeps."""

FLOOR = "executor floor"
OWN_FLOOR = f"{OWN_THREADS} own threads + call_soon_threadsafe"
WAVE_FLOOR = f"{WAVE} own threads + call_soon_threadsafe"
TO_THREAD = "asyncio.to_thread"
TRIO_TO_THREAD = "trio.to_thread.run_sync"
RUN_BLOCKING = "syncbridge.run_blocking"
SMALL_BRIDGE = f"Bridge(max_workers={OWN_THREADS}).run_blocking"


def work() -> int:
    """The trivial blocking function every contender runs."""
    return 1


def sleep() -> int:
    """The blocking function of the capacity section."""
    time.sleep(SLEEP)
    return 1


class OwnThreads:
    """The floor: a fixed set of threads on one queue, no admission, no context.

    Each call puts ``(loop, future, func)`` on a :class:`~queue.SimpleQueue`; a
    thread runs ``func()`` and sets the future with ``call_soon_threadsafe``.
    """

    def __init__(self, n: int) -> None:
        self._queue: SimpleQueue[tuple[Any, ...] | None] = SimpleQueue()
        self._threads = [
            threading.Thread(target=self._serve, name=f"bench-own-{i}", daemon=True)
            for i in range(n)
        ]
        for t in self._threads:
            t.start()

    def _serve(self) -> None:
        while (item := self._queue.get()) is not None:
            loop, fut, func = item
            loop.call_soon_threadsafe(_set, fut, func())

    async def call(self, func: Callable[[], int]) -> int:
        """Run *func* in one of the threads and await its result."""
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._queue.put((fut.get_loop(), fut, func))
        return await fut

    def close(self) -> None:
        """Stop and join every thread."""
        for _ in self._threads:
            self._queue.put(None)
        for t in self._threads:
            t.join()


def _set(fut: asyncio.Future[int], value: int) -> None:
    if not fut.done():
        fut.set_result(value)


def sequential(op: Callable[[], Awaitable[int]]) -> Callable[[int], Awaitable[int]]:
    """A batch: await *op* ``n`` times, one after the other."""

    async def batch(n: int) -> int:
        for _ in range(n):
            await op()
        return n

    return batch


def concurrent(op: Callable[[], Awaitable[int]]) -> Callable[[int], Awaitable[int]]:
    """A batch: CALLERS tasks each await *op* ``n // CALLERS`` times (asyncio)."""

    async def caller(k: int) -> None:
        for _ in range(k):
            await op()

    async def batch(n: int) -> int:
        k = max(1, n // CALLERS)
        await asyncio.gather(*(caller(k) for _ in range(CALLERS)))
        return k * CALLERS

    return batch


def nursery(op: Callable[[], Awaitable[int]]) -> Callable[[int], Awaitable[int]]:
    """Like :func:`concurrent`, with the CALLERS tasks in a trio nursery."""

    async def caller(k: int) -> None:
        for _ in range(k):
            await op()

    async def batch(n: int) -> int:
        k = max(1, n // CALLERS)
        async with trio.open_nursery() as tasks:
            for _ in range(CALLERS):
                tasks.start_soon(caller, k)
        return k * CALLERS

    return batch


def waves(op: Callable[[], Awaitable[int]]) -> Callable[[int], Awaitable[int]]:
    """A batch of ``n`` waves: WAVE concurrent *op* calls, then the next wave.

    Returns ``n``, so the per-"call" figure is the time of one wave.
    """

    async def batch(n: int) -> int:
        for _ in range(n):
            await asyncio.gather(*(op() for _ in range(WAVE)))
        return n

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
        Contender(TRIO_TO_THREAD, sequential(lambda: trio.to_thread.run_sync(work))),
        Contender(RUN_BLOCKING, sequential(lambda: syncbridge.run_blocking(work))),
        Contender(
            "anyio.to_thread.run_sync",
            sequential(lambda: anyio.to_thread.run_sync(work)),
        ),
    ]
    return await run_async(contenders, settings)


async def asyncio_throughput(settings: Settings) -> dict[str, Sample]:
    """The throughput contenders on the running loop (asyncio or uvloop)."""
    own = OwnThreads(OWN_THREADS)
    small = syncbridge.Bridge(max_workers=OWN_THREADS, name="bench-small")
    try:
        contenders = [
            Contender(OWN_FLOOR, concurrent(lambda: own.call(work)), scale=2),
            Contender(
                RUN_BLOCKING,
                concurrent(lambda: syncbridge.run_blocking(work)),
                scale=2,
            ),
            Contender(
                SMALL_BRIDGE, concurrent(lambda: small.run_blocking(work)), scale=2
            ),
            Contender(TO_THREAD, concurrent(lambda: asyncio.to_thread(work)), scale=2),
            Contender(
                "anyio.to_thread.run_sync",
                concurrent(lambda: anyio.to_thread.run_sync(work)),
                scale=2,
            ),
        ]
        return await run_async(contenders, settings)
    finally:
        own.close()
        small.close()


async def trio_throughput(settings: Settings) -> dict[str, Sample]:
    contenders = [
        Contender(
            TRIO_TO_THREAD, nursery(lambda: trio.to_thread.run_sync(work)), scale=2
        ),
        Contender(
            RUN_BLOCKING, nursery(lambda: syncbridge.run_blocking(work)), scale=2
        ),
    ]
    return await run_async(contenders, settings)


async def capacity(settings: Settings) -> dict[str, Sample]:
    own = OwnThreads(WAVE)
    try:
        # A batch is calls / 400 waves: 5 in a full run, 1 in a quick one.
        contenders = [
            Contender(WAVE_FLOOR, waves(lambda: own.call(sleep)), scale=1 / 400),
            Contender(
                RUN_BLOCKING,
                waves(lambda: syncbridge.run_blocking(sleep)),
                scale=1 / 400,
            ),
            Contender(
                "anyio.to_thread.run_sync",
                waves(lambda: anyio.to_thread.run_sync(sleep)),
                scale=1 / 400,
            ),
        ]
        return await run_async(contenders, settings)
    finally:
        own.close()


def run_uvloop(
    main: Callable[[], Coroutine[Any, Any, dict[str, Sample]]],
) -> dict[str, Sample]:
    """Run *main* on a fresh uvloop loop, closed afterwards."""
    loop = uvloop.new_event_loop()
    try:
        return loop.run_until_complete(main())
    finally:
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()


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
        TRIO_TO_THREAD,
        [f"CPU: {where}"],
    )

    where = unpin()
    bridge = syncbridge.get_bridge()
    threads_note = (
        f"threads: run_blocking pool capacity {bridge.max_workers}; "
        f"asyncio default executor {min(32, (os.cpu_count() or 1) + 4)} "
        "(min(32, cpu_count + 4)); anyio default limiter "
        f"{anyio_default_tokens()}"
    )
    throughput = asyncio.run(asyncio_throughput(settings))
    print_throughput(
        f"throughput, asyncio loop, {CALLERS} concurrent tasks (asyncio.gather)",
        throughput,
        OWN_FLOOR,
        [f"CPU: {where}", threads_note],
    )
    uv = run_uvloop(functools.partial(asyncio_throughput, settings))
    print_throughput(
        f"throughput, uvloop loop, {CALLERS} concurrent tasks (asyncio.gather)",
        uv,
        OWN_FLOOR,
        [f"CPU: {where}"],
    )
    trio_tp = anyio.run(functools.partial(trio_throughput, settings), backend="trio")
    print_throughput(
        f"throughput, trio, {CALLERS} concurrent tasks (a nursery)",
        trio_tp,
        TRIO_TO_THREAD,
        [f"CPU: {where}"],
    )
    waves_samples = asyncio.run(capacity(settings))
    print_latency(
        f"capacity, asyncio loop: one wave of {WAVE} concurrent "
        f"time.sleep({SLEEP}) calls (µs per wave)",
        waves_samples,
        WAVE_FLOOR,
        [
            f"CPU: {where}",
            (
                f"one wave of {WAVE} slots takes {SLEEP * 1e3:g} ms; two waves "
                f"would take {2 * SLEEP * 1e3:g} ms"
            ),
        ],
    )

    def speed(samples: dict[str, Sample], name: str, base: str) -> float:
        # Throughput ratio: the faster contender has the smaller ns per call.
        return samples[base].median / samples[name].median

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
            Target(
                f"run_blocking / {OWN_THREADS} own threads (throughput, asyncio)",
                speed(throughput, RUN_BLOCKING, OWN_FLOOR),
                0.75,
                at_most=False,
            ),
            Target(
                f"run_blocking / max_workers={OWN_THREADS} (throughput, asyncio)",
                speed(throughput, RUN_BLOCKING, SMALL_BRIDGE),
                1.0,
                at_most=False,
            ),
            Target(
                f"run_blocking / {OWN_THREADS} own threads (throughput, uvloop)",
                speed(uv, RUN_BLOCKING, OWN_FLOOR),
                0.5,
                at_most=False,
            ),
            Target(
                f"run_blocking / max_workers={OWN_THREADS} (throughput, uvloop)",
                speed(uv, RUN_BLOCKING, SMALL_BRIDGE),
                1.0,
                at_most=False,
            ),
            Target(
                f"run_blocking wave of {WAVE} x {SLEEP * 1e3:g} ms sleeps / "
                f"{SLEEP * 1e3:g} ms",
                waves_samples[RUN_BLOCKING].median / (SLEEP * 1e9),
                1.5,
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
