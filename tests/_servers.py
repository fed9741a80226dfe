"""Run a real web server in a subprocess on loopback, and drive it with httpx.

Shared by the integration tests (uvicorn, gunicorn). Not a test module: pytest
collects ``test_*.py`` only, and puts this directory on ``sys.path`` (rootdir
"prepend" import mode), so tests import it as ``from _servers import ...``.
"""

from __future__ import annotations

__all__ = ("ServerError", "fetch_all", "free_port", "running_server")

import contextlib
import ipaddress
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import IO, TYPE_CHECKING

import anyio
import httpx

if TYPE_CHECKING:
    from collections.abc import Iterator

LOOPBACK = "127.0.0.1"
STOP_TIMEOUT = 10.0
"""Seconds a server gets to exit after SIGTERM before it is killed."""


class ServerError(RuntimeError):
    """The server did not start, or did not stop; the message has its output."""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def running_server(
    argv: list[str],
    port: int,
    *,
    env: dict[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    ready_timeout: float = 30.0,
    output: list[str] | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """Start ``argv`` in a new session; yield it once 127.0.0.1:*port* accepts.

    The server's stdout and stderr go to one temporary file, quoted in every
    failure. On exit the whole process group gets SIGTERM, then SIGKILL after
    :data:`STOP_TIMEOUT` seconds, and the group must be gone.

    Args:
        argv: The server command line; it must listen on 127.0.0.1:*port*.
        port: The port to poll for readiness (see :func:`free_port`).
        env: Variables added to (or replacing those of) this process's environment.
        cwd: Working directory of the server.
        ready_timeout: Seconds to wait for the port to accept connections.
        output: If given, the server's whole output is appended to it once the
            server has stopped.

    Raises:
        ServerError: If the server exits or is not ready in time, or its process
            group outlives the stop sequence.
    """
    if sys.platform == "win32":  # pragma: no cover - process groups are POSIX
        raise ServerError("running_server() needs POSIX process groups")
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=full_env,
            cwd=cwd,
            start_new_session=True,
        )
        try:
            _wait_ready(proc, port, ready_timeout, log)
            yield proc
        finally:
            _stop(proc, log)
            if output is not None:
                output.append(_output(log))


def _output(log: IO[bytes]) -> str:
    log.flush()
    log.seek(0)
    return log.read().decode(errors="replace")


def _wait_ready(
    proc: subprocess.Popen[bytes], port: int, timeout: float, log: IO[bytes]
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise ServerError(
                f"server exited with status {proc.returncode} before accepting "
                f"connections on {LOOPBACK}:{port}; argv={proc.args!r}; "
                f"output:\n{_output(log)}"
            )
        try:
            with socket.create_connection((LOOPBACK, port), timeout=0.5):
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise ServerError(
                f"server not accepting connections on {LOOPBACK}:{port} after "
                f"{timeout} s; argv={proc.args!r}; output:\n{_output(log)}"
            )
        time.sleep(0.05)


def _stop(proc: subprocess.Popen[bytes], log: IO[bytes]) -> None:
    pgid = proc.pid  # start_new_session: the server leads its own group
    _signal_group(pgid, signal.SIGTERM)
    try:
        proc.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        _signal_group(pgid, signal.SIGKILL)
        proc.wait(STOP_TIMEOUT)
    # Children (gunicorn workers) may outlive the leader by a moment.
    deadline = time.monotonic() + STOP_TIMEOUT
    while _group_alive(pgid):
        if time.monotonic() > deadline:
            _signal_group(pgid, signal.SIGKILL)
            time.sleep(0.5)
            if _group_alive(pgid):
                raise ServerError(
                    f"process group {pgid} survived SIGTERM and SIGKILL; "
                    f"output:\n{_output(log)}"
                )
            break
        time.sleep(0.05)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def _group_alive(pgid: int) -> bool:
    """Whether a process of group *pgid* runs (zombies awaiting a reaper don't)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - someone else's process
        return True
    try:
        entries = os.listdir("/proc")
    except OSError:  # pragma: no cover - no procfs: trust kill(0)
        return True
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # pid (comm) state ppid pgrp ...; comm may contain spaces and parens.
        fields = stat[stat.rfind(b")") + 2 :].split()
        if int(fields[2]) == pgid and fields[0] != b"Z":
            return True
    return False


def fetch_all(
    urls: list[str], concurrency: int, timeout: float
) -> list[tuple[int, bytes]]:
    """GET every URL, at most *concurrency* at once; return (status, body) in order.

    Only loopback URLs are allowed, and the whole run must finish within
    *timeout* seconds (else :class:`TimeoutError`). Proxies from the environment
    are ignored.

    Raises:
        ValueError: If a URL is not on a loopback address, or *concurrency* < 1.
        TimeoutError: If the requests did not all finish in time.
    """
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {concurrency}")
    for url in urls:
        host = httpx.URL(url).host
        if host != "localhost" and not ipaddress.ip_address(host).is_loopback:
            raise ValueError(f"fetch_all() only talks to loopback, got {url!r}")
    results: list[tuple[int, bytes] | None] = [None] * len(urls)

    async def main() -> None:
        limit = anyio.Semaphore(concurrency)
        limits = httpx.Limits(max_connections=concurrency)
        async with httpx.AsyncClient(
            trust_env=False, limits=limits, timeout=timeout
        ) as client:

            async def one(i: int, url: str) -> None:
                async with limit:
                    response = await client.get(url)
                    results[i] = (response.status_code, response.content)

            with anyio.fail_after(timeout):
                async with anyio.create_task_group() as tg:
                    for i, url in enumerate(urls):
                        tg.start_soon(one, i, url)

    anyio.run(main)
    done = [r for r in results if r is not None]
    assert len(done) == len(urls)
    return done
