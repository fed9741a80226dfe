"""ProcessExecutor, the parent's side: a worker's reply settles its job's future once.

No process is started here: replies are built as a worker process builds them.
The executor's behaviour with real processes is tested in
tests/test_process_executor.py.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
from typing import TYPE_CHECKING, Any

import pytest

from syncbridge import ProcessExecutor, SerializationError, WorkerProcessDied
from syncbridge._core import _process_executor as pe
from syncbridge._core._pickling import default_dumps

if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture
def executor() -> Iterator[ProcessExecutor]:
    made = ProcessExecutor(1, mp_context=multiprocessing.get_context("spawn"))
    try:
        yield made
    finally:
        made.shutdown()
    assert made.processes == 0


def _parse_rows() -> None:
    """The function a job runs, as its messages name it."""


def _job(executor: ProcessExecutor) -> pe._Job:
    """A job the executor waits for a reply to (as if a slot had sent it)."""
    future: concurrent.futures.Future[Any] = concurrent.futures.Future()
    job = pe._Job(future, b"", _parse_rows)
    executor._jobs[future] = job
    return job


def test_a_value_reply_sets_the_result(executor: ProcessExecutor) -> None:
    job = _job(executor)
    executor._settle_reply(job, default_dumps((pe._OK, [1, 2])))
    assert job.future.result(0) == [1, 2]


def test_a_raised_reply_sets_the_same_exception_with_the_remote_traceback(
    executor: ProcessExecutor,
) -> None:
    job = _job(executor)
    reply = (pe._RAISED, default_dumps(KeyError("row 3")), "Traceback: in the worker")
    executor._settle_reply(job, default_dumps((*reply, "KeyError", "'row 3'")))
    error = job.future.exception(0)
    assert isinstance(error, KeyError)
    assert error.args == ("row 3",)
    assert "Traceback: in the worker" in str(error.__cause__)


def test_an_unsendable_reply_is_a_serialization_error(
    executor: ProcessExecutor,
) -> None:
    job = _job(executor)
    text = "the result of _parse_rows() (a generator object) cannot be pickled"
    executor._settle_reply(job, default_dumps((pe._UNSENDABLE, text, None)))
    error = job.future.exception(0)
    assert isinstance(error, SerializationError)
    assert str(error) == text


def test_a_reply_that_cannot_be_unpickled_here_says_what_to_return(
    executor: ProcessExecutor,
) -> None:
    job = _job(executor)
    executor._settle_reply(job, b"not a pickle")
    error = job.future.exception(0)
    assert isinstance(error, SerializationError)
    assert "the result of _parse_rows() cannot be unpickled here" in str(error)


def test_a_reply_to_a_job_already_ended_is_dropped(executor: ProcessExecutor) -> None:
    """terminate() answered the job first: the late reply changes nothing."""
    job = _job(executor)
    executor._settle(job, WorkerProcessDied("ended"))
    executor._settle_reply(job, default_dumps((pe._OK, "late")))
    assert isinstance(job.future.exception(0), WorkerProcessDied)
    assert executor._jobs == {}


def test_terminate_of_a_future_not_its_own_does_nothing(
    executor: ProcessExecutor,
) -> None:
    assert not executor.terminate(concurrent.futures.Future())
    assert (executor.running, executor.waiting, executor.processes) == (0, 0, 0)
