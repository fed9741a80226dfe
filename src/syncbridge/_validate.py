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
    "check_name",
    "check_seconds",
    "check_timeout",
    "close_if_coroutine",
    "is_async_callable",
)

import functools
import inspect
import math
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


def check_capacity(value: object, what: str) -> int:
    """Return *value* if it is an ``int`` >= 1 (a number of threads or slots)."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(
            f"{what} must be an int >= 1 (a number of threads), got {value!r} "
            f"of type {type(value).__name__}; convert it first, e.g. "
            "int(os.environ[...])"
        )
    if value < 1:
        raise ValueError(
            f"{what} must be an int >= 1 (a number of threads), got {value}"
        )
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


def _unwrap(func: object) -> object:
    while isinstance(func, functools.partial):
        func = func.func
    return func


def is_async_callable(func: object) -> bool:
    """Whether calling *func* returns a coroutine without running anything.

    True for ``async def`` functions and methods, ``functools.partial`` objects of
    them, and objects whose ``__call__`` is ``async def``.
    """
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
        raise TypeError(
            f"{what} runs blocking functions in a worker thread, but {name} is "
            f"async: `await {name}(...)` directly in async code, or use "
            "syncbridge.sync_call_async() to call it from sync code"
        )


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
