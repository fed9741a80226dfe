"""Issue #25's outage through real servers: a saturated pool answers 503 at once.

A pool of 10 (``max_wait=0.5``) whose function hangs, 32 concurrent clients:
the 10 that got a slot answer 200 once the function is released; the 22 others
get a 503 with ``Retry-After`` within ``max_wait`` plus a generous bound, while
the 10 still hang. None gets a 504. Under uvicorn (FastAPI) and gunicorn's
threaded worker (Flask), on 127.0.0.1.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import anyio
import httpx
import pytest

from _servers import free_port, running_server

ROOT = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent
CAPACITY = 10
MAX_WAIT = 0.5
ENV = {"OUTAGE_CAPACITY": str(CAPACITY), "OUTAGE_MAX_WAIT": str(MAX_WAIT)}
"""The db pool's settings, given to the apps (tests/_outage_apps.py)."""
CLIENTS = 32
BOUND = 5.0
"""Seconds past max_wait a refusal may take on a loaded machine (it takes ms)."""
WAIT = 30.0
"""Upper bound for the whole run; never reached when the test passes."""

Answer = tuple[int, float, httpx.Headers, str]
"""A client's status, seconds from send to answer, headers and body."""

pytestmark = pytest.mark.skipif(
    sys.platform == "win32", reason="running_server() uses POSIX process groups"
)


def outage(base: str) -> list[Answer]:
    """Send CLIENTS queries at once; release the pool once the refused are answered.

    Returns the answers in the order they came.
    """
    answers: list[Answer] = []
    refused = CLIENTS - CAPACITY

    async def main() -> None:
        limits = httpx.Limits(max_connections=CLIENTS + 1)
        async with httpx.AsyncClient(
            trust_env=False, limits=limits, timeout=WAIT
        ) as client:
            # The server listens before its worker has loaded the app (gunicorn
            # boots it then): wait for an answer, so the clock below is the pool's.
            assert (await client.get(f"{base}/ready")).status_code == 404
            all_refused = anyio.Event()

            async def one() -> None:
                sent = time.monotonic()
                response = await client.get(f"{base}/query")
                answers.append(
                    (
                        response.status_code,
                        time.monotonic() - sent,
                        response.headers,
                        response.text,
                    )
                )
                if len(answers) == refused:
                    all_refused.set()

            with anyio.fail_after(WAIT):
                async with anyio.create_task_group() as tg:
                    for _ in range(CLIENTS):
                        tg.start_soon(one)
                    await all_refused.wait()
                    # Only now does the database come back: the refused did
                    # not wait for it.
                    assert (await client.post(f"{base}/release")).status_code == 200

    anyio.run(main)
    return answers


def check(answers: list[Answer]) -> None:
    refused = answers[: CLIENTS - CAPACITY]
    ran = answers[CLIENTS - CAPACITY :]
    assert [status for status, *_ in refused] == [503] * (CLIENTS - CAPACITY)
    for _, seconds, headers, _ in refused:
        assert headers["Retry-After"] == "1"  # max_wait 0.5 s, rounded up
        assert seconds < MAX_WAIT + BOUND
    assert [(status, json.loads(body)) for status, _, _, body in ran] == [
        (200, {"result": "ok"})
    ] * CAPACITY


def test_fastapi_under_uvicorn_answers_every_client_of_a_saturated_pool() -> None:
    port = free_port()
    argv = [sys.executable, "-m", "uvicorn", "_outage_apps:fastapi_app"]
    argv += ["--app-dir", str(TESTS), "--host", "127.0.0.1", "--port", str(port)]
    argv += ["--workers", "1", "--log-level", "warning"]
    with running_server(argv, port, env=ENV, cwd=ROOT) as server:
        answers = outage(f"http://127.0.0.1:{port}")
        assert server.poll() is None, "the server died"
    check(answers)
    for _, _, headers, body in answers[: CLIENTS - CAPACITY]:
        assert headers["Content-Type"] == "application/json"
        assert "too busy" in json.loads(body)["detail"]


def test_flask_under_gunicorn_answers_every_client_of_a_saturated_pool() -> None:
    port = free_port()
    argv = [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}"]
    argv += ["--pythonpath", str(TESTS), "--worker-class", "gthread"]
    argv += ["--workers", "1", "--threads", str(CLIENTS + 8)]
    argv += ["--graceful-timeout", "5", "_outage_apps:flask_app"]
    with running_server(argv, port, env=ENV, cwd=ROOT) as server:
        answers = outage(f"http://127.0.0.1:{port}")
        assert server.poll() is None, "the server died"
    check(answers)
    for _, _, _, body in answers[: CLIENTS - CAPACITY]:
        assert "too busy" in body  # werkzeug's HTML error page
