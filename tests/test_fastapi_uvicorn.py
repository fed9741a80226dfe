"""examples/fastapi_app.py under a real uvicorn on loopback, many requests at once."""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

import pytest

from _servers import fetch_all, free_port, running_server

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(
    sys.platform == "win32", reason="running_server() uses POSIX process groups"
)


def test_example_app_under_uvicorn_answers_every_request() -> None:
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "uvicorn",
        "examples.fastapi_app:app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--log-level",
        "warning",
    ]
    base = f"http://127.0.0.1:{port}"
    expected = {
        f"{base}/report?n=2": (200, {"rows": [{"row": 0}, {"row": 1}]}),
        f"{base}/legacy": (200, {"greeting": "hello, ada", "on_app_loop": True}),
        f"{base}/health": (200, {"ok": True}),
        f"{base}/export?seconds=0.02": (200, {"status": "exported"}),
    }
    urls = [url for url in expected for _ in range(80)]
    timeout_url = f"{base}/export?seconds=5"  # its timeout is 1 s
    urls += [timeout_url] * 4

    with running_server(argv, port, cwd=ROOT) as server:
        results = fetch_all(urls, concurrency=32, timeout=30.0)
        assert server.poll() is None, "the server died under load"

    counts = Counter(
        (url, status, json.dumps(json.loads(body), sort_keys=True))
        for url, (status, body) in zip(urls, results, strict=True)
    )
    for url, (status, body) in expected.items():
        assert counts[(url, status, json.dumps(body, sort_keys=True))] == 80, url
    timeouts = [r for u, r in zip(urls, results, strict=True) if u == timeout_url]
    assert [status for status, _ in timeouts] == [504] * 4
    assert len(results) == 4 * 80 + 4
