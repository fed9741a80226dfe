"""Checks for the arguments and options users pass: one family, one message style.

Every public entry point checks its inputs where they are given (at the call, at
decoration, in ``Bridge(...)`` or ``init_app``), never at the first request. Each
check takes *what*, the user's own spelling of the option — ``"to_async(timeout=...)"``,
``"Bridge(pools={'db': ...})"`` — and raises :class:`TypeError` for a value of the
wrong kind or :class:`ValueError` for one out of range, with a message naming the
option, the value, and what is accepted.
"""

from __future__ import annotations

__all__ = (
    "check_async_callable",
    "check_blocking_callable",
    "check_bool",
    "check_capacity",
    "check_choice",
    "check_context_manager",
    "check_instance",
    "check_iterable",
    "check_name",
    "check_seconds",
    "check_timeout",
    "close_if_coroutine",
    "is_async_callable",
    "refuse_coroutine",
)

import functools
import inspect
import math
import sys
from types import CoroutineType, FunctionType, MethodType
from typing import TYPE_CHECKING, TypeVar

from ._exceptions import callable_name

if TYPE_CHECKING:
    from collections.abc import Collection

T = TypeVar("T")

# Code flags of functions whose calls can be known not to return an awaitable.
_GENERATOR_FLAGS = inspect.CO_GENERATOR | inspect.CO_ASYNC_GENERATOR
_AWAITABLE_FLAGS = inspect.CO_COROUTINE | inspect.CO_ITERABLE_COROUTINE


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_capacity(
    value: object, what: str, *, unit: str = "threads", none: str | None = None
) -> int:
    """Return *value* if it is an ``int`` >= 1: a number of *unit*.

    *none*, if given, says in the message what ``None`` would have meant (the
    caller accepts ``None`` before calling this).
    """
    accepted = f"an int >= 1 (a number of {unit})"
    if none is not None:
        accepted = f"None ({none}) or {accepted}"
    if not isinstance(value, int) or isinstance(value, bool):
        hint = "; convert it first: int(value)" if isinstance(value, str) else ""
        raise TypeError(
            f"{what} must be {accepted}, got {value!r} of type "
            f"{type(value).__name__}{hint}"
        )
    if value < 1:
        raise ValueError(f"{what} must be {accepted}, got {value}")
    return value


def check_timeout(value: object, what: str) -> float | None:
    """Return *value* if it is ``None`` (no deadline) or a number of seconds >= 0.

    ``math.inf`` is accepted and means no deadline; NaN is refused.
    """
    if value is None:
        return None
    if not _is_number(value):
        raise TypeError(
            f"{what} must be None (no deadline) or a number of seconds >= 0, got "
            f"{value!r} of type {type(value).__name__}"
        )
    assert isinstance(value, (int, float))
    if not value >= 0:  # also refuses NaN
        raise ValueError(
            f"{what} must be None (no deadline) or a number of seconds >= 0, got "
            f"{value!r}"
        )
    return value


def check_seconds(
    value: object, what: str, *, zero: bool = False, none: str | None = None
) -> float | None:
    """Return *value* if it is a finite number of seconds > 0 (>= 0 with *zero*).

    With *none* (what ``None`` means, e.g. ``"no detection"``), ``None`` is
    accepted and returned; without it, ``None`` is refused.
    """
    bound = ">= 0" if zero else "> 0"
    accepted = f"a finite number of seconds {bound}"
    if none is not None:
        accepted += f", or None ({none})"
    if value is None and none is not None:
        return None
    if not _is_number(value):
        raise TypeError(
            f"{what} must be {accepted}; got {value!r} of type {type(value).__name__}"
        )
    assert isinstance(value, (int, float))
    if not (math.isfinite(value) and (value >= 0 if zero else value > 0)):
        raise ValueError(f"{what} must be {accepted}; got {value!r}")
    return value


def check_bool(value: object, what: str) -> bool:
    """Return *value* if it is a ``bool`` (``None`` and ``0``/``1`` are refused)."""
    if not isinstance(value, bool):
        raise TypeError(f"{what} must be True or False, got {value!r}")
    return value


def check_name(value: object, what: str) -> str:
    """Return *value* if it is a non-empty ``str`` (a pool or bridge name)."""
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, got {value!r}")
    if not value:
        raise ValueError(f"{what} must not be empty")
    return value


def check_choice(value: object, choices: Collection[T], what: str) -> T:
    """Return *value* if it is one of *choices*."""
    for choice in choices:
        if value == choice and type(value) is type(choice):
            return choice
    names = ", ".join(repr(c) for c in choices)
    raise ValueError(f"{what} must be one of {names}; got {value!r}")


def check_instance(value: object, cls: type[T], what: str) -> T | None:
    """Return *value* if it is ``None`` or an instance of *cls*."""
    if value is not None and not isinstance(value, cls):
        kind = f"{cls.__module__.split('.')[0]}.{cls.__qualname__}"
        raise TypeError(f"{what} must be a {kind} or None, got {value!r}")
    return value


def _unwrap(func: object) -> object:
    while isinstance(func, functools.partial):
        func = func.func
    return func


def is_async_callable(func: object) -> bool:
    """Whether calling *func* returns a coroutine without running anything.

    True for ``async def`` functions and methods, ``functools.partial`` objects of
    them, and objects whose ``__call__`` is ``async def``.
    """
    if type(func) is FunctionType:  # the common case, on every call: keep it cheap
        return bool(func.__code__.co_flags & inspect.CO_COROUTINE) or (
            inspect.iscoroutinefunction(func)  # marked with markcoroutinefunction
            if sys.version_info >= (3, 12) and func.__dict__
            else False
        )
    func = _unwrap(func)
    if inspect.iscoroutinefunction(func):
        return True
    if isinstance(func, (FunctionType, MethodType, type)):
        return False
    call = getattr(type(func), "__call__", None)  # noqa: B004 - not callable()
    return call is not None and inspect.iscoroutinefunction(call)


def close_if_coroutine(value: object) -> None:
    """Close *value* if it is a coroutine, so no "never awaited" warning follows."""
    if isinstance(value, CoroutineType):
        value.close()


def check_blocking_callable(func: object, what: str) -> None:
    """Refuse what cannot be a blocking function: async callables, non-callables.

    *what* names the function the user called, e.g. ``"to_async()"``.
    """
    if not callable(func):
        close_if_coroutine(func)
        if inspect.isawaitable(func):
            raise TypeError(
                f"{what} takes a blocking function and its arguments, got the "
                f"awaitable {func!r}; await it directly instead"
            )
        raise TypeError(f"{what} takes a blocking function, got {func!r}")
    if is_async_callable(func):
        name = callable_name(func)
        short = getattr(_unwrap(func), "__name__", None) or "the_function"
        raise TypeError(
            f"{what} runs blocking functions in a worker thread, but {name} is "
            f"async: `await {short}(...)` directly in async code, or use "
            "syncbridge.sync_call_async() to call it from sync code"
        )


def _has(value: object, *names: str) -> bool:
    return all(hasattr(type(value), name) for name in names)


def check_context_manager(value: object, what: str, *, is_async: bool) -> None:
    """Refuse what is not a (sync, or with *is_async* async) context manager.

    A coroutine passed instead (a forgotten decorator, or an ``async def``
    called by mistake) is closed first.
    """
    wanted = ("__aenter__", "__aexit__") if is_async else ("__enter__", "__exit__")
    if _has(value, *wanted):
        return
    close_if_coroutine(value)
    kind = "an async context manager" if is_async else "a context manager"
    if is_async and _has(value, "__enter__", "__exit__"):
        fix = "it is a plain context manager: use `with` directly, or to_async_cm()"
    elif not is_async and _has(value, "__aenter__", "__aexit__"):
        fix = "it is an async context manager: use `async with` directly"
    elif isinstance(value, CoroutineType):
        fix = (
            "it is a coroutine: decorate its function with "
            "@contextlib.asynccontextmanager, or await it"
        )
    else:
        fix = f"it has no {wanted[0]}/{wanted[1]}"
    raise TypeError(f"{what} takes {kind}, got {value!r}: {fix}")


def check_iterable(value: object, what: str, *, is_async: bool) -> None:
    """Refuse what is not iterable (or with *is_async*, async-iterable)."""
    if _has(value, "__aiter__" if is_async else "__iter__"):
        return
    close_if_coroutine(value)
    if is_async and _has(value, "__iter__"):
        fix = "it is a plain iterable: iterate it directly with `for`"
    elif not is_async and _has(value, "__aiter__"):
        fix = "it is an async iterable: iterate it directly with `async for`"
    elif not is_async and _has(value, "__getitem__"):
        return  # the old sequence protocol: iter() accepts it
    else:
        fix = "it has no __aiter__" if is_async else "it is not iterable"
    kind = "an async iterable" if is_async else "an iterable"
    raise TypeError(f"{what} takes {kind}, got {value!r}: {fix}")


def refuse_coroutine(result: T, func: object, what: str) -> T:
    """Return *result*, unless the blocking *func* returned a coroutine.

    Catches what :func:`check_blocking_callable` cannot know beforehand (a
    ``lambda: fetch()``): calling it only made the coroutine, which never ran;
    it is closed and :class:`TypeError` raised.
    """
    if isinstance(result, CoroutineType):
        result.close()
        name = callable_name(func)
        raise TypeError(
            f"{what} ran {name} in a worker thread and it returned a coroutine, "
            "which never ran: run async code with `await` (or "
            "syncbridge.sync_call_async() from sync code), not in a worker thread"
        )
    return result


def check_async_callable(func: object, what: str) -> None:
    """Refuse what cannot return an awaitable: non-callables, generator functions.

    A coroutine object passed instead of its function is closed first, so no
    "never awaited" warning follows. A plain function may still return an
    awaitable, so it is accepted here; what it returns is checked when it runs.
    """
    if not callable(func):
        close_if_coroutine(func)
        if inspect.isawaitable(func):
            raise TypeError(
                f"{what} takes an async function and its arguments, not an "
                f"awaitable: pass {callable_name(func)} as `f, *args` (e.g. "
                "sync_call_async(fetch, url), not sync_call_async(fetch(url)))"
            )
        raise TypeError(f"{what} takes an async function, got {func!r}")
    code = getattr(_unwrap(func), "__code__", None)
    if code is None:
        return
    flags = code.co_flags
    if flags & _GENERATOR_FLAGS and not flags & _AWAITABLE_FLAGS:
        name = callable_name(func)
        fix = (
            "iterate it with syncbridge.sync_iter()"
            if flags & inspect.CO_ASYNC_GENERATOR
            else "call it directly, it is not async"
        )
        raise TypeError(
            f"{what} takes an async function, but {name} is a generator function: {fix}"
        )
