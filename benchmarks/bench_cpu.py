"""Benchmark: CPU-bound work in threads, in processes and on a dask cluster.

Run: ``python benchmarks/bench_cpu.py [--quick] [--repeats N]`` (dask optional).

Sections:

1. Speed-up: 8 jobs of pure-Python work (about 0.5 s each on one core;
   0.25 s with ``--quick``) awaited together with ``asyncio.gather``, through
   the default bridge's worker threads (``run_blocking``; the GIL lets one run at
   a time), a :class:`syncbridge.ProcessExecutor`, a stdlib
   ``ProcessPoolExecutor`` and a dask ``LocalCluster`` (worker processes on
   loopback), each with as many workers as CPUs. The table gives the time per
   job; the speed-up is the threads' time over each one's.
2. Per-call overhead: a trivial function (returns an int) called one call after
   another, through ``to_async(executor=...)`` on each executor, beside the bare
   ``loop.run_in_executor(ProcessPoolExecutor(), f)``.

Every contender runs unpinned (it needs every CPU); medians of interleaved,
rotated rounds; ratios are what count.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import multiprocessing
import os
import time
from typing import TYPE_CHECKING, Any

from _harness import (
    Contender,
    Sample,
    Settings,
    Target,
    parse_args,
    print_header,
    print_latency,
    print_targets,
    run_async,
    unpin,
)

import syncbridge

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator

JOBS = 8
"""Jobs per batch in the speed-up section."""

THREADS = "worker threads (run_blocking)"
PROCESS_EXECUTOR = "syncbridge.ProcessExecutor"
PROCESS_POOL = "ProcessPoolExecutor"
DASK = "dask LocalCluster"
BARE = "bare loop.run_in_executor(ProcessPoolExecutor)"


def burn(rounds: int) -> int:
    """Pure-Python CPU work: *rounds* iterations of integer arithmetic."""
    total = 0
    for i in range(rounds):
        total = (total + i * i) % 1_000_003
    return total


def trivial() -> int:
    """The function of the overhead section."""
    return 1


def calibrate(seconds: float) -> int:
    """How many :func:`burn` rounds take about *seconds* on one core here."""
    rounds = 200_000
    while True:
        start = time.perf_counter()
        burn(rounds)
        elapsed = time.perf_counter() - start
        if elapsed > 0.1:
            return max(1, round(rounds * seconds / elapsed))
        rounds *= 2


@contextlib.contextmanager
def dask_client(workers: int) -> Iterator[Any]:
    """A dask client of a local cluster of *workers* processes, or None."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        yield None
        return
    with (
        LocalCluster(  # type: ignore[no-untyped-call]
            n_workers=workers, threads_per_worker=1, processes=True,
            host="127.0.0.1", dashboard_address=None,
        ) as cluster,
        Client(cluster) as client,  # type: ignore[no-untyped-call]
    ):  # fmt: skip
        yield client


def together(
    run: Callable[[int], Awaitable[int]], rounds: int
) -> Callable[[int], Awaitable[int]]:
    """A batch: JOBS jobs of *rounds* awaited together (the batch size is fixed)."""

    async def batch(n: int) -> int:
        del n
        await asyncio.gather(*(run(rounds) for _ in range(JOBS)))
        return JOBS

    return batch


def one_by_one(op: Callable[[], Awaitable[int]]) -> Callable[[int], Awaitable[int]]:
    """A batch: await *op* ``n`` times, one after the other."""

    async def batch(n: int) -> int:
        for _ in range(n):
            await op()
        return n

    return batch


async def speedup(
    settings: Settings, executors: dict[str, concurrent.futures.Executor]
) -> dict[str, Sample]:
    rounds = calibrate(0.25 if settings.quick else 0.5)
    contenders = [
        Contender(THREADS, together(syncbridge.to_async(burn), rounds)),
        *(
            Contender(name, together(syncbridge.to_async(burn, executor=ex), rounds))
            for name, ex in executors.items()
        ),
    ]
    quick = Settings(settings.repeats, JOBS, settings.quick, False, "unpinned")
    return await run_async(contenders, quick)


async def overhead(
    settings: Settings, executors: dict[str, concurrent.futures.Executor]
) -> dict[str, Sample]:
    loop = asyncio.get_running_loop()
    bare = executors[PROCESS_POOL]
    contenders = [
        Contender(BARE, one_by_one(lambda: loop.run_in_executor(bare, trivial))),
        *(
            Contender(f"to_async on {name}", one_by_one(syncbridge.to_async(trivial, executor=ex)))
            for name, ex in executors.items()
        ),
    ]  # fmt: skip
    calls = Settings(
        settings.repeats, 50 if settings.quick else 300, settings.quick, False, ""
    )
    return await run_async(contenders, calls)


def main() -> None:
    settings = parse_args(__doc__.splitlines()[0] if __doc__ else "")
    print_header("bench_cpu: CPU-bound work beyond the GIL", settings)
    where = unpin()
    workers = os.cpu_count() or 1
    context = multiprocessing.get_context("forkserver")
    with (
        syncbridge.ProcessExecutor(workers) as ours,
        concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool,
        dask_client(workers) as client,
    ):
        executors: dict[str, concurrent.futures.Executor] = {
            PROCESS_EXECUTOR: ours,
            PROCESS_POOL: pool,
        }
        if client is not None:
            executors[DASK] = client.get_executor(pure=False)
        jobs = asyncio.run(speedup(settings, executors))
        calls = asyncio.run(overhead(settings, executors))
    base = jobs[THREADS].median
    print_latency(
        f"{JOBS} CPU-bound jobs awaited together: time per job "
        f"({workers} CPUs, {workers} workers each; ratio < 1 is faster)",
        jobs,
        THREADS,
        [f"CPU: {where}", *(f"speed-up of {n}: {base / s.median:.2f}x" for n, s in jobs.items())],
    )  # fmt: skip
    print_latency(
        "per-call overhead: a trivial function, one call after another",
        calls,
        BARE,
        [f"CPU: {where}", "dask: the scheduler's round trip is in every call"],
    )
    targets = [
        Target(
            f"ProcessExecutor speed-up over threads ({workers} CPUs)",
            base / jobs[PROCESS_EXECUTOR].median,
            min(1.5, 0.75 * workers),
            at_most=False,
        ),
        Target(
            "to_async on ProcessExecutor / bare run_in_executor (per call)",
            calls[f"to_async on {PROCESS_EXECUTOR}"].median / calls[BARE].median,
            1.0,
        ),
        Target(
            "to_async on ProcessPoolExecutor / bare run_in_executor (per call)",
            calls[f"to_async on {PROCESS_POOL}"].median / calls[BARE].median,
            1.1,
        ),
    ]
    if DASK in jobs:
        targets.append(
            Target(
                f"dask LocalCluster speed-up over threads ({workers} CPUs)",
                base / jobs[DASK].median,
                min(1.5, 0.75 * workers),
                at_most=False,
            )
        )
    print_targets(targets)
    syncbridge.get_bridge().close()


if __name__ == "__main__":
    main()
