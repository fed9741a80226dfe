"""How-to: one async client for every request of a Flask worker, closed at its exit."""

from __future__ import annotations

import asyncio

import flask

import syncbridge
from syncbridge.flask import SyncBridge


class AsyncClient:
    """Stands in for an httpx.AsyncClient: its connections belong to one loop."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.closed = False

    async def get(self, path: str) -> str:
        if self.loop is None:  # the first request opens the connections
            self.loop = asyncio.get_running_loop()
        await asyncio.sleep(0.01)
        return f"GET {path}: 200"

    async def aclose(self) -> None:
        if self.loop not in (None, asyncio.get_running_loop()):
            raise RuntimeError("Event loop is closed")  # what a real client says
        self.closed = True


app = flask.Flask(__name__)
SyncBridge(app)
client = AsyncClient()  # one per worker process, made when the app is imported


@app.get("/users/<int:n>")
async def user(n: int) -> str:
    return await client.get(f"/users/{n}")


def close_client() -> None:
    """Close the shared client on the loop it ran on (call it at worker exit)."""
    syncbridge.sync_call_async(client.aclose)


if __name__ == "__main__":
    with app.test_client() as http:
        print(http.get("/users/1").text)
        print(http.get("/users/2").text)
    close_client()  # what gunicorn's worker_exit hook does (flask_gunicorn_conf.py)
    print(f"client closed: {client.closed}")
