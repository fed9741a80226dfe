"""Command line: ``python -m syncbridge demo [--count N] [--wait SECONDS]``."""

from __future__ import annotations

__all__ = ("main",)

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

_DEMO_DESCRIPTION = """\
Time N waits of SECONDS each, done three ways: one after another with
time.sleep(), gathered with asyncio.sleep(), and gathered as blocking
time.sleep() calls run in worker threads by syncbridge.run_blocking(). Each row
is printed as soon as it is measured (about N x SECONDS + 2 x SECONDS in all).
"""


def _parser() -> argparse.ArgumentParser:
    from syncbridge import __version__

    parser = argparse.ArgumentParser(
        prog="python -m syncbridge",
        description="syncbridge: bridge sync and async Python code.",
        epilog="Run 'python -m syncbridge demo' to see the bridge at work.",
    )
    parser.add_argument(
        "--version", action="version", version=f"syncbridge {__version__}"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = commands.add_parser(
        "demo",
        help="time 10 one-second waits: sequential, asyncio, run_blocking",
        description=_DEMO_DESCRIPTION,
    )
    demo.add_argument(
        "--count", type=int, default=10, metavar="N", help="number of waits (10)"
    )
    demo.add_argument(
        "--wait",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="seconds per wait (1.0)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse *argv* and run the chosen command; return the exit status.

    With no command, print the help and return 0 (asking for help is no error).
    """
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    if args.count < 1 or args.wait < 0:
        parser.error("--count must be >= 1 and --wait >= 0")
    from ._demo import run_demo

    run_demo(args.count, args.wait)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
