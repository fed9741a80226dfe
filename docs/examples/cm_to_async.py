"""How-to: use a blocking context manager (a DB transaction) with `async with`."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import time
from typing import TYPE_CHECKING

import syncbridge

if TYPE_CHECKING:
    from collections.abc import Iterator

log: list[tuple[str, str]] = []  # (what happened, on which thread)


def note(what: str) -> None:
    log.append((what, threading.current_thread().name))


@contextlib.contextmanager
def transaction(path: str) -> Iterator[sqlite3.Connection]:
    """Blocking enter (connect) and exit (commit or roll back, then close)."""
    time.sleep(0.01)  # connecting can block
    conn = sqlite3.connect(path)  # bound to this thread: exit must run here too
    note("enter")
    try:
        yield conn
        conn.commit()
        note("commit")
    except BaseException:
        conn.rollback()
        note("rollback")
        raise
    finally:
        conn.close()


async def main() -> None:
    async with syncbridge.to_async_cm(transaction(":memory:")) as conn:
        await asyncio.sleep(0)  # the body runs in this task and may await
        assert conn.total_changes == 0

    try:
        async with syncbridge.to_async_cm(transaction(":memory:")):
            raise KeyError("bad input")
    except KeyError as exc:
        print(f"the block's exception passed through: {exc!r}")

    for what, thread in log:
        print(f"{what:>8} on {thread}")
    (_, first), (_, first_exit), (_, second), (_, second_exit) = log
    assert [what for what, _ in log] == ["enter", "commit", "enter", "rollback"]
    assert first == first_exit  # exit ran on the thread that entered
    assert second == second_exit
    assert first.startswith("syncbridge-to_async_cm-")  # a thread of its own
    assert first != second  # one thread per block


if __name__ == "__main__":
    asyncio.run(main())
