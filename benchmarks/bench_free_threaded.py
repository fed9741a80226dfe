"""Benchmark: the free-threaded build beside the GIL build of the same Python.

Run on a free-threaded interpreter (3.13t, 3.14t...):
``python3.13t benchmarks/bench_free_threaded.py [--quick] [--gil-python PATH]``.
On a GIL build it says so and records nothing (``nox -s bench`` runs it there).

The two builds are two interpreters, so each runs in a child process of its own
(this script with ``--serve``, started by ``--gil-python`` and by the running
interpreter), and the parent alternates their rounds: round *r* times the
free-threaded child then the GIL child (the order swaps every round), so a
noisy machine's drifts hit both alike. ``--gil-python`` defaults to
``$SYNCBRIDGE_GIL_PYTHON``, else ``python3.X`` (the same minor) on ``PATH``; it
must import syncbridge and anyio (e.g. ``PYTHONPATH=src`` and a venv with the
test dependencies).

Sections:

1. Throughput, asyncio: 100 tasks (``asyncio.gather``) each await a share of
   the batch of a trivial function (returns an int), via ``run_blocking`` on
   the default bridge and via ``asyncio.to_thread``, on both builds. The
   *slowdown* of a contender is its GIL-build throughput over its
   free-threaded one; the goal is that run_blocking's is no worse than
   ``asyncio.to_thread``'s.
2. CPU-bound Python: 8 jobs of about 20 ms of pure-Python arithmetic (the same
   number of iterations on both builds, calibrated on the GIL build) awaited
   together through ``Bridge(max_workers=2)``, on both builds; beside it, on
   each build, the same 8 jobs one after another through the bridge (what one
   core does) and together on a ``ThreadPoolExecutor(2)`` (what the machine
   allows, without syncbridge). On 2 cores the free-threaded build should
   finish the 8 jobs close to twice as fast as the GIL build; how fast one core
   of each build runs them (one by one) bounds that: a free-threaded
   interpreter slower on one core gains less.

Everything runs unpinned (it needs every CPU); medians of alternated rounds;
ratios are what count.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import shutil
import statistics
import subprocess
import sys
import sysconfig
import time
from concurrent.futures import ThreadPoolExecutor
from typing import IO, TYPE_CHECKING, Any

from _harness import (
    Sample,
    Target,
    parse_args,
    print_header,
    print_latency,
    print_targets,
    print_throughput,
    unpin,
)

import syncbridge

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

CALLERS = 100
"""Concurrent tasks in the throughput section."""

TRIVIAL_SCALE = 5
"""Trivial calls in one throughput batch, in units of ``--calls``."""

JOBS = 8
"""CPU-bound jobs per batch."""

WORKERS = 2
"""``Bridge(max_workers=...)`` of the CPU-bound section."""

JOB_SECONDS = 0.02
"""About how long one CPU-bound job takes on one core of the GIL build."""

RUN_BLOCKING = "run_blocking"
TO_THREAD = "asyncio.to_thread"
TOGETHER = f"{JOBS} jobs together, {WORKERS} workers"
ONE_BY_ONE = f"{JOBS} jobs one by one"
OWN = f"{JOBS} jobs together, ThreadPoolExecutor({WORKERS})"

FT = "free-threaded"
GIL = "GIL"


# -- the child: one interpreter, serving rounds ---------------------------------


def work() -> int:
    """The trivial function of the throughput section."""
    return 1


def burn(rounds: int) -> int:
    """Pure-Python CPU work: *rounds* iterations of integer arithmetic."""
    total = 0
    for i in range(rounds):
        total = (total + i * i) % 1_000_003
    return total


def build() -> dict[str, Any]:
    """What the running interpreter is: version, build, whether the GIL is on."""
    free_threaded = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))
    is_gil_enabled: Callable[[], bool] | None = getattr(sys, "_is_gil_enabled", None)
    return {
        "version": sys.version.split()[0],
        "executable": sys.executable,
        "free_threaded": free_threaded,
        "gil_enabled": True if is_gil_enabled is None else is_gil_enabled(),
        "syncbridge": os.path.dirname(syncbridge.__file__),
    }


def concurrent(
    op: Callable[[], Awaitable[int]], n: int
) -> Callable[[], Awaitable[int]]:
    """A batch: CALLERS tasks each await *op* ``n // CALLERS`` times."""

    async def caller(k: int) -> None:
        for _ in range(k):
            await op()

    async def batch() -> int:
        k = max(1, n // CALLERS)
        await asyncio.gather(*(caller(k) for _ in range(CALLERS)))
        return k * CALLERS

    return batch


class Server:
    """The child's side: one event loop, one bridge, rounds on request."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.cpu_bridge = syncbridge.Bridge(max_workers=WORKERS, name="bench-ft-cpu")
        self.executor = ThreadPoolExecutor(WORKERS, thread_name_prefix="bench-ft")

    def timed(
        self, batches: dict[str, Callable[[], Awaitable[int]]], r: int
    ) -> dict[str, tuple[float, int]]:
        """Time each batch once, in rotated order: (ns per call, calls) each."""
        names = list(batches)
        k = r % len(names)
        out: dict[str, tuple[float, int]] = {}
        gc.collect()
        for name in names[k:] + names[:k]:
            start = time.perf_counter_ns()
            done = self.loop.run_until_complete(batches[name]())
            out[name] = ((time.perf_counter_ns() - start) / done, done)
        return out

    def trivial(self, calls: int, r: int) -> dict[str, tuple[float, int]]:
        return self.timed(
            {
                RUN_BLOCKING: concurrent(lambda: syncbridge.run_blocking(work), calls),
                TO_THREAD: concurrent(lambda: asyncio.to_thread(work), calls),
            },
            r,
        )

    def cpu(self, rounds: int, r: int) -> dict[str, tuple[float, int]]:
        """One batch each: the jobs through the bridge, together and one by one,
        and together on a ThreadPoolExecutor (what the machine allows)."""
        bridge, executor, loop = self.cpu_bridge, self.executor, self.loop

        async def together() -> int:
            await asyncio.gather(
                *(bridge.run_blocking(burn, rounds) for _ in range(JOBS))
            )
            return 1

        async def one_by_one() -> int:
            for _ in range(JOBS):
                await bridge.run_blocking(burn, rounds)
            return 1

        async def own_threads() -> int:
            await asyncio.gather(
                *(loop.run_in_executor(executor, burn, rounds) for _ in range(JOBS))
            )
            return 1

        return self.timed(
            {TOGETHER: together, ONE_BY_ONE: one_by_one, OWN: own_threads}, r
        )

    def calibrate(self, seconds: float) -> int:
        """How many :func:`burn` rounds take about *seconds* on one core here."""
        rounds = 50_000
        while True:
            start = time.perf_counter()
            burn(rounds)
            elapsed = time.perf_counter() - start
            if elapsed > 0.05:
                break
            rounds *= 2
        # The median of a few, on a busy machine.
        times = []
        for _ in range(5):
            start = time.perf_counter()
            burn(rounds)
            times.append(time.perf_counter() - start)
        return max(1, round(rounds * seconds / statistics.median(times)))

    def serve(self, requests: IO[str], replies: IO[str]) -> None:
        """Answer one JSON request per line with one JSON reply per line."""
        reply: Any = build()
        while True:
            replies.write(json.dumps(reply) + "\n")
            replies.flush()
            line = requests.readline()
            if not line:
                break
            request = json.loads(line)
            what = request["what"]
            if what == "trivial":
                reply = self.trivial(request["calls"], request["round"])
            elif what == "cpu":
                reply = self.cpu(request["rounds"], request["round"])
            elif what == "calibrate":
                reply = self.calibrate(request["seconds"])
            else:
                raise ValueError(f"unknown request {what!r}")
        self.cpu_bridge.close()
        self.executor.shutdown()
        syncbridge.get_bridge().close()
        self.loop.run_until_complete(self.loop.shutdown_default_executor())
        self.loop.close()


# -- the parent: two children, alternated rounds -------------------------------


class Child:
    """This script serving rounds in another process, on interpreter *python*."""

    def __init__(self, label: str, python: str) -> None:
        self.label = label
        self.process = subprocess.Popen(
            [python, os.path.abspath(__file__), "--serve"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.info: dict[str, Any] = self._read(f"start {python} --serve")

    def ask(self, what: str, **request: Any) -> Any:
        """Send one request; its reply."""
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps({"what": what, **request}) + "\n")
        self.process.stdin.flush()
        return self._read(what)

    def _read(self, what: str) -> Any:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            code = self.process.wait()
            sys.exit(
                f"the {self.label} child ({self.process.args!r}) exited with "
                f"status {code} during {what!r}; its error is above. The "
                "interpreters must import syncbridge and anyio: pass --gil-python "
                "PATH (or set SYNCBRIDGE_GIL_PYTHON) to one that does"
            )
        return json.loads(line)

    def close(self) -> None:
        """Let the child close its bridges and exit."""
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait(timeout=60)


def default_gil_python() -> str | None:
    """``$SYNCBRIDGE_GIL_PYTHON``, else ``python3.X`` of this minor on PATH."""
    env = os.environ.get("SYNCBRIDGE_GIL_PYTHON")
    if env:
        return env
    return shutil.which(f"python{sys.version_info.major}.{sys.version_info.minor}")


def alternate(
    children: dict[str, Child], repeats: int, what: str, **request: Any
) -> dict[str, Sample]:
    """One warm-up, then *repeats* rounds alternating the children's order.

    Samples are keyed ``"<contender> (<child label>)"``.
    """
    samples: dict[str, Sample] = {}
    labels = list(children)
    for label in labels:
        children[label].ask(what, round=0, **request)
    for r in range(repeats):
        order = labels if r % 2 == 0 else labels[::-1]
        for label in order:
            reply = children[label].ask(what, round=r, **request)
            for name, (ns, done) in reply.items():
                key = f"{name} ({label})"
                sample = samples.setdefault(key, Sample(key, done))
                sample.per_call_ns.append(ns)
    return samples


def main(argv: list[str]) -> None:
    own = argparse.ArgumentParser(add_help=False)
    own.add_argument("--serve", action="store_true")
    own.add_argument("--gil-python")
    ns, rest = own.parse_known_args(argv)
    if ns.serve:
        Server().serve(sys.stdin, sys.stdout)
        return
    if "-h" in rest or "--help" in rest:
        print(
            "extra options: --gil-python PATH  the GIL build to compare with "
            "(default: $SYNCBRIDGE_GIL_PYTHON, else python3.X on PATH)\n"
        )
    settings = parse_args(__doc__.splitlines()[0] if __doc__ else "", rest)
    me = build()
    if not me["free_threaded"]:
        print(
            f"bench_free_threaded: python {me['version']} is a GIL build; nothing "
            "measured or recorded. Run this script on a free-threaded build "
            "(python3.13t and later) to compare it with the GIL build."
        )
        return
    gil_python = ns.gil_python or default_gil_python()
    if gil_python is None:
        sys.exit(
            "bench_free_threaded: no GIL build to compare with: pass --gil-python "
            "PATH or set SYNCBRIDGE_GIL_PYTHON (a python3.X that imports syncbridge)"
        )
    print_header("bench_free_threaded: the free-threaded build beside the GIL build", settings)  # fmt: skip
    where = unpin()
    children = {FT: Child(FT, sys.executable), GIL: Child(GIL, gil_python)}
    try:
        ft, gil = children[FT].info, children[GIL].info
        if gil["free_threaded"]:
            sys.exit(f"bench_free_threaded: {gil_python} is free-threaded too: pass a GIL build")  # fmt: skip
        if ft["gil_enabled"]:
            sys.exit(
                f"bench_free_threaded: the GIL is on in {ft['executable']} (an "
                "extension module without free-threading support enabled it): "
                "the figures would not be free-threaded ones"
            )
        for label, child in children.items():
            info = child.info
            gil_state = "on" if info["gil_enabled"] else "off"
            print(
                f"{label}: python {info['version']} ({info['executable']}), GIL "
                f"{gil_state}; syncbridge from {info['syncbridge']}"
            )
        print()
        calls = settings.batch_size(TRIVIAL_SCALE)
        trivial = alternate(children, settings.repeats, "trivial", calls=calls)
        rounds = children[GIL].ask("calibrate", seconds=JOB_SECONDS)
        cpu = alternate(children, settings.repeats, "cpu", rounds=rounds)
    finally:
        for child in children.values():
            child.close()

    def median(samples: dict[str, Sample], name: str, label: str) -> float:
        return samples[f"{name} ({label})"].median

    # Slowdown: GIL-build throughput over free-threaded (ns per call FT / GIL).
    slowdown = {
        name: median(trivial, name, FT) / median(trivial, name, GIL)
        for name in (RUN_BLOCKING, TO_THREAD)
    }
    print_throughput(
        f"throughput, asyncio loop, {CALLERS} concurrent tasks: a trivial function",
        trivial,
        f"{TO_THREAD} ({GIL})",
        [
            f"CPU: {where}",
            f"{calls} calls a batch; run_blocking on the default bridge",
            *(
                f"{name}: {FT} build {1 / slowdown[name]:.2f}x the {GIL} build's "
                f"throughput (slowdown {slowdown[name]:.2f}x)"
                for name in slowdown
            ),
        ],
    )
    # How much faster the jobs run together than one after another.
    scaling = {
        label: median(cpu, ONE_BY_ONE, label) / median(cpu, TOGETHER, label)
        for label in children
    }
    scaling_own = {
        label: median(cpu, ONE_BY_ONE, label) / median(cpu, OWN, label)
        for label in children
    }
    single_core = median(cpu, ONE_BY_ONE, FT) / median(cpu, ONE_BY_ONE, GIL)
    print_latency(
        f"CPU-bound Python: {JOBS} jobs of {JOB_SECONDS * 1e3:g} ms (on the GIL "
        f"build, one core) through Bridge(max_workers={WORKERS}): µs per batch",
        cpu,
        f"{TOGETHER} ({GIL})",
        [
            f"CPU: {where}; {rounds:,} iterations of burn() a job, on both builds",
            *(
                f"{label}: together {scaling[label]:.2f}x as fast as one by one "
                f"(ThreadPoolExecutor: {scaling_own[label]:.2f}x)"
                for label in children
            ),
            (
                f"one core: the {FT} build takes {single_core:.2f}x the {GIL} "
                "build's time for the same jobs (one by one)"
            ),
            "a batch is one 'call': its time is the time of all 8 jobs",
        ],
    )
    print_targets(
        [
            Target(
                f"run_blocking / asyncio.to_thread (throughput, {FT})",
                median(trivial, TO_THREAD, FT) / median(trivial, RUN_BLOCKING, FT),
                1.0,
                at_most=False,
            ),
            Target(
                f"run_blocking slowdown / asyncio.to_thread slowdown ({FT})",
                slowdown[RUN_BLOCKING] / slowdown[TO_THREAD],
                1.0,
            ),
            Target(
                f"{JOBS} CPU-bound jobs, {WORKERS} workers: {FT} speed-up over {GIL}",
                median(cpu, TOGETHER, GIL) / median(cpu, TOGETHER, FT),
                1.6,
                at_most=False,
            ),
            Target(
                f"{JOBS} CPU-bound jobs, {WORKERS} workers: together / one by one ({FT})",
                scaling[FT],
                1.6,
                at_most=False,
            ),
        ]
    )


if __name__ == "__main__":
    main(sys.argv[1:])
