"""Tutorial, step 2: call async code from a plain script, on one persistent loop."""

from __future__ import annotations

import asyncio

import syncbridge


class Counter:
    """Stands in for an async client: it holds a lock bound to the loop it met."""

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.calls = 0

    async def bump(self) -> int:
        async with self.lock:  # would fail if each call ran on a new loop
            await asyncio.sleep(0.01)
            self.calls += 1
            return self.calls


def main() -> None:
    counter = Counter()
    for _ in range(3):
        n = syncbridge.sync_call_async(counter.bump)
        print(f"call {n} done")
    assert counter.calls == 3


if __name__ == "__main__":
    main()
