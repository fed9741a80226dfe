"""How-to: one deadline over many awaitables, keeping what finished in time."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import syncbridge
from syncbridge import PENDING, GatherTimeout

if TYPE_CHECKING:
    from collections.abc import Sequence

# Seconds each fake request takes; two of them will miss the deadline.
DELAYS = {"home": 0.01, "about": 0.02, "slow": 5.0, "blog": 0.01, "stuck": 5.0}
cleaned_up: list[str] = []


async def fetch(page: str) -> str:
    """Stands in for an HTTP request made with an async client."""
    try:
        await asyncio.sleep(DELAYS[page])
        return f"<html>{page}</html>"
    finally:
        cleaned_up.append(page)  # runs for the cancelled requests too


async def main() -> None:
    pages = list(DELAYS)
    results: Sequence[object]  # a str, or PENDING where no answer came in time
    pending: list[int] = []
    try:
        results = await syncbridge.gather_with_timeout(
            *(fetch(page) for page in pages), timeout=0.3, limit=3
        )
    except GatherTimeout as exc:
        print(exc)
        results, pending = exc.results, exc.pending
        # Raised only after the unfinished requests were cancelled and finished:
        assert sorted(cleaned_up) == sorted(pages)

    for page, slot in zip(pages, results, strict=True):
        print(f"{page:>6}: {'(no answer in time)' if slot is PENDING else slot}")
    assert pending == [2, 4]  # input indices: "slow" and "stuck"
    assert results[0] == "<html>home</html>"
    assert results[2] is PENDING


if __name__ == "__main__":
    asyncio.run(main())
