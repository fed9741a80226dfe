"""Soak: many calls in each direction leave memory, threads and fds flat, and add up.

Each direction makes ``SYNCBRIDGE_SOAK_CALLS`` calls (default 20,000, a few
seconds; ``nox -s soak`` makes 1,000,000) through an isolated bridge, after a
warm-up, ``CONCURRENCY`` callers at a time (twice the capacity, so calls
queue). After the warm-up and after every further 10 % of the calls, with no
call in flight and after ``gc.collect()``, it samples RSS, allocated blocks,
live threads and open fds, and logs the table on the ``tests.soak`` logger
(``nox -s soak`` shows it live; a failing test shows it with the failure).

Every count must add up exactly, at each sample (all callers have their
results then): each caller got as many results as it made calls, each the value
expected, and ``Bridge.stats()`` counts every call made, each as completed,
with no slot busy, nothing waiting and no task pending.
"""

from __future__ import annotations

import gc
import logging
import os
import sys
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import anyio
import anyio.lowlevel
import pytest

from syncbridge import Bridge, BridgeStats

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

CALLS = int(os.environ.get("SYNCBRIDGE_SOAK_CALLS", "20000"))
WARMUP = max(1_000, CALLS // 20)
CAPACITY = 8
CONCURRENCY = 2 * CAPACITY
STEPS = 10

# Thresholds, over the calls made after the warm-up (CALLS of them). A call is
# a handful of objects (a job, its context copy, a future or event, the
# arguments), so a leak of even one of them per call (a block of >= 16 bytes)
# breaks at least one threshold:
#   allocated blocks may grow by BLOCKS_SLACK: caught is a leak of one block per
#       4 calls at 20,000 calls, per 200 calls at 1,000,000;
#   RSS may grow by RSS_SLACK_KIB (allocator arenas, fragmentation): caught is a
#       leak of >= 17 bytes per call at 1,000,000 calls (>= 840 bytes at 20,000);
#   open fds may move by FD_SLACK; live threads never exceed the baseline by more
#       than the bridge may start (pool workers, or the portal thread), and once
#       the bridge is closed none of its threads is left.
BLOCKS_SLACK = 5_000
RSS_SLACK_KIB = 16 * 1024
FD_SLACK = 2

# 2 ms per call is 20x what a call takes on 2 shared cores; the watchdog
# (conftest.py) dumps all stacks 5 s before pytest-timeout fires.
pytestmark = [
    pytest.mark.soak,
    pytest.mark.timeout(60 + (CALLS + WARMUP) * 0.002),
    pytest.mark.skipif(
        not os.path.isdir("/proc/self/fd"), reason="samples RSS and fds from /proc"
    ),
]

logger = logging.getLogger("tests.soak")
logger.setLevel(logging.INFO)  # captured (and shown on failure) without -o log_level


@dataclass(frozen=True)
class Sample:
    calls: int
    seconds: float
    rss_kib: int
    blocks: int
    threads: int
    fds: int


class Soak:
    """The samples of one soak run, and the checks on them."""

    def __init__(self, name: str, extra_threads: int) -> None:
        self.name = name
        self.extra_threads = extra_threads
        self.baseline_threads = threading.active_count()
        self.samples: list[Sample] = []
        self._t0 = time.perf_counter()
        self._page_kib = os.sysconf("SC_PAGE_SIZE") // 1024

    def take(self, calls: int) -> None:
        gc.collect()
        with open("/proc/self/statm") as statm:
            rss_pages = int(statm.read().split()[1])
        self.samples.append(
            Sample(
                calls=calls,
                seconds=time.perf_counter() - self._t0,
                rss_kib=rss_pages * self._page_kib,
                blocks=sys.getallocatedblocks(),
                threads=threading.active_count(),
                fds=len(os.listdir("/proc/self/fd")),
            )
        )

    def table(self) -> str:
        if not self.samples:  # it failed before the warm-up's end
            return f"soak {self.name}: no sample taken"
        first = self.samples[0]
        lines = [
            f"soak {self.name}: {CALLS:,} calls after a {WARMUP:,}-call warm-up, "
            + f"baseline {self.baseline_threads} threads",
            "     calls   seconds   RSS KiB  (growth)    blocks  (growth)  thr  fds",
        ]
        for s in self.samples:
            rss, blocks = s.rss_kib - first.rss_kib, s.blocks - first.blocks
            lines.append(
                f"{s.calls:>10,} {s.seconds:>9.2f} {s.rss_kib:>9,} {rss:>+9,} "
                f"{s.blocks:>9,} {blocks:>+9,} {s.threads:>4} {s.fds:>4}"
            )
        per_100k = (self.samples[-1].seconds - first.seconds) / CALLS * 100_000
        lines.append(f"{per_100k:.2f} s per 100,000 calls")
        return "\n".join(lines)

    def check(self) -> None:
        first, *rest = self.samples
        table = self.table()
        rss = max(s.rss_kib for s in rest) - first.rss_kib
        assert rss <= RSS_SLACK_KIB, f"RSS grew by {rss:,} KiB:\n{table}"
        blocks = max(s.blocks for s in rest) - first.blocks
        assert blocks <= BLOCKS_SLACK, f"{blocks:,} more blocks allocated:\n{table}"
        fds = {s.fds - first.fds for s in rest}
        assert max(map(abs, fds)) <= FD_SLACK, f"fds leaked:\n{table}"
        threads = max(s.threads for s in self.samples) - self.baseline_threads
        assert threads <= self.extra_threads, f"threads leaked:\n{table}"


def _chunks() -> Iterator[range]:
    """The warm-up, then STEPS chunks of CALLS // STEPS calls."""
    yield range(WARMUP)
    for step in range(STEPS):
        yield range(
            WARMUP + CALLS * step // STEPS, WARMUP + CALLS * (step + 1) // STEPS
        )


def _share(chunk: range, k: int) -> range:
    """Caller *k*'s share of *chunk*."""
    return chunk[k::CONCURRENCY]


class Tally:
    """What each caller got back: results and their sum, one slot per caller.

    Each caller writes only its own slot (no lock needed on any build); the
    test reads them once every caller is done.
    """

    def __init__(self) -> None:
        self.calls = [0] * CONCURRENCY  # calls each caller was given
        self.results = [0] * CONCURRENCY
        self.sums = [0] * CONCURRENCY

    def share(self, chunk: range, k: int) -> range:
        """Caller *k*'s share of *chunk*, counted as calls it must make."""
        share = _share(chunk, k)
        self.calls[k] += len(share)
        return share

    def got(self, k: int, i: int, value: int) -> None:
        """Caller *k* got *value* for its call with argument *i*."""
        assert value == 2 * i + 1, f"call {i} returned {value!r}, not {2 * i + 1}"
        self.results[k] += 1
        self.sums[k] += value

    def check(self, made: int) -> None:
        """After *made* calls in all (each ``_double(i)``, ``i < made``)."""
        assert sum(self.calls) == made
        for k in range(CONCURRENCY):
            assert self.results[k] == self.calls[k], (
                f"caller {k} got {self.results[k]} results for {self.calls[k]} calls"
            )
        # The values of _double(0 .. made - 1) add up to made ** 2.
        assert sum(self.sums) == made**2, f"results add up to {sum(self.sums)}"


def _check_stats(bridge: Bridge, made: int, counted_in: str) -> BridgeStats:
    """*bridge* counted *made* calls, all completed, in *counted_in* alone.

    *counted_in* is a pool's name or ``"portal"``. Called with no call in flight
    (every caller has its result): nothing busy, waiting, pending or abandoned.
    """
    stats = bridge.stats()
    expected = {"calls": made, "completed": made, "errors": 0, "cancellations": 0}
    expected |= {"timeouts": 0}
    where = {"portal": stats.portal, **stats.pools}
    assert counted_in in where, f"no {counted_in!r} in {stats}"
    for name, part in where.items():
        want = expected if name == counted_in else dict.fromkeys(expected, 0)
        got = {key: getattr(part, key) for key in want}
        assert got == want, f"{name} after {made:,} calls: {got}, not {want}\n{stats}"
    for name, pool in stats.pools.items():
        idle = {"busy": pool.busy, "waiting": pool.waiting, "abandoned": pool.abandoned}
        assert idle == dict.fromkeys(idle, 0), (
            f"pool {name} after {made:,} calls, none in flight: {idle}\n{stats}"
        )
    assert stats.portal.tasks == 0, f"portal tasks pending: {stats}"
    totals = {key: getattr(stats, key) for key in expected}
    assert totals == expected, f"bridge totals {totals}, not {expected}\n{stats}"
    assert stats.abandoned == 0, f"abandoned calls: {stats}"
    return stats


def _double(i: int) -> int:
    return 2 * i + 1


async def _double_async(i: int) -> int:
    await anyio.lowlevel.checkpoint()
    return 2 * i + 1


@pytest.fixture
def soak_log(record_property: Callable[[str, object], None]) -> Iterator[list[Soak]]:
    """Log the samples of the test's soak run, and record them as a property."""
    runs: list[Soak] = []
    yield runs
    for run in runs:
        logger.info("%s", run.table())
        record_property(f"soak_{run.name}", [vars(s) for s in run.samples])


def _check_threads_gone(bridge: Bridge, soak: Soak) -> None:
    """After close(), none of *bridge*'s threads is left, and no other new one.

    Threads of earlier tests (idle workers of other bridges) may exit meanwhile,
    so the count may end below the baseline.
    """
    prefixes = (f"syncbridge-{bridge.name}-", f"syncbridge-portal-{bridge.name}")
    deadline = time.monotonic() + 5.0
    while True:
        mine = [t.name for t in threading.enumerate() if t.name.startswith(prefixes)]
        count = threading.active_count()
        if (not mine and count <= soak.baseline_threads) or (
            time.monotonic() > deadline
        ):
            break
        time.sleep(0.01)
    assert not mine, f"threads left after Bridge.close(): {mine}"
    assert count <= soak.baseline_threads, (
        f"{count} threads after Bridge.close(), {soak.baseline_threads} before"
    )


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_run_blocking_stays_flat(
    backend: Literal["asyncio", "trio"], soak_log: list[Soak]
) -> None:
    # Its workers, and the pool's lookout thread (it wakes workers by need).
    soak = Soak(f"run_blocking-{backend}", extra_threads=CAPACITY + 1)
    soak_log.append(soak)
    bridge = Bridge(max_workers=CAPACITY, shutdown_grace=2.0)
    tally = Tally()

    async def caller(k: int, share: range) -> None:
        for i in share:
            tally.got(k, i, await bridge.run_blocking(_double, i))

    async def main() -> None:
        for chunk in _chunks():
            async with anyio.create_task_group() as tg:
                for k in range(CONCURRENCY):
                    tg.start_soon(caller, k, tally.share(chunk, k))
            # Every awaiter has its result: each slot must be free already.
            _check_stats(bridge, chunk.stop, "default")
            tally.check(chunk.stop)
            soak.take(chunk.stop - WARMUP)

    try:
        anyio.run(main, backend=backend)
    finally:
        bridge.close()
    soak.check()
    _check_threads_gone(bridge, soak)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_sync_call_async_stays_flat(
    backend: Literal["asyncio", "trio"], soak_log: list[Soak]
) -> None:
    soak = Soak(f"sync_call_async-portal_{backend}", extra_threads=1)  # the portal
    soak_log.append(soak)
    bridge = Bridge(max_workers=CAPACITY, backend=backend, shutdown_grace=2.0)
    errors: list[BaseException] = []
    tally = Tally()

    def caller(k: int, share: range) -> None:
        try:
            for i in share:
                tally.got(k, i, bridge.sync_call_async(_double_async, i))
        except BaseException as exc:
            errors.append(exc)

    try:
        for chunk in _chunks():
            threads = [
                threading.Thread(
                    target=caller, args=(k, tally.share(chunk, k)), daemon=True
                )
                for k in range(CONCURRENCY)
            ]
            for thread in threads:
                thread.start()
            deadline = time.monotonic() + 60 + len(chunk) * 0.002
            for thread in threads:
                thread.join(max(0.0, deadline - time.monotonic()))
            assert not any(t.is_alive() for t in threads), "callers hung"
            if errors:
                raise errors[0]
            _check_stats(bridge, chunk.stop, "portal")
            tally.check(chunk.stop)
            soak.take(chunk.stop - WARMUP)
    finally:
        bridge.close()
    soak.check()
    _check_threads_gone(bridge, soak)
