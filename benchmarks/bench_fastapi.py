"""Benchmark: blocking calls in FastAPI routes, under uvicorn, loaded by wrk.

Run: ``python benchmarks/bench_fastapi.py [--quick] [--rounds N] [--duration S]``
(needs ``wrk`` on PATH; without it the script says how to install it and exits 0).

Every request runs a 10 ms blocking function (``time.sleep(0.01)``); uvicorn runs
one worker process (asyncio loop, access log off); wrk keeps 32 connections open
with one thread. Sections:

1. Ways to run the blocking call: ``await syncbridge.run_blocking(...)``,
   ``await starlette.concurrency.run_in_threadpool(...)`` (FastAPI's own
   threadpool, the baseline), ``await asyncio.to_thread(...)``, a plain ``def``
   route (FastAPI runs it in its threadpool), and the anti-pattern: calling it
   inside ``async def`` (it blocks the event loop).
2. Bulkhead: the ``run_blocking`` route alone, then while a second wrk keeps the
   named pool ``slow`` (capacity 2, 0.5 s calls) saturated with 8 connections.
3. Loop-block detection: the ``run_blocking`` route on an app installed without
   ``blocking_threshold`` and on one with ``blocking_threshold=0.1``.

The app is :func:`create_app` in this file, run with ``uvicorn --factory``.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import os
import platform
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path

from _harness import Target, print_targets
from _http import Row, find_wrk, free_port, measure, print_rows, run_wrk, server

HERE = Path(__file__).resolve().parent
THRESHOLD_ENV = "SYNCBRIDGE_BENCH_BLOCKING_THRESHOLD"
BLOCK_SECONDS = 0.01
SLOW_SECONDS = 0.5
SLOW_POOL = 2
CONNECTIONS = 32

RUN_IN_THREADPOOL = "run_in_threadpool"


# -- the app under test (imported by uvicorn in the server process) -------------


def create_app() -> object:
    """Build the benchmark app; ``blocking_threshold`` comes from the environment."""
    from fastapi import FastAPI
    from starlette.concurrency import run_in_threadpool

    import syncbridge
    import syncbridge.fastapi

    threshold = os.environ.get(THRESHOLD_ENV)
    app = FastAPI()
    syncbridge.fastapi.install(
        app,
        pools={"slow": SLOW_POOL},
        blocking_threshold=float(threshold) if threshold else None,
    )

    @syncbridge.to_async(pool="slow")
    def slow_call() -> None:
        time.sleep(SLOW_SECONDS)

    @app.get("/run_blocking")
    async def via_run_blocking() -> str:
        await syncbridge.run_blocking(time.sleep, BLOCK_SECONDS)
        return "ok"

    @app.get("/run_in_threadpool")
    async def via_run_in_threadpool() -> str:
        await run_in_threadpool(time.sleep, BLOCK_SECONDS)
        return "ok"

    @app.get("/to_thread")
    async def via_to_thread() -> str:
        await asyncio.to_thread(time.sleep, BLOCK_SECONDS)
        return "ok"

    @app.get("/def")
    def def_route() -> str:
        time.sleep(BLOCK_SECONDS)
        return "ok"

    @app.get("/blocking")
    async def blocks_the_loop() -> str:
        time.sleep(BLOCK_SECONDS)  # the anti-pattern being measured
        return "ok"

    @app.get("/slow")
    async def slow() -> str:
        await slow_call()
        return "ok"

    return app


# -- the driver ------------------------------------------------------------------


def _versions() -> str:
    names = ("syncbridge", "fastapi", "starlette", "uvicorn", "anyio")
    found = []
    for name in names:
        try:
            found.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            found.append(f"{name} (not installed)")
    return ", ".join(found)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 s per row")
    parser.add_argument("--rounds", type=int, default=1, help="timed runs per row")
    parser.add_argument("--duration", type=float, help="seconds per timed run")
    # Accepted so `nox -s bench -- --pin` reaches every script; HTTP rows are
    # never pinned (server, wrk and workers need every core).
    parser.add_argument("--pin", action=argparse.BooleanOptionalAction)
    parser.add_argument("--repeats", type=int, help="same as --rounds")
    parser.add_argument("--calls", type=int, help=argparse.SUPPRESS)
    ns = parser.parse_args(argv)

    wrk = find_wrk()
    if wrk is None:
        return
    rounds: int = ns.repeats or ns.rounds
    duration: float = ns.duration or (2.0 if ns.quick else 5.0)
    warmup = 1.0

    print("# FastAPI: a 10 ms blocking call per request (uvicorn, 1 worker, wrk)")
    print(f"python {platform.python_version()}, {_versions()}")
    print(
        f"{platform.platform()}; os.cpu_count()={os.cpu_count()}; wrk -t1 "
        f"-c{CONNECTIONS}, {warmup:g} s warm-up + {rounds} x {duration:g} s per "
        "row, rows interleaved; medians over the rounds"
    )
    print()

    def uvicorn(port: int) -> list[str]:
        return [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "bench_fastapi:create_app",
            "--app-dir",
            str(HERE),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--loop",
            "asyncio",
            "--no-access-log",
            "--log-level",
            "warning",
        ]

    plain_port, watched_port = free_port(), free_port()
    with ExitStack() as stack:
        stack.enter_context(server(uvicorn(plain_port), plain_port))
        stack.enter_context(
            server(uvicorn(watched_port), watched_port, env={THRESHOLD_ENV: "0.1"})
        )
        plain = f"http://127.0.0.1:{plain_port}"
        watched = f"http://127.0.0.1:{watched_port}"

        ways = [
            Row("syncbridge.run_blocking", f"{plain}/run_blocking"),
            Row(RUN_IN_THREADPOOL, f"{plain}/run_in_threadpool"),
            Row("asyncio.to_thread", f"{plain}/to_thread"),
            Row("def route", f"{plain}/def"),
            Row("time.sleep in async def", f"{plain}/blocking"),
        ]
        measure(
            wrk,
            ways,
            rounds=rounds,
            duration=duration,
            warmup=warmup,
            connections=CONNECTIONS,
        )
        print_rows(
            "1. ways to call a 10 ms blocking function from a route",
            ways,
            RUN_IN_THREADPOOL,
            notes=[
                (
                    "default capacities: syncbridge and Starlette 40 threads, "
                    "asyncio.to_thread min(32, cpus + 4)"
                )
            ],
        )

        alone = Row("run_blocking, slow pool idle", f"{plain}/run_blocking")
        loaded = Row("run_blocking, slow pool saturated", f"{plain}/run_blocking")
        run_wrk(wrk, alone.url, connections=CONNECTIONS, duration=warmup)  # warm-up
        for _ in range(rounds):
            alone.results.append(
                run_wrk(wrk, alone.url, connections=CONNECTIONS, duration=duration)
            )
            background = subprocess.Popen(
                [wrk, "-t1", "-c8", f"-d{round(duration) + 3}s", f"{plain}/slow"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                time.sleep(1.0)  # let the slow pool fill up and its queue grow
                loaded.results.append(
                    run_wrk(wrk, loaded.url, connections=CONNECTIONS, duration=duration)
                )
            finally:
                background.wait(duration + 30)
        print_rows(
            f"2. bulkhead: named pool 'slow' (capacity {SLOW_POOL}, "
            f"{SLOW_SECONDS:g} s calls) kept full by 8 more connections",
            [alone, loaded],
            alone.name,
        )

        off = Row("blocking_threshold=None", f"{plain}/run_blocking")
        on = Row("blocking_threshold=0.1", f"{watched}/run_blocking")
        measure(
            wrk,
            [off, on],
            rounds=rounds,
            duration=duration,
            warmup=warmup,
            connections=CONNECTIONS,
        )
        print_rows(
            "3. cost of loop-block detection (heartbeat every 10 ms, monitor "
            "thread, marker middleware)",
            [off, on],
            off.name,
        )

    by_name = {row.name: row for row in ways}
    print_targets(
        [
            Target(
                "run_blocking req/s vs run_in_threadpool",
                by_name["syncbridge.run_blocking"].rps / by_name[RUN_IN_THREADPOOL].rps,
                1.0,
                at_most=False,
            ),
            Target("bulkhead: p99 saturated vs idle", loaded.p99 / alone.p99, 1.25),
            Target("detection on: req/s vs off", on.rps / off.rps, 0.95, at_most=False),
        ],
        rounds=rounds,
    )


if __name__ == "__main__":
    main()
