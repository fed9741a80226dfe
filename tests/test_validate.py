"""Misuse of every public entry point: a specific error, where it was made, naming the fix.

One table per kind of mistake. Each row asserts the exception type and the words
of the fix; coroutines passed by mistake are closed (no "never awaited" warning,
which the test configuration turns into an error), and nothing starts running.
"""

from __future__ import annotations

import contextlib
import decimal
import enum
import fractions
import functools
import inspect
import math
import os
import re
import sys
import threading
import time
import types
from typing import TYPE_CHECKING, Any

import anyio
import pytest

import syncbridge
from syncbridge import (
    Bridge,
    WorkerPool,
    gather_with_timeout,
    iterate_in_thread,
    run_blocking,
    sync_call_async,
    sync_gather_with_timeout,
    sync_iter,
    to_async,
    to_async_cm,
    to_sync,
    to_sync_cm,
    watch_loop,
)

if TYPE_CHECKING:
    from collections.abc import (
        AsyncGenerator,
        AsyncIterator,
        Callable,
        Coroutine,
        Generator,
        Iterator,
    )


async def fetch(x: int = 0) -> int:
    return x


class AsyncCallable:
    async def __call__(self, x: int = 0) -> int:
        return x


def blocking(x: int = 0) -> int:
    return x


def closed(coro: Coroutine[Any, Any, Any]) -> bool:
    return inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED


def portal_threads(bridge: Bridge) -> list[threading.Thread]:
    name = f"syncbridge-portal-{bridge.name}"
    return [t for t in threading.enumerate() if t.name == name]


# -- capacities: ints >= 1 only, named in the message -------------------------

NOT_INTS = [math.nan, 2.5, 1.5, math.inf, "4", None, True, 4.0]
TOO_SMALL = [0, -1]


def capacity_error(value: object) -> type[Exception]:
    return (
        ValueError if value in TOO_SMALL and not isinstance(value, bool) else TypeError
    )


def capacity_setters() -> dict[str, tuple[str, Callable[[object], object]]]:
    """Each way to give a capacity, with how its message must name it."""

    def setter(pool: str | None) -> Callable[[object], object]:
        def set_it(value: object) -> None:
            with Bridge(pools={"db": 2}) as b:
                if pool is None:
                    b.max_workers = value  # type: ignore[assignment]
                else:
                    b.pool(pool).capacity = value  # type: ignore[assignment]

        return set_it

    def add_pool(value: object) -> None:
        with Bridge() as b:
            b.add_pool("db", value)  # type: ignore[arg-type]

    return {
        "Bridge(max_workers=)": (
            "Bridge(max_workers=...)",
            lambda v: Bridge(max_workers=v),  # type: ignore[arg-type]
        ),
        "Bridge(pools=)": (
            "Bridge(pools={'db': ...})",
            lambda v: Bridge(pools={"db": v}),  # type: ignore[dict-item]
        ),
        "bridge.max_workers": ("bridge.max_workers", setter(None)),
        "pool.capacity": ("bridge.pool('db').capacity", setter("db")),
        "add_pool": ("Bridge.add_pool('db', capacity=...)", add_pool),
        "WorkerPool": (
            "WorkerPool('w').capacity",
            lambda v: WorkerPool("w", v),  # type: ignore[arg-type]
        ),
    }


@pytest.mark.parametrize("where", list(capacity_setters()))
@pytest.mark.parametrize("value", NOT_INTS + TOO_SMALL, ids=repr)
def test_a_capacity_is_an_int_of_at_least_one(where: str, value: object) -> None:
    name, give = capacity_setters()[where]
    with pytest.raises(capacity_error(value)) as info:
        give(value)
    message = str(info.value)
    assert message.startswith(f"{name} must be ")
    assert "an int >= 1" in message
    assert repr(value) in message


# -- pool bounds (#25): max_waiting an int >= 0, max_wait finite seconds > 0 ------

BAD_MAX_WAITING: list[tuple[object, type[Exception]]] = [
    (True, TypeError),
    (1.5, TypeError),
    ("3", TypeError),
    (math.nan, TypeError),
    (-1, ValueError),
]
BAD_MAX_WAIT: list[tuple[object, type[Exception]]] = [
    (True, TypeError),
    ("0.5", TypeError),
    (decimal.Decimal("0.5"), TypeError),
    (0, ValueError),
    (-1.0, ValueError),
    (math.nan, ValueError),
    (math.inf, ValueError),
]


def bound_setters(option: str) -> dict[str, tuple[str, Callable[[object], object]]]:
    """Each way to give a pool bound *option*, with how its message names it."""

    def pool_setter(value: object) -> None:
        with Bridge(pools={"db": 2}) as b:
            setattr(b.pool("db"), option, value)

    def add_pool(value: object) -> None:
        with Bridge() as b:
            b.add_pool("db", 2, **{option: value})  # type: ignore[arg-type]

    def set_pool(value: object) -> None:
        with Bridge(pools={"db": 2}) as b:
            b.set_pool("db", 3, **{option: value})  # type: ignore[arg-type]
            pytest.fail("refused values must not be applied")  # pragma: no cover

    return {
        "Bridge(pools=)": (
            f"Bridge(pools={{'db': ...}})['{option}']",
            lambda v: Bridge(pools={"db": {"capacity": 2, option: v}}),  # type: ignore[dict-item]
        ),
        "add_pool": (f"Bridge.add_pool('db', {option}=...)", add_pool),
        "set_pool": (f"Bridge.set_pool('db', {option}=...)", set_pool),
        "pool setter": (f"bridge.pool('db').{option}", pool_setter),
        "WorkerPool": (
            f"WorkerPool('w').{option}",
            lambda v: WorkerPool("w", 1, **{option: v}),  # type: ignore[arg-type]
        ),
    }


@pytest.mark.parametrize("where", list(bound_setters("max_waiting")))
@pytest.mark.parametrize(("value", "error"), BAD_MAX_WAITING, ids=repr)
def test_max_waiting_is_none_or_an_int_of_at_least_zero(
    where: str, value: object, error: type[Exception]
) -> None:
    name, give = bound_setters("max_waiting")[where]
    with pytest.raises(error) as info:
        give(value)
    message = str(info.value)
    assert message.startswith(f"{name} must be None (no bound) or an int >= 0")
    assert repr(value) in message


@pytest.mark.parametrize("where", list(bound_setters("max_wait")))
@pytest.mark.parametrize(("value", "error"), BAD_MAX_WAIT, ids=repr)
def test_max_wait_is_none_or_finite_seconds_above_zero(
    where: str, value: object, error: type[Exception]
) -> None:
    name, give = bound_setters("max_wait")[where]
    with pytest.raises(error) as info:
        give(value)
    message = str(info.value)
    assert message.startswith(f"{name} must be a finite number of seconds > 0")
    assert "or None (no bound)" in message
    assert repr(value) in message


def test_accepted_bounds_are_stored_and_set_pool_applies_them() -> None:
    with Bridge(
        pools={
            "db": {"capacity": 3, "max_waiting": 0, "max_wait": 1},
            "api": {"capacity": 2},
            "old": 4,
        }
    ) as b:
        db, api, old = b.pool("db"), b.pool("api"), b.pool("old")
        assert isinstance(db, WorkerPool)
        assert (db.capacity, db.max_waiting, db.max_wait) == (3, 0, 1.0)
        assert isinstance(db.max_wait, float)
        assert isinstance(api, WorkerPool)
        assert isinstance(old, WorkerPool)
        assert (api.max_waiting, api.max_wait, old.max_waiting, old.max_wait) == (
            None,
            None,
            None,
            None,
        )
        b.set_pool("api", 5, max_waiting=32, max_wait=0.5)
        assert (api.capacity, api.max_waiting, api.max_wait) == (5, 32, 0.5)
        b.set_pool("api", 5)  # the same setting applied again: unbounded
        assert (api.max_waiting, api.max_wait) == (None, None)
        b.add_pool("new", 1, max_waiting=2)
        new = b.pool("new")
        assert isinstance(new, WorkerPool)
        assert (new.max_waiting, new.max_wait) == (2, None)


@pytest.mark.parametrize(
    ("setting", "words"),
    [
        (
            {"capacity": 2, "max_wiat": 1},
            (
                "Bridge(pools={'db': ...}) has unknown key(s) 'max_wiat'; a pool's "
                "mapping takes 'capacity', 'max_waiting', 'max_wait'"
            ),
        ),
        (
            {"max_wait": 1},
            "Bridge(pools={'db': ...}) has no 'capacity': give the number of calls",
        ),
        (
            {"capacity": "2"},
            "Bridge(pools={'db': ...})['capacity'] must be an int >= 1",
        ),
    ],
)
def test_a_pool_mapping_is_checked(setting: dict[str, object], words: str) -> None:
    with pytest.raises((TypeError, ValueError)) as info:
        Bridge(pools={"db": setting})  # type: ignore[dict-item]
    assert words in str(info.value)


def test_a_wrong_pool_value_names_the_mapping_form() -> None:
    with pytest.raises(TypeError) as info:
        Bridge(pools={"db": 2.5})  # type: ignore[dict-item]
    assert "{'capacity': 10, 'max_waiting': 32, 'max_wait': 0.5}" in str(info.value)


def test_a_pool_on_an_executor_refuses_bounds() -> None:
    """The executor queues the calls itself: no bound of ours could hold."""
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(1) as ex, Bridge() as b:
        with pytest.raises(ValueError, match=r"runs on an executor, which queues"):
            b.add_pool("ex", executor=ex, max_waiting=3)
        b.add_pool("ex", executor=ex)
        with pytest.raises(ValueError, match=r"max_waiting and max_wait cannot"):
            b.set_pool("ex", 2, max_wait=1.0)


def test_a_capacity_read_from_the_environment_says_to_convert_it() -> None:
    with pytest.raises(TypeError, match=r"got '4' of type str; convert it first"):
        Bridge(max_workers="4")  # type: ignore[arg-type]


def test_a_refused_capacity_changes_nothing() -> None:
    with Bridge(max_workers=3) as b:
        with pytest.raises(TypeError):
            b.max_workers = math.nan  # type: ignore[assignment]
        assert b.max_workers == 3


@pytest.mark.anyio
async def test_a_nan_capacity_no_longer_lets_every_call_run_at_once() -> None:
    """The symptom behind the table: NaN compared false, so the limit was ignored."""
    with pytest.raises(TypeError):
        Bridge(pools={"db": math.nan})  # type: ignore[dict-item]
    async with Bridge(pools={"db": 2}) as b:
        running = 0
        most = 0
        lock = threading.Lock()
        release = threading.Event()

        def work() -> None:
            nonlocal running, most
            with lock:
                running += 1
                most = max(most, running)
            release.wait(10)
            with lock:
                running -= 1

        run = to_async(work, pool="db", bridge=b)
        async with anyio.create_task_group() as tg:
            for _ in range(10):
                tg.start_soon(run)
            with anyio.fail_after(10):
                while b.pool("db").waiting < 8:
                    await anyio.sleep(0.01)
            release.set()
        assert most == 2


# -- loop watching ------------------------------------------------------------

WATCH_THRESHOLDS: list[tuple[object, type[Exception]]] = [
    (0, ValueError),
    (-1, ValueError),
    (math.nan, ValueError),
    (math.inf, ValueError),
    ("0.1", TypeError),
    (True, TypeError),
]


@pytest.mark.parametrize(("value", "error"), WATCH_THRESHOLDS, ids=repr)
def test_watch_thresholds_are_finite_positive_seconds(
    value: object, error: type[Exception]
) -> None:
    takers: dict[str, Callable[[object], object]] = {
        "watch_loop(threshold=...)": lambda v: watch_loop(v),  # type: ignore[arg-type]
        "Bridge(blocking_threshold=...)": lambda v: Bridge(blocking_threshold=v),  # type: ignore[arg-type]
    }
    for name, take in takers.items():
        with pytest.raises(error) as info:
            take(value)
        assert str(info.value).startswith(
            f"{name} must be a finite number of seconds > 0"
        )
    with Bridge() as b, pytest.raises(error, match=r"watch_portal\(threshold=\.\.\.\)"):
        b.watch_portal(value)  # type: ignore[arg-type]


def test_watch_describers_must_be_callable() -> None:
    with pytest.raises(
        TypeError, match=r"watch_loop\(describe=\.\.\.\) must be callable"
    ):
        watch_loop(0.1, describe="GET /")  # type: ignore[arg-type]
    with Bridge() as b, pytest.raises(TypeError, match="must be callable"):
        b.watch_portal(0.1, describe=42)  # type: ignore[arg-type]


# -- the other options of Bridge ------------------------------------------------

BRIDGE_OPTIONS: list[tuple[dict[str, Any], type[Exception], str]] = [
    ({"backend": "curio"}, ValueError, "Bridge(backend=...) must be one of 'asyncio'"),
    ({"backend": None}, ValueError, "Bridge(backend=...) must be one of"),
    ({"use_uvloop": "yes"}, TypeError, "Bridge(use_uvloop=...) must be True or False"),
    ({"abandon_on_cancel": None}, TypeError, "Bridge(abandon_on_cancel=...) must be"),
    ({"abandon_on_cancel": 1}, TypeError, "Bridge(abandon_on_cancel=...) must be"),
    ({"shutdown_grace": -1}, ValueError, "Bridge(shutdown_grace=...) must be a finite"),
    ({"shutdown_grace": math.nan}, ValueError, "Bridge(shutdown_grace=...) must be"),
    ({"shutdown_grace": math.inf}, ValueError, "Bridge(shutdown_grace=...) must be"),
    ({"shutdown_grace": "2"}, TypeError, "Bridge(shutdown_grace=...) must be"),
    ({"pools": [("db", 2)]}, TypeError, "Bridge(pools=...) must be a mapping"),
    (
        {"pools": {3: 2}},
        TypeError,
        "a pool name in Bridge(pools=...) must be a str",
    ),
    ({"pools": {"": 2}}, ValueError, "must not be empty"),
    ({"name": 7}, TypeError, "Bridge(name=...) must be a str"),
    ({"name": ""}, ValueError, "Bridge(name=...) must not be empty"),
]


@pytest.mark.parametrize(("options", "error", "words"), BRIDGE_OPTIONS)
def test_bridge_options_are_checked_at_construction(
    options: dict[str, Any], error: type[Exception], words: str
) -> None:
    before = threading.active_count()
    with pytest.raises(error, match=re.escape(words)):
        Bridge(**options)
    assert threading.active_count() == before  # refused before starting anything


def test_add_pool_checks_the_name() -> None:
    with Bridge() as b, pytest.raises(TypeError, match=r"add_pool\(name=\.\.\.\)"):
        b.add_pool(3, 2)  # type: ignore[arg-type]


# -- timeouts ---------------------------------------------------------------


def timeout_takers() -> dict[str, Callable[[Any], object]]:
    return {
        "to_async(timeout=...)": lambda t: to_async(timeout=t),
        "to_sync(timeout=...)": lambda t: to_sync(timeout=t),
        "sync_gather_with_timeout(timeout=...)": lambda t: sync_gather_with_timeout(
            fetch(), timeout=t
        ),
    }


@pytest.mark.parametrize("name", list(timeout_takers()))
@pytest.mark.parametrize(
    ("value", "error"),
    [
        ("1", TypeError),
        (True, TypeError),
        ([1], TypeError),
        (-1, ValueError),
        (math.nan, ValueError),
    ],
    ids=repr,
)
def test_a_timeout_is_none_or_seconds(
    name: str, value: object, error: type[Exception]
) -> None:
    with pytest.raises(error) as info:
        timeout_takers()[name](value)
    assert str(info.value).startswith(f"{name} must be None (no deadline) or a number")
    assert repr(value) in str(info.value)


@pytest.mark.anyio
async def test_gather_refuses_a_string_timeout_and_closes_the_coroutines() -> None:
    coros = [fetch(), fetch()]
    with pytest.raises(TypeError, match=r"gather_with_timeout\(timeout=\.\.\.\)"):
        await gather_with_timeout(*coros, timeout="1")  # type: ignore[call-overload]
    assert all(closed(c) for c in coros)


# -- gather's limit -----------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("limit", "error"),
    [
        (1.5, TypeError),
        (math.nan, TypeError),
        (math.inf, TypeError),
        ("2", TypeError),
        (True, TypeError),
        (0, ValueError),
        (-3, ValueError),
    ],
    ids=repr,
)
async def test_gather_limit_is_refused_before_anything_starts(
    limit: object, error: type[Exception]
) -> None:
    started: list[int] = []

    async def job(i: int) -> int:
        started.append(i)
        return i

    coros = [job(i) for i in range(3)]
    with pytest.raises(error) as info:
        await gather_with_timeout(*coros, timeout=None, limit=limit)  # type: ignore[call-overload]
    message = str(info.value)
    assert message.startswith("gather_with_timeout(limit=...) must be None (no limit)")
    assert repr(limit) in message
    assert started == []
    assert all(closed(c) for c in coros)


def test_sync_gather_limit_is_refused_and_closes_the_coroutines() -> None:
    coros = [fetch(), fetch()]
    with pytest.raises(TypeError, match=r"sync_gather_with_timeout\(limit=\.\.\.\)"):
        sync_gather_with_timeout(*coros, timeout=None, limit=1.5)  # type: ignore[call-overload]
    assert all(closed(c) for c in coros)


# -- async functions where blocking ones belong --------------------------------

ASYNC_CALLABLES: dict[str, Callable[[], object]] = {
    "async def": lambda: fetch,
    "async __call__": AsyncCallable,
    "partial of async def": lambda: functools.partial(fetch, 1),
    "bound async method": lambda: Bridge().__aenter__,
}


@pytest.mark.anyio
@pytest.mark.parametrize("kind", list(ASYNC_CALLABLES))
async def test_run_blocking_refuses_async_functions_at_the_call(kind: str) -> None:
    func: Any = ASYNC_CALLABLES[kind]()
    with pytest.raises(TypeError) as info:
        await run_blocking(func)
    message = str(info.value)
    assert message.startswith("run_blocking() runs blocking functions")
    assert "is async: `await " in message
    assert "sync_call_async()" in message


@types.coroutine
def legacy_coroutine() -> Generator[None, None, int]:
    """A ``@types.coroutine`` generator: awaitable, though it has no ``__await__``."""
    yield
    return 1


def generator_closed(gen: Generator[Any, Any, Any]) -> bool:
    return inspect.getgeneratorstate(gen) == inspect.GEN_CLOSED


ASYNC_RESULTS: dict[str, tuple[Callable[[], Any], Callable[[Any], bool]]] = {
    "coroutine": (fetch, closed),
    "generator": (legacy_coroutine, generator_closed),
}


@pytest.mark.anyio
@pytest.mark.parametrize("kind", list(ASYNC_RESULTS))
async def test_run_blocking_refuses_async_work_a_blocking_function_returned(
    kind: str,
) -> None:
    make_async, is_closed = ASYNC_RESULTS[kind]
    made: list[Any] = []

    def make() -> Any:
        made.append(make_async())
        return made[0]

    with pytest.raises(
        TypeError, match=f"returned {kind!r}, async work that never ran"
    ):
        await run_blocking(make)
    assert is_closed(made[0])
    assert await run_blocking(lambda: iter([1]).__next__()) == 1  # plain: fine


@pytest.mark.anyio
async def test_run_blocking_refuses_an_awaitable_and_closes_it() -> None:
    coro = fetch()
    with pytest.raises(
        TypeError, match=r"got a coroutine object \(now closed, it never ran\)"
    ):
        await run_blocking(coro)  # type: ignore[arg-type]
    assert closed(coro)


@pytest.mark.anyio
async def test_run_blocking_refuses_a_non_callable() -> None:
    with pytest.raises(TypeError, match="takes a blocking function, got 42"):
        await run_blocking(42)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", list(ASYNC_CALLABLES))
def test_to_async_refuses_async_functions_at_decoration(kind: str) -> None:
    func: Any = ASYNC_CALLABLES[kind]()
    with pytest.raises(TypeError, match=r"^to_async\(\) runs blocking functions"):
        to_async(func)
    with pytest.raises(TypeError, match="is async"):
        to_async(timeout=1)(func)


def test_to_async_names_a_partial_by_its_function() -> None:
    with pytest.raises(
        TypeError, match=r"functools\.partial\(fetch, \.\.\.\) is async"
    ):
        to_async(functools.partial(fetch, 1))


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda: to_async(42), "to_async() takes a blocking function, got 42"),  # type: ignore[call-overload]
        (lambda: to_sync(42), "to_sync() takes an async function, got 42"),  # type: ignore[call-overload]
        (lambda: to_async(pool=3), "to_async(pool=...) must be a str"),  # type: ignore[call-overload]
        (
            lambda: to_async(thread_sensitive="yes"),  # type: ignore[call-overload]
            "to_async(thread_sensitive=...) must be True or False",
        ),
        (
            lambda: to_async(abandon_on_cancel=1),  # type: ignore[call-overload]
            "to_async(abandon_on_cancel=...) must be True or False",
        ),
        (
            lambda: to_async(bridge=object()),  # type: ignore[call-overload]
            "to_async(bridge=...) must be a syncbridge.Bridge or None",
        ),
        (
            lambda: to_sync(bridge="default"),  # type: ignore[call-overload]
            "to_sync(bridge=...) must be a syncbridge.Bridge or None",
        ),
    ],
)
def test_decorators_refuse_bad_arguments_at_decoration(
    make: Callable[[], object], words: str
) -> None:
    with pytest.raises(TypeError, match=re.escape(words)):
        make()


# -- coroutines and generators where async functions belong -------------------


def test_sync_call_async_refuses_a_coroutine_object_and_closes_it() -> None:
    coro = fetch(1)
    with Bridge() as b:
        with pytest.raises(TypeError) as info:
            b.sync_call_async(coro)  # type: ignore[arg-type]
        assert not portal_threads(b)  # refused before anything was sent to the loop
    message = str(info.value)
    assert "takes an async function, not an awaitable: pass its function" in message
    assert "sync_call_async(fetch, url), not sync_call_async(fetch(url))" in message
    assert closed(coro)


def test_the_default_sync_call_async_refuses_a_coroutine_object_too() -> None:
    coro = fetch(1)
    with pytest.raises(TypeError, match="not an awaitable"):
        sync_call_async(coro)  # type: ignore[arg-type]
    assert closed(coro)


def ticks() -> Iterator[int]:
    yield 1


async def aticks() -> AsyncIterator[int]:
    yield 1


@pytest.mark.parametrize(
    ("func", "fix"),
    [
        (ticks, "is a generator function: call it directly, it is not async"),
        (aticks, "is a generator function: iterate it with syncbridge.sync_iter()"),
    ],
)
def test_sync_call_async_refuses_generator_functions_before_running_them(
    func: Callable[[], object], fix: str
) -> None:
    with Bridge() as b:
        with pytest.raises(TypeError, match=re.escape(fix)):
            b.sync_call_async(func)  # type: ignore[arg-type]
        assert not portal_threads(b)
        with pytest.raises(TypeError, match=re.escape(fix)):
            b.start_soon(func)  # type: ignore[arg-type]
        assert not portal_threads(b)
    with pytest.raises(TypeError, match=re.escape(fix)):
        to_sync(func)  # type: ignore[arg-type]


def test_start_soon_refuses_a_coroutine_object_and_closes_it() -> None:
    coro = fetch()
    with Bridge() as b, pytest.raises(TypeError, match="not an awaitable"):
        b.start_soon(coro)  # type: ignore[arg-type]
    assert closed(coro)


def test_to_sync_refuses_a_coroutine_object_and_closes_it() -> None:
    coro = fetch()
    with pytest.raises(
        TypeError, match=r"to_sync\(fetch\), not to_sync\(fetch\(url\)\)"
    ):
        to_sync(coro)  # type: ignore[call-overload]
    assert closed(coro)


def test_a_plain_function_returning_an_awaitable_is_still_accepted() -> None:
    """It cannot be known beforehand, so it runs; what it returns is checked."""
    with Bridge() as b:
        assert b.sync_call_async(lambda: fetch(5)) == 5
        with pytest.raises(TypeError, match="cannot be awaited"):
            b.sync_call_async(blocking)  # type: ignore[arg-type]


# -- context managers and iterables -------------------------------------------


@contextlib.contextmanager
def plain_cm() -> Iterator[int]:
    yield 1


@contextlib.asynccontextmanager
async def async_cm() -> AsyncIterator[int]:
    yield 1


async def not_decorated() -> AsyncGenerator[int]:
    yield 1


async def forgot_the_decorator() -> int:
    return 1


def test_to_async_cm_refuses_what_is_not_a_context_manager() -> None:
    with pytest.raises(TypeError, match="use `async with` directly"):
        to_async_cm(async_cm())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="takes a context manager, got 42"):
        to_async_cm(42)  # type: ignore[arg-type]


def test_to_sync_cm_refuses_what_is_not_an_async_context_manager() -> None:
    with pytest.raises(TypeError, match="use `with` directly"):
        to_sync_cm(plain_cm())  # type: ignore[arg-type]
    coro = forgot_the_decorator()
    with pytest.raises(TypeError, match=r"@contextlib\.asynccontextmanager"):
        to_sync_cm(coro)  # type: ignore[arg-type]
    assert closed(coro)


@pytest.mark.anyio
async def test_iterate_in_thread_refuses_an_async_iterable() -> None:
    agen = not_decorated()
    with pytest.raises(TypeError, match="iterate it directly with `async for`"):
        iterate_in_thread(agen)  # type: ignore[arg-type]
    await agen.aclose()
    with pytest.raises(
        TypeError, match="takes an iterable, got 42: it is not iterable"
    ):
        iterate_in_thread(42)  # type: ignore[arg-type]


def test_sync_iter_refuses_a_plain_iterable() -> None:
    with pytest.raises(TypeError, match="iterate it directly with `for`"):
        sync_iter([1, 2])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="takes an async iterable, got 42"):
        sync_iter(42)  # type: ignore[arg-type]


def test_every_public_callable_was_exercised_here() -> None:
    """A new public helper must get its misuse rows in this file."""
    with open(__file__, encoding="utf-8") as f:
        source = f.read()
    untested = [
        name
        for name in syncbridge.__all__
        if inspect.isfunction(getattr(syncbridge, name))
        and name not in {"check_cancelled", "get_bridge"}  # no arguments to get wrong
        and f"{name}(" not in source
    ]
    assert untested == []


# -- found by review: what must be accepted, and what slipped through ----------


@pytest.mark.anyio
async def test_iterate_in_thread_may_yield_coroutine_objects() -> None:
    """Only a blocking *function* returning a coroutine is a mistake; items are data."""
    coros = [fetch(i) for i in range(3)]
    got = [await c async for c in iterate_in_thread(coros)]
    assert got == [0, 1, 2]


def test_a_str_subclass_backend_is_accepted_as_the_plain_name() -> None:
    class Backend(str):
        pass

    with Bridge(backend=Backend("asyncio")) as b:  # type: ignore[arg-type]
        backend: object = b.backend
        assert type(backend) is str
        assert backend == "asyncio"


def test_integer_like_capacities_are_accepted_and_stored_as_int() -> None:
    class Four:
        def __index__(self) -> int:
            return 4

    class Size(enum.IntEnum):
        SMALL = 2

    with Bridge(max_workers=Four(), pools={"db": Size.SMALL}) as b:  # type: ignore[arg-type]
        assert type(b.max_workers) is int
        assert b.max_workers == 4
        assert type(b.pool("db").capacity) is int


def test_real_number_timeouts_are_accepted_as_float() -> None:
    half: Any = fractions.Fraction(1, 2)
    assert to_sync(timeout=half)(fetch)(3) == 3
    with pytest.raises(TypeError, match=r"timeout=\.\.\.\) must be None"):
        to_sync(timeout=decimal.Decimal("0.5"))  # type: ignore[call-overload]


@pytest.mark.anyio
async def test_gather_refuses_what_is_not_awaitable_before_anything_runs() -> None:
    ran: list[str] = []

    async def charge() -> str:
        ran.append("charged")
        return "ok"

    first = charge()
    with pytest.raises(
        TypeError, match=r"got 5 as argument #1, which cannot be awaited"
    ):
        await gather_with_timeout(first, 5, timeout=1)  # type: ignore[call-overload]
    assert ran == []
    assert closed(first)
    with pytest.raises(
        TypeError, match=r"got the coroutine function .*charge as argument #0: call it"
    ):
        await gather_with_timeout(charge, timeout=1)  # type: ignore[call-overload]
    inner = [charge(), charge()]
    with pytest.raises(
        TypeError,
        match=r"as separate arguments, got a list .*\(\*aws, timeout=\.\.\.\)",
    ):
        await gather_with_timeout(inner, timeout=1)  # type: ignore[call-overload]
    assert all(closed(c) for c in inner)
    coro = charge()
    with pytest.raises(
        TypeError, match=r"return_exceptions=\.\.\.\) must be True or False"
    ):
        await gather_with_timeout(coro, timeout=1, return_exceptions="yes")  # type: ignore[call-overload]
    assert closed(coro)
    assert ran == []


@pytest.mark.anyio
async def test_run_blocking_refuses_async_generators() -> None:
    with pytest.raises(
        TypeError, match="is an async generator function: iterate it with `async for"
    ):
        await run_blocking(aticks)
    with pytest.raises(
        TypeError, match="returned 'async_generator', async work that never ran"
    ):
        await run_blocking(lambda: aticks())


def test_bridge_settings_changed_later_are_checked_too() -> None:
    with Bridge() as b:
        with pytest.raises(ValueError, match=r"bridge.shutdown_grace must be a finite"):
            b.shutdown_grace = math.nan
        with pytest.raises(
            TypeError, match=r"bridge.abandon_on_cancel must be True or False"
        ):
            b.abandon_on_cancel = "no"  # type: ignore[assignment]
        with pytest.raises(AttributeError):
            b.name = "other"  # type: ignore[misc]
        with pytest.raises(
            TypeError, match=r"Bridge.pool\(name=\.\.\.\) must be a str"
        ):
            b.pool(1)  # type: ignore[arg-type]
        assert (b.shutdown_grace, b.abandon_on_cancel) == (2.0, True)
        b.shutdown_grace = 0
        assert b.shutdown_grace == 0.0


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"name": 5, "capacity": 1}, "WorkerPool(name=...) must be a str"),
        (
            {"name": "w", "capacity": 1, "idle_timeout": math.nan},
            "WorkerPool(idle_timeout=...) must be",
        ),
        (
            {"name": "w", "capacity": 1, "idle_timeout": "5"},
            "WorkerPool(idle_timeout=...) must be",
        ),
    ],
)
def test_worker_pool_arguments_are_checked(kwargs: dict[str, Any], words: str) -> None:
    with pytest.raises((TypeError, ValueError), match=re.escape(words)):
        WorkerPool(**kwargs)


def test_a_function_passed_uncalled_is_told_to_call_it() -> None:
    with pytest.raises(
        TypeError,
        match=re.escape("it is a function: call it, to_async_cm(plain_cm(...))"),
    ):
        to_async_cm(plain_cm)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=re.escape("call it, sync_iter(aticks(...))")):
        sync_iter(aticks)  # type: ignore[arg-type]


# -- issue 24: every accepted value works ----------------------------------------


def test_a_grace_past_what_a_thread_can_wait_waits_and_answers_every_caller() -> None:
    """5e9 s is "as long as the platform can wait": close() used to overflow."""
    bridge = Bridge(shutdown_grace=5e9)
    assert 2 * bridge.shutdown_grace + 1 < threading.TIMEOUT_MAX
    release = threading.Event()

    async def cleanup_then_answer() -> int:
        while not release.is_set():  # a portal task still running at close
            await anyio.sleep(0.005)
        return 7

    future = bridge.start_soon(cleanup_then_answer)

    def release_once_closing() -> None:
        while not bridge.closed:
            time.sleep(0.001)
        release.set()

    helper = threading.Thread(target=release_once_closing)
    helper.start()
    bridge.close()  # waits for the task: the grace has not run out
    helper.join()
    assert future.result(timeout=0) == 7


@pytest.mark.anyio
async def test_a_watch_threshold_past_what_a_thread_can_wait_keeps_watching() -> None:
    before = set(threading.enumerate())  # other watches (a portal's) may run
    async with watch_loop(1e11) as watch:
        (monitor,) = (
            t
            for t in threading.enumerate()
            if t.name.startswith("syncbridge-watch-") and t not in before
        )
        monitor.join(0.2)  # it used to die at once with OverflowError
        assert monitor.is_alive()
        assert watch.running
    assert not monitor.is_alive()


def test_a_portal_watch_threshold_past_what_a_thread_can_wait_keeps_watching() -> None:
    with Bridge(blocking_threshold=1e11) as b:
        assert b.sync_call_async(fetch, 3) == 3
        watch = b.portal_watch
        assert watch is not None
        monitor = next(
            t
            for t in threading.enumerate()
            if t.name == f"syncbridge-watch-portal {b.name}"
        )
        monitor.join(0.2)
        assert monitor.is_alive()
        assert watch.running


def _flask_app(**config: object) -> Any:
    import flask

    app = flask.Flask("validate")
    app.config.update(TESTING=True, **config)
    return app


async def _async_lines() -> AsyncIterator[str]:
    yield "x"


# (public parameter, misuse, error, words of the message)
NEWER_ARGUMENTS: list[tuple[str, Callable[[Bridge], object], type[Exception], str]] = [
    (
        "Bridge.set_pool(name)",
        lambda b: b.set_pool(3, 2),  # type: ignore[arg-type]
        TypeError,
        "Bridge.set_pool(name=...) must be a str",
    ),
    (
        "Bridge.set_pool(capacity)",
        lambda b: b.set_pool("db", 1.5),  # type: ignore[arg-type]
        TypeError,
        "Bridge.set_pool('db', capacity=...) must be an int >= 1",
    ),
    (
        "Bridge.run_blocking(func)",
        lambda b: anyio.run(b.run_blocking, fetch),
        TypeError,
        "run_blocking() runs blocking functions in a worker thread, but fetch is async",
    ),
    (
        "to_async(terminate_on_cancel)",
        lambda b: to_async(terminate_on_cancel="yes"),  # type: ignore[call-overload]
        TypeError,
        "to_async(terminate_on_cancel=...) must be True or False",
    ),
    (
        "sync_gather_with_timeout(aws)",
        lambda b: sync_gather_with_timeout(5, timeout=1),  # type: ignore[call-overload]
        TypeError,
        "got 5 as argument #0, which cannot be awaited",
    ),
    (
        "sync_gather_with_timeout(return_exceptions)",
        lambda b: sync_gather_with_timeout(timeout=1, return_exceptions="yes"),  # type: ignore[call-overload]
        TypeError,
        "return_exceptions=...) must be True or False",
    ),
    (
        "ProcessExecutor(initializer)",
        lambda b: syncbridge.ProcessExecutor(1, initializer=5),  # type: ignore[arg-type]
        TypeError,
        "ProcessExecutor(initializer=...) must be a function or None, got 5",
    ),
    (
        "ProcessExecutor(initargs)",
        lambda b: syncbridge.ProcessExecutor(1, initializer=print, initargs=5),  # type: ignore[arg-type]
        TypeError,
        "ProcessExecutor(initargs=...) must be a tuple of the initializer's arguments",
    ),
    (
        "ProcessExecutor(initargs)",
        lambda b: syncbridge.ProcessExecutor(
            1,
            initializer=print,
            initargs="db.sqlite",  # type: ignore[arg-type]
        ),
        TypeError,
        "such as (path,) for one; got 'db.sqlite'",
    ),
    (
        "prometheus.register(bridges)",
        lambda b: __import__("syncbridge.prometheus").prometheus.register(None),
        TypeError,
        "must be a syncbridge.Bridge each, got None; call register() with no bridge",
    ),
    (
        "prometheus.register(registry)",
        lambda b: __import__("syncbridge.prometheus").prometheus.register(
            b, registry={}
        ),
        TypeError,
        "register(registry=...) must be a prometheus_client.CollectorRegistry or None",
    ),
    (
        "WorkerPool(label)",
        lambda b: WorkerPool("w", 1, label=5),  # type: ignore[arg-type]
        TypeError,
        "WorkerPool(label=...) must be a str",
    ),
    (
        "WorkerPool(title)",
        lambda b: WorkerPool("w", 1, title=5),  # type: ignore[arg-type]
        TypeError,
        "WorkerPool(title=...) must be a str",
    ),
    (
        "flask.SyncBridge(app)",
        lambda b: __import__("syncbridge.flask").flask.SyncBridge("app"),
        TypeError,
        "SyncBridge(app=...) must be a flask.Flask application, got 'app'",
    ),
    (
        "flask.SyncBridge.init_app(app)",
        lambda b: __import__("syncbridge.flask").flask.SyncBridge().init_app(None),
        TypeError,
        "SyncBridge.init_app(app=...) must be a flask.Flask application, got None",
    ),
    (
        "flask.stream(aiterable)",
        lambda b: __import__("syncbridge.flask").flask.stream(["x"]),
        TypeError,
        "syncbridge.flask.stream() takes an async iterable",
    ),
]


@pytest.mark.parametrize(
    ("key", "misuse", "error", "words"),
    NEWER_ARGUMENTS,
    ids=[f"{row[0]}-{i}" for i, row in enumerate(NEWER_ARGUMENTS)],
)
def test_newer_arguments_are_refused_where_given(
    key: str, misuse: Callable[[Bridge], object], error: type[Exception], words: str
) -> None:
    with Bridge() as b, pytest.raises(error) as info:
        misuse(b)
    assert words in str(info.value)


# Where each public parameter's misuse is tested: a row key of a table here, or
# "file::test" elsewhere. What is exempt says why.
COVERED_ELSEWHERE: dict[str, str] = {
    **dict.fromkeys(
        (
            "Bridge(max_workers)",
            "Bridge(pools)",
            "Bridge.max_workers=",
            "Bridge.add_pool(capacity)",
            "WorkerPool(capacity)",
            "WorkerPool.capacity=",
        ),
        "test_validate.py::test_a_capacity_is_an_int_of_at_least_one",
    ),
    **dict.fromkeys(
        (
            "Bridge(backend)",
            "Bridge(use_uvloop)",
            "Bridge(abandon_on_cancel)",
            "Bridge(shutdown_grace)",
            "Bridge(name)",
        ),
        "test_validate.py::test_bridge_options_are_checked_at_construction",
    ),
    **dict.fromkeys(
        (
            "Bridge(blocking_threshold)",
            "Bridge.watch_portal(threshold)",
            "watch_loop(threshold)",
        ),
        "test_validate.py::test_watch_thresholds_are_finite_positive_seconds",
    ),
    **dict.fromkeys(
        ("Bridge.watch_portal(describe)", "watch_loop(describe)"),
        "test_validate.py::test_watch_describers_must_be_callable",
    ),
    **dict.fromkeys(
        ("Bridge.abandon_on_cancel=", "Bridge.shutdown_grace=", "Bridge.pool(name)"),
        "test_validate.py::test_bridge_settings_changed_later_are_checked_too",
    ),
    "Bridge(executor)": "test_executors.py::test_named_pools_on_executors_and_their_misuse",
    "Bridge.add_pool(executor)": "test_executors.py::test_named_pools_on_executors_and_their_misuse",
    "ExecutorPool.capacity=": "test_executors.py::test_named_pools_on_executors_and_their_misuse",
    "to_async(executor)": "test_executors.py::test_named_pools_on_executors_and_their_misuse",
    "Bridge.add_pool(name)": "test_validate.py::test_add_pool_checks_the_name",
    **dict.fromkeys(
        (
            "Bridge.add_pool(max_waiting)",
            "Bridge.set_pool(max_waiting)",
            "WorkerPool(max_waiting)",
            "WorkerPool.max_waiting=",
        ),
        "test_validate.py::test_max_waiting_is_none_or_an_int_of_at_least_zero",
    ),
    **dict.fromkeys(
        (
            "Bridge.add_pool(max_wait)",
            "Bridge.set_pool(max_wait)",
            "WorkerPool(max_wait)",
            "WorkerPool.max_wait=",
        ),
        "test_validate.py::test_max_wait_is_none_or_finite_seconds_above_zero",
    ),
    "Bridge.sync_call_async(func)": (
        "test_validate.py::test_sync_call_async_refuses_a_coroutine_object_and_closes_it"
    ),
    "Bridge.start_soon(func)": (
        "test_validate.py::test_start_soon_refuses_a_coroutine_object_and_closes_it"
    ),
    **dict.fromkeys(
        ("WorkerPool(name)", "WorkerPool(idle_timeout)"),
        "test_validate.py::test_worker_pool_arguments_are_checked",
    ),
    **dict.fromkeys(
        (
            "to_async(func)",
            "to_async(pool)",
            "to_async(thread_sensitive)",
            "to_async(abandon_on_cancel)",
            "to_async(bridge)",
            "to_sync(func)",
            "to_sync(bridge)",
        ),
        "test_validate.py::test_decorators_refuse_bad_arguments_at_decoration",
    ),
    **dict.fromkeys(
        (
            "to_async(timeout)",
            "to_sync(timeout)",
            "sync_gather_with_timeout(timeout)",
        ),
        "test_validate.py::test_a_timeout_is_none_or_seconds",
    ),
    "gather_with_timeout(timeout)": (
        "test_validate.py::test_gather_refuses_a_string_timeout_and_closes_the_coroutines"
    ),
    "gather_with_timeout(limit)": (
        "test_validate.py::test_gather_limit_is_refused_before_anything_starts"
    ),
    "sync_gather_with_timeout(limit)": (
        "test_validate.py::test_sync_gather_limit_is_refused_and_closes_the_coroutines"
    ),
    **dict.fromkeys(
        ("gather_with_timeout(aws)", "gather_with_timeout(return_exceptions)"),
        "test_validate.py::test_gather_refuses_what_is_not_awaitable_before_anything_runs",
    ),
    "iterate_in_thread(iterable)": (
        "test_validate.py::test_iterate_in_thread_refuses_an_async_iterable"
    ),
    "sync_iter(aiterable)": "test_validate.py::test_sync_iter_refuses_a_plain_iterable",
    "run_blocking(func)": (
        "test_validate.py::test_run_blocking_refuses_async_functions_at_the_call"
    ),
    "sync_call_async(func)": (
        "test_validate.py::test_the_default_sync_call_async_refuses_a_coroutine_object_too"
    ),
    "to_async_cm(cm)": (
        "test_validate.py::test_to_async_cm_refuses_what_is_not_a_context_manager"
    ),
    "to_sync_cm(acm)": (
        "test_validate.py::test_to_sync_cm_refuses_what_is_not_an_async_context_manager"
    ),
    "ProcessExecutor(max_workers)": "test_process_executor.py::test_max_workers_is_checked",
    "ProcessExecutor(mp_context)": "test_process_executor.py::test_mp_context_is_checked",
    "ProcessExecutor.submit(fn)": "test_process_executor.py::test_async_function_is_refused",
    # Not this executor's future: False, as documented.
    "ProcessExecutor.terminate(future)": (
        "test_process_executor.py::test_terminate_of_a_foreign_future_is_false"
    ),
    "flask.SyncBridge.timeout(seconds)": "test_flask.py::test_bad_seconds_are_refused",
    "flask.SyncBridge.background(func)": (
        "test_flask.py::test_arguments_with_a_coroutine_object_are_refused_and_it_is_closed"
    ),
    **dict.fromkeys(
        (
            "fastapi.install(app)",
            "fastapi.install(threads)",
            "fastapi.install(pools)",
            "fastapi.install(blocking_threshold)",
            "fastapi.install(bridge)",
        ),
        "test_fastapi.py::test_install_rejects_bad_arguments_at_once",
    ),
    "prometheus.BridgeCollector(bridges)": (
        "test_prometheus.py::test_register_refuses_what_is_not_a_bridge"
    ),
    **dict.fromkeys(
        (
            "flask.config['SYNCBRIDGE_TIMEOUT']",
            "flask.config['SYNCBRIDGE_THREADS']",
            "flask.config['SYNCBRIDGE_POOLS']",
            "flask.config['SYNCBRIDGE_BLOCKING_THRESHOLD']",
        ),
        "test_flask_config.py::test_bad_value_fails_at_init_app_naming_the_key_and_the_fix",
    ),
    "testing.marker(seconds)": (
        "test_testing.py::test_a_bad_threshold_is_an_error_naming_the_marker"
    ),
}

EXEMPT: dict[str, str] = {
    **dict.fromkeys(
        ("ProcessExecutor.shutdown(wait)", "ProcessExecutor.shutdown(cancel_futures)"),
        "the concurrent.futures.Executor API: truthy values, as the standard library",
    ),
    **dict.fromkeys(
        ("ExecutorPool(name)", "ExecutorPool(executor)", "ExecutorPool(label)"),
        "made by the bridge from checked options; users get it from bridge.pool()",
    ),
    **dict.fromkeys(
        ("LoopWatch(threshold)", "LoopWatch(name)", "LoopWatch(describe)"),
        "made by watch_loop() and Bridge(blocking_threshold=...), which check",
    ),
    "SyncIterator(aiterable)": "made by sync_iter(), which checks",
    "ThreadIterator(iterator)": "made by iterate_in_thread(), which checks",
    **dict.fromkeys(
        (
            "testing.pytest_addoption(parser)",
            "testing.pytest_configure(config)",
            "testing.pytest_runtest_call(item)",
        ),
        "pytest hooks: pytest passes these",
    ),
    "testing.option(seconds)": "argparse's type=float refuses non-numbers; then as the marker",
}


def public_parameters() -> list[str]:
    """Every parameter a user passes to the public API, as ``callable(name)``."""
    import dataclasses
    import importlib

    def names(fn: Callable[..., object]) -> Iterator[str]:
        for p in inspect.signature(fn).parameters.values():
            passed_on = p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and p.name in (
                "args",
                "kwargs",
            )  # the user's function's own arguments
            if p.name not in ("self", "cls") and not passed_on:
                yield p.name

    found: list[str] = []
    modules = {
        "": "syncbridge",
        "flask.": "syncbridge.flask",
        "fastapi.": "syncbridge.fastapi",
        "prometheus.": "syncbridge.prometheus",
        "testing.": "syncbridge.testing",
    }
    for prefix, module_name in modules.items():
        module = importlib.import_module(module_name)
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.isclass(obj):
                made_by_syncbridge = (
                    issubclass(obj, BaseException)
                    or dataclasses.is_dataclass(obj)
                    or issubclass(obj, enum.Enum)
                    or getattr(obj, "_is_protocol", False)
                )
                if made_by_syncbridge:
                    continue
                if "__init__" in vars(obj):
                    found += [f"{prefix}{name}({p})" for p in names(obj.__init__)]
                for attr, value in vars(obj).items():
                    if attr.startswith("_"):
                        continue
                    if isinstance(value, property) and value.fset is not None:
                        found.append(f"{prefix}{name}.{attr}=")
                    elif inspect.isfunction(value):
                        found += [f"{prefix}{name}.{attr}({p})" for p in names(value)]
            elif inspect.isfunction(obj):
                found += [f"{prefix}{name}({p})" for p in names(obj)]
    flask_module = importlib.import_module("syncbridge.flask")
    found += [f"flask.config[{key!r}]" for key in flask_module._CONFIG_KEYS]
    found += ["testing.marker(seconds)", "testing.option(seconds)"]
    return found


def test_every_public_parameter_is_in_a_validation_table() -> None:
    """A new public parameter must get its misuse row (or a stated exemption)."""
    tables = {row[0] for row in NEWER_ARGUMENTS}
    missing = [
        key
        for key in public_parameters()
        if key not in tables and key not in COVERED_ELSEWHERE and key not in EXEMPT
    ]
    assert missing == []
    here = os.path.dirname(__file__)
    for where in set(COVERED_ELSEWHERE.values()):
        file, _, test = where.partition("::")
        with open(os.path.join(here, file), encoding="utf-8") as f:
            assert f"def {test}(" in f.read(), where


# -- issue 24: misuse that still surprised a user ----------------------------------


class Response:
    def close(self) -> None:
        pass


def declared_int(x: int = 0) -> int:
    return x


def declared_response() -> Response:
    return Response()


def declared_awaitable(x: int = 0) -> Coroutine[Any, Any, int]:
    return fetch(x)


@pytest.mark.parametrize(
    ("func", "declared"),
    [
        (declared_int, "int"),
        (declared_response, "Response"),
        (functools.partial(declared_int, 1), "int"),
        (Response().close, "None"),
    ],
    ids=["int", "class", "partial", "method"],
)
def test_a_function_declared_not_async_is_refused_before_it_runs(
    func: Any, declared: str
) -> None:
    with Bridge() as b:
        for call in (b.sync_call_async, b.start_soon):
            with pytest.raises(
                TypeError, match=re.escape(f"declared to return {declared}")
            ):
                call(func)
        assert not portal_threads(b)  # refused before the loop was needed
    with pytest.raises(TypeError, match=r"^to_sync\(\) takes an async function"):
        to_sync(func)


def logged(func: Callable[..., Any]) -> Callable[..., Any]:
    """A plain decorator: its wrapper has the annotations of what it wraps."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return func(*args, **kwargs)

    return wrapper


@logged
async def fetch_logged(x: int) -> int:
    return x


def test_what_may_return_an_awaitable_is_still_accepted() -> None:
    marked = functools.partial(fetch, 4)
    with Bridge() as b:
        # A sync wrapper of an async def, its `-> int` copied by functools.wraps.
        assert b.sync_call_async(fetch_logged, 5) == 5
        assert to_sync(fetch_logged, bridge=b)(5) == 5
        assert b.start_soon(fetch_logged, 5).result(timeout=10) == 5
        assert b.sync_call_async(declared_awaitable, 2) == 2
        assert b.sync_call_async(marked) == 4
        assert b.sync_call_async(AsyncCallable(), 3) == 3
        assert b.sync_call_async(anext, aticks()) == 1  # a builtin: cannot tell
        if sys.version_info >= (3, 12):

            def plain() -> int:
                return fetch(6)  # type: ignore[return-value]

            assert b.sync_call_async(inspect.markcoroutinefunction(plain)) == 6


def undeclared(x=0):  # type: ignore[no-untyped-def]
    return x


def test_a_plain_function_that_ran_on_the_portal_says_where_it_ran() -> None:
    with Bridge() as b, pytest.raises(TypeError) as info:
        b.sync_call_async(undeclared)
    message = str(info.value)
    assert (
        f"undeclared() is not async: it already ran, on the event loop thread "
        f"'syncbridge-portal-{b.name}'"
    ) in message
    assert "which cannot be awaited" in message


def keyword_only(x: int) -> int:
    return x


def takes_anything(x: int, **options: object) -> tuple[int, dict[str, object]]:
    return x, options


@pytest.mark.anyio
async def test_run_blocking_says_it_takes_no_options() -> None:
    with pytest.raises(TypeError) as info:
        await run_blocking(keyword_only, 1, pool="db")  # type: ignore[call-arg]
    assert str(info.value) == (
        "run_blocking() takes no options: it passed pool='db' on to keyword_only(), "
        "which has no such parameter. Set options with to_async(): "
        "`await syncbridge.to_async(keyword_only, pool='db')(...)`"
    )
    async with Bridge() as b:
        with pytest.raises(
            TypeError, match=r"to_async\(keyword_only, timeout=3, bridge=bridge\)"
        ):
            await b.run_blocking(keyword_only, 1, timeout=3)  # type: ignore[call-arg]
    # A function that takes the keyword gets it; its own TypeError passes unchanged.
    assert await run_blocking(takes_anything, 1, pool="db") == (1, {"pool": "db"})
    own = TypeError("the function's own")

    def raises(pool: str) -> None:
        raise own

    with pytest.raises(TypeError) as raised:
        await run_blocking(raises, pool="db")
    assert raised.value is own


def test_sync_call_async_says_it_takes_no_options() -> None:
    with (
        Bridge() as b,
        pytest.raises(
            TypeError,
            match=re.escape(
                "Set options with to_sync(): `syncbridge.to_sync(fetch, timeout=3)(...)`"
            ),
        ),
    ):
        b.sync_call_async(fetch, 1, timeout=3)  # type: ignore[call-arg]


@pytest.mark.anyio
async def test_a_closed_bridge_reached_through_to_async_names_the_function() -> None:
    b = Bridge()
    b.close()
    with pytest.raises(syncbridge.BridgeClosed) as info:
        await to_async(blocking, bridge=b)(1)
    message = str(info.value)
    assert message.startswith(
        "blocking(), a to_async() function, was called on a closed syncbridge.Bridge"
    )
    assert "Give to_async(bridge=...) an open bridge" in message
    assert "run_blocking()" not in message


@pytest.mark.anyio
async def test_a_to_sync_function_called_on_a_loop_names_itself() -> None:
    wrapped = to_sync(fetch)
    with pytest.raises(syncbridge.DeadlockError) as info:
        wrapped(1)
    message = str(info.value)
    assert message.startswith("fetch() is a to_sync() function, called from a thread")
    assert "`await fetch.__wrapped__(...)`" in message
    assert "sync_call_async(" not in message


def test_an_unknown_pool_in_a_fastapi_app_names_install() -> None:
    from fastapi import FastAPI

    import syncbridge.fastapi

    with Bridge() as b:
        syncbridge.fastapi.install(FastAPI(), pools={"db": 2}, bridge=b)
        with pytest.raises(KeyError) as info:
            b.pool("reports")
    message = str(info.value)
    assert "syncbridge.fastapi.install(app, pools={'reports': n})" in message
    assert "Bridge(pools=" not in message


def test_a_misspelt_flask_setting_is_named_with_the_known_ones() -> None:
    from syncbridge.flask import SyncBridge

    default = syncbridge.get_bridge()
    capacity, threshold = default.max_workers, default.portal_watch
    app = _flask_app(SYNCBRIDGE_THREAD=8, SYNCBRIDGE_BLOCKING_THRESHOLD=None)
    try:
        with pytest.warns(UserWarning, match="SYNCBRIDGE_THREAD") as warned:
            SyncBridge(app)
    finally:
        default.max_workers = capacity
        assert threshold is None or default.portal_watch is None
    (warning,) = warned
    message = str(warning.message)
    assert message.startswith(
        "app.config['SYNCBRIDGE_THREAD'] is not a syncbridge setting and is "
        "ignored: did you mean 'SYNCBRIDGE_THREADS'?"
    )
    assert "SYNCBRIDGE_TIMEOUT, SYNCBRIDGE_THREADS, SYNCBRIDGE_POOLS" in message
    assert warning.filename == __file__  # points at the app's SyncBridge(app)


def test_an_integer_flask_setting_says_convert_with_int() -> None:
    from syncbridge.flask import SyncBridge

    with pytest.raises(TypeError) as info:
        SyncBridge(_flask_app(SYNCBRIDGE_THREADS="8"))
    message = str(info.value)
    assert "int(os.environ['SYNCBRIDGE_THREADS'])" in message
    assert "float(" not in message
