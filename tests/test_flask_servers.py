"""examples/flask_app.py under real servers: gunicorn (gthread, sync, --preload), dev server.

Loopback only; every server is stopped by its pid (process group) at the end.
"""

from __future__ import annotations

import json
import socket
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from _servers import fetch_all, free_port, running_server

ROOT = Path(__file__).resolve().parent.parent
APP = "examples.flask_app:app"

pytestmark = pytest.mark.skipif(
    sys.platform == "win32", reason="gunicorn and process groups are POSIX-only"
)


def _gunicorn(port: int, *options: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "--bind",
        f"127.0.0.1:{port}",
        "--graceful-timeout",
        "5",
        *options,
        APP,
    ]


def _check_items(results: list[tuple[int, bytes]], items: list[int]) -> set[int]:
    """Check every /item response; return the worker pids that answered."""
    loops_by_pid: dict[int, set[int]] = {}
    for (status, body), item in zip(results, items, strict=True):
        assert status == 200, body
        data = json.loads(body)
        assert data["item"] == item
        assert data["stock"] == item * 7 % 100
        assert data["same_loop"] is True  # the shared Inventory ran on this loop
        loops_by_pid.setdefault(data["pid"], set()).add(data["loop"])
    # One persistent loop per process, whichever server thread took the request.
    assert all(len(loops) == 1 for loops in loops_by_pid.values()), loops_by_pid
    return set(loops_by_pid)


def test_gunicorn_gthread_preload_serves_hundreds_of_concurrent_requests() -> None:
    port = free_port()
    argv = _gunicorn(port, "--worker-class", "gthread", "--workers", "2")
    argv[-1:-1] = ["--threads", "8", "--preload"]
    base = f"http://127.0.0.1:{port}"
    items = list(range(300))
    with running_server(argv, port, cwd=ROOT):
        results = fetch_all([f"{base}/item/{i}" for i in items], 32, timeout=60)
        _check_items(results, items)
        others = fetch_all(
            [f"{base}/stream?count=50"] * 20
            + [f"{base}/sync"] * 20
            + [f"{base}/slow"] * 4,
            16,
            timeout=60,
        )
    expected_stream = "".join(f"{n}\n" for n in range(50)).encode()
    assert others[:20] == [(200, expected_stream)] * 20
    assert others[20:40] == [(200, b"sync")] * 20
    assert [status for status, _ in others[40:]] == [504] * 4


def test_gunicorn_client_disconnect_closes_the_stream_and_background_runs() -> None:
    port = free_port()
    argv = _gunicorn(port, "--worker-class", "gthread", "--threads", "4")
    base = f"http://127.0.0.1:{port}"
    with running_server(argv, port, cwd=ROOT), httpx.Client(trust_env=False) as http:
        before = http.get(f"{base}/stats").json()
        # An endless, slow stream: read its first line, then hang up.
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(
                b"GET /stream?count=100000&delay=0.01 HTTP/1.1\r\n"
                b"Host: 127.0.0.1\r\n\r\n"
            )
            received = b""
            while b"\n0\n" not in received and b"\r\n0\r\n" not in received:
                chunk = sock.recv(4096)
                assert chunk, "the server closed the stream early"
                received += chunk
        for _ in range(5):
            assert http.post(f"{base}/background").status_code == 202
        stats = _poll_stats(
            http,
            f"{base}/stats",
            lambda s: (
                s["streams_closed"] > before["streams_closed"]
                and s["background_runs"] >= before["background_runs"] + 5
            ),
        )
    assert stats["background_runs"] == before["background_runs"] + 5


def _poll_stats(http: httpx.Client, url: str, done: Any) -> dict[str, int]:
    deadline = time.monotonic() + 20
    while True:
        stats: dict[str, int] = http.get(url).json()
        if done(stats):
            return stats
        assert time.monotonic() < deadline, f"condition not reached: {stats}"
        time.sleep(0.05)


def test_gunicorn_sync_worker_with_preload() -> None:
    port = free_port()
    argv = _gunicorn(port, "--worker-class", "sync", "--workers", "2", "--preload")
    base = f"http://127.0.0.1:{port}"
    items = list(range(40))
    with running_server(argv, port, cwd=ROOT):
        results = fetch_all([f"{base}/item/{i}" for i in items], 4, timeout=60)
        stats = httpx.get(f"{base}/stats", trust_env=False).json()
    _check_items(results, items)
    # --preload: the app (and its import-time call) ran once, in the master.
    assert stats["imported_by"] != stats["pid"]


def test_flask_dev_server() -> None:
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "flask",
        "--app",
        "examples/flask_app.py",
        "run",
        "--port",
        str(port),
        "--host",
        "127.0.0.1",
    ]
    base = f"http://127.0.0.1:{port}"
    items = list(range(60))
    with running_server(argv, port, cwd=ROOT):
        results = fetch_all([f"{base}/item/{i}" for i in items], 8, timeout=60)
        slow = fetch_all([f"{base}/slow"], 1, timeout=30)
    _check_items(results, items)
    assert slow[0][0] == 504


def test_tutorial_apps_under_flask_run_and_uvicorn() -> None:
    """The tutorial's server commands work as written (docs/tutorial/web-apps.md)."""
    examples = ROOT / "docs" / "examples"
    flask_port, uvicorn_port = free_port(), free_port()
    flask_argv = [sys.executable, "-m", "flask", "--app", "tutorial_flask_app", "run"]
    flask_argv += ["--port", str(flask_port)]
    uvicorn_argv = [sys.executable, "-m", "uvicorn", "tutorial_fastapi_app:app"]
    uvicorn_argv += ["--port", str(uvicorn_port)]
    with (
        running_server(flask_argv, flask_port, cwd=examples),
        running_server(uvicorn_argv, uvicorn_port, cwd=examples),
        httpx.Client(trust_env=False) as http,
    ):
        baskets = [http.get(f"http://127.0.0.1:{flask_port}/basket") for _ in range(3)]
        where = http.get(f"http://127.0.0.1:{uvicorn_port}/where/Lisbon")
    assert [r.json() for r in baskets] == [{"loops_so_far": 1, "total": 14.49}] * 3
    assert where.json() == {"city": "Lisbon", "lat": 38.7, "lon": -9.1}


def test_gunicorn_worker_exit_hook_closes_the_shared_client() -> None:
    """docs/howto/flask.md: the client is closed on its loop as each worker exits."""
    examples = ROOT / "docs" / "examples"
    port = free_port()
    argv = [sys.executable, "-m", "gunicorn", "-c", "flask_gunicorn_conf.py"]
    argv += ["--bind", f"127.0.0.1:{port}", "--workers", "2"]
    argv += ["--graceful-timeout", "5", "flask_shared_client:app"]
    output: list[str] = []
    with (
        running_server(argv, port, cwd=examples, output=output),
        httpx.Client(trust_env=False) as http,
    ):
        answers = [http.get(f"http://127.0.0.1:{port}/users/{n}") for n in range(8)]
    assert [a.text for a in answers] == [f"GET /users/{n}: 200" for n in range(8)]
    (log,) = output
    assert log.count("closed the shared client") == 2, log
    assert "Exception during worker exit" not in log, log
