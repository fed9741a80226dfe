"""How-to: a Flask app's scheduled job whose deadline really stops it."""

from __future__ import annotations

import importlib
import time
from pathlib import Path
from typing import TYPE_CHECKING

import flask

import syncbridge

if TYPE_CHECKING:
    from collections.abc import Callable


def recognize_queue_task(run: int, log: str) -> int:
    """The job. It gets data (a path), not the app: it runs in another process."""
    with Path(log).open("a") as f:
        f.write(f"run {run} started\n")
    if run == 0:
        time.sleep(3600)  # one run gets stuck (a bad input, a hung library)
    return run


def create_app(log: str, every: float = 60.0, timeout: float = 30.0) -> flask.Flask:
    """The app; its scheduler calls the job every *every* s, with a deadline."""
    app = flask.Flask(__name__)
    app.config.update(JOB_LOG=log)
    # One worker process, as the original code had one thread: a run that
    # overruns its deadline has its process ended, so the next run starts on
    # time. (Keep the deadline shorter than the interval.)
    # Each process imports the job's module when it starts (the initializer),
    # so a deadline times the job, not the imports of a fresh process.
    jobs = syncbridge.ProcessExecutor(
        max_workers=1,
        initializer=importlib.import_module,
        initargs=(recognize_queue_task.__module__,),
    )
    run_job = syncbridge.to_sync(
        syncbridge.to_async(recognize_queue_task, executor=jobs, timeout=timeout)
    )

    def scheduled_task(run: int) -> None:
        try:
            print(f"run {run} done: {run_job(run, app.config['JOB_LOG'])}")
        except syncbridge.SyncBridgeTimeout:
            print(f"run {run} took too long: its process was ended")

    app.extensions["scheduler"] = Scheduler(scheduled_task, every, jobs)
    return app


class Scheduler:
    """Calls ``task(run)`` every *every* seconds on its own thread.

    A stand-in for APScheduler or Celery beat: what matters here is that
    each run blocks the scheduler's thread until the job returns or times out.
    """

    def __init__(
        self,
        task: Callable[[int], None],
        every: float,
        executor: syncbridge.ProcessExecutor,
    ) -> None:
        self.task = task
        self.every = every
        self.executor = executor
        self.ticks: list[float] = []

    def run(self, runs: int) -> None:
        """Make *runs* runs on schedule, then shut the job's executor down."""
        self.executor.submit(int).result()  # the first process, started and ready
        first = time.monotonic()
        try:
            for run in range(runs):
                time.sleep(max(0.0, first + run * self.every - time.monotonic()))
                self.ticks.append(time.monotonic() - first)
                self.task(run)
        finally:
            self.executor.shutdown()


def main() -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp, "job.log")
        # Every 3 s, a deadline of 1 s (a minute and 30 s in real life): the
        # process replacing an ended one has 2 s to start and import, even on
        # a loaded machine.
        app = create_app(str(log), every=3.0, timeout=1.0)
        scheduler: Scheduler = app.extensions["scheduler"]
        scheduler.run(runs=2)
        print(log.read_text(), end="")
        print("ticks at", [round(t, 1) for t in scheduler.ticks], "s")
        # Run 0 got stuck and was ended at its deadline; run 1 started on time.
        assert log.read_text().splitlines() == ["run 0 started", "run 1 started"]


if __name__ == "__main__":
    main()
