"""Compare the output a page shows with what really ran: for the docs and README tests.

Beside the tests (pytest's "prepend" import mode puts this directory on
``sys.path``), so tests import it as ``from _shown_output import mismatch``.
"""

from __future__ import annotations

__all__ = ("ELLIPSIS", "NORMALISE", "matches", "mismatch", "normalise")

import difflib
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# What may differ from one run to the next, and nothing else: a page shows one
# run's figures. Each pattern is replaced on both sides before comparing.
NORMALISE = [
    # A measured duration as the examples print it: "in 0.20 s", "1.01 s".
    (re.compile(r"\b\d+\.\d\d s\b"), "N.NN s"),
    # An object's address in a repr.
    (re.compile(r"\b0x[0-9a-fA-F]+\b"), "0xADDR"),
    # A Prometheus sample measured in seconds: a gauge (the portal loop's lag), a
    # counter of seconds (busy_seconds_total) or a histogram's sum. Not a count:
    # a histogram's buckets and _count, and the calls counters, stay as shown.
    (
        re.compile(r"^(\w+_seconds(?:_total|_sum)?(?:\{[^}]*\})?) \S+$"),
        r"\1 N",
    ),
    # Where this checkout is: a traceback names files by their absolute path.
    (re.compile(re.escape(ROOT.as_posix() + "/")), ""),
]
ELLIPSIS = "..."
"""A page line that is just this stands for any number of output lines."""


def normalise(line: str) -> str:
    """*line* with the figures that vary between runs (:data:`NORMALISE`) replaced."""
    line = line.rstrip()
    for pattern, replacement in NORMALISE:
        line = pattern.sub(replacement, line)
    return line


def matches(shown: list[str], real: list[str]) -> bool:
    """Whether *real* is *shown*, where an :data:`ELLIPSIS` line stands for any lines.

    Both sides are normalised first.
    """
    expected = [normalise(s) for s in shown]
    actual = [normalise(r) for r in real]
    # reachable[j]: the expected lines so far can match actual[:j]
    reachable = [True] + [False] * len(actual)
    for want in expected:
        if want.strip() == ELLIPSIS:
            for j in range(1, len(actual) + 1):
                reachable[j] = reachable[j] or reachable[j - 1]
        else:
            reachable = [False] + [
                reachable[j] and actual[j] == want for j in range(len(actual))
            ]
    return reachable[-1]


def mismatch(shown: list[str], real: list[str], where: str, what: str) -> str | None:
    """None if *real* :func:`matches` *shown*; else a message with their diff.

    *where* names the page lines that show the output, *what* the run.
    """
    if matches(shown, real):
        return None
    diff = "\n".join(
        difflib.unified_diff(
            [normalise(s) for s in shown],
            [normalise(r) for r in real],
            f"shown ({where})",
            f"printed by {what}",
            lineterm="",
        )
    )
    return (
        f"{where} does not show what {what} prints (after normalising timings, "
        f"addresses and paths; a '{ELLIPSIS}' line on the page stands for any "
        f"lines):\n{diff}"
    )
