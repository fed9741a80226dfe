"""Job: one blocking call's outcome, cancellation flag and the errors its awaiter sees."""

from __future__ import annotations

import contextvars

import pytest

from syncbridge import BridgeClosed, WorkerCancelled, WorkerPool, check_cancelled
from syncbridge._core._handoff import FINISHED, CancelReason
from syncbridge._core._jobs import Job, current_job


def _job(func: object, *args: object) -> Job:
    pool = WorkerPool("jobs", 1)
    return Job(func, args, {}, contextvars.copy_context(), None, pool)  # type: ignore[arg-type]


def test_a_job_runs_once_and_keeps_its_value() -> None:
    seen: list[Job | None] = []

    def work(x: int) -> int:
        seen.append(current_job())
        return x * 2

    job = _job(work, 21)
    job.run()
    assert job.state is FINISHED
    assert job.result() == 42
    assert seen == [job]
    assert current_job() is None


def test_a_job_flagged_before_it_starts_never_runs() -> None:
    ran: list[bool] = []
    job = _job(lambda: ran.append(True))
    job.request_cancel(CancelReason.AWAITER)
    job.run()
    assert ran == []
    with pytest.raises(WorkerCancelled):
        job.result()


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        pytest.param(CancelReason.CLOSED, BridgeClosed, id="closed"),
        pytest.param(CancelReason.AWAITER, WorkerCancelled, id="awaiter"),
    ],
)
def test_check_cancelled_reaches_the_awaiter_as_what_happened(
    reason: CancelReason, expected: type[BaseException]
) -> None:
    """A bridge closed under a job is BridgeClosed for an awaiter never cancelled."""
    job: Job

    def work() -> None:
        job.request_cancel(reason)
        check_cancelled()

    job = _job(work)
    job.run()
    with pytest.raises(expected) as info:
        job.result()
    if expected is BridgeClosed:
        assert isinstance(info.value.__cause__, WorkerCancelled)


def test_stop_iteration_is_the_cause_of_a_runtime_error_that_says_why() -> None:
    stop = StopIteration()

    def ends() -> None:
        raise stop

    job = _job(ends)
    job.run()
    with pytest.raises(RuntimeError, match=r"next\(iterator, default\)") as info:
        job.result()
    assert info.value.__cause__ is stop


def test_the_first_cancel_reason_wins() -> None:
    job = _job(lambda: None)
    job.request_cancel(CancelReason.AWAITER)
    job.request_cancel(CancelReason.CLOSED)
    assert job.cancel is CancelReason.AWAITER
