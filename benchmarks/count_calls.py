"""Cost measure that does not depend on timing: function calls per bridged call.

Run: ``PYTHONPATH=src python benchmarks/count_calls.py [--calls N]``.

Not a ``bench_*`` file, so ``nox -s bench`` leaves it out. Timings on a shared
machine vary from run to run; the number of Python function calls (and,
apart, of C calls) that one bridged call costs does not, so a change to a hot
path can be judged by it exactly. Counted with ``sys.setprofile`` on the
calling thread and ``threading.setprofile_all_threads`` (Python 3.12+;
``threading.setprofile``, installed before any worker starts, on 3.11) on the
others, per call, on a warm default bridge:

- ``run_blocking`` on asyncio and on trio (the calling thread runs the loop;
  the others are the worker that runs ``f``);
- ``to_async(f, timeout=5.0)`` on asyncio;
- ``sync_call_async`` and ``to_sync(timeout=5.0)`` from a plain thread (the
  others are the portal's loop thread).

A "call" is a profiled Python frame entry, coroutine and generator
resumptions included (what ``cProfile`` counts as a call). Each bridged call is
counted alone: after it returns, counting stops on the calling thread, and on
the others once they are parked again in a blocking C call (no profile event
for a few milliseconds), so whatever finishes after the caller resumes is
counted too. The table gives the median per call, and in how many of the
calls the Python and the C counts differed from it (0: deterministic; trio's
scheduler draws random numbers, so its C calls vary by one or two).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import threading
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from types import FrameType


class _Profile:
    """Per-thread call counters, switched on and off from the calling thread."""

    def __init__(self) -> None:
        self.caller = threading.get_ident()
        self.caller_on = False
        self.others_on = False
        self.counts: dict[int, list[int]] = {}  # thread -> [python, c]
        self.last: dict[int, str] = {}  # thread -> its last profile event
        self.events = 0  # profile events on other threads, counted or not

    def hook(self, frame: FrameType, event: str, arg: object) -> None:
        ident = threading.get_ident()
        if ident == self.caller:
            on = self.caller_on
        else:
            self.events += 1
            self.last[ident] = event
            on = self.others_on
        if on:
            if event == "call":
                self.counts.setdefault(ident, [0, 0])[0] += 1
            elif event == "c_call":
                self.counts.setdefault(ident, [0, 0])[1] += 1

    def install(self) -> None:
        sys.setprofile(self.hook)
        if sys.version_info >= (3, 12):
            threading.setprofile_all_threads(self.hook)
        else:  # only threads started from now on: install before the bridge
            threading.setprofile(self.hook)

    def start(self) -> None:
        self.counts.clear()
        self.others_on = True
        self.caller_on = True  # last: the hook counts from the next event on

    def stop(self) -> tuple[int, int, int, int]:
        """Stop counting: caller py, caller C, others py, others C."""
        self.caller_on = False
        self._wait_until_others_park()
        self.others_on = False
        mine = self.counts.pop(self.caller, [0, 0])
        others = [sum(c[i] for c in self.counts.values()) for i in (0, 1)]
        return mine[0], mine[1], others[0], others[1]

    def _wait_until_others_park(self) -> None:
        quiet = 0
        while quiet < 3:
            seen = self.events
            time.sleep(0.001)
            alive = {t.ident for t in threading.enumerate()}
            parked = all(e == "c_call" for t, e in self.last.items() if t in alive)
            quiet = quiet + 1 if parked and self.events == seen else 0


PROFILE = _Profile()


def f() -> int:
    return 1


async def coro() -> int:
    return 1


Row = tuple[str, list[tuple[int, int, int, int]]]


async def _async_calls(
    call: Callable[[], Awaitable[object]], warm: int, n: int
) -> list[tuple[int, int, int, int]]:
    for _ in range(warm):
        await call()
    samples = []
    for _ in range(n):
        PROFILE.start()
        await call()
        samples.append(PROFILE.stop())  # blocks the loop while it waits: no loop work
    return samples


def _sync_calls(
    call: Callable[[], object], warm: int, n: int
) -> list[tuple[int, int, int, int]]:
    for _ in range(warm):
        call()
    samples = []
    for _ in range(n):
        PROFILE.start()
        call()
        samples.append(PROFILE.stop())
    return samples


def measure(n: int, warm: int) -> list[Row]:
    import trio

    import syncbridge

    rows: list[Row] = []

    def run_blocking() -> Awaitable[int]:
        return syncbridge.run_blocking(f)

    rows.append(
        (
            "await run_blocking(f), asyncio",
            asyncio.run(_async_calls(run_blocking, warm, n)),
        )
    )
    rows.append(
        ("await run_blocking(f), trio", trio.run(_async_calls, run_blocking, warm, n))
    )
    timed = syncbridge.to_async(f, timeout=5.0)
    rows.append(
        (
            "await to_async(f, timeout=5), asyncio",
            asyncio.run(_async_calls(timed, warm, n)),
        )
    )

    def sync_call() -> int:
        return syncbridge.sync_call_async(coro)

    rows.append(
        ("sync_call_async(coro), plain thread", _sync_calls(sync_call, warm, n))
    )
    rows.append(
        (
            "to_sync(coro, timeout=5)(), plain thread",
            _sync_calls(syncbridge.to_sync(coro, timeout=5.0), warm, n),
        )
    )
    return rows


def _column(samples: list[tuple[int, int, int, int]], i: int) -> tuple[int, int]:
    values = [s[i] for s in samples]
    median = int(statistics.median_low(values))
    return median, sum(v != median for v in values)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200, help="calls counted per row")
    parser.add_argument("--warm", type=int, default=50, help="calls before counting")
    args = parser.parse_args(argv)
    PROFILE.install()  # before the bridge starts any thread (Python 3.11)
    try:
        rows = measure(args.calls, args.warm)
    finally:
        sys.setprofile(None)
        if sys.version_info >= (3, 12):
            threading.setprofile_all_threads(None)
        else:
            threading.setprofile(None)
    import syncbridge

    syncbridge.get_bridge().close()
    print(
        f"Python {sys.version.split()[0]}; {args.calls} calls per row, median per call"
    )
    print("(varied: calls whose Python / C counts differed from the median)")
    head = ("call", "calling py", "calling C", "other py", "other C", "varied")
    print(
        f"{head[0]:<42} {head[1]:>10} {head[2]:>9} {head[3]:>8} {head[4]:>7} {head[5]:>8}"
    )
    for name, samples in rows:
        cols = [_column(samples, i) for i in range(4)]
        varied = f"{max(cols[0][1], cols[2][1])}/{max(cols[1][1], cols[3][1])}"
        print(
            f"{name:<42} {cols[0][0]:>10} {cols[1][0]:>9} {cols[2][0]:>8} "
            f"{cols[3][0]:>7} {varied:>8}"
        )


if __name__ == "__main__":
    main()
