"""Tutorial, step 2: call async code from a plain script, on one persistent loop."""

from __future__ import annotations

import asyncio

import syncbridge


class Client:
    """Stands in for an async client (an httpx.AsyncClient, a database pool).

    It lends out two connections, and a request waits for a free one. Like
    every asyncio object that waits, its queue of free connections belongs to
    the event loop it first waited on.
    """

    def __init__(self) -> None:
        self.free: asyncio.Queue[str] = asyncio.Queue()
        for conn in ("conn-a", "conn-b"):
            self.free.put_nowait(conn)

    async def get(self, path: str) -> str:
        conn = await self.free.get()  # the third request waits here
        try:
            await asyncio.sleep(0.01)
            return f"{path} via {conn}"
        finally:
            self.free.put_nowait(conn)

    async def get_all(self, *paths: str) -> list[str]:
        return await asyncio.gather(*(self.get(path) for path in paths))


def main() -> None:
    client = Client()
    for call in range(1, 4):
        pages = syncbridge.sync_call_async(client.get_all, "/a", "/b", "/c")
        print(f"call {call}: {len(pages)} pages")

    # The usual glue instead: a new event loop for each call.
    client = Client()
    for call in range(1, 3):
        try:
            pages = asyncio.run(client.get_all("/a", "/b", "/c"))
        except RuntimeError as exc:
            print(f"asyncio.run(), call {call}: RuntimeError: {exc}")
        else:
            print(f"asyncio.run(), call {call}: {len(pages)} pages")


if __name__ == "__main__":
    main()
