"""Shared helpers for the benchmark scripts: options, CPU pinning, timing, tables.

Not a benchmark itself (the ``nox -s bench`` session runs ``bench_*.py`` only).

Method, used by every script:

* A *contender* is one way of doing the thing measured. Its *batch* function
  makes ``n`` calls back to back and returns how many calls it made.
* Every contender first runs one untimed warm-up batch (threads started, loops
  created, caches filled).
* Then ``repeats`` rounds follow; in each round every contender times one batch
  with :func:`time.perf_counter_ns`. Contenders are interleaved (and their order
  rotated each round), so slow drifts of a noisy machine hit all of them alike.
* A batch gives one figure: elapsed ns / calls. Tables show the median over the
  rounds (min and max beside it) and the ratio of medians to a stated baseline.
* The garbage collector stays enabled (its cost is part of each contender's real
  cost); a full collection runs, untimed, before every round.
"""

from __future__ import annotations

import argparse
import gc
import importlib.metadata
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Generic, TypeVar

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

R = TypeVar("R")


# -- options -----------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    """What one run of a script does, from its command line."""

    repeats: int
    calls: int
    quick: bool
    pin: bool
    pin_reason: str

    def batch_size(self, scale: float) -> int:
        """Calls in one batch of a contender that runs ``scale`` x the default."""
        return max(1, round(self.calls * scale))


def parse_args(description: str, argv: Sequence[str] | None = None) -> Settings:
    """Parse the common command line: ``[--quick] [--pin|--no-pin] ...``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 3 repeats x 200 calls instead of 7 x 2000",
    )
    parser.add_argument(
        "--pin",
        action=argparse.BooleanOptionalAction,
        default=None,
        help=(
            "pin the process to one CPU for the per-call latency sections "
            "(default: on where os.sched_setaffinity exists)"
        ),
    )
    parser.add_argument("--repeats", type=int, help="override the number of rounds")
    parser.add_argument("--calls", type=int, help="override the calls per batch")
    ns = parser.parse_args(argv)
    repeats: int = ns.repeats or (3 if ns.quick else 7)
    calls: int = ns.calls or (200 if ns.quick else 2000)
    can_pin = hasattr(os, "sched_setaffinity")
    if ns.pin is None:
        pin = can_pin
        reason = "default" if can_pin else "os.sched_setaffinity is unavailable"
    elif ns.pin and not can_pin:
        parser.error("--pin needs os.sched_setaffinity, which this platform lacks")
    else:
        pin = bool(ns.pin)
        reason = "--pin" if pin else "--no-pin"
    global _rounds  # what print_targets() reports by default
    _rounds = repeats
    return Settings(repeats, calls, bool(ns.quick), pin, reason)


# -- CPU pinning ---------------------------------------------------------------

_ALL_CPUS: frozenset[int] | None = (
    frozenset(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
)


def _thread_ids() -> list[int]:
    # sched_setaffinity(0, ...) only moves the calling thread on Linux; threads
    # started later inherit their creator's mask. Move every existing thread too
    # (worker and loop threads started by an earlier section).
    try:
        return [int(tid) for tid in os.listdir("/proc/self/task")]
    except OSError:
        return [0]


def _set_affinity(cpus: frozenset[int]) -> None:
    for tid in _thread_ids():
        try:
            os.sched_setaffinity(tid, cpus)
        except OSError:  # the thread exited meanwhile
            pass


def pin_one_cpu(settings: Settings) -> str:
    """Pin the whole process to one CPU if *settings* say so; describe the result."""
    if not settings.pin or _ALL_CPUS is None:
        return f"not pinned ({settings.pin_reason}); allowed CPUs {_cpus(_ALL_CPUS)}"
    cpu = 0 if 0 in _ALL_CPUS else min(_ALL_CPUS)
    _set_affinity(frozenset({cpu}))
    return f"pinned to CPU {{{cpu}}} ({settings.pin_reason})"


def unpin() -> str:
    """Let the whole process run on every CPU it was allowed at start-up."""
    if _ALL_CPUS is None:
        return "not pinned (os.sched_setaffinity is unavailable)"
    _set_affinity(_ALL_CPUS)
    return f"unpinned: all allowed CPUs {_cpus(_ALL_CPUS)}"


def _cpus(cpus: frozenset[int] | None) -> str:
    if cpus is None:
        return f"(unknown; os.cpu_count()={os.cpu_count()})"
    return "{" + ",".join(str(c) for c in sorted(cpus)) + "}"


# -- timing ------------------------------------------------------------------------


@dataclass(frozen=True)
class Contender(Generic[R]):
    """One way of doing the measured thing.

    ``batch(n)`` makes *n* calls and returns how many it made (a sync function,
    or an async one for loop-side benchmarks). ``scale`` shrinks or grows the
    batch relative to the default size (slow contenders use fewer calls).
    """

    name: str
    batch: Callable[[int], R]
    scale: float = 1.0


@dataclass
class Sample:
    """Per-call times (ns) of one contender, one figure per round."""

    name: str
    batch_calls: int = 0
    per_call_ns: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        """Median per-call ns over the rounds."""
        return statistics.median(self.per_call_ns)

    @property
    def best(self) -> float:
        """Fastest round, per-call ns."""
        return min(self.per_call_ns)

    @property
    def worst(self) -> float:
        """Slowest round, per-call ns."""
        return max(self.per_call_ns)


def _rotated(items: Sequence[R], k: int) -> list[R]:
    k %= len(items)
    return [*items[k:], *items[:k]]


def run_sync(
    contenders: Sequence[Contender[int]], settings: Settings
) -> dict[str, Sample]:
    """Warm up, then time interleaved rounds of synchronous batches."""
    samples = {c.name: Sample(c.name) for c in contenders}
    for c in contenders:
        c.batch(settings.batch_size(c.scale * 0.25))
    for r in range(settings.repeats):
        gc.collect()
        for c in _rotated(contenders, r):
            n = settings.batch_size(c.scale)
            start = time.perf_counter_ns()
            done = c.batch(n)
            elapsed = time.perf_counter_ns() - start
            samples[c.name].batch_calls = done
            samples[c.name].per_call_ns.append(elapsed / done)
    return samples


async def run_async(
    contenders: Sequence[Contender[Awaitable[int]]], settings: Settings
) -> dict[str, Sample]:
    """Like :func:`run_sync`, for batches awaited in a running event loop."""
    samples = {c.name: Sample(c.name) for c in contenders}
    for c in contenders:
        await c.batch(settings.batch_size(c.scale * 0.25))
    for r in range(settings.repeats):
        gc.collect()
        for c in _rotated(contenders, r):
            n = settings.batch_size(c.scale)
            start = time.perf_counter_ns()
            done = await c.batch(n)
            elapsed = time.perf_counter_ns() - start
            samples[c.name].batch_calls = done
            samples[c.name].per_call_ns.append(elapsed / done)
    return samples


# -- output ------------------------------------------------------------------------


def print_header(title: str, settings: Settings) -> None:
    """Print what was run, where, and with which versions."""
    versions = ", ".join(
        f"{name} {_version(name)}"
        for name in ("syncbridge", "anyio", "trio", "asgiref", "uvloop")
    )
    print(f"# {title}")
    print(f"python {platform.python_version()} ({sys.implementation.name}), {versions}")
    print(
        f"{platform.platform()}; os.cpu_count()={os.cpu_count()}, "
        f"allowed CPUs {_cpus(_ALL_CPUS)}"
    )
    mode = "quick" if settings.quick else "full"
    print(
        f"mode: {mode}, {settings.repeats} rounds; a round times one batch per "
        f"contender ({settings.calls} calls unless noted), interleaved; "
        "figures are medians over the rounds"
    )
    print()


def _version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "(not installed)"


def _print_section(title: str, samples: dict[str, Sample], notes: Sequence[str]) -> int:
    """Print a section's title and notes; return the width of the name column."""
    print(f"## {title}")
    for note in notes:
        print(f"   {note}")
    return max(len(name) for name in samples) + 2


def print_latency(
    title: str, samples: dict[str, Sample], baseline: str, notes: Sequence[str] = ()
) -> None:
    """Print per-call latency (µs), with each median's ratio to *baseline*'s."""
    base = samples[baseline].median
    width = _print_section(title, samples, notes)
    print(
        f"   {'contender':<{width}}{'calls':>7}{'median µs':>12}{'min µs':>11}"
        f"{'max µs':>11}   ratio vs {baseline}"
    )
    for s in samples.values():
        print(
            f"   {s.name:<{width}}{s.batch_calls:>7}{s.median / 1e3:>12.2f}"
            f"{s.best / 1e3:>11.2f}{s.worst / 1e3:>11.2f}   {s.median / base:>6.2f}x"
        )
    print()


def print_throughput(
    title: str, samples: dict[str, Sample], baseline: str, notes: Sequence[str] = ()
) -> None:
    """Print throughput (calls/s), with each median's ratio to *baseline*'s."""
    base = samples[baseline].median
    width = _print_section(title, samples, notes)
    print(
        f"   {'contender':<{width}}{'calls':>7}{'median calls/s':>16}"
        f"{'min':>10}{'max':>10}{'µs/call':>9}   throughput vs {baseline}"
    )
    for s in samples.values():
        print(
            f"   {s.name:<{width}}{s.batch_calls:>7}{1e9 / s.median:>16,.0f}"
            f"{1e9 / s.worst:>10,.0f}{1e9 / s.best:>10,.0f}{s.median / 1e3:>9.2f}"
            f"   {base / s.median:>6.2f}x"
        )
    print()


@dataclass(frozen=True)
class Target:
    """A goal from the issue: ``value`` must be ``<= limit`` (or ``>=``)."""

    label: str
    value: float
    limit: float
    at_most: bool = True
    unit: str = "x"
    """What ``value`` and ``limit`` are in: ``"x"`` for a ratio, ``" ms"``..."""

    @property
    def met(self) -> bool:
        """Whether the measured value meets the goal."""
        return self.value <= self.limit if self.at_most else self.value >= self.limit


SUMMARY_ENV = "SYNCBRIDGE_BENCH_SUMMARY"
"""Environment variable naming the file ``nox -s bench`` collects targets in."""

_rounds: int | None = None


def print_targets(targets: Sequence[Target], *, rounds: int | None = None) -> None:
    """Print each target with its measured ratio and MET / NOT MET.

    *rounds* is how many timed rounds the medians come from (default: the
    ``--repeats`` that :func:`parse_args` read). When ``SYNCBRIDGE_BENCH_SUMMARY``
    names a file, each target is also appended to it as one JSON line, for the
    closing table ``benchmarks/_summary.py`` prints.
    """
    print("## targets (ratios of medians)")
    width = max(len(t.label) for t in targets) + 2
    for t in targets:
        goal = f"{'<=' if t.at_most else '>='} {t.limit:g}{'' if t.unit == 'x' else t.unit}"
        verdict = "MET" if t.met else "NOT MET"
        measured = f"{t.value:.2f}{t.unit}"
        print(f"   {t.label:<{width}}{measured:>9}  (goal {goal:<9}) {verdict}")
    print()
    path = os.environ.get(SUMMARY_ENV)
    if path:
        script = os.path.basename(sys.argv[0])
        with open(path, "a", encoding="utf-8") as out:
            for t in targets:
                row = {
                    "script": script,
                    "label": t.label,
                    "value": t.value,
                    "limit": t.limit,
                    "at_most": t.at_most,
                    "unit": t.unit,
                    "rounds": rounds if rounds is not None else _rounds,
                }
                out.write(json.dumps(row) + "\n")
