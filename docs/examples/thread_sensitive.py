"""How-to: keep a thread-bound object (a sqlite3 connection) on one thread."""

from __future__ import annotations

import asyncio
import sqlite3
import threading

import syncbridge

_db: sqlite3.Connection | None = None


@syncbridge.to_async(thread_sensitive=True)
def open_db() -> str:
    """Create the connection on the bridge's one thread-sensitive thread."""
    global _db
    _db = sqlite3.connect(":memory:")  # check_same_thread=True by default
    _db.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, name TEXT)")
    return threading.current_thread().name


@syncbridge.to_async(thread_sensitive=True)
def add_event(name: str) -> str:
    """Every call runs on that same thread, one at a time, in call order."""
    assert _db is not None, "call open_db() first"
    with _db:
        _db.execute("INSERT INTO events (name) VALUES (?)", (name,))
    return threading.current_thread().name


@syncbridge.to_async(thread_sensitive=True)
def event_names() -> list[str]:
    assert _db is not None, "call open_db() first"
    return [row[0] for row in _db.execute("SELECT name FROM events ORDER BY id")]


async def main() -> None:
    opened_on = await open_db()
    # Concurrent callers still run one after another on the same thread.
    threads = await asyncio.gather(*(add_event(f"e{i}") for i in range(5)))
    assert set(threads) == {opened_on}
    print(f"all calls ran on {opened_on}")
    print(await event_names())


if __name__ == "__main__":
    asyncio.run(main())
