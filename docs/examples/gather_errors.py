"""How-to: what gather_with_timeout does when an awaitable fails."""

from __future__ import annotations

import asyncio
import traceback

import syncbridge


class PageMissing(Exception):
    pass


async def fetch(page: str) -> str:
    await asyncio.sleep(0.01)
    if page == "gone":
        raise PageMissing(page)
    return f"<html>{page}</html>"


async def slow_upload() -> str:
    try:
        await asyncio.sleep(5)
        return "uploaded"
    finally:
        # Cleanup that fails while the upload is being cancelled.
        raise ConnectionResetError("connection lost while aborting the upload")


async def main() -> None:
    # 1. The first failure cancels the others and propagates: the same object,
    #    not an exception group. Failures during their cancellation become notes.
    try:
        await syncbridge.gather_with_timeout(
            fetch("home"), fetch("gone"), slow_upload(), timeout=5.0
        )
    except PageMissing as exc:
        notes: list[str] = getattr(exc, "__notes__", [])
        print(f"caught {exc!r} with {len(notes)} note(s)")
        print(notes[0].splitlines()[0])
        assert notes[0].startswith("awaitable #2 also failed")
        printed = "".join(traceback.format_exception(exc))
        assert "ConnectionResetError" in printed  # shown with the traceback

    # 2. return_exceptions=True: failures take their slots; nothing is cancelled.
    results = await syncbridge.gather_with_timeout(
        fetch("home"), fetch("gone"), fetch("blog"), timeout=5.0, return_exceptions=True
    )
    for slot in results:
        print("failed:" if isinstance(slot, BaseException) else "ok:    ", repr(slot))
    assert isinstance(results[1], PageMissing)
    assert results[2] == "<html>blog</html>"


if __name__ == "__main__":
    asyncio.run(main())
