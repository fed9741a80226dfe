"""The scheduled-job how-to: a stuck run no longer delays the next one (#13).

docs/howto/scheduled-jobs.md starts from a job run in a one-thread executor
with ``future.result(timeout=...)``: the first test shows that the next run
then never starts; the second runs the how-to's fixed app and shows it does.
"""

from __future__ import annotations

import concurrent.futures
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator

EXAMPLES = Path(__file__).resolve().parent.parent / "docs" / "examples"


def test_before_a_stuck_run_keeps_the_next_one_from_starting() -> None:
    log: list[str] = []
    stuck = threading.Event()

    def recognize_queue_task(run: int) -> int:
        log.append(f"run {run} started")
        if run == 0:
            stuck.wait(30)
        return run

    executor = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    try:
        for run in range(2):
            future = executor.submit(recognize_queue_task, run)
            with pytest.raises(concurrent.futures.TimeoutError):
                future.result(timeout=0.2)  # "terminating..." terminates nothing
        assert log == ["run 0 started"]  # run 1 waits behind the stuck one
    finally:
        stuck.set()
        executor.shutdown()


@pytest.fixture
def scheduled_job() -> Iterator[Any]:
    sys.path.insert(0, str(EXAMPLES))  # worker processes import it by name too
    try:
        import scheduled_job

        yield scheduled_job
    finally:
        sys.path.remove(str(EXAMPLES))
        sys.modules.pop("scheduled_job", None)


def test_after_the_stuck_run_is_ended_and_the_next_runs_start(
    tmp_path: Path, scheduled_job: Any
) -> None:
    log = tmp_path / "job.log"
    app = scheduled_job.create_app(str(log), every=1.5, timeout=0.3)
    scheduler = app.extensions["scheduler"]
    scheduler.run(runs=3)
    # The job's executor has one process and run 0 sleeps for an hour: runs 1
    # and 2 can only have started because the deadline ended run 0's process.
    assert log.read_text().splitlines() == [
        "run 0 started",
        "run 1 started",
        "run 2 started",
    ]
    assert len(scheduler.ticks) == 3
