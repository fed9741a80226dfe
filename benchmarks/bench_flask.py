"""Async Flask views: syncbridge.flask vs Flask's own async support vs a sync view.

Three gunicorn servers with the same settings (gthread, 1 worker x 8 threads) run
the same view (benchmarks/_flask_apps.py); wrk loads each with 32 connections,
round-robin, medians over the rounds. Two kinds of "I/O", at 0 ms and 10 ms:

* ``/io/<ms>``: ``asyncio.sleep`` (``time.sleep`` in the sync view), as the issue
  specifies. A timer on a loop shared by 8 threads fires up to 1 ms late (epoll
  waits in whole milliseconds), which a loop per request does not see.
* ``/upstream/<ms>``: a real request to an upstream service over loopback TCP,
  each app in the best way open to it (see _flask_apps.py): this is where a loop
  that lives across requests pays off, by keeping connections open.

Targets, on ``/io``: at least 2x stock throughput at 0 ms and 1.25x at 10 ms
(issue #4; issue #15 asks for no loss at 0 ms and at least stock at 10 ms), and an
added cost per request over the sync view (1/rps_syncbridge - 1/rps_sync) of at
most 0.15 ms at 0 ms (#4) and 0.05 ms at 10 ms (#15). They close the output, as
``print_targets`` lines.

Run: ``python benchmarks/bench_flask.py [--rounds N] [--duration S]`` (needs wrk).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

from _harness import Target, print_targets
from _http import Row, find_wrk, free_port, measure, print_rows, server

ROOT = Path(__file__).resolve().parent.parent
APPS = ("stock", "bridged", "sync")
LABELS = {
    "stock": "Flask async (asgiref)",
    "bridged": "syncbridge.flask",
    "sync": "sync view",
}


def gunicorn(app: str, port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "--bind",
        f"127.0.0.1:{port}",
        "--worker-class",
        "gthread",
        "--workers",
        "1",
        "--threads",
        "8",
        "--log-level",
        "warning",
        f"benchmarks._flask_apps:{app}",
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args(argv)
    wrk = find_wrk()
    if wrk is None:
        return
    targets: list[Target] = []
    ports = {app: free_port() for app in APPS}
    upstream = free_port()
    env = {"UPSTREAM_PORT": str(upstream)}
    with contextlib.ExitStack() as stack:
        upstream_argv = [sys.executable, "benchmarks/_upstream.py", str(upstream)]
        stack.enter_context(server(upstream_argv, upstream, cwd=str(ROOT)))
        for app in APPS:
            argv = gunicorn(app, ports[app])
            stack.enter_context(server(argv, ports[app], env=env, cwd=str(ROOT)))
        for kind, ms in (("io", 0), ("io", 10), ("upstream", 0), ("upstream", 10)):
            rows = [
                Row(LABELS[app], f"http://127.0.0.1:{ports[app]}/{kind}/{ms}")
                for app in APPS
            ]
            measure(
                wrk,
                rows,
                rounds=args.rounds,
                duration=args.duration,
                warmup=args.warmup,
                connections=args.connections,
            )
            stock, bridged, sync = rows
            added_ms = (1 / bridged.rps - 1 / sync.rps) * 1000
            speedup = f"syncbridge vs stock: {bridged.rps / stock.rps:.2f}x"
            added = f"added cost over the sync view: {added_ms:.3f} ms/request"
            if kind == "io":
                target = 2.0 if ms == 0 else 1.25
                most_added = 0.15 if ms == 0 else 0.05
                notes = [
                    f"{speedup} (target >= {target}x)",
                    f"{added} (target <= {most_added})",
                ]
                what = "asyncio.sleep"
                targets += [
                    Target(
                        f"Flask {ms} ms: syncbridge / stock async (req/s)",
                        bridged.rps / stock.rps,
                        target,
                        at_most=False,
                    ),
                    Target(
                        f"Flask {ms} ms: added per request over the sync view",
                        added_ms,
                        most_added,
                        unit=" ms",
                    ),
                ]
            else:
                notes = [speedup, added]
                what = "an upstream over loopback TCP"
            print_rows(
                f"Flask async view, {ms} ms of {what} "
                f"(gunicorn gthread 1x8, wrk -c{args.connections}, "
                f"median of {args.rounds} x {args.duration:g} s)",
                rows,
                baseline=LABELS["stock"],
                notes=notes,
            )
    print_targets(targets)


if __name__ == "__main__":
    main()
