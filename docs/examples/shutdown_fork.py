"""How-to: the default bridge survives fork (what ``gunicorn --preload`` does)."""

from __future__ import annotations

import asyncio
import os
import sys
import warnings

import syncbridge


async def whoami() -> int:
    await asyncio.sleep(0)
    return os.getpid()


def main() -> int:
    if not hasattr(os, "fork"):
        print("no fork() on this platform")
        return 0
    # The parent uses the default bridge, which starts its portal thread.
    assert syncbridge.sync_call_async(whoami) == os.getpid()
    with warnings.catch_warnings():
        # Python 3.12+ warns that forking a process with threads is risky; the
        # child here touches none of the parent's threads, as syncbridge ensures.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child: its default bridge is a fresh one, started on use
        ok = syncbridge.sync_call_async(whoami) == os.getpid()
        sys.stdout.flush()
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    print(f"child exit status: {os.waitstatus_to_exitcode(status)}")
    return os.waitstatus_to_exitcode(status)


if __name__ == "__main__":
    raise SystemExit(main())
