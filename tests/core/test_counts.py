"""Counts: how a pool's calls ended, each counted once, totals that add up."""

from __future__ import annotations

import threading

from syncbridge._core._counts import Counts, CountsSnapshot, Ending


def test_each_ending_is_counted_in_its_own_total_once() -> None:
    counts = Counts()
    assert counts.snapshot() == CountsSnapshot(0, 0, 0, 0, 0)
    for _ in range(6):
        counts.call()
    counts.completed()
    counts.ended(Ending.COMPLETED)
    counts.ended(Ending.ERROR)
    for _ in range(2):
        counts.ended(Ending.CANCELLED)
    counts.ended(Ending.TIMED_OUT)
    assert counts.snapshot() == CountsSnapshot(
        calls=6, completed=2, errors=1, cancellations=2, timeouts=1
    )


def test_totals_add_up_when_many_threads_count_at_once() -> None:
    """Every call made is counted, and every ending: none lost to a race.

    An unlocked count loses some on a free-threaded build (the suite runs on
    one); a GIL build hardly ever interrupts an ``+=``.
    """
    counts = Counts()
    endings = [*Ending, None]  # None: the fast path, completed()
    rounds, threads = 1800, 8
    start = threading.Barrier(threads)

    def count(offset: int) -> None:
        start.wait(10)
        for i in range(rounds):
            counts.call()
            how = endings[(i + offset) % len(endings)]
            if how is None:
                counts.completed()
            else:
                counts.ended(how)

    workers = [threading.Thread(target=count, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
    snapshot = counts.snapshot()
    total = rounds * threads
    assert snapshot.calls == total
    assert sum(snapshot[1:]) == total, snapshot
    # Per thread, each of the six ways is taken rounds / 6 times.
    per_way = total // len(endings)
    assert snapshot.completed == 2 * per_way  # ended(COMPLETED) and completed()
    assert (
        snapshot.errors,
        snapshot.cancellations,
        snapshot.timeouts,
        snapshot.rejected,
    ) == (per_way, per_way, per_way, per_way)
