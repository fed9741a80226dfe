"""Which syncbridge source files one bridged call passes through, on every thread.

A reader's measure, not a timing: issue #23 asks that the traced path of
``await run_blocking(f)`` on asyncio and of ``sync_call_async(f)`` from a plain
thread each cross at most 5 files. Run it from the repository root::

    PYTHONPATH=src python benchmarks/trace_paths.py

Not named ``bench_*``, so ``nox -s bench`` does not run it. Each call is made
once untraced (threads started, loops made), then traced with
``sys.setprofile`` on the calling thread and ``threading.setprofile`` for the
threads syncbridge starts or wakes.
"""

from __future__ import annotations

import asyncio
import collections
import sys
import threading
from typing import TYPE_CHECKING

import syncbridge

if TYPE_CHECKING:
    from types import FrameType

_files: collections.Counter[str] = collections.Counter()


def _profile(frame: FrameType, event: str, arg: object) -> None:
    if event == "call":
        name = frame.f_code.co_filename
        if "/syncbridge/" in name:
            _files[name.split("/syncbridge/", 1)[1]] += 1


def _trace_on() -> None:
    threading.setprofile(_profile)
    sys.setprofile(_profile)


def _trace_off() -> None:
    sys.setprofile(None)
    threading.setprofile(None)


def _identity(x: int) -> int:
    return x


async def _coro(x: int) -> int:
    return x


async def _run_blocking_twice() -> None:
    await syncbridge.run_blocking(_identity, 1)  # warm
    _trace_on()
    await syncbridge.run_blocking(_identity, 2)
    _trace_off()


def _sync_call_async_traced() -> None:
    _trace_on()
    syncbridge.sync_call_async(_coro, 2)
    _trace_off()


def _show(what: str) -> None:
    print(f"{what}: {len(_files)} files")
    for name, calls in sorted(_files.items()):
        print(f"   {name:32} {calls:3} calls")
    _files.clear()


def main() -> None:
    asyncio.run(_run_blocking_twice())
    _show("await run_blocking(f), asyncio")
    syncbridge.sync_call_async(_coro, 1)  # warm
    threading.setprofile(_profile)
    caller = threading.Thread(target=_sync_call_async_traced)
    caller.start()
    caller.join()
    threading.setprofile(None)
    _show("sync_call_async(f), plain thread")


if __name__ == "__main__":
    main()
