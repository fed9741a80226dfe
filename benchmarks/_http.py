"""Shared helpers for the HTTP benchmarks: a server subprocess, wrk, a results table.

Not a benchmark itself (the ``nox -s bench`` session runs ``bench_*.py`` only).

Method, used by every HTTP benchmark:

* Each server runs in its own process (its own session, so it is stopped with
  its children) on a free 127.0.0.1 port, and is probed until it accepts.
* A *row* is one URL measured by `wrk <https://github.com/wg/wrk>`_ with
  ``--latency``: a short untimed warm-up run, then a timed run. Rows are run
  round-robin (order rotated each round), so slow drifts of a noisy machine hit
  all of them alike; tables show the median over the rounds of requests/s, p50
  and p99, and the ratio of requests/s to a stated baseline row.
* wrk runs with one thread: the machine's cores are better spent on the server.
* After every wrk run the driver pauses :data:`SETTLE` seconds, so requests
  still queued in the server (the anti-pattern row leaves a backlog on its
  blocked loop) never spill into the next row's figures.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence

WRK_MISSING = (
    "wrk is not installed, so the HTTP benchmarks are skipped: install wrk "
    "(apt-get install wrk, or brew install wrk) and run again."
)


SETTLE = 0.5
"""Seconds of quiet after each wrk run."""


def find_wrk() -> str | None:
    """Return the path of ``wrk``, or print how to install it and return None."""
    path = shutil.which("wrk")
    if path is None:
        print(WRK_MISSING)
    return path


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def server(
    argv: Sequence[str],
    port: int,
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    ready_timeout: float = 30.0,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``argv`` (listening on 127.0.0.1:*port*) for the duration of the block."""
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
            cwd=cwd,
            start_new_session=True,
        )
        try:
            _wait_ready(proc, port, ready_timeout, log)
            yield proc
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)


def _wait_ready(
    proc: subprocess.Popen[bytes], port: int, timeout: float, log: IO[bytes]
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None or time.monotonic() > deadline:
            log.seek(0)
            output = log.read().decode(errors="replace")
            sys.exit(f"server {proc.args!r} did not start:\n{output}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)


# -- wrk ----------------------------------------------------------------------


@dataclass(frozen=True)
class WrkResult:
    """One wrk run: throughput, latency percentiles, and what went wrong."""

    requests_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int
    """Socket errors (connect, read, write, timeout) plus non-2xx/3xx responses."""


_UNITS_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}
_PERCENTILE = re.compile(
    r"^\s*(50|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s|m)\s*$", re.MULTILINE
)
_RPS = re.compile(r"^Requests/sec:\s+([\d.]+)", re.MULTILINE)
_SOCKET_ERRORS = re.compile(
    r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)"
)
_NON_2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")


def parse_wrk(output: str) -> WrkResult:
    """Parse the text wrk prints with ``--latency``."""
    rps = _RPS.search(output)
    percentiles = {
        int(p): float(value) * _UNITS_MS[unit]
        for p, value, unit in _PERCENTILE.findall(output)
    }
    if rps is None or set(percentiles) != {50, 99}:
        raise ValueError(f"cannot parse wrk output:\n{output}")
    errors = sum(int(n) for m in _SOCKET_ERRORS.finditer(output) for n in m.groups())
    errors += sum(int(m.group(1)) for m in _NON_2XX.finditer(output))
    return WrkResult(float(rps.group(1)), percentiles[50], percentiles[99], errors)


def run_wrk(
    wrk: str, url: str, *, connections: int, duration: float, threads: int = 1
) -> WrkResult:
    """Load *url* for *duration* seconds with *connections* keep-alive connections."""
    argv = [
        wrk,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(duration))}s",
        "--timeout",
        "10s",
        "--latency",
        url,
    ]
    proc = subprocess.run(
        argv, capture_output=True, text=True, timeout=duration + 60, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{argv} failed:\n{proc.stdout}\n{proc.stderr}")
    time.sleep(SETTLE)
    return parse_wrk(proc.stdout)


# -- rows and tables ---------------------------------------------------------------


@dataclass
class Row:
    """One measured URL and its results, one per round."""

    name: str
    url: str
    results: list[WrkResult] = field(default_factory=list)

    @property
    def rps(self) -> float:
        """Median requests/s over the rounds."""
        return statistics.median(r.requests_per_s for r in self.results)

    @property
    def p50(self) -> float:
        """Median over the rounds of the p50 latency, in ms."""
        return statistics.median(r.p50_ms for r in self.results)

    @property
    def p99(self) -> float:
        """Median over the rounds of the p99 latency, in ms."""
        return statistics.median(r.p99_ms for r in self.results)

    @property
    def errors(self) -> int:
        """Errors over all rounds."""
        return sum(r.errors for r in self.results)


def measure(
    wrk: str,
    rows: Sequence[Row],
    *,
    rounds: int,
    duration: float,
    warmup: float,
    connections: int,
) -> None:
    """Warm every row up, then run *rounds* rotated rounds of timed wrk runs."""
    for row in rows:
        run_wrk(wrk, row.url, connections=connections, duration=warmup)
    for r in range(rounds):
        k = r % len(rows)
        for row in [*rows[k:], *rows[:k]]:
            row.results.append(
                run_wrk(wrk, row.url, connections=connections, duration=duration)
            )


def print_rows(
    title: str, rows: Sequence[Row], baseline: str, notes: Sequence[str] = ()
) -> None:
    """Print req/s, p50, p99 and errors, with req/s as a ratio to *baseline*'s."""
    base = next(row for row in rows if row.name == baseline).rps
    width = max(len(row.name) for row in rows) + 2
    print(f"## {title}")
    for note in notes:
        print(f"   {note}")
    print(
        f"   {'route':<{width}}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}"
        f"   req/s vs {baseline}"
    )
    for row in rows:
        print(
            f"   {row.name:<{width}}{row.rps:>9,.0f}{row.p50:>9.1f}{row.p99:>9.1f}"
            f"{row.errors:>8}   {row.rps / base:>6.2f}x"
        )
    print()
