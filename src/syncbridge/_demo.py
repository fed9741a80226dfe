"""The classic experiment: ten 1-second waits, three ways (``python -m syncbridge demo``).

Uses only syncbridge's public names.
"""

from __future__ import annotations

__all__ = ("run_demo",)

import asyncio
import sys
import time
from typing import TYPE_CHECKING

import syncbridge

if TYPE_CHECKING:
    from collections.abc import Callable


def _sequential(n: int, wait: float) -> None:
    for _ in range(n):
        time.sleep(wait)


async def _gathered_async(n: int, wait: float) -> None:
    await asyncio.gather(*(asyncio.sleep(wait) for _ in range(n)))


async def _gathered_blocking(n: int, wait: float) -> None:
    await asyncio.gather(*(syncbridge.run_blocking(time.sleep, wait) for _ in range(n)))


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def run_demo(n: int = 10, wait: float = 1.0) -> list[tuple[str, float]]:
    """Time *n* waits of *wait* seconds done three ways; print each row as it ends.

    While a row is measured, a line says what is being timed (on a terminal it
    is replaced by the row). Returns the rows as ``(label, seconds)``.
    """
    runs: list[tuple[str, float, Callable[[], object]]] = [
        (
            f"time.sleep({wait:g}) x {n}, one after another",
            n * wait,
            lambda: _sequential(n, wait),
        ),
        (
            f"await asyncio.sleep({wait:g}) x {n}, gathered",
            wait,
            lambda: asyncio.run(_gathered_async(n, wait)),
        ),
        (
            f"await run_blocking(time.sleep, {wait:g}) x {n}, gathered",
            wait,
            lambda: asyncio.run(_gathered_blocking(n, wait)),
        ),
    ]
    tty = sys.stdout.isatty()
    width = max(len(label) for label, _, _ in runs)
    print(f"{'how':<{width}}  wall time")
    print(f"{'-' * width}  ---------", flush=True)
    rows: list[tuple[str, float]] = []
    for label, expected, run in runs:
        status = f"timing {label} (about {expected:g} s)..."
        # On a terminal the status line is replaced by the row; in a pipe or
        # a log it stays, one line each.
        print(status, end="" if tty else "\n", flush=True)
        seconds = _timed(run)
        if tty:
            print("\r\x1b[K", end="")
        print(f"{label:<{width}}  {seconds:8.2f} s", flush=True)
        rows.append((label, seconds))
    print()
    print(
        "run_blocking ran the blocking time.sleep calls in worker threads, so the\n"
        "event loop waited for all of them at once, just like native asyncio code."
    )
    return rows
