"""Command line: ``python -m syncbridge demo [--count N] [--wait SECONDS]``."""

from __future__ import annotations

__all__ = ("main",)

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Parse *argv* and run the chosen command; return the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m syncbridge",
        description="syncbridge: bridge sync and async Python code.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo", help="time 10 one-second waits: sequential, asyncio, run_blocking"
    )
    demo.add_argument("--count", type=int, default=10, help="number of waits (10)")
    demo.add_argument("--wait", type=float, default=1.0, help="seconds per wait (1.0)")
    args = parser.parse_args(argv)
    if args.count < 1 or args.wait < 0:
        parser.error("--count must be >= 1 and --wait >= 0")
    from ._demo import run_demo

    run_demo(args.count, args.wait)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
