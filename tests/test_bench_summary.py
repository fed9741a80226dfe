"""``nox -s bench`` closes with one table of every script's targets (#15)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"

SCRIPT = """
import sys
sys.path.insert(0, {benchmarks!r})
from _harness import Target, parse_args, print_targets
parse_args("x", ["--repeats", "4"])
print_targets([Target("fast vs peer", 0.8, 1.0), Target("slow vs peer", 1.5, 1.2)])
print_targets([Target("rps vs stock", 1.1, 1.0, at_most=False)], rounds=3)
print_targets([Target("ms added", 0.18, 0.05, unit=" ms")], rounds=3)
"""


def test_targets_of_every_script_reach_one_closing_table(tmp_path: Path) -> None:
    summary = tmp_path / "summary.jsonl"
    for name in ("bench_one.py", "bench_two.py"):
        script = tmp_path / name
        script.write_text(SCRIPT.format(benchmarks=str(BENCHMARKS)))
        subprocess.run(
            [sys.executable, str(script)],
            check=True,
            capture_output=True,
            env={"SYNCBRIDGE_BENCH_SUMMARY": str(summary), "PATH": ""},
        )
    out = subprocess.run(
        [sys.executable, str(BENCHMARKS / "_summary.py"), str(summary)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    rows = [
        re.split(r"\s{2,}", line.strip())
        for line in out.splitlines()
        if line.startswith("   bench_")
    ]
    # script, target, measured, goal, rounds, verdict: in the order printed
    assert rows == [
        ["bench_one.py", "fast vs peer", "0.80x", "<= 1", "4", "MET"],
        ["bench_one.py", "slow vs peer", "1.50x", "<= 1.2", "4", "NOT MET"],
        ["bench_one.py", "rps vs stock", "1.10x", ">= 1", "3", "MET"],
        ["bench_one.py", "ms added", "0.18 ms", "<= 0.05 ms", "3", "NOT MET"],
        ["bench_two.py", "fast vs peer", "0.80x", "<= 1", "4", "MET"],
        ["bench_two.py", "slow vs peer", "1.50x", "<= 1.2", "4", "NOT MET"],
        ["bench_two.py", "rps vs stock", "1.10x", ">= 1", "3", "MET"],
        ["bench_two.py", "ms added", "0.18 ms", "<= 0.05 ms", "3", "NOT MET"],
    ]
    assert out.rstrip().endswith("4 of 8 targets met")


@pytest.mark.parametrize("content", ["", None])
def test_a_run_that_recorded_nothing_says_so(
    tmp_path: Path, content: str | None
) -> None:
    summary = tmp_path / "summary.jsonl"
    if content is not None:
        summary.write_text(content)
    out = subprocess.run(
        [sys.executable, str(BENCHMARKS / "_summary.py"), str(summary)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert out.strip() == "no targets were recorded"
