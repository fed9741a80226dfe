"""ProcessExecutor (issue 13): a process pool whose jobs can be ended one by one.

Real worker processes throughout; the jobs live in ``_process_jobs`` so the
workers import that small module only. A job that must be running before the
test goes on reports its pid through a ``Rendezvous`` (a loopback socket).
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import threading
import types
import warnings
from typing import TYPE_CHECKING, Any

import pytest

import _process_jobs as jobs
import syncbridge
from syncbridge import ProcessExecutor, SerializationError, WorkerProcessDied

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX signals")
RESULT_TIMEOUT = 30  # a bound against hangs, never a measured time


def _our_threads() -> list[threading.Thread]:
    return [
        t for t in threading.enumerate() if t.name.startswith("syncbridge-process-")
    ]


def _our_processes() -> list[multiprocessing.process.BaseProcess]:
    return [
        p
        for p in multiprocessing.active_children()
        if p.name == "syncbridge-process-worker"
    ]


@pytest.fixture
def make() -> Iterator[Callable[..., ProcessExecutor]]:
    """Make executors; each is ended after the test, leaving nothing behind."""
    made: list[ProcessExecutor] = []

    def make(max_workers: int = 1, **options: Any) -> ProcessExecutor:
        executor = ProcessExecutor(max_workers, **options)
        made.append(executor)
        return executor

    yield make
    for executor in made:
        executor.terminate_workers()
        executor.shutdown(wait=True)
    assert not _our_threads()
    assert not _our_processes()


@pytest.fixture
def rendezvous() -> Iterator[jobs.Rendezvous]:
    meeting = jobs.Rendezvous()
    yield meeting
    meeting.close()


# -- results and exceptions ------------------------------------------------------


def test_result_comes_back(make: Callable[..., ProcessExecutor]) -> None:
    executor = make(2)
    assert executor.submit(jobs.add, 2, b=3).result(RESULT_TIMEOUT) == 5
    assert list(executor.map(jobs.add, [1, 2], [10, 20])) == [11, 22]


def test_jobs_run_in_another_process_not_forked(
    make: Callable[..., ProcessExecutor], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The default start method is not fork: a value set here at run time is not there."""
    monkeypatch.setattr(jobs, "MARK", "set in the parent")
    executor = make()
    assert executor.submit(jobs.pid).result(RESULT_TIMEOUT) != os.getpid()
    assert executor.submit(jobs.mark).result(RESULT_TIMEOUT) is None


def test_exception_keeps_type_message_and_remote_traceback(
    make: Callable[..., ProcessExecutor],
) -> None:
    future = make().submit(jobs.raise_value_error, "bad input")
    error = future.exception(RESULT_TIMEOUT)
    assert type(error) is ValueError
    assert str(error) == "bad input"
    cause = error.__cause__
    assert cause is not None
    assert "in raise_value_error" in str(cause)
    assert "ValueError: bad input" in str(cause)


def test_initializer_runs_in_each_process(make: Callable[..., ProcessExecutor]) -> None:
    executor = make(initializer=jobs.initialize, initargs=("ready",))
    assert executor.submit(jobs.initialized).result(RESULT_TIMEOUT) == ["ready"]


def test_failing_initializer_fails_each_job_with_its_exception(
    make: Callable[..., ProcessExecutor],
) -> None:
    executor = make(initializer=jobs.failing_initializer)
    error = executor.submit(jobs.add, 1, 2).exception(RESULT_TIMEOUT)
    assert type(error) is RuntimeError
    assert str(error) == "no database here"
    assert "initializer=failing_initializer" in str(error.__cause__)


# -- what cannot be pickled --------------------------------------------------------


def _submit_error(
    executor: ProcessExecutor, fn: Callable[..., object], *args: Any, **kwargs: Any
) -> str:
    with pytest.raises(SerializationError) as caught:
        executor.submit(fn, *args, **kwargs)
    assert executor.waiting == 0
    assert executor.processes == 0  # nothing was queued, nothing started
    return str(caught.value)


def test_lambda_is_refused_at_submit(make: Callable[..., ProcessExecutor]) -> None:
    message = _submit_error(make(), lambda: 1)
    assert message.startswith("ProcessExecutor.submit(): the function test_lambda")
    assert "<locals>.<lambda> cannot be pickled" in message
    assert "top level of a module" in message


def test_local_function_is_refused_at_submit(
    make: Callable[..., ProcessExecutor],
) -> None:
    def inner() -> int:
        return 1

    message = _submit_error(make(), inner)
    assert "the function test_local_function_is_refused_at_submit.<locals>.inner" in (
        message
    )
    assert "top level of a module" in message


def test_method_of_an_unpicklable_object_names_the_culprit(
    make: Callable[..., ProcessExecutor],
) -> None:
    message = _submit_error(make(), jobs.Holder().method)
    assert "the function Holder.method cannot be pickled" in message
    assert "the value at .__self__.lock (a _thread.lock object)" in message


def test_unpicklable_argument_is_named(make: Callable[..., ProcessExecutor]) -> None:
    message = _submit_error(make(), jobs.add, 1, threading.Lock())
    assert "argument 2 of add() (a _thread.lock object) cannot be pickled" in message
    assert "not open files, locks, sockets or clients" in message


def test_unpicklable_value_inside_an_argument_is_named(
    make: Callable[..., ProcessExecutor],
) -> None:
    message = _submit_error(make(), jobs.add, 1, [0, {"conn": threading.Lock()}])
    assert (
        "argument 2 of add() (a list object) cannot be pickled because of the value "
        "at [1]['conn'] (a _thread.lock object)"
    ) in message


def test_unpicklable_keyword_argument_is_named(
    make: Callable[..., ProcessExecutor],
) -> None:
    message = _submit_error(make(), jobs.add, 1, b=threading.Lock())
    assert "keyword argument 'b' of add() (a _thread.lock object)" in message


def test_unpicklable_result_is_a_serialization_error(
    make: Callable[..., ProcessExecutor],
) -> None:
    executor = make()
    error = executor.submit(jobs.return_a_lock).exception(RESULT_TIMEOUT)
    assert isinstance(error, SerializationError)
    assert "the result of return_a_lock() (a dict object)" in str(error)
    assert "['lock'] (a _thread.lock object)" in str(error)
    error = executor.submit(jobs.return_a_generator).exception(RESULT_TIMEOUT)
    assert isinstance(error, SerializationError)
    assert "the result of return_a_generator() (a generator object)" in str(error)
    assert executor.submit(jobs.add, 1, 1).result(RESULT_TIMEOUT) == 2  # same process


def test_unpicklable_exception_keeps_its_type_name_and_text(
    make: Callable[..., ProcessExecutor],
) -> None:
    executor = make()
    error = executor.submit(jobs.raise_locked).exception(RESULT_TIMEOUT)
    assert isinstance(error, SerializationError)
    assert "raise_locked() raised _process_jobs.LockedError: with a lock inside" in (
        str(error)
    )
    assert "LockedError: with a lock inside" in str(error.__cause__)
    error = executor.submit(jobs.raise_two_argument).exception(RESULT_TIMEOUT)
    assert isinstance(error, SerializationError)
    assert "raised _process_jobs.TwoArgumentError: 7: not rebuildable" in str(error)
    assert "pass every argument of its __init__ on" in str(error)


@pytest.fixture
def parent_only_function() -> Iterator[Callable[[], int]]:
    """A function pickle finds here by name, in a module the workers cannot import."""
    module = types.ModuleType("_only_in_the_parent")

    def here() -> int:
        return 1

    here.__module__, here.__qualname__ = module.__name__, "here"
    module.here = here  # type: ignore[attr-defined]
    sys.modules[module.__name__] = module
    yield here
    del sys.modules[module.__name__]


def test_call_that_cannot_be_unpickled_in_the_worker(
    make: Callable[..., ProcessExecutor], parent_only_function: Callable[[], int]
) -> None:
    executor = make()
    error = executor.submit(parent_only_function).exception(RESULT_TIMEOUT)
    assert isinstance(error, SerializationError)
    assert "cannot be unpickled in the worker process" in str(error)
    assert "_only_in_the_parent" in str(error)
    assert executor.submit(jobs.add, 1, 1).result(RESULT_TIMEOUT) == 2


def test_unpicklable_initializer_is_refused_at_once() -> None:
    with pytest.raises(
        SerializationError, match=r"ProcessExecutor\(initializer=\.\.\.\)"
    ):
        ProcessExecutor(1, initializer=lambda: None)


# -- a worker process that dies ---------------------------------------------------


def test_os_exit_is_worker_process_died_and_the_next_call_works(
    make: Callable[..., ProcessExecutor],
) -> None:
    executor = make()
    first = executor.submit(jobs.pid).result(RESULT_TIMEOUT)
    error = executor.submit(jobs.exit_with, 3).exception(RESULT_TIMEOUT)
    assert isinstance(error, WorkerProcessDied)
    assert error.exitcode == 3
    assert "running exit_with() exited with code 3" in str(error)
    assert "The executor carries on" in str(error)
    second = executor.submit(jobs.pid).result(RESULT_TIMEOUT)
    assert second != first


@posix_only
def test_segfault_is_worker_process_died_and_the_next_call_works(
    make: Callable[..., ProcessExecutor],
) -> None:
    executor = make()
    error = executor.submit(jobs.segfault).exception(RESULT_TIMEOUT)
    assert isinstance(error, WorkerProcessDied)
    assert error.exitcode == -signal.SIGSEGV
    assert "running segfault() was killed by signal SIGSEGV" in str(error)
    assert executor.submit(jobs.add, 1, 2).result(RESULT_TIMEOUT) == 3


@posix_only
def test_sigkill_from_outside_affects_only_that_job(
    make: Callable[..., ProcessExecutor], rendezvous: jobs.Rendezvous
) -> None:
    executor = make(2)
    doomed = executor.submit(jobs.block, rendezvous.address)
    victim = rendezvous.wait()
    survivor = executor.submit(jobs.sleep_then_add, 0.2, 1, 2)
    os.kill(victim, signal.SIGKILL)
    error = doomed.exception(RESULT_TIMEOUT)
    assert isinstance(error, WorkerProcessDied)
    assert "was killed by signal SIGKILL" in str(error)
    assert survivor.result(RESULT_TIMEOUT) == 3
    assert executor.submit(jobs.add, 2, 2).result(RESULT_TIMEOUT) == 4


@posix_only
def test_process_killed_while_idle_is_replaced_for_the_next_job(
    make: Callable[..., ProcessExecutor],
) -> None:
    executor = make()
    first = executor.submit(jobs.pid).result(RESULT_TIMEOUT)
    (process,) = [p for p in _our_processes() if p.pid == first]
    os.kill(first, signal.SIGKILL)
    process.join(RESULT_TIMEOUT)  # dead before the next job is sent
    assert process.exitcode == -signal.SIGKILL
    second = executor.submit(jobs.pid).result(RESULT_TIMEOUT)
    assert second != first


# -- terminate() -------------------------------------------------------------------


def test_terminate_a_stuck_job_frees_the_slot(
    make: Callable[..., ProcessExecutor], rendezvous: jobs.Rendezvous
) -> None:
    executor = make(1)
    stuck = executor.submit(jobs.block, rendezvous.address)
    stuck_pid = rendezvous.wait()
    after = executor.submit(jobs.pid)
    assert executor.running == 1
    assert executor.waiting == 1
    assert executor.terminate(stuck) is True
    error = stuck.exception(0)  # set by terminate() itself
    assert isinstance(error, WorkerProcessDied)
    assert "terminate() ended the worker process running block()" in str(error)
    assert after.result(RESULT_TIMEOUT) != stuck_pid  # a fresh process
    assert executor.terminate(stuck) is False  # done already
    assert executor.terminate(after) is False


def test_terminate_a_queued_job_cancels_it_and_it_never_runs(
    make: Callable[..., ProcessExecutor], rendezvous: jobs.Rendezvous, tmp_path: Path
) -> None:
    executor = make(1)
    running = executor.submit(jobs.block, rendezvous.address)
    rendezvous.wait()
    flag = tmp_path / "ran"
    queued = executor.submit(jobs.write_file, str(flag))
    later = executor.submit(jobs.add, 1, 2)
    assert executor.terminate(queued) is True
    assert queued.cancelled()
    done, _ = concurrent.futures.wait([queued], timeout=0)  # cancelled *and notified*
    assert done == {queued}
    assert executor.waiting == 1
    executor.terminate(running)
    assert later.result(RESULT_TIMEOUT) == 3  # FIFO: it would have run before this
    executor.shutdown(wait=True)
    assert not flag.exists()


@posix_only
def test_terminate_ends_a_job_that_ignores_sigterm(
    make: Callable[..., ProcessExecutor], rendezvous: jobs.Rendezvous
) -> None:
    executor = make(1)
    stubborn = executor.submit(jobs.block_ignoring_sigterm, rendezvous.address)
    stubborn_pid = rendezvous.wait()
    after = executor.submit(jobs.pid)
    assert executor.terminate(stubborn)
    assert isinstance(stubborn.exception(0), WorkerProcessDied)
    assert after.result(RESULT_TIMEOUT) != stubborn_pid
    with pytest.raises(ProcessLookupError):
        os.kill(stubborn_pid, 0)  # gone, and reaped


def test_cancel_succeeds_exactly_while_queued(
    make: Callable[..., ProcessExecutor], rendezvous: jobs.Rendezvous, tmp_path: Path
) -> None:
    executor = make(1)
    running = executor.submit(jobs.block, rendezvous.address)
    rendezvous.wait()
    flag = tmp_path / "ran"
    queued = executor.submit(jobs.write_file, str(flag))
    assert running.running()
    assert not running.cancel()
    assert queued.cancel()
    assert executor.waiting == 0
    executor.terminate(running)
    assert executor.submit(jobs.add, 1, 1).result(RESULT_TIMEOUT) == 2
    assert not flag.exists()


def test_terminate_of_a_foreign_future_is_false(
    make: Callable[..., ProcessExecutor],
) -> None:
    assert make().terminate(concurrent.futures.Future()) is False


def test_many_threads_submitting_with_random_terminations_settle_every_future(
    make: Callable[..., ProcessExecutor],
) -> None:
    executor = make(2)
    rng = random.Random(13)
    outcomes: dict[concurrent.futures.Future[int], list[str]] = {}
    lock = threading.Lock()
    terminated: set[concurrent.futures.Future[int]] = set()

    def record(future: concurrent.futures.Future[int]) -> None:
        with lock:
            outcomes.setdefault(future, []).append("done")

    def client(seed: int) -> None:
        local = random.Random(seed)
        mine = []
        for i in range(15):
            future = executor.submit(jobs.sleep_then_add, local.choice([0, 0.01]), i, 1)
            future.add_done_callback(record)
            mine.append((i, future))
            if local.random() < 0.3:
                victim = local.choice(mine)[1]
                if executor.terminate(victim):
                    with lock:
                        terminated.add(victim)
        for i, future in mine:
            try:
                assert future.result(RESULT_TIMEOUT) == i + 1
            except (WorkerProcessDied, concurrent.futures.CancelledError):
                assert future in terminated

    threads = [threading.Thread(target=client, args=(rng.random(),)) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(RESULT_TIMEOUT * 2)
    assert not any(thread.is_alive() for thread in threads)
    assert len(outcomes) == 6 * 15
    assert all(calls == ["done"] for calls in outcomes.values())
    assert terminated  # the loop did exercise terminate()
    assert executor.submit(jobs.add, 1, 1).result(RESULT_TIMEOUT) == 2


# -- shutdown and introspection -----------------------------------------------------


def test_shutdown_runs_queued_jobs_then_leaves_nothing() -> None:
    executor = ProcessExecutor(1)
    futures = [executor.submit(jobs.sleep_then_add, 0.01, i, 0) for i in range(3)]
    assert executor.processes <= 1
    executor.shutdown(wait=True)
    assert [f.result(0) for f in futures] == [0, 1, 2]
    assert not _our_threads()
    assert not _our_processes()
    assert executor.processes == 0
    with pytest.raises(RuntimeError, match="after the executor was shut down"):
        executor.submit(jobs.add, 1, 2)
    executor.shutdown()  # again: harmless


def test_shutdown_cancel_futures_cancels_the_queued(
    rendezvous: jobs.Rendezvous, tmp_path: Path
) -> None:
    executor = ProcessExecutor(1)
    running = executor.submit(jobs.sleep_then_add, 0, 1, 1)
    flag = tmp_path / "ran"
    blocker = executor.submit(jobs.block, rendezvous.address)
    rendezvous.wait()
    queued = executor.submit(jobs.write_file, str(flag))
    executor.shutdown(wait=False, cancel_futures=True)
    assert queued.cancelled()
    executor.terminate(blocker)
    executor.shutdown(wait=True)
    assert running.result(0) == 2
    assert not flag.exists()
    assert not _our_threads()
    assert not _our_processes()


def test_context_manager_shuts_down() -> None:
    with ProcessExecutor(2) as executor:
        assert executor.submit(jobs.add, 1, 2).result(RESULT_TIMEOUT) == 3
        assert executor.processes == 1
    assert not _our_threads()
    assert not _our_processes()


def test_terminate_workers_ends_running_and_cancels_queued(
    rendezvous: jobs.Rendezvous, tmp_path: Path
) -> None:
    executor = ProcessExecutor(1)
    running = executor.submit(jobs.block, rendezvous.address)
    rendezvous.wait()
    flag = tmp_path / "ran"
    queued = executor.submit(jobs.write_file, str(flag))
    executor.terminate_workers()
    error = running.exception(0)
    assert isinstance(error, WorkerProcessDied)
    assert "terminate_workers()" in str(error)
    assert queued.cancelled()
    with pytest.raises(RuntimeError, match="shut down"):
        executor.submit(jobs.add, 1, 2)
    executor.shutdown(wait=True)
    assert not flag.exists()
    assert not _our_threads()
    assert not _our_processes()


def test_introspection(
    make: Callable[..., ProcessExecutor], rendezvous: jobs.Rendezvous
) -> None:
    executor = make(2)
    assert (executor.max_workers, executor.running, executor.waiting) == (2, 0, 0)
    assert executor.processes == 0  # started lazily
    blocked = [executor.submit(jobs.block, rendezvous.address) for _ in range(2)]
    rendezvous.wait()
    rendezvous.wait()
    queued = executor.submit(jobs.add, 1, 2)
    assert (executor.running, executor.waiting, executor.processes) == (2, 1, 2)
    for future in blocked:
        executor.terminate(future)
    assert queued.result(RESULT_TIMEOUT) == 3
    assert ProcessExecutor().max_workers == (os.cpu_count() or 1)


@pytest.mark.parametrize(
    ("value", "error"), [(0, ValueError), ("2", TypeError), (1.5, TypeError)]
)
def test_max_workers_is_checked(value: object, error: type[Exception]) -> None:
    with pytest.raises(error, match=r"ProcessExecutor\(max_workers=\.\.\.\) must be"):
        ProcessExecutor(value)  # type: ignore[arg-type]


def test_mp_context_is_checked() -> None:
    with pytest.raises(TypeError, match=r"multiprocessing.get_context\('spawn'\)"):
        ProcessExecutor(1, mp_context="spawn")  # type: ignore[arg-type]


def test_async_function_is_refused(make: Callable[..., ProcessExecutor]) -> None:
    async def fetch() -> int:
        return 1

    with pytest.raises(TypeError, match="is async"):
        make().submit(fetch)


def test_import_syncbridge_does_not_import_multiprocessing_or_pickle() -> None:
    code = (
        "import sys, syncbridge; "
        "loaded = {'multiprocessing', 'pickle'} & set(sys.modules); "
        "assert not loaded, loaded"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=30)


def test_public_names() -> None:
    assert issubclass(SerializationError, syncbridge.SyncBridgeError)
    assert issubclass(SerializationError, TypeError)
    assert issubclass(WorkerProcessDied, syncbridge.SyncBridgeError)
    assert issubclass(ProcessExecutor, concurrent.futures.Executor)


# -- fork ------------------------------------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork()")
def test_forked_child_starts_afresh_and_leaves_the_parents_processes(
    make: Callable[..., ProcessExecutor],
) -> None:
    executor = make(1)
    parent_worker = executor.submit(jobs.pid).result(RESULT_TIMEOUT)
    read, write = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter(
            "ignore", DeprecationWarning
        )  # 3.12+: forking with threads
        child = os.fork()
    if child == 0:  # pragma: no cover - the child
        code = 1
        try:
            os.close(read)
            inherited = executor.processes
            worker = executor.submit(jobs.pid).result(RESULT_TIMEOUT)
            foreign = [
                p for p in multiprocessing.active_children() if p.pid == parent_worker
            ]
            executor.shutdown(wait=True)
            os.write(write, f"{inherited} {worker} {len(foreign)}".encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read) as pipe:
        report = pipe.read()
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    inherited, child_worker, listed = (int(x) for x in report.split())
    assert inherited == 0  # the child forgot the parent's process
    assert child_worker not in (parent_worker, os.getpid(), child)
    assert listed == 0  # and multiprocessing in the child does not list it
    # The parent's worker process is untouched and still serves the parent.
    assert executor.submit(jobs.pid).result(RESULT_TIMEOUT) == parent_worker
