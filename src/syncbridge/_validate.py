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
    "EXECUTOR_KIND",
    "LONGEST_WAIT",
    "PoolBounds",
    "PoolConfig",
    "SupportsGetExecutor",
    "as_executor",
    "check_async_callable",
    "check_blocking_callable",
    "check_bool",
    "check_capacity",
    "check_choice",
    "check_context_manager",
    "check_instance",
    "check_iterable",
    "check_max_wait",
    "check_max_waiting",
    "check_name",
    "check_pools",
    "check_seconds",
    "check_timeout",
    "close_if_coroutine",
    "explain_option",
    "is_async_callable",
    "refuse_coroutine",
)

import collections.abc
import concurrent.futures
import functools
import inspect
import math
import numbers
import operator
import sys
import threading
from collections.abc import Mapping
from types import CoroutineType, FunctionType, GeneratorType, MethodType
from typing import (
    TYPE_CHECKING,
    Any,
    Final,
    Literal,
    NamedTuple,
    Protocol,
    Required,
    TypedDict,
    TypeGuard,
    TypeVar,
    cast,
    get_origin,
    overload,
)

from ._exceptions import callable_name

if TYPE_CHECKING:
    from collections.abc import Collection

T = TypeVar("T")

_ASYNC_CODE: Final = inspect.CO_COROUTINE | inspect.CO_ASYNC_GENERATOR

_PLAIN_RESULTS: Final = frozenset(
    (type(None), bool, int, float, complex, str, bytes, bytearray, tuple, list, dict)
)
"""Result types that are never awaitable: checked on every call, so first."""

LONGEST_WAIT: Final = threading.TIMEOUT_MAX / 4
"""The most seconds :func:`check_seconds` returns: what a thread can wait, with room.

A thread cannot wait past :data:`threading.TIMEOUT_MAX` (about 292 years on
Linux, 49 days on Windows: a wait beyond raises :exc:`OverflowError`), and a
setting may be doubled and added to (``Bridge.close()`` waits up to
``2 * shutdown_grace + 0.5`` s): a quarter of it leaves that room.
"""

# Code flags of functions whose calls can be known not to return an awaitable.
_GENERATOR_FLAGS = inspect.CO_GENERATOR | inspect.CO_ASYNC_GENERATOR
_AWAITABLE_FLAGS = inspect.CO_COROUTINE | inspect.CO_ITERABLE_COROUTINE


def _as_int(value: object) -> int | None:
    """*value* as an exact int if it is an integer (an IntEnum, numpy's), not a bool."""
    if isinstance(value, bool) or not hasattr(type(value), "__index__"):
        return None
    return operator.index(value)  # type: ignore[arg-type]


def _as_seconds(value: object) -> float | None:
    """*value* as a float if it is a real number (a Fraction, numpy's), not a bool."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None  # Decimal is not a Real: anyio's clocks would refuse it
    return float(value)


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
    return _check_int(value, what, accepted, 1)


def _check_int(value: object, what: str, accepted: str, least: int) -> int:
    """Return *value* if it is an ``int`` >= *least*; *accepted* says what is, for errors."""
    number = _as_int(value)
    if number is None:
        hint = "; convert it first: int(value)" if isinstance(value, str) else ""
        raise TypeError(
            f"{what} must be {accepted}, got {value!r} of type "
            f"{type(value).__name__}{hint}"
        )
    if number < least:
        raise ValueError(f"{what} must be {accepted}, got {value!r}")
    return number


def check_timeout(value: object, what: str) -> float | None:
    """Return *value* if it is ``None`` (no deadline) or a number of seconds >= 0.

    ``math.inf`` is accepted and means no deadline; NaN is refused.
    """
    if value is None:
        return None
    seconds = _as_seconds(value)
    if seconds is None:
        raise TypeError(
            f"{what} must be None (no deadline) or a number of seconds >= 0, got "
            f"{value!r} of type {type(value).__name__}"
        )
    if not seconds >= 0:  # also refuses NaN
        raise ValueError(
            f"{what} must be None (no deadline) or a number of seconds >= 0, got "
            f"{value!r}"
        )
    return seconds


@overload
def check_seconds(
    value: object, what: str, *, zero: bool = False, none: None = None
) -> float: ...


@overload
def check_seconds(
    value: object, what: str, *, zero: bool = False, none: str
) -> float | None: ...


def check_seconds(
    value: object, what: str, *, zero: bool = False, none: str | None = None
) -> float | None:
    """Return *value* if it is a finite number of seconds > 0 (>= 0 with *zero*).

    A value past :data:`LONGEST_WAIT` is returned as that: "as long as the
    platform can wait", never an :exc:`OverflowError` in a thread later. With *none* (what ``None`` means, e.g. ``"no detection"``), ``None`` is
    accepted and returned; without it, ``None`` is refused.
    """
    bound = ">= 0" if zero else "> 0"
    accepted = f"a finite number of seconds {bound}"
    if none is not None:
        accepted += f", or None ({none})"
    if value is None and none is not None:
        return None
    seconds = _as_seconds(value)
    if seconds is None:
        raise TypeError(
            f"{what} must be {accepted}; got {value!r} of type {type(value).__name__}"
        )
    if not (math.isfinite(seconds) and (seconds >= 0 if zero else seconds > 0)):
        raise ValueError(f"{what} must be {accepted}; got {value!r}")
    return min(seconds, LONGEST_WAIT)


def check_max_waiting(value: object, what: str) -> int | None:
    """Return *value* if it is ``None`` (no bound) or an ``int`` >= 0 of calls.

    0 means a call never queues: it is refused when no slot is free.
    """
    if value is None:
        return None
    accepted = "None (no bound) or an int >= 0 (calls queued at most; 0: never queue)"
    return _check_int(value, what, accepted, 0)


def check_max_wait(value: object, what: str) -> float | None:
    """Return *value* if it is ``None`` (no bound) or finite seconds > 0."""
    return check_seconds(value, what, none="no bound")


class PoolConfig(TypedDict, total=False):
    """A named pool's settings in ``Bridge(pools=...)`` and the integrations.

    ``{"capacity": 10, "max_waiting": 32, "max_wait": 0.5}``: only
    ``capacity`` is required; the bounds default to ``None`` (unbounded). See
    :meth:`~syncbridge.Bridge.add_pool` for what each means.

    .. versionadded:: 0.1
    """

    capacity: Required[int]
    """Calls the pool runs at once (an ``int`` >= 1)."""
    max_waiting: int | None
    """Calls queued at most; one more is refused with PoolSaturated (0: never queue)."""
    max_wait: float | None
    """Seconds a call may wait for a slot before it is refused with PoolSaturated."""


_POOL_KEYS: Final = ("capacity", "max_waiting", "max_wait")


class PoolBounds(NamedTuple):
    """A named pool's checked settings, as :func:`check_pools` returns them.

    Apply it with ``bridge.set_pool(name, b.capacity, **b.bounds())``.
    """

    capacity: int
    max_waiting: int | None = None
    max_wait: float | None = None

    def bounds(self) -> dict[str, Any]:
        """The keyword arguments of ``set_pool``/``add_pool`` beyond the capacity."""
        return {"max_waiting": self.max_waiting, "max_wait": self.max_wait}


def _check_pool_config(value: Mapping[object, object], entry: str) -> PoolBounds:
    unknown = [key for key in value if key not in _POOL_KEYS]
    if unknown:
        raise ValueError(
            f"{entry} has unknown key(s) {', '.join(repr(k) for k in unknown)}; "
            f"a pool's mapping takes {', '.join(repr(k) for k in _POOL_KEYS)} "
            "(only 'capacity' is required)"
        )
    if "capacity" not in value:
        raise ValueError(
            f"{entry} has no 'capacity': give the number of calls the pool runs "
            "at once, such as {'capacity': 10, 'max_wait': 0.5}"
        )
    return PoolBounds(
        check_capacity(value["capacity"], f"{entry}['capacity']"),
        check_max_waiting(value.get("max_waiting"), f"{entry}['max_waiting']"),
        check_max_wait(value.get("max_wait"), f"{entry}['max_wait']"),
    )


@overload
def check_pools(value: object, what: str) -> dict[str, PoolBounds]: ...
@overload
def check_pools(
    value: object, what: str, *, executors: Literal[True]
) -> dict[str, PoolBounds | concurrent.futures.Executor]: ...
def check_pools(
    value: object, what: str, *, executors: bool = False
) -> dict[str, PoolBounds] | dict[str, PoolBounds | concurrent.futures.Executor]:
    """Return *value* as ``{name: PoolBounds}`` if it is one.

    ``None`` is no pools. *what* names the option, ``"Bridge(pools=...)"``.
    A pool's value is a capacity (an ``int``) or a :class:`PoolConfig`
    mapping. With *executors*, it may also be a
    :class:`concurrent.futures.Executor` that runs the pool's calls.
    """
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        kinds = "capacities or executors" if executors else "capacities"
        raise TypeError(
            f"{what} must be a mapping of pool names to {kinds}, such as "
            f"{{'db': 5}} or {{'db': {{'capacity': 5, 'max_wait': 0.5}}}}; got {value!r}"
        )
    pools = cast("Mapping[object, object]", value)

    def entry(name: str) -> str:  # Bridge(pools={'db': ...}), config['X']['db']
        if what.endswith("=...)"):
            return f"{what.removesuffix('=...)')}={{{name!r}: ...}})"
        return f"{what}[{name!r}]"

    checked: dict[str, PoolBounds | concurrent.futures.Executor] = {}
    for key, setting in pools.items():
        name = check_name(key, f"a pool name in {what}")
        if isinstance(setting, Mapping):
            checked[name] = _check_pool_config(
                cast("Mapping[object, object]", setting), entry(name)
            )
        elif executors and (
            isinstance(setting, concurrent.futures.Executor) or _gives_executor(setting)
        ):
            checked[name] = as_executor(
                cast("concurrent.futures.Executor", setting), entry(name)
            )
        else:
            try:
                checked[name] = PoolBounds(check_capacity(setting, entry(name)))
            except TypeError as exc:
                also = (
                    "run on a concurrent.futures.Executor given in its place, or "
                    if executors
                    else ""
                )
                raise TypeError(
                    f"{exc}; a pool may also {also}take a mapping such as "
                    "{'capacity': 10, 'max_waiting': 32, 'max_wait': 0.5}"
                ) from None
    return checked


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
    """Return the one of *choices* that *value* is (a str subclass, a StrEnum...)."""
    for choice in choices:
        if isinstance(value, type(choice)) and value == choice:
            return choice
    names = ", ".join(repr(c) for c in choices)
    raise ValueError(f"{what} must be one of {names}; got {value!r}")


EXECUTOR_KIND = (
    "concurrent.futures.Executor (a ThreadPoolExecutor, ProcessPoolExecutor, "
    "syncbridge.ProcessExecutor, loky or dask executor) or a distributed.Client"
)
"""How errors name what ``executor=`` options take."""


class SupportsGetExecutor(Protocol):
    """What has an executor to give: a ``distributed.Client``.

    Accepted wherever an executor is (``to_async(executor=client)``,
    ``Bridge(executor=client)``): it stands for
    ``client.get_executor(pure=False)``.

    .. versionadded:: 0.1
    """

    def get_executor(self, **kwargs: Any) -> concurrent.futures.Executor:
        """Return an executor that runs calls where this object says."""
        ...


def as_executor(
    value: concurrent.futures.Executor | SupportsGetExecutor, what: str
) -> concurrent.futures.Executor:
    """Return *value* if it is an executor, or a dask ``Client``'s executor.

    A ``distributed.Client`` gives ``client.get_executor(pure=False)``: every
    call runs (dask would otherwise hand back the result of an identical
    earlier call instead of running it again).
    """
    if isinstance(value, concurrent.futures.Executor):
        return value
    if _gives_executor(value):
        return value.get_executor(pure=False)
    check_instance(value, concurrent.futures.Executor, what, EXECUTOR_KIND)
    raise AssertionError("unreachable")  # pragma: no cover


def _gives_executor(value: object) -> TypeGuard[SupportsGetExecutor]:
    # A dask Client, known by its module: other objects with a get_executor()
    # method may mean something else by it.
    return type(value).__module__.startswith("distributed") and hasattr(
        value, "get_executor"
    )


def check_instance(
    value: object, cls: type[T], what: str, kind: str | None = None
) -> T | None:
    """Return *value* if it is ``None`` or an instance of *cls* (named *kind*)."""
    if value is not None and not isinstance(value, cls):
        if kind is None:
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


def _call_name(func: object) -> str:
    """How to spell a call of *func* in a suggested fix: ``fetch``, ``obj``."""
    func = _unwrap(func)
    if not isinstance(func, (FunctionType, MethodType)):
        return "obj"  # a callable object: `await obj(...)`
    name = func.__qualname__.rpartition("<locals>.")[2]
    return name if name.replace(".", "_").isidentifier() else "the_function"


def _passes_args(what: str) -> bool:
    # The decorators take the function alone; the others its arguments too.
    return what not in ("to_async()", "to_sync()")


def check_blocking_callable(func: object, what: str) -> None:
    """Refuse what cannot be a blocking function: async callables, non-callables.

    *what* names the function the user called, e.g. ``"to_async()"``.
    """
    if (
        type(func) is FunctionType
        and not func.__dict__  # no marker, nothing wrapped
        and not func.__code__.co_flags & _ASYNC_CODE
    ):
        return  # a plain function, checked on every call: keep it cheap
    if not callable(func):
        if isinstance(func, CoroutineType):
            func.close()
            raise TypeError(
                f"{what} takes a blocking function, got a coroutine object (now "
                "closed, it never ran): in async code, await the async call "
                "itself (`await fetch(url)`), no worker thread needed"
            )
        raise TypeError(f"{what} takes a blocking function, got {func!r}")
    code = getattr(_unwrap(func), "__code__", None)
    if code is not None and code.co_flags & inspect.CO_ASYNC_GENERATOR:
        raise TypeError(
            f"{what} runs blocking functions in a worker thread, but "
            f"{callable_name(func)} is an async generator function: iterate it "
            f"with `async for ... in {_call_name(func)}(...)` directly"
        )
    if is_async_callable(func):
        raise TypeError(
            f"{what} runs blocking functions in a worker thread, but "
            f"{callable_name(func)} is async: `await {_call_name(func)}(...)` "
            "directly in async code, or use syncbridge.sync_call_async() to call "
            "it from sync code"
        )


TO_ASYNC_OPTIONS: Final = frozenset(
    (
        "pool",
        "thread_sensitive",
        "timeout",
        "abandon_on_cancel",
        "bridge",
        "executor",
        "terminate_on_cancel",
    )
)
TO_SYNC_OPTIONS: Final = frozenset(("timeout", "bridge"))


def explain_option(
    func: object,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    what: str,
    decorator: str,
    *,
    extra: str = "",
) -> TypeError | None:
    """A clearer error if *func* refused a keyword that is one of *decorator*'s options.

    For the ``TypeError`` path of *what* (``"run_blocking()"``), which passes
    every keyword on to *func*: the user meant it as an option. ``None`` if
    the call binds to *func*'s signature (the error came from inside it) or
    no option was refused. *extra* is added to the suggested options
    (``"bridge=bridge"``).
    """
    options = TO_ASYNC_OPTIONS if decorator == "to_async" else TO_SYNC_OPTIONS
    given = [key for key in kwargs if key in options]
    if not given:
        return None
    try:
        signature = inspect.signature(func)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    params = signature.parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return None
    refused = [
        key
        for key in given
        if key not in params or params[key].kind is inspect.Parameter.POSITIONAL_ONLY
    ]
    try:
        signature.bind(*args, **kwargs)
    except TypeError:
        pass
    else:
        return None
    if not refused:
        return None
    shown = ", ".join(f"{key}={kwargs[key]!r}" for key in refused)
    name = callable_name(func)
    options_text = f"{shown}, {extra}" if extra else shown
    call = (
        f"await syncbridge.to_async({_call_name(func)}, {options_text})(...)"
        if decorator == "to_async"
        else f"syncbridge.to_sync({_call_name(func)}, {options_text})(...)"
    )
    return TypeError(
        f"{what} takes no options: it passed {shown} on to {name}(), which has "
        f"no such parameter. Set options with {decorator}(): `{call}`"
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
    elif isinstance(value, CoroutineType) and is_async:
        fix = (
            "it is a coroutine (now closed): decorate its async generator "
            "function with @contextlib.asynccontextmanager"
        )
    elif isinstance(value, CoroutineType):
        fix = (
            "it is a coroutine (now closed): to_async_cm() takes a blocking "
            "context manager (a lock, a file); use async ones with `async with`"
        )
    elif callable(value):
        fix = f"it is a function: call it, {what.removesuffix('()')}({_call_name(value)}(...))"
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
    elif callable(value):
        fix = f"it is a function: call it, {what.removesuffix('()')}({_call_name(value)}(...))"
    else:
        fix = "it has no __aiter__" if is_async else "it is not iterable"
    kind = "an async iterable" if is_async else "an iterable"
    raise TypeError(f"{what} takes {kind}, got {value!r}: {fix}")


def _is_generator_coroutine(value: object) -> bool:
    """A ``@types.coroutine`` generator: awaitable, though it has no ``__await__``."""
    return isinstance(value, GeneratorType) and bool(
        value.gi_code.co_flags & inspect.CO_ITERABLE_COROUTINE
    )


def refuse_coroutine(result: T, func: object, what: str) -> T:
    """Return *result*, unless the blocking *func* returned something async.

    Catches what :func:`check_blocking_callable` cannot know beforehand (a
    ``lambda: fetch()``): calling it only made a coroutine (or an async
    generator, or another awaitable), which never ran; it is closed and
    :class:`TypeError` raised.
    """
    kind = type(result)
    if kind in _PLAIN_RESULTS:
        return result
    if (
        hasattr(kind, "__await__")
        or hasattr(kind, "__anext__")
        or _is_generator_coroutine(result)
    ):
        if isinstance(result, (CoroutineType, GeneratorType)):
            result.close()
        name = callable_name(func)
        raise TypeError(
            f"{what} ran {name} in a worker thread and it returned "
            f"{kind.__name__!r}, async work that never ran: run async code with "
            "`await` (or syncbridge.sync_call_async() from sync code), not in a "
            "worker thread"
        )
    return result


def check_async_callable(func: object, what: str) -> None:
    """Refuse what cannot return an awaitable: non-callables, generator functions.

    A coroutine object passed instead of its function is closed first, so no
    "never awaited" warning follows. A plain function (or method, or partial of
    one) whose return annotation names what cannot be awaited (``-> None``,
    ``-> int``, ``-> Response``) is refused too. Other plain functions may
    return an awaitable (``lambda: client.get(url)``), so they are accepted
    here; what they return is checked when they have run.
    """
    if type(func) is FunctionType and func.__code__.co_flags & inspect.CO_COROUTINE:
        return  # an ``async def`` function, the common case: on every call
    if not callable(func):
        close_if_coroutine(func)
        if inspect.isawaitable(func):
            base = what.removesuffix("()")
            example = (
                f"{base}(fetch, url), not {base}(fetch(url))"
                if _passes_args(what)
                else f"{base}(fetch), not {base}(fetch(url))"
            )
            passed = (
                "its function and arguments" if _passes_args(what) else "the function"
            )
            raise TypeError(
                f"{what} takes an async function, not an awaitable: pass "
                f"{passed} ({example}); the coroutine passed was closed"
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
    if flags & _AWAITABLE_FLAGS or is_async_callable(func):
        return
    returns = _declared_return(_unwrap(func))
    if returns is not _UNKNOWN and not _may_be_awaitable(returns):
        shown = "None" if returns is None else _annotation_name(returns)
        raise TypeError(
            f"{what} takes an async function, but {callable_name(func)} is a "
            f"plain function declared to return {shown} (`-> {shown}`), which "
            "cannot be awaited: call it directly in sync code (no event loop "
            "needed), or make it `async def`"
        )


_UNKNOWN: Final = object()


def _declared_return(func: object) -> object:
    """The evaluated return annotation of a plain function or method, or _UNKNOWN."""
    if isinstance(func, MethodType):
        func = func.__func__
    if not isinstance(func, FunctionType):
        return _UNKNOWN  # a callable object, a builtin (anext() returns awaitables)
    if hasattr(func, "__wrapped__"):
        # A decorator's wrapper: functools.wraps copied the annotations of what
        # it wraps, which say nothing of what the wrapper returns.
        return _UNKNOWN
    try:
        hints = inspect.get_annotations(func, eval_str=True)
    except Exception:  # a forward reference that does not resolve: cannot tell
        return _UNKNOWN
    return hints.get("return", _UNKNOWN)


def _may_be_awaitable(annotation: object) -> bool:
    """Whether a value of this annotation may be awaitable; True unless known not."""
    if annotation is None or annotation is type(None):
        return False
    cls = get_origin(annotation) or annotation
    if not isinstance(cls, type) or cls is object:
        return True  # Any, a Union, a TypeVar...: cannot tell
    # A generator may be a @types.coroutine one, awaitable without __await__.
    return hasattr(cls, "__await__") or issubclass(cls, collections.abc.Generator)


def _annotation_name(annotation: object) -> str:
    if isinstance(annotation, type) and get_origin(annotation) is None:
        return annotation.__qualname__
    return repr(annotation).removeprefix("typing.")
