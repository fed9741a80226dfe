"""A tiny upstream service for the HTTP benchmarks: one line in, one line out.

``python benchmarks/_upstream.py PORT`` listens on 127.0.0.1:PORT. For each line
``<ms>\\n`` a client sends, it waits *ms* milliseconds (asyncio timers, so the same
for every client) and answers ``ok\\n``. Connections stay open for as many
requests as the client sends, as a database or HTTP/1.1 keep-alive peer would.
"""

from __future__ import annotations

import asyncio
import sys


async def serve_client(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    try:
        while line := await reader.readline():
            ms = int(line)
            if ms:
                await asyncio.sleep(ms / 1000)
            writer.write(b"ok\n")
            await writer.drain()
    except (ConnectionError, ValueError):
        pass
    finally:
        writer.close()


async def main(port: int) -> None:
    server = await asyncio.start_server(serve_client, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
